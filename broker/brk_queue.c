/* brk_queue: durable per-recipient FIFOs, message bodies stored once,
 * de-duplication, TTL index and dead letters, all in one LMDB environment. */
#include "broker/brk_queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dxb_log.h"
#include "common/dxb_util.h"

/* On-disk value layouts: fixed-width, host order (the environment is local
 * to this machine; LMDB files are not portable across byte orders anyway). */
typedef struct {
    uint32_t refs;
    uint32_t reserved;
    uint64_t stored_ms;
} brk_msgrec_t;

typedef struct {
    uint8_t msg_id[16];
    uint32_t attempts;
    uint32_t size;
    uint64_t enq_ms;
    uint64_t expires_ms;
} brk_qval_t;

typedef struct {
    uint64_t next_qseq;
    uint64_t msgs;
    uint64_t bytes;
} brk_qstat_t;

#define QKEY_MAX (DXB_ID_CAP + 8)
#define EXPKEY_MAX (8 + DXB_ID_CAP + 8)

static size_t
s_qkey(uint8_t *key, const char *node, uint64_t qseq)
{
    size_t n = strlen(node);
    memcpy(key, node, n);
    key[n] = 0;
    dxb_be64_put(key + n + 1, qseq);
    return n + 9;
}

static size_t
s_expkey(uint8_t *key, uint64_t expires_ms, const char *node, uint64_t qseq)
{
    dxb_be64_put(key, expires_ms);
    return 8 + s_qkey(key + 8, node, qseq);
}

dxb_err_t
brk_queue_open(brk_queue_t **out, dxb_store_t *store)
{
    brk_queue_t *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return DXB_ENOMEM;
    }
    q->store = store;
    struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {{"msg", &q->msg},         {"q", &q->q},           {"qstat", &q->qstat},
               {"exp", &q->exp},         {"dedup", &q->dedup},   {"dedupt", &q->dedupt},
               {"dlq", &q->dlq},         {"meta", &q->meta},     {"audit", &q->auditdb},
               {"lastseq", &q->lastseq}, {"xfer", &q->xfer}};
    dxb_err_t err = DXB_OK;
    for (size_t i = 0; !err && i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        err = dxb_store_dbi(store, dbs[i].name, 0, dbs[i].dbi);
    }
    MDB_txn *txn = NULL;
    if (!err) {
        err = dxb_store_begin(store, false, &txn);
    }
    if (!err) {
        err = dxb_audit_init(&q->audit, txn, q->auditdb);
        dxb_store_abort(&txn);
    }
    if (err) {
        free(q);
        return err;
    }
    *out = q;
    return DXB_OK;
}

void
brk_queue_destroy(brk_queue_t **q_p)
{
    if (q_p != NULL) {
        free(*q_p);
        *q_p = NULL;
    }
}

static dxb_err_t
s_stat_get(brk_queue_t *q, MDB_txn *txn, const char *node, brk_qstat_t *st)
{
    MDB_val k = {strlen(node), (void *)node}, v;
    int rc = mdb_get(txn, q->qstat, &k, &v);
    memset(st, 0, sizeof(*st));
    st->next_qseq = 1;
    if (rc == 0 && v.mv_size == sizeof(*st)) {
        memcpy(st, v.mv_data, sizeof(*st));
        return DXB_OK;
    }
    return rc == MDB_NOTFOUND ? DXB_OK : dxb_store_err(rc, "qstat get");
}

static dxb_err_t
s_stat_put(brk_queue_t *q, MDB_txn *txn, const char *node, const brk_qstat_t *st)
{
    MDB_val k = {strlen(node), (void *)node}, v = {sizeof(*st), (void *)st};
    return dxb_store_err(mdb_put(txn, q->qstat, &k, &v, 0), "qstat put");
}

