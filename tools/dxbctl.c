/* dxbctl: the operator's command line for a dxb broker.
 *
 * main() parses the global options and dispatches the first word through one
 * command table (s_cmds). Every command but keygen sends exactly one admin
 * request (PROTOCOL.md section 8) on a fresh DEALER socket, waits at most
 * --timeout for the reply and prints the result with ctl_render. dxbctl only
 * speaks the admin protocol; it never opens the broker's store. The
 * governance commands (catalog, demands, grants, objections, stats) live in
 * ctl_gov; with --agent they go to an agent's local API instead, as its node.
 * `transfers --watch` and `--wait` repeat their request every --interval and
 * are the only commands that catch SIGINT/SIGTERM (to end between polls).
 *
 * Exit status: 0 success; 1 the broker refused the command or a local step
 * failed; 2 no answer within --timeout (or, for `transfers --wait`, not done
 * within --timeout-wait); 64 usage error (EX_USAGE); 128+N for `transfers
 * --wait` ended by signal N.
 * Thread context: single-threaded program.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/dxb_err.h"
#include "common/dxb_keys.h"
#include "common/dxb_log.h"
#include "common/dxb_util.h"
#include "proto/dxb_msg.h"
#include "tools/ctl_gov.h"
#include "tools/ctl_render.h"

#ifndef DXB_VERSION
#define DXB_VERSION "unknown"
#endif

#define CTL_DEFAULT_ADMIN "ipc:///var/lib/dxb/admin.sock"
#define CTL_DEFAULT_TIMEOUT_MS 5000
#define CTL_MAX_TIMEOUT_MS (24 * 3600 * 1000)
/* Largest row count a command may ask for (--limit, --n). */
#define CTL_MAX_COUNT 1000000
/* A reply larger than this is refused by the socket (PROTO-R2). */
#define CTL_MAX_REPLY_BYTES ((size_t)64 * 1024 * 1024)
/* Positional words, options with a value and flags one command takes at most. */
#define CTL_MAX_WORDS 3
#define CTL_MAX_OPTS 4
#define CTL_MAX_FLAGS 1

enum {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAIL = 1,
    CTL_EXIT_NOANSWER = 2,
    CTL_EXIT_USAGE = EX_USAGE,
    CTL_CONTINUE = -1, /* internal: parsing went fine, carry on */
};

/* Global options. */
typedef struct {
    const char *admin; /* admin endpoint; borrowed from argv, the environment or a literal */
    bool admin_given;  /* --admin was on the command line (it beats $DXB_AGENT) */
    const char *agent; /* --agent endpoint, borrowed from argv; NULL when not given */
    int timeout_ms;    /* whole exchange: connect, request, reply; 1..CTL_MAX_TIMEOUT_MS */
    bool json;         /* print results as JSON instead of a table */
} ctl_opts_t;

typedef struct ctl_cmd ctl_cmd_t;
struct ctl_cmd {
    const char *name;              /* first word after the global options */
    const char *const *opt_names;  /* options the command takes ("--limit"), NULL-ended */
    const char *const *flag_names; /* options without a value ("--watch"), NULL-ended */
    /* argv[0] is the command name; returns the exit code */
    int (*run)(const ctl_cmd_t *cmd, ctl_opts_t *opts, int argc, char **argv);
    const char *synopsis; /* lines for `dxbctl --help` */
    const char *help;     /* text for `dxbctl NAME --help` */
};

/* The words of one command line after the command name. */
typedef struct {
    const char *words[CTL_MAX_WORDS]; /* positional words, borrowed from argv */
    size_t n_words;
    const char *values[CTL_MAX_OPTS]; /* value of opt_names[i]; NULL when not given */
    bool flags[CTL_MAX_FLAGS];        /* flag_names[i] was given */
} ctl_args_t;

/* ---- usage ------------------------------------------------------------ */

/* Prints a one-line usage error with a hint and returns the usage exit code. */
static int s_usage_error(const char *cmd_name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
s_usage_error(const char *cmd_name, const char *fmt, ...)
{
    va_list ap;

    fputs("dxbctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "; try 'dxbctl %s%s--help'\n", cmd_name ? cmd_name : "", cmd_name ? " " : "");
    return CTL_EXIT_USAGE;
}

/* Parses a decimal count 1..max; false on anything else. */
static bool
s_parse_count(const char *text, long max, int *out)
{
    char *end = NULL;
    long v;

    if (text[0] < '0' || text[0] > '9') {
        return false;
    }
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > max) {
        return false;
    }
    *out = (int)v;
    return true;
}

static bool
s_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return true;
        }
    }
    return false;
}

/* Matches argv[*i] against the command's flags ("--watch") and options
 * ("--limit N" or "--limit=N"). Returns CTL_CONTINUE on a match, 0 when no option matched,
 * or the usage exit code. */
static int
s_match_option(const ctl_cmd_t *cmd, int argc, char **argv, int *i, ctl_args_t *out)
{
    const char *arg = argv[*i];

    for (size_t k = 0; cmd->flag_names != NULL && cmd->flag_names[k] != NULL; k++) {
        const char *name = cmd->flag_names[k];
        size_t len = strlen(name);

        if (strcmp(arg, name) == 0) {
            out->flags[k] = true;
            return CTL_CONTINUE;
        }
        if (strncmp(arg, name, len) == 0 && arg[len] == '=') {
            return s_usage_error(cmd->name, "option '%s' takes no value", name);
        }
    }
    for (size_t k = 0; cmd->opt_names != NULL && cmd->opt_names[k] != NULL; k++) {
        const char *name = cmd->opt_names[k];
        size_t len = strlen(name);

        if (strcmp(arg, name) == 0) {
            if (*i + 1 >= argc) {
                return s_usage_error(cmd->name, "option '%s' needs a value", name);
            }
            *i += 1;
            out->values[k] = argv[*i];
            return CTL_CONTINUE;
        }
        if (strncmp(arg, name, len) == 0 && arg[len] == '=') {
            out->values[k] = arg + len + 1;
            return CTL_CONTINUE;
        }
    }
    return 0;
}

/* Splits a command's arguments into words and option values. --json is also
 * accepted here, after the command, as DESIGN.md section 6 writes it.
 * Returns CTL_CONTINUE, or the exit code when the command is done (help) or
 * wrong. */
static int
s_parse_args(const ctl_cmd_t *cmd, ctl_opts_t *opts, int argc, char **argv, ctl_args_t *out)
{
    memset(out, 0, sizeof(*out));
    if (s_wants_help(argc, argv)) {
        fputs(cmd->help, stdout);
        return CTL_EXIT_OK;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int rc;

        if (strcmp(arg, "--json") == 0) {
            opts->json = true;
            continue;
        }
        if (arg[0] == '-' && arg[1] != '\0') {
            rc = s_match_option(cmd, argc, argv, &i, out);
            if (rc == 0) {
                return s_usage_error(cmd->name, "unknown option '%s' for '%s'", arg, cmd->name);
            }
            if (rc != CTL_CONTINUE) {
                return rc;
            }
            continue;
        }
        if (out->n_words == CTL_MAX_WORDS) {
            return s_usage_error(cmd->name, "too many arguments for '%s'", cmd->name);
        }
        out->words[out->n_words++] = arg;
    }
    return CTL_CONTINUE;
}

/* Checks an optional --limit/--n value; *count stays 0 when absent. */
static int
s_check_count(const ctl_cmd_t *cmd, const char *option, const char *value, int *count)
{
    *count = 0;
    if (value != NULL && !s_parse_count(value, CTL_MAX_COUNT, count)) {
        return s_usage_error(cmd->name, "invalid value '%s' for '%s': expected 1..%d", value,
                             option, CTL_MAX_COUNT);
    }
    return CTL_CONTINUE;
}

static int
s_check_node(const ctl_cmd_t *cmd, const char *node)
{
    if (!dxb_id_valid(node, strlen(node))) {
        return s_usage_error(cmd->name,
                             "invalid node id '%s': expected 1-64 characters of [a-z0-9_-] "
                             "in dot-separated labels",
                             node);
    }
    return CTL_CONTINUE;
}

/* ---- admin exchange --------------------------------------------------- */

/* Waits until sock is ready for events or the deadline passes.
 * Errors: DXB_ETIMEOUT, DXB_EIO. */
static dxb_err_t
s_wait(void *sock, short events, uint64_t deadline_ms)
{
    for (;;) {
        zmq_pollitem_t item = {.socket = sock, .events = events};
        uint64_t now = dxb_mono_ms();
        int n;

        n = zmq_poll(&item, 1, now >= deadline_ms ? 0 : (long)(deadline_ms - now));
        if (n < 0 && zmq_errno() != EINTR) {
            fprintf(stderr, "dxbctl: cannot poll the admin socket: %s\n",
                    zmq_strerror(zmq_errno()));
            return DXB_EIO;
        }
        if (n > 0 && (item.revents & events) != 0) {
            return DXB_OK;
        }
        if (dxb_mono_ms() >= deadline_ms) {
            return DXB_ETIMEOUT;
        }
    }
}

