/* Unit tests for proto/dxb_rd: the bounded msgpack reader.
 *
 * Each test states one behaviour; hostile inputs (huge counts, deep nesting,
 * truncation) must fail cleanly without reading past the buffer. */
#include "proto/dxb_rd.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

/* Runs the reader over a heap copy of exactly `len` bytes so that AddressSanitizer
 * catches any read past the end. */
typedef struct {
    uint8_t *buf;
    dxb_rd_t rd;
} t_input_t;

static void
t_open(t_input_t *in, const void *bytes, size_t len)
{
    in->buf = malloc(len == 0 ? 1 : len);
    assert_non_null(in->buf);
    if (len > 0) {
        memcpy(in->buf, bytes, len);
    }
    dxb_rd_init(&in->rd, in->buf, len);
}

static void
t_close(t_input_t *in)
{
    free(in->buf);
    in->buf = NULL;
}

static void
test_reads_positive_integers_of_every_width(void **state)
{
    (void)state;
    static const uint8_t b[] = {0x05, 0xcc, 0xc8, 0xcd, 0x12, 0x34, 0xce, 0x12, 0x34, 0x56,
                                0x78, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_UINT);
    assert_int_equal(dxb_rd_uint(&in.rd, UINT64_MAX), 5);
    assert_int_equal(dxb_rd_uint(&in.rd, UINT64_MAX), 200);
    assert_int_equal(dxb_rd_uint(&in.rd, UINT64_MAX), 0x1234);
    assert_int_equal(dxb_rd_uint(&in.rd, UINT64_MAX), 0x12345678);
    assert_true(dxb_rd_uint(&in.rd, UINT64_MAX) == UINT64_MAX);
    assert_true(dxb_rd_ok(&in.rd));
    assert_int_equal(dxb_rd_left(&in.rd), 0);
    t_close(&in);
}

static void
test_uint_refuses_value_over_max(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xcd, 0x01, 0x00};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_uint(&in.rd, 255), 0);
    assert_false(dxb_rd_ok(&in.rd));
    assert_string_equal(in.rd.err, "integer out of range");
    t_close(&in);
}

static void
test_uint_refuses_negative_integer(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xff};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_INT);
    (void)dxb_rd_uint(&in.rd, UINT64_MAX);
    assert_false(dxb_rd_ok(&in.rd));
    t_close(&in);
}

static void
test_reads_signed_integers_of_every_width(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xff, 0xd0, 0x80, 0xd1, 0x80, 0x00, 0xd2, 0x80, 0x00, 0x00,
                                0x00, 0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                0x07, 0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_int(&in.rd), -1);
    assert_int_equal(dxb_rd_int(&in.rd), -128);
    assert_int_equal(dxb_rd_int(&in.rd), -32768);
    assert_int_equal(dxb_rd_int(&in.rd), INT32_MIN);
    assert_true(dxb_rd_int(&in.rd) == INT64_MIN);
    assert_int_equal(dxb_rd_int(&in.rd), 7);
    assert_true(dxb_rd_int(&in.rd) == INT64_MAX);
    assert_true(dxb_rd_ok(&in.rd));
    t_close(&in);
}

static void
test_int_refuses_uint64_over_int64_max(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_int(&in.rd), 0);
    assert_false(dxb_rd_ok(&in.rd));
    t_close(&in);
}

static void
test_reads_nil_bool_and_floats(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xc0, 0xc2, 0xc3, 0xca, 0x3f, 0xc0, 0x00, 0x00, 0xcb,
                                0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_NIL);
    dxb_rd_nil(&in.rd);
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_BOOL);
    assert_false(dxb_rd_bool(&in.rd));
    assert_true(dxb_rd_bool(&in.rd));
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_FLOAT);
    assert_true(dxb_rd_float(&in.rd) == 1.5);
    assert_true(dxb_rd_float(&in.rd) == 3.141592653589793);
    assert_true(dxb_rd_ok(&in.rd));
    assert_int_equal(dxb_rd_left(&in.rd), 0);
    t_close(&in);
}