/* Adjusts the reference count of a stored body; deletes it at zero. */
static dxb_err_t
s_msg_ref(brk_queue_t *q, MDB_txn *txn, const uint8_t *msg_id, int delta)
{
    MDB_val k = {16, (void *)msg_id}, v;
    int rc = mdb_get(txn, q->msg, &k, &v);
    if (rc != 0) {
        return dxb_store_err(rc, "msg get");
    }
    brk_msgrec_t rec;
    memcpy(&rec, v.mv_data, sizeof(rec));
    if (delta < 0 && rec.refs <= (uint32_t)-delta) {
        return dxb_store_err(mdb_del(txn, q->msg, &k, NULL), "msg del");
    }
    rec.refs = (uint32_t)((int64_t)rec.refs + delta);
    /* MDB_RESERVE would rewrite the whole value; patch the header in place
     * by copying the record out (values are borrowed and read-only). */
    size_t len = v.mv_size;
    uint8_t *copy = malloc(len);
    if (copy == NULL) {
        return DXB_ENOMEM;
    }
    memcpy(copy, v.mv_data, len);
    memcpy(copy, &rec, sizeof(rec));
    MDB_val nv = {len, copy};
    rc = mdb_put(txn, q->msg, &k, &nv, 0);
    free(copy);
    return dxb_store_err(rc, "msg put");
}

static dxb_err_t
s_enqueue(brk_queue_t *q, MDB_txn *txn, const char *node, const uint8_t *msg_id, uint32_t size,
          uint64_t now_ms, uint64_t expires_ms)
{
    brk_qstat_t st;
    dxb_err_t err = s_stat_get(q, txn, node, &st);
    if (err) {
        return err;
    }
    uint8_t key[QKEY_MAX], ekey[EXPKEY_MAX];
    brk_qval_t val = {.attempts = 0, .size = size, .enq_ms = now_ms, .expires_ms = expires_ms};
    memcpy(val.msg_id, msg_id, 16);
    MDB_val k = {s_qkey(key, node, st.next_qseq), key}, v = {sizeof(val), &val};
    int rc = mdb_put(txn, q->q, &k, &v, 0);
    if (rc != 0) {
        return dxb_store_err(rc, "q put");
    }
    MDB_val ek = {s_expkey(ekey, expires_ms, node, st.next_qseq), ekey}, ev = {0, NULL};
    rc = mdb_put(txn, q->exp, &ek, &ev, 0);
    if (rc != 0) {
        return dxb_store_err(rc, "exp put");
    }
    st.next_qseq++;
    st.msgs++;
    st.bytes += size;
    return s_stat_put(q, txn, node, &st);
}

dxb_err_t
brk_queue_put(brk_queue_t *q, MDB_txn *txn, const dxb_env_t *env, char (*recipients)[DXB_ID_CAP],
              size_t n, uint64_t now_ms, uint64_t expires_ms)
{
    uint8_t dkey[DXB_ID_CAP + 16], tkey[8 + DXB_ID_CAP + 16], ts[8];
    size_t sl = strlen(env->hdr.sender);
    memcpy(dkey, env->hdr.sender, sl);
    dkey[sl] = 0;
    memcpy(dkey + sl + 1, env->hdr.msg_id, 16);
    dxb_be64_put(ts, now_ms);
    MDB_val dk = {sl + 17, dkey}, dv = {8, ts};
    int rc = mdb_put(txn, q->dedup, &dk, &dv, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        return DXB_EEXIST; /* PROTOCOL 6: a duplicate is answered OK, stored once */
    }
    if (rc != 0) {
        return dxb_store_err(rc, "dedup put");
    }
    memcpy(tkey, ts, 8);
    memcpy(tkey + 8, dkey, sl + 17);
    MDB_val tk = {8 + sl + 17, tkey}, tv = {0, NULL};
    rc = mdb_put(txn, q->dedupt, &tk, &tv, 0);
    if (rc != 0) {
        return dxb_store_err(rc, "dedupt put");
    }
    /* The body once, with a reference per recipient (fan-out stores once). */
    brk_msgrec_t rec = {.refs = (uint32_t)n, .stored_ms = now_ms};
    MDB_val mk = {16, (void *)env->hdr.msg_id}, mv = {sizeof(rec) + env->raw.len, NULL};
    rc = mdb_put(txn, q->msg, &mk, &mv, MDB_RESERVE | MDB_NOOVERWRITE);
    if (rc != 0) {
        /* Another sender used the same random id: astronomically unlikely,
         * refuse rather than mix bodies. */
        return rc == MDB_KEYEXIST ? DXB_EINTEGRITY : dxb_store_err(rc, "msg put");
    }
    memcpy(mv.mv_data, &rec, sizeof(rec));
    memcpy((uint8_t *)mv.mv_data + sizeof(rec), env->raw.ptr, env->raw.len);
    for (size_t i = 0; i < n; i++) {
        dxb_err_t err = s_enqueue(q, txn, recipients[i], env->hdr.msg_id,
                                  (uint32_t)env->raw.len, now_ms, expires_ms);
        if (err) {
            return err;
        }
    }
    return DXB_OK;
}

