/* Unit tests for common/dxb_util: identifiers, hex, clocks and the durable
 * file steps (atomic write, bounded read, mkdir -p). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/dxb_util.h"

static int
s_setup_dir(void **state)
{
    char *dir = strdup("/tmp/dxb-test-util-XXXXXX");
    if (dir == NULL || mkdtemp(dir) == NULL) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

static int
s_teardown_dir(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", (char *)*state);
    int rc = system(cmd);
    free(*state);
    return rc == 0 ? 0 : -1;
}

static bool
s_id(const char *text)
{
    return dxb_id_valid(text, strlen(text));
}

static void
test_util_node_ids_follow_the_protocol_rule(void **state)
{
    (void)state;
    assert_true(s_id("sq.hrss"));
    assert_true(s_id("hr.employees"));
    assert_true(s_id("a"));
    assert_true(s_id("a-b_c.0-9"));
    char max[65];
    memset(max, 'a', 64);
    max[64] = '\0';
    assert_true(s_id(max));

    char over[66];
    memset(over, 'a', 65);
    over[65] = '\0';
    assert_false(s_id(over));
    assert_false(s_id(""));
    assert_false(s_id(".a"));
    assert_false(s_id("a."));
    assert_false(s_id("a..b"));
    assert_false(s_id("."));
    assert_false(s_id("Sq.hrss"));
    assert_false(s_id("sq hrss"));
    assert_false(s_id("sq/hrss"));
    assert_false(s_id("省.人社"));
    /* The length argument is what counts, not the NUL. */
    assert_true(dxb_id_valid("ab!", 2));
    assert_false(dxb_id_valid("a\0b", 3));
}

static void
test_util_region_is_exactly_six_digits(void **state)
{
    (void)state;
    assert_true(dxb_region_valid("321300", 6));
    assert_true(dxb_region_valid("000000", 6));
    assert_false(dxb_region_valid("32130", 5));
    assert_false(dxb_region_valid("3213000", 7));
    assert_false(dxb_region_valid("32130a", 6));
    assert_false(dxb_region_valid("", 0));
    assert_false(dxb_region_valid("-32130", 6));
}

static bool
s_name(const char *text)
{
    return dxb_filename_safe(text, strlen(text));
}

static void
test_util_filenames_refuse_paths_hidden_and_control_bytes(void **state)
{
    (void)state;
    assert_true(s_name("report.csv"));
    assert_true(s_name("员工名单 2026.xlsx"));
    assert_true(s_name("a..b"));
    char max[201];
    memset(max, 'x', 200);
    max[200] = '\0';
    assert_true(s_name(max));

    char over[202];
    memset(over, 'x', 201);
    over[201] = '\0';
    assert_false(s_name(over));
    assert_false(s_name(""));
    assert_false(s_name("."));
    assert_false(s_name(".."));
    assert_false(s_name(".hidden"));
    assert_false(s_name("../etc/passwd"));
    assert_false(s_name("dir/file"));
    assert_false(s_name("tab\there"));
    assert_false(s_name("line\nbreak"));
    assert_false(dxb_filename_safe("a\0b", 3));
}

static void
test_util_hex_round_trips_and_rejects_bad_digits(void **state)
{
    (void)state;
    const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char hex[2 * sizeof(bytes) + 1];
    dxb_hex_encode(bytes, sizeof(bytes), hex);
    assert_string_equal(hex, "00017f80abff");

    uint8_t back[sizeof(bytes)];
    assert_true(dxb_hex_decode(hex, back, sizeof(back)));
    assert_memory_equal(back, bytes, sizeof(bytes));
    assert_true(dxb_hex_decode("00017F80ABFF", back, sizeof(back)));
    assert_memory_equal(back, bytes, sizeof(bytes));

    assert_false(dxb_hex_decode("00017f80abf", back, sizeof(back)));
    assert_false(dxb_hex_decode("00017f80abfff0", back, sizeof(back)));
    assert_false(dxb_hex_decode("00017f80abfg", back, sizeof(back)));
    assert_false(dxb_hex_decode("0x017f80abff", back, sizeof(back)));

    char empty[1];
    dxb_hex_encode(bytes, 0, empty);
    assert_string_equal(empty, "");
}

static void
test_util_strlcpy_always_terminates_and_reports_truncation(void **state)
{
    (void)state;
    char buf[4];
    assert_true(dxb_strlcpy(buf, "abc", sizeof(buf)));
    assert_string_equal(buf, "abc");
    assert_false(dxb_strlcpy(buf, "abcd", sizeof(buf)));
    assert_string_equal(buf, "abc");
    assert_true(dxb_strlcpy(buf, "", sizeof(buf)));
    assert_string_equal(buf, "");
}

static void
test_util_clocks_are_plausible_and_monotonic(void **state)
{
    (void)state;
    /* 2020-01-01 in ms: a wall clock before that is broken. */
    assert_true(dxb_now_ms() > UINT64_C(1577836800000));
    uint64_t a = dxb_mono_ns();
    uint64_t b = dxb_mono_ns();
    assert_true(b >= a);
    assert_true(dxb_mono_ms() >= a / 1000000u);
}

