/* brk_gov: catalog, demands, grants, enforcement, objections. See brk_gov.h. */
#include "broker/brk_gov.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/brk_gstat.h"
#include "broker/brk_server.h"
#include "common/dxb_log.h"
#include "common/dxb_mask.h"
#include "common/dxb_store.h"
#include "common/dxb_util.h"

#define DAY_MS (86400ull * 1000ull)

enum { DEMAND_PENDING, DEMAND_APPROVED, DEMAND_DENIED };
enum { GRANT_ACTIVE, GRANT_REVOKED };
enum { OBJ_OPEN, OBJ_RESPONDED, OBJ_CLOSED };

static const char *const s_demand_states[] = {"pending", "approved", "denied", NULL};
static const char *const s_obj_states[] = {"open", "responded", "closed", NULL};
static const char *const s_share_names[] = {"none", "conditional", "unconditional", NULL};

typedef struct {
    uint64_t id;
    char consumer[DXB_ID_CAP], dataset[DXB_ID_CAP], owner[DXB_ID_CAP];
    char purpose[513];
    char fields[1025]; /* comma list; "" = every field */
    uint32_t period_days;
    uint8_t state;
    uint64_t created_ms, decided_ms, grant_id;
    char filed_by[DXB_ID_CAP], decided_by[DXB_ID_CAP];
    char reason[257];
} brk_demand_t;

typedef struct {
    uint64_t id, demand_id;
    char consumer[DXB_ID_CAP], dataset[DXB_ID_CAP], owner[DXB_ID_CAP];
    char fields[1025];
    char mask[1025];
    uint64_t created_ms, expires_ms, revoked_ms;
    char granted_by[DXB_ID_CAP], revoked_by[DXB_ID_CAP];
    char reason[257];
    uint8_t state;
    uint8_t automatic;
} brk_grant_t;

typedef struct {
    uint64_t id;
    char dataset[DXB_ID_CAP], owner[DXB_ID_CAP], filer[DXB_ID_CAP];
    char record_ref[257];
    char message[1025];
    char response[1025];
    uint8_t state;
    uint64_t created_ms, responded_ms, closed_ms;
} brk_objection_t;

_Static_assert(sizeof(brk_demand_t) <= 4096 && sizeof(brk_grant_t) <= 4096 &&
                   sizeof(brk_objection_t) <= 4096,
               "s_list_records copies a record into 4096 bytes");

/* What one request needs while it runs. */
typedef struct {
    brk_gov_t *g;
    MDB_txn *txn;
    const char *actor;   /* NULL = operator */
    const char *who;     /* actor or "operator", for records and audit */
    const char *const *args;
    size_t n_args;
    msgpack_packer *pk;
    uint16_t *code;
    char *text;
    size_t text_cap;
    bool wrote;
    uint64_t now;
} gov_req_t;

/* Longest text each argument may carry (what the records hold): longer is
 * refused with EINVAL rather than cut. */
static const struct {
    const char *op;
    size_t max[5];
} s_arg_limits[] = {
    {"demand.file", {DXB_ID_CAP - 1, 512, 1024, 16, DXB_ID_CAP - 1}},
    {"demand.approve", {20, 1024, 1024, 16, 0}},
    {"demand.deny", {20, 256, 0, 0, 0}},
    {"grant.revoke", {20, 256, 0, 0, 0}},
    {"objection.file", {DXB_ID_CAP - 1, 256, 1024, DXB_ID_CAP - 1, 0}},
    {"objection.respond", {20, 1024, 0, 0, 0}},
};

static bool
s_args_fit(const char *op, const char *const *args, size_t n, char *text, size_t cap)
{
    for (size_t i = 0; i < sizeof(s_arg_limits) / sizeof(s_arg_limits[0]); i++) {
        if (strcmp(s_arg_limits[i].op, op) != 0) {
            continue;
        }
        for (size_t a = 0; a < n && a < 5; a++) {
            size_t max = s_arg_limits[i].max[a];
            if (max > 0 && strlen(args[a]) > max) {
                snprintf(text, cap, "%s: argument %zu is longer than %zu bytes", op, a + 1, max);
                return false;
            }
        }
    }
    return true;
}

dxb_err_t
brk_gov_open(brk_gov_t *g, brk_server_t *srv)
{
    memset(g, 0, sizeof(*g));
    g->srv = srv;
    struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {{"catalog", &g->catalog},   {"demand", &g->demand},       {"grant", &g->grant},
               {"grantidx", &g->grantidx}, {"objection", &g->objection}};
    dxb_err_t err = DXB_OK;
    for (size_t i = 0; !err && i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        err = dxb_store_dbi(srv->store, dbs[i].name, 0, dbs[i].dbi);
    }
    return err;
}

/* ---- small helpers ----------------------------------------------------------- */

static void
s_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_str_with_body(pk, v, strlen(v));
}

static void
s_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_uint64(pk, v);
}

static void
s_kv_bool(msgpack_packer *pk, const char *k, bool v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    if (v) {
        msgpack_pack_true(pk);
    } else {
        msgpack_pack_false(pk);
    }
}

static dxb_err_t
s_fail(gov_req_t *r, uint16_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Sets the reply code and text; the request answers with no rows. */
static dxb_err_t
s_fail(gov_req_t *r, uint16_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text, r->text_cap, fmt, ap);
    va_end(ap);
    *r->code = code;
    msgpack_pack_nil(r->pk);
    return DXB_OK;
}

static const char *
s_arg(const gov_req_t *r, size_t i)
{
    return i < r->n_args ? r->args[i] : NULL;
}

static bool
s_parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0') {
        return false;
    }
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || s[0] == '-') {
        return false;
    }
    *out = v;
    return true;
}

static dxb_err_t
s_next_id(gov_req_t *r, const char *name, uint64_t *id)
{
    MDB_dbi meta = r->g->srv->queue->meta;
    MDB_val k = {strlen(name), (void *)name}, v;
    uint64_t last = 0;
    if (mdb_get(r->txn, meta, &k, &v) == 0 && v.mv_size == 8) {
        memcpy(&last, v.mv_data, 8);
    }
    *id = ++last;
    MDB_val nv = {8, &last};
    return dxb_store_err(mdb_put(r->txn, meta, &k, &nv, 0), "gov id put");
}