static size_t
s_seqkey(uint8_t *key, const char *sender, const char *dataset)
{
    size_t sl = strlen(sender), dl = strlen(dataset);
    memcpy(key, sender, sl);
    key[sl] = 0;
    memcpy(key + sl + 1, dataset, dl);
    return sl + 1 + dl;
}

dxb_err_t
brk_queue_seq_last(brk_queue_t *q, MDB_txn *txn, const char *sender, const char *dataset,
                   uint64_t *last_out)
{
    uint8_t key[2 * DXB_ID_CAP];
    MDB_val k = {s_seqkey(key, sender, dataset), key}, v;
    *last_out = 0;
    int rc = mdb_get(txn, q->lastseq, &k, &v);
    if (rc == 0 && v.mv_size == 8) {
        memcpy(last_out, v.mv_data, 8);
    }
    return rc == 0 || rc == MDB_NOTFOUND ? DXB_OK : dxb_store_err(rc, "lastseq get");
}

dxb_err_t
brk_queue_seq_note(brk_queue_t *q, MDB_txn *txn, const char *sender, const char *dataset,
                   uint64_t seq)
{
    uint64_t last = 0;
    dxb_err_t err = brk_queue_seq_last(q, txn, sender, dataset, &last);
    if (err || seq <= last) {
        return err;
    }
    uint8_t key[2 * DXB_ID_CAP];
    MDB_val k = {s_seqkey(key, sender, dataset), key}, v = {8, &seq};
    return dxb_store_err(mdb_put(txn, q->lastseq, &k, &v, 0), "lastseq put");
}

static bool
s_key_is_node(const MDB_val *k, const char *node, size_t nl)
{
    return k->mv_size == nl + 9 && memcmp(k->mv_data, node, nl) == 0 &&
           ((const uint8_t *)k->mv_data)[nl] == 0;
}

static void
s_entry_from(brk_qentry_t *e, const MDB_val *k, const MDB_val *v)
{
    brk_qval_t val;
    memcpy(&val, v->mv_data, sizeof(val));
    e->qseq = dxb_be64_get((const uint8_t *)k->mv_data + k->mv_size - 8);
    memcpy(e->msg_id, val.msg_id, 16);
    e->attempts = val.attempts;
    e->enq_ms = val.enq_ms;
    e->expires_ms = val.expires_ms;
    e->size = val.size;
}

