/* brk_admin: operator commands on the admin socket (PROTOCOL.md section 8).
 *
 * Each command answers with a table: an array of maps, one per row. Queries
 * run in a read transaction; changes (DLQ retry/drop) in a write transaction
 * that also appends the audit record of the operator's action.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/brk_server.h"
#include "broker/brk_xfer.h"
#include "common/dxb_log.h"
#include "common/dxb_util.h"

#define PEEK_DEFAULT 20
#define TAIL_DEFAULT 20

static void
s_str(msgpack_packer *pk, const char *key, const char *val)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
    msgpack_pack_str_with_body(pk, val, strlen(val));
}

static void
s_u64(msgpack_packer *pk, const char *key, uint64_t val)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
    msgpack_pack_uint64(pk, val);
}

static void
s_bool(msgpack_packer *pk, const char *key, bool val)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
    if (val) {
        msgpack_pack_true(pk);
    } else {
        msgpack_pack_false(pk);
    }
}

static void
s_reply_error(brk_server_t *srv, dxb_err_t err, const char *text)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(&srv->sbuf);
    if (dxb_msg_enc_admin_rep_begin(&srv->sbuf, &pk, dxb_err_to_wire(err), text) == DXB_OK) {
        msgpack_pack_nil(&pk);
    }
}

static void
s_cmd_nodes(brk_server_t *srv, msgpack_packer *pk, MDB_txn *txn)
{
    msgpack_pack_array(pk, (uint32_t)srv->n_sess);
    for (size_t i = 0; i < srv->n_sess; i++) {
        brk_sess_t *s = srv->sess[i];
        brk_qdepth_t d;
        if (brk_queue_depth(srv->queue, txn, s->cfg.id, &d) != DXB_OK) {
            memset(&d, 0, sizeof(d));
        }
        msgpack_pack_map(pk, 8);
        s_str(pk, "node", s->cfg.id);
        s_str(pk, "region", s->cfg.region);
        s_str(pk, "level", brk_cfg_level_name(s->cfg.level));
        s_u64(pk, "clearance", s->cfg.clearance);
        s_bool(pk, "connected", s->connected);
        s_u64(pk, "last_seen_ms", s->last_seen_wall);
        s_u64(pk, "queue_msgs", d.msgs);
        s_u64(pk, "in_flight", s->if_count);
    }
}

static void
s_cmd_queues(brk_server_t *srv, msgpack_packer *pk, MDB_txn *txn)
{
    uint64_t now = dxb_now_ms();
    msgpack_pack_array(pk, (uint32_t)srv->n_sess);
    for (size_t i = 0; i < srv->n_sess; i++) {
        brk_sess_t *s = srv->sess[i];
        brk_qdepth_t d;
        if (brk_queue_depth(srv->queue, txn, s->cfg.id, &d) != DXB_OK) {
            memset(&d, 0, sizeof(d));
        }
        msgpack_pack_map(pk, 6);
        s_str(pk, "node", s->cfg.id);
        s_u64(pk, "msgs", d.msgs);
        s_u64(pk, "bytes", d.bytes);
        s_u64(pk, "oldest_age_s",
              d.oldest_enq_ms && now > d.oldest_enq_ms ? (now - d.oldest_enq_ms) / 1000 : 0);
        s_u64(pk, "in_flight", s->if_count);
        s_bool(pk, "connected", s->connected);
    }
}

typedef struct {
    msgpack_sbuffer rows;
    msgpack_packer pk;
    uint32_t n;
    uint32_t limit;
    const char *node; /* filter for DLQ listing, NULL = all */
} brk_rows_t;

static void
s_env_fields(msgpack_packer *pk, const uint8_t *raw, size_t len)
{
    dxb_env_t env;
    if (raw != NULL && dxb_msg_decode_env(raw, len, &env, NULL, 0) == DXB_OK) {
        s_str(pk, "sender", env.hdr.sender);
        s_str(pk, "dataset", env.hdr.dataset);
        s_u64(pk, "seq", env.hdr.seq);
        s_u64(pk, "size", env.body.len);
        s_u64(pk, "created_ms", env.hdr.created_ms);
    } else {
        s_str(pk, "sender", "?");
        s_str(pk, "dataset", "?");
        s_u64(pk, "seq", 0);
        s_u64(pk, "size", 0);
        s_u64(pk, "created_ms", 0);
    }
}

