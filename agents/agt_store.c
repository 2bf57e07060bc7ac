/* agt_store: the agent's LMDB environment.
 *
 * Databases:
 *   out      be64(oseq)           -> sealed ENVELOPE bytes (the outbox, FIFO)
 *   outid    msg_id[16]           -> be64(oseq)
 *   meta     "seq:<dataset>"      -> u64 last seq; "oseq", "aseq", "dead" counters
 *   seen     msg_id[16]           -> be64(first seen ms)      (inbox de-duplication)
 *   seent    be64(ms) msg_id[16]  -> ""                      (its expiry index)
 *   placing  msg_id[16]           -> "tmp\0final\0tmpmeta\0finalmeta\0" renames to finish
 *   apiq     be64(aseq)           -> API_MESSAGE frame for applications
 *   apiid    msg_id[16]           -> be64(aseq)
 *   dir      node id              -> NODEINFO fields (cached broker directory)
 *   dead     be64(id)             -> [code u16][ENVELOPE] refused by the broker
 *   audit    be64(seq)            -> dxb_audit record (what this node sent/received)
 *   xout     xfer_id[16]          -> agt_xout_t: chunked transfers being sent (agt_xfer.c)
 *   xin      xfer_id[16]          -> agt_xin_t: chunked transfers being received
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agt_agent.h"
#include "common/dxb_log.h"
#include "common/dxb_util.h"
#include "proto/dxb_seal.h"

static uint64_t
s_last_key(agt_t *a, MDB_txn *txn, MDB_dbi dbi)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint64_t last = 0;
    if (mdb_cursor_open(txn, dbi, &cur) == 0) {
        if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8) {
            last = dxb_be64_get(k.mv_data);
        }
        mdb_cursor_close(cur);
    }
    (void)a;
    return last;
}

static dxb_err_t
s_load_directory(agt_t *a, MDB_txn *txn)
{
    MDB_stat st;
    mdb_stat(txn, a->dir, &st);
    a->peers = calloc(st.ms_entries + a->cfg.n_peers + 1, sizeof(*a->peers));
    if (a->peers == NULL) {
        return DXB_ENOMEM;
    }
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    if (mdb_cursor_open(txn, a->dir, &cur) != 0) {
        return DXB_EIO;
    }
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size == sizeof(agt_peer_t)) {
            memcpy(&a->peers[a->n_peers++], v.mv_data, sizeof(agt_peer_t));
        }
    }
    mdb_cursor_close(cur);
    return DXB_OK;
}

dxb_err_t
agt_store_open(agt_t *a)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/store", a->cfg.data_dir);
    dxb_store_opts_t o = {.dir = dir,
                          .map_size_bytes = a->cfg.map_size_bytes,
                          .durable = a->cfg.durable,
                          .max_dbs = 16};
    dxb_err_t err = dxb_store_open(&a->store, &o);
    struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {{"out", &a->out},         {"outid", &a->outid}, {"meta", &a->meta},
               {"seen", &a->seen},       {"seent", &a->seent}, {"placing", &a->placing},
               {"apiq", &a->apiq},       {"apiid", &a->apiid}, {"dir", &a->dir},
               {"dead", &a->dead},       {"audit", &a->auditdb}, {"xout", &a->xout},
               {"xin", &a->xin}};
    for (size_t i = 0; !err && i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        err = dxb_store_dbi(a->store, dbs[i].name, 0, dbs[i].dbi);
    }
    MDB_txn *txn = NULL;
    if (!err) {
        err = dxb_store_begin(a->store, false, &txn);
    }
    if (!err) {
        err = dxb_audit_init(&a->audit, txn, a->auditdb);
    }
    if (!err) {
        a->next_oseq = s_last_key(a, txn, a->out) + 1;
        a->next_aseq = s_last_key(a, txn, a->apiq) + 1;
        a->next_dead = s_last_key(a, txn, a->dead) + 1;
        err = s_load_directory(a, txn);
    }
    dxb_store_abort(&txn);
    return err;
}

agt_peer_t *
agt_peer_find(agt_t *a, const char *id)
{
    for (size_t i = 0; i < a->n_peers; i++) {
        if (strcmp(a->peers[i].id, id) == 0) {
            return &a->peers[i];
        }
    }
    return NULL;
}

void
agt_store_save_directory(agt_t *a)
{
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(a->store, true, &txn);
    if (!err) {
        mdb_drop(txn, a->dir, 0);
    }
    for (size_t i = 0; !err && i < a->n_peers; i++) {
        MDB_val k = {strlen(a->peers[i].id), a->peers[i].id};
        MDB_val v = {sizeof(agt_peer_t), &a->peers[i]};
        err = dxb_store_err(mdb_put(txn, a->dir, &k, &v, 0), "dir put");
    }
    if (!err) {
        err = agt_store_commit(a, &txn);
    }
    dxb_store_abort(&txn);
}

dxb_err_t
agt_store_commit(agt_t *a, MDB_txn **txn_p)
{
    dxb_err_t err = dxb_store_commit(a->store, txn_p);
    dxb_audit_settle(&a->audit, err == DXB_OK);
    if (err) {
        dxb_log_error("AGT-COMMIT", "store commit failed err=%s", dxb_strerror(err));
    }
    return err;
}

void
agt_store_audit_now(agt_t *a, const char *action, const char *object, const char *result,
                    const char *detail)
{
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(a->store, true, &txn);
    if (!err) {
        err = dxb_audit_append(&a->audit, txn, a->cfg.id, action, object, result, "%s", detail);
    }
    if (!err) {
        err = agt_store_commit(a, &txn);
    }
    dxb_store_abort(&txn);
    dxb_audit_settle(&a->audit, err == DXB_OK);
}

dxb_err_t
agt_store_next_seq(agt_t *a, MDB_txn *txn, const char *dataset, uint64_t *seq)
{
    char key[80];
    int n = snprintf(key, sizeof(key), "seq:%s", dataset);
    MDB_val k = {(size_t)n, key}, v;
    uint64_t last = 0;
    if (mdb_get(txn, a->meta, &k, &v) == 0 && v.mv_size == 8) {
        memcpy(&last, v.mv_data, 8);
    }
    *seq = ++last;
    MDB_val nv = {8, &last};
    return dxb_store_err(mdb_put(txn, a->meta, &k, &nv, 0), "seq put");
}

bool
agt_store_outbox_has(agt_t *a, MDB_txn *txn, const uint8_t msg_id[16])
{
    MDB_val k = {16, (void *)msg_id}, v;
    return mdb_get(txn, a->outid, &k, &v) == 0;
}

/* Seals payload for the recipients rcpt[0..n) and appends it to the outbox. */
static dxb_err_t
s_outbox_seal(agt_t *a, MDB_txn *txn, const uint8_t msg_id[16], const char *dataset,
              const char *const *rcpt, size_t n, dxb_bytes_t name, dxb_bytes_t payload,
              uint32_t ttl_s)
{
    static uint8_t box_pks[DXB_MAX_RECIPIENTS][32];
    for (size_t i = 0; i < n; i++) {
        agt_peer_t *p = agt_peer_find(a, rcpt[i]);
        if (p == NULL) {
            return DXB_ENOROUTE;
        }
        memcpy(box_pks[i], p->box_pk, 32);
    }
    uint64_t seq = 0;
    dxb_err_t err = agt_store_next_seq(a, txn, dataset, &seq);
    if (err) {
        return err;
    }
    dxb_header_in_t h = {.msg_id = msg_id,
                         .sender = a->cfg.id,
                         .dataset = dataset,
                         .kind = DXB_KIND_DELIVERY,
                         .seq = seq,
                         .created_ms = dxb_now_ms(),
                         .ttl_s = ttl_s,
                         .recipients = rcpt,
                         .n_recipients = (uint16_t)n,
                         .region = "",
                         .suite = DXB_SUITE_SODIUM1};
    msgpack_sbuffer env;
    msgpack_sbuffer_init(&env);
    err = dxb_seal_envelope(&env, &a->keys, &h, (const uint8_t(*)[32])box_pks, name,
                            "application/octet-stream", payload);
    if (!err) {
        err = agt_store_outbox_put(a, txn, msg_id, &env, dataset, seq, payload.len, n);
    }
    msgpack_sbuffer_destroy(&env);
    return err;
}

