/* ctl_gov: the governance commands of dxbctl (PROTOCOL.md section 10):
 * catalog, demands, grants, objections and stats (with --by).
 *
 * Each command line becomes one governance operation (section 10.2). It goes
 * either to the broker's admin socket as an ADMIN_REQ, acting as the
 * operator, or, with --agent, to an agent's local API as a GOV_REQ: the agent
 * relays it as its own node and the broker decides what that node may do.
 * Arguments are checked here first (identifiers, numbers, states, the byte
 * limit of each argument on the chosen path), so that a mistake is a usage
 * error naming the option, not a refusal from the broker.
 *
 * Results print as tables chosen for a person (demands show how long they
 * waited, grants when they expire, ...) or, with --json, as the broker's rows
 * unchanged. A refusal prints the wire error's name and the broker's message.
 *
 * Exit status (as dxbctl's): 0 success; 1 refused, malformed reply or a local
 * failure; 2 no answer within the timeout; 64 usage error.
 * Thread context: single-threaded program; no global state.
 */
#ifndef CTL_GOV_H
#define CTL_GOV_H

#include <stdbool.h>
#include <stdint.h>

/* Parses TIME (epoch milliseconds, an age before now_ms such as 24h or 7d,
 * or ISO 8601 with a zone) into *out_ms; false when it is none of these. */
typedef bool (*ctl_gov_time_fn)(const char *text, uint64_t now_ms, uint64_t *out_ms);

/* Where and how a governance command runs. */
typedef struct {
    const char *admin;          /* broker's admin endpoint; borrowed */
    const char *agent;          /* agent's local API endpoint; borrowed; NULL: as the operator */
    int timeout_ms;             /* whole exchange: connect, request, reply; > 0 */
    bool json;                  /* print the rows as JSON (--json may also follow the command) */
    ctl_gov_time_fn parse_time; /* TIME of --since; dxbctl's, shared with `audit export` */
} ctl_gov_ctx_t;

/* Runs one governance command line: argv[0] is the command ("catalog",
 * "demands", "grants", "objections" or "stats"), the rest its words and
 * options; "--help" anywhere prints the command's help. ctx and argv are
 * borrowed. Returns the exit status. */
int ctl_gov_run(const ctl_gov_ctx_t *ctx, int argc, char **argv);

/* Lines for `dxbctl --help` and the text of `dxbctl COMMAND --help`. */
extern const char ctl_gov_catalog_synopsis[];
extern const char ctl_gov_catalog_help[];
extern const char ctl_gov_demands_synopsis[];
extern const char ctl_gov_demands_help[];
extern const char ctl_gov_grants_synopsis[];
extern const char ctl_gov_grants_help[];
extern const char ctl_gov_objections_synopsis[];
extern const char ctl_gov_objections_help[];
extern const char ctl_gov_stats_synopsis[];
extern const char ctl_gov_stats_help[];

#endif
