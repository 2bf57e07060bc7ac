/* brk_cfg: loads and validates the broker configuration. */
#include "broker/brk_cfg.h"
#include "proto/dxb_msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dxb_keys.h"
#include "common/dxb_log.h"
#include "common/dxb_util.h"
#include "common/dxb_yaml.h"

static const char *const s_levels[] = {"province", "city", "county", "department", NULL};

const char *
brk_cfg_level_name(uint8_t level)
{
    return level >= 1 && level <= 4 ? s_levels[level - 1] : "?";
}

static void
s_defaults(brk_cfg_t *c)
{
    memset(c, 0, sizeof(*c));
    dxb_strlcpy(c->endpoint, "tcp://127.0.0.1:7300", sizeof(c->endpoint));
    dxb_strlcpy(c->data_dir, "/var/lib/dxb", sizeof(c->data_dir));
    c->log_level = 6;
    c->map_size_bytes = 1ull << 30;
    c->durable = true;
    c->batch_max = 256;
    c->redeliver_ms = 30000;
    c->max_attempts = 10;
    c->default_ttl_s = 7 * 86400;
    c->dedup_window_s = 7 * 86400;
    c->hb_interval_ms = 1000;
    c->hb_timeout_ms = 5000;
    c->max_message_bytes = 16u << 20;
    c->max_frame_bytes = 64u << 20;
    c->default_window = 256;
    c->audit_checkpoint_s = 300;
    c->audit_checkpoint_records = 10000;
    c->gov_enforce = true;
}

static void
s_load_node(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *m, brk_node_cfg_t *n,
            const char *cfg_dir)
{
    if (!dxb_yaml_expect_map(doc, m, "node entry", true)) {
        return;
    }
    if (dxb_yaml_get_str(doc, m, "id", n->id, sizeof(n->id), true) &&
        !dxb_id_valid(n->id, strlen(n->id))) {
        dxb_yaml_error(doc, dxb_yaml_get(m, "id"),
                       "node id '%s' is invalid (lowercase dotted labels of a-z 0-9 _ -)",
                       n->id);
    }
    char key[64] = "";
    char key_file[4096] = "";
    dxb_yaml_get_str(doc, m, "public_key", key, sizeof(key), false);
    dxb_yaml_get_str(doc, m, "public_key_file", key_file, sizeof(key_file), false);
    if ((key[0] == '\0') == (key_file[0] == '\0')) {
        dxb_yaml_error(doc, m, "node '%s' needs exactly one of public_key or public_key_file",
                       n->id);
    } else if (key[0] != '\0') {
        if (dxb_keys_parse_public(key, n->sign_pk) != DXB_OK) {
            dxb_yaml_error(doc, dxb_yaml_get(m, "public_key"),
                           "public_key of node '%s' is not a 40-character Z85 Ed25519 key",
                           n->id);
        }
    } else {
        char owner[65], errbuf[512];
        dxb_path_resolve(cfg_dir, key_file, sizeof(key_file));
        if (dxb_keys_load_public(key_file, owner, n->sign_pk, errbuf, sizeof(errbuf)) !=
            DXB_OK) {
            dxb_yaml_error(doc, dxb_yaml_get(m, "public_key_file"), "%s", errbuf);
        }
    }
    if (dxb_keys_box_from_sign(n->sign_pk, n->box_pk) == DXB_OK) {
        dxb_keys_z85(n->box_pk, n->box_z85);
    }
    if (dxb_yaml_get_str(doc, m, "region", n->region, sizeof(n->region), true) &&
        !dxb_region_valid(n->region, strlen(n->region))) {
        dxb_yaml_error(doc, dxb_yaml_get(m, "region"),
                       "region of node '%s' must be a 6-digit code", n->id);
    }
    int level = 3;
    if (dxb_yaml_get_enum(doc, m, "level", s_levels, &level, true)) {
        n->level = (uint8_t)(level + 1);
    }
    uint64_t clearance = 0;
    dxb_yaml_get_u64(doc, m, "clearance", &clearance, 0, 3, false);
    n->clearance = (uint8_t)clearance;
    dxb_yaml_check_unused(doc, m);
}