/* Fixed-size records keyed by be64 id. */
static dxb_err_t
s_get_rec(MDB_txn *txn, MDB_dbi dbi, uint64_t id, void *rec, size_t size, bool *found)
{
    uint8_t key[8];
    dxb_be64_put(key, id);
    MDB_val k = {8, key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    *found = rc == 0 && v.mv_size == size;
    if (*found) {
        memcpy(rec, v.mv_data, size);
    }
    return rc == 0 || rc == MDB_NOTFOUND ? DXB_OK : dxb_store_err(rc, "gov get");
}

static dxb_err_t
s_put_rec(MDB_txn *txn, MDB_dbi dbi, uint64_t id, const void *rec, size_t size)
{
    uint8_t key[8];
    dxb_be64_put(key, id);
    MDB_val k = {8, key}, v = {size, (void *)rec};
    return dxb_store_err(mdb_put(txn, dbi, &k, &v, 0), "gov put");
}

static dxb_err_t
s_audit(gov_req_t *r, const char *action, const char *object, const char *result,
        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static dxb_err_t
s_audit(gov_req_t *r, const char *action, const char *object, const char *result,
        const char *fmt, ...)
{
    char detail[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    r->wrote = true;
    return dxb_audit_append(&r->g->srv->queue->audit, r->txn, r->who, action, object, result,
                            "%s", detail);
}

/* ---- catalog ----------------------------------------------------------------- */

static size_t
s_cat_size(uint16_t n_fields)
{
    return offsetof(brk_catentry_t, fields) + (size_t)n_fields * sizeof(brk_catfield_t) +
           sizeof(uint64_t) * 2 + sizeof(uint32_t);
}

/* Stored form: the struct's head, n_fields fields, then the tail numbers. */
static dxb_err_t
s_cat_put(MDB_txn *txn, MDB_dbi dbi, const brk_catentry_t *e)
{
    size_t head = offsetof(brk_catentry_t, fields);
    size_t flen = (size_t)e->n_fields * sizeof(brk_catfield_t);
    size_t len = s_cat_size(e->n_fields);
    uint8_t *buf = malloc(len);
    if (buf == NULL) {
        return DXB_ENOMEM;
    }
    memcpy(buf, e, head);
    memcpy(buf + head, e->fields, flen);
    memcpy(buf + head + flen, &e->created_ms, 8);
    memcpy(buf + head + flen + 8, &e->updated_ms, 8);
    memcpy(buf + head + flen + 16, &e->version, 4);
    MDB_val k = {strlen(e->dataset), (void *)e->dataset}, v = {len, buf};
    dxb_err_t err = dxb_store_err(mdb_put(txn, dbi, &k, &v, 0), "catalog put");
    free(buf);
    return err;
}

static bool
s_cat_decode(const MDB_val *v, brk_catentry_t *e)
{
    size_t head = offsetof(brk_catentry_t, fields);
    if (v->mv_size < head) {
        return false;
    }
    memcpy(e, v->mv_data, head);
    if (e->n_fields > BRK_GOV_MAX_FIELDS || v->mv_size != s_cat_size(e->n_fields)) {
        return false;
    }
    size_t flen = (size_t)e->n_fields * sizeof(brk_catfield_t);
    const uint8_t *p = (const uint8_t *)v->mv_data + head;
    memcpy(e->fields, p, flen);
    memcpy(&e->created_ms, p + flen, 8);
    memcpy(&e->updated_ms, p + flen + 8, 8);
    memcpy(&e->version, p + flen + 16, 4);
    return true;
}

/* Loads the entry of dataset into *e (static storage is fine: callers copy
 * what they keep). */
static dxb_err_t
s_cat_get(brk_gov_t *g, MDB_txn *txn, const char *dataset, brk_catentry_t *e, bool *found)
{
    MDB_val k = {strlen(dataset), (void *)dataset}, v;
    int rc = mdb_get(txn, g->catalog, &k, &v);
    *found = rc == 0 && s_cat_decode(&v, e);
    return rc == 0 || rc == MDB_NOTFOUND ? DXB_OK : dxb_store_err(rc, "catalog get");
}

static bool
s_cat_same(const brk_catentry_t *a, const brk_catentry_t *b)
{
    size_t head = offsetof(brk_catentry_t, fields);
    return memcmp(a, b, head) == 0 &&
           memcmp(a->fields, b->fields, (size_t)a->n_fields * sizeof(brk_catfield_t)) == 0;
}

/* Brings fixed-size text fields into a canonical form (zero padding), so
 * that comparing stored and declared entries compares content only. */
static void
s_cat_canon(brk_catentry_t *e)
{
    brk_catentry_t c;
    memset(&c, 0, sizeof(c));
    dxb_strlcpy(c.dataset, e->dataset, sizeof(c.dataset));
    dxb_strlcpy(c.owner, e->owner, sizeof(c.owner));
    dxb_strlcpy(c.title, e->title, sizeof(c.title));
    dxb_strlcpy(c.description, e->description, sizeof(c.description));
    c.level = e->level;
    c.share = e->share;
    dxb_strlcpy(c.frequency, e->frequency, sizeof(c.frequency));
    dxb_strlcpy(c.region, e->region, sizeof(c.region));
    c.n_fields = e->n_fields;
    for (uint16_t i = 0; i < e->n_fields && i < BRK_GOV_MAX_FIELDS; i++) {
        dxb_strlcpy(c.fields[i].name, e->fields[i].name, sizeof(c.fields[i].name));
        dxb_strlcpy(c.fields[i].type, e->fields[i].type, sizeof(c.fields[i].type));
        c.fields[i].sensitivity = e->fields[i].sensitivity;
    }
    c.created_ms = e->created_ms;
    c.updated_ms = e->updated_ms;
    c.version = e->version;
    *e = c;
}

dxb_err_t
brk_gov_declare(brk_gov_t *g, MDB_txn *txn, const char *node, const brk_catentry_t *entries,
                size_t n, size_t *changed, size_t *refused)
{
    static brk_catentry_t cur, e;
    dxb_audit_t *au = &g->srv->queue->audit;
    uint64_t now = dxb_now_ms();
    *changed = 0;
    *refused = 0;
    dxb_err_t err = DXB_OK;
    for (size_t i = 0; !err && i < n; i++) {
        e = entries[i];
        dxb_strlcpy(e.owner, node, sizeof(e.owner));
        s_cat_canon(&e);
        bool found = false;
        err = s_cat_get(g, txn, e.dataset, &cur, &found);
        if (err) {
            break;
        }
        if (found && strcmp(cur.owner, node) != 0) {
            (*refused)++;
            dxb_log_warn("BRK-CATALOG", "catalog entry refused: dataset owned by another node "
                         "node=%s dataset=%s owner=%s", node, e.dataset, cur.owner);
            err = dxb_audit_append(au, txn, node, "catalog", e.dataset, "EDENIED",
                                   "reason=dataset owned by %s", cur.owner);
            continue;
        }
        e.created_ms = found ? cur.created_ms : now;
        e.version = found ? cur.version : 0;
        e.updated_ms = found ? cur.updated_ms : now;
        if (found && s_cat_same(&cur, &e)) {
            continue; /* unchanged: nothing recorded */
        }
        e.version++;
        e.updated_ms = now;
        err = s_cat_put(txn, g->catalog, &e);
        if (!err) {
            (*changed)++;
            err = dxb_audit_append(au, txn, node, found ? "catalog-change" : "catalog-add",
                                   e.dataset, "ok",
                                   "version=%u level=%u share=%s fields=%u title=%s", e.version,
                                   e.level, s_share_names[e.share % 3], e.n_fields, e.title);
            dxb_log_notice("BRK-CATALOG", "catalog entry %s node=%s dataset=%s version=%u",
                           found ? "changed" : "added", node, e.dataset, e.version);
        }
    }
    /* Datasets this node no longer declares leave the catalog. */
    MDB_cursor *cur_c = NULL;
    if (!err && mdb_cursor_open(txn, g->catalog, &cur_c) == 0) {
        MDB_val k, v;
        for (int rc = mdb_cursor_get(cur_c, &k, &v, MDB_FIRST); rc == 0 && !err;
             rc = mdb_cursor_get(cur_c, &k, &v, MDB_NEXT)) {
            if (!s_cat_decode(&v, &cur) || strcmp(cur.owner, node) != 0) {
                continue;
            }
            bool kept = false;
            for (size_t i = 0; i < n && !kept; i++) {
                kept = strcmp(entries[i].dataset, cur.dataset) == 0;
            }
            if (kept) {
                continue;
            }
            err = dxb_store_err(mdb_cursor_del(cur_c, 0), "catalog del");
            if (!err) {
                (*changed)++;
                err = dxb_audit_append(au, txn, node, "catalog-remove", cur.dataset, "ok",
                                       "version=%u", cur.version);
                dxb_log_notice("BRK-CATALOG", "catalog entry removed node=%s dataset=%s", node,
                               cur.dataset);
            }
        }
        mdb_cursor_close(cur_c);
    }
    return err;
}

static void
s_fields_text(const brk_catentry_t *e, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (uint16_t i = 0; i < e->n_fields && o + 1 < cap; i++) {
        int w = snprintf(out + o, cap - o, "%s%s:%s:%u", i ? "," : "", e->fields[i].name,
                         e->fields[i].type, e->fields[i].sensitivity);
        if (w < 0 || (size_t)w >= cap - o) {
            break;
        }
        o += (size_t)w;
    }
}

static void
s_pack_cat(msgpack_packer *pk, const brk_catentry_t *e, bool full)
{
    msgpack_pack_map(pk, full ? 13 : 11);
    s_kv_str(pk, "dataset", e->dataset);
    s_kv_str(pk, "owner", e->owner);
    s_kv_str(pk, "title", e->title);
    s_kv_u64(pk, "level", e->level);
    s_kv_str(pk, "share", s_share_names[e->share % 3]);
    s_kv_str(pk, "frequency", e->frequency);
    s_kv_str(pk, "region", e->region);
    s_kv_u64(pk, "n_fields", e->n_fields);
    s_kv_u64(pk, "version", e->version);
    s_kv_u64(pk, "created_ms", e->created_ms);
    s_kv_u64(pk, "updated_ms", e->updated_ms);
    if (full) {
        static char fields[BRK_GOV_MAX_FIELDS * 170];
        s_fields_text(e, fields, sizeof(fields));
        s_kv_str(pk, "description", e->description);
        s_kv_str(pk, "fields", fields);
    }
}

static dxb_err_t
s_op_catalog_list(gov_req_t *r)
{
    static brk_catentry_t e;
    MDB_stat st;
    mdb_stat(r->txn, r->g->catalog, &st);
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(r->txn, r->g->catalog, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "catalog cursor");
    }
    size_t n = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        n += s_cat_decode(&v, &e) ? 1 : 0;
    }
    msgpack_pack_array(r->pk, (uint32_t)n);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n > 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (s_cat_decode(&v, &e)) {
            s_pack_cat(r->pk, &e, false);
            n--;
        }
    }
    mdb_cursor_close(cur);
    return DXB_OK;
}

