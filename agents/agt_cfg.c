/* agt_cfg: loads and validates the agent configuration. */
#include "agents/agt_cfg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dxb_keys.h"
#include "common/dxb_util.h"
#include "common/dxb_yaml.h"

static void
s_defaults(agt_cfg_t *c)
{
    memset(c, 0, sizeof(*c));
    dxb_strlcpy(c->data_dir, "/var/lib/dxb-agent", sizeof(c->data_dir));
    c->log_level = 6;
    c->map_size_bytes = 1ull << 30;
    c->durable = true;
    c->window = 256;
    c->publish_window = 1024;
    c->heartbeat_ms = 1000;
    c->timeout_ms = 5000;
    c->reconnect_ms = 500;
    c->scan_ms = 200;
    c->max_file_bytes = 16u << 20;
    c->dedup_window_s = 7 * 86400;
    c->xfer_threshold = 8u << 20;
    c->xfer_chunk = 1u << 20;
    c->xfer_window = 8;
    c->xfer_max_bytes = 1ull << 40;
    c->xfer_compress = AGT_COMPRESS_AUTO;
}

static const char *const s_compress_modes[] = {"none", "zstd", "auto", NULL};

static void
s_load_transfer(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *t, agt_cfg_t *c)
{
    if (!dxb_yaml_expect_map(doc, t, "transfer", false)) {
        return;
    }
    uint64_t chunk = c->xfer_chunk, window = c->xfer_window;
    dxb_yaml_get_size(doc, t, "threshold_bytes", &c->xfer_threshold, 1024, 128u << 20, false);
    dxb_yaml_get_size(doc, t, "chunk_bytes", &chunk, 4096, 8u << 20, false);
    dxb_yaml_get_u64(doc, t, "window_chunks", &window, 1, 64, false);
    dxb_yaml_get_size(doc, t, "max_file_bytes", &c->xfer_max_bytes, 1, 1ull << 50, false);
    dxb_yaml_get_enum(doc, t, "compress", s_compress_modes, &c->xfer_compress, false);
    c->xfer_chunk = (uint32_t)chunk;
    c->xfer_window = (uint32_t)window;
    dxb_yaml_check_unused(doc, t);
}

static void
s_check_id(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key, const char *id)
{
    if (id[0] != '\0' && !dxb_id_valid(id, strlen(id))) {
        dxb_yaml_error(doc, dxb_yaml_get(map, key),
                       "'%s' is not a valid id (lowercase dotted labels of a-z 0-9 _ -)", id);
    }
}

static void
s_load_agent(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *a, agt_cfg_t *c, const char *cfg_dir)
{
    if (!dxb_yaml_expect_map(doc, a, "agent", true)) {
        return;
    }
    dxb_yaml_get_str(doc, a, "id", c->id, sizeof(c->id), true);
    s_check_id(doc, a, "id", c->id);
    dxb_yaml_get_str(doc, a, "key", c->key_path, sizeof(c->key_path), true);
    dxb_yaml_get_str(doc, a, "data_dir", c->data_dir, sizeof(c->data_dir), false);
    dxb_yaml_get_str(doc, a, "broker", c->broker, sizeof(c->broker), true);
    dxb_yaml_get_str(doc, a, "api_endpoint", c->api_endpoint, sizeof(c->api_endpoint), false);
    char key[64] = "", key_file[4096] = "";
    dxb_yaml_get_str(doc, a, "broker_public_key", key, sizeof(key), false);
    dxb_yaml_get_str(doc, a, "broker_public_key_file", key_file, sizeof(key_file), false);
    if ((key[0] == '\0') == (key_file[0] == '\0')) {
        dxb_yaml_error(doc, a, "agent needs exactly one of broker_public_key or "
                               "broker_public_key_file");
    } else if (key[0] != '\0') {
        if (dxb_keys_parse_public(key, c->broker_sign_pk) != DXB_OK) {
            dxb_yaml_error(doc, dxb_yaml_get(a, "broker_public_key"),
                           "broker_public_key is not a 40-character Z85 Ed25519 key");
        }
    } else {
        char owner[65], errbuf[512];
        dxb_path_resolve(cfg_dir, key_file, sizeof(key_file));
        if (dxb_keys_load_public(key_file, owner, c->broker_sign_pk, errbuf, sizeof(errbuf))) {
            dxb_yaml_error(doc, dxb_yaml_get(a, "broker_public_key_file"), "%s", errbuf);
        }
    }
    static const char *const levels[] = {"error", "warn", "notice", "info", "debug", NULL};
    int lv = 3;
    if (dxb_yaml_get_enum(doc, a, "log_level", levels, &lv, false)) {
        c->log_level = lv + 3;
    }
    dxb_yaml_check_unused(doc, a);
}

