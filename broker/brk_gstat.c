/* brk_gstat: per-day figures per dataset and node. See brk_gstat.h. */
#include "broker/brk_gstat.h"

#include <string.h>

#include "common/dxb_store.h"
#include "common/dxb_util.h"

#define DAY_MS (86400ull * 1000ull)

dxb_err_t
brk_gstat_open(brk_gstat_t *g, MDB_dbi dbi)
{
    memset(g, 0, sizeof(*g));
    g->dbi = dbi;
    return DXB_OK;
}

static size_t
s_key(char kind, const char *id, uint32_t day, uint8_t *out)
{
    size_t n = strlen(id);
    out[0] = (uint8_t)kind;
    memcpy(out + 1, id, n);
    out[1 + n] = 0;
    uint8_t be[8];
    dxb_be64_put(be, day);
    memcpy(out + 2 + n, be + 4, 4);
    return 2 + n + 4;
}

static void
s_add(brk_gstat_rec_t *to, const brk_gstat_rec_t *d)
{
    to->published += d->published;
    to->delivered += d->delivered;
    to->bytes_in += d->bytes_in;
    to->bytes_out += d->bytes_out;
    to->refused += d->refused;
    to->requests += d->requests;
}

dxb_err_t
brk_gstat_flush(brk_gstat_t *g, MDB_txn *txn)
{
    dxb_err_t err = DXB_OK;
    for (size_t i = 0; i < g->n_pending && !err; i++) {
        brk_gstat_pending_t *p = &g->pending[i];
        uint8_t key[2 + DXB_ID_CAP + 4];
        MDB_val k = {s_key(p->kind, p->id, p->day, key), key}, v;
        brk_gstat_rec_t rec = {0};
        if (mdb_get(txn, g->dbi, &k, &v) == 0 && v.mv_size == sizeof(rec)) {
            memcpy(&rec, v.mv_data, sizeof(rec));
        }
        s_add(&rec, &p->delta);
        MDB_val nv = {sizeof(rec), &rec};
        err = dxb_store_err(mdb_put(txn, g->dbi, &k, &nv, 0), "gstat put");
    }
    g->n_pending = 0;
    return err;
}

void
brk_gstat_drop(brk_gstat_t *g)
{
    g->n_pending = 0;
}

static dxb_err_t
s_note_one(brk_gstat_t *g, MDB_txn *txn, char kind, const char *id, uint32_t day,
           const brk_gstat_rec_t *d)
{
    for (size_t i = 0; i < g->n_pending; i++) {
        brk_gstat_pending_t *p = &g->pending[i];
        if (p->kind == kind && p->day == day && strcmp(p->id, id) == 0) {
            s_add(&p->delta, d);
            return DXB_OK;
        }
    }
    if (g->n_pending == BRK_GSTAT_PENDING) {
        dxb_err_t err = brk_gstat_flush(g, txn); /* still inside the same transaction */
        if (err) {
            return err;
        }
    }
    brk_gstat_pending_t *p = &g->pending[g->n_pending++];
    p->kind = kind;
    dxb_strlcpy(p->id, id, sizeof(p->id));
    p->day = day;
    p->delta = *d;
    return DXB_OK;
}

dxb_err_t
brk_gstat_note(brk_gstat_t *g, MDB_txn *txn, brk_gstat_what_t what, const char *dataset,
               const char *node, uint64_t bytes, uint64_t now_ms)
{
    brk_gstat_rec_t d = {0};
    switch (what) {
    case BRK_GSTAT_PUBLISHED:
        d.published = 1;
        d.bytes_in = bytes;
        break;
    case BRK_GSTAT_DELIVERED:
        d.delivered = 1;
        d.bytes_out = bytes;
        break;
    case BRK_GSTAT_REFUSED:
        d.refused = 1;
        break;
    }
    uint32_t day = (uint32_t)(now_ms / DAY_MS);
    dxb_err_t err = s_note_one(g, txn, 'd', dataset, day, &d);
    if (!err) {
        err = s_note_one(g, txn, 'n', node, day, &d);
    }
    return err;
}

dxb_err_t
brk_gstat_sum(brk_gstat_t *g, MDB_txn *txn, char kind, uint32_t since_day,
              brk_gstat_visit_fn fn, void *arg)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, g->dbi, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "gstat cursor");
    }
    uint8_t start = (uint8_t)kind;
    MDB_val k = {1, &start}, v;
    char id[DXB_ID_CAP] = "";
    brk_gstat_rec_t sum = {0};
    bool have = false, go = true;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && go;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        if (k.mv_size < 7 || p[0] != (uint8_t)kind || v.mv_size != sizeof(sum)) {
            break;
        }
        size_t idlen = k.mv_size - 6;
        uint8_t be[8] = {0};
        memcpy(be + 4, p + k.mv_size - 4, 4);
        uint32_t day = (uint32_t)dxb_be64_get(be);
        if (idlen >= DXB_ID_CAP) {
            continue;
        }
        if (have && (strlen(id) != idlen || memcmp(id, p + 1, idlen) != 0)) {
            go = fn(arg, id, &sum);
            memset(&sum, 0, sizeof(sum));
            have = false;
        }
        memcpy(id, p + 1, idlen);
        id[idlen] = '\0';
        if (day >= since_day) {
            brk_gstat_rec_t rec;
            memcpy(&rec, v.mv_data, sizeof(rec));
            s_add(&sum, &rec);
        }
        have = true;
    }
    if (have && go) {
        fn(arg, id, &sum);
    }
    mdb_cursor_close(cur);
    return DXB_OK;
}
