/* libFuzzer target: the strict YAML loader on arbitrary bytes, then every
 * accessor and typed getter on every node of whatever tree came out, the way
 * a config module would walk it. Finds crashes, leaks and sanitizer reports
 * in dxb_yaml and in libyaml under it. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/dxb_yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const s_choices[] = {"durable", "fast", "province", "city", NULL};

/* Runs each getter for key on map; the results only matter to sanitizers. */
static void
s_try_getters(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key)
{
    char str[65];
    uint64_t u = 0;
    bool b = false;
    int e = 0;
    (void)dxb_yaml_get_str(doc, map, key, str, sizeof(str), true);
    (void)dxb_yaml_get_str(doc, map, key, str, 1, false);
    (void)dxb_yaml_get_u64(doc, map, key, &u, 0, UINT64_MAX, true);
    (void)dxb_yaml_get_u64(doc, map, key, &u, 1, 1024, false);
    (void)dxb_yaml_get_size(doc, map, key, &u, 0, UINT64_MAX, true);
    (void)dxb_yaml_get_size(doc, map, key, &u, 1u << 20, 1ull << 40, false);
    (void)dxb_yaml_get_bool(doc, map, key, &b, true);
    (void)dxb_yaml_get_enum(doc, map, key, s_choices, &e, true);
}

static void
s_walk(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *node)
{
    (void)dxb_yaml_line(node);
    (void)dxb_yaml_col(node);
    (void)dxb_yaml_scalar(node);
    (void)dxb_yaml_is_null(node);
    size_t n = dxb_yaml_len(node);
    switch (dxb_yaml_kind(node)) {
    case DXB_YAML_SCALAR:
        break;
    case DXB_YAML_SEQ:
        for (size_t i = 0; i <= n; i++) {
            const dxb_yaml_node_t *item = dxb_yaml_item(node, i);
            if (item != NULL) {
                s_walk(doc, item);
            }
        }
        break;
    case DXB_YAML_MAP:
        (void)dxb_yaml_expect_map(doc, node, "section", true);
        /* Unknown keys first, while nothing is marked used yet. */
        dxb_yaml_check_unused(doc, node);
        s_try_getters(doc, node, "id");
        s_try_getters(doc, node, "missing");
        for (size_t i = 0; i < n; i++) {
            const char *key = dxb_yaml_map_key(node, i);
            s_try_getters(doc, node, key);
            s_walk(doc, dxb_yaml_map_value(node, i));
        }
        break;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dxb_yaml_doc_t *doc = NULL;
    if (dxb_yaml_load_buf("fuzz.yaml", (const char *)data, size, &doc) != DXB_OK) {
        return 0;
    }
    const dxb_yaml_node_t *root = dxb_yaml_root(doc);
    (void)dxb_yaml_expect_map(doc, root, "config", true);
    if (root != NULL) {
        s_walk(doc, root);
    }
    dxb_yaml_error(doc, root, "fuzz %d", dxb_yaml_error_count(doc));
    /* Every error line must end in a newline (the text is one line each). */
    const char *errs = dxb_yaml_errors(doc);
    size_t len = strlen(errs);
    if (len > 0 && errs[len - 1] != '\n') {
        __builtin_trap();
    }
    dxb_yaml_destroy(&doc);
    return 0;
}