/* One group of recipients that get the same bytes: unmasked, or masked for
 * one grant. */
typedef struct {
    const agt_grant_t *grant; /* NULL = unmasked */
    const char *rcpt[DXB_MAX_RECIPIENTS];
    size_t n;
    uint8_t *masked; /* owned */
    size_t masked_len;
} agt_group_t;

dxb_err_t
agt_store_outbox_add(agt_t *a, MDB_txn *txn, const uint8_t msg_id[16], const char *dataset,
                     char (*recipients)[65], size_t n, dxb_bytes_t name, dxb_bytes_t payload,
                     uint32_t ttl_s)
{
    static agt_group_t groups[DXB_MAX_RECIPIENTS];
    size_t n_groups = 0;
    /* Masking (脱敏) happens here, before encryption, per grant: a consumer
     * whose grant carries a policy gets its own masked copy. */
    for (size_t i = 0; i < n; i++) {
        const agt_grant_t *g = agt_gov_mask_grant(a, dataset, recipients[i]);
        size_t k = 0;
        while (k < n_groups && groups[k].grant != g) {
            k++;
        }
        if (k == n_groups) {
            groups[n_groups++] = (agt_group_t){.grant = g};
        }
        groups[k].rcpt[groups[k].n++] = recipients[i];
    }
    char fname[256];
    size_t fl = name.len < sizeof(fname) - 1 ? name.len : sizeof(fname) - 1;
    memcpy(fname, name.ptr, fl);
    fname[fl] = '\0';
    dxb_err_t err = DXB_OK;
    for (size_t k = 0; !err && k < n_groups; k++) {
        char why[300] = "";
        if (groups[k].grant != NULL) {
            err = agt_gov_mask(a, groups[k].grant, fname, payload, &groups[k].masked,
                               &groups[k].masked_len, why, sizeof(why));
            if (err) {
                dxb_log_error("AGT-MASKFAIL", "payload cannot be masked for a grant; not sent "
                              "dataset=%s file=%s: %s", dataset, fname, why);
            }
        }
    }
    for (size_t k = 0; !err && k < n_groups; k++) {
        uint8_t id[16];
        memcpy(id, msg_id, 16);
        if (k > 0) {
            /* Further copies get ids derived from the first: a re-read spool
             * file makes the same ids, so every hop still de-duplicates. */
            uint64_t gid = groups[k].grant ? agt_gov_grant_id(groups[k].grant) : 0;
            uint8_t in[16 + 8];
            memcpy(in, msg_id, 16);
            memcpy(in + 16, &gid, 8);
            crypto_generichash(id, 16, in, sizeof(in), a->spool_id_key, 32);
        }
        dxb_bytes_t body = groups[k].grant ? (dxb_bytes_t){groups[k].masked, groups[k].masked_len}
                                           : payload;
        err = s_outbox_seal(a, txn, id, dataset, groups[k].rcpt, groups[k].n, name, body, ttl_s);
    }
    for (size_t k = 0; k < n_groups; k++) {
        if (groups[k].masked != NULL) {
            sodium_memzero(groups[k].masked, groups[k].masked_len);
            free(groups[k].masked);
        }
    }
    return err;
}