static dxb_err_t
s_socket_setup(void *sock)
{
    int linger_ms = 0;
    /* Queue nothing before the broker is there, so that "no answer" really
     * means no broker, not a request parked in a local pipe. */
    int immediate = 1;
    int64_t max_bytes = CTL_MAX_REPLY_BYTES;

    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger_ms, sizeof(linger_ms)) != 0 ||
        zmq_setsockopt(sock, ZMQ_IMMEDIATE, &immediate, sizeof(immediate)) != 0 ||
        zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_bytes, sizeof(max_bytes)) != 0) {
        fprintf(stderr, "dxbctl: cannot set socket options: %s\n", zmq_strerror(zmq_errno()));
        return DXB_EIO;
    }
    return DXB_OK;
}

/* Sends the request frame to the admin endpoint and receives one reply frame
 * into rep (initialised and owned by the caller). Prints its own errors except
 * the timeout, which the caller words.
 * Errors: DXB_EINVAL (endpoint), DXB_ETIMEOUT, DXB_EPROTO (more than one frame,
 * PROTO-R1), DXB_EIO. */
static dxb_err_t
s_admin_exchange(const ctl_opts_t *opts, const msgpack_sbuffer *req, zmq_msg_t *rep)
{
    uint64_t deadline_ms = dxb_mono_ms() + (uint64_t)opts->timeout_ms;
    void *ctx = NULL;
    void *sock = NULL;
    dxb_err_t rc = DXB_EIO;

    ctx = zmq_ctx_new();
    if (ctx == NULL) {
        fprintf(stderr, "dxbctl: cannot create a zmq context: %s\n", zmq_strerror(zmq_errno()));
        goto out;
    }
    sock = zmq_socket(ctx, ZMQ_DEALER);
    if (sock == NULL) {
        fprintf(stderr, "dxbctl: cannot create a socket: %s\n", zmq_strerror(zmq_errno()));
        goto out;
    }
    rc = s_socket_setup(sock);
    if (rc != DXB_OK) {
        goto out;
    }
    if (zmq_connect(sock, opts->admin) != 0) {
        fprintf(stderr, "dxbctl: invalid admin endpoint '%s': %s; try 'dxbctl --help'\n",
                opts->admin, zmq_strerror(zmq_errno()));
        rc = DXB_EINVAL;
        goto out;
    }
    rc = s_wait(sock, ZMQ_POLLOUT, deadline_ms);
    if (rc != DXB_OK) {
        goto out;
    }
    if (zmq_send(sock, req->data, req->size, ZMQ_DONTWAIT) < 0) {
        fprintf(stderr, "dxbctl: cannot send to '%s': %s\n", opts->admin,
                zmq_strerror(zmq_errno()));
        rc = DXB_EIO;
        goto out;
    }
    rc = s_wait(sock, ZMQ_POLLIN, deadline_ms);
    if (rc != DXB_OK) {
        goto out;
    }
    if (zmq_msg_recv(rep, sock, ZMQ_DONTWAIT) < 0) {
        fprintf(stderr, "dxbctl: cannot receive from '%s': %s\n", opts->admin,
                zmq_strerror(zmq_errno()));
        rc = DXB_EIO;
        goto out;
    }
    if (zmq_msg_more(rep)) {
        fprintf(stderr, "dxbctl: malformed reply from broker: more than one frame\n");
        rc = DXB_EPROTO;
    }
out:
    if (sock != NULL) {
        zmq_close(sock);
    }
    if (ctx != NULL) {
        zmq_ctx_term(ctx);
    }
    return rc;
}

/* Decodes a reply (len bytes at buf, borrowed by *frame) and checks that it
 * is an ADMIN_REP with code OK; a malformed reply or a refusal is printed on
 * stderr. Returns CTL_CONTINUE or the exit code. */
static int
s_admin_decode(const char *command, const uint8_t *buf, size_t len, dxb_frame_t *frame)
{
    char detail[160] = "";
    dxb_err_t rc = dxb_msg_decode(buf, len, CTL_MAX_REPLY_BYTES, frame, detail, sizeof(detail));

    if (rc == DXB_OK && frame->type != DXB_T_ADMIN_REP) {
        snprintf(detail, sizeof(detail), "message type %u instead of ADMIN_REP",
                 (unsigned)frame->type);
        rc = DXB_ETYPE;
    }
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: %s: malformed reply from broker: %s\n", command,
                detail[0] != '\0' ? detail : dxb_strerror(rc));
        return CTL_EXIT_FAIL;
    }
    if (frame->u.admin_rep.code != DXB_W_OK) {
        fprintf(stderr, "dxbctl: %s: %s: ", command, dxb_wire_err_name(frame->u.admin_rep.code));
        if (frame->u.admin_rep.message.len > 0) {
            ctl_render_text(stderr, frame->u.admin_rep.message.ptr, frame->u.admin_rep.message.len);
        } else {
            fputs(dxb_strerror(dxb_err_from_wire(frame->u.admin_rep.code)), stderr);
        }
        fputc('\n', stderr);
        return CTL_EXIT_FAIL;
    }
    return CTL_CONTINUE;
}

/* stdout carries only the result, so that it can be piped; a note from the
 * broker goes to the operator on stderr. */
static void
s_admin_note(const ctl_opts_t *opts, const dxb_frame_t *frame)
{
    if (!opts->json && frame->u.admin_rep.message.len > 0) {
        ctl_render_text(stderr, frame->u.admin_rep.message.ptr, frame->u.admin_rep.message.len);
        fputc('\n', stderr);
    }
}

/* Decodes the reply and prints it: the result on stdout, a refusal on
 * stderr. Returns the exit code. */
static int
s_admin_reply(const ctl_opts_t *opts, const char *command, const uint8_t *buf, size_t len,
              ctl_render_mode_t human_mode)
{
    dxb_frame_t frame;
    char detail[160] = "";
    int exit_code = s_admin_decode(command, buf, len, &frame);
    dxb_err_t rc;

    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    rc = ctl_render_result(stdout, frame.u.admin_rep.result.ptr, frame.u.admin_rep.result.len,
                           opts->json ? CTL_RENDER_JSON : human_mode, detail, sizeof(detail));
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: %s: malformed reply from broker: %s\n", command, detail);
        return CTL_EXIT_FAIL;
    }
    s_admin_note(opts, &frame);
    return CTL_EXIT_OK;
}

/* Sends one admin command (command and args as on the wire) and receives the
 * reply into rep (initialised and owned by the caller). Returns CTL_CONTINUE,
 * or the exit code after printing why not. */
static int
s_admin_request(const ctl_opts_t *opts, const char *command, const char *const *args, size_t n_args,
                zmq_msg_t *rep)
{
    msgpack_sbuffer req;
    int exit_code = CTL_EXIT_FAIL;
    dxb_err_t rc;

    msgpack_sbuffer_init(&req);
    rc = dxb_msg_enc_admin_req(&req, command, args, n_args);
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: %s: cannot encode the request: %s\n", command, dxb_strerror(rc));
        goto out;
    }
    rc = s_admin_exchange(opts, &req, rep);
    if (rc == DXB_ETIMEOUT) {
        fprintf(stderr,
                "dxbctl: no answer from broker at %s within %d ms (is dxb-broker running? "
                "is --admin right?)\n",
                opts->admin, opts->timeout_ms);
        exit_code = CTL_EXIT_NOANSWER;
        goto out;
    }
    if (rc != DXB_OK) {
        exit_code = rc == DXB_EINVAL ? CTL_EXIT_USAGE : CTL_EXIT_FAIL;
        goto out;
    }
    exit_code = CTL_CONTINUE;
out:
    msgpack_sbuffer_destroy(&req);
    return exit_code;
}

/* Runs one admin command (command and args as on the wire) and returns the
 * exit code. human_mode is how the result prints without --json. */
static int
s_admin_call(const ctl_opts_t *opts, const char *command, const char *const *args, size_t n_args,
             ctl_render_mode_t human_mode)
{
    zmq_msg_t rep;
    int exit_code;

    zmq_msg_init(&rep);
    exit_code = s_admin_request(opts, command, args, n_args, &rep);
    if (exit_code == CTL_CONTINUE) {
        exit_code =
            s_admin_reply(opts, command, zmq_msg_data(&rep), zmq_msg_size(&rep), human_mode);
    }
    zmq_msg_close(&rep);
    return exit_code;
}

/* ---- commands --------------------------------------------------------- */

/* Prints what keygen wrote: "key: value" lines, or one JSON object. */
static void
s_print_keygen(const ctl_opts_t *opts, const char *node, const char *dir, const char *z85)
{
    /* Show the paths as the operator typed the directory, without "//". */
    const char *sep = dir[strlen(dir) - 1] == '/' ? "" : "/";
    char pub_path[4096];
    char secret_path[4096];

    snprintf(pub_path, sizeof(pub_path), "%s%s%s.pub", dir, sep, node);
    snprintf(secret_path, sizeof(secret_path), "%s%s%s.secret", dir, sep, node);
    if (!opts->json) {
        printf("public_key: %s\npublic_file: %s\nsecret_file: %s\n", z85, pub_path, secret_path);
        return;
    }
    fputs("{\"node\": ", stdout);
    ctl_render_json_string(stdout, (const uint8_t *)node, strlen(node));
    fputs(", \"public_key\": ", stdout);
    ctl_render_json_string(stdout, (const uint8_t *)z85, strlen(z85));
    fputs(", \"public_file\": ", stdout);
    ctl_render_json_string(stdout, (const uint8_t *)pub_path, strlen(pub_path));
    fputs(", \"secret_file\": ", stdout);
    ctl_render_json_string(stdout, (const uint8_t *)secret_path, strlen(secret_path));
    fputs("}\n", stdout);
}