dxb_err_t
brk_queue_scan(brk_queue_t *q, MDB_txn *txn, const char *node, uint64_t from_qseq,
               brk_queue_visit_fn fn, void *arg)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, q->q, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "q cursor");
    }
    uint8_t key[QKEY_MAX];
    size_t nl = strlen(node);
    MDB_val k = {s_qkey(key, node, from_qseq), key}, v;
    dxb_err_t err = DXB_OK;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (!s_key_is_node(&k, node, nl) || v.mv_size != sizeof(brk_qval_t)) {
            break;
        }
        brk_qentry_t e;
        s_entry_from(&e, &k, &v);
        MDB_val mk = {16, e.msg_id}, mv;
        int mrc = mdb_get(txn, q->msg, &mk, &mv);
        const uint8_t *env = NULL;
        size_t env_len = 0;
        if (mrc == 0 && mv.mv_size >= sizeof(brk_msgrec_t)) {
            env = (const uint8_t *)mv.mv_data + sizeof(brk_msgrec_t);
            env_len = mv.mv_size - sizeof(brk_msgrec_t);
        }
        /* A missing body is passed as NULL: the caller dead-letters it with
         * reason "integrity" instead of stalling the queue. */
        if (!fn(arg, &e, env, env_len)) {
            break;
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        err = dxb_store_err(rc, "q scan");
    }
    mdb_cursor_close(cur);
    return err;
}

dxb_err_t
brk_queue_get(brk_queue_t *q, MDB_txn *txn, const char *node, uint64_t qseq, brk_qentry_t *out)
{
    uint8_t key[QKEY_MAX];
    MDB_val k = {s_qkey(key, node, qseq), key}, v;
    int rc = mdb_get(txn, q->q, &k, &v);
    if (rc != 0) {
        return dxb_store_err(rc, "q get");
    }
    if (v.mv_size != sizeof(brk_qval_t)) {
        return DXB_EINTEGRITY;
    }
    s_entry_from(out, &k, &v);
    return DXB_OK;
}

/* Removes the q entry, its TTL index entry and updates qstat; the caller
 * decides what happens to the body reference. */
static dxb_err_t
s_unlink(brk_queue_t *q, MDB_txn *txn, const char *node, const brk_qentry_t *e)
{
    uint8_t key[QKEY_MAX], ekey[EXPKEY_MAX];
    MDB_val k = {s_qkey(key, node, e->qseq), key};
    int rc = mdb_del(txn, q->q, &k, NULL);
    if (rc != 0) {
        return dxb_store_err(rc, "q del");
    }
    MDB_val ek = {s_expkey(ekey, e->expires_ms, node, e->qseq), ekey};
    rc = mdb_del(txn, q->exp, &ek, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return dxb_store_err(rc, "exp del");
    }
    brk_qstat_t st;
    dxb_err_t err = s_stat_get(q, txn, node, &st);
    if (err) {
        return err;
    }
    st.msgs = st.msgs > 0 ? st.msgs - 1 : 0;
    st.bytes = st.bytes >= e->size ? st.bytes - e->size : 0;
    return s_stat_put(q, txn, node, &st);
}

dxb_err_t
brk_queue_ack(brk_queue_t *q, MDB_txn *txn, const char *node, uint64_t qseq)
{
    brk_qentry_t e;
    dxb_err_t err = brk_queue_get(q, txn, node, qseq, &e);
    if (err) {
        return err;
    }
    err = s_unlink(q, txn, node, &e);
    if (err) {
        return err;
    }
    err = s_msg_ref(q, txn, e.msg_id, -1);
    return err == DXB_ENOTFOUND ? DXB_OK : err;
}

dxb_err_t
brk_queue_bump(brk_queue_t *q, MDB_txn *txn, const char *node, uint64_t qseq,
               uint32_t *attempts_out)
{
    uint8_t key[QKEY_MAX];
    MDB_val k = {s_qkey(key, node, qseq), key}, v;
    int rc = mdb_get(txn, q->q, &k, &v);
    if (rc != 0) {
        return dxb_store_err(rc, "q get");
    }
    brk_qval_t val;
    memcpy(&val, v.mv_data, sizeof(val));
    val.attempts++;
    *attempts_out = val.attempts;
    MDB_val nv = {sizeof(val), &val};
    return dxb_store_err(mdb_put(txn, q->q, &k, &nv, 0), "q bump");
}

