/* dxb-send: publishes files through the local dxb-agent (example of libdxbclient).
 *
 *   dxb-send --api ipc:///var/lib/dxb/api.sock --dataset hr.employees \
 *            --to sq.hrss,sq.mz report.csv staff.csv
 *
 * Each file is published synchronously: "sent FILE id=..." is printed only
 * after the agent has committed the message to its durable outbox, so the
 * file may be deleted then. Stops at the first failure (exit 1).
 *
 * Build: cc dxb-send.c $(pkg-config --cflags --libs dxbclient)
 */
#define _POSIX_C_SOURCE 200809L /* strtok_r, fsync, O_DIRECTORY under -std=c11 */

#include <dxb_client.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RECIPIENTS 256
#define PUBLISH_TIMEOUT_MS 30000

static void
s_usage(FILE *out)
{
    fputs("usage: dxb-send --api ENDPOINT --dataset D --to NODE[,NODE...] FILE...\n"
          "\n"
          "Publishes each FILE to the dataset D for the nodes listed in --to, through\n"
          "the local dxb-agent's API socket (e.g. ipc:///var/lib/dxb/api.sock).\n"
          "Prints 'sent FILE id=<message id>' once the agent holds it durably.\n",
          out);
}

/* Splits "a,b,c" in place into to[]; returns the count, 0 when empty or too many. */
static uint16_t
s_split_recipients(char *list, const char *to[MAX_RECIPIENTS])
{
    uint16_t n = 0;
    char *save = NULL;

    for (char *tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (n == MAX_RECIPIENTS) {
            return 0;
        }
        to[n++] = tok;
    }
    return n;
}

int
main(int argc, char **argv)
{
    static const struct option options[] = {
        {"api", required_argument, NULL, 'a'},
        {"dataset", required_argument, NULL, 'd'},
        {"to", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *api = NULL;
    const char *dataset = NULL;
    char *to_list = NULL;
    const char *to[MAX_RECIPIENTS];
    uint16_t n_to = 0;
    dxb_client_t *client = NULL;
    int exit_code = 1;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == 'a') {
            api = optarg;
        } else if (opt == 'd') {
            dataset = optarg;
        } else if (opt == 't') {
            to_list = optarg;
        } else if (opt == 'h') {
            s_usage(stdout);
            return 0;
        } else {
            s_usage(stderr);
            return 64;
        }
    }
    if (to_list != NULL) {
        n_to = s_split_recipients(to_list, to);
    }
    if (api == NULL || dataset == NULL || n_to == 0 || optind >= argc) {
        fputs("dxb-send: --api, --dataset, --to (1-256 nodes) and at least one FILE are "
              "needed; try 'dxb-send --help'\n",
              stderr);
        return 64;
    }

    if (dxb_client_connect(api, &client) != DXB_OK) {
        fprintf(stderr, "dxb-send: cannot connect to '%s'\n", api);
        return 1;
    }
    for (int i = optind; i < argc; i++) {
        uint8_t id[16];
        dxb_err_t rc =
            dxb_client_publish_file(client, dataset, to, n_to, argv[i], id, PUBLISH_TIMEOUT_MS);

        if (rc != DXB_OK) {
            fprintf(stderr, "dxb-send: %s: %s: %s\n", argv[i], dxb_err_name(rc),
                    dxb_client_last_error(client));
            goto out;
        }
        printf("sent %s id=", argv[i]);
        for (size_t k = 0; k < sizeof(id); k++) {
            printf("%02x", id[k]);
        }
        printf("\n");
        fflush(stdout);
    }
    exit_code = 0;
out:
    dxb_client_destroy(&client);
    return exit_code;
}