static dxb_err_t
s_op_catalog_show(gov_req_t *r)
{
    static brk_catentry_t e;
    const char *ds = s_arg(r, 0);
    bool found = false;
    if (ds == NULL) {
        return s_fail(r, DXB_W_EINVAL, "usage: catalog.show DATASET");
    }
    dxb_err_t err = s_cat_get(r->g, r->txn, ds, &e, &found);
    if (err) {
        return err;
    }
    if (!found) {
        return s_fail(r, DXB_W_ENOTFOUND, "dataset %s is not in the catalog", ds);
    }
    msgpack_pack_array(r->pk, 1);
    s_pack_cat(r->pk, &e, true);
    return DXB_OK;
}

/* Lists the fixed-size records of dbi that match, in id order: a first pass
 * counts them (the msgpack array needs its length), a second packs them. */
typedef bool (*gov_match_fn)(const gov_req_t *r, const void *rec);
typedef void (*gov_pack_fn)(const gov_req_t *r, const void *rec);

static dxb_err_t
s_list_records(gov_req_t *r, MDB_dbi dbi, size_t size, gov_match_fn match, gov_pack_fn pack)
{
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(r->txn, dbi, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "gov cursor");
    }
    MDB_val k, v;
    for (int pass = 0; pass < 2; pass++) {
        size_t n = 0;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            /* LMDB data may be unaligned: records are used through a copy. */
            static uint8_t rec[4096] __attribute__((aligned(16)));
            if (v.mv_size != size || size > sizeof(rec)) {
                continue;
            }
            memcpy(rec, v.mv_data, size);
            if (!match(r, rec)) {
                continue;
            }
            if (pass == 1) {
                pack(r, rec);
            }
            n++;
        }
        if (pass == 0) {
            msgpack_pack_array(r->pk, (uint32_t)n);
        }
    }
    mdb_cursor_close(cur);
    return DXB_OK;
}

/* ---- grants -------------------------------------------------------------------- */

static void
s_idx_key(const char *dataset, const char *consumer, char *out, size_t cap, size_t *len)
{
    size_t a = strlen(dataset), b = strlen(consumer);
    if (a + 1 + b > cap) {
        *len = 0;
        return;
    }
    memcpy(out, dataset, a);
    out[a] = '\0';
    memcpy(out + a + 1, consumer, b);
    *len = a + 1 + b;
}

/* The active grant of consumer for dataset, if any and not expired. */
static dxb_err_t
s_grant_active(brk_gov_t *g, MDB_txn *txn, const char *dataset, const char *consumer,
               uint64_t now, brk_grant_t *out, bool *found)
{
    char key[2 * DXB_ID_CAP];
    size_t klen = 0;
    *found = false;
    s_idx_key(dataset, consumer, key, sizeof(key), &klen);
    MDB_val k = {klen, key}, v;
    int rc = mdb_get(txn, g->grantidx, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return DXB_OK;
    }
    if (rc != 0 || v.mv_size != 8) {
        return dxb_store_err(rc ? rc : MDB_CORRUPTED, "grantidx get");
    }
    bool have = false;
    dxb_err_t err = s_get_rec(txn, g->grant, dxb_be64_get(v.mv_data), out, sizeof(*out), &have);
    *found = !err && have && out->state == GRANT_ACTIVE &&
             (out->expires_ms == 0 || out->expires_ms > now);
    return err;
}

static const char *
s_grant_state(const brk_grant_t *gr, uint64_t now)
{
    if (gr->state == GRANT_REVOKED) {
        return "revoked";
    }
    return gr->expires_ms != 0 && gr->expires_ms <= now ? "expired" : "active";
}

