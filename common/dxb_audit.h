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

#endif
