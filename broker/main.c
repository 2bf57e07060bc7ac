/* dxb-broker: the exchange broker. main() is the start-up checklist
 * (STYLE "Daemons"): signals, arguments, config, sodium, server (keys, store,
 * sockets), ready, run, tear down in reverse. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/brk_cfg.h"
#include "broker/brk_server.h"
#include "common/dxb_daemon.h"
#include "common/dxb_log.h"


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
    int sigfd = dxb_daemon_signals();
    dxb_daemon_args_t args;
    int rc = dxb_daemon_parse_args(argc, argv, "dxb-broker", s_usage, &args);
    if (rc >= 0) {
        return rc;
    }
    dxb_log_init("dxb-broker", DXB_LOG_INFO);
    if (sodium_init() < 0) {
        fprintf(stderr, "dxb-broker: libsodium failed to initialise\n");
        return 1;
    }
    brk_cfg_t cfg;
    char *errors = NULL;
    if (brk_cfg_load(args.cfg_path, &cfg, &errors) != DXB_OK) {
        fprintf(stderr, "%s", errors ? errors : "invalid configuration\n");
        free(errors);
        return DXB_EX_CONFIG;
    }
    if (args.check_only) {
        printf("%s: configuration ok (%zu nodes)\n", args.cfg_path, cfg.n_nodes);
        brk_cfg_free(&cfg);
        return 0;
    }
    dxb_log_init("dxb-broker", (dxb_log_level_t)(args.log_level >= 0 ? args.log_level
                                                                      : cfg.log_level));
    brk_server_t *srv = NULL;
    dxb_err_t err = brk_server_new(&srv, &cfg, args.cfg_path, sigfd);
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
