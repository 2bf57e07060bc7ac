/* ctl_gov: dxbctl's governance commands (see ctl_gov.h).
 *
 * A command line is split into words and options (s_split), matched to one
 * verb of s_verbs (s_resolve), checked (s_check), turned into the wire
 * arguments of the verb's operation (s_build), sent on a fresh DEALER socket
 * to the broker's admin socket or to an agent's local API (s_exchange) and
 * its reply printed (s_print). Every option takes a value, so the line can be
 * split before the verb is known; the verb then says which options it takes.
 *
 * The reply is untrusted: it is walked with the bounded reader proto/dxb_rd.h
 * only. Human tables are made by projecting the broker's rows onto the
 * columns of a view (renamed, some values formatted: durations, times, bytes)
 * into a new msgpack result that ctl_render prints, so that sanitising,
 * column widths and "(none)" stay in one place. The projection is as large
 * as the reply at most, which the socket bounds.
 */
#include "tools/ctl_gov.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <zmq.h>

#include "common/dxb_err.h"
#include "common/dxb_util.h"
#include "proto/dxb_msg.h"
#include "proto/dxb_rd.h"
#include "tools/ctl_render.h"

/* A reply larger than this is refused by the socket (PROTO-R2). */
#define CTL_GOV_MAX_REPLY_BYTES ((size_t)64 * 1024 * 1024)
/* Words of a command line: subcommand, its argument, and one too many. */
#define CTL_GOV_MAX_WORDS 3
/* Options one command line may give. */
#define CTL_GOV_MAX_OPTS 16
/* Keys one row of a reply may have (as ctl_render's columns). */
#define CTL_GOV_MAX_KEYS CTL_RENDER_MAX_COLS
/* --days and --expires: at most 100 years (the broker caps periods there). */
#define CTL_GOV_MAX_DAYS 36600
/* A field name of a catalog entry (PROTOCOL.md 10.1 CATENTRY). */
#define CTL_GOV_MAX_FIELD_NAME 128
/* The request id of our GOV_REQ; one request per socket. */
#define CTL_GOV_REQ_ID 1

enum {
    CTL_GOV_EXIT_OK = 0,
    CTL_GOV_EXIT_FAIL = 1,
    CTL_GOV_EXIT_NOANSWER = 2,
    CTL_GOV_EXIT_USAGE = EX_USAGE,
    CTL_GOV_CONTINUE = -1, /* internal: carry on */
};

/* ---- help ------------------------------------------------------------- */

const char ctl_gov_catalog_synopsis[] =
    "  catalog list                   the data catalog: datasets, owners, share types\n"
    "  catalog show DATASET           one catalog entry with its fields\n";

const char ctl_gov_catalog_help[] =
    "usage: dxbctl catalog list\n"
    "       dxbctl catalog show DATASET\n"
    "\n"
    "The catalog lists every dataset a node declares in its agent's config\n"
    "(datasets[].catalog): owner, title, level (0-3: the clearance a consumer\n"
    "needs), share type (none, conditional, unconditional), update frequency,\n"
    "region, number of fields and version. 'show' prints one entry as a block,\n"
    "then its fields one per line: name, type and sensitivity (0-3).\n"
    "\n"
    "Every node may read the catalog, also through --agent.\n"
    "\n"
    "examples:\n"
    "  dxbctl catalog list\n"
    "  dxbctl catalog show hr.employees\n"
    "  dxbctl --json catalog list | jq -r '.[].dataset'\n";

const char ctl_gov_demands_synopsis[] =
    "  demands [--state STATE]        demands for datasets and how long each waited\n"
    "  demands file DATASET --purpose TEXT [--fields A,B] [--days N] [--for NODE]\n"
    "                                 ask for a dataset for a consumer\n"
    "  demands approve ID [--fields A,B] [--mask POLICY] [--expires DAYS]\n"
    "                                 grant a pending demand, masked if need be\n"
    "  demands deny ID --reason TEXT  refuse a pending demand\n";

const char ctl_gov_demands_help[] =
    "usage: dxbctl demands [--state pending|approved|denied]\n"
    "       dxbctl demands file DATASET --purpose TEXT [--fields A,B] [--days N]\n"
    "                      [--for NODE]\n"
    "       dxbctl demands approve ID [--fields A,B] [--mask POLICY] [--expires DAYS]\n"
    "       dxbctl demands deny ID --reason TEXT\n"
    "\n"
    "A demand asks the owner of a dataset for access to it. The listing shows\n"
    "each demand's id, consumer, dataset, owner, state, how long it waited\n"
    "(pending: until now; decided: until the decision) and purpose; --state\n"
    "keeps one state. With --json the broker's rows are printed as they are\n"
    "(waited_s in seconds, times in epoch milliseconds).\n"
    "\n"
    "file: --purpose says what the data is for; --fields narrows the demand to\n"
    "some fields of the catalog entry (default: all); --days is the period asked\n"
    "for. The broker decides some demands at once: share type none, or a\n"
    "consumer cleared below the dataset's level, is denied; share type\n"
    "unconditional is approved with an automatic grant; the others wait for the\n"
    "owner. As the operator, --for NODE names the consumer; through --agent the\n"
    "agent's node is the consumer and --for is refused.\n"
    "\n"
    "approve makes a grant: --fields narrows it (default: the demand's fields),\n"
    "--mask sets the masking policy the provider applies before encryption\n"
    "(e.g. 'name=keep:1,0;id_no=keep:6,4;phone=keep:3,4;address=redact;pid=hash'),\n"
    "--expires ends it after DAYS (default: the demand's period, else never).\n"
    "deny needs a --reason. Only the dataset's owner (through its agent) or the\n"
    "operator may decide.\n"
    "\n"
    "ID is the ID column of the listing; DATASET and NODE are ids such as\n"
    "hr.employees and sq.civil. A text may be 256 bytes on the admin socket,\n"
    "1024 through --agent.\n"
    "\n"
    "examples:\n"
    "  dxbctl demands --state pending\n"
    "  dxbctl demands file hr.employees --purpose 'social assistance checks' \\\n"
    "      --fields name,id_no,phone --days 30 --for sq.civil\n"
    "  dxbctl --agent ipc:///var/lib/dxb-agent/api.sock demands file hr.employees \\\n"
    "      --purpose 'eligibility checks'\n"
    "  dxbctl demands approve 7 --mask 'id_no=keep:6,4;phone=keep:3,4' --expires 90\n"
    "  dxbctl demands deny 8 --reason 'covered by demand 7'\n";

const char ctl_gov_grants_synopsis[] =
    "  grants [--dataset DATASET]     who may receive which dataset, masked how\n"
    "  grants revoke ID [--reason TEXT]\n"
    "                                 end a grant: the next message is refused\n";

const char ctl_gov_grants_help[] =
    "usage: dxbctl grants [--dataset DATASET]\n"
    "       dxbctl grants revoke ID [--reason TEXT]\n"
    "\n"
    "A grant lets a consumer receive a dataset of share type conditional. The\n"
    "listing shows each grant's id, dataset, consumer, owner, state (active,\n"
    "revoked, expired), fields ('all' or a list), masking policy, when it\n"
    "expires and who granted it ('automatic' for unconditional shares). A new\n"
    "grant for the same dataset and consumer supersedes the old one.\n"
    "\n"
    "revoke ends a grant at once: the broker refuses the next message of that\n"
    "dataset to that consumer (EDENIED, audited); messages queued before are\n"
    "still delivered. Only the dataset's owner or the operator may revoke.\n"
    "\n"
    "examples:\n"
    "  dxbctl grants --dataset hr.employees\n"
    "  dxbctl grants revoke 3 --reason 'audit finding 2026-17'\n";

const char ctl_gov_objections_synopsis[] =
    "  objections [--state STATE]     objections to records and their answers\n"
    "  objections file DATASET --record REF --message TEXT [--by NODE]\n"
    "                                 object to a record of a dataset\n"
    "  objections respond ID --message TEXT\n"
    "                                 answer an objection (the owner)\n"
    "  objections close ID            close an objection (the filer)\n";

const char ctl_gov_objections_help[] =
    "usage: dxbctl objections [--state open|responded|closed]\n"
    "       dxbctl objections file DATASET --record REF --message TEXT [--by NODE]\n"
    "       dxbctl objections respond ID --message TEXT\n"
    "       dxbctl objections close ID\n"
    "\n"
    "An objection says that a record of a dataset is wrong. It goes to the\n"
    "dataset's owner, who responds; the filer closes it. The listing shows each\n"
    "objection's id, dataset, filer, owner, state, when it was filed, the\n"
    "record, the message and the response; --state keeps one state.\n"
    "\n"
    "file: --record names the record (e.g. id_no=32130219800101123X), --message\n"
    "says what is wrong. As the operator, --by NODE names the filer; through\n"
    "--agent the agent's node is the filer and --by is refused. respond: the\n"
    "owner or the operator. close: the filer or the operator.\n"
    "\n"
    "examples:\n"
    "  dxbctl objections --state open\n"
    "  dxbctl objections file hr.employees --record id_no=32130219800101123X \\\n"
    "      --message 'birth date wrong' --by sq.civil\n"
    "  dxbctl objections respond 4 --message \"corrected in tomorrow's snapshot\"\n"
    "  dxbctl objections close 4\n";