static dxb_err_t
s_next_dlq_id(brk_queue_t *q, MDB_txn *txn, uint64_t *id)
{
    MDB_val k = {8, "dlq_next"}, v;
    uint64_t next = 1;
    int rc = mdb_get(txn, q->meta, &k, &v);
    if (rc == 0 && v.mv_size == 8) {
        memcpy(&next, v.mv_data, 8);
    }
    *id = next++;
    MDB_val nv = {8, &next};
    return dxb_store_err(mdb_put(txn, q->meta, &k, &nv, 0), "meta put");
}

dxb_err_t
brk_queue_dead(brk_queue_t *q, MDB_txn *txn, const char *node, uint64_t qseq, uint16_t code,
               const char *reason)
{
    brk_qentry_t e;
    dxb_err_t err = brk_queue_get(q, txn, node, qseq, &e);
    if (err) {
        return err;
    }
    err = s_unlink(q, txn, node, &e);
    if (err) {
        return err;
    }
    brk_dlqrec_t rec;
    memset(&rec, 0, sizeof(rec));
    err = s_next_dlq_id(q, txn, &rec.dlq_id);
    if (err) {
        return err;
    }
    dxb_strlcpy(rec.node, node, sizeof(rec.node));
    memcpy(rec.msg_id, e.msg_id, 16);
    rec.code = code;
    rec.attempts = e.attempts;
    rec.time_ms = dxb_now_ms();
    dxb_strlcpy(rec.reason, reason, sizeof(rec.reason));
    uint8_t key[8];
    dxb_be64_put(key, rec.dlq_id);
    MDB_val k = {8, key}, v = {sizeof(rec), &rec};
    int rc = mdb_put(txn, q->dlq, &k, &v, 0);
    if (rc != 0) {
        return dxb_store_err(rc, "dlq put");
    }
    char idhex[33];
    dxb_hex_encode(e.msg_id, 16, idhex);
    /* The body reference moves from the FIFO to the dead letter: no change. */
    return dxb_audit_append(&q->audit, txn, "broker", "dead-letter", node, reason,
                            "msg_id=%s attempts=%u dlq_id=%llu", idhex, e.attempts,
                            (unsigned long long)rec.dlq_id);
}

dxb_err_t
brk_queue_expire(brk_queue_t *q, MDB_txn *txn, uint64_t now_ms, unsigned max, unsigned *moved)
{
    *moved = 0;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, q->exp, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "exp cursor");
    }
    /* Collect first, then move: deleting under the cursor we iterate with
     * would skip entries. */
    struct {
        char node[DXB_ID_CAP];
        uint64_t qseq;
    } batch[64];
    unsigned n = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < max && n < 64;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = k.mv_data;
        if (k.mv_size < 8 + 1 + 9 || dxb_be64_get(p) > now_ms) {
            break;
        }
        size_t nl = k.mv_size - 8 - 9;
        if (nl >= DXB_ID_CAP) {
            continue;
        }
        memcpy(batch[n].node, p + 8, nl);
        batch[n].node[nl] = 0;
        batch[n].qseq = dxb_be64_get(p + k.mv_size - 8);
        n++;
    }
    mdb_cursor_close(cur);
    for (unsigned i = 0; i < n; i++) {
        dxb_err_t err = brk_queue_dead(q, txn, batch[i].node, batch[i].qseq, DXB_W_EEXPIRED,
                                       "ttl");
        if (err && err != DXB_ENOTFOUND) {
            return err;
        }
        (*moved)++;
    }
    return DXB_OK;
}

dxb_err_t
brk_queue_dedup_sweep(brk_queue_t *q, MDB_txn *txn, uint64_t before_ms, unsigned max)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, q->dedupt, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "dedupt cursor");
    }
    MDB_val k, v;
    unsigned n = 0;
    dxb_err_t err = DXB_OK;
    while (n < max && (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
        if (k.mv_size <= 8 || dxb_be64_get(k.mv_data) >= before_ms) {
            break;
        }
        MDB_val dk = {k.mv_size - 8, (uint8_t *)k.mv_data + 8};
        rc = mdb_del(txn, q->dedup, &dk, NULL);
        if (rc == 0 || rc == MDB_NOTFOUND) {
            rc = mdb_cursor_del(cur, 0);
        }
        if (rc != 0) {
            err = dxb_store_err(rc, "dedup sweep");
            break;
        }
        n++;
    }
    mdb_cursor_close(cur);
    return err;
}