static int
s_cmd_keygen(const ctl_cmd_t *cmd, ctl_opts_t *opts, int argc, char **argv)
{
    ctl_args_t args;
    dxb_keypair_t kp;
    char z85[DXB_Z85_KEY_LEN + 1];
    int exit_code = s_parse_args(cmd, opts, argc, argv, &args);
    const char *node = args.values[0];
    const char *dir = args.values[1];
    dxb_err_t rc;

    memset(&kp, 0, sizeof(kp));
    if (exit_code != CTL_CONTINUE) {
        goto out;
    }
    if (node == NULL || dir == NULL || dir[0] == '\0' || args.n_words > 0) {
        exit_code = s_usage_error(cmd->name, "usage: dxbctl keygen --name ID --out DIR");
        goto out;
    }
    exit_code = s_check_node(cmd, node);
    if (exit_code != CTL_CONTINUE) {
        goto out;
    }
    exit_code = CTL_EXIT_FAIL;
    if (sodium_init() < 0) {
        fprintf(stderr, "dxbctl: keygen: cannot initialise libsodium\n");
        goto out;
    }
    rc = dxb_keys_generate(node, &kp);
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: keygen: cannot generate keys for '%s': %s\n", node,
                dxb_strerror(rc));
        goto out;
    }
    rc = dxb_keys_save(&kp, dir);
    if (rc == DXB_EEXIST) {
        fprintf(stderr,
                "dxbctl: keygen: key files for '%s' already exist in '%s'; refusing to "
                "overwrite them\n",
                node, dir);
        goto out;
    }
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: keygen: cannot write the key files of '%s' to '%s': %s\n", node,
                dir, dxb_strerror(rc));
        goto out;
    }
    dxb_keys_z85(kp.sign_pk, z85);
    s_print_keygen(opts, node, dir, z85);
    exit_code = CTL_EXIT_OK;
out:
    dxb_keys_wipe(&kp);
    return exit_code;
}

static int
s_cmd_nodes(const ctl_cmd_t *cmd, ctl_opts_t *opts, int argc, char **argv)
{
    ctl_args_t args;
    int exit_code = s_parse_args(cmd, opts, argc, argv, &args);

    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    if (args.n_words > 0) {
        return s_usage_error(cmd->name, "'nodes' takes no arguments");
    }
    return s_admin_call(opts, "nodes", NULL, 0, CTL_RENDER_TABLE);
}

static int
s_cmd_queues(const ctl_cmd_t *cmd, ctl_opts_t *opts, int argc, char **argv)
{
    ctl_args_t args;
    int limit = 0;
    int exit_code = s_parse_args(cmd, opts, argc, argv, &args);
    const char *limit_text = args.values[0];
    const char *wire_args[2];

    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    if (args.n_words == 0) {
        if (limit_text != NULL) {
            return s_usage_error(cmd->name, "'--limit' belongs to 'queues peek NODE'");
        }
        return s_admin_call(opts, "queues", NULL, 0, CTL_RENDER_TABLE);
    }
    if (strcmp(args.words[0], "peek") != 0) {
        return s_usage_error(cmd->name, "unknown subcommand 'queues %s'", args.words[0]);
    }
    if (args.n_words != 2) {
        return s_usage_error(cmd->name, "'queues peek' needs exactly one NODE");
    }
    exit_code = s_check_node(cmd, args.words[1]);
    if (exit_code == CTL_CONTINUE) {
        exit_code = s_check_count(cmd, "--limit", limit_text, &limit);
    }
    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    /* Without --limit the broker applies its own default (PROTOCOL.md 8). */
    wire_args[0] = args.words[1];
    wire_args[1] = limit_text;
    return s_admin_call(opts, "peek", wire_args, limit_text != NULL ? 2 : 1, CTL_RENDER_TABLE);
}

static int
s_cmd_dlq(const ctl_cmd_t *cmd, ctl_opts_t *opts, int argc, char **argv)
{
    ctl_args_t args;
    int exit_code = s_parse_args(cmd, opts, argc, argv, &args);
    const char *sub = args.words[0];
    const char *wire_args[1] = {args.words[1]};

    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    if (sub == NULL) {
        return s_usage_error(cmd->name, "'dlq' needs a subcommand: list, retry or drop");
    }
    if (strcmp(sub, "list") == 0) {
        if (args.n_words > 2) {
            return s_usage_error(cmd->name, "'dlq list' takes at most one NODE");
        }
        if (args.n_words == 2) {
            exit_code = s_check_node(cmd, args.words[1]);
            if (exit_code != CTL_CONTINUE) {
                return exit_code;
            }
        }
        return s_admin_call(opts, "dlq.list", wire_args, args.n_words - 1, CTL_RENDER_TABLE);
    }
    if (strcmp(sub, "retry") != 0 && strcmp(sub, "drop") != 0) {
        return s_usage_error(cmd->name, "unknown subcommand 'dlq %s'", sub);
    }
    if (args.n_words != 2 || args.words[1][0] == '\0' ||
        strlen(args.words[1]) > DXB_MAX_ADMIN_ARG) {
        return s_usage_error(cmd->name, "'dlq %s' needs one dead-letter ID or 'all'", sub);
    }
    return s_admin_call(opts, strcmp(sub, "retry") == 0 ? "dlq.retry" : "dlq.drop", wire_args, 1,
                        CTL_RENDER_TABLE);
}

/* ---- audit ------------------------------------------------------------ */

/* Rows asked for per audit.export page (the broker takes up to 100000). */
#define CTL_AUDIT_PAGE_ROWS 10000
/* Latest time --since/--until accept: 9999-12-31T23:59:59.999Z. */
#define CTL_AUDIT_MAX_TIME_MS 253402300799999ull

/* Parses exactly n decimal digits at *p, advancing it. */
static bool
s_digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9') {
            return false;
        }
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* ISO 8601 date and time with a zone: 2026-11-25T10:00[:00[.123]](Z|+08:00|+0800). */
static bool
s_parse_iso_time(const char *p, uint64_t *out_ms)
{
    struct tm tm = {0};
    int year, mon, day, hour, min, sec = 0, ms = 0, zh = 0, zm = 0, sign = 0;
    time_t t;

    if (!s_digits(&p, 4, &year) || *p++ != '-' || !s_digits(&p, 2, &mon) || *p++ != '-' ||
        !s_digits(&p, 2, &day) || (*p != 'T' && *p != 't' && *p != ' ')) {
        return false;
    }
    p++;
    if (!s_digits(&p, 2, &hour) || *p++ != ':' || !s_digits(&p, 2, &min)) {
        return false;
    }
    if (*p == ':') {
        p++;
        if (!s_digits(&p, 2, &sec)) {
            return false;
        }
    }
    if (*p == '.' || *p == ',') {
        int scale = 100, d;

        if (p[1] < '0' || p[1] > '9') {
            return false;
        }
        for (p++; *p >= '0' && *p <= '9'; p++) {
            d = *p - '0';
            ms += d * scale;
            scale /= 10;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '-' ? -1 : 1;
        if (!s_digits(&p, 2, &zh)) {
            return false;
        }
        if (*p == ':') {
            p++;
        }
        if (!s_digits(&p, 2, &zm) || zh > 23 || zm > 59) {
            return false;
        }
    } else {
        return false; /* no zone: local or UTC would be a guess */
    }
    if (*p != '\0' || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
        sec > 60) {
        return false;
    }
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    t = timegm(&tm);
    /* timegm normalises 2026-02-31 into March: refuse what it had to move. */
    if (t == (time_t)-1 || tm.tm_mday != day || tm.tm_mon != mon - 1) {
        return false;
    }
    t -= (time_t)sign * (zh * 3600 + zm * 60);
    if (t < 0) {
        return false;
    }
    *out_ms = (uint64_t)t * 1000u + (uint64_t)ms;
    return true;
}

/* TIME of --since/--until: epoch milliseconds, an age before now_ms (30s,
 * 15m, 24h, 7d, 2w) or ISO 8601 with a zone. */
static bool
s_parse_time(const char *text, uint64_t now_ms, uint64_t *out_ms)
{
    static const struct {
        char unit;
        uint64_t ms;
    } units[] = {{'s', 1000u}, {'m', 60000u}, {'h', 3600000u}, {'d', 86400000u},
                 {'w', 604800000u}};
    char *end = NULL;
    unsigned long long v;

    if (text[0] < '0' || text[0] > '9') {
        return false;
    }
    if (strchr(text, '-') != NULL) {
        return s_parse_iso_time(text, out_ms) && *out_ms <= CTL_AUDIT_MAX_TIME_MS;
    }
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0) {
        return false;
    }
    if (*end == '\0') {
        *out_ms = v;
        return v <= CTL_AUDIT_MAX_TIME_MS;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (end[0] == units[i].unit && end[1] == '\0') {
            if (v > now_ms / units[i].ms) {
                return false;
            }
            *out_ms = now_ms - v * units[i].ms;
            return true;
        }
    }
    return false;
}

/* audit verify: a broken log comes back EINTEGRITY with the report row as
 * well; print the row on stdout and the sentence naming the first broken
 * entry on stderr, and exit 1. */