const char ctl_gov_stats_synopsis[] =
    "  stats                          the broker's counters\n"
    "  stats --by dataset|node [--since TIME]\n"
    "                                 evaluation figures per dataset or per node\n";

const char ctl_gov_stats_help[] =
    "usage: dxbctl stats\n"
    "       dxbctl stats --by dataset|node [--since TIME]\n"
    "\n"
    "Without --by, prints the broker's counters, one per line (one JSON row with\n"
    "--json).\n"
    "\n"
    "With --by, prints the evaluation figures per dataset or per node: messages\n"
    "published (DELIVERIES) and acknowledged (DELIVERED), bytes in and out,\n"
    "refused envelopes, interface requests, demands (and those PENDING), the\n"
    "average and longest time to decide a demand, objections (and those OPEN).\n"
    "Every catalog dataset, or every registered node, has a row. Per node,\n"
    "demands and objections count for the dataset's owner, who answers them.\n"
    "\n"
    "--since counts what happened from TIME on; the message figures are kept per\n"
    "UTC day, so they count from the start of TIME's day. TIME is epoch\n"
    "milliseconds, an age before now (24h, 7d, 2w) or ISO 8601 with a zone\n"
    "(2026-11-01T00:00:00+08:00).\n"
    "\n"
    "The figures are for the operator: through --agent the broker refuses them.\n"
    "\n"
    "examples:\n"
    "  dxbctl stats --by dataset --since 7d\n"
    "  dxbctl --json stats --by node | jq '.[] | {node, refused}'\n";

/* ---- options and verbs ------------------------------------------------ */

/* The options of the governance commands. 0 ends a list, so that a verb's
 * lists left out of its initialiser are empty. */
typedef enum {
    CTL_GOV_O_NONE, /* ends a list; no option */
    CTL_GOV_O_WORD, /* in a verb's wire list: its positional word */
    CTL_GOV_O_STATE,
    CTL_GOV_O_PURPOSE,
    CTL_GOV_O_FIELDS,
    CTL_GOV_O_DAYS,
    CTL_GOV_O_FOR,
    CTL_GOV_O_MASK,
    CTL_GOV_O_EXPIRES,
    CTL_GOV_O_REASON,
    CTL_GOV_O_DATASET,
    CTL_GOV_O_RECORD,
    CTL_GOV_O_MESSAGE,
    CTL_GOV_O_FILER, /* objections file --by NODE */
    CTL_GOV_O_BY,    /* stats --by dataset|node */
    CTL_GOV_O_SINCE,
    CTL_GOV_O_COUNT,
} ctl_gov_opt_t;

/* What an option's value (or a verb's word) must be. */
typedef enum {
    CTL_GOV_K_TEXT,    /* non-empty text */
    CTL_GOV_K_STATE,   /* one of the verb's states */
    CTL_GOV_K_FIELDS,  /* field names separated by commas */
    CTL_GOV_K_DAYS,    /* 1..CTL_GOV_MAX_DAYS */
    CTL_GOV_K_NODE,    /* a node id */
    CTL_GOV_K_DATASET, /* a dataset id */
    CTL_GOV_K_BY,      /* dataset or node */
    CTL_GOV_K_TIME,    /* TIME, sent as epoch milliseconds */
    CTL_GOV_K_ID,      /* a decimal id >= 1 */
} ctl_gov_kind_t;

static const struct {
    const char *name;    /* as typed */
    ctl_gov_kind_t kind; /* what its value must be */
} s_options[CTL_GOV_O_COUNT] = {
    [CTL_GOV_O_STATE] = {"--state", CTL_GOV_K_STATE},
    [CTL_GOV_O_PURPOSE] = {"--purpose", CTL_GOV_K_TEXT},
    [CTL_GOV_O_FIELDS] = {"--fields", CTL_GOV_K_FIELDS},
    [CTL_GOV_O_DAYS] = {"--days", CTL_GOV_K_DAYS},
    [CTL_GOV_O_FOR] = {"--for", CTL_GOV_K_NODE},
    [CTL_GOV_O_MASK] = {"--mask", CTL_GOV_K_TEXT},
    [CTL_GOV_O_EXPIRES] = {"--expires", CTL_GOV_K_DAYS},
    [CTL_GOV_O_REASON] = {"--reason", CTL_GOV_K_TEXT},
    [CTL_GOV_O_DATASET] = {"--dataset", CTL_GOV_K_DATASET},
    [CTL_GOV_O_RECORD] = {"--record", CTL_GOV_K_TEXT},
    [CTL_GOV_O_MESSAGE] = {"--message", CTL_GOV_K_TEXT},
    [CTL_GOV_O_FILER] = {"--by", CTL_GOV_K_NODE},
    [CTL_GOV_O_BY] = {"--by", CTL_GOV_K_BY},
    [CTL_GOV_O_SINCE] = {"--since", CTL_GOV_K_TIME},
};

/* How a column of a human table shows the broker's value. */
typedef enum {
    CTL_GOV_F_VALUE,    /* as sent */
    CTL_GOV_F_TEXT,     /* "" shows as "-" */
    CTL_GOV_F_FIELDS,   /* a comma list; "" (every field) shows as "all" */
    CTL_GOV_F_TIME,     /* epoch ms as a UTC date and time; 0 shows as "-" */
    CTL_GOV_F_EXPIRES,  /* as TIME; 0 shows as "never" */
    CTL_GOV_F_DURATION, /* seconds as "2h13m" */
    CTL_GOV_F_BYTES,    /* bytes in binary units */
    CTL_GOV_F_DAYS,     /* a number of days; 0 shows as "-" */
    CTL_GOV_F_REF,      /* the id of another object; 0 (none) shows as "-" */
} ctl_gov_fmt_t;

/* One column of a human table. */
typedef struct {
    const char *key;   /* key in the broker's rows */
    const char *title; /* column title (ctl_render upper-cases it) */
    ctl_gov_fmt_t fmt;
} ctl_gov_col_t;

static const ctl_gov_col_t s_cols_catalog[] = {
    {"dataset", "dataset", CTL_GOV_F_VALUE}, {"owner", "owner", CTL_GOV_F_VALUE},
    {"title", "title", CTL_GOV_F_TEXT},      {"level", "level", CTL_GOV_F_VALUE},
    {"share", "share", CTL_GOV_F_VALUE},     {"frequency", "frequency", CTL_GOV_F_TEXT},
    {"region", "region", CTL_GOV_F_TEXT},    {"n_fields", "fields", CTL_GOV_F_VALUE},
    {"version", "version", CTL_GOV_F_VALUE}, {"updated_ms", "updated", CTL_GOV_F_TIME},
};

/* `catalog show`: the entry as a block; its fields follow as a table. */
static const ctl_gov_col_t s_cols_entry[] = {
    {"dataset", "dataset", CTL_GOV_F_VALUE},
    {"title", "title", CTL_GOV_F_TEXT},
    {"description", "description", CTL_GOV_F_TEXT},
    {"owner", "owner", CTL_GOV_F_VALUE},
    {"level", "level", CTL_GOV_F_VALUE},
    {"share", "share", CTL_GOV_F_VALUE},
    {"frequency", "frequency", CTL_GOV_F_TEXT},
    {"region", "region", CTL_GOV_F_TEXT},
    {"version", "version", CTL_GOV_F_VALUE},
    {"created_ms", "created", CTL_GOV_F_TIME},
    {"updated_ms", "updated", CTL_GOV_F_TIME},
};

static const ctl_gov_col_t s_cols_demands[] = {
    {"demand_id", "id", CTL_GOV_F_VALUE},    {"consumer", "consumer", CTL_GOV_F_VALUE},
    {"dataset", "dataset", CTL_GOV_F_VALUE}, {"owner", "owner", CTL_GOV_F_VALUE},
    {"state", "state", CTL_GOV_F_VALUE},     {"waited_s", "waited", CTL_GOV_F_DURATION},
    {"purpose", "purpose", CTL_GOV_F_TEXT},
};

static const ctl_gov_col_t s_cols_grants[] = {
    {"grant_id", "id", CTL_GOV_F_VALUE},       {"dataset", "dataset", CTL_GOV_F_VALUE},
    {"consumer", "consumer", CTL_GOV_F_VALUE}, {"owner", "owner", CTL_GOV_F_VALUE},
    {"state", "state", CTL_GOV_F_VALUE},       {"fields", "fields", CTL_GOV_F_FIELDS},
    {"mask", "mask", CTL_GOV_F_TEXT},          {"expires_ms", "expires", CTL_GOV_F_EXPIRES},
    {"granted_by", "by", CTL_GOV_F_VALUE},
};

static const ctl_gov_col_t s_cols_objections[] = {
    {"objection_id", "id", CTL_GOV_F_VALUE},  {"dataset", "dataset", CTL_GOV_F_VALUE},
    {"filer", "filer", CTL_GOV_F_VALUE},      {"owner", "owner", CTL_GOV_F_VALUE},
    {"state", "state", CTL_GOV_F_VALUE},      {"created_ms", "filed", CTL_GOV_F_TIME},
    {"record", "record", CTL_GOV_F_TEXT},     {"message", "message", CTL_GOV_F_TEXT},
    {"response", "response", CTL_GOV_F_TEXT},
};

