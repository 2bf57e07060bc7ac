/* Unit tests for common/dxb_yaml: strict loading, exact FILE:LINE:COL error
 * text, typed getters and unknown-key detection. Each test reads as an
 * example of how a config module uses the API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/dxb_util.h"
#include "common/dxb_yaml.h"

static const char s_broker_yaml[] =
    "# broker config\n"
    "broker:\n"
    "  id: sq.hub\n"
    "  endpoint: \"tcp://0.0.0.0:7300\"\n"
    "  key: /etc/dxb/keys/sq.hub.secret\n"
    "  data_dir: /var/lib/dxb\n"
    "  admin_endpoint: ipc:///var/lib/dxb/admin.sock\n"
    "  log_level: info\n"
    "store:\n"
    "  map_size: 1GiB\n"
    "  sync: durable\n"
    "  batch_max: 256\n"
    "delivery:\n"
    "  redeliver_ms: 30000\n"
    "  max_attempts: 10\n"
    "  default_ttl_s: 604800\n"
    "  dedup_window_s: 86400\n"
    "heartbeat:\n"
    "  interval_ms: 5000\n"
    "  timeout_ms: 15000\n"
    "limits:\n"
    "  max_message_bytes: 16MiB\n"
    "  max_frame_bytes: 64 MiB\n"
    "nodes:\n"
    "  - id: sq.hrss\n"
    "    public_key: \"Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID\"\n"
    "    region: \"321300\"\n"
    "    level: city\n"
    "    clearance: 2\n"
    "  - id: sq.sy.tax\n"
    "    public_key: \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n"
    "    region: \"321302\"\n"
    "    level: department\n"
    "    clearance: 0\n";

static const char *const s_levels[] = {"province", "city", "county", "department", NULL};
static const char *const s_syncs[] = {"durable", "fast", NULL};

static dxb_yaml_doc_t *
s_load(const char *text)
{
    dxb_yaml_doc_t *doc = NULL;
    assert_int_equal(dxb_yaml_load_buf("cfg.yaml", text, strlen(text), &doc), DXB_OK);
    assert_non_null(doc);
    return doc;
}

/* Loads text that must fail and checks the complete error text. */
static void
s_assert_load_errors(const char *text, const char *expected)
{
    dxb_yaml_doc_t *doc = s_load(text);
    assert_string_equal(dxb_yaml_errors(doc), expected);
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_valid_broker_config_reads_every_key_without_errors(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load(s_broker_yaml);
    const dxb_yaml_node_t *root = dxb_yaml_root(doc);
    assert_true(dxb_yaml_expect_map(doc, root, "config", true));

    const dxb_yaml_node_t *broker = dxb_yaml_get(root, "broker");
    assert_true(dxb_yaml_expect_map(doc, broker, "broker", true));
    char id[65] = "";
    char endpoint[256] = "";
    char key[256] = "";
    char data_dir[256] = "";
    char admin[256] = "";
    char log_level[16] = "";
    assert_true(dxb_yaml_get_str(doc, broker, "id", id, sizeof(id), true));
    assert_true(dxb_yaml_get_str(doc, broker, "endpoint", endpoint, sizeof(endpoint), true));
    assert_true(dxb_yaml_get_str(doc, broker, "key", key, sizeof(key), true));
    assert_true(dxb_yaml_get_str(doc, broker, "data_dir", data_dir, sizeof(data_dir), true));
    assert_true(dxb_yaml_get_str(doc, broker, "admin_endpoint", admin, sizeof(admin), false));
    assert_true(dxb_yaml_get_str(doc, broker, "log_level", log_level, sizeof(log_level), false));
    assert_string_equal(id, "sq.hub");
    assert_string_equal(endpoint, "tcp://0.0.0.0:7300");
    assert_string_equal(admin, "ipc:///var/lib/dxb/admin.sock");
    dxb_yaml_check_unused(doc, broker);

    const dxb_yaml_node_t *store = dxb_yaml_get(root, "store");
    assert_true(dxb_yaml_expect_map(doc, store, "store", false));
    uint64_t map_size = 0;
    uint64_t batch_max = 0;
    int sync = -1;
    assert_true(dxb_yaml_get_size(doc, store, "map_size", &map_size, 1u << 20, 1ull << 40, false));
    assert_true(dxb_yaml_get_enum(doc, store, "sync", s_syncs, &sync, false));
    assert_true(dxb_yaml_get_u64(doc, store, "batch_max", &batch_max, 1, 1024, false));
    assert_int_equal(map_size, 1ull << 30);
    assert_int_equal(sync, 0);
    assert_int_equal(batch_max, 256);
    dxb_yaml_check_unused(doc, store);

    const dxb_yaml_node_t *limits = dxb_yaml_get(root, "limits");
    uint64_t max_msg = 0;
    uint64_t max_frame = 0;
    assert_true(dxb_yaml_get_size(doc, limits, "max_message_bytes", &max_msg, 1, 1ull << 28,
                                  false));
    assert_true(dxb_yaml_get_size(doc, limits, "max_frame_bytes", &max_frame, 1, 1ull << 28,
                                  false));
    assert_int_equal(max_msg, 16u << 20);
    assert_int_equal(max_frame, 64u << 20);

    const dxb_yaml_node_t *nodes = dxb_yaml_get(root, "nodes");
    assert_int_equal(dxb_yaml_kind(nodes), DXB_YAML_SEQ);
    assert_int_equal(dxb_yaml_len(nodes), 2);
    const dxb_yaml_node_t *n1 = dxb_yaml_item(nodes, 1);
    char region[7] = "";
    char pk[41] = "";
    int level = -1;
    uint64_t clearance = 9;
    assert_true(dxb_yaml_get_str(doc, n1, "region", region, sizeof(region), true));
    assert_true(dxb_yaml_get_str(doc, n1, "public_key", pk, sizeof(pk), true));
    assert_true(dxb_yaml_get_enum(doc, n1, "level", s_levels, &level, true));
    assert_true(dxb_yaml_get_u64(doc, n1, "clearance", &clearance, 0, 3, true));
    assert_string_equal(region, "321302");
    assert_string_equal(pk, "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    assert_int_equal(level, 3);
    assert_int_equal(clearance, 0);
    assert_null(dxb_yaml_item(nodes, 2));

    assert_int_equal(dxb_yaml_error_count(doc), 0);
    assert_string_equal(dxb_yaml_errors(doc), "");
    dxb_yaml_destroy(&doc);
    assert_null(doc);
}

static void
test_yaml_nodes_carry_one_based_line_and_column(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load(s_broker_yaml);
    const dxb_yaml_node_t *root = dxb_yaml_root(doc);
    const dxb_yaml_node_t *store = dxb_yaml_get(root, "store");
    const dxb_yaml_node_t *map_size = dxb_yaml_get(store, "map_size");
    assert_int_equal(dxb_yaml_line(root), 2);
    assert_int_equal(dxb_yaml_col(root), 1);
    assert_int_equal(dxb_yaml_line(store), 10);
    assert_int_equal(dxb_yaml_col(store), 3);
    assert_int_equal(dxb_yaml_line(map_size), 10);
    assert_int_equal(dxb_yaml_col(map_size), 13);
    assert_string_equal(dxb_yaml_scalar(map_size), "1GiB");
    assert_null(dxb_yaml_scalar(store));
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_syntax_error_reports_file_line_col_and_drops_tree(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("store:\n  sync: fast\n bad: 1\n");
    assert_null(dxb_yaml_root(doc));
    assert_int_equal(dxb_yaml_error_count(doc), 1);
    assert_string_equal(dxb_yaml_errors(doc),
                        "cfg.yaml:3:2: did not find expected key\n");
    dxb_yaml_destroy(&doc);
    s_assert_load_errors("limits: {max_message_bytes: [16MiB, \n",
                         "cfg.yaml:2:1: did not find expected node content\n");
    s_assert_load_errors("a: \"unterminated\n", "cfg.yaml:2:1: found unexpected end of stream\n");
    s_assert_load_errors("a: 1\n\tb: 2\n",
                         "cfg.yaml:2:1: found a tab character that violates indentation\n");
}

static void
test_yaml_invalid_utf8_is_reported_at_its_position(void **state)
{
    (void)state;
    s_assert_load_errors("a: 1\nbb: \xff\n", "cfg.yaml:2:5: invalid leading UTF-8 octet\n");
    s_assert_load_errors("a: \x01\n", "cfg.yaml:1:4: control characters are not allowed\n");
}

static void
test_yaml_anchor_and_alias_are_errors(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("base: &b 5\nstore:\n  batch_max: *b\n");
    assert_string_equal(dxb_yaml_errors(doc), "cfg.yaml:1:7: anchors are not allowed\n"
                                              "cfg.yaml:3:14: aliases are not allowed\n");
    /* The alias stands for nothing: its getter fails without a second error. */
    const dxb_yaml_node_t *store = dxb_yaml_get(dxb_yaml_root(doc), "store");
    uint64_t batch = 7;
    assert_false(dxb_yaml_get_u64(doc, store, "batch_max", &batch, 1, 1024, true));
    assert_int_equal(batch, 7);
    assert_int_equal(dxb_yaml_error_count(doc), 2);
    dxb_yaml_destroy(&doc);
    s_assert_load_errors("base: &b {sync: fast}\nstore:\n  <<: *b\n",
                         "cfg.yaml:1:7: anchors are not allowed\n"
                         "cfg.yaml:3:7: aliases are not allowed\n");
}

static void
test_yaml_explicit_tags_are_errors(void **state)
{
    (void)state;
    s_assert_load_errors("store:\n  map_size: !!int 1024\n",
                         "cfg.yaml:2:13: tags are not allowed\n");
    s_assert_load_errors("nodes: !seq\n  - a\n", "cfg.yaml:1:8: tags are not allowed\n");
}

static void
test_yaml_second_document_is_an_error(void **state)
{
    (void)state;
    s_assert_load_errors("broker:\n  id: a\n---\nbroker:\n  id: b\n",
                         "cfg.yaml:3:1: multiple documents are not allowed\n");
}

static void
test_yaml_duplicate_key_is_an_error_and_first_value_kept(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("store:\n  map_size: 1GiB\n  sync: fast\n  map_size: 2GiB\n");
    assert_string_equal(dxb_yaml_errors(doc),
                        "cfg.yaml:4:3: duplicate key 'map_size' (first at line 2)\n");
    const dxb_yaml_node_t *store = dxb_yaml_get(dxb_yaml_root(doc), "store");
    assert_int_equal(dxb_yaml_len(store), 2);
    uint64_t size = 0;
    assert_true(dxb_yaml_get_size(doc, store, "map_size", &size, 1, UINT64_MAX, true));
    assert_int_equal(size, 1ull << 30);
    dxb_yaml_destroy(&doc);
    /* Flow style and nested maps are checked the same way. */
    s_assert_load_errors("heartbeat: {interval_ms: 1, interval_ms: 2}\n",
                         "cfg.yaml:1:29: duplicate key 'interval_ms' (first at line 1)\n");
}

static void
test_yaml_non_scalar_key_is_an_error(void **state)
{
    (void)state;
    s_assert_load_errors("? [a, b]\n: c\n", "cfg.yaml:1:3: mapping keys must be scalars\n");
    s_assert_load_errors("{[a]: 1, b: 2}\n", "cfg.yaml:1:2: mapping keys must be scalars\n");
}

static void
test_yaml_unknown_key_is_reported_at_the_key(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("store:\n  map_size: 1GiB\n  snyc: fast\n");
    const dxb_yaml_node_t *root = dxb_yaml_root(doc);
    const dxb_yaml_node_t *store = dxb_yaml_get(root, "store");
    uint64_t size = 0;
    int sync = 0;
    assert_true(dxb_yaml_get_size(doc, store, "map_size", &size, 1, UINT64_MAX, false));
    assert_true(dxb_yaml_get_enum(doc, store, "sync", s_syncs, &sync, false));
    dxb_yaml_check_unused(doc, root);
    dxb_yaml_check_unused(doc, store);
    assert_string_equal(dxb_yaml_errors(doc), "cfg.yaml:3:3: unknown key 'snyc'\n");
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_map_iteration_marks_entries_used(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("peers:\n  sq.a: k1\n  sq.b: k2\n");
    const dxb_yaml_node_t *peers = dxb_yaml_get(dxb_yaml_root(doc), "peers");
    assert_int_equal(dxb_yaml_len(peers), 2);
    assert_string_equal(dxb_yaml_map_key(peers, 0), "sq.a");
    assert_string_equal(dxb_yaml_scalar(dxb_yaml_map_value(peers, 1)), "k2");
    assert_null(dxb_yaml_map_key(peers, 2));
    /* Entry 0 was seen through its key, entry 1 through its value. */
    dxb_yaml_check_unused(doc, peers);
    assert_int_equal(dxb_yaml_error_count(doc), 0);
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_missing_required_key_is_reported_at_the_map(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("broker:\n  endpoint: tcp://*:7300\n");
    const dxb_yaml_node_t *broker = dxb_yaml_get(dxb_yaml_root(doc), "broker");
    char id[65] = "default";
    assert_false(dxb_yaml_get_str(doc, broker, "id", id, sizeof(id), true));
    assert_true(dxb_yaml_get_str(doc, broker, "data_dir", id, sizeof(id), false));
    assert_string_equal(id, "default");
    assert_string_equal(dxb_yaml_errors(doc), "cfg.yaml:2:3: missing key 'id'\n");
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_sections_must_be_maps_but_empty_optional_ones_are_defaults(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("store:\nlimits: [1]\nbroker: x\n");
    const dxb_yaml_node_t *root = dxb_yaml_root(doc);
    assert_false(dxb_yaml_expect_map(doc, dxb_yaml_get(root, "store"), "store", false));
    assert_int_equal(dxb_yaml_error_count(doc), 0);
    assert_false(dxb_yaml_expect_map(doc, dxb_yaml_get(root, "limits"), "limits", false));
    assert_false(dxb_yaml_expect_map(doc, dxb_yaml_get(root, "broker"), "broker", true));
    assert_false(dxb_yaml_expect_map(doc, dxb_yaml_get(root, "nodes"), "nodes", false));
    assert_false(dxb_yaml_expect_map(doc, dxb_yaml_get(root, "delivery"), "delivery", true));
    assert_string_equal(dxb_yaml_errors(doc),
                        "cfg.yaml:2:9: 'limits': expected a mapping\n"
                        "cfg.yaml:3:9: 'broker': expected a mapping\n"
                        "cfg.yaml:1:1: missing section 'delivery' (expected a mapping)\n");
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_integer_range_errors_name_key_and_rule(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("store:\n"
                                 "  batch_max: 2048\n"
                                 "  a: -1\n"
                                 "  b: \"12\"\n"
                                 "  c: 0x10\n"
                                 "  d: 18446744073709551616\n"
                                 "  e: 18446744073709551615\n"
                                 "  f: 1.5\n"
                                 "  g: [1]\n"
                                 "  h:\n");
    const dxb_yaml_node_t *store = dxb_yaml_get(dxb_yaml_root(doc), "store");
    uint64_t v = 42;
    assert_false(dxb_yaml_get_u64(doc, store, "batch_max", &v, 1, 1024, false));
    assert_false(dxb_yaml_get_u64(doc, store, "a", &v, 0, 10, false));
    assert_false(dxb_yaml_get_u64(doc, store, "b", &v, 0, 100, false));
    assert_false(dxb_yaml_get_u64(doc, store, "c", &v, 0, 100, false));
    assert_false(dxb_yaml_get_u64(doc, store, "d", &v, 0, UINT64_MAX, false));
    assert_false(dxb_yaml_get_u64(doc, store, "f", &v, 0, 100, false));
    assert_false(dxb_yaml_get_u64(doc, store, "g", &v, 0, 100, false));
    assert_false(dxb_yaml_get_u64(doc, store, "h", &v, 0, 100, false));
    assert_int_equal(v, 42);
    assert_true(dxb_yaml_get_u64(doc, store, "e", &v, 0, UINT64_MAX, false));
    assert_true(v == UINT64_MAX);
    assert_string_equal(
        dxb_yaml_errors(doc),
        "cfg.yaml:2:14: key 'batch_max' must be an integer between 1 and 1024\n"
        "cfg.yaml:3:6: key 'a' must be an integer between 0 and 10\n"
        "cfg.yaml:4:6: key 'b' must be an integer between 0 and 100\n"
        "cfg.yaml:5:6: key 'c' must be an integer between 0 and 100\n"
        "cfg.yaml:6:6: key 'd' must be an integer between 0 and 18446744073709551615\n"
        "cfg.yaml:8:6: key 'f' must be an integer between 0 and 100\n"
        "cfg.yaml:9:6: key 'g' must be an integer between 0 and 100\n"
        "cfg.yaml:10:5: key 'h' must be an integer between 0 and 100\n");
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_sizes_accept_binary_suffixes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t want;
    } cases[] = {
        {"512", 512},
        {"64KiB", 64ull << 10},
        {"16MiB", 16ull << 20},
        {"2GiB", 2ull << 30},
        {"1TiB", 1ull << 40},
        {"3K", 3ull << 10},
        {"5M", 5ull << 20},
        {"7G", 7ull << 30},
        {"2T", 2ull << 40},
        {"16 MiB", 16ull << 20},
        {"16777215TiB", 16777215ull << 40},
        {"0", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[64];
        snprintf(text, sizeof(text), "size: %s\n", cases[i].text);
        dxb_yaml_doc_t *doc = s_load(text);
        uint64_t v = 1;
        assert_true(dxb_yaml_get_size(doc, dxb_yaml_root(doc), "size", &v, 0, UINT64_MAX, true));
        assert_true(v == cases[i].want);
        assert_int_equal(dxb_yaml_error_count(doc), 0);
        dxb_yaml_destroy(&doc);
    }
}

static void
test_yaml_sizes_reject_bad_suffix_overflow_and_range(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "1.5GiB", "1gib", "1GB", "GiB", "-1MiB", "16777216TiB", "18446744073709551616",
        "\"1GiB\"", "1KiBx", "1  MiB", "[1]", "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[64];
        snprintf(text, sizeof(text), "size: %s\n", bad[i]);
        dxb_yaml_doc_t *doc = s_load(text);
        uint64_t v = 1;
        assert_false(dxb_yaml_get_size(doc, dxb_yaml_root(doc), "size", &v, 0, UINT64_MAX, true));
        assert_int_equal(v, 1);
        assert_int_equal(dxb_yaml_error_count(doc), 1);
        dxb_yaml_destroy(&doc);
    }
    dxb_yaml_doc_t *doc = s_load("store:\n  map_size: 512KiB\n");
    const dxb_yaml_node_t *store = dxb_yaml_get(dxb_yaml_root(doc), "store");
    uint64_t v = 0;
    assert_false(dxb_yaml_get_size(doc, store, "map_size", &v, 1ull << 20, 1ull << 40, true));
    assert_string_equal(dxb_yaml_errors(doc),
                        "cfg.yaml:2:13: key 'map_size' must be a size between 1MiB and 1TiB "
                        "(bytes, or with a KiB/MiB/GiB/TiB suffix)\n");
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_bools_accept_plain_words_only(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("a: true\nb: no\nc: On\nd: OFF\ne: \"yes\"\nf: 1\ng: yess\n");
    const dxb_yaml_node_t *root = dxb_yaml_root(doc);
    bool a = false;
    bool b = true;
    bool c = false;
    bool d = true;
    bool x = true;
    assert_true(dxb_yaml_get_bool(doc, root, "a", &a, true));
    assert_true(dxb_yaml_get_bool(doc, root, "b", &b, true));
    assert_true(dxb_yaml_get_bool(doc, root, "c", &c, true));
    assert_true(dxb_yaml_get_bool(doc, root, "d", &d, true));
    assert_true(a && !b && c && !d);
    assert_false(dxb_yaml_get_bool(doc, root, "e", &x, true));
    assert_false(dxb_yaml_get_bool(doc, root, "f", &x, true));
    assert_false(dxb_yaml_get_bool(doc, root, "g", &x, true));
    assert_true(dxb_yaml_get_bool(doc, root, "absent", &x, false));
    assert_true(x);
    assert_string_equal(dxb_yaml_errors(doc),
                        "cfg.yaml:5:4: key 'e' must be true or false (yes/no, on/off)\n"
                        "cfg.yaml:6:4: key 'f' must be true or false (yes/no, on/off)\n"
                        "cfg.yaml:7:4: key 'g' must be true or false (yes/no, on/off)\n");
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_enum_lists_choices_on_error(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("- level: county\n- level: village\n- level: {a: 1}\n");
    const dxb_yaml_node_t *root = dxb_yaml_root(doc);
    int level = -1;
    assert_true(dxb_yaml_get_enum(doc, dxb_yaml_item(root, 0), "level", s_levels, &level, true));
    assert_int_equal(level, 2);
    assert_false(dxb_yaml_get_enum(doc, dxb_yaml_item(root, 1), "level", s_levels, &level, true));
    assert_false(dxb_yaml_get_enum(doc, dxb_yaml_item(root, 2), "level", s_levels, &level, true));
    assert_int_equal(level, 2);
    assert_string_equal(
        dxb_yaml_errors(doc),
        "cfg.yaml:2:10: key 'level' must be one of: province, city, county, department\n"
        "cfg.yaml:3:10: key 'level' must be one of: province, city, county, department\n");
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_strings_are_checked_for_length_nul_and_type(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("region: \"3213000\"\nid: \"a\\0b\"\nkey: [x]\nnone: ~\n"
                                 "empty: \"\"\n");
    const dxb_yaml_node_t *root = dxb_yaml_root(doc);
    char region[7] = "";
    char buf[32] = "keep";
    assert_false(dxb_yaml_get_str(doc, root, "region", region, sizeof(region), true));
    assert_false(dxb_yaml_get_str(doc, root, "id", buf, sizeof(buf), true));
    assert_false(dxb_yaml_get_str(doc, root, "key", buf, sizeof(buf), true));
    assert_false(dxb_yaml_get_str(doc, root, "none", buf, sizeof(buf), true));
    assert_string_equal(buf, "keep");
    assert_true(dxb_yaml_get_str(doc, root, "empty", buf, sizeof(buf), true));
    assert_string_equal(buf, "");
    assert_string_equal(dxb_yaml_errors(doc),
                        "cfg.yaml:1:9: key 'region' must be at most 6 bytes long\n"
                        "cfg.yaml:2:5: key 'id' must not contain NUL characters\n"
                        "cfg.yaml:3:6: key 'key' must be a string\n"
                        "cfg.yaml:4:7: key 'none' must be a string\n");
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_error_lines_stay_single_lines_for_hostile_keys(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("\"a\\nb\": 1\n");
    dxb_yaml_check_unused(doc, dxb_yaml_root(doc));
    assert_string_equal(dxb_yaml_errors(doc), "cfg.yaml:1:1: unknown key 'a?b'\n");
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_empty_documents_have_no_root(void **state)
{
    (void)state;
    static const char *const texts[] = {"", "# only a comment\n", "---\n", "~\n"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        dxb_yaml_doc_t *doc = s_load(texts[i]);
        assert_null(dxb_yaml_root(doc));
        assert_int_equal(dxb_yaml_error_count(doc), 0);
        dxb_yaml_destroy(&doc);
    }
}

static void
test_yaml_deep_nesting_is_refused(void **state)
{
    (void)state;
    char text[256];
    memset(text, '[', 100);
    text[100] = '\0';
    dxb_yaml_doc_t *doc = s_load(text);
    assert_null(dxb_yaml_root(doc));
    assert_string_equal(dxb_yaml_errors(doc), "cfg.yaml:1:65: nesting deeper than 64 levels\n");
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_error_text_is_capped_but_count_is_not(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = s_load("a: 1\n");
    for (int i = 0; i < 150; i++) {
        dxb_yaml_error(doc, NULL, "error %d", i);
    }
    assert_int_equal(dxb_yaml_error_count(doc), 150);
    const char *errs = dxb_yaml_errors(doc);
    assert_non_null(strstr(errs, "cfg.yaml:1:1: error 99\n"));
    assert_null(strstr(errs, "error 100\n"));
    const char *tail = "cfg.yaml:1:1: too many errors, the rest are not shown\n";
    assert_string_equal(errs + strlen(errs) - strlen(tail), tail);
    dxb_yaml_destroy(&doc);
}

static void
test_yaml_load_file_uses_path_in_errors_and_refuses_large_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/dxb-test-yaml-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/broker.yaml", dir);
    const char *text = "store:\n  sync: slow\n";
    assert_int_equal(dxb_write_file_atomic(path, text, strlen(text), 0644), DXB_OK);

    dxb_yaml_doc_t *doc = NULL;
    assert_int_equal(dxb_yaml_load_file(path, &doc), DXB_OK);
    const dxb_yaml_node_t *store = dxb_yaml_get(dxb_yaml_root(doc), "store");
    int sync = 0;
    assert_false(dxb_yaml_get_enum(doc, store, "sync", s_syncs, &sync, true));
    char want[512];
    snprintf(want, sizeof(want), "%s:2:9: key 'sync' must be one of: durable, fast\n", path);
    assert_string_equal(dxb_yaml_errors(doc), want);
    dxb_yaml_destroy(&doc);

    /* Configs are often symlinked into place; that must keep working. */
    char link_path[256];
    snprintf(link_path, sizeof(link_path), "%s/link.yaml", dir);
    assert_int_equal(symlink(path, link_path), 0);
    assert_int_equal(dxb_yaml_load_file(link_path, &doc), DXB_OK);
    dxb_yaml_destroy(&doc);

    size_t big_len = 4u * 1024u * 1024u + 1;
    char *big = malloc(big_len);
    assert_non_null(big);
    memset(big, '#', big_len);
    char big_path[256];
    snprintf(big_path, sizeof(big_path), "%s/big.yaml", dir);
    assert_int_equal(dxb_write_file_atomic(big_path, big, big_len, 0644), DXB_OK);
    assert_int_equal(dxb_yaml_load_file(big_path, &doc), DXB_ETOOBIG);
    assert_null(doc);
    assert_int_equal(dxb_yaml_load_buf("big", big, big_len, &doc), DXB_ETOOBIG);
    /* Exactly 4 MiB is still accepted (a file of comments). */
    assert_int_equal(dxb_yaml_load_buf("big", big, big_len - 1, &doc), DXB_OK);
    assert_null(dxb_yaml_root(doc));
    dxb_yaml_destroy(&doc);
    free(big);

    char missing[256];
    snprintf(missing, sizeof(missing), "%s/missing.yaml", dir);
    assert_int_equal(dxb_yaml_load_file(missing, &doc), DXB_ENOTFOUND);
    assert_int_equal(dxb_yaml_load_file(dir, &doc), DXB_EIO);

    unlink(big_path);
    unlink(link_path);
    unlink(path);
    rmdir(dir);
}

static void
test_yaml_destroy_is_null_safe(void **state)
{
    (void)state;
    dxb_yaml_doc_t *doc = NULL;
    dxb_yaml_destroy(&doc);
    dxb_yaml_destroy(NULL);
    assert_null(doc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_valid_broker_config_reads_every_key_without_errors),
        cmocka_unit_test(test_yaml_nodes_carry_one_based_line_and_column),
        cmocka_unit_test(test_yaml_syntax_error_reports_file_line_col_and_drops_tree),
        cmocka_unit_test(test_yaml_invalid_utf8_is_reported_at_its_position),
        cmocka_unit_test(test_yaml_anchor_and_alias_are_errors),
        cmocka_unit_test(test_yaml_explicit_tags_are_errors),
        cmocka_unit_test(test_yaml_second_document_is_an_error),
        cmocka_unit_test(test_yaml_duplicate_key_is_an_error_and_first_value_kept),
        cmocka_unit_test(test_yaml_non_scalar_key_is_an_error),
        cmocka_unit_test(test_yaml_unknown_key_is_reported_at_the_key),
        cmocka_unit_test(test_yaml_map_iteration_marks_entries_used),
        cmocka_unit_test(test_yaml_missing_required_key_is_reported_at_the_map),
        cmocka_unit_test(test_yaml_sections_must_be_maps_but_empty_optional_ones_are_defaults),
        cmocka_unit_test(test_yaml_integer_range_errors_name_key_and_rule),
        cmocka_unit_test(test_yaml_sizes_accept_binary_suffixes),
        cmocka_unit_test(test_yaml_sizes_reject_bad_suffix_overflow_and_range),
        cmocka_unit_test(test_yaml_bools_accept_plain_words_only),
        cmocka_unit_test(test_yaml_enum_lists_choices_on_error),
        cmocka_unit_test(test_yaml_strings_are_checked_for_length_nul_and_type),
        cmocka_unit_test(test_yaml_error_lines_stay_single_lines_for_hostile_keys),
        cmocka_unit_test(test_yaml_empty_documents_have_no_root),
        cmocka_unit_test(test_yaml_deep_nesting_is_refused),
        cmocka_unit_test(test_yaml_error_text_is_capped_but_count_is_not),
        cmocka_unit_test(test_yaml_load_file_uses_path_in_errors_and_refuses_large_files),
        cmocka_unit_test(test_yaml_destroy_is_null_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