static void
s_pack_grant(msgpack_packer *pk, const brk_grant_t *gr, uint64_t now)
{
    msgpack_pack_map(pk, 13);
    s_kv_u64(pk, "grant_id", gr->id);
    s_kv_u64(pk, "demand_id", gr->demand_id);
    s_kv_str(pk, "dataset", gr->dataset);
    s_kv_str(pk, "consumer", gr->consumer);
    s_kv_str(pk, "owner", gr->owner);
    s_kv_str(pk, "fields", gr->fields);
    s_kv_str(pk, "mask", gr->mask);
    s_kv_str(pk, "state", s_grant_state(gr, now));
    s_kv_bool(pk, "automatic", gr->automatic != 0);
    s_kv_u64(pk, "created_ms", gr->created_ms);
    s_kv_u64(pk, "expires_ms", gr->expires_ms);
    s_kv_u64(pk, "revoked_ms", gr->revoked_ms);
    s_kv_str(pk, "granted_by", gr->granted_by);
}

/* Creates a grant and makes it the active one of (dataset, consumer); a
 * previous active grant is revoked as superseded. */
static dxb_err_t
s_grant_create(gov_req_t *r, const brk_demand_t *d, const char *fields, const char *mask,
               uint64_t expires_ms, bool automatic, uint64_t *id_out)
{
    static brk_grant_t gr, old;
    memset(&gr, 0, sizeof(gr));
    dxb_err_t err = s_next_id(r, "gov:grant", &gr.id);
    if (err) {
        return err;
    }
    gr.demand_id = d->id;
    dxb_strlcpy(gr.consumer, d->consumer, sizeof(gr.consumer));
    dxb_strlcpy(gr.dataset, d->dataset, sizeof(gr.dataset));
    dxb_strlcpy(gr.owner, d->owner, sizeof(gr.owner));
    dxb_strlcpy(gr.fields, fields, sizeof(gr.fields));
    dxb_strlcpy(gr.mask, mask, sizeof(gr.mask));
    dxb_strlcpy(gr.granted_by, automatic ? "automatic" : r->who, sizeof(gr.granted_by));
    gr.created_ms = r->now;
    gr.expires_ms = expires_ms;
    gr.automatic = automatic;
    bool found = false;
    err = s_grant_active(r->g, r->txn, d->dataset, d->consumer, r->now, &old, &found);
    if (!err && found) {
        old.state = GRANT_REVOKED;
        old.revoked_ms = r->now;
        dxb_strlcpy(old.revoked_by, r->who, sizeof(old.revoked_by));
        dxb_strlcpy(old.reason, "superseded", sizeof(old.reason));
        err = s_put_rec(r->txn, r->g->grant, old.id, &old, sizeof(old));
    }
    if (!err) {
        err = s_put_rec(r->txn, r->g->grant, gr.id, &gr, sizeof(gr));
    }
    if (!err) {
        char key[2 * DXB_ID_CAP];
        size_t klen = 0;
        uint8_t val[8];
        s_idx_key(d->dataset, d->consumer, key, sizeof(key), &klen);
        dxb_be64_put(val, gr.id);
        MDB_val k = {klen, key}, v = {8, val};
        err = dxb_store_err(mdb_put(r->txn, r->g->grantidx, &k, &v, 0), "grantidx put");
    }
    if (!err) {
        err = s_audit(r, "grant", d->dataset, "ok",
                      "grant_id=%llu demand_id=%llu consumer=%s fields=%s mask=%s expires_ms=%llu "
                      "automatic=%d",
                      (unsigned long long)gr.id, (unsigned long long)d->id, d->consumer,
                      fields[0] ? fields : "*", mask[0] ? mask : "-",
                      (unsigned long long)expires_ms, automatic);
        dxb_log_notice("BRK-GRANT", "grant created grant_id=%llu dataset=%s consumer=%s by=%s",
                       (unsigned long long)gr.id, d->dataset, d->consumer, gr.granted_by);
    }
    *id_out = gr.id;
    return err;
}

static bool
s_grant_match(const gov_req_t *r, const void *rec)
{
    const brk_grant_t *gr = rec;
    const char *ds = s_arg(r, 0);
    bool mine = r->actor == NULL || strcmp(gr->consumer, r->actor) == 0 ||
                strcmp(gr->owner, r->actor) == 0;
    return mine && (ds == NULL || strcmp(ds, gr->dataset) == 0);
}

static void
s_grant_pack(const gov_req_t *r, const void *rec)
{
    s_pack_grant(r->pk, rec, r->now);
}

static dxb_err_t
s_op_grant_list(gov_req_t *r)
{
    return s_list_records(r, r->g->grant, sizeof(brk_grant_t), s_grant_match, s_grant_pack);
}

static dxb_err_t
s_op_grant_revoke(gov_req_t *r)
{
    static brk_grant_t gr;
    uint64_t id = 0;
    bool found = false;
    if (!s_parse_u64(s_arg(r, 0), &id)) {
        return s_fail(r, DXB_W_EINVAL, "usage: grant.revoke GRANT_ID [REASON]");
    }
    dxb_err_t err = s_get_rec(r->txn, r->g->grant, id, &gr, sizeof(gr), &found);
    if (err) {
        return err;
    }
    if (!found) {
        return s_fail(r, DXB_W_ENOTFOUND, "no grant %llu", (unsigned long long)id);
    }
    if (r->actor != NULL && strcmp(r->actor, gr.owner) != 0) {
        return s_fail(r, DXB_W_EDENIED, "only the owner of %s or an operator may revoke",
                      gr.dataset);
    }
    if (gr.state != GRANT_ACTIVE) {
        return s_fail(r, DXB_W_EINVAL, "grant %llu is already revoked", (unsigned long long)id);
    }
    gr.state = GRANT_REVOKED;
    gr.revoked_ms = r->now;
    dxb_strlcpy(gr.revoked_by, r->who, sizeof(gr.revoked_by));
    dxb_strlcpy(gr.reason, s_arg(r, 1) ? s_arg(r, 1) : "", sizeof(gr.reason));
    err = s_put_rec(r->txn, r->g->grant, gr.id, &gr, sizeof(gr));
    if (!err) {
        err = s_audit(r, "grant-revoke", gr.dataset, "ok", "grant_id=%llu consumer=%s reason=%s",
                      (unsigned long long)id, gr.consumer, gr.reason);
        dxb_log_notice("BRK-GRANT", "grant revoked grant_id=%llu dataset=%s consumer=%s by=%s",
                       (unsigned long long)id, gr.dataset, gr.consumer, r->who);
    }
    if (!err) {
        msgpack_pack_array(r->pk, 1);
        s_pack_grant(r->pk, &gr, r->now);
    }
    return err;
}

/* ---- demands --------------------------------------------------------------------- */

