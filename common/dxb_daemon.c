/* dxb_daemon: shared daemon start-up (signals, arguments). */
#include "common/dxb_daemon.h"

#include <czmq.h>
#include <getopt.h>
#include <sys/signalfd.h>

#include "common/dxb_log.h"

int
dxb_daemon_signals(void)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    zsys_handler_set(NULL);
    return signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
}

int
dxb_daemon_parse_args(int argc, char **argv, const char *progname, void (*usage)(FILE *out),
                      dxb_daemon_args_t *out)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'k'},
        {"log-level", required_argument, NULL, 'l'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0}};
    const char *level_arg = NULL;
    int c;
    out->cfg_path = NULL;
    out->check_only = false;
    out->log_level = -1;
    while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            out->cfg_path = optarg;
            break;
        case 'k':
            out->check_only = true;
            break;
        case 'l':
            level_arg = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("%s 0.1.0 (protocol 1)\n", progname);
            return 0;
        default:
            usage(stderr);
            return DXB_EX_USAGE;
        }
    }
    if (out->cfg_path == NULL || optind != argc) {
        fprintf(stderr, "%s: --config FILE is required (try --help)\n", progname);
        return DXB_EX_USAGE;
    }
    if (level_arg != NULL && (out->log_level = dxb_log_level_parse(level_arg)) < 0) {
        fprintf(stderr, "%s: unknown log level '%s'\n", progname, level_arg);
        return DXB_EX_USAGE;
    }
    return -1;
}