dxb_err_t
agt_store_outbox_put(agt_t *a, MDB_txn *txn, const uint8_t msg_id[16],
                     const msgpack_sbuffer *env, const char *dataset, uint64_t seq, size_t size,
                     size_t n_rcpt)
{
    uint8_t key[8];
    dxb_be64_put(key, a->next_oseq);
    MDB_val k = {8, key}, v = {env->size, env->data};
    MDB_val ik = {16, (void *)msg_id}, iv = {8, key};
    dxb_err_t err = dxb_store_err(mdb_put(txn, a->out, &k, &v, MDB_APPEND), "outbox put");
    if (!err) {
        err = dxb_store_err(mdb_put(txn, a->outid, &ik, &iv, 0), "outid put");
    }
    if (!err) {
        a->next_oseq++;
        char idhex[33];
        dxb_hex_encode(msg_id, 16, idhex);
        err = dxb_audit_append(&a->audit, txn, a->cfg.id, "queued", dataset, "ok",
                               "msg_id=%s seq=%llu size=%zu recipients=%zu", idhex,
                               (unsigned long long)seq, size, n_rcpt);
    }
    return err;
}

dxb_err_t
agt_store_outbox_del(agt_t *a, MDB_txn *txn, const uint8_t msg_id[16], uint16_t dead_code)
{
    MDB_val ik = {16, (void *)msg_id}, iv;
    int rc = mdb_get(txn, a->outid, &ik, &iv);
    if (rc != 0) {
        return dxb_store_err(rc, "outid get");
    }
    uint8_t key[8];
    memcpy(key, iv.mv_data, 8);
    MDB_val k = {8, key}, v;
    if (dead_code != 0 && mdb_get(txn, a->out, &k, &v) == 0) {
        /* Keep what the broker refused, with its reason, for the operator. */
        uint8_t *rec = malloc(v.mv_size + 2);
        if (rec == NULL) {
            return DXB_ENOMEM;
        }
        memcpy(rec, &dead_code, 2);
        memcpy(rec + 2, v.mv_data, v.mv_size);
        uint8_t dk[8];
        dxb_be64_put(dk, a->next_dead++);
        MDB_val dkey = {8, dk}, dval = {v.mv_size + 2, rec};
        rc = mdb_put(txn, a->dead, &dkey, &dval, 0);
        free(rec);
        if (rc != 0) {
            return dxb_store_err(rc, "dead put");
        }
    }
    rc = mdb_del(txn, a->out, &k, NULL);
    if (rc == 0) {
        rc = mdb_del(txn, a->outid, &ik, NULL);
    }
    return dxb_store_err(rc, "outbox del");
}