static void
test_reads_str_and_bin_of_every_width(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xa2, 'h',  'i',  0xd9, 0x01, 'a',  0xda, 0x00, 0x01, 'b',
                                0xdb, 0x00, 0x00, 0x00, 0x01, 'c',  0xc4, 0x01, 0x01, 0xc5,
                                0x00, 0x01, 0x02, 0xc6, 0x00, 0x00, 0x00, 0x00};
    t_input_t in;
    size_t len = 99;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_STR);
    const uint8_t *p = dxb_rd_str(&in.rd, 16, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(p, "hi", 2);
    p = dxb_rd_str(&in.rd, 16, &len);
    assert_true(len == 1 && p[0] == 'a');
    p = dxb_rd_str(&in.rd, 16, &len);
    assert_true(len == 1 && p[0] == 'b');
    p = dxb_rd_str(&in.rd, 16, &len);
    assert_true(len == 1 && p[0] == 'c');
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_BIN);
    p = dxb_rd_bin(&in.rd, 16, &len);
    assert_true(len == 1 && p[0] == 1);
    p = dxb_rd_bin(&in.rd, 16, &len);
    assert_true(len == 1 && p[0] == 2);
    (void)dxb_rd_bin(&in.rd, 16, &len);
    assert_int_equal(len, 0);
    assert_true(dxb_rd_ok(&in.rd));
    t_close(&in);
}

static void
test_str_refuses_length_over_max(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xa3, 'a', 'b', 'c'};
    t_input_t in;
    size_t len = 99;
    t_open(&in, b, sizeof(b));
    assert_null(dxb_rd_str(&in.rd, 2, &len));
    assert_int_equal(len, 0);
    assert_string_equal(in.rd.err, "too long");
    t_close(&in);
}

static void
test_str_refuses_declared_length_beyond_input(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
    t_input_t in;
    size_t len = 99;
    t_open(&in, b, sizeof(b));
    assert_null(dxb_rd_str(&in.rd, SIZE_MAX, &len));
    assert_int_equal(len, 0);
    assert_string_equal(in.rd.err, "truncated");
    t_close(&in);
}

static void
test_bin_refuses_declared_length_beyond_input(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xc6, 0x00, 0x00, 0x01, 0x00, 0x01, 0x02};
    t_input_t in;
    size_t len = 99;
    t_open(&in, b, sizeof(b));
    assert_null(dxb_rd_bin(&in.rd, SIZE_MAX, &len));
    assert_false(dxb_rd_ok(&in.rd));
    t_close(&in);
}

static void
test_reads_array_and_map_headers(void **state)
{
    (void)state;
    static const uint8_t b[] = {0x92, 0x01, 0x02, 0xdc, 0x00, 0x01, 0xc0, 0xdd,
                                0x00, 0x00, 0x00, 0x00, 0x81, 0xa1, 'k',  0x01};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_ARRAY);
    assert_int_equal(dxb_rd_array(&in.rd), 2);
    assert_int_equal(dxb_rd_uint(&in.rd, 9), 1);
    assert_int_equal(dxb_rd_uint(&in.rd, 9), 2);
    assert_int_equal(dxb_rd_array(&in.rd), 1);
    dxb_rd_nil(&in.rd);
    assert_int_equal(dxb_rd_array(&in.rd), 0);
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_MAP);
    assert_int_equal(dxb_rd_map(&in.rd), 1);
    assert_true(dxb_rd_ok(&in.rd));
    t_close(&in);
}

static void
test_array32_refuses_count_over_bytes_left(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_array(&in.rd), 0);
    assert_string_equal(in.rd.err, "count exceeds bytes left");
    t_close(&in);
}

static void
test_map32_refuses_count_over_bytes_left(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_map(&in.rd), 0);
    assert_false(dxb_rd_ok(&in.rd));
    t_close(&in);
}

static void
test_map_needs_two_bytes_per_entry(void **state)
{
    (void)state;
    static const uint8_t b[] = {0x82, 0xc0, 0xc0, 0xc0};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_map(&in.rd), 0);
    assert_false(dxb_rd_ok(&in.rd));
    t_close(&in);
}

static void
test_error_is_sticky_and_first_one_wins(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xa1, 'x', 0x01, 0x02};
    t_input_t in;
    size_t len = 0;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_uint(&in.rd, 9), 0); /* a str: fails */
    const char *first = in.rd.err;
    assert_non_null(first);
    const uint8_t *pos = in.rd.pos;
    /* Well-typed reads after the failure still return zero and do not move. */
    assert_null(dxb_rd_str(&in.rd, 9, &len));
    assert_int_equal(dxb_rd_uint(&in.rd, 9), 0);
    assert_int_equal(dxb_rd_array(&in.rd), 0);
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_INVALID);
    dxb_rd_fail(&in.rd, "later");
    assert_ptr_equal(in.rd.err, first);
    assert_ptr_equal(in.rd.pos, pos);
    t_close(&in);
}