static bool
s_peek_visit(void *arg, const brk_qentry_t *e, const uint8_t *raw, size_t len)
{
    brk_rows_t *r = arg;
    if (r->n >= r->limit) {
        return false;
    }
    char idhex[33];
    dxb_hex_encode(e->msg_id, 16, idhex);
    msgpack_pack_map(&r->pk, 8);
    s_u64(&r->pk, "qseq", e->qseq);
    s_str(&r->pk, "msg_id", idhex);
    s_env_fields(&r->pk, raw, len);
    s_u64(&r->pk, "attempts", e->attempts);
    r->n++;
    return true;
}

static bool
s_dlq_visit(void *arg, const brk_dlqrec_t *rec, const uint8_t *raw, size_t len)
{
    brk_rows_t *r = arg;
    if (r->node != NULL && strcmp(r->node, rec->node) != 0) {
        return true;
    }
    if (r->n >= r->limit) {
        return false;
    }
    char idhex[33];
    dxb_hex_encode(rec->msg_id, 16, idhex);
    msgpack_pack_map(&r->pk, 11);
    s_u64(&r->pk, "dlq_id", rec->dlq_id);
    s_str(&r->pk, "node", rec->node);
    s_str(&r->pk, "msg_id", idhex);
    s_env_fields(&r->pk, raw, len);
    s_str(&r->pk, "reason", rec->reason);
    s_u64(&r->pk, "attempts", rec->attempts);
    s_u64(&r->pk, "time_ms", rec->time_ms);
    r->n++;
    return true;
}

/* Emits rows collected in r as the result array. */
static void
s_emit_rows(msgpack_packer *pk, msgpack_sbuffer *out, brk_rows_t *r)
{
    msgpack_pack_array(pk, r->n);
    msgpack_sbuffer_write(out, r->rows.data, r->rows.size);
}

static bool
s_parse_u64(const char *text, uint64_t *out)
{
    char *end = NULL;
    if (text[0] < '0' || text[0] > '9') {
        return false;
    }
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0') {
        return false;
    }
    *out = v;
    return true;
}

/* DLQ ids to act on, collected before changing anything (a cursor must not
 * walk a table that the same transaction is deleting from). */
typedef struct {
    uint64_t *ids; /* owned */
    size_t n, cap;
} brk_ids_t;

static bool
s_collect_ids(void *arg, const brk_dlqrec_t *rec, const uint8_t *raw, size_t len)
{
    brk_ids_t *v = arg;
    (void)raw;
    (void)len;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        uint64_t *ids = realloc(v->ids, cap * sizeof(*ids));
        if (ids == NULL) {
            return false;
        }
        v->ids = ids;
        v->cap = cap;
    }
    v->ids[v->n++] = rec->dlq_id;
    return true;
}

static dxb_err_t
s_dlq_change(brk_server_t *srv, const char *cmd, const char *target, uint64_t *done)
{
    brk_ids_t v = {0};
    bool retry = strcmp(cmd, "dlq.retry") == 0;
    uint64_t one = 0;
    *done = 0;
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(srv->store, true, &txn);
    if (err) {
        goto out;
    }
    if (strcmp(target, "all") == 0) {
        err = brk_queue_dlq_scan(srv->queue, txn, s_collect_ids, &v);
    } else if (s_parse_u64(target, &one)) {
        v.ids = &one;
        v.n = 1;
    } else {
        err = DXB_EINVAL;
    }
    for (size_t i = 0; !err && i < v.n; i++) {
        err = retry ? brk_queue_dlq_retry(srv->queue, txn, v.ids[i], dxb_now_ms(),
                                          srv->cfg.default_ttl_s * 1000)
                    : brk_queue_dlq_drop(srv->queue, txn, v.ids[i]);
        if (!err) {
            (*done)++;
        }
    }
    if (!err) {
        err = dxb_audit_append(&srv->queue->audit, txn, "operator", cmd, target, "ok",
                               "count=%llu", (unsigned long long)*done);
    }
    if (!err) {
        err = dxb_store_commit(srv->store, &txn);
    }
out:
    dxb_store_abort(&txn);
    dxb_audit_settle(&srv->queue->audit, err == DXB_OK);
    if (v.ids != &one) {
        free(v.ids);
    }
    return err;
}

