/* dxb_audit: the append-only, hash-chained audit log inside an LMDB store.
 *
 * Audit is not logging: each record is written in the SAME transaction as
 * the state change it records, so it exists exactly when the change does; a
 * failed audit write fails the transaction.
 *
 * Record (key = big-endian seq, starting at 1):
 *   value = hash[32] || prev_hash[32] || text
 *   text  = "time_ms\tactor\taction\tobject\tresult\tdetail" (tabs and control
 *           characters inside fields are replaced by spaces)
 *   hash  = BLAKE2b-256(prev_hash || be64(seq) || text); prev_hash of seq 1 is zeros.
 * Changing, deleting, inserting or reordering records breaks the chain, and
 * dxb_audit_verify names the first broken seq.
 *
 * The in-memory head has a committed and a working copy: appends advance the
 * working copy; the owner calls dxb_audit_settle(a, committed_ok) after the
 * transaction ends so an aborted transaction rolls the head back.
 *
 * Signed checkpoints (own database, key = big-endian seq):
 *   value = be64(seq) || hash[32] || be64(time_ms) || signer_pk[32] || sig[64]
 *   sig   = Ed25519 by the signer's identity key over
 *           BLAKE2b-256("dxb-audit-cp-1" || be64(seq) || hash || be64(time_ms))
 * A checkpoint says "the chain had this hash at this seq at this time". The
 * chain alone proves that no record inside it was changed, deleted, inserted
 * or moved; a checkpoint also catches a chain cut below it (truncated tail)
 * or rebuilt with fresh hashes. Keys are only ever appended: a checkpoint is
 * written only when the chain's head is beyond the newest checkpoint.
 *
 * Thread context: the store's owning thread (one writer); no global state.
 */
#ifndef DXB_AUDIT_H
#define DXB_AUDIT_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/dxb_err.h"

typedef struct {
    uint64_t seq;     /* last appended seq (0 = empty) */
    uint8_t hash[32]; /* hash of that record (zeros when empty) */
} dxb_audit_head_t;

typedef struct {
    MDB_dbi dbi;
    dxb_audit_head_t committed; /* head as of the last committed transaction */
    dxb_audit_head_t working;   /* head including appends of the open transaction */
} dxb_audit_t;

/* Loads the head from the last record. txn may be read-only. */
dxb_err_t dxb_audit_init(dxb_audit_t *a, MDB_txn *txn, MDB_dbi dbi) DXB_MUST_CHECK;
/* Appends one record in txn. detail is printf-formatted. Errors: store errors. */
dxb_err_t dxb_audit_append(dxb_audit_t *a, MDB_txn *txn, const char *actor, const char *action,
                           const char *object, const char *result, const char *fmt, ...)
    DXB_MUST_CHECK __attribute__((format(printf, 7, 8)));
/* Call after the transaction that held appends ended: committed or not. */
void dxb_audit_settle(dxb_audit_t *a, bool committed);
/* Walks the whole chain. On DXB_EINTEGRITY *bad_seq is the first broken
 * record's seq (or the seq expected where one is missing). *count = records. */
dxb_err_t dxb_audit_verify(MDB_txn *txn, MDB_dbi dbi, uint64_t *count,
                           uint64_t *bad_seq) DXB_MUST_CHECK;

/* BLAKE2b-256(prev || be64(seq) || text): the chain hash of one record. */
void dxb_audit_hash(const uint8_t prev[32], uint64_t seq, const uint8_t *text, size_t len,
                    uint8_t out[32]);
/* Time of a record from its text (the leading decimal field); 0 when the
 * text does not start with one. */
uint64_t dxb_audit_text_time(const uint8_t *text, size_t len);

/* ---- checkpoints -------------------------------------------------------- */

#define DXB_AUDIT_CP_BYTES 144 /* encoded checkpoint value */

typedef struct {
    uint64_t seq;          /* seq of the record the checkpoint covers (>= 1) */
    uint8_t hash[32];      /* that record's chain hash */
    uint64_t time_ms;      /* wall clock when it was signed */
    uint8_t signer_pk[32]; /* Ed25519 public key that signed it */
    uint8_t sig[64];       /* Ed25519 signature over dxb_audit_cp_digest() */
} dxb_audit_cp_t;

/* BLAKE2b-256("dxb-audit-cp-1" || be64(seq) || hash || be64(time_ms)). */
void dxb_audit_cp_digest(uint64_t seq, const uint8_t hash[32], uint64_t time_ms,
                         uint8_t out[32]);
/* True when cp carries a valid signature of its fields by cp->signer_pk. */
bool dxb_audit_cp_valid(const dxb_audit_cp_t *cp);
/* Fixed-width encoding (DXB_AUDIT_CP_BYTES) and its strict inverse (false on
 * any other length). */