static int
s_audit_verify(const ctl_opts_t *opts)
{
    zmq_msg_t rep;
    dxb_frame_t frame;
    char detail[160] = "";
    int exit_code;
    dxb_err_t rc;

    zmq_msg_init(&rep);
    exit_code = s_admin_request(opts, "audit.verify", NULL, 0, &rep);
    if (exit_code != CTL_CONTINUE) {
        goto out;
    }
    rc = dxb_msg_decode(zmq_msg_data(&rep), zmq_msg_size(&rep), CTL_MAX_REPLY_BYTES, &frame,
                        detail, sizeof(detail));
    if (rc != DXB_OK || frame.type != DXB_T_ADMIN_REP ||
        frame.u.admin_rep.code != DXB_W_EINTEGRITY || frame.u.admin_rep.result.len <= 1) {
        /* Success, another refusal, or a malformed reply: the usual way. */
        exit_code = s_admin_reply(opts, "audit.verify", zmq_msg_data(&rep), zmq_msg_size(&rep),
                                  CTL_RENDER_VERTICAL);
        goto out;
    }
    rc = ctl_render_result(stdout, frame.u.admin_rep.result.ptr, frame.u.admin_rep.result.len,
                           opts->json ? CTL_RENDER_JSON : CTL_RENDER_VERTICAL, detail,
                           sizeof(detail));
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: audit.verify: malformed reply from broker: %s\n", detail);
    } else {
        fputs("dxbctl: audit.verify: EINTEGRITY: ", stderr);
        ctl_render_text(stderr, frame.u.admin_rep.message.ptr, frame.u.admin_rep.message.len);
        fputc('\n', stderr);
    }
    exit_code = CTL_EXIT_FAIL;
out:
    zmq_msg_close(&rep);
    return exit_code;
}

/* Reads the page cursor from an audit.export reply message: "next=SEQ"
 * (*next = SEQ) or "end" (*next = 0). */
static bool
s_audit_next(const dxb_frame_t *frame, uint64_t *next)
{
    char msg[40];
    size_t len = frame->u.admin_rep.message.len;
    char *end = NULL;

    if (len >= sizeof(msg)) {
        return false;
    }
    memcpy(msg, frame->u.admin_rep.message.ptr, len);
    msg[len] = '\0';
    *next = 0;
    if (strcmp(msg, "end") == 0) {
        return true;
    }
    if (strncmp(msg, "next=", 5) != 0 || msg[5] < '1' || msg[5] > '9') {
        return false;
    }
    errno = 0;
    *next = strtoull(msg + 5, &end, 10);
    return errno == 0 && *end == '\0';
}

/* audit export: JSON lines on stdout, page after page, until the broker
 * says the log ended. A page that fails stops the export with exit 1 (the
 * lines printed so far are whole records). */
static int
s_audit_export(const ctl_opts_t *opts, uint64_t since_ms, uint64_t until_ms)
{
    char since[24], until[24], from[24], limit[16];
    const char *wire_args[4] = {since, until, from, limit};
    uint64_t from_seq = 1;
    int exit_code = CTL_EXIT_OK;

    snprintf(since, sizeof(since), "%" PRIu64, since_ms);
    snprintf(until, sizeof(until), "%" PRIu64, until_ms);
    snprintf(limit, sizeof(limit), "%d", CTL_AUDIT_PAGE_ROWS);
    while (exit_code == CTL_EXIT_OK) {
        zmq_msg_t rep;
        dxb_frame_t frame;
        char detail[160] = "";
        uint64_t next = 0;

        snprintf(from, sizeof(from), "%" PRIu64, from_seq);
        zmq_msg_init(&rep);
        exit_code = s_admin_request(opts, "audit.export", wire_args, 4, &rep);
        if (exit_code == CTL_CONTINUE) {
            exit_code = s_admin_decode("audit.export", zmq_msg_data(&rep), zmq_msg_size(&rep),
                                       &frame);
        }
        if (exit_code == CTL_CONTINUE) {
            exit_code = CTL_EXIT_FAIL;
            if (!s_audit_next(&frame, &next) || (next != 0 && next <= from_seq)) {
                fprintf(stderr, "dxbctl: audit.export: malformed reply from broker: bad page "
                                "cursor\n");
            } else if (ctl_render_result(stdout, frame.u.admin_rep.result.ptr,
                                         frame.u.admin_rep.result.len, CTL_RENDER_JSONL, detail,
                                         sizeof(detail)) != DXB_OK) {
                fprintf(stderr, "dxbctl: audit.export: malformed reply from broker: %s\n",
                        detail);
            } else {
                exit_code = CTL_EXIT_OK;
            }
        }
        zmq_msg_close(&rep);
        if (next == 0) {
            break;
        }
        from_seq = next;
    }
    return exit_code;
}

/* audit tail|verify|checkpoints|export: option values by s_audit_opts. */
enum { CTL_AUDIT_N, CTL_AUDIT_SINCE, CTL_AUDIT_UNTIL, CTL_AUDIT_FORMAT };

static int
s_cmd_audit(const ctl_cmd_t *cmd, ctl_opts_t *opts, int argc, char **argv)
{
    ctl_args_t args;
    int n = 0;
    int exit_code = s_parse_args(cmd, opts, argc, argv, &args);
    const char *sub = args.words[0];
    const char *wire_args[1] = {args.values[CTL_AUDIT_N]};
    bool tail_like;
    uint64_t now_ms = dxb_now_ms();
    uint64_t since_ms = 0, until_ms = 0;

    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    if (args.n_words != 1) {
        return s_usage_error(cmd->name, "'audit' needs one subcommand: tail, verify, "
                                        "checkpoints or export");
    }
    tail_like = strcmp(sub, "tail") == 0 || strcmp(sub, "checkpoints") == 0;
    if (!tail_like && strcmp(sub, "verify") != 0 && strcmp(sub, "export") != 0) {
        return s_usage_error(cmd->name, "unknown subcommand 'audit %s'", sub);
    }
    if (!tail_like && args.values[CTL_AUDIT_N] != NULL) {
        return s_usage_error(cmd->name, "'--n' belongs to 'audit tail' and 'audit checkpoints'");
    }
    if (strcmp(sub, "export") != 0 &&
        (args.values[CTL_AUDIT_SINCE] != NULL || args.values[CTL_AUDIT_UNTIL] != NULL ||
         args.values[CTL_AUDIT_FORMAT] != NULL)) {
        return s_usage_error(cmd->name, "'--since', '--until' and '--format' belong to "
                                        "'audit export'");
    }
    if (strcmp(sub, "verify") == 0) {
        return s_audit_verify(opts);
    }
    if (tail_like) {
        exit_code = s_check_count(cmd, "--n", args.values[CTL_AUDIT_N], &n);
        if (exit_code != CTL_CONTINUE) {
            return exit_code;
        }
        return s_admin_call(opts, strcmp(sub, "tail") == 0 ? "audit.tail" : "audit.checkpoints",
                            wire_args, n > 0 ? 1 : 0, CTL_RENDER_TABLE);
    }
    if (args.values[CTL_AUDIT_FORMAT] != NULL && strcmp(args.values[CTL_AUDIT_FORMAT], "jsonl")) {
        return s_usage_error(cmd->name, "invalid value '%s' for '--format': expected jsonl",
                             args.values[CTL_AUDIT_FORMAT]);
    }
    for (int i = CTL_AUDIT_SINCE; i <= CTL_AUDIT_UNTIL; i++) {
        const char *text = args.values[i];

        if (text != NULL && !s_parse_time(text, now_ms, i == CTL_AUDIT_SINCE ? &since_ms
                                                                              : &until_ms)) {
            return s_usage_error(cmd->name,
                                 "invalid TIME '%s' for '%s': expected epoch milliseconds, an "
                                 "age (30m, 24h, 7d) or ISO 8601 with a zone "
                                 "(2026-11-25T10:00:00Z)",
                                 text, i == CTL_AUDIT_SINCE ? "--since" : "--until");
        }
    }
    if (args.values[CTL_AUDIT_UNTIL] != NULL && until_ms <= since_ms) {
        return s_usage_error(cmd->name, "'--until' must be later than '--since'");
    }
    return s_audit_export(opts, since_ms, until_ms);
}

/* ---- transfers -------------------------------------------------------- */

/* Polls of --watch and --wait: default and range of --interval. */
#define CTL_XFER_INTERVAL_MS 1000
#define CTL_XFER_MIN_INTERVAL_MS 100
#define CTL_XFER_MAX_INTERVAL_MS 3600000
/* Largest --timeout-wait, in seconds (30 days). */
#define CTL_XFER_MAX_WAIT_S 2592000
/* How long --wait waits for a transfer the broker does not know yet: the
 * agent logs AGT-XFERSTART before its first chunk reaches the broker. */
#define CTL_XFER_APPEAR_MS 30000

/* What `transfers` was asked to do. */
typedef struct {
    bool watch;              /* --watch */
    const char *wait_prefix; /* --wait: 1..32 hex digits, borrowed from argv; NULL without */
    int interval_ms;         /* between polls, CTL_XFER_MIN_INTERVAL_MS..CTL_XFER_MAX_INTERVAL_MS */
    int wait_s;              /* --timeout-wait; 0 = no limit */
} ctl_xfer_req_t;

/* The progress display of --watch and --wait on stdout. */
typedef struct {
    bool tty;     /* stdout is a terminal that takes ANSI escapes: redraw in place */
    size_t cols;  /* terminal columns (tty); lines are cut to cols - 1 so none wraps */
    size_t rows;  /* terminal rows (tty) */
    size_t drawn; /* lines of the frame on the screen now (tty); 0 after a clear */
} ctl_screen_t;