static void
s_load_tuning(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *root, agt_cfg_t *c)
{
    const dxb_yaml_node_t *s = dxb_yaml_get(root, "store");
    if (s != NULL && dxb_yaml_expect_map(doc, s, "store", false)) {
        static const char *const modes[] = {"durable", "fast", NULL};
        int mode = 0;
        dxb_yaml_get_size(doc, s, "map_size", &c->map_size_bytes, 1u << 20, 1ull << 40, false);
        if (dxb_yaml_get_enum(doc, s, "sync", modes, &mode, false)) {
            c->durable = mode == 0;
        }
        dxb_yaml_check_unused(doc, s);
    }
    const dxb_yaml_node_t *l = dxb_yaml_get(root, "link");
    if (l != NULL && dxb_yaml_expect_map(doc, l, "link", false)) {
        uint64_t w = c->window, pw = c->publish_window, hb = c->heartbeat_ms;
        uint64_t to = c->timeout_ms, rc = c->reconnect_ms;
        dxb_yaml_get_u64(doc, l, "window", &w, 1, 65536, false);
        dxb_yaml_get_u64(doc, l, "publish_window", &pw, 1, 65536, false);
        dxb_yaml_get_u64(doc, l, "heartbeat_ms", &hb, 50, 600000, false);
        dxb_yaml_get_u64(doc, l, "timeout_ms", &to, 100, 3600000, false);
        dxb_yaml_get_u64(doc, l, "reconnect_ms", &rc, 10, 600000, false);
        if (to < 2 * hb) {
            dxb_yaml_error(doc, l, "link.timeout_ms must be at least 2 x heartbeat_ms");
        }
        c->window = (uint32_t)w;
        c->publish_window = (uint32_t)pw;
        c->heartbeat_ms = (uint32_t)hb;
        c->timeout_ms = (uint32_t)to;
        c->reconnect_ms = (uint32_t)rc;
        dxb_yaml_check_unused(doc, l);
    }
    const dxb_yaml_node_t *sp = dxb_yaml_get(root, "spool");
    if (sp != NULL && dxb_yaml_expect_map(doc, sp, "spool", false)) {
        uint64_t scan = c->scan_ms;
        dxb_yaml_get_u64(doc, sp, "scan_ms", &scan, 10, 60000, false);
        dxb_yaml_get_size(doc, sp, "max_file_bytes", &c->max_file_bytes, 1, 128u << 20, false);
        c->scan_ms = (uint32_t)scan;
        dxb_yaml_check_unused(doc, sp);
    }
    const dxb_yaml_node_t *in = dxb_yaml_get(root, "inbound");
    if (in != NULL && dxb_yaml_expect_map(doc, in, "inbound", false)) {
        static const char *const modes[] = {"spool", "api", NULL};
        int mode = 0;
        if (dxb_yaml_get_enum(doc, in, "default", modes, &mode, false)) {
            c->inbound_api_default = mode == 1;
        }
        dxb_yaml_get_u64(doc, in, "dedup_window_s", &c->dedup_window_s, 60,
                         10ull * 366 * 86400, false);
        dxb_yaml_check_unused(doc, in);
    }
    const dxb_yaml_node_t *tr = dxb_yaml_get(root, "transfer");
    if (tr != NULL) {
        s_load_transfer(doc, tr, c);
    }
}

static const char *const s_share_modes[] = {"none", "conditional", "unconditional", NULL};
static const char *const s_frequencies[] = {"realtime", "hourly", "daily",     "weekly",
                                            "monthly",  "yearly", "on-demand", NULL};