static void
s_pack_demand(msgpack_packer *pk, const brk_demand_t *d, uint64_t now)
{
    uint64_t end = d->state == DEMAND_PENDING ? now : d->decided_ms;
    msgpack_pack_map(pk, 15);
    s_kv_u64(pk, "demand_id", d->id);
    s_kv_str(pk, "consumer", d->consumer);
    s_kv_str(pk, "dataset", d->dataset);
    s_kv_str(pk, "owner", d->owner);
    s_kv_str(pk, "purpose", d->purpose);
    s_kv_str(pk, "fields", d->fields);
    s_kv_u64(pk, "period_days", d->period_days);
    s_kv_str(pk, "state", s_demand_states[d->state % 3]);
    s_kv_u64(pk, "created_ms", d->created_ms);
    s_kv_u64(pk, "decided_ms", d->decided_ms);
    s_kv_u64(pk, "waited_s", end > d->created_ms ? (end - d->created_ms) / 1000 : 0);
    s_kv_str(pk, "filed_by", d->filed_by);
    s_kv_str(pk, "decided_by", d->decided_by);
    s_kv_str(pk, "reason", d->reason);
    s_kv_u64(pk, "grant_id", d->grant_id);
}

/* Checks that every name of a comma list is a field of the entry (when the
 * entry declares fields). Returns the first unknown name or NULL. */
static const char *
s_unknown_field(const brk_catentry_t *e, const char *list, char *buf, size_t cap)
{
    if (e->n_fields == 0 || list[0] == '\0') {
        return NULL;
    }
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        bool ok = false;
        for (uint16_t i = 0; i < e->n_fields && !ok; i++) {
            ok = strlen(e->fields[i].name) == len && memcmp(e->fields[i].name, p, len) == 0;
        }
        if (!ok) {
            snprintf(buf, cap, "%.*s", (int)len, p);
            return buf;
        }
        p = comma ? comma + 1 : p + len;
    }
    return NULL;
}

static dxb_err_t
s_decide(gov_req_t *r, brk_demand_t *d, uint8_t state, const char *reason)
{
    d->state = state;
    d->decided_ms = r->now;
    dxb_strlcpy(d->decided_by, r->who, sizeof(d->decided_by));
    dxb_strlcpy(d->reason, reason, sizeof(d->reason));
    dxb_err_t err = s_put_rec(r->txn, r->g->demand, d->id, d, sizeof(*d));
    if (!err) {
        err = s_audit(r, state == DEMAND_APPROVED ? "demand-approve" : "demand-deny", d->dataset,
                      "ok", "demand_id=%llu consumer=%s reason=%s waited_s=%llu",
                      (unsigned long long)d->id, d->consumer, reason,
                      (unsigned long long)((r->now - d->created_ms) / 1000));
    }
    return err;
}

static dxb_err_t
s_op_demand_file(gov_req_t *r)
{
    static brk_catentry_t e;
    static brk_demand_t d;
    const char *ds = s_arg(r, 0), *purpose = s_arg(r, 1);
    const char *fields = s_arg(r, 2) ? s_arg(r, 2) : "";
    const char *consumer = r->actor ? r->actor : s_arg(r, 4);
    uint64_t days = 0;
    if (ds == NULL || purpose == NULL || purpose[0] == '\0' || consumer == NULL ||
        (s_arg(r, 3) != NULL && s_arg(r, 3)[0] != '\0' && !s_parse_u64(s_arg(r, 3), &days))) {
        return s_fail(r, DXB_W_EINVAL, r->actor ? "usage: demand.file DATASET PURPOSE [FIELDS] [DAYS]"
                                                : "usage: demand.file DATASET PURPOSE FIELDS DAYS CONSUMER");
    }
    brk_sess_t *cs = brk_server_find(r->g->srv, consumer);
    if (cs == NULL) {
        return s_fail(r, DXB_W_ENOTFOUND, "unknown consumer node %s", consumer);
    }
    bool found = false;
    dxb_err_t err = s_cat_get(r->g, r->txn, ds, &e, &found);
    if (err) {
        return err;
    }
    if (!found) {
        return s_fail(r, DXB_W_ENOTFOUND, "dataset %s is not in the catalog", ds);
    }
    if (strcmp(e.owner, consumer) == 0) {
        return s_fail(r, DXB_W_EINVAL, "%s owns %s: no demand needed", consumer, ds);
    }
    char bad[130];
    if (s_unknown_field(&e, fields, bad, sizeof(bad)) != NULL) {
        return s_fail(r, DXB_W_EINVAL, "field '%s' is not a field of %s", bad, ds);
    }
    memset(&d, 0, sizeof(d));
    err = s_next_id(r, "gov:demand", &d.id);
    if (err) {
        return err;
    }
    dxb_strlcpy(d.consumer, consumer, sizeof(d.consumer));
    dxb_strlcpy(d.dataset, ds, sizeof(d.dataset));
    dxb_strlcpy(d.owner, e.owner, sizeof(d.owner));
    dxb_strlcpy(d.purpose, purpose, sizeof(d.purpose));
    dxb_strlcpy(d.fields, fields, sizeof(d.fields));
    dxb_strlcpy(d.filed_by, r->who, sizeof(d.filed_by));
    d.period_days = (uint32_t)(days > 36600 ? 36600 : days);
    d.created_ms = r->now;
    err = s_put_rec(r->txn, r->g->demand, d.id, &d, sizeof(d));
    if (!err) {
        err = s_audit(r, "demand", ds, "ok", "demand_id=%llu consumer=%s owner=%s fields=%s purpose=%s",
                      (unsigned long long)d.id, consumer, e.owner, fields[0] ? fields : "*",
                      purpose);
        dxb_log_notice("BRK-DEMAND", "demand filed demand_id=%llu dataset=%s consumer=%s owner=%s",
                       (unsigned long long)d.id, ds, consumer, e.owner);
    }
    /* The rules decide some demands at once (PROTOCOL.md 10.2). */
    if (!err && e.share == BRK_SHARE_NONE) {
        err = s_decide(r, &d, DEMAND_DENIED, "share type none: never shared");
    } else if (!err && cs->cfg.clearance < e.level) {
        err = s_decide(r, &d, DEMAND_DENIED, "consumer clearance below the dataset's level");
    } else if (!err && e.share == BRK_SHARE_UNCONDITIONAL) {
        uint64_t exp = d.period_days ? r->now + d.period_days * DAY_MS : 0;
        err = s_grant_create(r, &d, fields, "", exp, true, &d.grant_id);
        if (!err) {
            err = s_decide(r, &d, DEMAND_APPROVED, "unconditional share, clearance sufficient");
        }
    }
    if (!err) {
        msgpack_pack_array(r->pk, 1);
        s_pack_demand(r->pk, &d, r->now);
    }
    return err;
}

static dxb_err_t
s_demand_for_decision(gov_req_t *r, brk_demand_t *d, bool *ok)
{
    uint64_t id = 0;
    bool found = false;
    *ok = false;
    if (!s_parse_u64(s_arg(r, 0), &id)) {
        return s_fail(r, DXB_W_EINVAL, "expected a demand id");
    }
    dxb_err_t err = s_get_rec(r->txn, r->g->demand, id, d, sizeof(*d), &found);
    if (err) {
        return err;
    }
    if (!found) {
        return s_fail(r, DXB_W_ENOTFOUND, "no demand %llu", (unsigned long long)id);
    }
    if (r->actor != NULL && strcmp(r->actor, d->owner) != 0) {
        return s_fail(r, DXB_W_EDENIED, "only the owner of %s (%s) or an operator may decide",
                      d->dataset, d->owner);
    }
    if (d->state != DEMAND_PENDING) {
        return s_fail(r, DXB_W_EINVAL, "demand %llu is already %s", (unsigned long long)id,
                      s_demand_states[d->state % 3]);
    }
    *ok = true;
    return DXB_OK;
}

