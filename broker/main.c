/* dxb-broker: the exchange broker. main() is the start-up checklist
 * (STYLE "Daemons"): signals, arguments, config, sodium, server (keys, store,
 * sockets), ready, run, tear down in reverse. */
#include <getopt.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <czmq.h>

#include "broker/brk_cfg.h"
#include "broker/brk_server.h"
#include "common/dxb_log.h"

#define EX_USAGE 64
#define EX_CONFIG 78

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: dxb-broker --config FILE [--check-config] [--log-level LEVEL]\n"
            "\n"
            "The dxb exchange broker: authenticates agents with CURVE, stores their\n"
            "end-to-end encrypted messages durably in LMDB and delivers them.\n"
            "\n"
            "  -c, --config FILE     broker configuration (see conf/broker.yaml)\n"
            "      --check-config    validate the configuration, print every error as\n"
            "                        FILE:LINE:COL, exit 0 when valid, 78 when not\n"
            "      --log-level L     error|warn|notice|info|debug (overrides the config)\n"
            "  -h, --help            this text\n"
            "  -V, --version         print the version\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop cleanly; SIGHUP reloads the node registry.\n"
            "Exit codes: 0 ok, 1 runtime failure, 64 usage, 78 configuration.\n");
}

int
main(int argc, char **argv)
{
    /* Block the signals before libzmq starts threads (they inherit the mask);
     * they arrive through a signalfd in the event loop instead. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    zsys_handler_set(NULL);

    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'k'},
        {"log-level", required_argument, NULL, 'l'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0}};
    const char *cfg_path = NULL;
    const char *level_arg = NULL;
    bool check_only = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cfg_path = optarg;
            break;
        case 'k':
            check_only = true;
            break;
        case 'l':
            level_arg = optarg;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        case 'V':
            printf("dxb-broker 0.1.0 (protocol 1)\n");
            return 0;
        default:
            s_usage(stderr);
            return EX_USAGE;
        }
    }
    if (cfg_path == NULL || optind != argc) {
        fprintf(stderr, "dxb-broker: --config FILE is required (try --help)\n");
        return EX_USAGE;
    }
    int level = level_arg ? dxb_log_level_parse(level_arg) : -1;
    if (level_arg && level < 0) {
        fprintf(stderr, "dxb-broker: unknown log level '%s'\n", level_arg);
        return EX_USAGE;
    }
    dxb_log_init("dxb-broker", DXB_LOG_INFO);
    if (sodium_init() < 0) {
        fprintf(stderr, "dxb-broker: libsodium failed to initialise\n");
        return 1;
    }

    brk_cfg_t cfg;
    char *errors = NULL;
    if (brk_cfg_load(cfg_path, &cfg, &errors) != DXB_OK) {
        fprintf(stderr, "%s", errors ? errors : "invalid configuration\n");
        free(errors);
        return EX_CONFIG;
    }
    if (check_only) {
        printf("%s: configuration ok (%zu nodes)\n", cfg_path, cfg.n_nodes);
        brk_cfg_free(&cfg);
        return 0;
    }
    dxb_log_init("dxb-broker", level >= 0 ? (dxb_log_level_t)level
                                          : (dxb_log_level_t)cfg.log_level);

    int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    brk_server_t *srv = NULL;
    dxb_err_t err = brk_server_new(&srv, &cfg, cfg_path, sigfd);
    if (err) {
        dxb_log_error("BRK-START", "broker cannot start err=%s", dxb_strerror(err));
        brk_cfg_free(&cfg);
        close(sigfd);
        return 1;
    }
    err = brk_server_run(srv);
    brk_server_destroy(&srv);
    close(sigfd);
    dxb_log_notice("BRK-EXIT", "broker stopped");
    return err ? 1 : 0;
}
