/* agt_gov: the agent's side of governance (PROTOCOL.md section 10).
 *
 * - Declares the datasets this node owns (datasets[].catalog in the config)
 *   to the broker after every WELCOME (CATALOG); the broker records changes.
 * - Keeps the node's view of the governance state that the broker pushes
 *   (GOV_STATE: catalog, grants, demands, objections): written as JSON files
 *   under <data_dir>/governance/ for people and scripts at the node, and the
 *   grants kept in memory, because masking (脱敏) happens here, at the
 *   provider, before encryption: the broker never sees the unmasked data.
 * - Relays governance requests of local applications and of
 *   `dxbctl --agent` (GOV_REQ on the local API) to the broker as this node.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agents/agt_agent.h"
#include "common/dxb_log.h"
#include "common/dxb_mask.h"
#include "common/dxb_util.h"
#include "proto/dxb_rd.h"

#define GOV_PENDING_MAX 64
#define GOV_STATE_MAX_BYTES (16u << 20)

/* A grant as the broker reported it. */
typedef struct agt_grant {
    uint64_t id;
    char dataset[65], consumer[65], owner[65];
    char mask[1025];
    char fields[1025]; /* granted fields, comma list; "" = all */
    bool active;
} agt_grant_t;

/* A request relayed from an application, waiting for the broker's answer. */
typedef struct {
    bool used;
    uint32_t our_req;
    uint32_t app_req;
    uint8_t rid[256];
    size_t rid_len;
    uint64_t sent_mono;
} agt_govpend_t;

static agt_govpend_t s_pending[GOV_PENDING_MAX];
static uint32_t s_next_req = 1;

/* ---- catalog declaration ------------------------------------------------------ */

/* Whether this node has declared datasets before (kept in the store), so
 * that an emptied declaration is sent once to remove them, and a node that
 * never owned a dataset sends nothing. */
static bool
s_declared_before(agt_t *a, int set)
{
    static const char key[] = "catalog:declared";
    MDB_txn *txn = NULL;
    bool was = false;
    if (dxb_store_begin(a->store, set >= 0, &txn) != DXB_OK) {
        return set < 0; /* unknown: err towards sending */
    }
    MDB_val k = {sizeof(key) - 1, (void *)key}, v;
    was = mdb_get(txn, a->meta, &k, &v) == 0;
    if (set >= 0 && was != (set == 1)) {
        uint8_t one = 1;
        MDB_val nv = {1, &one};
        int rc = set == 1 ? mdb_put(txn, a->meta, &k, &nv, 0) : mdb_del(txn, a->meta, &k, NULL);
        if (rc == 0 && agt_store_commit(a, &txn) == DXB_OK) {
            return was;
        }
    }
    dxb_store_abort(&txn);
    return was;
}

void
agt_gov_send_catalog(agt_t *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->cfg.n_datasets; i++) {
        n += a->cfg.datasets[i].catalog.declared ? 1 : 0;
    }
    if (n == 0 && !s_declared_before(a, -1)) {
        return; /* owns nothing and never did: nothing to tell the broker */
    }
    (void)s_declared_before(a, n > 0 ? 1 : 0);
    dxb_catentry_in_t *es = calloc(n + 1, sizeof(*es));
    const char **names = NULL, **types = NULL;
    uint8_t *sens = NULL;
    size_t total_fields = 0;
    for (size_t i = 0; i < a->cfg.n_datasets; i++) {
        total_fields += a->cfg.datasets[i].catalog.n_fields;
    }
    names = calloc(total_fields + 1, sizeof(*names));
    types = calloc(total_fields + 1, sizeof(*types));
    sens = calloc(total_fields + 1, 1);
    if (es == NULL || names == NULL || types == NULL || sens == NULL) {
        goto out;
    }
    size_t k = 0, f = 0;
    for (size_t i = 0; i < a->cfg.n_datasets; i++) {
        const agt_dataset_cfg_t *d = &a->cfg.datasets[i];
        const agt_catalog_cfg_t *c = &d->catalog;
        if (!c->declared) {
            continue;
        }
        dxb_catentry_in_t *e = &es[k++];
        e->dataset = d->id;
        e->title = c->title;
        e->description = c->description;
        e->frequency = c->frequency;
        e->region = c->region;
        e->level = c->level;
        e->share = c->share;
        e->n_fields = c->n_fields;
        e->field_names = &names[f];
        e->field_types = &types[f];
        e->field_sensitivity = &sens[f];
        for (size_t j = 0; j < c->n_fields; j++, f++) {
            names[f] = c->fields[j].name;
            types[f] = c->fields[j].type;
            sens[f] = c->fields[j].sensitivity;
        }
    }
    msgpack_sbuffer_clear(&a->sbuf);
    if (dxb_msg_enc_catalog(&a->sbuf, es, k) != DXB_OK) {
        dxb_log_error("AGT-CATALOG", "catalog declaration cannot be encoded (check the "
                                     "datasets' catalog sections)");
        goto out;
    }
    if (a->dealer != NULL) {
        zmq_send(a->dealer, a->sbuf.data, a->sbuf.size, ZMQ_DONTWAIT);
    }
    dxb_log_info("AGT-CATALOG", "catalog declaration sent datasets=%zu", k);