static dxb_err_t
s_op_demand_approve(gov_req_t *r)
{
    static brk_demand_t d;
    static brk_catentry_t e;
    bool ok = false, found = false;
    dxb_err_t err = s_demand_for_decision(r, &d, &ok);
    if (err || !ok) {
        return err;
    }
    const char *fields = s_arg(r, 1) && s_arg(r, 1)[0] ? s_arg(r, 1) : d.fields;
    const char *mask = s_arg(r, 2) ? s_arg(r, 2) : "";
    uint64_t days = 0;
    if (s_arg(r, 3) != NULL && s_arg(r, 3)[0] != '\0' && !s_parse_u64(s_arg(r, 3), &days)) {
        return s_fail(r, DXB_W_EINVAL, "expires: expected a number of days");
    }
    err = s_cat_get(r->g, r->txn, d.dataset, &e, &found);
    if (err) {
        return err;
    }
    if (!found) {
        return s_fail(r, DXB_W_ENOTFOUND, "dataset %s left the catalog", d.dataset);
    }
    char bad[130];
    if (s_unknown_field(&e, fields, bad, sizeof(bad)) != NULL) {
        return s_fail(r, DXB_W_EINVAL, "field '%s' is not a field of %s", bad, d.dataset);
    }
    if (mask[0] != '\0') {
        dxb_mask_policy_t *pol = NULL;
        char why[200] = "";
        if (dxb_mask_policy_parse(mask, strlen(mask), &pol, why, sizeof(why)) != DXB_OK) {
            return s_fail(r, DXB_W_EINVAL, "masking policy: %s", why);
        }
        dxb_mask_policy_destroy(&pol);
    }
    brk_sess_t *cs = brk_server_find(r->g->srv, d.consumer);
    if (e.share == BRK_SHARE_NONE || cs == NULL || cs->cfg.clearance < e.level) {
        return s_fail(r, DXB_W_EDENIED, "%s cannot be granted to %s: %s", d.dataset, d.consumer,
                      e.share == BRK_SHARE_NONE ? "share type none"
                                                : "clearance below the dataset's level");
    }
    uint64_t exp = days ? r->now + days * DAY_MS
                        : (d.period_days ? r->now + d.period_days * DAY_MS : 0);
    err = s_grant_create(r, &d, fields, mask, exp, false, &d.grant_id);
    if (!err) {
        err = s_decide(r, &d, DEMAND_APPROVED, "approved");
    }
    if (!err) {
        msgpack_pack_array(r->pk, 1);
        s_pack_demand(r->pk, &d, r->now);
    }
    return err;
}

static dxb_err_t
s_op_demand_deny(gov_req_t *r)
{
    static brk_demand_t d;
    bool ok = false;
    dxb_err_t err = s_demand_for_decision(r, &d, &ok);
    if (err || !ok) {
        return err;
    }
    const char *reason = s_arg(r, 1);
    if (reason == NULL || reason[0] == '\0') {
        return s_fail(r, DXB_W_EINVAL, "a denial needs a reason");
    }
    err = s_decide(r, &d, DEMAND_DENIED, reason);
    if (!err) {
        msgpack_pack_array(r->pk, 1);
        s_pack_demand(r->pk, &d, r->now);
    }
    return err;
}

static bool
s_demand_match(const gov_req_t *r, const void *rec)
{
    const brk_demand_t *d = rec;
    const char *state = s_arg(r, 0);
    bool mine = r->actor == NULL || strcmp(d->consumer, r->actor) == 0 ||
                strcmp(d->owner, r->actor) == 0;
    return mine && (state == NULL || state[0] == '\0' ||
                    strcmp(state, s_demand_states[d->state % 3]) == 0);
}

static void
s_demand_pack(const gov_req_t *r, const void *rec)
{
    s_pack_demand(r->pk, rec, r->now);
}

static dxb_err_t
s_op_demand_list(gov_req_t *r)
{
    const char *state = s_arg(r, 0);
    if (state != NULL && state[0] != '\0' && strcmp(state, "pending") != 0 &&
        strcmp(state, "approved") != 0 && strcmp(state, "denied") != 0) {
        return s_fail(r, DXB_W_EINVAL, "state must be pending, approved or denied");
    }
    return s_list_records(r, r->g->demand, sizeof(brk_demand_t), s_demand_match, s_demand_pack);
}

/* ---- objections ------------------------------------------------------------------ */

static void
s_pack_obj(msgpack_packer *pk, const brk_objection_t *o)
{
    msgpack_pack_map(pk, 11);
    s_kv_u64(pk, "objection_id", o->id);
    s_kv_str(pk, "dataset", o->dataset);
    s_kv_str(pk, "owner", o->owner);
    s_kv_str(pk, "filer", o->filer);
    s_kv_str(pk, "record", o->record_ref);
    s_kv_str(pk, "message", o->message);
    s_kv_str(pk, "response", o->response);
    s_kv_str(pk, "state", s_obj_states[o->state % 3]);
    s_kv_u64(pk, "created_ms", o->created_ms);
    s_kv_u64(pk, "responded_ms", o->responded_ms);
    s_kv_u64(pk, "closed_ms", o->closed_ms);
}

static dxb_err_t
s_op_objection_file(gov_req_t *r)
{
    static brk_catentry_t e;
    static brk_objection_t o;
    const char *ds = s_arg(r, 0), *rec = s_arg(r, 1), *msg = s_arg(r, 2);
    const char *filer = r->actor ? r->actor : s_arg(r, 3);
    if (ds == NULL || rec == NULL || msg == NULL || msg[0] == '\0' || filer == NULL) {
        return s_fail(r, DXB_W_EINVAL, r->actor ? "usage: objection.file DATASET RECORD MESSAGE"
                                                : "usage: objection.file DATASET RECORD MESSAGE FILER");
    }
    bool found = false;
    dxb_err_t err = s_cat_get(r->g, r->txn, ds, &e, &found);
    if (err) {
        return err;
    }
    if (!found) {
        return s_fail(r, DXB_W_ENOTFOUND, "dataset %s is not in the catalog", ds);
    }
    if (brk_server_find(r->g->srv, filer) == NULL) {
        return s_fail(r, DXB_W_ENOTFOUND, "unknown node %s", filer);
    }
    memset(&o, 0, sizeof(o));
    err = s_next_id(r, "gov:objection", &o.id);
    if (err) {
        return err;
    }
    dxb_strlcpy(o.dataset, ds, sizeof(o.dataset));
    dxb_strlcpy(o.owner, e.owner, sizeof(o.owner));
    dxb_strlcpy(o.filer, filer, sizeof(o.filer));
    dxb_strlcpy(o.record_ref, rec, sizeof(o.record_ref));
    dxb_strlcpy(o.message, msg, sizeof(o.message));
    o.created_ms = r->now;
    err = s_put_rec(r->txn, r->g->objection, o.id, &o, sizeof(o));
    if (!err) {
        err = s_audit(r, "objection", ds, "ok", "objection_id=%llu filer=%s owner=%s record=%s",
                      (unsigned long long)o.id, filer, e.owner, rec);
        dxb_log_notice("BRK-OBJECTION", "objection filed objection_id=%llu dataset=%s filer=%s",
                       (unsigned long long)o.id, ds, filer);
        msgpack_pack_array(r->pk, 1);
        s_pack_obj(r->pk, &o);
    }
    return err;
}