/* stats --by: the first column is the dataset or the node (s_stats_cols). */
#define CTL_GOV_STATS_COLS 13
static const ctl_gov_col_t s_cols_stats[CTL_GOV_STATS_COLS] = {
    {"dataset", "dataset", CTL_GOV_F_VALUE},
    {"deliveries", "deliveries", CTL_GOV_F_VALUE},
    {"delivered", "delivered", CTL_GOV_F_VALUE},
    {"refused", "refused", CTL_GOV_F_VALUE},
    {"bytes_in", "bytes_in", CTL_GOV_F_BYTES},
    {"bytes_out", "bytes_out", CTL_GOV_F_BYTES},
    {"requests", "requests", CTL_GOV_F_VALUE},
    {"demands", "demands", CTL_GOV_F_VALUE},
    {"demands_pending", "pending", CTL_GOV_F_VALUE},
    {"demand_avg_response_s", "avg_decision", CTL_GOV_F_DURATION},
    {"demand_max_response_s", "max_decision", CTL_GOV_F_DURATION},
    {"objections", "objections", CTL_GOV_F_VALUE},
    {"objections_open", "open", CTL_GOV_F_VALUE},
};

/* What an action made (a demand, grant or objection row), as a block. */
static const ctl_gov_col_t s_block_demand[] = {
    {"demand_id", "id", CTL_GOV_F_VALUE},       {"state", "state", CTL_GOV_F_VALUE},
    {"consumer", "consumer", CTL_GOV_F_VALUE},  {"dataset", "dataset", CTL_GOV_F_VALUE},
    {"owner", "owner", CTL_GOV_F_VALUE},        {"purpose", "purpose", CTL_GOV_F_TEXT},
    {"fields", "fields", CTL_GOV_F_FIELDS},     {"period_days", "period", CTL_GOV_F_DAYS},
    {"created_ms", "filed", CTL_GOV_F_TIME},    {"filed_by", "filed_by", CTL_GOV_F_TEXT},
    {"decided_ms", "decided", CTL_GOV_F_TIME},  {"decided_by", "decided_by", CTL_GOV_F_TEXT},
    {"waited_s", "waited", CTL_GOV_F_DURATION}, {"reason", "reason", CTL_GOV_F_TEXT},
    {"grant_id", "grant", CTL_GOV_F_REF},
};

static const ctl_gov_col_t s_block_grant[] = {
    {"grant_id", "id", CTL_GOV_F_VALUE},
    {"state", "state", CTL_GOV_F_VALUE},
    {"dataset", "dataset", CTL_GOV_F_VALUE},
    {"consumer", "consumer", CTL_GOV_F_VALUE},
    {"owner", "owner", CTL_GOV_F_VALUE},
    {"fields", "fields", CTL_GOV_F_FIELDS},
    {"mask", "mask", CTL_GOV_F_TEXT},
    {"created_ms", "granted", CTL_GOV_F_TIME},
    {"granted_by", "granted_by", CTL_GOV_F_TEXT},
    {"expires_ms", "expires", CTL_GOV_F_EXPIRES},
    {"revoked_ms", "revoked", CTL_GOV_F_TIME},
    {"demand_id", "demand", CTL_GOV_F_REF},
    {"automatic", "automatic", CTL_GOV_F_VALUE},
};

static const ctl_gov_col_t s_block_objection[] = {
    {"objection_id", "id", CTL_GOV_F_VALUE}, {"state", "state", CTL_GOV_F_VALUE},
    {"dataset", "dataset", CTL_GOV_F_VALUE}, {"owner", "owner", CTL_GOV_F_VALUE},
    {"filer", "filer", CTL_GOV_F_VALUE},     {"record", "record", CTL_GOV_F_TEXT},
    {"message", "message", CTL_GOV_F_TEXT},  {"response", "response", CTL_GOV_F_TEXT},
    {"created_ms", "filed", CTL_GOV_F_TIME}, {"responded_ms", "responded", CTL_GOV_F_TIME},
    {"closed_ms", "closed", CTL_GOV_F_TIME},
};

static const char *const s_demand_states[] = {"pending", "approved", "denied", NULL};
static const char *const s_objection_states[] = {"open", "responded", "closed", NULL};

/* Entries of a verb's option and wire lists, the ending 0 included. */
#define CTL_GOV_VERB_OPTS 6

/* One command line form: a command and subcommand, and the operation it is. */
typedef struct {
    const char *cmd;             /* "demands" */
    const char *sub;             /* "file"; NULL: the command alone (a listing) */
    const char *op;              /* operation on the wire (PROTOCOL.md 10.2) */
    const char *word;            /* its positional argument ("DATASET", "ID"); NULL: none */
    ctl_gov_kind_t word_kind;    /* what the word must be (when word is set) */
    int opts[CTL_GOV_VERB_OPTS]; /* options it takes, 0-terminated */
    uint32_t required;           /* bit 1 << option for each option it needs */
    int party;                   /* option naming the node the operator acts for: needed
                                    as the operator, refused through an agent; 0 none */
    const char *party_role;      /* what party names ("consumer"), for messages */
    int wire[CTL_GOV_VERB_OPTS]; /* wire args in order (CTL_GOV_O_WORD or an option),
                                    0-terminated; absent ones go as "" and trailing ""
                                    are dropped */
    const char *const *states;   /* values --state takes; NULL when it takes none */
    const ctl_gov_col_t *cols;   /* listing table; NULL: each row as a block */
    size_t n_cols;               /* entries of cols */
} ctl_gov_verb_t;

#define CTL_GOV_BIT(o) (1u << (o))
#define CTL_GOV_N(a) (sizeof(a) / sizeof((a)[0]))

static const ctl_gov_verb_t s_verbs[] = {
    {.cmd = "catalog",
     .sub = "list",
     .op = "catalog.list",
     .cols = s_cols_catalog,
     .n_cols = CTL_GOV_N(s_cols_catalog)},
    {.cmd = "catalog",
     .sub = "show",
     .op = "catalog.show",
     .word = "DATASET",
     .word_kind = CTL_GOV_K_DATASET,
     .wire = {CTL_GOV_O_WORD}},
    {.cmd = "demands",
     .op = "demand.list",
     .opts = {CTL_GOV_O_STATE},
     .wire = {CTL_GOV_O_STATE},
     .states = s_demand_states,
     .cols = s_cols_demands,
     .n_cols = CTL_GOV_N(s_cols_demands)},
    {.cmd = "demands",
     .sub = "file",
     .op = "demand.file",
     .word = "DATASET",
     .word_kind = CTL_GOV_K_DATASET,
     .opts = {CTL_GOV_O_PURPOSE, CTL_GOV_O_FIELDS, CTL_GOV_O_DAYS, CTL_GOV_O_FOR},
     .required = CTL_GOV_BIT(CTL_GOV_O_PURPOSE),
     .party = CTL_GOV_O_FOR,
     .party_role = "consumer",
     .wire = {CTL_GOV_O_WORD, CTL_GOV_O_PURPOSE, CTL_GOV_O_FIELDS, CTL_GOV_O_DAYS, CTL_GOV_O_FOR}},
    {.cmd = "demands",
     .sub = "approve",
     .op = "demand.approve",
     .word = "ID",
     .word_kind = CTL_GOV_K_ID,
     .opts = {CTL_GOV_O_FIELDS, CTL_GOV_O_MASK, CTL_GOV_O_EXPIRES},
     .wire = {CTL_GOV_O_WORD, CTL_GOV_O_FIELDS, CTL_GOV_O_MASK, CTL_GOV_O_EXPIRES}},
    {.cmd = "demands",
     .sub = "deny",
     .op = "demand.deny",
     .word = "ID",
     .word_kind = CTL_GOV_K_ID,
     .opts = {CTL_GOV_O_REASON},
     .required = CTL_GOV_BIT(CTL_GOV_O_REASON),
     .wire = {CTL_GOV_O_WORD, CTL_GOV_O_REASON}},
    {.cmd = "grants",
     .op = "grant.list",
     .opts = {CTL_GOV_O_DATASET},
     .wire = {CTL_GOV_O_DATASET},
     .cols = s_cols_grants,
     .n_cols = CTL_GOV_N(s_cols_grants)},
    {.cmd = "grants",
     .sub = "revoke",
     .op = "grant.revoke",
     .word = "ID",
     .word_kind = CTL_GOV_K_ID,
     .opts = {CTL_GOV_O_REASON},
     .wire = {CTL_GOV_O_WORD, CTL_GOV_O_REASON}},
    {.cmd = "objections",
     .op = "objection.list",
     .opts = {CTL_GOV_O_STATE},
     .wire = {CTL_GOV_O_STATE},
     .states = s_objection_states,
     .cols = s_cols_objections,
     .n_cols = CTL_GOV_N(s_cols_objections)},
    {.cmd = "objections",
     .sub = "file",
     .op = "objection.file",
     .word = "DATASET",
     .word_kind = CTL_GOV_K_DATASET,
     .opts = {CTL_GOV_O_RECORD, CTL_GOV_O_MESSAGE, CTL_GOV_O_FILER},
     .required = CTL_GOV_BIT(CTL_GOV_O_RECORD) | CTL_GOV_BIT(CTL_GOV_O_MESSAGE),
     .party = CTL_GOV_O_FILER,
     .party_role = "filer",
     .wire = {CTL_GOV_O_WORD, CTL_GOV_O_RECORD, CTL_GOV_O_MESSAGE, CTL_GOV_O_FILER}},
    {.cmd = "objections",
     .sub = "respond",
     .op = "objection.respond",
     .word = "ID",
     .word_kind = CTL_GOV_K_ID,
     .opts = {CTL_GOV_O_MESSAGE},
     .required = CTL_GOV_BIT(CTL_GOV_O_MESSAGE),
     .wire = {CTL_GOV_O_WORD, CTL_GOV_O_MESSAGE}},
    {.cmd = "objections",
     .sub = "close",
     .op = "objection.close",
     .word = "ID",
     .word_kind = CTL_GOV_K_ID,
     .wire = {CTL_GOV_O_WORD}},
    /* Without --by, `stats` is the broker's counters instead (s_stats_plain). */
    {.cmd = "stats",
     .op = "stats.by",
     .opts = {CTL_GOV_O_BY, CTL_GOV_O_SINCE},
     .wire = {CTL_GOV_O_BY, CTL_GOV_O_SINCE},
     .cols = s_cols_stats,
     .n_cols = CTL_GOV_N(s_cols_stats)},
};