/* What --watch counts in one poll. */
typedef struct {
    uint64_t since_ms; /* wall clock when the watch began */
    size_t in_flight;  /* transfers receiving or delivering */
    size_t finished;   /* transfers done since since_ms */
} ctl_watch_t;

/* The transfers --wait looks for. */
typedef struct {
    const char *prefix; /* borrowed; hex digits */
    size_t prefix_len;  /* 1..CTL_XFER_ID_LEN */
    size_t matches;     /* transfers whose id starts with prefix */
    ctl_xfer_t found;   /* the last of them */
} ctl_find_t;

/* Signal that ended a watch or wait; 0 while none came. */
static volatile sig_atomic_t s_stop_signo;

static void
s_on_stop_signal(int signo)
{
    s_stop_signo = signo;
}

/* Installs the SIGINT/SIGTERM handler and keeps both signals blocked except
 * while s_pause sleeps, so that one arriving during an admin exchange ends
 * the next sleep at once instead of getting lost. libzmq's threads, started
 * later, inherit the mask. *sleep_mask receives the mask to sleep with. A
 * signal the caller ignores (nohup) stays ignored. */
static void
s_catch_stop_signals(sigset_t *sleep_mask)
{
    static const int signals[] = {SIGINT, SIGTERM};
    struct sigaction sa;
    sigset_t block;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = s_on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigemptyset(&block);
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
        struct sigaction old;

        if (sigaction(signals[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN &&
            sigaction(signals[i], &sa, NULL) == 0) {
            sigaddset(&block, signals[i]);
        }
    }
    sigprocmask(SIG_BLOCK, &block, sleep_mask);
    for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
        if (sigismember(&block, signals[i]) == 1) {
            sigdelset(sleep_mask, signals[i]);
        }
    }
}

/* Sleeps ms milliseconds, or less when a stop signal arrives. */
static void
s_pause(uint64_t ms, const sigset_t *sleep_mask)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};

    /* EINTR is the point: the handler has set s_stop_signo. */
    (void)ppoll(NULL, 0, &ts, sleep_mask);
}

/* Takes the terminal's size (80x24 when it does not say). */
static void
s_screen_size(ctl_screen_t *scr)
{
    struct winsize ws;

    scr->cols = 80;
    scr->rows = 24;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && ws.ws_row > 0) {
        scr->cols = ws.ws_col;
        scr->rows = ws.ws_row;
    }
}

static void
s_screen_init(ctl_screen_t *scr)
{
    const char *term = getenv("TERM");

    memset(scr, 0, sizeof(*scr));
    scr->tty = isatty(STDOUT_FILENO) == 1 && (term == NULL || strcmp(term, "dumb") != 0);
    if (scr->tty) {
        s_screen_size(scr);
        /* A frame reaches the terminal in one write, at s_screen_flush. */
        setvbuf(stdout, NULL, _IOFBF, 0);
    }
}

/* Erases the frame on the screen and takes the terminal's size again (it may
 * have been resized). */
static void
s_screen_clear(ctl_screen_t *scr)
{
    if (!scr->tty) {
        return;
    }
    if (scr->drawn > 0) {
        /* Back to the frame's first line, then erase to the end of the screen. */
        printf("\r\033[%zuA\033[J", scr->drawn);
        scr->drawn = 0;
    }
    s_screen_size(scr);
}

/* Prints one line. On a terminal it is a line of the frame (ASCII text),
 * cut so that it does not wrap, which would break the count s_screen_clear
 * moves up by. */
static void
s_screen_line(ctl_screen_t *scr, const char *text)
{
    if (scr->tty) {
        printf("%.*s\n", (int)(scr->cols - 1), text);
        scr->drawn++;
        return;
    }
    puts(text);
}

/* Prints one transfer as a plain line (for logs and pipes). */
static void
s_screen_xfer(ctl_screen_t *scr, const ctl_xfer_t *x)
{
    char line[1024];

    ctl_render_xfer_line(line, sizeof(line), x);
    s_screen_line(scr, line);
}

/* Draws the transfers pick selects as a table with progress bars, fitted to
 * the terminal with room for extra_lines below. *picked receives how many
 * pick selected, *shown how many of them fitted.
 * Errors: as ctl_render_xfer_table, reported here. */
static int
s_screen_bars(ctl_screen_t *scr, const dxb_bytes_t *result, ctl_xfer_fn pick, void *pick_arg,
              size_t extra_lines, size_t *picked, size_t *shown)
{
    /* The header, the extra lines and the cursor's own line stay on the
     * screen, or cursor-up cannot reach the frame's first line. */
    size_t room = scr->rows > extra_lines + 2 ? scr->rows - extra_lines - 2 : 1;
    ctl_xfer_view_t view = {
        .now_ms = dxb_now_ms(),
        .bars = true,
        .pick = pick,
        .pick_arg = pick_arg,
        .max_rows = room,
        .max_cols = scr->cols - 1,
    };
    char detail[160] = "";

    if (ctl_render_xfer_table(stdout, result->ptr, result->len, &view, picked, detail,
                              sizeof(detail)) != DXB_OK) {
        fprintf(stderr, "dxbctl: transfers: malformed reply from broker: %s\n", detail);
        return CTL_EXIT_FAIL;
    }
    *shown = *picked < room ? *picked : room;
    /* The header, or "(none)". */
    scr->drawn += 1 + *shown;
    return CTL_CONTINUE;
}

static void
s_screen_flush(void)
{
    fflush(stdout);
}

/* Checks a result and walks it; a malformed one is reported. Returns
 * CTL_CONTINUE or the exit code. */
static int
s_xfer_walk(const dxb_bytes_t *result, ctl_xfer_fn fn, void *arg)
{
    char detail[160] = "";

    if (ctl_render_xfer_each(result->ptr, result->len, fn, arg, detail, sizeof(detail)) != DXB_OK) {
        fprintf(stderr, "dxbctl: transfers: malformed reply from broker: %s\n", detail);
        return CTL_EXIT_FAIL;
    }
    return CTL_CONTINUE;
}

/* Asks the broker for its transfers into rep (initialised and owned by the
 * caller). On CTL_CONTINUE *frame holds the reply, borrowing from rep. */
static int
s_xfer_fetch(const ctl_opts_t *opts, zmq_msg_t *rep, dxb_frame_t *frame)
{
    int exit_code = s_admin_request(opts, "transfers", NULL, 0, rep);

    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    return s_admin_decode("transfers", zmq_msg_data(rep), zmq_msg_size(rep), frame);
}

static bool
s_xfer_in_flight(const ctl_xfer_t *x)
{
    return x->state == CTL_XFER_RECEIVING || x->state == CTL_XFER_DELIVERING;
}

/* `transfers` without --watch or --wait: one listing. */
static int
s_xfer_list(const ctl_opts_t *opts)
{
    zmq_msg_t rep;
    dxb_frame_t frame;
    char detail[160] = "";
    ctl_xfer_view_t view = {.now_ms = 0};
    int exit_code;

    if (opts->json) {
        return s_admin_call(opts, "transfers", NULL, 0, CTL_RENDER_TABLE);
    }
    zmq_msg_init(&rep);
    exit_code = s_xfer_fetch(opts, &rep, &frame);
    if (exit_code != CTL_CONTINUE) {
        goto out;
    }
    /* Ages count to when the broker answered. */
    view.now_ms = dxb_now_ms();
    if (ctl_render_xfer_table(stdout, frame.u.admin_rep.result.ptr, frame.u.admin_rep.result.len,
                              &view, NULL, detail, sizeof(detail)) != DXB_OK) {
        fprintf(stderr, "dxbctl: transfers: malformed reply from broker: %s\n", detail);
        exit_code = CTL_EXIT_FAIL;
        goto out;
    }
    s_admin_note(opts, &frame);
    exit_code = CTL_EXIT_OK;
out:
    zmq_msg_close(&rep);
    return exit_code;
}

static bool
s_watch_finished(const ctl_watch_t *w, const ctl_xfer_t *x)
{
    /* updated_ms is the broker's wall clock; the admin socket is local. */
    return x->state == CTL_XFER_DONE && x->updated_ms >= w->since_ms;
}

static bool
s_watch_count(void *arg, const ctl_xfer_t *x)
{
    ctl_watch_t *w = arg;

    w->in_flight += s_xfer_in_flight(x) ? 1 : 0;
    w->finished += s_watch_finished(w, x) ? 1 : 0;
    return true;
}

/* The terminal frame: transfers in flight, and those that finished while we
 * watched, at 100%. */
static bool
s_watch_pick(void *arg, const ctl_xfer_t *x)
{
    return s_xfer_in_flight(x) || s_watch_finished(arg, x);
}

/* Without a terminal: a line per transfer in flight; their end is in the
 * summary. */
static bool
s_watch_log(void *arg, const ctl_xfer_t *x)
{
    if (s_xfer_in_flight(x)) {
        s_screen_xfer(arg, x);
    }
    return true;
}

static bool
s_watch_summary(void *arg, const ctl_xfer_t *x)
{
    ctl_watch_t *w = arg;
    char line[1024];

    if (s_watch_finished(w, x)) {
        ctl_render_xfer_line(line, sizeof(line), x);
        puts(line);
    }
    return true;
}

