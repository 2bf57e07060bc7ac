/* brk_admin: operator commands on the admin socket (PROTOCOL.md section 8).
 *
 * Each command answers with a table: an array of maps, one per row. Queries
 * run in a read transaction; changes (DLQ retry/drop) in a write transaction
 * that also appends the audit record of the operator's action.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/brk_auditcp.h"
#include "broker/brk_server.h"
#include "broker/brk_xfer.h"
#include "common/dxb_log.h"
#include "common/dxb_util.h"

#define PEEK_DEFAULT 20
#define TAIL_DEFAULT 20
#define AUDIT_CHECKPOINTS_DEFAULT 20
#define AUDIT_EXPORT_DEFAULT 1000
#define AUDIT_EXPORT_MAX 100000             /* rows per page (the admin result limit) */
#define AUDIT_EXPORT_MAX_BYTES (16u << 20)  /* a page stops growing past this */
#define AUDIT_EXPORT_SCAN_MAX 1000000       /* records one request looks at */

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
    s_u64(pk, "uptime_s", (dxb_mono_ms() - st->started_mono_ms) / 1000);
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

/* ---- audit (PROTOCOL.md 8) ---------------------------------------------- */

/* One record's text split into its six fields. */
typedef struct {
    char text[2100];  /* NUL-terminated copy of the text, tabs replaced by NULs */
    const char *f[6]; /* time, actor, action, object, result, detail: into text */
    uint64_t time_ms; /* the time field as a number (0 when it is not one) */
} brk_auditrec_t;

static void
s_audit_split(const uint8_t *text, size_t len, brk_auditrec_t *r)
{
    size_t n = len < sizeof(r->text) - 1 ? len : sizeof(r->text) - 1;
    if (n > 0) {
        memcpy(r->text, text, n);
    }
    r->text[n] = 0;
    r->f[0] = r->text;
    for (int i = 1; i < 6; i++) {
        /* Once a field has no tab the rest stay "" (a literal: never written). */
        char *tab = strchr(r->f[i - 1], '\t');
        r->f[i] = "";
        if (tab != NULL) {
            *tab = 0;
            r->f[i] = tab + 1;
        }
    }
    r->time_ms = dxb_audit_text_time(text, len);
}

/* "2026-11-25T10:00:00.123Z"; "" when the time cannot be shown. */
static void
s_iso_time(uint64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    char base[32];
    out[0] = 0;
    if (gmtime_r(&t, &tm) != NULL && strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm)) {
        snprintf(out, cap, "%s.%03uZ", base, (unsigned)(ms % 1000));
    }
}

/* Bytes of the UTF-8 sequence at s (RFC 3629: no overlongs, surrogates or
 * code points past U+10FFFF); 0 when it is not one. */
static size_t
s_utf8_len(const uint8_t *s, size_t left)
{
    if (s[0] < 0x80) {
        return 1;
    }
    size_t n = s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : s[0] >= 0xe0 && s[0] <= 0xef ? 3
               : s[0] >= 0xf0 && s[0] <= 0xf4                                 ? 4
                                                                              : 0;
    if (n == 0 || n > left) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f)) {
        return 0;
    }
    return n;
}

/* True when the exported fields give back the text byte for byte:
 * "time\tactor\taction\tobject\tresult\tdetail" with the time in canonical
 * decimal, exactly five tabs and valid UTF-8. dxb writes records so; a
 * record that is not (tampered, cut) is exported with raw_hex as well. */
static bool
s_text_rebuilds(const uint8_t *text, size_t len, const brk_auditrec_t *rec)
{
    size_t tabs = 0;
    char time_text[24];
    if (len >= sizeof(rec->text)) {
        return false;
    }
    for (size_t i = 0; i < len;) {
        size_t n = s_utf8_len(text + i, len - i);
        if (n == 0 || text[i] == 0) {
            return false;
        }
        tabs += text[i] == '\t';
        i += n;
    }
    snprintf(time_text, sizeof(time_text), "%llu", (unsigned long long)rec->time_ms);
    return tabs == 5 && strcmp(time_text, rec->f[0]) == 0;
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
        brk_auditrec_t rec;
        if (mdb_get(txn, srv->queue->auditdb, &k, &v) == 0 && v.mv_size > 64) {
            s_audit_split((const uint8_t *)v.mv_data + 64, v.mv_size - 64, &rec);
        } else {
            s_audit_split(NULL, 0, &rec);
        }
        msgpack_pack_map(pk, 7);
        s_u64(pk, "seq", seq);
        s_u64(pk, "time_ms", rec.time_ms);
        s_str(pk, "actor", rec.f[1]);
        s_str(pk, "action", rec.f[2]);
        s_str(pk, "object", rec.f[3]);
        s_str(pk, "result", rec.f[4]);
        s_str(pk, "detail", rec.f[5]);
    }
}