static void
s_load_catfield(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *m, agt_catfield_cfg_t *f)
{
    if (!dxb_yaml_expect_map(doc, m, "catalog field", true)) {
        return;
    }
    uint64_t sens = 0;
    dxb_yaml_get_str(doc, m, "name", f->name, sizeof(f->name), true);
    dxb_yaml_get_str(doc, m, "type", f->type, sizeof(f->type), false);
    dxb_yaml_get_u64(doc, m, "sensitivity", &sens, 0, 3, false);
    if (f->type[0] == '\0') {
        dxb_strlcpy(f->type, "string", sizeof(f->type));
    }
    f->sensitivity = (uint8_t)sens;
    dxb_yaml_check_unused(doc, m);
}

/* datasets[].catalog (conf/agent.yaml documents every key). */
static void
s_load_catalog(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *m, agt_catalog_cfg_t *c)
{
    if (!dxb_yaml_expect_map(doc, m, "catalog", true)) {
        return;
    }
    c->declared = true;
    uint64_t level = 0;
    int share = 1, freq = 2;
    dxb_yaml_get_str(doc, m, "title", c->title, sizeof(c->title), true);
    dxb_yaml_get_str(doc, m, "description", c->description, sizeof(c->description), false);
    dxb_yaml_get_u64(doc, m, "level", &level, 0, 3, true);
    dxb_yaml_get_enum(doc, m, "share", s_share_modes, &share, true);
    dxb_yaml_get_enum(doc, m, "frequency", s_frequencies, &freq, false);
    dxb_yaml_get_str(doc, m, "region", c->region, sizeof(c->region), false);
    if (c->region[0] != '\0' && !dxb_region_valid(c->region, strlen(c->region))) {
        dxb_yaml_error(doc, dxb_yaml_get(m, "region"), "region must be 6 digits");
    }
    c->level = (uint8_t)level;
    c->share = (uint8_t)share;
    dxb_strlcpy(c->frequency, s_frequencies[freq], sizeof(c->frequency));
    const dxb_yaml_node_t *fs = dxb_yaml_get(m, "fields");
    if (fs != NULL) {
        size_t n = dxb_yaml_len(fs);
        if (dxb_yaml_kind(fs) != DXB_YAML_SEQ || n > 256) {
            dxb_yaml_error(doc, fs, "'fields' must be a list of at most 256 fields");
        } else if (n > 0 && (c->fields = calloc(n, sizeof(*c->fields))) != NULL) {
            for (size_t i = 0; i < n; i++) {
                s_load_catfield(doc, dxb_yaml_item(fs, i), &c->fields[c->n_fields++]);
            }
        }
    }
    dxb_yaml_check_unused(doc, m);
}

static void
s_load_dataset(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *m, agt_dataset_cfg_t *d,
               bool api_default)
{
    d->inbound_api = api_default;
    if (!dxb_yaml_expect_map(doc, m, "dataset entry", true)) {
        return;
    }
    dxb_yaml_get_str(doc, m, "id", d->id, sizeof(d->id), true);
    s_check_id(doc, m, "id", d->id);
    const dxb_yaml_node_t *r = dxb_yaml_get(m, "recipients");
    if (r != NULL) {
        size_t n = dxb_yaml_len(r);
        if (dxb_yaml_kind(r) != DXB_YAML_SEQ || n == 0 || n > AGT_MAX_DATASET_RECIPIENTS) {
            dxb_yaml_error(doc, r, "'recipients' must be a list of 1 to 256 node ids");
        } else if ((d->recipients = calloc(n, sizeof(*d->recipients))) != NULL) {
            for (size_t i = 0; i < n; i++) {
                const char *t = dxb_yaml_scalar(dxb_yaml_item(r, i));
                if (t == NULL || !dxb_id_valid(t, strlen(t))) {
                    dxb_yaml_error(doc, dxb_yaml_item(r, i), "recipient is not a valid node id");
                    continue;
                }
                dxb_strlcpy(d->recipients[d->n_recipients++], t, 65);
            }
        }
    }
    static const char *const modes[] = {"spool", "api", NULL};
    int mode = api_default ? 1 : 0;
    if (dxb_yaml_get_enum(doc, m, "inbound", modes, &mode, false)) {
        d->inbound_api = mode == 1;
    }
    uint64_t ttl = 0;
    dxb_yaml_get_u64(doc, m, "ttl_s", &ttl, 0, 10ull * 366 * 86400, false);
    d->ttl_s = (uint32_t)ttl;
    d->compress = -1;
    dxb_yaml_get_enum(doc, m, "compress", s_compress_modes, &d->compress, false);
    const dxb_yaml_node_t *cat = dxb_yaml_get(m, "catalog");
    if (cat != NULL) {
        s_load_catalog(doc, cat, &d->catalog);
    }
    dxb_yaml_check_unused(doc, m);
}

