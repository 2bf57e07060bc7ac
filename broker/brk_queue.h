/* brk_queue: the broker's durable state in one LMDB environment.
 *
 * Databases (all keys sort as documented; "be64" = big-endian u64):
 *   msg      msg_id[16]                      -> brk_msgrec_t header || ENVELOPE bytes
 *   q        node 0x00 be64(qseq)            -> brk_qentry_t  (one FIFO per recipient)
 *   qstat    node                            -> brk_qstat_t   (next qseq, depth, bytes)
 *   exp      be64(expires_ms) node 0x00 be64(qseq) -> ""     (TTL index)
 *   dedup    sender 0x00 msg_id[16]          -> be64(first seen ms)
 *   dedupt   be64(ms) sender 0x00 msg_id[16] -> ""           (dedup expiry index)
 *   dlq      be64(dlq_id)                    -> brk_dlqrec_t
 *   lastseq  sender 0x00 dataset             -> u64 highest seq stored or refused for good
 *   meta     name                            -> value
 *   xfer     xfer_id[16]                     -> brk_xferrec_t (chunked transfers, brk_xfer.h)
 *   audit    be64(seq)                       -> dxb_audit record
 * Invariant: msg.refs == number of q + dlq entries that name the message; a
 * message body is stored once however many recipients it has (fan-out).
 * All functions taking a txn work inside the caller's transaction; the
 * caller commits (group commit) and settles the audit head.
 */
#ifndef BRK_QUEUE_H
#define BRK_QUEUE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/dxb_audit.h"
#include "common/dxb_err.h"
#include "common/dxb_store.h"
#include "proto/dxb_msg.h"

typedef struct {
    uint64_t qseq;
    uint8_t msg_id[16];
    uint32_t attempts;   /* deliveries counted as failed so far */
    uint64_t enq_ms;     /* wall clock when queued */
    uint64_t expires_ms; /* wall clock deadline (TTL) */
    uint32_t size;       /* envelope bytes */
} brk_qentry_t;

typedef struct {
    uint64_t dlq_id;
    char node[65];
    uint8_t msg_id[16];
    uint16_t code; /* wire error code that explains it */
    uint32_t attempts;
    uint64_t time_ms;
    char reason[64];
} brk_dlqrec_t;

typedef struct brk_queue {
    dxb_store_t *store; /* borrowed */
    MDB_dbi msg, q, qstat, exp, dedup, dedupt, dlq, meta, auditdb, lastseq, xfer;
    dxb_audit_t audit;
} brk_queue_t;

dxb_err_t brk_queue_open(brk_queue_t **out, dxb_store_t *store) DXB_MUST_CHECK;
void brk_queue_destroy(brk_queue_t **q_p);

/* Stores env once and appends it to every recipient's FIFO.
 * Returns DXB_EEXIST (and stores nothing) for a message id this sender
 * already published within the dedup window. */
dxb_err_t brk_queue_put(brk_queue_t *q, MDB_txn *txn, const dxb_env_t *env,
                        char (*recipients)[DXB_ID_CAP], size_t n, uint64_t now_ms,
                        uint64_t expires_ms) DXB_MUST_CHECK;

/* Per (sender, dataset) order gate. *last_out is the highest seq this
 * sender's dataset has had stored or refused for good (0 = none known). */
dxb_err_t brk_queue_seq_last(brk_queue_t *q, MDB_txn *txn, const char *sender,
                             const char *dataset, uint64_t *last_out) DXB_MUST_CHECK;
/* Raises the recorded seq to seq (never lowers it). */
dxb_err_t brk_queue_seq_note(brk_queue_t *q, MDB_txn *txn, const char *sender,
                             const char *dataset, uint64_t seq) DXB_MUST_CHECK;

/* Visits entries of node's FIFO with qseq >= from_qseq in order; env bytes
 * are borrowed from txn. The visitor returns false to stop. */
typedef bool (*brk_queue_visit_fn)(void *arg, const brk_qentry_t *e, const uint8_t *env,
                                   size_t env_len);
dxb_err_t brk_queue_scan(brk_queue_t *q, MDB_txn *txn, const char *node, uint64_t from_qseq,
                         brk_queue_visit_fn fn, void *arg) DXB_MUST_CHECK;
/* Reads one entry. DXB_ENOTFOUND when absent. */
dxb_err_t brk_queue_get(brk_queue_t *q, MDB_txn *txn, const char *node, uint64_t qseq,
                        brk_qentry_t *out) DXB_MUST_CHECK;
/* Removes a delivered entry and releases the body when unreferenced. */
dxb_err_t brk_queue_ack(brk_queue_t *q, MDB_txn *txn, const char *node,
                        uint64_t qseq) DXB_MUST_CHECK;
/* Counts one more failed attempt; *attempts_out is the new count. */
dxb_err_t brk_queue_bump(brk_queue_t *q, MDB_txn *txn, const char *node, uint64_t qseq,
                         uint32_t *attempts_out) DXB_MUST_CHECK;
/* Moves an entry from node's FIFO to the dead-letter queue with a reason. */
dxb_err_t brk_queue_dead(brk_queue_t *q, MDB_txn *txn, const char *node, uint64_t qseq,
                         uint16_t code, const char *reason) DXB_MUST_CHECK;
/* Dead-letters up to max entries whose TTL passed; *moved counts them. */
dxb_err_t brk_queue_expire(brk_queue_t *q, MDB_txn *txn, uint64_t now_ms, unsigned max,
                           unsigned *moved) DXB_MUST_CHECK;
/* Forgets dedup records older than before_ms (up to max). */
dxb_err_t brk_queue_dedup_sweep(brk_queue_t *q, MDB_txn *txn, uint64_t before_ms,
                                unsigned max) DXB_MUST_CHECK;

/* Depth of node's FIFO. Absent node: zeros. */
typedef struct {
    uint64_t msgs;
    uint64_t bytes;
    uint64_t oldest_enq_ms; /* 0 when empty */
    uint64_t head_qseq;     /* qseq of the first entry (0 when empty) */
} brk_qdepth_t;
dxb_err_t brk_queue_depth(brk_queue_t *q, MDB_txn *txn, const char *node,
                          brk_qdepth_t *out) DXB_MUST_CHECK;

/* Dead-letter queue access for operators. */
typedef bool (*brk_dlq_visit_fn)(void *arg, const brk_dlqrec_t *rec, const uint8_t *env,
                                 size_t env_len);
dxb_err_t brk_queue_dlq_scan(brk_queue_t *q, MDB_txn *txn, brk_dlq_visit_fn fn,
                             void *arg) DXB_MUST_CHECK;
/* Puts a dead letter back at the tail of its node's FIFO (attempts reset, new TTL). */
dxb_err_t brk_queue_dlq_retry(brk_queue_t *q, MDB_txn *txn, uint64_t dlq_id, uint64_t now_ms,
                              uint64_t ttl_ms) DXB_MUST_CHECK;
/* Deletes a dead letter (and the body when unreferenced). */
dxb_err_t brk_queue_dlq_drop(brk_queue_t *q, MDB_txn *txn, uint64_t dlq_id) DXB_MUST_CHECK;

#endif