/* One sentence naming the first broken entry and why (the EINTEGRITY
 * message of audit.verify). */
static void
s_audit_verify_message(const dxb_audit_report_t *r, char *out, size_t cap)
{
    char when[40];
    int n = snprintf(out, cap, "audit log broken at record %llu: %s",
                     (unsigned long long)r->bad_seq, dxb_audit_fault_text(r->fault));
    if (n < 0 || (size_t)n >= cap) {
        return;
    }
    if (r->fault < DXB_AUDIT_CP_MALFORMED) {
        snprintf(out + n, cap - (size_t)n,
                 "; %llu records verify before it; %llu of %llu checkpoints verify",
                 (unsigned long long)r->records, (unsigned long long)r->checkpoints_ok,
                 (unsigned long long)r->checkpoints);
        return;
    }
    s_iso_time(r->bad_cp_ms, when, sizeof(when));
    if (r->fault == DXB_AUDIT_CP_SHORT || r->fault == DXB_AUDIT_CP_DIFFERS) {
        snprintf(out + n, cap - (size_t)n,
                 "; checkpoint seq %llu signed %s; the chain holds %llu records; damage lies "
                 "in records %llu..%llu",
                 (unsigned long long)r->bad_cp_seq, when, (unsigned long long)r->head_seq,
                 (unsigned long long)r->good_below_seq + 1, (unsigned long long)r->bad_cp_seq);
    } else {
        snprintf(out + n, cap - (size_t)n, "; checkpoint seq %llu signed %s",
                 (unsigned long long)r->bad_cp_seq, when);
    }
}

/* audit.verify: the hash chain and every signed checkpoint. A broken log is
 * answered EINTEGRITY, with the message naming the first broken entry and
 * the same row as a result. */
static void
s_audit_verify(brk_server_t *srv)
{
    MDB_txn *txn = NULL;
    dxb_audit_report_t rep;
    msgpack_packer pk;
    char msg[512] = "ok";
    dxb_err_t err = dxb_store_begin(srv->store, false, &txn);
    if (!err) {
        err = brk_auditcp_check(srv, txn, &rep);
    }
    dxb_store_abort(&txn);
    if (err && err != DXB_EINTEGRITY) {
        s_reply_error(srv, err, dxb_strerror(err));
        return;
    }
    if (err) {
        s_audit_verify_message(&rep, msg, sizeof(msg));
        dxb_log_error("BRK-AUDITBROKEN", "%s", msg);
    }
    msgpack_sbuffer_clear(&srv->sbuf);
    if (dxb_msg_enc_admin_rep_begin(&srv->sbuf, &pk, dxb_err_to_wire(err), msg) != DXB_OK) {
        return;
    }
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 10);
    s_bool(&pk, "ok", err == DXB_OK);
    s_u64(&pk, "records", rep.records);
    s_u64(&pk, "head_seq", rep.head_seq);
    s_u64(&pk, "first_bad_seq", rep.bad_seq);
    s_str(&pk, "reason", dxb_audit_fault_name(rep.fault));
    s_u64(&pk, "checkpoints", rep.checkpoints);
    s_u64(&pk, "checkpoints_ok", rep.checkpoints_ok);
    s_u64(&pk, "last_checkpoint_seq", rep.last_cp_seq);
    s_u64(&pk, "last_checkpoint_ms", rep.last_cp_ms);
    s_u64(&pk, "bad_checkpoint_seq", rep.bad_cp_seq);
}