static void
s_load_lists(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *root, agt_cfg_t *c)
{
    const dxb_yaml_node_t *ds = dxb_yaml_get(root, "datasets");
    if (ds != NULL && dxb_yaml_kind(ds) != DXB_YAML_SEQ) {
        dxb_yaml_error(doc, ds, "'datasets' must be a list");
    } else if (ds != NULL && dxb_yaml_len(ds) > 0) {
        c->datasets = calloc(dxb_yaml_len(ds), sizeof(*c->datasets));
        for (size_t i = 0; c->datasets != NULL && i < dxb_yaml_len(ds); i++) {
            s_load_dataset(doc, dxb_yaml_item(ds, i), &c->datasets[i], c->inbound_api_default);
            c->n_datasets++;
        }
    }
    const dxb_yaml_node_t *ps = dxb_yaml_get(root, "peers");
    if (ps != NULL && dxb_yaml_kind(ps) != DXB_YAML_SEQ) {
        dxb_yaml_error(doc, ps, "'peers' must be a list");
    } else if (ps != NULL && dxb_yaml_len(ps) > 0) {
        c->peers = calloc(dxb_yaml_len(ps), sizeof(*c->peers));
        for (size_t i = 0; c->peers != NULL && i < dxb_yaml_len(ps); i++) {
            const dxb_yaml_node_t *m = dxb_yaml_item(ps, i);
            agt_peer_cfg_t *p = &c->peers[c->n_peers++];
            char key[64] = "";
            if (!dxb_yaml_expect_map(doc, m, "peer entry", true)) {
                continue;
            }
            dxb_yaml_get_str(doc, m, "id", p->id, sizeof(p->id), true);
            s_check_id(doc, m, "id", p->id);
            if (dxb_yaml_get_str(doc, m, "public_key", key, sizeof(key), true) &&
                dxb_keys_parse_public(key, p->sign_pk) != DXB_OK) {
                dxb_yaml_error(doc, dxb_yaml_get(m, "public_key"),
                               "public_key is not a 40-character Z85 Ed25519 key");
            }
            dxb_yaml_check_unused(doc, m);
        }
    }
}

static void
s_fill(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *root, const char *cfg_dir, void *arg)
{
    agt_cfg_t *c = arg;
    s_load_agent(doc, dxb_yaml_get(root, "agent"), c, cfg_dir);
    s_load_tuning(doc, root, c);
    s_load_lists(doc, root, c);
    dxb_path_resolve(cfg_dir, c->key_path, sizeof(c->key_path));
    dxb_path_resolve(cfg_dir, c->data_dir, sizeof(c->data_dir));
}

dxb_err_t
agt_cfg_load(const char *path, agt_cfg_t *out, char **errors_p)
{
    s_defaults(out);
    dxb_err_t err = dxb_yaml_load_config(path, s_fill, out, errors_p);
    if (err) {
        agt_cfg_free(out);
        return err;
    }
    if (out->api_endpoint[0] == '\0') {
        snprintf(out->api_endpoint, sizeof(out->api_endpoint), "ipc://%s/api.sock",
                 out->data_dir);
    }
    return DXB_OK;
}

void
agt_cfg_free(agt_cfg_t *cfg)
{
    for (size_t i = 0; i < cfg->n_datasets; i++) {
        free(cfg->datasets[i].recipients);
        free(cfg->datasets[i].catalog.fields);
    }
    free(cfg->datasets);
    free(cfg->peers);
    cfg->datasets = NULL;
    cfg->peers = NULL;
    cfg->n_datasets = cfg->n_peers = 0;
}

const agt_dataset_cfg_t *
agt_cfg_dataset(const agt_cfg_t *cfg, const char *id)
{
    for (size_t i = 0; i < cfg->n_datasets; i++) {
        if (strcmp(cfg->datasets[i].id, id) == 0) {
            return &cfg->datasets[i];
        }
    }
    return NULL;
}