/* Draws one poll's frame, or a log line per transfer in flight. */
static int
s_watch_frame(ctl_screen_t *scr, ctl_watch_t *w, const dxb_bytes_t *result, int interval_ms)
{
    char line[160];
    size_t picked = 0;
    size_t shown = 0;
    int exit_code;

    if (!scr->tty) {
        return s_xfer_walk(result, s_watch_log, scr);
    }
    s_screen_clear(scr);
    /* Room for "... and N more" and the status line. */
    exit_code = s_screen_bars(scr, result, s_watch_pick, w, 2, &picked, &shown);
    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    if (picked > shown) {
        snprintf(line, sizeof(line), "... and %zu more", picked - shown);
        s_screen_line(scr, line);
    }
    snprintf(line, sizeof(line), "%zu in flight, %zu done; every %d ms, Ctrl-C stops", w->in_flight,
             w->finished, interval_ms);
    s_screen_line(scr, line);
    return CTL_CONTINUE;
}

/* One poll of --watch. Returns CTL_CONTINUE while transfers are in flight,
 * else the exit code. */
static int
s_watch_poll(const ctl_opts_t *opts, ctl_screen_t *scr, ctl_watch_t *w, int interval_ms)
{
    zmq_msg_t rep;
    dxb_frame_t frame;
    int exit_code;

    zmq_msg_init(&rep);
    w->in_flight = 0;
    w->finished = 0;
    exit_code = s_xfer_fetch(opts, &rep, &frame);
    if (exit_code == CTL_CONTINUE) {
        exit_code = s_xfer_walk(&frame.u.admin_rep.result, s_watch_count, w);
    }
    if (exit_code != CTL_CONTINUE) {
        goto out;
    }
    if (w->in_flight > 0) {
        exit_code = s_watch_frame(scr, w, &frame.u.admin_rep.result, interval_ms);
        goto out;
    }
    /* The last poll replaces the frame with a summary. */
    s_screen_clear(scr);
    exit_code = s_xfer_walk(&frame.u.admin_rep.result, s_watch_summary, w);
    if (exit_code == CTL_CONTINUE) {
        printf("no transfer in flight; %zu finished while watching\n", w->finished);
        exit_code = CTL_EXIT_OK;
    }
out:
    zmq_msg_close(&rep);
    return exit_code;
}

/* `transfers --watch`: redraws until no transfer is in flight. */
static int
s_xfer_watch(const ctl_opts_t *opts, const ctl_xfer_req_t *req)
{
    ctl_screen_t scr;
    ctl_watch_t w;
    sigset_t sleep_mask;

    s_catch_stop_signals(&sleep_mask);
    s_screen_init(&scr);
    memset(&w, 0, sizeof(w));
    w.since_ms = dxb_now_ms();
    for (;;) {
        int exit_code = s_watch_poll(opts, &scr, &w, req->interval_ms);

        s_screen_flush();
        if (exit_code != CTL_CONTINUE) {
            return exit_code;
        }
        s_pause((uint64_t)req->interval_ms, &sleep_mask);
        if (s_stop_signo != 0) {
            printf("stopped; %zu transfer%s still in flight\n", w.in_flight,
                   w.in_flight == 1 ? "" : "s");
            return CTL_EXIT_OK;
        }
    }
}

static bool
s_find_row(void *arg, const ctl_xfer_t *x)
{
    ctl_find_t *f = arg;

    if (strlen(x->id) >= f->prefix_len && strncasecmp(x->id, f->prefix, f->prefix_len) == 0) {
        f->matches++;
        f->found = *x;
    }
    return true;
}

/* The line --wait ends with when the transfer is done. */
static void
s_print_done(const ctl_xfer_t *x)
{
    char size[32];
    char took[32];
    char rate[32];
    uint64_t ms = x->updated_ms > x->started_ms ? x->updated_ms - x->started_ms : 0;

    ctl_render_format_bytes(size, sizeof(size), x->total_bytes);
    ctl_render_format_duration(took, sizeof(took), ms / 1000);
    ctl_render_format_rate(rate, sizeof(rate), x->rate_bps);
    printf("transfer %.*s done: %s from %s to %" PRIu64 " recipient%s in %s (%s)\n",
           CTL_XFER_SHORT_ID_LEN, x->id, size, x->sender, x->recipients,
           x->recipients == 1 ? "" : "s", took, rate);
}

/* The row of the transfer --wait follows. */
static bool
s_find_pick(void *arg, const ctl_xfer_t *x)
{
    const ctl_find_t *f = arg;

    return strcmp(x->id, f->found.id) == 0;
}

/* Decides on one poll of --wait. Returns CTL_CONTINUE while the transfer is
 * on its way (or not there yet), else the exit code after saying why. *seen
 * is set once the transfer was found. */
static int
s_wait_judge(ctl_screen_t *scr, const ctl_find_t *f, bool *seen, uint64_t waited_ms)
{
    if (f->matches > 1) {
        s_screen_clear(scr);
        fprintf(stderr,
                "dxbctl: transfers: id prefix '%s' matches %zu transfers; give more digits\n",
                f->prefix, f->matches);
        return CTL_EXIT_FAIL;
    }
    if (f->matches == 0 && *seen) {
        s_screen_clear(scr);
        fprintf(stderr,
                "dxbctl: transfers: transfer %.*s is gone before it was done (the broker "
                "forgets a transfer that stays idle too long)\n",
                CTL_XFER_SHORT_ID_LEN, f->found.id);
        return CTL_EXIT_FAIL;
    }
    if (f->matches == 0) {
        if (waited_ms >= CTL_XFER_APPEAR_MS) {
            s_screen_clear(scr);
            fprintf(stderr,
                    "dxbctl: transfers: no transfer with an id starting with '%s' within %d s\n",
                    f->prefix, CTL_XFER_APPEAR_MS / 1000);
            return CTL_EXIT_FAIL;
        }
        return CTL_CONTINUE;
    }
    *seen = true;
    if (f->found.state == CTL_XFER_DONE) {
        s_screen_clear(scr);
        s_print_done(&f->found);
        return CTL_EXIT_OK;
    }
    return CTL_CONTINUE;
}

/* Shows where the transfer --wait follows stands. */
static int
s_wait_draw(ctl_screen_t *scr, ctl_find_t *f, const dxb_bytes_t *result)
{
    char line[160];
    size_t picked = 0;
    size_t shown = 0;

    if (!scr->tty) {
        if (f->matches == 1) {
            s_screen_xfer(scr, &f->found);
        }
        return CTL_CONTINUE;
    }
    s_screen_clear(scr);
    if (f->matches == 0) {
        snprintf(line, sizeof(line), "waiting for transfer %s to reach the broker, Ctrl-C stops",
                 f->prefix);
        s_screen_line(scr, line);
        return CTL_CONTINUE;
    }
    return s_screen_bars(scr, result, s_find_pick, f, 0, &picked, &shown);
}

/* One poll of --wait. Returns CTL_CONTINUE while the transfer is on its way,
 * else the exit code. */
static int
s_wait_poll(const ctl_opts_t *opts, ctl_screen_t *scr, ctl_find_t *f, bool *seen,
            uint64_t waited_ms)
{
    zmq_msg_t rep;
    dxb_frame_t frame;
    int exit_code;

    zmq_msg_init(&rep);
    f->matches = 0;
    exit_code = s_xfer_fetch(opts, &rep, &frame);
    if (exit_code == CTL_CONTINUE) {
        exit_code = s_xfer_walk(&frame.u.admin_rep.result, s_find_row, f);
    }
    if (exit_code == CTL_CONTINUE) {
        exit_code = s_wait_judge(scr, f, seen, waited_ms);
    }
    if (exit_code == CTL_CONTINUE) {
        exit_code = s_wait_draw(scr, f, &frame.u.admin_rep.result);
    }
    zmq_msg_close(&rep);
    return exit_code;
}

/* `transfers --wait`: follows one transfer until it is done. */
static int
s_xfer_wait(const ctl_opts_t *opts, const ctl_xfer_req_t *req)
{
    ctl_screen_t scr;
    ctl_find_t f;
    sigset_t sleep_mask;
    bool seen = false;
    uint64_t start_ms;
    uint64_t deadline_ms;

    s_catch_stop_signals(&sleep_mask);
    s_screen_init(&scr);
    memset(&f, 0, sizeof(f));
    f.prefix = req->wait_prefix;
    f.prefix_len = strlen(req->wait_prefix);
    start_ms = dxb_mono_ms();
    deadline_ms = req->wait_s > 0 ? start_ms + (uint64_t)req->wait_s * 1000 : UINT64_MAX;
    for (;;) {
        uint64_t now_ms = dxb_mono_ms();
        int exit_code = s_wait_poll(opts, &scr, &f, &seen, now_ms - start_ms);
        uint64_t pause_ms = (uint64_t)req->interval_ms;

        s_screen_flush();
        if (exit_code != CTL_CONTINUE) {
            return exit_code;
        }
        now_ms = dxb_mono_ms();
        if (now_ms >= deadline_ms) {
            fprintf(stderr, "dxbctl: transfers: transfer %.*s not done within %d s",
                    CTL_XFER_SHORT_ID_LEN, seen ? f.found.id : f.prefix, req->wait_s);
            if (seen) {
                fprintf(stderr, " (%s, %u%% delivered)", f.found.state_text,
                        (unsigned)(f.found.progress * 100.0));
            }
            fputc('\n', stderr);
            return CTL_EXIT_NOANSWER;
        }
        /* The last poll comes at the deadline, not an interval after it. */
        if (deadline_ms - now_ms < pause_ms) {
            pause_ms = deadline_ms - now_ms;
        }
        s_pause(pause_ms, &sleep_mask);
        if (s_stop_signo != 0) {
            /* The shell's convention for a command ended by a signal. */
            return 128 + (int)s_stop_signo;
        }
    }
}