/* One option as typed: "--name VALUE" or "--name=VALUE". */
typedef struct {
    const char *name;  /* borrowed from argv; not NUL-terminated after name_len bytes */
    size_t name_len;   /* bytes of the name, "--" included */
    const char *value; /* borrowed from argv */
} ctl_gov_raw_t;

/* One command line, split and then checked. */
typedef struct {
    const char *cmd;                      /* argv[0] */
    const char *words[CTL_GOV_MAX_WORDS]; /* positional words, borrowed */
    size_t n_words;                       /* entries of words */
    ctl_gov_raw_t raw[CTL_GOV_MAX_OPTS];  /* options in the order typed */
    size_t n_raw;                         /* entries of raw */
    const char *values[CTL_GOV_O_COUNT];  /* value per option once resolved; NULL absent */
    const char *word;                     /* the verb's positional word; NULL none */
    char since_ms[24];                    /* --since as decimal epoch ms */
} ctl_gov_line_t;

/* ---- usage ------------------------------------------------------------ */

static int s_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints a one-line usage error with a hint and returns the usage status. */
static int
s_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fputs("dxbctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "; try 'dxbctl %s --help'\n", cmd);
    return CTL_GOV_EXIT_USAGE;
}

/* "demands file", or "demands" for a listing. */
static void
s_verb_name(const ctl_gov_verb_t *verb, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", verb->cmd, verb->sub != NULL ? " " : "",
             verb->sub != NULL ? verb->sub : "");
}

static const char *
s_help_of(const char *cmd)
{
    static const struct {
        const char *cmd;
        const char *help;
    } helps[] = {
        {"catalog", ctl_gov_catalog_help}, {"demands", ctl_gov_demands_help},
        {"grants", ctl_gov_grants_help},   {"objections", ctl_gov_objections_help},
        {"stats", ctl_gov_stats_help},
    };

    for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
        if (strcmp(helps[i].cmd, cmd) == 0) {
            return helps[i].help;
        }
    }
    return NULL;
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

/* ---- parsing ---------------------------------------------------------- */

/* Splits argv into words and options; every option takes a value. --json is
 * accepted after the command too. Returns CTL_GOV_CONTINUE or the usage
 * status. */
static int
s_split(int argc, char **argv, ctl_gov_line_t *line, bool *json)
{
    memset(line, 0, sizeof(*line));
    line->cmd = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *eq;
        ctl_gov_raw_t *raw;

        if (strcmp(arg, "--json") == 0) {
            *json = true;
            continue;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            if (line->n_words == CTL_GOV_MAX_WORDS) {
                return s_usage(line->cmd, "too many arguments for '%s': '%s'", line->cmd, arg);
            }
            line->words[line->n_words++] = arg;
            continue;
        }
        if (arg[1] != '-' || arg[2] == '\0') {
            return s_usage(line->cmd, "unknown option '%s' for '%s'", arg, line->cmd);
        }
        if (line->n_raw == CTL_GOV_MAX_OPTS) {
            return s_usage(line->cmd, "too many options for '%s'", line->cmd);
        }
        raw = &line->raw[line->n_raw++];
        raw->name = arg;
        eq = strchr(arg, '=');
        if (eq != NULL) {
            raw->name_len = (size_t)(eq - arg);
            raw->value = eq + 1;
            continue;
        }
        raw->name_len = strlen(arg);
        if (i + 1 >= argc) {
            return s_usage(line->cmd, "option '%s' needs a value", arg);
        }
        raw->value = argv[++i];
    }
    return CTL_GOV_CONTINUE;
}

/* The verb of cmd whose subcommand is sub (NULL: the command alone). */
static const ctl_gov_verb_t *
s_find_verb(const char *cmd, const char *sub)
{
    for (size_t i = 0; i < CTL_GOV_N(s_verbs); i++) {
        const ctl_gov_verb_t *v = &s_verbs[i];

        if (strcmp(v->cmd, cmd) != 0) {
            continue;
        }
        if ((sub == NULL && v->sub == NULL) ||
            (sub != NULL && v->sub != NULL && strcmp(v->sub, sub) == 0)) {
            return v;
        }
    }
    return NULL;
}

/* "file, approve or deny": the subcommands of cmd. */
static void
s_list_subs(const char *cmd, char *out, size_t cap)
{
    size_t n = 0;
    size_t total = 0;
    size_t used = 0;

    for (size_t i = 0; i < CTL_GOV_N(s_verbs); i++) {
        total += strcmp(s_verbs[i].cmd, cmd) == 0 && s_verbs[i].sub != NULL ? 1 : 0;
    }
    out[0] = '\0';
    for (size_t i = 0; i < CTL_GOV_N(s_verbs) && used < cap; i++) {
        const ctl_gov_verb_t *v = &s_verbs[i];
        const char *sep;
        int w;

        if (strcmp(v->cmd, cmd) != 0 || v->sub == NULL) {
            continue;
        }
        n++;
        if (n == 1) {
            sep = "";
        } else {
            sep = n == total ? " or " : ", ";
        }
        w = snprintf(out + used, cap - used, "%s%s", sep, v->sub);
        used += w > 0 ? (size_t)w : 0;
    }
}

/* Finds the verb of the line and its positional word. Returns
 * CTL_GOV_CONTINUE or the usage status. */
static int
s_resolve(ctl_gov_line_t *line, const ctl_gov_verb_t **verb_out)
{
    const ctl_gov_verb_t *verb = NULL;
    size_t next = 0;
    char subs[128];
    char name[64];

    if (line->n_words > 0) {
        verb = s_find_verb(line->cmd, line->words[0]);
        next = verb != NULL ? 1 : 0;
    }
    if (verb == NULL) {
        verb = s_find_verb(line->cmd, NULL);
    }
    s_list_subs(line->cmd, subs, sizeof(subs));
    if (verb == NULL && line->n_words == 0) {
        return s_usage(line->cmd, "'%s' needs a subcommand: %s", line->cmd, subs);
    }
    if (verb != NULL && verb->sub == NULL && line->n_words > 0 && subs[0] == '\0') {
        return s_usage(line->cmd, "'%s' takes no arguments, got '%s'", line->cmd, line->words[0]);
    }
    if (verb == NULL || (verb->sub == NULL && line->n_words > 0)) {
        return s_usage(line->cmd, "unknown subcommand '%s %s'; expected %s", line->cmd,
                       line->words[0], subs);
    }
    s_verb_name(verb, name, sizeof(name));
    if (verb->word != NULL && line->n_words == next) {
        return s_usage(line->cmd, "'%s' needs %s %s", name,
                       strcmp(verb->word, "ID") == 0 ? "an" : "a", verb->word);
    }
    if (verb->word != NULL) {
        line->word = line->words[next++];
    }
    if (line->n_words > next) {
        return s_usage(line->cmd, "too many arguments for '%s': '%s'", name, line->words[next]);
    }
    *verb_out = verb;
    return CTL_GOV_CONTINUE;
}

static bool
s_raw_is(const ctl_gov_raw_t *raw, const char *name)
{
    return strlen(name) == raw->name_len && strncmp(raw->name, name, raw->name_len) == 0;
}

/* The option of verb that raw names; -1 when the verb takes none by that name. */
static int
s_verb_option(const ctl_gov_verb_t *verb, const ctl_gov_raw_t *raw)
{
    for (size_t k = 0; k < CTL_GOV_VERB_OPTS && verb->opts[k] != CTL_GOV_O_NONE; k++) {
        if (s_raw_is(raw, s_options[verb->opts[k]].name)) {
            return verb->opts[k];
        }
    }
    return -1;
}

/* Refuses an option the verb does not take, naming the form that takes it. */
static int
s_foreign_option(const ctl_gov_line_t *line, const ctl_gov_verb_t *verb, const ctl_gov_raw_t *raw)
{
    char name[64];
    char other[64];

    s_verb_name(verb, name, sizeof(name));
    for (size_t i = 0; i < CTL_GOV_N(s_verbs); i++) {
        if (strcmp(s_verbs[i].cmd, verb->cmd) == 0 && s_verb_option(&s_verbs[i], raw) >= 0) {
            s_verb_name(&s_verbs[i], other, sizeof(other));
            return s_usage(line->cmd, "option '%.*s' belongs to '%s', not '%s'", (int)raw->name_len,
                           raw->name, other, name);
        }
    }
    return s_usage(line->cmd, "unknown option '%.*s' for '%s'", (int)raw->name_len, raw->name,
                   name);
}