static void
s_cmd_stats(brk_server_t *srv, msgpack_packer *pk)
{
    uint64_t used = 0, map = 0;
    size_t online = 0;
    dxb_store_usage(srv->store, &used, &map);
    for (size_t i = 0; i < srv->n_sess; i++) {
        online += srv->sess[i]->connected;
    }
    const brk_stats_t *st = &srv->stats;
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 17);
    s_u64(pk, "uptime_s", (dxb_now_ms() - st->started_wall_ms) / 1000);
    s_u64(pk, "nodes", srv->n_sess);
    s_u64(pk, "online", online);
    s_u64(pk, "frames_in", st->frames_in);
    s_u64(pk, "frames_bad", st->frames_bad);
    s_u64(pk, "published", st->published);
    s_u64(pk, "duplicates", st->duplicates);
    s_u64(pk, "refused", st->refused);
    s_u64(pk, "delivered", st->delivered);
    s_u64(pk, "acked", st->acked);
    s_u64(pk, "dead_lettered", st->dead_lettered);
    s_u64(pk, "commits", st->commits);
    s_u64(pk, "auth_failures", st->auth_failures);
    s_u64(pk, "spoofs", st->spoofs);
    s_u64(pk, "store_used_bytes", used);
    s_u64(pk, "store_map_bytes", map);
    s_bool(pk, "store_failed", dxb_store_failed(srv->store));
}

static void
s_cmd_audit_tail(brk_server_t *srv, msgpack_packer *pk, MDB_txn *txn, uint64_t n)
{
    uint64_t last = srv->queue->audit.committed.seq;
    uint64_t first = last > n ? last - n + 1 : 1;
    msgpack_pack_array(pk, (uint32_t)(last >= first ? last - first + 1 : 0));
    for (uint64_t seq = first; seq <= last && last > 0; seq++) {
        uint8_t key[8];
        dxb_be64_put(key, seq);
        MDB_val k = {8, key}, v;
        char text[2100] = "";
        if (mdb_get(txn, srv->queue->auditdb, &k, &v) == 0 && v.mv_size > 64) {
            size_t len = v.mv_size - 64 < sizeof(text) - 1 ? v.mv_size - 64 : sizeof(text) - 1;
            memcpy(text, (const uint8_t *)v.mv_data + 64, len);
            text[len] = 0;
        }
        /* text = time \t actor \t action \t object \t result \t detail */
        char *f[6] = {text, "", "", "", "", ""};
        for (int i = 1; i < 6 && f[i - 1] != NULL; i++) {
            char *tab = strchr(f[i - 1], '\t');
            if (tab == NULL) {
                break;
            }
            *tab = 0;
            f[i] = tab + 1;
        }
        msgpack_pack_map(pk, 7);
        s_u64(pk, "seq", seq);
        s_u64(pk, "time_ms", strtoull(f[0], NULL, 10));
        s_str(pk, "actor", f[1]);
        s_str(pk, "action", f[2]);
        s_str(pk, "object", f[3]);
        s_str(pk, "result", f[4]);
        s_str(pk, "detail", f[5]);
    }
}

static void
s_cmd_audit_verify(brk_server_t *srv, msgpack_packer *pk, MDB_txn *txn)
{
    uint64_t count = 0, bad = 0;
    dxb_err_t err = dxb_audit_verify(txn, srv->queue->auditdb, &count, &bad);
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 3);
    s_bool(pk, "ok", err == DXB_OK);
    s_u64(pk, "records", count);
    s_u64(pk, "first_bad_seq", bad);
}