static void
s_load_nodes(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *seq, brk_cfg_t *c, const char *cfg_dir)
{
    if (seq == NULL) {
        return;
    }
    if (dxb_yaml_kind(seq) != DXB_YAML_SEQ) {
        dxb_yaml_error(doc, seq, "'nodes' must be a list");
        return;
    }
    size_t n = dxb_yaml_len(seq);
    if (n > DXB_MAX_DIRECTORY) {
        /* DIRECTORY carries at most 4096 nodes (PROTOCOL.md 4): beyond that
         * agents would learn no keys at all. One broker per city is far below;
         * the hierarchy of brokers is the way to scale out. */
        dxb_yaml_error(doc, seq, "at most %d nodes per broker (%zu listed)", DXB_MAX_DIRECTORY, n);
        return;
    }
    c->nodes = calloc(n ? n : 1, sizeof(*c->nodes));
    if (c->nodes == NULL) {
        dxb_yaml_error(doc, seq, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        s_load_node(doc, dxb_yaml_item(seq, i), &c->nodes[i], cfg_dir);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c->nodes[j].id, c->nodes[i].id) == 0) {
                dxb_yaml_error(doc, dxb_yaml_item(seq, i), "node '%s' is listed twice",
                               c->nodes[i].id);
            } else if (memcmp(c->nodes[j].sign_pk, c->nodes[i].sign_pk, 32) == 0) {
                dxb_yaml_error(doc, dxb_yaml_item(seq, i),
                               "nodes '%s' and '%s' share one public key", c->nodes[j].id,
                               c->nodes[i].id);
            }
        }
    }
    c->n_nodes = n;
}

