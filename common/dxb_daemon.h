/* dxb_daemon: the start-up steps dxb-broker and dxb-agent share.
 *
 * Signals are blocked before any thread exists (libzmq's threads inherit
 * the mask) and read from a signalfd in the event loop; CZMQ's own handler is
 * disabled. Arguments are the same for both daemons: --config FILE,
 * --check-config, --log-level LEVEL, --help, --version.
 */
#ifndef DXB_DAEMON_H
#define DXB_DAEMON_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#define DXB_EX_USAGE 64
#define DXB_EX_CONFIG 78

typedef struct {
    const char *cfg_path;  /* borrowed from argv */
    bool check_only;       /* --check-config */
    int log_level;         /* -1 = from the config */
} dxb_daemon_args_t;

/* Blocks SIGTERM, SIGINT and SIGHUP, ignores SIGPIPE, disables CZMQ's
 * handler, and returns a non-blocking signalfd for them (-1 on failure). */
int dxb_daemon_signals(void);

/* Parses the common arguments. Returns -1 to go on, or the exit code to
 * return from main (0 after --help/--version, DXB_EX_USAGE on misuse).
 * usage(out) prints the program's help text. */
int dxb_daemon_parse_args(int argc, char **argv, const char *progname, void (*usage)(FILE *out),
                          dxb_daemon_args_t *out);

#endif