/* One exported record: the fields an auditor needs to recompute the chain. */
static void
s_audit_export_row(msgpack_packer *pk, uint64_t seq, const MDB_val *v)
{
    const uint8_t *val = v->mv_data;
    bool whole = v->mv_size >= 64;
    const uint8_t *text = whole ? val + 64 : val;
    size_t len = whole ? v->mv_size - 64 : v->mv_size;
    brk_auditrec_t rec;
    char iso[40], hash[65] = "", prev[65] = "";
    s_audit_split(whole ? text : NULL, whole ? len : 0, &rec);
    bool raw = !whole || !s_text_rebuilds(text, len, &rec);
    if (whole) {
        dxb_hex_encode(val, 32, hash);
        dxb_hex_encode(val + 32, 32, prev);
    }
    s_iso_time(rec.time_ms, iso, sizeof(iso));
    msgpack_pack_map(pk, raw ? 11 : 10);
    s_u64(pk, "seq", seq);
    s_str(pk, "time", iso);
    s_u64(pk, "time_ms", rec.time_ms);
    s_str(pk, "actor", rec.f[1]);
    s_str(pk, "action", rec.f[2]);
    s_str(pk, "object", rec.f[3]);
    s_str(pk, "result", rec.f[4]);
    s_str(pk, "detail", rec.f[5]);
    s_str(pk, "hash", hash);
    s_str(pk, "prev_hash", prev);
    if (raw) {
        char *hex = malloc(2 * len + 1);
        if (hex != NULL) {
            dxb_hex_encode(text, len, hex);
        }
        s_str(pk, "raw_hex", hex != NULL ? hex : "");
        free(hex);
    }
}

/* audit.export [since_ms [until_ms [from_seq [limit]]]]: one page of the
 * records with seq >= from_seq and since_ms <= time_ms < until_ms (until_ms
 * 0: no end), in seq order. The reply message is "next=SEQ" when the page
 * stopped before the end of the log (limit rows, AUDIT_EXPORT_MAX_BYTES, or
 * AUDIT_EXPORT_SCAN_MAX records looked at: the loop must not pause long),
 * "end" when it reached the end. */
static void
s_audit_export(brk_server_t *srv, const dxb_frame_t *f)
{
    uint64_t a[4] = {0, 0, 1, AUDIT_EXPORT_DEFAULT}; /* since, until, from, limit */
    for (uint16_t i = 0; i < f->u.admin_req.n_args; i++) {
        if (i >= 4 || !s_parse_u64(f->u.admin_req.args[i], &a[i])) {
            s_reply_error(srv, DXB_EINVAL,
                          "audit.export takes up to four decimal numbers: since_ms until_ms "
                          "from_seq limit");
            return;
        }
    }
    if (a[3] == 0 || a[3] > AUDIT_EXPORT_MAX) {
        s_reply_error(srv, DXB_EINVAL, "audit.export limit must be 1..100000");
        return;
    }
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    dxb_err_t err = dxb_store_begin(srv->store, false, &txn);
    if (err) {
        s_reply_error(srv, err, dxb_strerror(err));
        return;
    }
    brk_rows_t r = {.limit = (uint32_t)a[3]};
    msgpack_sbuffer_init(&r.rows);
    msgpack_packer_init(&r.pk, &r.rows, msgpack_sbuffer_write);
    uint64_t scanned = 0, next = 0;
    uint8_t key[8];
    dxb_be64_put(key, a[2]);
    MDB_val k = {8, key}, v;
    int rc = mdb_cursor_open(txn, srv->queue->auditdb, &cur);
    for (rc = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8) {
            continue; /* not a record of ours; verify names it */
        }
        uint64_t seq = dxb_be64_get(k.mv_data);
        if (r.n >= r.limit || r.rows.size >= AUDIT_EXPORT_MAX_BYTES ||
            scanned >= AUDIT_EXPORT_SCAN_MAX) {
            next = seq;
            break;
        }
        scanned++;
        uint64_t t = v.mv_size >= 64
                         ? dxb_audit_text_time((const uint8_t *)v.mv_data + 64, v.mv_size - 64)
                         : 0;
        if (t < a[0] || (a[1] != 0 && t >= a[1])) {
            continue;
        }
        s_audit_export_row(&r.pk, seq, &v);
        r.n++;
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    dxb_store_abort(&txn);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        err = dxb_store_err(rc, "audit export");
        s_reply_error(srv, err, dxb_strerror(err));
    } else {
        char msg[40] = "end";
        msgpack_packer pk;
        if (next != 0) {
            snprintf(msg, sizeof(msg), "next=%llu", (unsigned long long)next);
        }
        msgpack_sbuffer_clear(&srv->sbuf);
        if (dxb_msg_enc_admin_rep_begin(&srv->sbuf, &pk, 0, msg) == DXB_OK) {
            s_emit_rows(&pk, &srv->sbuf, &r);
        }
    }
    msgpack_sbuffer_destroy(&r.rows);
}

