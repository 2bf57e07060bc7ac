/* dxb-recv: receives messages from the local dxb-agent (example of libdxbclient).
 *
 *   dxb-recv --api ipc:///var/lib/dxb/api.sock --dataset hr.employees --out /srv/in
 *
 * Subscribes, then for each message either writes its payload to DIR/NAME or
 * prints one line about it, and only then acknowledges it. The agent keeps a
 * message until it is acknowledged, so a crash before the ack means the
 * message comes again, never that it is lost. Stops after --count messages,
 * or when --timeout ms pass without one.
 *
 * Build: cc dxb-recv.c $(pkg-config --cflags --libs dxbclient)
 */
#define _POSIX_C_SOURCE 200809L /* strtok_r, fsync, O_DIRECTORY under -std=c11 */

#include <dxb_client.h>

#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SUBSCRIBE_TIMEOUT_MS 5000

static void
s_usage(FILE *out)
{
    fputs("usage: dxb-recv --api ENDPOINT [--dataset D] [--count N] [--out DIR] [--timeout MS]\n"
          "\n"
          "Receives messages from the local dxb-agent's API socket (every dataset\n"
          "delivered to the API unless --dataset is given). With --out each payload is\n"
          "written to DIR/NAME, else one line per message is printed. Each message is\n"
          "acknowledged once handled. Stops after N messages (default: never) or when\n"
          "MS milliseconds pass without one (default: wait forever).\n",
          out);
}

static void
s_hex(const uint8_t id[16], char out[33])
{
    for (size_t i = 0; i < 16; i++) {
        snprintf(out + 2 * i, 3, "%02x", id[i]);
    }
}

/* Writes data to dir/name durably: a temporary file, fsync, rename, fsync of
 * the directory. Only then may the message be acknowledged. */
static bool
s_save(const char *dir, const char *name, const dxb_client_msg_t *m)
{
    char path[4096];
    char tmp[4096];
    FILE *f;
    bool ok;
    int dir_fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
    f = fopen(tmp, "wb");
    if (f == NULL) {
        return false;
    }
    ok = fwrite(m->data, 1, m->len, f) == m->len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return false;
    }
    dir_fd = open(dir, O_RDONLY | O_DIRECTORY);
    ok = dir_fd >= 0 && fsync(dir_fd) == 0;
    if (dir_fd >= 0) {
        close(dir_fd);
    }
    return ok;
}

int
main(int argc, char **argv)
{
    static const struct option options[] = {
        {"api", required_argument, NULL, 'a'},
        {"dataset", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'c'},
        {"out", required_argument, NULL, 'o'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *api = NULL;
    const char *dataset = NULL;
    const char *out_dir = NULL;
    long count = 0;
    int timeout_ms = -1;
    dxb_client_t *client = NULL;
    int exit_code = 1;
    dxb_err_t rc;
    int opt;

    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == 'a') {
            api = optarg;
        } else if (opt == 'd') {
            dataset = optarg;
        } else if (opt == 'c') {
            count = strtol(optarg, NULL, 10);
        } else if (opt == 'o') {
            out_dir = optarg;
        } else if (opt == 't') {
            timeout_ms = (int)strtol(optarg, NULL, 10);
        } else if (opt == 'h') {
            s_usage(stdout);
            return 0;
        } else {
            s_usage(stderr);
            return 64;
        }
    }
    if (api == NULL || optind != argc || count < 0) {
        fputs("dxb-recv: --api is needed (and no other arguments); try 'dxb-recv --help'\n",
              stderr);
        return 64;
    }

    if (dxb_client_connect(api, &client) != DXB_OK) {
        fprintf(stderr, "dxb-recv: cannot connect to '%s'\n", api);
        return 1;
    }
    rc = dxb_client_subscribe(client, dataset, SUBSCRIBE_TIMEOUT_MS);
    if (rc != DXB_OK) {
        fprintf(stderr, "dxb-recv: subscribe: %s: %s\n", dxb_err_name(rc),
                dxb_client_last_error(client));
        goto out;
    }
    for (long received = 0; count == 0 || received < count; received++) {
        dxb_client_msg_t m;
        char id[33];

        rc = dxb_client_recv(client, &m, timeout_ms);
        if (rc == DXB_ETIMEOUT) {
            break; /* quiet for --timeout ms: done */
        }
        if (rc != DXB_OK) {
            fprintf(stderr, "dxb-recv: %s: %s\n", dxb_err_name(rc), dxb_client_last_error(client));
            goto out;
        }
        s_hex(m.msg_id, id);
        /* The library hands out only safe file names (no '/', no leading '.'). */
        if (out_dir != NULL && !s_save(out_dir, m.name, &m)) {
            perror("dxb-recv: cannot write the message");
            dxb_client_msg_free(&m);
            goto out; /* not acknowledged: the agent keeps it */
        }
        printf("%s from=%s dataset=%s id=%s seq=%llu size=%zu\n", m.name, m.sender, m.dataset, id,
               (unsigned long long)m.seq, m.len);
        fflush(stdout);
        rc = dxb_client_ack(client, m.msg_id);
        dxb_client_msg_free(&m);
        if (rc != DXB_OK) {
            fprintf(stderr, "dxb-recv: ack: %s\n", dxb_client_last_error(client));
            goto out;
        }
    }
    exit_code = 0;
out:
    dxb_client_destroy(&client);
    return exit_code;
}