/* ---- checking --------------------------------------------------------- */

/* A decimal number 1..max without sign, spaces or leading zeros. */
static bool
s_parse_number(const char *text, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (text[0] < '1' || text[0] > '9') {
        return false;
    }
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* Field names separated by commas, none empty nor longer than a field name. */
static bool
s_fields_valid(const char *text)
{
    const char *p = text;

    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);

        if (len == 0 || len > CTL_GOV_MAX_FIELD_NAME) {
            return false;
        }
        if (comma == NULL) {
            return true;
        }
        p = comma + 1;
    }
}

static bool
s_state_valid(const char *const *states, const char *text)
{
    for (size_t i = 0; states != NULL && states[i] != NULL; i++) {
        if (strcmp(states[i], text) == 0) {
            return true;
        }
    }
    return false;
}

/* Checks one value (what names it: "--days" or "ID"). Returns
 * CTL_GOV_CONTINUE or the usage status. */
static int
s_check_value(const ctl_gov_ctx_t *ctx, const ctl_gov_verb_t *verb, ctl_gov_line_t *line,
              ctl_gov_kind_t kind, const char *what, const char *value)
{
    uint64_t n = 0;
    uint64_t ms = 0;

    switch (kind) {
    case CTL_GOV_K_TEXT:
        if (value[0] == '\0') {
            return s_usage(line->cmd, "'%s' must not be empty", what);
        }
        return CTL_GOV_CONTINUE;
    case CTL_GOV_K_STATE:
        if (!s_state_valid(verb->states, value)) {
            return s_usage(line->cmd, "invalid value '%s' for '%s': expected %s, %s or %s", value,
                           what, verb->states[0], verb->states[1], verb->states[2]);
        }
        return CTL_GOV_CONTINUE;
    case CTL_GOV_K_FIELDS:
        if (!s_fields_valid(value)) {
            return s_usage(line->cmd,
                           "invalid value '%s' for '%s': expected field names separated by "
                           "commas (name,id_no)",
                           value, what);
        }
        return CTL_GOV_CONTINUE;
    case CTL_GOV_K_DAYS:
        if (!s_parse_number(value, CTL_GOV_MAX_DAYS, &n)) {
            return s_usage(line->cmd, "invalid value '%s' for '%s': expected days 1..%d", value,
                           what, CTL_GOV_MAX_DAYS);
        }
        return CTL_GOV_CONTINUE;
    case CTL_GOV_K_NODE:
    case CTL_GOV_K_DATASET:
        if (!dxb_id_valid(value, strlen(value))) {
            return s_usage(line->cmd,
                           "invalid %s id '%s' for '%s': expected 1-64 characters of "
                           "[a-z0-9_-] in dot-separated labels",
                           kind == CTL_GOV_K_NODE ? "node" : "dataset", value, what);
        }
        return CTL_GOV_CONTINUE;
    case CTL_GOV_K_BY:
        if (strcmp(value, "dataset") != 0 && strcmp(value, "node") != 0) {
            return s_usage(line->cmd, "invalid value '%s' for '%s': expected dataset or node",
                           value, what);
        }
        return CTL_GOV_CONTINUE;
    case CTL_GOV_K_TIME:
        if (ctx->parse_time == NULL || !ctx->parse_time(value, dxb_now_ms(), &ms)) {
            return s_usage(line->cmd,
                           "invalid TIME '%s' for '%s': expected epoch milliseconds, an age "
                           "(30m, 24h, 7d) or ISO 8601 with a zone (2026-11-25T10:00:00Z)",
                           value, what);
        }
        snprintf(line->since_ms, sizeof(line->since_ms), "%" PRIu64, ms);
        return CTL_GOV_CONTINUE;
    case CTL_GOV_K_ID:
        if (!s_parse_number(value, UINT64_MAX, &n)) {
            return s_usage(line->cmd,
                           "invalid %s '%s': expected a number such as 7 (the ID "
                           "column of 'dxbctl %s')",
                           what, value, verb->cmd);
        }
        return CTL_GOV_CONTINUE;
    }
    return CTL_GOV_CONTINUE;
}

/* Checks who the command acts for: as the operator the party option names
 * the node and is needed; through an agent the agent's node is the party. */
static int
s_check_party(const ctl_gov_ctx_t *ctx, const ctl_gov_verb_t *verb, const ctl_gov_line_t *line)
{
    const char *opt;
    char name[64];

    if (verb->party == CTL_GOV_O_NONE) {
        return CTL_GOV_CONTINUE;
    }
    opt = s_options[verb->party].name;
    s_verb_name(verb, name, sizeof(name));
    if (ctx->agent != NULL && line->values[verb->party] != NULL) {
        return s_usage(line->cmd,
                       "option '%s' is for the operator: through --agent the agent's node is "
                       "the %s",
                       opt, verb->party_role);
    }
    if (ctx->agent == NULL && line->values[verb->party] == NULL) {
        return s_usage(line->cmd,
                       "'%s' as the operator needs '%s NODE' (the %s), or --agent to act as "
                       "that node",
                       name, opt, verb->party_role);
    }
    return CTL_GOV_CONTINUE;
}

/* Resolves the options against the verb and checks every value. Returns
 * CTL_GOV_CONTINUE or the usage status. */
static int
s_check(const ctl_gov_ctx_t *ctx, const ctl_gov_verb_t *verb, ctl_gov_line_t *line)
{
    char name[64];
    int rc;

    s_verb_name(verb, name, sizeof(name));
    for (size_t i = 0; i < line->n_raw; i++) {
        const ctl_gov_raw_t *raw = &line->raw[i];
        int o = s_verb_option(verb, raw);

        if (o < 0) {
            return s_foreign_option(line, verb, raw);
        }
        if (line->values[o] != NULL) {
            return s_usage(line->cmd, "option '%s' is given twice", s_options[o].name);
        }
        line->values[o] = raw->value;
    }
    for (int o = CTL_GOV_O_STATE; o < CTL_GOV_O_COUNT; o++) {
        if ((verb->required & CTL_GOV_BIT(o)) != 0 && line->values[o] == NULL) {
            return s_usage(line->cmd, "'%s' needs '%s'", name, s_options[o].name);
        }
    }
    if (line->word != NULL) {
        rc = s_check_value(ctx, verb, line, verb->word_kind, verb->word, line->word);
        if (rc != CTL_GOV_CONTINUE) {
            return rc;
        }
    }
    for (int o = CTL_GOV_O_STATE; o < CTL_GOV_O_COUNT; o++) {
        if (line->values[o] == NULL) {
            continue;
        }
        rc = s_check_value(ctx, verb, line, s_options[o].kind, s_options[o].name, line->values[o]);
        if (rc != CTL_GOV_CONTINUE) {
            return rc;
        }
    }
    if (line->values[CTL_GOV_O_SINCE] != NULL) {
        line->values[CTL_GOV_O_SINCE] = line->since_ms;
    }
    return s_check_party(ctx, verb, line);
}

/* True when text is valid UTF-8 of at most DXB_MAX_GOV_ARG bytes: the
 * codec's own rule, asked through its encoder so that there is one rule. */
static bool
s_text_ok(const char *text)
{
    msgpack_sbuffer probe;
    bool ok;

    msgpack_sbuffer_init(&probe);
    ok = dxb_msg_enc_gov_req(&probe, CTL_GOV_REQ_ID, "probe", &text, 1) == DXB_OK;
    msgpack_sbuffer_destroy(&probe);
    return ok;
}

/* Fills args with the verb's wire arguments (borrowed from the line):
 * absent ones as "", trailing "" dropped. Checks each against the byte
 * limit of the path. Returns CTL_GOV_CONTINUE or the usage status. */
static int
s_build(const ctl_gov_ctx_t *ctx, const ctl_gov_verb_t *verb, const ctl_gov_line_t *line,
        const char **args, size_t *n_args)
{
    size_t limit = ctx->agent != NULL ? DXB_MAX_GOV_ARG : DXB_MAX_ADMIN_ARG;
    size_t n = 0;

    *n_args = 0;
    for (size_t k = 0; k < CTL_GOV_VERB_OPTS && verb->wire[k] != CTL_GOV_O_NONE; k++) {
        int src = verb->wire[k];
        const char *value = src == CTL_GOV_O_WORD ? line->word : line->values[src];
        const char *what = src == CTL_GOV_O_WORD ? verb->word : s_options[src].name;

        args[k] = value != NULL ? value : "";
        n = k + 1;
        if (value == NULL) {
            continue;
        }
        if (strlen(value) > limit) {
            return s_usage(line->cmd,
                           "'%s' is %zu bytes; %s takes at most %zu bytes per argument%s", what,
                           strlen(value), ctx->agent != NULL ? "an agent" : "the admin socket",
                           limit, ctx->agent != NULL ? "" : " (1024 through --agent)");
        }
        if (!s_text_ok(value)) {
            return s_usage(line->cmd,
                           "'%s' is not valid UTF-8 text (convert it first, e.g. "
                           "with iconv -f gbk -t utf-8)",
                           what);
        }
    }
    while (n > 0 && args[n - 1][0] == '\0') {
        n--;
    }
    *n_args = n;
    return CTL_GOV_CONTINUE;
}