/* True (with a message naming the record) when the audit chain is broken. */
static bool
s_audit_broken(brk_server_t *srv, char *msg, size_t cap)
{
    MDB_txn *txn = NULL;
    uint64_t count = 0, bad = 0;
    if (dxb_store_begin(srv->store, false, &txn) != DXB_OK) {
        return false;
    }
    dxb_err_t err = dxb_audit_verify(txn, srv->queue->auditdb, &count, &bad);
    dxb_store_abort(&txn);
    if (err == DXB_EINTEGRITY) {
        snprintf(msg, cap, "audit chain broken at record %llu (%llu records before it verify)",
                 (unsigned long long)bad, (unsigned long long)count);
        dxb_log_error("BRK-AUDITBROKEN", "%s", msg);
        return true;
    }
    return false;
}

static void
s_f64(msgpack_packer *pk, const char *key, double val)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
    msgpack_pack_double(pk, val);
}

/* One row per chunked transfer the broker knows (PROTOCOL.md 8). */
static bool
s_xfer_visit(void *arg, const brk_xferrec_t *x)
{
    brk_rows_t *r = arg;
    uint64_t now = dxb_now_ms();
    uint64_t want = (uint64_t)x->count * x->n_rcpt;
    double progress = want ? (double)x->chunks_acked / (double)want : 0.0;
    if (progress > 1.0) {
        progress = 1.0;
    }
    uint64_t end = x->done_ms ? x->done_ms : now;
    double secs = end > x->first_ms ? (double)(end - x->first_ms) / 1000.0 : 0.0;
    /* Rate of the delivery to all recipients, in file bytes per second. */
    double done_bytes = progress * (double)x->total;
    double rate = secs > 0 ? done_bytes / secs : 0.0;
    double eta = rate > 0 ? ((double)x->total - done_bytes) / rate : -1.0;
    const char *state = x->done_ms               ? "done"
                        : x->count == 0 || x->chunks_stored < x->count ? "receiving"
                                                                       : "delivering";
    char hex[33];
    dxb_hex_encode(x->xfer_id, 16, hex);
    msgpack_pack_map(&r->pk, 16);
    s_str(&r->pk, "xfer_id", hex);
    s_str(&r->pk, "sender", x->sender);
    s_str(&r->pk, "dataset", x->dataset);
    s_u64(&r->pk, "recipients", x->n_rcpt);
    s_u64(&r->pk, "chunks", x->count);
    s_u64(&r->pk, "stored_chunks", x->chunks_stored);
    s_u64(&r->pk, "total_bytes", x->total);
    s_u64(&r->pk, "stored_bytes", x->bytes_stored);
    s_u64(&r->pk, "resent_bytes", x->dup_bytes);
    s_u64(&r->pk, "acked_chunks", x->chunks_acked);
    s_f64(&r->pk, "progress", progress);
    s_f64(&r->pk, "rate_bps", rate);
    s_f64(&r->pk, "eta_s", x->done_ms ? 0.0 : eta);
    s_u64(&r->pk, "started_ms", x->first_ms);
    s_u64(&r->pk, "updated_ms", x->last_ms);
    s_str(&r->pk, "state", state);
    return ++r->n < r->limit;
}