static dxb_err_t
s_op_objection_update(gov_req_t *r, bool respond)
{
    static brk_objection_t o;
    uint64_t id = 0;
    bool found = false;
    if (!s_parse_u64(s_arg(r, 0), &id) || (respond && (s_arg(r, 1) == NULL || !s_arg(r, 1)[0]))) {
        return s_fail(r, DXB_W_EINVAL, respond ? "usage: objection.respond ID MESSAGE"
                                               : "usage: objection.close ID");
    }
    dxb_err_t err = s_get_rec(r->txn, r->g->objection, id, &o, sizeof(o), &found);
    if (err) {
        return err;
    }
    if (!found) {
        return s_fail(r, DXB_W_ENOTFOUND, "no objection %llu", (unsigned long long)id);
    }
    const char *may = respond ? o.owner : o.filer;
    if (r->actor != NULL && strcmp(r->actor, may) != 0) {
        return s_fail(r, DXB_W_EDENIED, "only %s or an operator may %s objection %llu", may,
                      respond ? "respond to" : "close", (unsigned long long)id);
    }
    if (o.state == OBJ_CLOSED) {
        return s_fail(r, DXB_W_EINVAL, "objection %llu is closed", (unsigned long long)id);
    }
    if (respond) {
        dxb_strlcpy(o.response, s_arg(r, 1), sizeof(o.response));
        o.state = OBJ_RESPONDED;
        o.responded_ms = r->now;
    } else {
        o.state = OBJ_CLOSED;
        o.closed_ms = r->now;
    }
    err = s_put_rec(r->txn, r->g->objection, o.id, &o, sizeof(o));
    if (!err) {
        err = s_audit(r, respond ? "objection-respond" : "objection-close", o.dataset, "ok",
                      "objection_id=%llu", (unsigned long long)o.id);
        msgpack_pack_array(r->pk, 1);
        s_pack_obj(r->pk, &o);
    }
    return err;
}

static bool
s_obj_match(const gov_req_t *r, const void *rec)
{
    const brk_objection_t *o = rec;
    const char *state = s_arg(r, 0);
    bool mine = r->actor == NULL || strcmp(o->filer, r->actor) == 0 ||
                strcmp(o->owner, r->actor) == 0;
    return mine && (state == NULL || state[0] == '\0' ||
                    strcmp(state, s_obj_states[o->state % 3]) == 0);
}

static void
s_obj_pack(const gov_req_t *r, const void *rec)
{
    s_pack_obj(r->pk, rec);
}

static dxb_err_t
s_op_objection_list(gov_req_t *r)
{
    return s_list_records(r, r->g->objection, sizeof(brk_objection_t), s_obj_match, s_obj_pack);
}

/* ---- figures (issue 4 item 7) -------------------------------------------------------- */

typedef struct {
    char id[DXB_ID_CAP];
    brk_gstat_rec_t t;
    uint64_t demands, demands_pending, demands_decided, response_sum_s, response_max_s;
    uint64_t objections, objections_open;
} gov_fig_t;

typedef struct {
    gov_fig_t *rows;
    size_t n, cap;
} gov_figs_t;

static gov_fig_t *
s_fig(gov_figs_t *f, const char *id)
{
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->rows[i].id, id) == 0) {
            return &f->rows[i];
        }
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        gov_fig_t *r = realloc(f->rows, cap * sizeof(*r));
        if (r == NULL) {
            return NULL;
        }
        f->rows = r;
        f->cap = cap;
    }
    gov_fig_t *x = &f->rows[f->n++];
    memset(x, 0, sizeof(*x));
    dxb_strlcpy(x->id, id, sizeof(x->id));
    return x;
}

static bool
s_fig_visit(void *arg, const char *id, const brk_gstat_rec_t *sum)
{
    gov_fig_t *x = s_fig(arg, id);
    if (x != NULL) {
        x->t = *sum;
    }
    return x != NULL;
}

static int
s_fig_cmp(const void *a, const void *b)
{
    return strcmp(((const gov_fig_t *)a)->id, ((const gov_fig_t *)b)->id);
}

/* Adds demand and objection figures: per dataset, or per owner node (the
 * node whose response time the rules score). */
static void
s_fig_governance(gov_req_t *r, gov_figs_t *f, bool by_dataset, uint64_t since_ms)
{
    static brk_demand_t d;
    static brk_objection_t o;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    if (mdb_cursor_open(r->txn, r->g->demand, &cur) == 0) {
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (v.mv_size != sizeof(d)) {
                continue;
            }
            memcpy(&d, v.mv_data, sizeof(d));
            gov_fig_t *x = d.created_ms >= since_ms ? s_fig(f, by_dataset ? d.dataset : d.owner)
                                                    : NULL;
            if (x == NULL) {
                continue;
            }
            x->demands++;
            if (d.state == DEMAND_PENDING) {
                x->demands_pending++;
            } else {
                uint64_t s_ = d.decided_ms > d.created_ms ? (d.decided_ms - d.created_ms) / 1000
                                                          : 0;
                x->demands_decided++;
                x->response_sum_s += s_;
                x->response_max_s = s_ > x->response_max_s ? s_ : x->response_max_s;
            }
        }
        mdb_cursor_close(cur);
    }
    if (mdb_cursor_open(r->txn, r->g->objection, &cur) == 0) {
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (v.mv_size != sizeof(o)) {
                continue;
            }
            memcpy(&o, v.mv_data, sizeof(o));
            gov_fig_t *x = o.created_ms >= since_ms ? s_fig(f, by_dataset ? o.dataset : o.owner)
                                                    : NULL;
            if (x != NULL) {
                x->objections++;
                x->objections_open += o.state != OBJ_CLOSED ? 1 : 0;
            }
        }
        mdb_cursor_close(cur);
    }
}