out:
    free(es);
    free(names);
    free(types);
    free(sens);
}

/* ---- state from the broker -------------------------------------------------------- */

/* Appends s as a JSON string to sb. */
static void
s_json_str(msgpack_sbuffer *sb, const uint8_t *p, size_t n)
{
    msgpack_sbuffer_write(sb, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        char esc[8];
        if (p[i] == '"' || p[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)p[i];
            msgpack_sbuffer_write(sb, esc, 2);
        } else if (p[i] < 0x20) {
            int w = snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
            msgpack_sbuffer_write(sb, esc, (size_t)w);
        } else {
            msgpack_sbuffer_write(sb, (const char *)&p[i], 1);
        }
    }
    msgpack_sbuffer_write(sb, "\"", 1);
}

/* One scalar of a row as JSON; also returns it as text/number for callers
 * that pick fields out of rows. */
typedef struct {
    const uint8_t *str;
    size_t len;
    uint64_t u;
    bool is_str, is_bool, b;
} agt_val_t;

static bool
s_read_val(dxb_rd_t *rd, agt_val_t *v, msgpack_sbuffer *json)
{
    char num[64];
    memset(v, 0, sizeof(*v));
    switch (dxb_rd_peek(rd)) {
    case DXB_RD_NIL:
        dxb_rd_nil(rd);
        msgpack_sbuffer_write(json, "null", 4);
        break;
    case DXB_RD_BOOL:
        v->is_bool = true;
        v->b = dxb_rd_bool(rd);
        msgpack_sbuffer_write(json, v->b ? "true" : "false", v->b ? 4 : 5);
        break;
    case DXB_RD_UINT:
        v->u = dxb_rd_uint(rd, UINT64_MAX);
        msgpack_sbuffer_write(json, num, (size_t)snprintf(num, sizeof(num), "%llu",
                                                          (unsigned long long)v->u));
        break;
    case DXB_RD_INT:
        msgpack_sbuffer_write(json, num, (size_t)snprintf(num, sizeof(num), "%lld",
                                                          (long long)dxb_rd_int(rd)));
        break;
    case DXB_RD_FLOAT:
        msgpack_sbuffer_write(json, num, (size_t)snprintf(num, sizeof(num), "%.6g",
                                                          dxb_rd_float(rd)));
        break;
    case DXB_RD_STR:
        v->is_str = true;
        v->str = dxb_rd_str(rd, 1u << 20, &v->len);
        s_json_str(json, v->str, v->len);
        break;
    default:
        return false;
    }
    return dxb_rd_ok(rd);
}

static void
s_copy(char *dst, size_t cap, const agt_val_t *v)
{
    size_t n = v->is_str ? (v->len < cap - 1 ? v->len : cap - 1) : 0;
    /* A nil or number has no str (NULL): memcpy(dst, NULL, 0) is undefined. */
    if (n > 0) {
        memcpy(dst, v->str, n);
    }
    dst[n] = '\0';
}