/* Runs a read-only command inside one read transaction. */
static dxb_err_t
s_query(brk_server_t *srv, const dxb_frame_t *f, msgpack_packer *pk)
{
    const char *cmd = f->u.admin_req.command;
    const char *arg0 = f->u.admin_req.n_args > 0 ? f->u.admin_req.args[0] : NULL;
    const char *arg1 = f->u.admin_req.n_args > 1 ? f->u.admin_req.args[1] : NULL;
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(srv->store, false, &txn);
    if (err) {
        return err;
    }
    brk_rows_t r = {.limit = PEEK_DEFAULT};
    msgpack_sbuffer_init(&r.rows);
    msgpack_packer_init(&r.pk, &r.rows, msgpack_sbuffer_write);
    uint64_t n = 0;
    if (strcmp(cmd, "nodes") == 0) {
        s_cmd_nodes(srv, pk, txn);
    } else if (strcmp(cmd, "queues") == 0) {
        s_cmd_queues(srv, pk, txn);
    } else if (strcmp(cmd, "peek") == 0) {
        if (arg0 == NULL || brk_server_find(srv, arg0) == NULL) {
            err = DXB_ENOTFOUND;
        } else {
            if (arg1 != NULL && s_parse_u64(arg1, &n) && n > 0 && n <= 10000) {
                r.limit = (uint32_t)n;
            }
            err = brk_queue_scan(srv->queue, txn, arg0, 0, s_peek_visit, &r);
            s_emit_rows(pk, &srv->sbuf, &r);
        }
    } else if (strcmp(cmd, "dlq.list") == 0) {
        r.limit = 10000;
        r.node = arg0;
        err = brk_queue_dlq_scan(srv->queue, txn, s_dlq_visit, &r);
        s_emit_rows(pk, &srv->sbuf, &r);
    } else if (strcmp(cmd, "stats") == 0) {
        s_cmd_stats(srv, pk);
    } else if (strcmp(cmd, "transfers") == 0) {
        r.limit = 10000;
        err = brk_xfer_scan(srv->queue, txn, s_xfer_visit, &r);
        s_emit_rows(pk, &srv->sbuf, &r);
    } else if (strcmp(cmd, "audit.tail") == 0) {
        n = TAIL_DEFAULT;
        if (arg0 != NULL && (!s_parse_u64(arg0, &n) || n == 0 || n > 100000)) {
            err = DXB_EINVAL;
        } else {
            s_cmd_audit_tail(srv, pk, txn, n);
        }
    } else if (strcmp(cmd, "audit.verify") == 0) {
        s_cmd_audit_verify(srv, pk, txn);
    } else {
        err = DXB_ETYPE;
    }
    msgpack_sbuffer_destroy(&r.rows);
    dxb_store_abort(&txn);
    return err;
}

void
brk_admin_handle(brk_server_t *srv, const uint8_t *frame, size_t len)
{
    dxb_frame_t f;
    char detail[160] = "";
    dxb_err_t err = dxb_msg_decode(frame, len, 1u << 20, &f, detail, sizeof(detail));
    if (!err && f.type != DXB_T_ADMIN_REQ) {
        err = DXB_ETYPE;
        snprintf(detail, sizeof(detail), "expected an admin request");
    }
    if (err) {
        dxb_log_warn("BRK-ADMINBAD", "malformed admin request err=%s detail=%s",
                     dxb_err_name(err), detail);
        s_reply_error(srv, err, detail);
        return;
    }
    const char *cmd = f.u.admin_req.command;
    msgpack_packer pk;
    if (strcmp(cmd, "dlq.retry") == 0 || strcmp(cmd, "dlq.drop") == 0) {
        uint64_t done = 0;
        if (f.u.admin_req.n_args != 1) {
            s_reply_error(srv, DXB_EINVAL, "expected one argument: DLQ id or 'all'");
            return;
        }
        err = s_dlq_change(srv, cmd, f.u.admin_req.args[0], &done);
        if (err) {
            s_reply_error(srv, err, err == DXB_ENOTFOUND ? "no such dead letter"
                                                         : dxb_strerror(err));
            return;
        }
        if (strcmp(cmd, "dlq.retry") == 0) {
            brk_server_pump_all(srv);
        }
        msgpack_sbuffer_clear(&srv->sbuf);
        if (dxb_msg_enc_admin_rep_begin(&srv->sbuf, &pk, 0, "ok") == DXB_OK) {
            msgpack_pack_array(&pk, 1);
            msgpack_pack_map(&pk, 1);
            s_u64(&pk, strcmp(cmd, "dlq.retry") == 0 ? "retried" : "dropped", done);
        }
        dxb_log_notice("BRK-ADMIN", "operator command cmd=%s target=%s count=%llu", cmd,
                       f.u.admin_req.args[0], (unsigned long long)done);
        return;
    }
    if (strcmp(cmd, "audit.verify") == 0 && s_audit_broken(srv, detail, sizeof(detail))) {
        s_reply_error(srv, DXB_EINTEGRITY, detail);
        return;
    }
    msgpack_sbuffer_clear(&srv->sbuf);
    if (dxb_msg_enc_admin_rep_begin(&srv->sbuf, &pk, 0, "ok") != DXB_OK) {
        return;
    }
    err = s_query(srv, &f, &pk);
    if (err) {
        s_reply_error(srv, err, err == DXB_ETYPE ? "unknown command"
                                : err == DXB_ENOTFOUND ? "unknown node"
                                                       : dxb_strerror(err));
    }
}