static void
test_every_reader_fails_on_empty_input(void **state)
{
    (void)state;
    size_t len = 0;
    dxb_rd_t rd;
    dxb_rd_init(&rd, NULL, 0);
    assert_int_equal(dxb_rd_left(&rd), 0);
    assert_int_equal(dxb_rd_peek(&rd), DXB_RD_INVALID);
    assert_int_equal(dxb_rd_array(&rd), 0);
    assert_false(dxb_rd_ok(&rd));
    dxb_rd_init(&rd, NULL, 0);
    assert_int_equal(dxb_rd_map(&rd), 0);
    assert_false(dxb_rd_ok(&rd));
    dxb_rd_init(&rd, NULL, 0);
    assert_int_equal(dxb_rd_int(&rd), 0);
    assert_false(dxb_rd_ok(&rd));
    dxb_rd_init(&rd, NULL, 0);
    assert_false(dxb_rd_bool(&rd));
    assert_false(dxb_rd_ok(&rd));
    dxb_rd_init(&rd, NULL, 0);
    dxb_rd_nil(&rd);
    assert_false(dxb_rd_ok(&rd));
    dxb_rd_init(&rd, NULL, 0);
    assert_true(dxb_rd_float(&rd) == 0.0);
    assert_false(dxb_rd_ok(&rd));
    dxb_rd_init(&rd, NULL, 0);
    assert_null(dxb_rd_bin(&rd, 9, &len));
    assert_false(dxb_rd_ok(&rd));
    dxb_rd_init(&rd, NULL, 0);
    dxb_rd_skip(&rd, 8);
    assert_false(dxb_rd_ok(&rd));
}

static void
test_peek_reports_reserved_byte_as_invalid(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xc1};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_INVALID);
    dxb_rd_skip(&in.rd, 8);
    assert_false(dxb_rd_ok(&in.rd));
    t_close(&in);
}

static void
test_peek_reports_ext(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xd4, 0x01, 0x02};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    assert_int_equal(dxb_rd_peek(&in.rd), DXB_RD_EXT);
    dxb_rd_skip(&in.rd, 0);
    assert_true(dxb_rd_ok(&in.rd));
    assert_int_equal(dxb_rd_left(&in.rd), 0);
    t_close(&in);
}

static void
test_skip_passes_over_nested_objects(void **state)
{
    (void)state;
    /* [ {"a": [1, -2, 1.5]}, bin(2), ext8(len 1), "z" ] then a trailing 0x07 */
    static const uint8_t b[] = {0x94, 0x81, 0xa1, 'a',  0x93, 0x01, 0xfe, 0xca,
                                0x3f, 0xc0, 0x00, 0x00, 0xc4, 0x02, 0xaa, 0xbb,
                                0xc7, 0x01, 0x05, 0x42, 0xa1, 'z',  0x07};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    dxb_rd_skip(&in.rd, 3);
    assert_true(dxb_rd_ok(&in.rd));
    assert_int_equal(dxb_rd_left(&in.rd), 1);
    assert_int_equal(dxb_rd_uint(&in.rd, 9), 7);
    t_close(&in);
}

static void
test_skip_refuses_nesting_deeper_than_max(void **state)
{
    (void)state;
    static const uint8_t b[] = {0x91, 0x91, 0x91, 0x01};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    dxb_rd_skip(&in.rd, 2);
    assert_string_equal(in.rd.err, "nesting too deep");
    t_close(&in);
    t_open(&in, b, sizeof(b));
    dxb_rd_skip(&in.rd, 3);
    assert_true(dxb_rd_ok(&in.rd));
    t_close(&in);
}

static void
test_skip_survives_100000_levels_of_nesting(void **state)
{
    (void)state;
    size_t n = 100000;
    uint8_t *b = malloc(n);
    assert_non_null(b);
    memset(b, 0x91, n);
    t_input_t in;
    t_open(&in, b, n);
    dxb_rd_skip(&in.rd, 8);
    assert_false(dxb_rd_ok(&in.rd));
    /* Stopped at the depth limit, not at the end of the input. */
    assert_true(dxb_rd_left(&in.rd) > n - 16);
    t_close(&in);
    /* Even an absurd depth limit is clamped rather than trusted. */
    t_open(&in, b, n);
    dxb_rd_skip(&in.rd, 1000000);
    assert_false(dxb_rd_ok(&in.rd));
    t_close(&in);
    free(b);
}

