/* brk_gstat: figures for the city's evaluation rules (issue 4 item 7):
 * per dataset and per node, per UTC day: messages published and delivered,
 * bytes in and out, refused attempts. Kept in the broker store ("gstat":
 * kind 'd'|'n', id, 0x00, be32(day) -> brk_gstat_rec_t) and updated in the
 * same transactions as the publishes and acknowledgements they count, so the
 * figures match what is on disk exactly, also across a crash.
 *
 * Deltas are gathered in memory during a transaction (a batch touches few
 * keys) and written by brk_gstat_flush just before the commit;
 * brk_gstat_drop forgets them when the transaction is aborted. */
#ifndef BRK_GSTAT_H
#define BRK_GSTAT_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/dxb_err.h"
#include "proto/dxb_msg.h"

typedef struct {
    uint64_t published; /* envelopes accepted from the sender */
    uint64_t delivered; /* deliveries acknowledged by recipients */
    uint64_t bytes_in;  /* envelope bytes accepted */
    uint64_t bytes_out; /* envelope bytes acknowledged */
    uint64_t refused;   /* envelopes refused (any code) */
    uint64_t requests;  /* interface calls (request/reply; issue 5) */
} brk_gstat_rec_t;

typedef enum { BRK_GSTAT_PUBLISHED, BRK_GSTAT_DELIVERED, BRK_GSTAT_REFUSED } brk_gstat_what_t;

#define BRK_GSTAT_PENDING 128

typedef struct {
    char kind; /* 'd' dataset, 'n' node */
    char id[DXB_ID_CAP];
    uint32_t day;
    brk_gstat_rec_t delta;
} brk_gstat_pending_t;

typedef struct {
    MDB_dbi dbi;
    brk_gstat_pending_t pending[BRK_GSTAT_PENDING];
    size_t n_pending;
} brk_gstat_t;

dxb_err_t brk_gstat_open(brk_gstat_t *g, MDB_dbi dbi);
/* Counts one event for dataset and for node (the sender for published and
 * refused, the recipient for delivered), in txn (flushed before the commit). */
dxb_err_t brk_gstat_note(brk_gstat_t *g, MDB_txn *txn, brk_gstat_what_t what,
                         const char *dataset, const char *node, uint64_t bytes,
                         uint64_t now_ms) DXB_MUST_CHECK;
dxb_err_t brk_gstat_flush(brk_gstat_t *g, MDB_txn *txn) DXB_MUST_CHECK;
void brk_gstat_drop(brk_gstat_t *g);

/* Sums per id of one kind over days >= since_day. The visitor gets each id
 * once, in id order. */
typedef bool (*brk_gstat_visit_fn)(void *arg, const char *id, const brk_gstat_rec_t *sum);
dxb_err_t brk_gstat_sum(brk_gstat_t *g, MDB_txn *txn, char kind, uint32_t since_day,
                        brk_gstat_visit_fn fn, void *arg) DXB_MUST_CHECK;

#endif