/* ---- exchange --------------------------------------------------------- */

/* The peer of the command: its name and the option that points at it. */
static const char *
s_peer(const ctl_gov_ctx_t *ctx)
{
    return ctx->agent != NULL ? "agent" : "broker";
}

static const char *
s_endpoint(const ctl_gov_ctx_t *ctx)
{
    return ctx->agent != NULL ? ctx->agent : ctx->admin;
}

/* Waits until sock is ready for events or the deadline passes.
 * Errors: DXB_ETIMEOUT, DXB_EIO (printed). */
static dxb_err_t
s_wait(void *sock, short events, uint64_t deadline_ms)
{
    for (;;) {
        zmq_pollitem_t item = {.socket = sock, .events = events};
        uint64_t now = dxb_mono_ms();
        int n = zmq_poll(&item, 1, now >= deadline_ms ? 0 : (long)(deadline_ms - now));

        if (n < 0 && zmq_errno() != EINTR) {
            fprintf(stderr, "dxbctl: cannot poll the socket: %s\n", zmq_strerror(zmq_errno()));
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
    /* Queue nothing before the peer is there, so that "no answer" means no
     * peer, not a request parked in a local pipe. */
    int immediate = 1;
    int64_t max_bytes = (int64_t)CTL_GOV_MAX_REPLY_BYTES;

    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger_ms, sizeof(linger_ms)) != 0 ||
        zmq_setsockopt(sock, ZMQ_IMMEDIATE, &immediate, sizeof(immediate)) != 0 ||
        zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max_bytes, sizeof(max_bytes)) != 0) {
        fprintf(stderr, "dxbctl: cannot set socket options: %s\n", zmq_strerror(zmq_errno()));
        return DXB_EIO;
    }
    return DXB_OK;
}

/* Sends req to the command's peer and receives one reply frame into rep
 * (initialised and owned by the caller). Prints its own errors except the
 * timeout. Errors: DXB_EINVAL (endpoint), DXB_ETIMEOUT, DXB_EPROTO (more
 * than one frame, PROTO-R1), DXB_EIO. */
static dxb_err_t
s_exchange(const ctl_gov_ctx_t *ctx, const msgpack_sbuffer *req, zmq_msg_t *rep)
{
    uint64_t deadline_ms = dxb_mono_ms() + (uint64_t)ctx->timeout_ms;
    const char *endpoint = s_endpoint(ctx);
    void *zctx = NULL;
    void *sock = NULL;
    dxb_err_t rc = DXB_EIO;

    zctx = zmq_ctx_new();
    if (zctx == NULL) {
        fprintf(stderr, "dxbctl: cannot create a zmq context: %s\n", zmq_strerror(zmq_errno()));
        goto out;
    }
    sock = zmq_socket(zctx, ZMQ_DEALER);
    if (sock == NULL) {
        fprintf(stderr, "dxbctl: cannot create a socket: %s\n", zmq_strerror(zmq_errno()));
        goto out;
    }
    rc = s_socket_setup(sock);
    if (rc != DXB_OK) {
        goto out;
    }
    if (zmq_connect(sock, endpoint) != 0) {
        fprintf(stderr, "dxbctl: invalid %s endpoint '%s': %s; try 'dxbctl --help'\n",
                ctx->agent != NULL ? "agent" : "admin", endpoint, zmq_strerror(zmq_errno()));
        rc = DXB_EINVAL;
        goto out;
    }
    rc = s_wait(sock, ZMQ_POLLOUT, deadline_ms);
    if (rc != DXB_OK) {
        goto out;
    }
    if (zmq_send(sock, req->data, req->size, ZMQ_DONTWAIT) < 0) {
        fprintf(stderr, "dxbctl: cannot send to '%s': %s\n", endpoint, zmq_strerror(zmq_errno()));
        rc = DXB_EIO;
        goto out;
    }
    rc = s_wait(sock, ZMQ_POLLIN, deadline_ms);
    if (rc != DXB_OK) {
        goto out;
    }
    if (zmq_msg_recv(rep, sock, ZMQ_DONTWAIT) < 0) {
        fprintf(stderr, "dxbctl: cannot receive from '%s': %s\n", endpoint,
                zmq_strerror(zmq_errno()));
        rc = DXB_EIO;
        goto out;
    }
    if (zmq_msg_more(rep)) {
        fprintf(stderr, "dxbctl: malformed reply from %s: more than one frame\n", s_peer(ctx));
        rc = DXB_EPROTO;
    }
out:
    if (sock != NULL) {
        zmq_close(sock);
    }
    if (zctx != NULL) {
        zmq_ctx_term(zctx);
    }
    return rc;
}

/* What a reply says, whichever path it came by; borrowed from the frame. */
typedef struct {
    uint16_t code;       /* wire error code */
    dxb_bytes_t message; /* the peer's text */
    dxb_bytes_t result;  /* raw msgpack: nil or an array of maps */
} ctl_gov_reply_t;

/* Decodes a reply (borrowed by *reply) and checks that it is the answer to
 * our request with code OK; a malformed reply or a refusal is printed.
 * Returns CTL_GOV_CONTINUE or the exit status. */
static int
s_decode(const ctl_gov_ctx_t *ctx, const char *op, const uint8_t *buf, size_t len,
         dxb_frame_t *frame, ctl_gov_reply_t *reply)
{
    char detail[160] = "";
    uint8_t want = ctx->agent != NULL ? DXB_T_GOV_REP : DXB_T_ADMIN_REP;
    dxb_err_t rc = dxb_msg_decode(buf, len, CTL_GOV_MAX_REPLY_BYTES, frame, detail, sizeof(detail));

    if (rc == DXB_OK && frame->type != want) {
        snprintf(detail, sizeof(detail), "message type %u instead of %s", (unsigned)frame->type,
                 want == DXB_T_GOV_REP ? "GOV_REP" : "ADMIN_REP");
        rc = DXB_ETYPE;
    } else if (rc == DXB_OK && want == DXB_T_GOV_REP && frame->u.gov_rep.req != CTL_GOV_REQ_ID) {
        snprintf(detail, sizeof(detail), "answer to request %" PRIu32 ", not ours",
                 frame->u.gov_rep.req);
        rc = DXB_EPROTO;
    }
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: %s: malformed reply from %s: %s\n", op, s_peer(ctx),
                detail[0] != '\0' ? detail : dxb_strerror(rc));
        return CTL_GOV_EXIT_FAIL;
    }
    if (want == DXB_T_GOV_REP) {
        reply->code = frame->u.gov_rep.code;
        reply->message = frame->u.gov_rep.message;
        reply->result = frame->u.gov_rep.result;
    } else {
        reply->code = frame->u.admin_rep.code;
        reply->message = frame->u.admin_rep.message;
        reply->result = frame->u.admin_rep.result;
    }
    if (reply->code != DXB_W_OK) {
        fprintf(stderr, "dxbctl: %s: %s: ", op, dxb_wire_err_name(reply->code));
        if (reply->message.len > 0) {
            ctl_render_text(stderr, reply->message.ptr, reply->message.len);
        } else {
            fputs(dxb_strerror(dxb_err_from_wire(reply->code)), stderr);
        }
        fputc('\n', stderr);
        return CTL_GOV_EXIT_FAIL;
    }
    return CTL_GOV_CONTINUE;
}

/* Sends op with args to the command's peer and receives the reply into rep
 * (initialised and owned by the caller); on CTL_GOV_CONTINUE *reply holds
 * an OK answer borrowing from rep. Returns CTL_GOV_CONTINUE or the exit
 * status after printing why not. */
static int
s_call(const ctl_gov_ctx_t *ctx, const char *op, const char *const *args, size_t n_args,
       zmq_msg_t *rep, ctl_gov_reply_t *reply)
{
    msgpack_sbuffer req;
    dxb_frame_t frame;
    int exit_code = CTL_GOV_EXIT_FAIL;
    dxb_err_t rc;

    msgpack_sbuffer_init(&req);
    rc = ctx->agent != NULL ? dxb_msg_enc_gov_req(&req, CTL_GOV_REQ_ID, op, args, n_args)
                            : dxb_msg_enc_admin_req(&req, op, args, n_args);
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: %s: cannot encode the request: %s\n", op, dxb_strerror(rc));
        goto out;
    }
    rc = s_exchange(ctx, &req, rep);
    if (rc == DXB_ETIMEOUT) {
        fprintf(stderr,
                "dxbctl: no answer from %s at %s within %d ms (is dxb-%s running? is --%s "
                "right?)\n",
                s_peer(ctx), s_endpoint(ctx), ctx->timeout_ms, s_peer(ctx),
                ctx->agent != NULL ? "agent" : "admin");
        exit_code = CTL_GOV_EXIT_NOANSWER;
        goto out;
    }
    if (rc != DXB_OK) {
        exit_code = rc == DXB_EINVAL ? CTL_GOV_EXIT_USAGE : CTL_GOV_EXIT_FAIL;
        goto out;
    }
    exit_code = s_decode(ctx, op, zmq_msg_data(rep), zmq_msg_size(rep), &frame, reply);
out:
    msgpack_sbuffer_destroy(&req);
    return exit_code;
}

/* ---- rows ------------------------------------------------------------- */

