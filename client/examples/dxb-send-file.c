/* dxb-send-file: streams one file of any size through the local dxb-agent
 * (example of libdxbclient's stream API).
 *
 *   dxb-send-file --api ipc:///var/lib/dxb/api.sock --dataset hr.base \
 *                 --to sq.hrss,sq.mz base-2026.bin
 *
 * The file goes in 1 MiB frames with at most 4 unanswered, so neither this
 * program nor the agent holds more than a few MiB of it at a time. "sent FILE
 * xfer_id=..." is printed only after the agent has committed the transfer
 * durably, so the file may be deleted then; the recipient sees the transfer
 * id as the file's msg_id. Exit status: 0 sent, 1 refused or failed, 64 usage.
 *
 * Build: cc dxb-send-file.c $(pkg-config --cflags --libs dxbclient)
 */
#define _POSIX_C_SOURCE 200809L /* strtok_r under -std=c11 */

#include <dxb_client.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RECIPIENTS 256
/* The longest wait for any one answer of the agent; the END answer waits for
 * an fsync and a commit, so this is generous. */
#define ANSWER_TIMEOUT_MS 60000

static void
s_usage(FILE *out)
{
    fputs("usage: dxb-send-file --api ENDPOINT --dataset D --to NODE[,NODE...]\n"
          "                     [--name NAME] [--ttl SECONDS] FILE\n"
          "\n"
          "Streams FILE (any size) to the dataset D for the nodes listed in --to,\n"
          "through the local dxb-agent's API socket (e.g. ipc:///var/lib/dxb/api.sock).\n"
          "The recipients see it as NAME (default: FILE's base name). Prints\n"
          "'sent FILE xfer_id=<transfer id>' once the agent holds it durably.\n",
          out);
}

/* Splits "a,b,c" in place into to[]; returns the count, 0 when empty or too many. */
static size_t
s_split_recipients(char *list, const char *to[MAX_RECIPIENTS])
{
    size_t n = 0;
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
        {"name", required_argument, NULL, 'n'},
        {"ttl", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *api = NULL;
    const char *dataset = NULL;
    const char *name = NULL;
    char *to_list = NULL;
    const char *to[MAX_RECIPIENTS];
    size_t n_to = 0;
    unsigned long ttl_s = 0;
    char *end = NULL;
    dxb_client_t *client = NULL;
    uint8_t id[16];
    dxb_err_t rc;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == 'a') {
            api = optarg;
        } else if (opt == 'd') {
            dataset = optarg;
        } else if (opt == 't') {
            to_list = optarg;
        } else if (opt == 'n') {
            name = optarg;
        } else if (opt == 'l') {
            ttl_s = strtoul(optarg, &end, 10);
            if (end == optarg || *end != '\0' || ttl_s > UINT32_MAX) {
                fprintf(stderr, "dxb-send-file: --ttl needs seconds (0..%lu)\n",
                        (unsigned long)UINT32_MAX);
                return 64;
            }
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
    if (api == NULL || dataset == NULL || n_to == 0 || optind + 1 != argc) {
        fputs("dxb-send-file: --api, --dataset, --to (1-256 nodes) and exactly one FILE are "
              "needed; try 'dxb-send-file --help'\n",
              stderr);
        return 64;
    }

    if (dxb_client_connect(api, &client) != DXB_OK) {
        fprintf(stderr, "dxb-send-file: cannot connect to '%s'\n", api);
        return 1;
    }
    rc = dxb_client_publish_stream_file(client, dataset, to, n_to, argv[optind], name,
                                        (uint32_t)ttl_s, id, ANSWER_TIMEOUT_MS);
    if (rc != DXB_OK) {
        fprintf(stderr, "dxb-send-file: %s: %s: %s\n", argv[optind], dxb_err_name(rc),
                dxb_client_last_error(client));
        dxb_client_destroy(&client);
        return 1;
    }
    printf("sent %s xfer_id=", argv[optind]);
    for (size_t k = 0; k < sizeof(id); k++) {
        printf("%02x", id[k]);
    }
    printf("\n");
    dxb_client_destroy(&client);
    return 0;
}