/* Takes a grant row's fields as they pass. */
static void
s_grant_field(agt_grant_t *g, const uint8_t *key, size_t klen, const agt_val_t *v)
{
#define KEY(s) (klen == sizeof(s) - 1 && memcmp(key, s, klen) == 0)
    if (KEY("grant_id")) {
        g->id = v->u;
    } else if (KEY("dataset")) {
        s_copy(g->dataset, sizeof(g->dataset), v);
    } else if (KEY("consumer")) {
        s_copy(g->consumer, sizeof(g->consumer), v);
    } else if (KEY("owner")) {
        s_copy(g->owner, sizeof(g->owner), v);
    } else if (KEY("mask")) {
        s_copy(g->mask, sizeof(g->mask), v);
    } else if (KEY("fields")) {
        s_copy(g->fields, sizeof(g->fields), v);
    } else if (KEY("state")) {
        g->active = v->is_str && v->len == 6 && memcmp(v->str, "active", 6) == 0;
    }
#undef KEY
}

/* Converts the rows to a JSON array; collects grants when want_grants. */
static bool
s_rows(agt_t *a, dxb_bytes_t rows, msgpack_sbuffer *json, bool want_grants,
       agt_grant_t **grants_out, size_t *n_out)
{
    dxb_rd_t rd;
    dxb_rd_init(&rd, rows.ptr, rows.len);
    if (dxb_rd_peek(&rd) == DXB_RD_NIL) {
        msgpack_sbuffer_write(json, "[]\n", 3);
        return true;
    }
    uint32_t n = dxb_rd_array(&rd);
    agt_grant_t *gs = want_grants ? calloc(n + 1, sizeof(*gs)) : NULL;
    if (want_grants && gs == NULL) {
        return false;
    }
    msgpack_sbuffer_write(json, "[", 1);
    for (uint32_t i = 0; i < n && dxb_rd_ok(&rd); i++) {
        msgpack_sbuffer_write(json, i ? ",\n {" : "\n {", i ? 4 : 3);
        uint32_t cols = dxb_rd_map(&rd);
        for (uint32_t c = 0; c < cols && dxb_rd_ok(&rd); c++) {
            size_t klen = 0;
            const uint8_t *key = dxb_rd_str(&rd, 64, &klen);
            if (!dxb_rd_ok(&rd)) {
                break;
            }
            if (c) {
                msgpack_sbuffer_write(json, ", ", 2);
            }
            s_json_str(json, key, klen);
            msgpack_sbuffer_write(json, ": ", 2);
            agt_val_t v;
            if (!s_read_val(&rd, &v, json)) {
                dxb_rd_fail(&rd, "bad value");
                break;
            }
            if (gs != NULL) {
                s_grant_field(&gs[i], key, klen, &v);
            }
        }
        msgpack_sbuffer_write(json, "}", 1);
    }
    msgpack_sbuffer_write(json, "\n]\n", 3);
    if (!dxb_rd_ok(&rd)) {
        free(gs);
        return false;
    }
    if (grants_out != NULL) {
        *grants_out = gs;
        *n_out = n;
    }
    (void)a;
    return true;
}