/* One scalar of a row, borrowed from the reply. */
typedef struct {
    dxb_rd_type_t type; /* NIL, BOOL, UINT, INT, FLOAT or STR */
    bool b;
    uint64_t u;
    int64_t i;
    double f;
    const uint8_t *s; /* borrowed; STR only */
    size_t s_len;     /* bytes of s */
} ctl_gov_val_t;

/* One key and value of a row, borrowed from the reply. */
typedef struct {
    const uint8_t *key;
    size_t key_len; /* 1..CTL_RENDER_MAX_KEY */
    ctl_gov_val_t v;
} ctl_gov_kv_t;

static void
s_read_val(dxb_rd_t *rd, ctl_gov_val_t *v)
{
    memset(v, 0, sizeof(*v));
    v->type = dxb_rd_peek(rd);
    switch (v->type) {
    case DXB_RD_NIL:
        dxb_rd_nil(rd);
        break;
    case DXB_RD_BOOL:
        v->b = dxb_rd_bool(rd);
        break;
    case DXB_RD_UINT:
        v->u = dxb_rd_uint(rd, UINT64_MAX);
        break;
    case DXB_RD_INT:
        v->i = dxb_rd_int(rd);
        break;
    case DXB_RD_FLOAT:
        v->f = dxb_rd_float(rd);
        break;
    case DXB_RD_STR:
        v->s = dxb_rd_str(rd, SIZE_MAX, &v->s_len);
        break;
    default:
        dxb_rd_fail(rd, "a value is not nil, bool, int, float or str");
        break;
    }
}

/* Reads one row (a map of str keys to scalars) into kv, at most cap pairs.
 * Returns the pairs read; a row of another shape fails the reader. */
static size_t
s_read_row(dxb_rd_t *rd, ctl_gov_kv_t *kv, size_t cap)
{
    uint32_t n = dxb_rd_map(rd);

    if (n > cap) {
        dxb_rd_fail(rd, "a row has more keys than dxbctl shows");
        return 0;
    }
    for (uint32_t i = 0; i < n && dxb_rd_ok(rd); i++) {
        if (dxb_rd_peek(rd) != DXB_RD_STR) {
            dxb_rd_fail(rd, "a key is not a str");
            return 0;
        }
        kv[i].key = dxb_rd_str(rd, CTL_RENDER_MAX_KEY, &kv[i].key_len);
        if (dxb_rd_ok(rd) && kv[i].key_len == 0) {
            dxb_rd_fail(rd, "a key is empty");
        }
        s_read_val(rd, &kv[i].v);
    }
    return dxb_rd_ok(rd) ? n : 0;
}

static const ctl_gov_val_t *
s_row_get(const ctl_gov_kv_t *kv, size_t n, const char *key)
{
    size_t len = strlen(key);

    for (size_t i = 0; i < n; i++) {
        if (kv[i].key_len == len && memcmp(kv[i].key, key, len) == 0) {
            return &kv[i].v;
        }
    }
    return NULL;
}

static void
s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t len = strlen(s);

    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

static void
s_pack_val(msgpack_packer *pk, const ctl_gov_val_t *v)
{
    switch (v->type) {
    case DXB_RD_BOOL:
        if (v->b) {
            msgpack_pack_true(pk);
        } else {
            msgpack_pack_false(pk);
        }
        break;
    case DXB_RD_UINT:
        msgpack_pack_uint64(pk, v->u);
        break;
    case DXB_RD_INT:
        msgpack_pack_int64(pk, v->i);
        break;
    case DXB_RD_FLOAT:
        msgpack_pack_double(pk, v->f);
        break;
    case DXB_RD_STR:
        msgpack_pack_str(pk, v->s_len);
        msgpack_pack_str_body(pk, v->s, v->s_len);
        break;
    default:
        msgpack_pack_nil(pk);
        break;
    }
}

/* "2026-11-25 05:04:51" (UTC, as ctl_render shows times). */
static void
s_format_time(char *out, size_t cap, uint64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm) == 0) {
        snprintf(out, cap, "%" PRIu64, ms);
    }
}

/* Packs one cell of a human table; v is NULL when the row lacks the key. */
static void
s_pack_cell(msgpack_packer *pk, ctl_gov_fmt_t fmt, const ctl_gov_val_t *v)
{
    char text[64];
    bool empty_str = v != NULL && v->type == DXB_RD_STR && v->s_len == 0;
    bool is_uint = v != NULL && v->type == DXB_RD_UINT;
    bool none = (fmt == CTL_GOV_F_TEXT && empty_str) ||
                ((fmt == CTL_GOV_F_DAYS || fmt == CTL_GOV_F_REF) && is_uint && v->u == 0);

    if (v == NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    if (none) {
        s_pack_str(pk, "-");
    } else if (fmt == CTL_GOV_F_FIELDS && empty_str) {
        s_pack_str(pk, "all");
    } else if ((fmt == CTL_GOV_F_TIME || fmt == CTL_GOV_F_EXPIRES) && is_uint) {
        if (v->u == 0) {
            s_pack_str(pk, fmt == CTL_GOV_F_TIME ? "-" : "never");
            return;
        }
        s_format_time(text, sizeof(text), v->u);
        s_pack_str(pk, text);
    } else if (fmt == CTL_GOV_F_DURATION && is_uint) {
        ctl_render_format_duration(text, sizeof(text), v->u);
        s_pack_str(pk, text);
    } else if (fmt == CTL_GOV_F_BYTES && is_uint) {
        ctl_render_format_bytes(text, sizeof(text), v->u);
        s_pack_str(pk, text);
    } else if (fmt == CTL_GOV_F_DAYS && is_uint) {
        snprintf(text, sizeof(text), "%" PRIu64 " day%s", v->u, v->u == 1 ? "" : "s");
        s_pack_str(pk, text);
    } else {
        s_pack_val(pk, v);
    }
}

/* Projects every row of a result onto cols into out (a new result: an array
 * of maps keyed by the column titles), for ctl_render to print.
 * Errors: DXB_EPROTO when the result has not the shape of a table; errbuf
 * then receives the reason. */
static dxb_err_t
s_project(const dxb_bytes_t *result, const ctl_gov_col_t *cols, size_t n_cols, msgpack_sbuffer *out,
          char *errbuf, size_t errcap)
{
    ctl_gov_kv_t kv[CTL_GOV_MAX_KEYS];
    msgpack_packer pk;
    dxb_rd_t rd;
    uint32_t n_rows = 0;
    uint32_t row = 0;

    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    dxb_rd_init(&rd, result->ptr, result->len);
    if (dxb_rd_peek(&rd) == DXB_RD_NIL) {
        dxb_rd_nil(&rd);
    } else {
        n_rows = dxb_rd_array(&rd);
    }
    msgpack_pack_array(&pk, dxb_rd_ok(&rd) ? n_rows : 0);
    for (row = 0; row < n_rows && dxb_rd_ok(&rd); row++) {
        size_t n = s_read_row(&rd, kv, CTL_GOV_MAX_KEYS);

        msgpack_pack_map(&pk, (uint32_t)n_cols);
        for (size_t c = 0; c < n_cols; c++) {
            s_pack_str(&pk, cols[c].title);
            s_pack_cell(&pk, cols[c].fmt, s_row_get(kv, n, cols[c].key));
        }
    }
    if (dxb_rd_ok(&rd) && dxb_rd_left(&rd) != 0) {
        dxb_rd_fail(&rd, "bytes follow the result");
    }
    if (!dxb_rd_ok(&rd)) {
        snprintf(errbuf, errcap, "result row %" PRIu32 ": %s", row, rd.err);
        return DXB_EPROTO;
    }
    return DXB_OK;
}

/* Prints a result projected onto cols in the given ctl_render mode. */
static dxb_err_t
s_print_projected(const dxb_bytes_t *result, const ctl_gov_col_t *cols, size_t n_cols,
                  ctl_render_mode_t mode, char *errbuf, size_t errcap)
{
    msgpack_sbuffer out;
    dxb_err_t rc;

    msgpack_sbuffer_init(&out);
    rc = s_project(result, cols, n_cols, &out, errbuf, errcap);
    if (rc == DXB_OK) {
        rc = ctl_render_result(stdout, (const uint8_t *)out.data, out.size, mode, errbuf, errcap);
    }
    msgpack_sbuffer_destroy(&out);
    return rc;
}

/* Packs one "name:type:sensitivity" item of a catalog entry's fields as a
 * row. The name may hold ':' itself, so type and sensitivity are taken from
 * the right; an item without two ':' is shown whole as the name. */
static void
s_pack_field(msgpack_packer *pk, const uint8_t *item, size_t len)
{
    const uint8_t *c2 = NULL;
    const uint8_t *c1 = NULL;

    for (size_t i = len; i > 0 && c1 == NULL; i--) {
        if (item[i - 1] == ':') {
            if (c2 == NULL) {
                c2 = &item[i - 1];
            } else {
                c1 = &item[i - 1];
            }
        }
    }
    msgpack_pack_map(pk, 3);
    s_pack_str(pk, "name");
    msgpack_pack_str(pk, c1 != NULL ? (size_t)(c1 - item) : len);
    msgpack_pack_str_body(pk, item, c1 != NULL ? (size_t)(c1 - item) : len);
    s_pack_str(pk, "type");
    if (c1 != NULL) {
        msgpack_pack_str(pk, (size_t)(c2 - c1 - 1));
        msgpack_pack_str_body(pk, c1 + 1, (size_t)(c2 - c1 - 1));
    } else {
        s_pack_str(pk, "-");
    }
    s_pack_str(pk, "sensitivity");
    if (c1 != NULL) {
        msgpack_pack_str(pk, (size_t)(item + len - c2 - 1));
        msgpack_pack_str_body(pk, c2 + 1, (size_t)(item + len - c2 - 1));
    } else {
        s_pack_str(pk, "-");
    }
}

/* Packs a catalog entry's fields text ("name:type:sens,...") as a table. */
static void
s_pack_fields(msgpack_sbuffer *out, const ctl_gov_val_t *fields)
{
    msgpack_packer pk;
    uint32_t n = 0;
    const uint8_t *s = fields != NULL && fields->type == DXB_RD_STR ? fields->s : NULL;
    size_t len = s != NULL ? fields->s_len : 0;
    size_t start = 0;

    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    for (size_t i = 0; i < len; i++) {
        n += s[i] == ',' ? 1 : 0;
    }
    msgpack_pack_array(&pk, len > 0 ? n + 1 : 0);
    for (size_t i = 0; i <= len && len > 0; i++) {
        if (i == len || s[i] == ',') {
            s_pack_field(&pk, s + start, i - start);
            start = i + 1;
        }
    }
}

/* `catalog show` for a person: each entry as a block, then its fields one
 * per line (name, type, sensitivity). */
static dxb_err_t
s_print_entry(const dxb_bytes_t *result, char *errbuf, size_t errcap)
{
    ctl_gov_kv_t kv[CTL_GOV_MAX_KEYS];
    dxb_rd_t rd;
    uint32_t n_rows;
    dxb_err_t rc;

    /* The block's projection checks the whole result first. */
    rc = s_print_projected(result, s_cols_entry, CTL_GOV_N(s_cols_entry), CTL_RENDER_VERTICAL,
                           errbuf, errcap);
    if (rc != DXB_OK) {
        return rc;
    }
    dxb_rd_init(&rd, result->ptr, result->len);
    n_rows = dxb_rd_peek(&rd) == DXB_RD_NIL ? 0 : dxb_rd_array(&rd);
    for (uint32_t r = 0; r < n_rows && rc == DXB_OK; r++) {
        size_t n = s_read_row(&rd, kv, CTL_GOV_MAX_KEYS);
        msgpack_sbuffer fields;

        msgpack_sbuffer_init(&fields);
        s_pack_fields(&fields, s_row_get(kv, n, "fields"));
        fputs("\nfields:\n", stdout);
        rc = ctl_render_result(stdout, (const uint8_t *)fields.data, fields.size, CTL_RENDER_TABLE,
                               errbuf, errcap);
        msgpack_sbuffer_destroy(&fields);
    }
    return rc;
}

/* ---- running ---------------------------------------------------------- */

/* The columns of `stats --by`: the first is the dataset or the node. */
static void
s_stats_cols(const ctl_gov_line_t *line, ctl_gov_col_t *cols)
{
    memcpy(cols, s_cols_stats, sizeof(s_cols_stats));
    if (strcmp(line->values[CTL_GOV_O_BY], "node") == 0) {
        cols[0].key = "node";
        cols[0].title = "node";
    }
}

/* The block an action's row prints as, by the kind its operation acts on;
 * NULL: the row as sent (the broker's counters). */
static const ctl_gov_col_t *
s_block_of(const char *op, size_t *n_cols)
{
    static const struct {
        const char *prefix;
        const ctl_gov_col_t *cols;
        size_t n_cols;
    } blocks[] = {
        {"demand.", s_block_demand, CTL_GOV_N(s_block_demand)},
        {"grant.", s_block_grant, CTL_GOV_N(s_block_grant)},
        {"objection.", s_block_objection, CTL_GOV_N(s_block_objection)},
    };

    for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
        if (strncmp(op, blocks[i].prefix, strlen(blocks[i].prefix)) == 0) {
            *n_cols = blocks[i].n_cols;
            return blocks[i].cols;
        }
    }
    *n_cols = 0;
    return NULL;
}