static void
test_skip_refuses_ext_longer_than_input(void **state)
{
    (void)state;
    static const uint8_t b[] = {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    t_input_t in;
    t_open(&in, b, sizeof(b));
    dxb_rd_skip(&in.rd, 8);
    assert_false(dxb_rd_ok(&in.rd));
    t_close(&in);
}

static void
test_every_prefix_of_a_nested_object_fails_cleanly(void **state)
{
    (void)state;
    static const uint8_t b[] = {0x93, 0xcd, 0x01, 0x00, 0x82, 0xa1, 'k', 0xc4, 0x01, 0x00,
                                0xa1, 'l',  0xcb, 0,    0,    0,    0,   0,    0,    0,
                                0,    0xd3, 1,    2,    3,    4,    5,   6,    7,    8};
    for (size_t cut = 0; cut < sizeof(b); cut++) {
        t_input_t in;
        t_open(&in, b, cut);
        dxb_rd_skip(&in.rd, 8);
        assert_false(dxb_rd_ok(&in.rd));
        assert_true(in.rd.pos <= in.rd.end);
        t_close(&in);
    }
}

/* Differential check: on bytes that msgpack-c's packer made, our reader sees
 * the same values that msgpack-c's own unpacker sees (trusted input only). */
static void
test_reader_agrees_with_msgpack_c_on_packed_values(void **state)
{
    (void)state;
    static const int64_t ints[] = {0,     1,      127,    128,       255,       256,
                                   65535, 65536,  -1,     -32,       -33,       -128,
                                   -129,  -32768, -32769, INT32_MIN, INT64_MIN, INT64_MAX};
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    size_t n_ints = sizeof(ints) / sizeof(ints[0]);
    assert_int_equal(msgpack_pack_array(&pk, n_ints + 2), 0);
    for (size_t i = 0; i < n_ints; i++) {
        assert_int_equal(msgpack_pack_int64(&pk, ints[i]), 0);
    }
    assert_int_equal(msgpack_pack_str_with_body(&pk, "hello", 5), 0);
    assert_int_equal(msgpack_pack_double(&pk, 2.25), 0);

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&up, sbuf.data, sbuf.size, &off), MSGPACK_UNPACK_SUCCESS);
    msgpack_object_array *arr = &up.data.via.array;

    dxb_rd_t rd;
    dxb_rd_init(&rd, (const uint8_t *)sbuf.data, sbuf.size);
    assert_int_equal(dxb_rd_array(&rd), arr->size);
    for (size_t i = 0; i < n_ints; i++) {
        msgpack_object *o = &arr->ptr[i];
        int64_t want =
            o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)o->via.u64 : o->via.i64;
        assert_true(dxb_rd_int(&rd) == want);
        assert_true(want == ints[i]);
    }
    size_t len = 0;
    const uint8_t *s = dxb_rd_str(&rd, 64, &len);
    assert_int_equal(len, arr->ptr[n_ints].via.str.size);
    assert_memory_equal(s, arr->ptr[n_ints].via.str.ptr, len);
    assert_true(dxb_rd_float(&rd) == arr->ptr[n_ints + 1].via.f64);
    assert_true(dxb_rd_ok(&rd));
    assert_int_equal(dxb_rd_left(&rd), 0);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sbuf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_positive_integers_of_every_width),
        cmocka_unit_test(test_uint_refuses_value_over_max),
        cmocka_unit_test(test_uint_refuses_negative_integer),
        cmocka_unit_test(test_reads_signed_integers_of_every_width),
        cmocka_unit_test(test_int_refuses_uint64_over_int64_max),
        cmocka_unit_test(test_reads_nil_bool_and_floats),
        cmocka_unit_test(test_reads_str_and_bin_of_every_width),
        cmocka_unit_test(test_str_refuses_length_over_max),
        cmocka_unit_test(test_str_refuses_declared_length_beyond_input),
        cmocka_unit_test(test_bin_refuses_declared_length_beyond_input),
        cmocka_unit_test(test_reads_array_and_map_headers),
        cmocka_unit_test(test_array32_refuses_count_over_bytes_left),
        cmocka_unit_test(test_map32_refuses_count_over_bytes_left),
        cmocka_unit_test(test_map_needs_two_bytes_per_entry),
        cmocka_unit_test(test_error_is_sticky_and_first_one_wins),
        cmocka_unit_test(test_every_reader_fails_on_empty_input),
        cmocka_unit_test(test_peek_reports_reserved_byte_as_invalid),
        cmocka_unit_test(test_peek_reports_ext),
        cmocka_unit_test(test_skip_passes_over_nested_objects),
        cmocka_unit_test(test_skip_refuses_nesting_deeper_than_max),
        cmocka_unit_test(test_skip_survives_100000_levels_of_nesting),
        cmocka_unit_test(test_skip_refuses_ext_longer_than_input),
        cmocka_unit_test(test_every_prefix_of_a_nested_object_fails_cleanly),
        cmocka_unit_test(test_reader_agrees_with_msgpack_c_on_packed_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