/* Checks --wait's id prefix: 1..32 hex digits. */
static bool
s_xfer_prefix_valid(const char *prefix)
{
    size_t len = strlen(prefix);

    if (len == 0 || len > CTL_XFER_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = prefix[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

/* Turns the command line of `transfers` into req. Returns CTL_CONTINUE or
 * the usage exit code. */
static int
s_xfer_parse(const ctl_cmd_t *cmd, const ctl_opts_t *opts, const ctl_args_t *args,
             ctl_xfer_req_t *req)
{
    const char *interval = args->values[0];
    const char *wait_s = args->values[2];

    memset(req, 0, sizeof(*req));
    req->watch = args->flags[0];
    req->wait_prefix = args->values[1];
    req->interval_ms = CTL_XFER_INTERVAL_MS;
    if (args->n_words > 0) {
        return s_usage_error(cmd->name, "'transfers' takes no arguments, got '%s'", args->words[0]);
    }
    if (req->watch && req->wait_prefix != NULL) {
        return s_usage_error(cmd->name, "'--watch' and '--wait' do not go together");
    }
    if (opts->json && (req->watch || req->wait_prefix != NULL)) {
        return s_usage_error(cmd->name, "'--json' lists once; it does not go with '%s'",
                             req->watch ? "--watch" : "--wait");
    }
    if (interval != NULL && !req->watch && req->wait_prefix == NULL) {
        return s_usage_error(cmd->name, "'--interval' belongs to '--watch' or '--wait'");
    }
    if (wait_s != NULL && req->wait_prefix == NULL) {
        return s_usage_error(cmd->name, "'--timeout-wait' belongs to '--wait'");
    }
    if (interval != NULL &&
        (!s_parse_count(interval, CTL_XFER_MAX_INTERVAL_MS, &req->interval_ms) ||
         req->interval_ms < CTL_XFER_MIN_INTERVAL_MS)) {
        return s_usage_error(cmd->name,
                             "invalid value '%s' for '--interval': expected milliseconds %d..%d",
                             interval, CTL_XFER_MIN_INTERVAL_MS, CTL_XFER_MAX_INTERVAL_MS);
    }
    if (wait_s != NULL && !s_parse_count(wait_s, CTL_XFER_MAX_WAIT_S, &req->wait_s)) {
        return s_usage_error(cmd->name,
                             "invalid value '%s' for '--timeout-wait': expected seconds 1..%d",
                             wait_s, CTL_XFER_MAX_WAIT_S);
    }
    if (req->wait_prefix != NULL && !s_xfer_prefix_valid(req->wait_prefix)) {
        return s_usage_error(cmd->name, "invalid transfer id prefix '%s': expected 1-%d hex digits",
                             req->wait_prefix, CTL_XFER_ID_LEN);
    }
    return CTL_CONTINUE;
}

static int
s_cmd_transfers(const ctl_cmd_t *cmd, ctl_opts_t *opts, int argc, char **argv)
{
    ctl_args_t args;
    ctl_xfer_req_t req;
    int exit_code = s_parse_args(cmd, opts, argc, argv, &args);

    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    exit_code = s_xfer_parse(cmd, opts, &args, &req);
    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    if (req.watch) {
        return s_xfer_watch(opts, &req);
    }
    if (req.wait_prefix != NULL) {
        return s_xfer_wait(opts, &req);
    }
    return s_xfer_list(opts);
}

/* ---- governance ------------------------------------------------------- */

/* catalog, demands, grants, objections and stats (ctl_gov). They go to the
 * agent of --agent, else of $DXB_AGENT unless --admin was given, else to
 * the broker as the operator. */
static int
s_cmd_gov(const ctl_cmd_t *cmd, ctl_opts_t *opts, int argc, char **argv)
{
    const char *env_agent = getenv("DXB_AGENT");
    ctl_gov_ctx_t ctx = {
        .admin = opts->admin,
        .agent = opts->agent,
        .timeout_ms = opts->timeout_ms,
        .json = opts->json,
        .parse_time = s_parse_time,
    };

    if (ctx.agent == NULL && !opts->admin_given && env_agent != NULL && env_agent[0] != '\0') {
        ctx.agent = env_agent;
    }
    return ctl_gov_run(&ctx, argc, argv);
}

/* ---- command table ---------------------------------------------------- */

static const char *const s_keygen_opts[] = {"--name", "--out", NULL};
static const char *const s_queues_opts[] = {"--limit", NULL};
/* s_cmd_audit reads the values by these positions (CTL_AUDIT_*). */
static const char *const s_audit_opts[] = {"--n", "--since", "--until", "--format", NULL};
/* s_xfer_parse reads the values by these positions. */
static const char *const s_transfers_opts[] = {"--interval", "--wait", "--timeout-wait", NULL};
static const char *const s_transfers_flags[] = {"--watch", NULL};

static const ctl_cmd_t s_cmds[] = {
    {"keygen", s_keygen_opts, NULL, s_cmd_keygen,
     "  keygen --name ID --out DIR     create a node's key files (no broker needed)\n",
     "usage: dxbctl keygen --name ID --out DIR\n"
     "\n"
     "Creates the key pair of node ID and writes DIR/ID.pub (mode 0644) and\n"
     "DIR/ID.secret (mode 0600); DIR is created (0700) when missing. Existing key\n"
     "files are never overwritten. Prints the public key, which the broker's\n"
     "registry and the peers' configs name the node by.\n"
     "\n"
     "ID is 1-64 characters of [a-z0-9_-] in dot-separated labels, e.g. sq.hrss.\n"},
    {"nodes", NULL, NULL, s_cmd_nodes,
     "  nodes                          registered nodes and their connection state\n",
     "usage: dxbctl nodes\n"
     "\n"
     "Lists the nodes of the broker's registry: region, level, clearance, whether\n"
     "connected, when last seen and how many messages wait for it.\n"},
    {"queues", s_queues_opts, NULL, s_cmd_queues,
     "  queues                         the delivery queue of every node\n"
     "  queues peek NODE [--limit N]   messages waiting in NODE's queue, oldest first\n",
     "usage: dxbctl queues\n"
     "       dxbctl queues peek NODE [--limit N]\n"
     "\n"
     "'queues' shows, per node, the messages and bytes waiting, the age of the\n"
     "oldest and how many are in flight. 'queues peek' lists the head of one\n"
     "node's queue (message id, sender, dataset, size, attempts); payloads are\n"
     "end-to-end encrypted and never shown.\n"},
    {"dlq", NULL, NULL, s_cmd_dlq,
     "  dlq list [NODE]                dead letters, of all nodes or of NODE\n"
     "  dlq retry ID|all               put dead letters back into their queues\n"
     "  dlq drop ID|all                delete dead letters for good\n",
     "usage: dxbctl dlq list [NODE]\n"
     "       dxbctl dlq retry ID|all\n"
     "       dxbctl dlq drop ID|all\n"
     "\n"
     "Messages the broker could not deliver (TTL passed, too many attempts,\n"
     "refused by the recipient) wait in the dead-letter queue with the reason.\n"
     "ID is the DLQ_ID column of 'dlq list'. Retry and drop are audited.\n"},
    {"stats", NULL, NULL, s_cmd_gov, ctl_gov_stats_synopsis, ctl_gov_stats_help},
    {"audit", s_audit_opts, NULL, s_cmd_audit,
     "  audit tail [--n N]             the newest audit records\n"
     "  audit verify                   check the audit hash chain and its signed checkpoints\n"
     "  audit checkpoints [--n N]      the newest signed checkpoints of the audit log\n"
     "  audit export [--since TIME] [--until TIME] [--format jsonl]\n"
     "                                 audit records as JSON lines, to re-verify elsewhere\n",
     "usage: dxbctl audit tail [--n N]\n"
     "       dxbctl audit verify\n"
     "       dxbctl audit checkpoints [--n N]\n"
     "       dxbctl audit export [--since TIME] [--until TIME] [--format jsonl]\n"
     "\n"
     "tail prints the newest N audit records (the broker's default when --n is\n"
     "not given): sequence, time, actor, action, object, result and detail.\n"
     "\n"
     "verify walks the whole hash chain and checks every checkpoint the broker\n"
     "signed with its key (a valid signature, and the chain still holding the\n"
     "signed hash at that seq). It prints records, head_seq, first_bad_seq,\n"
     "reason, checkpoints (stored / verified) and the last good checkpoint. When\n"
     "anything fails it exits 1 and names the first broken record and why:\n"
     "hash-mismatch, broken-link, missing-record, malformed-record,\n"
     "chain-shorter-than-checkpoint, chain-differs-from-checkpoint,\n"
     "checkpoint-signature-bad, checkpoint-other-key, checkpoint-malformed.\n"
     "\n"
     "checkpoints lists the newest N signed checkpoints: seq, time, hash,\n"
     "signer (the broker's public key) and signature, for checking elsewhere.\n"
     "\n"
     "export prints the records with since <= time < until as JSON lines (one\n"
     "object per line, whatever --json says): seq, time, time_ms, actor, action,\n"
     "object, result, detail, hash, prev_hash, and raw_hex when the fields do not\n"
     "give back the stored text. Each record's hash is BLAKE2b-256(prev_hash ||\n"
     "be64(seq) || text), text = \"time_ms\\tactor\\taction\\tobject\\tresult\\tdetail\",\n"
     "so an auditor can recompute the chain without dxb. Large logs are fetched\n"
     "in pages; if a page fails, what was printed are whole records and the exit\n"
     "status is 1.\n"
     "\n"
     "TIME is epoch milliseconds (1764064800000), an age before now (30s, 15m,\n"
     "24h, 7d, 2w) or ISO 8601 with a zone (2026-11-25T10:00:00Z,\n"
     "2026-11-25T18:00+08:00).\n"},
    {"transfers", s_transfers_opts, s_transfers_flags, s_cmd_transfers,
     "  transfers                      large-file transfers in flight, with progress\n"
     "  transfers --watch              redraw their progress until all are done\n"
     "  transfers --wait ID            wait until one transfer is done\n",
     "usage: dxbctl transfers\n"
     "       dxbctl transfers --watch [--interval MS]\n"
     "       dxbctl transfers --wait ID_PREFIX [--timeout-wait S] [--interval MS]\n"
     "\n"
     "Lists the chunked transfers of large files the broker knows: those in\n"
     "flight and those done within the last hour. Per transfer: the first 12\n"
     "hex digits of its id, sender, dataset, recipients, state (receiving: the\n"
     "broker does not have every chunk yet; delivering; done), the file bytes\n"
     "every recipient acknowledged out of the file's size, percent, average\n"
     "rate, estimated time left and age. Units are binary (1 MiB = 1048576\n"
     "bytes). With --json the broker's rows are printed as they are.\n"
     "\n"
     "--watch asks again every MS milliseconds (default 1000, at least 100). On\n"
     "a terminal it redraws a progress bar per transfer in place; otherwise it\n"
     "prints one line per transfer in flight per poll. It prints a summary and\n"
     "exits 0 once no transfer is receiving or delivering, or on SIGINT/SIGTERM.\n"
     "\n"
     "--wait follows the one transfer whose id starts with ID_PREFIX (hex, as\n"
     "in the ID column or the sender's AGT-XFERSTART log line) until it is done,\n"
     "showing its progress the same way. A transfer the broker does not know\n"
     "yet is awaited for up to 30 s. Exit status: 0 done; 1 it never appeared,\n"
     "disappeared unfinished, or the prefix matches several transfers; 2 not\n"
     "done within S seconds (default: no limit) or no answer from the broker;\n"
     "128+N when ended by signal N.\n"
     "\n"
     "examples:\n"
     "  dxbctl transfers\n"
     "  dxbctl --json transfers | jq '.[] | select(.state != \"done\")'\n"
     "  dxbctl transfers --watch --interval 500\n"
     "  dxbctl transfers --wait 3f9a2c71 --timeout-wait 3600 && echo delivered\n"},
    {"catalog", NULL, NULL, s_cmd_gov, ctl_gov_catalog_synopsis, ctl_gov_catalog_help},
    {"demands", NULL, NULL, s_cmd_gov, ctl_gov_demands_synopsis, ctl_gov_demands_help},
    {"grants", NULL, NULL, s_cmd_gov, ctl_gov_grants_synopsis, ctl_gov_grants_help},
    {"objections", NULL, NULL, s_cmd_gov, ctl_gov_objections_synopsis, ctl_gov_objections_help},
};

static void
s_print_help(FILE *out)
{
    fputs("usage: dxbctl [--admin ENDPOINT | --agent ENDPOINT] [--json] [--timeout MS] COMMAND\n"
          "              [ARGS]\n"
          "\n"
          "Operates a dxb broker through its admin socket.\n"
          "\n"
          "commands:\n",
          out);
    for (size_t i = 0; i < sizeof(s_cmds) / sizeof(s_cmds[0]); i++) {
        fputs(s_cmds[i].synopsis, out);
    }
    fputs("\n"
          "options:\n"
          "  --admin ENDPOINT  the broker's admin socket (default: $DXB_ADMIN, else\n"
          "                    " CTL_DEFAULT_ADMIN ")\n"
          "  --agent ENDPOINT  send catalog, demands, grants, objections and stats --by to\n"
          "                    an agent's local API (ipc://<data_dir>/api.sock): the agent\n"
          "                    acts as its node (default: $DXB_AGENT unless --admin is given)\n"
          "  --json            print results as JSON on stdout (for scripts)\n"
          "  --timeout MS      how long to wait for the broker (default 5000)\n"
          "  --help            this help; 'dxbctl COMMAND --help' explains a command\n"
          "  --version         print the version\n"
          "\n"
          "exit status: 0 success, 1 refused or failed, 2 no answer from the broker,\n"
          "64 usage error\n",
          out);
}

static const ctl_cmd_t *
s_find_cmd(const char *name)
{
    for (size_t i = 0; i < sizeof(s_cmds) / sizeof(s_cmds[0]); i++) {
        if (strcmp(s_cmds[i].name, name) == 0) {
            return &s_cmds[i];
        }
    }
    return NULL;
}

/* Returns the value of a global option given as "--opt V" or "--opt=V" at
 * argv[*i], advancing *i past it; NULL when argv[*i] is another word. Sets
 * *missing when the option is there without a value. */
static const char *
s_global_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    size_t len = strlen(name);
    const char *arg = argv[*i];

    if (strcmp(arg, name) == 0) {
        if (*i + 1 >= argc) {
            *missing = true;
            return NULL;
        }
        *i += 1;
        return argv[*i];
    }
    if (strncmp(arg, name, len) == 0 && arg[len] == '=') {
        return arg + len + 1;
    }
    return NULL;
}

/* Parses the options before the command; *cmd_index receives the index of
 * the command word. Returns CTL_CONTINUE or the exit code. */
static int
s_parse_global(ctl_opts_t *opts, int argc, char **argv, int *cmd_index)
{
    int i;

    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *arg = argv[i];
        bool missing = false;
        const char *value;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            s_print_help(stdout);
            return CTL_EXIT_OK;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("dxbctl %s\n", DXB_VERSION);
            return CTL_EXIT_OK;
        }
        if (strcmp(arg, "--json") == 0) {
            opts->json = true;
            continue;
        }
        value = s_global_value(argc, argv, &i, "--admin", &missing);
        if (value != NULL) {
            if (value[0] == '\0') {
                return s_usage_error(NULL, "'--admin' needs an endpoint");
            }
            opts->admin = value;
            opts->admin_given = true;
            continue;
        }
        if (!missing) {
            value = s_global_value(argc, argv, &i, "--agent", &missing);
        }
        if (value != NULL) {
            if (value[0] == '\0') {
                return s_usage_error(NULL, "'--agent' needs an endpoint");
            }
            opts->agent = value;
            continue;
        }
        if (!missing) {
            value = s_global_value(argc, argv, &i, "--timeout", &missing);
        }
        if (value != NULL) {
            if (!s_parse_count(value, CTL_MAX_TIMEOUT_MS, &opts->timeout_ms)) {
                return s_usage_error(NULL,
                                     "invalid value '%s' for '--timeout': expected "
                                     "milliseconds 1..%d",
                                     value, CTL_MAX_TIMEOUT_MS);
            }
            continue;
        }
        if (missing) {
            return s_usage_error(NULL, "option '%s' needs a value", arg);
        }
        return s_usage_error(NULL, "unknown option '%s'", arg);
    }
    *cmd_index = i;
    return CTL_CONTINUE;
}