static void
test_util_atomic_write_then_read_returns_same_bytes(void **state)
{
    const char *dir = *state;
    char path[256];
    snprintf(path, sizeof(path), "%s/data.bin", dir);
    const uint8_t data[] = {'a', 0, 'b', 0xff, '\n'};
    assert_int_equal(dxb_write_file_atomic(path, data, sizeof(data), 0640), DXB_OK);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    mode_t mask = umask(0);
    umask(mask);
    assert_int_equal(st.st_mode & 0777, 0640 & ~mask);
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_not_equal(stat(tmp, &st), 0);

    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(dxb_read_file(path, 1024, &buf, &len), DXB_OK);
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(buf, data, sizeof(data));
    assert_int_equal(buf[len], 0);
    free(buf);
}

static void
test_util_atomic_write_replaces_existing_file_whole(void **state)
{
    const char *dir = *state;
    char path[256];
    snprintf(path, sizeof(path), "%s/state", dir);
    assert_int_equal(dxb_write_file_atomic(path, "first version", 13, 0600), DXB_OK);
    assert_int_equal(dxb_write_file_atomic(path, "v2", 2, 0600), DXB_OK);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(dxb_read_file(path, 1024, &buf, &len), DXB_OK);
    assert_int_equal(len, 2);
    assert_string_equal((char *)buf, "v2");
    free(buf);
}

static void
test_util_atomic_write_into_missing_directory_fails(void **state)
{
    const char *dir = *state;
    char path[256];
    snprintf(path, sizeof(path), "%s/missing/file", dir);
    assert_int_equal(dxb_write_file_atomic(path, "x", 1, 0600), DXB_EIO);
}

static void
test_util_read_file_enforces_limit_and_reports_missing(void **state)
{
    const char *dir = *state;
    char path[256];
    snprintf(path, sizeof(path), "%s/ten", dir);
    assert_int_equal(dxb_write_file_atomic(path, "0123456789", 10, 0600), DXB_OK);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(dxb_read_file(path, 9, &buf, &len), DXB_ETOOBIG);
    assert_null(buf);
    assert_int_equal(dxb_read_file(path, 10, &buf, &len), DXB_OK);
    free(buf);
    buf = NULL;

    char missing[256];
    snprintf(missing, sizeof(missing), "%s/nope", dir);
    assert_int_equal(dxb_read_file(missing, 10, &buf, &len), DXB_ENOTFOUND);
    assert_int_equal(dxb_read_file(dir, 10, &buf, &len), DXB_EIO);

    char link_path[256];
    snprintf(link_path, sizeof(link_path), "%s/link", dir);
    assert_int_equal(symlink(path, link_path), 0);
    assert_int_equal(dxb_read_file(link_path, 10, &buf, &len), DXB_EIO);

    char empty[256];
    snprintf(empty, sizeof(empty), "%s/empty", dir);
    assert_int_equal(dxb_write_file_atomic(empty, "", 0, 0600), DXB_OK);
    assert_int_equal(dxb_read_file(empty, 10, &buf, &len), DXB_OK);
    assert_int_equal(len, 0);
    assert_string_equal((char *)buf, "");
    free(buf);
}

static void
test_util_mkdir_p_creates_parents_and_accepts_existing(void **state)
{
    const char *dir = *state;
    char path[256];
    snprintf(path, sizeof(path), "%s/a/b/c", dir);
    assert_int_equal(dxb_mkdir_p(path, 0700), DXB_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(dxb_mkdir_p(path, 0700), DXB_OK);

    /* A file in the way is an error, not silently accepted. */
    char file[256];
    snprintf(file, sizeof(file), "%s/a/file", dir);
    assert_int_equal(dxb_write_file_atomic(file, "x", 1, 0600), DXB_OK);
    char under[300];
    snprintf(under, sizeof(under), "%s/sub", file);
    assert_int_equal(dxb_mkdir_p(under, 0700), DXB_EIO);
    assert_int_equal(dxb_fsync_dir(path), DXB_OK);
    assert_int_equal(dxb_fsync_dir(file), DXB_EIO);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_util_node_ids_follow_the_protocol_rule),
        cmocka_unit_test(test_util_region_is_exactly_six_digits),
        cmocka_unit_test(test_util_filenames_refuse_paths_hidden_and_control_bytes),
        cmocka_unit_test(test_util_hex_round_trips_and_rejects_bad_digits),
        cmocka_unit_test(test_util_strlcpy_always_terminates_and_reports_truncation),
        cmocka_unit_test(test_util_clocks_are_plausible_and_monotonic),
        cmocka_unit_test_setup_teardown(test_util_atomic_write_then_read_returns_same_bytes,
                                        s_setup_dir, s_teardown_dir),
        cmocka_unit_test_setup_teardown(test_util_atomic_write_replaces_existing_file_whole,
                                        s_setup_dir, s_teardown_dir),
        cmocka_unit_test_setup_teardown(test_util_atomic_write_into_missing_directory_fails,
                                        s_setup_dir, s_teardown_dir),
        cmocka_unit_test_setup_teardown(test_util_read_file_enforces_limit_and_reports_missing,
                                        s_setup_dir, s_teardown_dir),
        cmocka_unit_test_setup_teardown(test_util_mkdir_p_creates_parents_and_accepts_existing,
                                        s_setup_dir, s_teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