/* Logs demands that wait for this node's decision, once each. */
static void
s_note_pending_demands(agt_t *a, dxb_bytes_t rows)
{
    dxb_rd_t rd;
    dxb_rd_init(&rd, rows.ptr, rows.len);
    if (dxb_rd_peek(&rd) == DXB_RD_NIL) {
        return;
    }
    uint32_t n = dxb_rd_array(&rd);
    for (uint32_t i = 0; i < n && dxb_rd_ok(&rd); i++) {
        uint32_t cols = dxb_rd_map(&rd);
        char owner[65] = "", consumer[65] = "", dataset[65] = "", state[16] = "";
        uint64_t id = 0;
        msgpack_sbuffer junk;
        msgpack_sbuffer_init(&junk);
        for (uint32_t c = 0; c < cols && dxb_rd_ok(&rd); c++) {
            size_t klen = 0;
            const uint8_t *key = dxb_rd_str(&rd, 64, &klen);
            agt_val_t v;
            if (!dxb_rd_ok(&rd) || !s_read_val(&rd, &v, &junk)) {
                break;
            }
            if (klen == 5 && memcmp(key, "owner", 5) == 0) {
                s_copy(owner, sizeof(owner), &v);
            } else if (klen == 8 && memcmp(key, "consumer", 8) == 0) {
                s_copy(consumer, sizeof(consumer), &v);
            } else if (klen == 7 && memcmp(key, "dataset", 7) == 0) {
                s_copy(dataset, sizeof(dataset), &v);
            } else if (klen == 5 && memcmp(key, "state", 5) == 0) {
                s_copy(state, sizeof(state), &v);
            } else if (klen == 9 && memcmp(key, "demand_id", 9) == 0) {
                id = v.u;
            }
        }
        msgpack_sbuffer_destroy(&junk);
        if (strcmp(owner, a->cfg.id) == 0 && strcmp(state, "pending") == 0 &&
            id > a->gov_demand_logged) {
            a->gov_demand_logged = id;
            dxb_log_notice("AGT-DEMAND",
                           "a demand waits for this node's decision demand_id=%llu dataset=%s "
                           "consumer=%s (dxbctl --agent %s demand approve|deny %llu ...)",
                           (unsigned long long)id, dataset, consumer, a->cfg.api_endpoint,
                           (unsigned long long)id);
        }
    }
}

void
agt_gov_on_state(agt_t *a, const char *what, dxb_bytes_t rows)
{
    char dir[4200], path[4300];
    snprintf(dir, sizeof(dir), "%s/governance", a->cfg.data_dir);
    snprintf(path, sizeof(path), "%s/%s.json", dir, what);
    bool grants = strcmp(what, "grants") == 0;
    msgpack_sbuffer json;
    msgpack_sbuffer_init(&json);
    agt_grant_t *gs = NULL;
    size_t n = 0;
    if (!s_rows(a, rows, &json, grants, grants ? &gs : NULL, &n)) {
        dxb_log_warn("AGT-GOVSTATE", "governance state from the broker unreadable what=%s", what);
        msgpack_sbuffer_destroy(&json);
        return;
    }
    if (grants) {
        free(a->grants);
        a->grants = gs;
        a->n_grants = n;
    }
    if (strcmp(what, "demands") == 0) {
        s_note_pending_demands(a, rows);
    }
    if (dxb_mkdir_p(dir, 0750) != DXB_OK ||
        dxb_write_file_atomic(path, json.data, json.size, 0640) != DXB_OK) {
        dxb_log_warn("AGT-GOVSTATE", "cannot write %s", path);
    }
    msgpack_sbuffer_destroy(&json);
}

/* ---- requests -------------------------------------------------------------------- */