int
main(int argc, char **argv)
{
    const char *env_admin = getenv("DXB_ADMIN");
    ctl_opts_t opts = {
        .admin = env_admin != NULL && env_admin[0] != '\0' ? env_admin : CTL_DEFAULT_ADMIN,
        .timeout_ms = CTL_DEFAULT_TIMEOUT_MS,
        .json = false,
    };
    const ctl_cmd_t *cmd;
    int cmd_index = 0;
    int exit_code;

    /* The common modules (keys) log their detail once, under our name. */
    dxb_log_init("dxbctl", DXB_LOG_WARN);
    exit_code = s_parse_global(&opts, argc, argv, &cmd_index);
    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    if (cmd_index >= argc) {
        return s_usage_error(NULL, "no command given");
    }
    cmd = s_find_cmd(argv[cmd_index]);
    if (cmd == NULL) {
        return s_usage_error(NULL, "unknown command '%s'", argv[cmd_index]);
    }
    if (opts.agent != NULL && opts.admin_given) {
        return s_usage_error(NULL, "'--admin' and '--agent' do not go together");
    }
    /* Only governance operations have a node's view (PROTOCOL.md 10). */
    if (opts.agent != NULL && cmd->run != s_cmd_gov) {
        return s_usage_error(NULL,
                             "'--agent' works with catalog, demands, grants, objections and "
                             "stats --by, not with '%s'",
                             cmd->name);
    }
    exit_code = cmd->run(cmd, &opts, argc - cmd_index, argv + cmd_index);
    /* A result that did not reach stdout (full disk, closed pipe) is a failure. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "dxbctl: cannot write the output: %s\n", strerror(errno));
        return CTL_EXIT_FAIL;
    }
    return exit_code;
}
