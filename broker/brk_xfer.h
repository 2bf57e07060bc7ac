/* brk_xfer: what the broker knows about chunked transfers in flight, for
 * operators (`dxbctl transfers`). It reads only public fields: the
 * manifest's header and each chunk's CHUNK_BODY routing part (PROTOCOL.md
 * 5.1). Records live in the broker store's "xfer" database and are updated
 * inside the same transactions that store and acknowledge the chunks, so the
 * figures survive a restart and never run ahead of what is on disk.
 */
#ifndef BRK_XFER_H
#define BRK_XFER_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker/brk_queue.h"
#include "common/dxb_err.h"
#include "proto/dxb_msg.h"

typedef struct {
    uint8_t xfer_id[16];
    char sender[DXB_ID_CAP];
    char dataset[DXB_ID_CAP];
    uint32_t count;         /* chunks; 0 until the first chunk arrived */
    uint32_t n_rcpt;        /* recipients */
    uint64_t total;         /* file bytes (before compression) */
    uint64_t chunks_stored; /* distinct chunks stored */
    uint64_t bytes_stored;  /* their envelope bytes */
    uint64_t dup_bytes;     /* chunk bytes received again (sender resends) */
    uint64_t chunks_acked;  /* chunk deliveries acknowledged, summed over recipients */
    uint64_t bytes_acked;
    uint64_t first_ms, last_ms, done_ms; /* wall clock; done_ms 0 while in flight */
} brk_xferrec_t;

/* Notes a stored (or duplicate) piece of a transfer. env must carry
 * DXB_FLAG_CHUNK; its body was checked by the caller. Runs in txn. */
dxb_err_t brk_xfer_note_stored(brk_queue_t *q, MDB_txn *txn, const dxb_env_t *env,
                               uint32_t n_rcpt, bool duplicate, uint64_t now_ms) DXB_MUST_CHECK;
/* Notes one acknowledged chunk delivery of transfer xfer_id. Unknown ids
 * (record swept) are ignored. */
dxb_err_t brk_xfer_note_acked(brk_queue_t *q, MDB_txn *txn, const uint8_t xfer_id[16],
                              uint32_t size, uint64_t now_ms) DXB_MUST_CHECK;
/* Visits records in id order; the visitor returns false to stop. */
typedef bool (*brk_xfer_visit_fn)(void *arg, const brk_xferrec_t *rec);
dxb_err_t brk_xfer_scan(brk_queue_t *q, MDB_txn *txn, brk_xfer_visit_fn fn,
                        void *arg) DXB_MUST_CHECK;
/* Forgets finished records older than keep_done_ms and idle ones older than
 * keep_idle_ms (up to max per call). */
dxb_err_t brk_xfer_sweep(brk_queue_t *q, MDB_txn *txn, uint64_t now_ms, uint64_t keep_done_ms,
                         uint64_t keep_idle_ms, unsigned max) DXB_MUST_CHECK;
/* The transfer id a chunk envelope belongs to: its own msg_id for a
 * manifest, the CHUNK_BODY's id otherwise. false when env is no chunk. */
bool brk_xfer_id_of(const dxb_env_t *env, uint8_t xfer_id[16]);

#endif