void
agt_gov_on_rep(agt_t *a, const dxb_frame_t *f)
{
    uint32_t req = f->u.gov_rep.req;
    if (req == 0) {
        int len = (int)(f->u.gov_rep.message.len > 300 ? 300 : f->u.gov_rep.message.len);
        if (f->u.gov_rep.code == 0) {
            dxb_log_info("AGT-CATALOG", "broker: %.*s", len,
                         (const char *)f->u.gov_rep.message.ptr);
        } else {
            dxb_log_warn("AGT-CATALOG", "broker refused part of the catalog code=%s: %.*s",
                         dxb_wire_err_name(f->u.gov_rep.code), len,
                         (const char *)f->u.gov_rep.message.ptr);
        }
        return;
    }
    for (size_t i = 0; i < GOV_PENDING_MAX; i++) {
        agt_govpend_t *p = &s_pending[i];
        if (!p->used || p->our_req != req) {
            continue;
        }
        msgpack_sbuffer out;
        msgpack_packer pk;
        msgpack_sbuffer_init(&out);
        char text[DXB_MAX_TEXT + 1];
        size_t tl = f->u.gov_rep.message.len > DXB_MAX_TEXT ? DXB_MAX_TEXT
                                                             : f->u.gov_rep.message.len;
        memcpy(text, f->u.gov_rep.message.ptr, tl);
        text[tl] = '\0';
        if (dxb_msg_enc_gov_rep_begin(&out, &pk, p->app_req, f->u.gov_rep.code, text) ==
            DXB_OK) {
            msgpack_sbuffer_write(&out, (const char *)f->u.gov_rep.result.ptr,
                                  f->u.gov_rep.result.len);
            zmq_send(a->api, p->rid, p->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmq_send(a->api, out.data, out.size, ZMQ_DONTWAIT);
        }
        msgpack_sbuffer_destroy(&out);
        p->used = false;
        return;
    }
}

static void
s_answer_app(agt_t *a, const uint8_t *rid, size_t rid_len, uint32_t req, uint16_t code,
             const char *text)
{
    msgpack_sbuffer out;
    msgpack_packer pk;
    msgpack_sbuffer_init(&out);
    if (dxb_msg_enc_gov_rep_begin(&out, &pk, req, code, text) == DXB_OK) {
        msgpack_pack_nil(&pk);
        zmq_send(a->api, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send(a->api, out.data, out.size, ZMQ_DONTWAIT);
    }
    msgpack_sbuffer_destroy(&out);
}

void
agt_gov_api_request(agt_t *a, const uint8_t *rid, size_t rid_len, const dxb_frame_t *f)
{
    uint64_t now = dxb_mono_ms();
    agt_govpend_t *slot = NULL;
    for (size_t i = 0; i < GOV_PENDING_MAX; i++) {
        agt_govpend_t *p = &s_pending[i];
        if (p->used && now - p->sent_mono > 60000) {
            p->used = false; /* the broker never answered: forget it */
        }
        if (!p->used && slot == NULL) {
            slot = p;
        }
    }
    if (a->link != AGT_LINK_UP || a->dealer == NULL) {
        s_answer_app(a, rid, rid_len, f->u.gov_req.req, DXB_W_EAGAIN,
                     "no session with the broker; try again");
        return;
    }
    if (slot == NULL || rid_len > sizeof(slot->rid)) {
        s_answer_app(a, rid, rid_len, f->u.gov_req.req, DXB_W_EAGAIN, "too many requests");
        return;
    }
    char buf[DXB_MAX_GOV_ARGS][DXB_MAX_GOV_ARG + 1];
    const char *args[DXB_MAX_GOV_ARGS];
    for (uint16_t i = 0; i < f->u.gov_req.n_args; i++) {
        snprintf(buf[i], sizeof(buf[i]), "%.*s", (int)f->u.gov_req.args[i].len,
                 (const char *)f->u.gov_req.args[i].ptr);
        args[i] = buf[i];
    }
    uint32_t ours = s_next_req++;
    if (s_next_req == 0) {
        s_next_req = 1;
    }
    msgpack_sbuffer_clear(&a->sbuf);
    if (dxb_msg_enc_gov_req(&a->sbuf, ours, f->u.gov_req.op, args, f->u.gov_req.n_args) !=
            DXB_OK ||
        zmq_send(a->dealer, a->sbuf.data, a->sbuf.size, ZMQ_DONTWAIT) < 0) {
        s_answer_app(a, rid, rid_len, f->u.gov_req.req, DXB_W_EAGAIN, "cannot reach the broker");
        return;
    }
    *slot = (agt_govpend_t){.used = true,
                            .our_req = ours,
                            .app_req = f->u.gov_req.req,
                            .rid_len = rid_len,
                            .sent_mono = now};
    memcpy(slot->rid, rid, rid_len);
}

/* ---- masking at the provider ---------------------------------------------------- */

const agt_grant_t *
agt_gov_mask_grant(const agt_t *a, const char *dataset, const char *consumer)
{
    for (size_t i = 0; i < a->n_grants; i++) {
        const agt_grant_t *g = &a->grants[i];
        if (g->active && (g->mask[0] != '\0' || g->fields[0] != '\0') &&
            strcmp(g->owner, a->cfg.id) == 0 &&
            strcmp(g->dataset, dataset) == 0 && strcmp(g->consumer, consumer) == 0) {
            return g;
        }
    }
    return NULL;
}

uint64_t
agt_gov_grant_id(const agt_grant_t *g)
{
    return g->id;
}

/* Appends a policy token, escaping what the policy syntax reserves. */
static void
s_put_tok(msgpack_sbuffer *sb, const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i] == ';' || t[i] == '=' || t[i] == '\\' || t[i] == ' ') {
            msgpack_sbuffer_write(sb, "\\", 1);
        }
        msgpack_sbuffer_write(sb, &t[i], 1);
    }
}

