/* dxbctl: the operator's command line for a dxb broker.
 *
 * main() parses the global options and dispatches the first word through one
 * command table (s_cmds). Every command but keygen sends exactly one admin
 * request (PROTOCOL.md section 8) on a fresh DEALER socket, waits at most
 * --timeout for the reply and prints the result with ctl_render. dxbctl only
 * speaks the admin protocol; it never opens the broker's store.
 *
 * Exit status: 0 success; 1 the broker refused the command or a local step
 * failed; 2 no answer within --timeout; 64 usage error (EX_USAGE).
 * Thread context: single-threaded program.
 */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <zmq.h>

#include "common/dxb_err.h"
#include "common/dxb_keys.h"
#include "common/dxb_log.h"
#include "common/dxb_util.h"
#include "proto/dxb_msg.h"
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
/* Positional words and options one command takes at most. */
#define CTL_MAX_WORDS 3
#define CTL_MAX_OPTS 2

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
    int timeout_ms;    /* whole exchange: connect, request, reply; 1..CTL_MAX_TIMEOUT_MS */
    bool json;         /* print results as JSON instead of a table */
} ctl_opts_t;

typedef struct ctl_cmd ctl_cmd_t;
struct ctl_cmd {
    const char *name;             /* first word after the global options */
    const char *const *opt_names; /* options the command takes ("--limit"), NULL-ended */
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

/* Matches argv[*i] against the command's options ("--limit N" or
 * "--limit=N"). Returns CTL_CONTINUE on a match, 0 when no option matched,
 * or the usage exit code. */
static int
s_match_option(const ctl_cmd_t *cmd, int argc, char **argv, int *i, ctl_args_t *out)
{
    const char *arg = argv[*i];

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

/* Decodes the reply and prints it: the result on stdout, a refusal on
 * stderr. Returns the exit code. */
static int
s_admin_reply(const ctl_opts_t *opts, const char *command, const uint8_t *buf, size_t len,
              ctl_render_mode_t human_mode)
{
    dxb_frame_t frame;
    char detail[160] = "";
    dxb_err_t rc = dxb_msg_decode(buf, len, CTL_MAX_REPLY_BYTES, &frame, detail, sizeof(detail));

    if (rc == DXB_OK && frame.type != DXB_T_ADMIN_REP) {
        snprintf(detail, sizeof(detail), "message type %u instead of ADMIN_REP",
                 (unsigned)frame.type);
        rc = DXB_ETYPE;
    }
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: %s: malformed reply from broker: %s\n", command,
                detail[0] != '\0' ? detail : dxb_strerror(rc));
        return CTL_EXIT_FAIL;
    }
    if (frame.u.admin_rep.code != DXB_W_OK) {
        fprintf(stderr, "dxbctl: %s: %s: ", command, dxb_wire_err_name(frame.u.admin_rep.code));
        if (frame.u.admin_rep.message.len > 0) {
            ctl_render_text(stderr, frame.u.admin_rep.message.ptr, frame.u.admin_rep.message.len);
        } else {
            fputs(dxb_strerror(dxb_err_from_wire(frame.u.admin_rep.code)), stderr);
        }
        fputc('\n', stderr);
        return CTL_EXIT_FAIL;
    }
    rc = ctl_render_result(stdout, frame.u.admin_rep.result.ptr, frame.u.admin_rep.result.len,
                           opts->json ? CTL_RENDER_JSON : human_mode, detail, sizeof(detail));
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: %s: malformed reply from broker: %s\n", command, detail);
        return CTL_EXIT_FAIL;
    }
    /* stdout carries only the result, so that it can be piped; a note from
     * the broker goes to the operator on stderr. */
    if (!opts->json && frame.u.admin_rep.message.len > 0) {
        ctl_render_text(stderr, frame.u.admin_rep.message.ptr, frame.u.admin_rep.message.len);
        fputc('\n', stderr);
    }
    return CTL_EXIT_OK;
}

/* Runs one admin command (command and args as on the wire) and returns the
 * exit code. human_mode is how the result prints without --json. */
static int
s_admin_call(const ctl_opts_t *opts, const char *command, const char *const *args, size_t n_args,
             ctl_render_mode_t human_mode)
{
    msgpack_sbuffer req;
    zmq_msg_t rep;
    int exit_code = CTL_EXIT_FAIL;
    dxb_err_t rc;

    msgpack_sbuffer_init(&req);
    zmq_msg_init(&rep);
    rc = dxb_msg_enc_admin_req(&req, command, args, n_args);
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: %s: cannot encode the request: %s\n", command, dxb_strerror(rc));
        goto out;
    }
    rc = s_admin_exchange(opts, &req, &rep);
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
    exit_code = s_admin_reply(opts, command, zmq_msg_data(&rep), zmq_msg_size(&rep), human_mode);
out:
    zmq_msg_close(&rep);
    msgpack_sbuffer_destroy(&req);
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