uint64_t
agt_store_outbox_count(agt_t *a)
{
    MDB_txn *txn = NULL;
    MDB_stat st = {0};
    if (dxb_store_begin(a->store, false, &txn) == DXB_OK) {
        mdb_stat(txn, a->out, &st);
        dxb_store_abort(&txn);
    }
    return st.ms_entries;
}

void
agt_store_sweep(agt_t *a)
{
    uint64_t before = dxb_now_ms() - a->cfg.dedup_window_s * 1000;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    if (dxb_store_begin(a->store, true, &txn) != DXB_OK) {
        return;
    }
    unsigned n = 0;
    int rc = mdb_cursor_open(txn, a->seent, &cur);
    MDB_val k, v;
    /* Forget inbox de-duplication records older than the window, a bounded
     * number per call so one sweep never holds the writer for long. */
    while (rc == 0 && n < 1000 && mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0) {
        if (k.mv_size != 24 || dxb_be64_get(k.mv_data) >= before) {
            break;
        }
        MDB_val sk = {16, (uint8_t *)k.mv_data + 8};
        mdb_del(txn, a->seen, &sk, NULL);
        rc = mdb_cursor_del(cur, 0);
        n++;
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (n == 0 || rc != 0 || agt_store_commit(a, &txn) != DXB_OK) {
        dxb_store_abort(&txn);
    }
}