/* The policy a grant means: its mask, and when it names fields, every other
 * field dropped ("*=drop"), the named ones kept or masked by their rule. */
static dxb_err_t
s_grant_policy(const agt_grant_t *g, dxb_mask_policy_t **out, char *why, size_t why_cap)
{
    if (g->fields[0] == '\0') {
        return dxb_mask_policy_parse(g->mask, strlen(g->mask), out, why, why_cap);
    }
    dxb_mask_policy_t *mask = NULL;
    dxb_err_t err = dxb_mask_policy_parse(g->mask, strlen(g->mask), &mask, why, why_cap);
    if (err) {
        return err;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, "*=drop", 6);
    const char *p = g->fields;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const dxb_mask_rule_t *r = dxb_mask_policy_find(mask, p, len);
        msgpack_sbuffer_write(&sb, ";", 1);
        s_put_tok(&sb, p, len);
        char act[64];
        int w;
        if (r == NULL) {
            w = snprintf(act, sizeof(act), "=pass");
        } else if (r->action == DXB_MASK_KEEP) {
            w = snprintf(act, sizeof(act), "=keep:%u,%u", r->keep_first, r->keep_last);
        } else {
            w = snprintf(act, sizeof(act), "=%s%s", dxb_mask_action_name(r->action),
                         r->has_text ? ":" : "");
        }
        msgpack_sbuffer_write(&sb, act, (size_t)w);
        if (r != NULL && r->has_text) {
            s_put_tok(&sb, r->text, r->text_len);
        }
        p = comma ? comma + 1 : p + len;
    }
    err = dxb_mask_policy_parse(sb.data, sb.size, out, why, why_cap);
    msgpack_sbuffer_destroy(&sb);
    dxb_mask_policy_destroy(&mask);
    return err;
}

dxb_err_t
agt_gov_mask(const agt_t *a, const agt_grant_t *g, const char *name, dxb_bytes_t in,
             uint8_t **out, size_t *out_len, char *why, size_t why_cap)
{
    dxb_mask_format_t fmt;
    if (!dxb_mask_format_guess(name, &fmt)) {
        snprintf(why, why_cap, "a masking grant needs a .csv, .jsonl or .ndjson file name");
        return DXB_EINVAL;
    }
    dxb_mask_policy_t *pol = NULL;
    dxb_err_t err = s_grant_policy(g, &pol, why, why_cap);
    if (err) {
        return err;
    }
    /* The hash key is stable per grant and known only to this node: the
     * consumer can join records but cannot test guesses of the values. */
    uint8_t key[DXB_MASK_KEY_BYTES], in_key[8 + 9];
    memcpy(in_key, "dxb-mask:", 9);
    memcpy(in_key + 9, &g->id, 8);
    crypto_generichash(key, sizeof(key), in_key, sizeof(in_key), a->spool_id_key, 32);
    dxb_mask_opts_t opts = {.format = fmt, .hash_key = key, .lenient = true};
    dxb_mask_stats_t st;
    err = dxb_mask_apply(pol, &opts, in.ptr, in.len, out, out_len, &st, why, why_cap);
    sodium_memzero(key, sizeof(key));
    dxb_mask_policy_destroy(&pol);
    if (!err) {
        dxb_log_info("AGT-MASKED",
                     "payload masked for a grant grant_id=%llu dataset=%s consumer=%s records=%llu",
                     (unsigned long long)g->id, g->dataset, g->consumer,
                     (unsigned long long)st.records);
    }
    return err;
}
