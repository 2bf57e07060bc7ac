/* brk_gov: governance at the broker (issue 4; PROTOCOL.md section 10):
 * the catalog (数据目录), demands and grants (供需对接), enforcement of
 * grants and clearance (分类分级), and objections (异议数据).
 *
 * State lives in the broker's LMDB environment next to the queues:
 *   catalog   dataset                      -> brk_catrec_t + fields
 *   demand    be64(id)                     -> brk_demand_t
 *   grant     be64(id)                     -> brk_grant_t
 *   grantidx  dataset 0x00 consumer        -> be64(grant id) of the active grant
 *   objection be64(id)                     -> brk_objection_t
 * Every change is audited in the same transaction. Requests come from
 * operators (admin socket, actor NULL: every operation) and from agents
 * (GOV_REQ, actor = the authenticated node: only what that node may do).
 */
#ifndef BRK_GOV_H
#define BRK_GOV_H

#include <lmdb.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/dxb_err.h"
#include "proto/dxb_msg.h"

struct brk_server;

#define BRK_GOV_MAX_FIELDS 256

enum { BRK_SHARE_NONE = 0, BRK_SHARE_CONDITIONAL = 1, BRK_SHARE_UNCONDITIONAL = 2 };

typedef struct {
    char name[129];
    char type[33];
    uint8_t sensitivity; /* 0..3 */
} brk_catfield_t;

/* A catalog entry as declared by its owner. */
typedef struct {
    char dataset[DXB_ID_CAP];
    char owner[DXB_ID_CAP];
    char title[257];
    char description[1025];
    uint8_t level; /* classification 0..3 */
    uint8_t share; /* BRK_SHARE_* */
    char frequency[33];
    char region[7];
    uint16_t n_fields;
    brk_catfield_t fields[BRK_GOV_MAX_FIELDS];
    uint64_t created_ms, updated_ms;
    uint32_t version; /* bumped on every change */
} brk_catentry_t;

typedef struct {
    struct brk_server *srv; /* borrowed */
    MDB_dbi catalog, demand, grant, grantidx, objection;
} brk_gov_t;

dxb_err_t brk_gov_open(brk_gov_t *g, struct brk_server *srv) DXB_MUST_CHECK;

/* Replaces the catalog declaration of node with entries (n may be 0),
 * recording added, changed and removed datasets. An entry for a dataset
 * another node owns is refused: *refused counts them (audited). */
dxb_err_t brk_gov_declare(brk_gov_t *g, MDB_txn *txn, const char *node,
                          const brk_catentry_t *entries, size_t n, size_t *changed,
                          size_t *refused) DXB_MUST_CHECK;

/* Runs one governance operation ("catalog.list", "demand.file", ...; see
 * PROTOCOL.md 10) as actor (NULL = operator). Result rows are packed into
 * pk (an array); *code and text describe the outcome. *wrote tells whether
 * txn holds changes to commit. */
dxb_err_t brk_gov_request(brk_gov_t *g, MDB_txn *txn, const char *actor, const char *op,
                          const char *const *args, size_t n_args, msgpack_packer *pk,
                          uint16_t *code, char *text, size_t text_cap,
                          bool *wrote) DXB_MUST_CHECK;
/* True when op changes state (needs a write transaction). */
bool brk_gov_op_writes(const char *op);
/* True when op names a governance operation. */
bool brk_gov_op_known(const char *op);

/* Enforcement for one envelope (PROTOCOL.md 10.3): returns a wire code and
 * points *why at a static explanation when refused. */
uint16_t brk_gov_check(brk_gov_t *g, MDB_txn *txn, const dxb_env_t *env,
                       char (*rcpt)[DXB_ID_CAP], size_t n, const char **why);

/* The active grant of consumer for dataset, if any: its mask policy and id
 * (for agents: masking happens at the provider). */
typedef struct {
    uint64_t id;
    char dataset[DXB_ID_CAP];
    char consumer[DXB_ID_CAP];
    char owner[DXB_ID_CAP];
    char fields[1025];
    char mask[1025];
    uint64_t expires_ms;
} brk_grantinfo_t;

#endif