/* audit.checkpoints row: what an auditor needs to check the signature. */
static bool
s_audit_cp_visit(void *arg, const dxb_audit_cp_t *cp, bool valid)
{
    brk_rows_t *r = arg;
    char iso[40], hash[65], sig[129], signer[DXB_Z85_KEY_LEN + 1];
    s_iso_time(cp->time_ms, iso, sizeof(iso));
    dxb_hex_encode(cp->hash, 32, hash);
    dxb_hex_encode(cp->sig, 64, sig);
    dxb_keys_z85(cp->signer_pk, signer);
    msgpack_pack_map(&r->pk, 7);
    s_u64(&r->pk, "seq", cp->seq);
    s_str(&r->pk, "time", iso);
    s_u64(&r->pk, "time_ms", cp->time_ms);
    s_str(&r->pk, "hash", hash);
    s_str(&r->pk, "signer", signer);
    s_str(&r->pk, "sig", sig);
    s_bool(&r->pk, "valid", valid);
    r->n++;
    return true;
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
    } else if (strcmp(cmd, "audit.checkpoints") == 0) {
        n = AUDIT_CHECKPOINTS_DEFAULT;
        if (arg0 != NULL && (!s_parse_u64(arg0, &n) || n == 0 || n > AUDIT_EXPORT_MAX)) {
            err = DXB_EINVAL;
        } else {
            err = brk_auditcp_scan_last(srv, txn, n, s_audit_cp_visit, &r);
            s_emit_rows(pk, &srv->sbuf, &r);
        }
    } else {
        err = DXB_ETYPE;
    }
    msgpack_sbuffer_destroy(&r.rows);
    dxb_store_abort(&txn);
    return err;
}

/* Governance operations (PROTOCOL.md 10) run as the operator; changes
 * commit with their audit records before the answer leaves. */
static void
s_gov(brk_server_t *srv, const dxb_frame_t *f)
{
    const char *cmd = f->u.admin_req.command;
    const char *args[DXB_MAX_ADMIN_ARGS];
    for (uint16_t i = 0; i < f->u.admin_req.n_args; i++) {
        args[i] = f->u.admin_req.args[i];
    }
    bool writes = brk_gov_op_writes(cmd);
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(srv->store, writes, &txn);
    if (err) {
        s_reply_error(srv, err, dxb_strerror(err));
        return;
    }
    msgpack_sbuffer rows;
    msgpack_sbuffer_init(&rows);
    msgpack_packer rpk;
    msgpack_packer_init(&rpk, &rows, msgpack_sbuffer_write);
    uint16_t code = 0;
    char text[512] = "";
    bool wrote = false;
    err = brk_gov_request(&srv->gov, txn, NULL, cmd, args, f->u.admin_req.n_args, &rpk, &code,
                          text, sizeof(text), &wrote);
    if (!err && wrote && code == 0) {
        err = dxb_store_commit(srv->store, &txn);
    }
    dxb_store_abort(&txn);
    dxb_audit_settle(&srv->queue->audit, !err && wrote && code == 0);
    if (err) {
        s_reply_error(srv, err, dxb_strerror(err));
    } else {
        msgpack_packer pk;
        msgpack_sbuffer_clear(&srv->sbuf);
        if (dxb_msg_enc_admin_rep_begin(&srv->sbuf, &pk, code, text) == DXB_OK) {
            msgpack_sbuffer_write(&srv->sbuf, rows.data, rows.size);
        }
        if (wrote && code == 0) {
            brk_server_gov_changed(srv);
        }
    }
    msgpack_sbuffer_destroy(&rows);
}

void
brk_admin_refuse(brk_server_t *srv, dxb_err_t err, const char *text)
{
    dxb_log_warn("BRK-ADMINBAD", "admin request refused err=%s detail=%s", dxb_err_name(err),
                 text);
    s_reply_error(srv, err, text);
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
    if (brk_gov_op_known(cmd)) {
        s_gov(srv, &f);
        return;
    }
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
    if (strcmp(cmd, "audit.verify") == 0) {
        s_audit_verify(srv);
        return;
    }
    if (strcmp(cmd, "audit.export") == 0) {
        s_audit_export(srv, &f);
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