/* Prints an OK reply: the rows as JSON, or for a person as the verb's table,
 * the catalog entry's block, or each row as a block (what an action made).
 * Returns the exit status. */
static int
s_print(const ctl_gov_ctx_t *ctx, const ctl_gov_verb_t *verb, const ctl_gov_line_t *line,
        const char *op, const ctl_gov_reply_t *reply)
{
    ctl_gov_col_t stats_cols[CTL_GOV_STATS_COLS];
    char detail[160] = "";
    size_t n_block = 0;
    const ctl_gov_col_t *block = s_block_of(op, &n_block);
    dxb_err_t rc;

    if (ctx->json) {
        rc = ctl_render_result(stdout, reply->result.ptr, reply->result.len, CTL_RENDER_JSON,
                               detail, sizeof(detail));
    } else if (verb != NULL && verb->cols == s_cols_stats) {
        s_stats_cols(line, stats_cols);
        rc = s_print_projected(&reply->result, stats_cols, CTL_GOV_STATS_COLS, CTL_RENDER_TABLE,
                               detail, sizeof(detail));
    } else if (verb != NULL && verb->cols != NULL) {
        rc = s_print_projected(&reply->result, verb->cols, verb->n_cols, CTL_RENDER_TABLE, detail,
                               sizeof(detail));
    } else if (verb != NULL && strcmp(verb->op, "catalog.show") == 0) {
        rc = s_print_entry(&reply->result, detail, sizeof(detail));
    } else if (block != NULL) {
        rc = s_print_projected(&reply->result, block, n_block, CTL_RENDER_VERTICAL, detail,
                               sizeof(detail));
    } else {
        rc = ctl_render_result(stdout, reply->result.ptr, reply->result.len, CTL_RENDER_VERTICAL,
                               detail, sizeof(detail));
    }
    if (rc != DXB_OK) {
        fprintf(stderr, "dxbctl: %s: malformed reply from %s: %s\n", op, s_peer(ctx), detail);
        return CTL_GOV_EXIT_FAIL;
    }
    /* stdout carries only the result; a note other than the usual "ok" goes
     * to the operator on stderr. */
    if (!ctx->json && reply->message.len > 0 &&
        !(reply->message.len == 2 && memcmp(reply->message.ptr, "ok", 2) == 0)) {
        ctl_render_text(stderr, reply->message.ptr, reply->message.len);
        fputc('\n', stderr);
    }
    return CTL_GOV_EXIT_OK;
}

/* Sends op and prints its reply. verb is NULL for `stats` without --by. */
static int
s_run_op(const ctl_gov_ctx_t *ctx, const ctl_gov_verb_t *verb, const ctl_gov_line_t *line,
         const char *op, const char *const *args, size_t n_args)
{
    zmq_msg_t rep;
    ctl_gov_reply_t reply;
    int exit_code;

    zmq_msg_init(&rep);
    exit_code = s_call(ctx, op, args, n_args, &rep, &reply);
    if (exit_code == CTL_GOV_CONTINUE) {
        exit_code = s_print(ctx, verb, line, op, &reply);
    }
    zmq_msg_close(&rep);
    return exit_code;
}

/* `stats` without --by: the broker's counters, one per line, as before
 * the governance figures existed. They are the broker's, not a node's. */
static int
s_stats_plain(const ctl_gov_ctx_t *ctx, const ctl_gov_line_t *line)
{
    if (line->values[CTL_GOV_O_SINCE] != NULL) {
        return s_usage(line->cmd, "option '--since' goes with '--by'");
    }
    if (ctx->agent != NULL) {
        return s_usage(line->cmd, "'stats' without '--by' shows the broker's counters: not "
                                  "through --agent");
    }
    return s_run_op(ctx, NULL, line, "stats", NULL, 0);
}

int
ctl_gov_run(const ctl_gov_ctx_t *ctx_in, int argc, char **argv)
{
    ctl_gov_ctx_t ctx = *ctx_in;
    ctl_gov_line_t line;
    const ctl_gov_verb_t *verb = NULL;
    const char *args[CTL_GOV_VERB_OPTS];
    size_t n_args = 0;
    const char *help = s_help_of(argv[0]);
    int rc;

    if (help == NULL) {
        fprintf(stderr, "dxbctl: '%s' is not a governance command\n", argv[0]);
        return CTL_GOV_EXIT_USAGE;
    }
    if (s_wants_help(argc, argv)) {
        fputs(help, stdout);
        return CTL_GOV_EXIT_OK;
    }
    rc = s_split(argc, argv, &line, &ctx.json);
    if (rc == CTL_GOV_CONTINUE) {
        rc = s_resolve(&line, &verb);
    }
    if (rc == CTL_GOV_CONTINUE) {
        rc = s_check(&ctx, verb, &line);
    }
    if (rc != CTL_GOV_CONTINUE) {
        return rc;
    }
    if (strcmp(verb->op, "stats.by") == 0 && line.values[CTL_GOV_O_BY] == NULL) {
        return s_stats_plain(&ctx, &line);
    }
    rc = s_build(&ctx, verb, &line, args, &n_args);
    if (rc != CTL_GOV_CONTINUE) {
        return rc;
    }
    return s_run_op(&ctx, verb, &line, verb->op, args, n_args);
}