static int
s_cmd_stats(const ctl_cmd_t *cmd, ctl_opts_t *opts, int argc, char **argv)
{
    ctl_args_t args;
    int exit_code = s_parse_args(cmd, opts, argc, argv, &args);

    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    if (args.n_words > 0) {
        return s_usage_error(cmd->name, "'stats' takes no arguments");
    }
    /* One row of many counters reads better as one counter per line. */
    return s_admin_call(opts, "stats", NULL, 0, CTL_RENDER_VERTICAL);
}

static int
s_cmd_audit(const ctl_cmd_t *cmd, ctl_opts_t *opts, int argc, char **argv)
{
    ctl_args_t args;
    int n = 0;
    int exit_code = s_parse_args(cmd, opts, argc, argv, &args);
    const char *wire_args[1] = {args.values[0]};

    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    if (args.n_words == 1 && strcmp(args.words[0], "verify") == 0 && args.values[0] == NULL) {
        /* The broker answers EINTEGRITY naming the first broken record. */
        return s_admin_call(opts, "audit.verify", NULL, 0, CTL_RENDER_VERTICAL);
    }
    if (args.n_words != 1 || strcmp(args.words[0], "tail") != 0) {
        return s_usage_error(cmd->name, "usage: dxbctl audit tail [--n N] | audit verify");
    }
    exit_code = s_check_count(cmd, "--n", args.values[0], &n);
    if (exit_code != CTL_CONTINUE) {
        return exit_code;
    }
    return s_admin_call(opts, "audit.tail", wire_args, n > 0 ? 1 : 0, CTL_RENDER_TABLE);
}

/* ---- command table ---------------------------------------------------- */

static const char *const s_keygen_opts[] = {"--name", "--out", NULL};
static const char *const s_queues_opts[] = {"--limit", NULL};
static const char *const s_audit_opts[] = {"--n", NULL};

static const ctl_cmd_t s_cmds[] = {
    {"keygen", s_keygen_opts, s_cmd_keygen,
     "  keygen --name ID --out DIR     create a node's key files (no broker needed)\n",
     "usage: dxbctl keygen --name ID --out DIR\n"
     "\n"
     "Creates the key pair of node ID and writes DIR/ID.pub (mode 0644) and\n"
     "DIR/ID.secret (mode 0600); DIR is created (0700) when missing. Existing key\n"
     "files are never overwritten. Prints the public key, which the broker's\n"
     "registry and the peers' configs name the node by.\n"
     "\n"
     "ID is 1-64 characters of [a-z0-9_-] in dot-separated labels, e.g. sq.hrss.\n"},
    {"nodes", NULL, s_cmd_nodes,
     "  nodes                          registered nodes and their connection state\n",
     "usage: dxbctl nodes\n"
     "\n"
     "Lists the nodes of the broker's registry: region, level, clearance, whether\n"
     "connected, when last seen and how many messages wait for it.\n"},
    {"queues", s_queues_opts, s_cmd_queues,
     "  queues                         the delivery queue of every node\n"
     "  queues peek NODE [--limit N]   messages waiting in NODE's queue, oldest first\n",
     "usage: dxbctl queues\n"
     "       dxbctl queues peek NODE [--limit N]\n"
     "\n"
     "'queues' shows, per node, the messages and bytes waiting, the age of the\n"
     "oldest and how many are in flight. 'queues peek' lists the head of one\n"
     "node's queue (message id, sender, dataset, size, attempts); payloads are\n"
     "end-to-end encrypted and never shown.\n"},
    {"dlq", NULL, s_cmd_dlq,
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
    {"stats", NULL, s_cmd_stats, "  stats                          the broker's counters\n",
     "usage: dxbctl stats\n"
     "\n"
     "Prints the broker's counters, one per line (one JSON row with --json).\n"},
    {"audit", s_audit_opts, s_cmd_audit,
     "  audit tail [--n N]             the newest audit records\n"
     "  audit verify                   check the audit hash chain\n",
     "usage: dxbctl audit tail [--n N]\n"
     "       dxbctl audit verify\n"
     "\n"
     "tail prints the newest N audit records (the broker's default when --n is\n"
     "not given): sequence, time, actor, action, object, result and detail.\n"
     "verify walks the whole hash chain; it exits 1 naming the first broken\n"
     "record when a record was changed, deleted, inserted or reordered.\n"},
};

static void
s_print_help(FILE *out)
{
    fputs("usage: dxbctl [--admin ENDPOINT] [--json] [--timeout MS] COMMAND [ARGS]\n"
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
    exit_code = cmd->run(cmd, &opts, argc - cmd_index, argv + cmd_index);
    /* A result that did not reach stdout (full disk, closed pipe) is a failure. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "dxbctl: cannot write the output: %s\n", strerror(errno));
        return CTL_EXIT_FAIL;
    }
    return exit_code;
}