void dxb_audit_cp_encode(const dxb_audit_cp_t *cp, uint8_t out[DXB_AUDIT_CP_BYTES]);
bool dxb_audit_cp_decode(const uint8_t *buf, size_t len, dxb_audit_cp_t *out);
/* Newest checkpoint in cps. Errors: DXB_ENOTFOUND (none), DXB_EINTEGRITY
 * (the newest value is malformed), store errors. txn may be read-only. */
dxb_err_t dxb_audit_cp_last(MDB_txn *txn, MDB_dbi cps, dxb_audit_cp_t *out) DXB_MUST_CHECK;
/* Signs the chain's head as stored in txn (a write transaction) and puts the
 * checkpoint into cps, unless the chain is empty or its head is not beyond
 * the newest checkpoint (then *written is false and nothing changes).
 * sign_sk is the 64-byte Ed25519 secret key (borrowed); out (may be NULL)
 * receives the checkpoint. Errors: store errors. */
dxb_err_t dxb_audit_checkpoint(MDB_txn *txn, MDB_dbi audit, MDB_dbi cps,
                               const uint8_t sign_sk[64], uint64_t now_ms, dxb_audit_cp_t *out,
                               bool *written) DXB_MUST_CHECK;

/* ---- full check: chain and checkpoints ---------------------------------- */

/* What failed first. The names (dxb_audit_fault_name) are stable: scripts
 * and PROTOCOL.md section 8 use them. */
typedef enum {
    DXB_AUDIT_OK = 0,
    DXB_AUDIT_MISSING,      /* "missing-record": no record at the seq the chain needs */
    DXB_AUDIT_MALFORMED,    /* "malformed-record": key not 8 bytes or value under 64 bytes */
    DXB_AUDIT_BADHASH,      /* "hash-mismatch": content, seq or link does not give its hash */
    DXB_AUDIT_BADLINK,      /* "broken-link": prev_hash is not the previous record's hash */
    DXB_AUDIT_CP_MALFORMED, /* "checkpoint-malformed" */
    DXB_AUDIT_CP_OTHERKEY,  /* "checkpoint-other-key": signed by a key that is not ours */
    DXB_AUDIT_CP_BADSIG,    /* "checkpoint-signature-bad" */
    DXB_AUDIT_CP_SHORT,     /* "chain-shorter-than-checkpoint": the tail was cut */
    DXB_AUDIT_CP_DIFFERS,   /* "chain-differs-from-checkpoint": rewritten below it */
} dxb_audit_fault_t;

typedef struct {
    uint64_t records;         /* records that verify from seq 1 up to the first broken one */
    uint64_t head_seq;        /* highest seq stored (0 = empty) */
    dxb_audit_fault_t fault;  /* the first fault (lowest seq); DXB_AUDIT_OK when none */
    uint64_t bad_seq;         /* first broken entry: a record's seq (0 when ok) */
    uint64_t checkpoints;     /* checkpoints stored */
    uint64_t checkpoints_ok;  /* checkpoints that verified, in seq order, before a failed one */
    uint64_t last_cp_seq;     /* newest checkpoint that verified (0 = none) */
    uint64_t last_cp_ms;      /* its signing time */
    uint64_t bad_cp_seq;      /* the checkpoint that failed (0 = none failed) */
    uint64_t bad_cp_ms;       /* its signing time */
    uint64_t good_below_seq;  /* with a failed checkpoint: the previous good checkpoint's seq
                                 (0 = none): the damage lies in (good_below_seq, bad_cp_seq] */
} dxb_audit_report_t;

/* Stable name of a fault ("hash-mismatch"), and a short sentence for people. */
const char *dxb_audit_fault_name(dxb_audit_fault_t fault);
const char *dxb_audit_fault_text(dxb_audit_fault_t fault);

/* Walks the chain and checks every checkpoint in cps (NULL: no checkpoint
 * database yet): a valid signature by sign_pk, and the chain still holding
 * that hash at that seq. When a checkpoint fails, the first broken entry is
 * the first record at or below it, above the previous good checkpoint, that
 * is missing or newer than the checkpoint (it cannot have been signed);
 * failing that, the checkpoint's own seq. The report names the fault with
 * the lowest seq (the chain walk's when they tie).
 * Returns DXB_OK (all verify), DXB_EINTEGRITY (see *r), or a store error. */
dxb_err_t dxb_audit_check(MDB_txn *txn, MDB_dbi audit, const MDB_dbi *cps,
                          const uint8_t sign_pk[32], dxb_audit_report_t *r) DXB_MUST_CHECK;

#endif