static void
s_load_sections(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *root, brk_cfg_t *c,
                const char *cfg_dir)
{
    const dxb_yaml_node_t *b = dxb_yaml_get(root, "broker");
    if (dxb_yaml_expect_map(doc, b, "broker", true)) {
        if (dxb_yaml_get_str(doc, b, "id", c->id, sizeof(c->id), true) &&
            !dxb_id_valid(c->id, strlen(c->id))) {
            dxb_yaml_error(doc, dxb_yaml_get(b, "id"), "broker id '%s' is invalid", c->id);
        }
        dxb_yaml_get_str(doc, b, "endpoint", c->endpoint, sizeof(c->endpoint), false);
        dxb_yaml_get_str(doc, b, "key", c->key_path, sizeof(c->key_path), true);
        dxb_yaml_get_str(doc, b, "data_dir", c->data_dir, sizeof(c->data_dir), false);
        dxb_yaml_get_str(doc, b, "admin_endpoint", c->admin_endpoint,
                         sizeof(c->admin_endpoint), false);
        static const char *const levels[] = {"error", "warn", "notice", "info", "debug", NULL};
        int lv = 3;
        if (dxb_yaml_get_enum(doc, b, "log_level", levels, &lv, false)) {
            c->log_level = lv + 3;
        }
        dxb_yaml_check_unused(doc, b);
    }
    const dxb_yaml_node_t *s = dxb_yaml_get(root, "store");
    if (dxb_yaml_expect_map(doc, s, "store", false) && s != NULL) {
        static const char *const modes[] = {"durable", "fast", NULL};
        int mode = 0;
        uint64_t batch = c->batch_max;
        dxb_yaml_get_size(doc, s, "map_size", &c->map_size_bytes, 1u << 20, 1ull << 40, false);
        if (dxb_yaml_get_enum(doc, s, "sync", modes, &mode, false)) {
            c->durable = mode == 0;
        }
        dxb_yaml_get_u64(doc, s, "batch_max", &batch, 1, 4096, false);
        c->batch_max = (uint32_t)batch;
        dxb_yaml_check_unused(doc, s);
    }
    const dxb_yaml_node_t *d = dxb_yaml_get(root, "delivery");
    if (dxb_yaml_expect_map(doc, d, "delivery", false) && d != NULL) {
        uint64_t redeliver = c->redeliver_ms, attempts = c->max_attempts;
        uint64_t window = c->default_window;
        dxb_yaml_get_u64(doc, d, "redeliver_ms", &redeliver, 100, 86400000, false);
        dxb_yaml_get_u64(doc, d, "max_attempts", &attempts, 1, 1000000, false);
        dxb_yaml_get_u64(doc, d, "default_ttl_s", &c->default_ttl_s, 1, 10ull * 366 * 86400,
                         false);
        dxb_yaml_get_u64(doc, d, "dedup_window_s", &c->dedup_window_s, 60,
                         10ull * 366 * 86400, false);
        dxb_yaml_get_u64(doc, d, "default_window", &window, 1, 65536, false);
        c->redeliver_ms = (uint32_t)redeliver;
        c->max_attempts = (uint32_t)attempts;
        c->default_window = (uint32_t)window;
        dxb_yaml_check_unused(doc, d);
    }
    const dxb_yaml_node_t *h = dxb_yaml_get(root, "heartbeat");
    if (dxb_yaml_expect_map(doc, h, "heartbeat", false) && h != NULL) {
        uint64_t ivl = c->hb_interval_ms, tmo = c->hb_timeout_ms;
        dxb_yaml_get_u64(doc, h, "interval_ms", &ivl, 50, 600000, false);
        dxb_yaml_get_u64(doc, h, "timeout_ms", &tmo, 150, 3600000, false);
        if (tmo < 2 * ivl) {
            dxb_yaml_error(doc, h, "heartbeat.timeout_ms must be at least 2 x interval_ms");
        }
        c->hb_interval_ms = (uint32_t)ivl;
        c->hb_timeout_ms = (uint32_t)tmo;
        dxb_yaml_check_unused(doc, h);
    }
    const dxb_yaml_node_t *l = dxb_yaml_get(root, "limits");
    if (dxb_yaml_expect_map(doc, l, "limits", false) && l != NULL) {
        dxb_yaml_get_size(doc, l, "max_message_bytes", &c->max_message_bytes, 1024,
                          128u << 20, false);
        dxb_yaml_get_size(doc, l, "max_frame_bytes", &c->max_frame_bytes, 64 * 1024,
                          256u << 20, false);
        if (c->max_frame_bytes < c->max_message_bytes + 65536) {
            dxb_yaml_error(doc, l, "limits.max_frame_bytes must exceed max_message_bytes by "
                                   "at least 64KiB (envelope headers)");
        }
        dxb_yaml_check_unused(doc, l);
    }
    const dxb_yaml_node_t *gv = dxb_yaml_get(root, "governance");
    if (dxb_yaml_expect_map(doc, gv, "governance", false) && gv != NULL) {
        dxb_yaml_get_bool(doc, gv, "enforce", &c->gov_enforce, false);
        dxb_yaml_check_unused(doc, gv);
    }
    const dxb_yaml_node_t *au = dxb_yaml_get(root, "audit");
    if (dxb_yaml_expect_map(doc, au, "audit", false) && au != NULL) {
        uint64_t every_s = c->audit_checkpoint_s;
        dxb_yaml_get_u64(doc, au, "checkpoint_s", &every_s, 0, 86400, false);
        dxb_yaml_get_u64(doc, au, "checkpoint_records", &c->audit_checkpoint_records, 0,
                         100000000, false);
        c->audit_checkpoint_s = (uint32_t)every_s;
        if (c->audit_checkpoint_s == 0 && c->audit_checkpoint_records == 0) {
            dxb_yaml_error(doc, au, "audit.checkpoint_s and audit.checkpoint_records cannot "
                                    "both be 0 (the audit log would never be signed)");
        }
        dxb_yaml_check_unused(doc, au);
    }
    s_load_nodes(doc, dxb_yaml_get(root, "nodes"), c, cfg_dir);
}

static void
s_fill(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *root, const char *cfg_dir, void *arg)
{
    brk_cfg_t *c = arg;
    s_load_sections(doc, root, c, cfg_dir);
    dxb_path_resolve(cfg_dir, c->key_path, sizeof(c->key_path));
    dxb_path_resolve(cfg_dir, c->data_dir, sizeof(c->data_dir));
}

dxb_err_t
brk_cfg_load(const char *path, brk_cfg_t *out, char **errors_p)
{
    s_defaults(out);
    dxb_err_t err = dxb_yaml_load_config(path, s_fill, out, errors_p);
    if (err) {
        brk_cfg_free(out);
        return err;
    }
    if (out->admin_endpoint[0] == '\0') {
        snprintf(out->admin_endpoint, sizeof(out->admin_endpoint), "ipc://%s/admin.sock",
                 out->data_dir);
    }
    return DXB_OK;
}

void
brk_cfg_free(brk_cfg_t *cfg)
{
    free(cfg->nodes);
    cfg->nodes = NULL;
    cfg->n_nodes = 0;
}