/* stats.by dataset|node [since_ms]: operator only. */
static dxb_err_t
s_op_stats_by(gov_req_t *r)
{
    static brk_catentry_t e;
    const char *by = s_arg(r, 0);
    uint64_t since = 0;
    bool by_dataset = by != NULL && strcmp(by, "dataset") == 0;
    if (r->actor != NULL) {
        return s_fail(r, DXB_W_EDENIED, "figures are for operators");
    }
    if (by == NULL || (!by_dataset && strcmp(by, "node") != 0) ||
        (s_arg(r, 1) != NULL && s_arg(r, 1)[0] != '\0' && !s_parse_u64(s_arg(r, 1), &since))) {
        return s_fail(r, DXB_W_EINVAL, "usage: stats.by dataset|node [SINCE_MS]");
    }
    gov_figs_t f = {0};
    brk_server_t *srv = r->g->srv;
    dxb_err_t err = brk_gstat_sum(&srv->gstat, r->txn, by_dataset ? 'd' : 'n',
                                  (uint32_t)(since / DAY_MS), s_fig_visit, &f);
    /* Every registered node and every catalog dataset gets a row, idle or not. */
    for (size_t i = 0; !err && !by_dataset && i < srv->n_sess; i++) {
        s_fig(&f, srv->sess[i]->cfg.id);
    }
    MDB_cursor *cur = NULL;
    if (!err && by_dataset && mdb_cursor_open(r->txn, r->g->catalog, &cur) == 0) {
        MDB_val k, v;
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (s_cat_decode(&v, &e)) {
                s_fig(&f, e.dataset);
            }
        }
        mdb_cursor_close(cur);
    }
    if (!err) {
        s_fig_governance(r, &f, by_dataset, since);
        qsort(f.rows, f.n, sizeof(*f.rows), s_fig_cmp);
        msgpack_pack_array(r->pk, (uint32_t)f.n);
        for (size_t i = 0; i < f.n; i++) {
            gov_fig_t *x = &f.rows[i];
            msgpack_pack_map(r->pk, 14);
            s_kv_str(r->pk, by_dataset ? "dataset" : "node", x->id);
            s_kv_u64(r->pk, "deliveries", x->t.published);
            s_kv_u64(r->pk, "delivered", x->t.delivered);
            s_kv_u64(r->pk, "bytes_in", x->t.bytes_in);
            s_kv_u64(r->pk, "bytes_out", x->t.bytes_out);
            s_kv_u64(r->pk, "refused", x->t.refused);
            s_kv_u64(r->pk, "requests", x->t.requests);
            s_kv_u64(r->pk, "demands", x->demands);
            s_kv_u64(r->pk, "demands_pending", x->demands_pending);
            s_kv_u64(r->pk, "demand_avg_response_s",
                     x->demands_decided ? x->response_sum_s / x->demands_decided : 0);
            s_kv_u64(r->pk, "demand_max_response_s", x->response_max_s);
            s_kv_u64(r->pk, "objections", x->objections);
            s_kv_u64(r->pk, "objections_open", x->objections_open);
            s_kv_u64(r->pk, "since_ms", since);
        }
    }
    free(f.rows);
    return err;
}

/* ---- dispatch ---------------------------------------------------------------------- */

typedef struct {
    const char *op;
    bool writes;
    dxb_err_t (*fn)(gov_req_t *r);
} gov_op_t;

static dxb_err_t
s_op_objection_respond(gov_req_t *r)
{
    return s_op_objection_update(r, true);
}

static dxb_err_t
s_op_objection_close(gov_req_t *r)
{
    return s_op_objection_update(r, false);
}

static const gov_op_t s_ops[] = {
    {"catalog.list", false, s_op_catalog_list},
    {"catalog.show", false, s_op_catalog_show},
    {"demand.file", true, s_op_demand_file},
    {"demand.list", false, s_op_demand_list},
    {"demand.approve", true, s_op_demand_approve},
    {"demand.deny", true, s_op_demand_deny},
    {"grant.list", false, s_op_grant_list},
    {"grant.revoke", true, s_op_grant_revoke},
    {"objection.file", true, s_op_objection_file},
    {"objection.list", false, s_op_objection_list},
    {"objection.respond", true, s_op_objection_respond},
    {"objection.close", true, s_op_objection_close},
    {"stats.by", false, s_op_stats_by},
};

static const gov_op_t *
s_find_op(const char *op)
{
    for (size_t i = 0; i < sizeof(s_ops) / sizeof(s_ops[0]); i++) {
        if (strcmp(s_ops[i].op, op) == 0) {
            return &s_ops[i];
        }
    }
    return NULL;
}

bool
brk_gov_op_known(const char *op)
{
    return s_find_op(op) != NULL;
}

bool
brk_gov_op_writes(const char *op)
{
    const gov_op_t *o = s_find_op(op);
    return o != NULL && o->writes;
}

dxb_err_t
brk_gov_request(brk_gov_t *g, MDB_txn *txn, const char *actor, const char *op,
                const char *const *args, size_t n_args, msgpack_packer *pk, uint16_t *code,
                char *text, size_t text_cap, bool *wrote)
{
    gov_req_t r = {.g = g,
                   .txn = txn,
                   .actor = actor,
                   .who = actor ? actor : "operator",
                   .args = args,
                   .n_args = n_args,
                   .pk = pk,
                   .code = code,
                   .text = text,
                   .text_cap = text_cap,
                   .now = dxb_now_ms()};
    *code = DXB_W_OK;
    snprintf(text, text_cap, "ok");
    const gov_op_t *o = s_find_op(op);
    char why[160];
    dxb_err_t err;
    if (o == NULL) {
        err = s_fail(&r, DXB_W_ETYPE, "unknown operation %s", op);
    } else if (!s_args_fit(op, args, n_args, why, sizeof(why))) {
        err = s_fail(&r, DXB_W_EINVAL, "%s", why);
    } else {
        err = o->fn(&r);
    }
    *wrote = r.wrote;
    return err;
}

/* ---- enforcement ------------------------------------------------------------------- */

uint16_t
brk_gov_check(brk_gov_t *g, MDB_txn *txn, const dxb_env_t *env, char (*rcpt)[DXB_ID_CAP],
              size_t n, const char **why)
{
    static brk_catentry_t e;
    static brk_grant_t gr;
    static char reason[200];
    bool found = false;
    if (s_cat_get(g, txn, env->hdr.dataset, &e, &found) != DXB_OK) {
        *why = "catalog unreadable";
        return DXB_W_EIO;
    }
    if (!found) {
        *why = "dataset not in the catalog";
        return DXB_W_EDENIED;
    }
    if (strcmp(e.owner, env->hdr.sender) != 0) {
        *why = "sender does not own the dataset";
        return DXB_W_EDENIED;
    }
    if (e.share == BRK_SHARE_NONE) {
        *why = "share type none: never shared";
        return DXB_W_EDENIED;
    }
    uint64_t now = dxb_now_ms();
    for (size_t i = 0; i < n; i++) {
        brk_sess_t *rs = brk_server_find(g->srv, rcpt[i]);
        if (rs == NULL || rs->cfg.clearance < e.level) {
            snprintf(reason, sizeof(reason), "clearance of %s below the dataset's level %u",
                     rcpt[i], e.level);
            *why = reason;
            return DXB_W_EDENIED;
        }
        if (e.share == BRK_SHARE_UNCONDITIONAL) {
            continue; /* granted to every node cleared for it */
        }
        if (s_grant_active(g, txn, e.dataset, rcpt[i], now, &gr, &found) != DXB_OK) {
            *why = "grants unreadable";
            return DXB_W_EIO;
        }
        if (!found) {
            snprintf(reason, sizeof(reason), "no valid grant for %s", rcpt[i]);
            *why = reason;
            return DXB_W_EDENIED;
        }
    }
    return DXB_W_OK;
}
