/* brk_xfer: transfer progress records. See brk_xfer.h. */
#include "broker/brk_xfer.h"

#include <string.h>

#include "common/dxb_util.h"
#include "proto/dxb_xfer.h"

bool
brk_xfer_id_of(const dxb_env_t *env, uint8_t xfer_id[16])
{
    if ((env->hdr.flags & DXB_FLAG_CHUNK) == 0) {
        return false;
    }
    if (env->hdr.flags & DXB_FLAG_MANIFEST) {
        memcpy(xfer_id, env->hdr.msg_id, 16);
        return true;
    }
    dxb_chunk_t c;
    if (dxb_xfer_chunk_decode(env->body.ptr, env->body.len, &c, NULL, 0) != DXB_OK) {
        return false;
    }
    memcpy(xfer_id, c.xfer_id, 16);
    return true;
}

static dxb_err_t
s_get(brk_queue_t *q, MDB_txn *txn, const uint8_t id[16], brk_xferrec_t *rec, bool *found)
{
    MDB_val k = {16, (void *)id}, v;
    int rc = mdb_get(txn, q->xfer, &k, &v);
    *found = rc == 0 && v.mv_size == sizeof(*rec);
    if (*found) {
        memcpy(rec, v.mv_data, sizeof(*rec));
    }
    return rc == 0 || rc == MDB_NOTFOUND ? DXB_OK : dxb_store_err(rc, "xfer get");
}

static dxb_err_t
s_put(brk_queue_t *q, MDB_txn *txn, const brk_xferrec_t *rec)
{
    MDB_val k = {16, (void *)rec->xfer_id}, v = {sizeof(*rec), (void *)rec};
    return dxb_store_err(mdb_put(txn, q->xfer, &k, &v, 0), "xfer put");
}

dxb_err_t
brk_xfer_note_stored(brk_queue_t *q, MDB_txn *txn, const dxb_env_t *env, uint32_t n_rcpt,
                     bool duplicate, uint64_t now_ms)
{
    uint8_t id[16];
    if (!brk_xfer_id_of(env, id)) {
        return DXB_EINVAL;
    }
    brk_xferrec_t rec;
    bool found = false;
    dxb_err_t err = s_get(q, txn, id, &rec, &found);
    if (err) {
        return err;
    }
    if (!found) {
        memset(&rec, 0, sizeof(rec));
        memcpy(rec.xfer_id, id, 16);
        dxb_strlcpy(rec.sender, env->hdr.sender, sizeof(rec.sender));
        dxb_strlcpy(rec.dataset, env->hdr.dataset, sizeof(rec.dataset));
        rec.n_rcpt = n_rcpt;
        rec.first_ms = now_ms;
    }
    rec.last_ms = now_ms;
    if ((env->hdr.flags & DXB_FLAG_MANIFEST) == 0) {
        dxb_chunk_t c;
        if (dxb_xfer_chunk_decode(env->body.ptr, env->body.len, &c, NULL, 0) == DXB_OK) {
            rec.count = c.count;
            rec.total = c.total;
        }
        if (duplicate) {
            rec.dup_bytes += env->raw.len;
        } else {
            rec.chunks_stored++;
            rec.bytes_stored += env->raw.len;
        }
    }
    return s_put(q, txn, &rec);
}

dxb_err_t
brk_xfer_note_acked(brk_queue_t *q, MDB_txn *txn, const uint8_t xfer_id[16], uint32_t size,
                    uint64_t now_ms)
{
    brk_xferrec_t rec;
    bool found = false;
    dxb_err_t err = s_get(q, txn, xfer_id, &rec, &found);
    if (err || !found) {
        return err;
    }
    rec.last_ms = now_ms;
    rec.chunks_acked++;
    rec.bytes_acked += size;
    if (rec.count > 0 && rec.chunks_acked >= (uint64_t)rec.count * rec.n_rcpt &&
        rec.done_ms == 0) {
        rec.done_ms = now_ms;
    }
    return s_put(q, txn, &rec);
}

dxb_err_t
brk_xfer_scan(brk_queue_t *q, MDB_txn *txn, brk_xfer_visit_fn fn, void *arg)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, q->xfer, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "xfer cursor");
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        brk_xferrec_t rec;
        if (v.mv_size != sizeof(rec)) {
            continue;
        }
        memcpy(&rec, v.mv_data, sizeof(rec));
        if (!fn(arg, &rec)) {
            break;
        }
    }
    mdb_cursor_close(cur);
    return DXB_OK;
}

dxb_err_t
brk_xfer_sweep(brk_queue_t *q, MDB_txn *txn, uint64_t now_ms, uint64_t keep_done_ms,
               uint64_t keep_idle_ms, unsigned max)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, q->xfer, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "xfer cursor");
    }
    MDB_val k, v;
    unsigned n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < max;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        brk_xferrec_t rec;
        if (v.mv_size == sizeof(rec)) {
            memcpy(&rec, v.mv_data, sizeof(rec));
        }
        bool old = v.mv_size != sizeof(rec) ||
                   (rec.done_ms != 0 && now_ms > rec.done_ms + keep_done_ms) ||
                   (rec.done_ms == 0 && now_ms > rec.last_ms + keep_idle_ms);
        if (old && mdb_cursor_del(cur, 0) == 0) {
            n++;
        }
    }
    mdb_cursor_close(cur);
    return DXB_OK;
}