dxb_err_t
brk_queue_depth(brk_queue_t *q, MDB_txn *txn, const char *node, brk_qdepth_t *out)
{
    brk_qstat_t st;
    memset(out, 0, sizeof(*out));
    dxb_err_t err = s_stat_get(q, txn, node, &st);
    if (err) {
        return err;
    }
    out->msgs = st.msgs;
    out->bytes = st.bytes;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, q->q, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "q cursor");
    }
    uint8_t key[QKEY_MAX];
    MDB_val k = {s_qkey(key, node, 0), key}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && s_key_is_node(&k, node, strlen(node)) && v.mv_size == sizeof(brk_qval_t)) {
        brk_qentry_t e;
        s_entry_from(&e, &k, &v);
        out->oldest_enq_ms = e.enq_ms;
        out->head_qseq = e.qseq;
    }
    mdb_cursor_close(cur);
    return DXB_OK;
}

dxb_err_t
brk_queue_dlq_scan(brk_queue_t *q, MDB_txn *txn, brk_dlq_visit_fn fn, void *arg)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, q->dlq, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "dlq cursor");
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size != sizeof(brk_dlqrec_t)) {
            continue;
        }
        brk_dlqrec_t rec;
        memcpy(&rec, v.mv_data, sizeof(rec));
        MDB_val mk = {16, rec.msg_id}, mv;
        const uint8_t *env = NULL;
        size_t env_len = 0;
        if (mdb_get(txn, q->msg, &mk, &mv) == 0 && mv.mv_size >= sizeof(brk_msgrec_t)) {
            env = (const uint8_t *)mv.mv_data + sizeof(brk_msgrec_t);
            env_len = mv.mv_size - sizeof(brk_msgrec_t);
        }
        if (!fn(arg, &rec, env, env_len)) {
            break;
        }
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? DXB_OK : dxb_store_err(rc, "dlq scan");
}

static dxb_err_t
s_dlq_take(brk_queue_t *q, MDB_txn *txn, uint64_t dlq_id, brk_dlqrec_t *rec)
{
    uint8_t key[8];
    dxb_be64_put(key, dlq_id);
    MDB_val k = {8, key}, v;
    int rc = mdb_get(txn, q->dlq, &k, &v);
    if (rc != 0) {
        return dxb_store_err(rc, "dlq get");
    }
    memcpy(rec, v.mv_data, sizeof(*rec));
    return dxb_store_err(mdb_del(txn, q->dlq, &k, NULL), "dlq del");
}

dxb_err_t
brk_queue_dlq_retry(brk_queue_t *q, MDB_txn *txn, uint64_t dlq_id, uint64_t now_ms,
                    uint64_t ttl_ms)
{
    brk_dlqrec_t rec;
    dxb_err_t err = s_dlq_take(q, txn, dlq_id, &rec);
    if (err) {
        return err;
    }
    MDB_val mk = {16, rec.msg_id}, mv;
    int rc = mdb_get(txn, q->msg, &mk, &mv);
    if (rc != 0) {
        return dxb_store_err(rc, "msg get");
    }
    uint32_t size = (uint32_t)(mv.mv_size - sizeof(brk_msgrec_t));
    return s_enqueue(q, txn, rec.node, rec.msg_id, size, now_ms, now_ms + ttl_ms);
}

dxb_err_t
brk_queue_dlq_drop(brk_queue_t *q, MDB_txn *txn, uint64_t dlq_id)
{
    brk_dlqrec_t rec;
    dxb_err_t err = s_dlq_take(q, txn, dlq_id, &rec);
    if (err) {
        return err;
    }
    err = s_msg_ref(q, txn, rec.msg_id, -1);
    return err == DXB_ENOTFOUND ? DXB_OK : err;
}
