/* Unit tests for proto/dxb_codec: every frame of PROTOCOL.md round-trips,
 * matches its golden vector (proto/vectors/), and every kind of malformed
 * input is refused with the specific error PROTO-R5/R6 name.
 *
 * Malformed frames are built with msgpack-c's packer directly (t_pk_*),
 * because the codec's own encoders refuse to produce them. */
#include "proto/dxb_msg.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/dxb_util.h"
#include "proto/dxb_rd.h"

#define T_MAX (1u << 20)
/* A string literal as (bytes, length), NUL excluded. */
#define T_LIT(s) (s), (sizeof(s) - 1)
#define T_CREATED_MS 1767225600000ull /* 2026-01-01T00:00:00Z */

/* ---- fixed field values (documented in proto/vectors/README.md) ---------- */

static const uint8_t T_MSGID[16] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
static const uint8_t T_MSGID2[16] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
                                     0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
static const char *const T_RCPTS[] = {"sq.mca", "js.province"};
static const char T_BODY[] = "opaque-body";
#define T_BODY_LEN (sizeof(T_BODY) - 1)
/* BLAKE2b-256("opaque-body") */
static const uint8_t T_BODY_HASH[32] = {
    0x54, 0x56, 0x55, 0x9e, 0x1d, 0xc5, 0x5b, 0xc3, 0x10, 0x29, 0x24, 0x0f, 0xff, 0xe9, 0xe7, 0x10,
    0xad, 0xa0, 0x08, 0x45, 0x06, 0xc8, 0x3a, 0x44, 0xc0, 0x4d, 0x99, 0xb0, 0xdf, 0x83, 0x88, 0x59};
static const char T_NAME[] = "employees.csv";
static const char T_PAYLOAD[] = "id,name\n1,a\n";

static dxb_bytes_t
t_bytes(const void *p, size_t len)
{
    return (dxb_bytes_t){.ptr = p, .len = len};
}

static dxb_bytes_t
t_cbytes(const char *s)
{
    return t_bytes(s, strlen(s));
}

static void
t_assert_bytes(dxb_bytes_t got, const void *want, size_t want_len)
{
    assert_int_equal(got.len, want_len);
    if (want_len > 0) {
        assert_memory_equal(got.ptr, want, want_len);
    }
}

/* Decodes a heap copy of exactly the frame, so ASan sees any overread. The
 * copy is kept in *copy_p (caller frees) because the frame borrows it. */
static dxb_err_t
t_decode(const void *buf, size_t len, dxb_frame_t *f, uint8_t **copy_p)
{
    uint8_t *copy = malloc(len == 0 ? 1 : len);
    assert_non_null(copy);
    if (len > 0) {
        memcpy(copy, buf, len);
    }
    char detail[128];
    dxb_err_t err = dxb_msg_decode(copy, len, T_MAX, f, detail, sizeof(detail));
    *copy_p = copy;
    return err;
}

/* Decodes and frees; returns only the status. */
static dxb_err_t
t_decode_status(const void *buf, size_t len)
{
    dxb_frame_t f;
    uint8_t *copy = NULL;
    dxb_err_t err = t_decode(buf, len, &f, &copy);
    free(copy);
    return err;
}

static dxb_err_t
t_decode_sbuf_status(const msgpack_sbuffer *sb)
{
    return t_decode_status(sb->data, sb->size);
}

/* ---- builders with the fixed values (golden vectors use these) ----------- */

static void
t_header_in(dxb_header_in_t *h)
{
    *h = (dxb_header_in_t){
        .msg_id = T_MSGID,
        .sender = "sq.hrss",
        .dataset = "hr.employees",
        .kind = DXB_KIND_DELIVERY,
        .seq = 1,
        .created_ms = T_CREATED_MS,
        .ttl_s = 86400,
        .recipients = T_RCPTS,
        .n_recipients = 2,
        .region = "321300",
        .suite = 1,
        .flags = 0,
        .body_len = T_BODY_LEN,
    };
}

/* Appends the fixed standalone ENVELOPE to sb. */
static void
t_build_env(msgpack_sbuffer *sb)
{
    dxb_header_in_t h;
    msgpack_sbuffer hb;
    t_header_in(&h);
    msgpack_sbuffer_init(&hb);
    assert_int_equal(dxb_msg_enc_header(&hb, &h), DXB_OK);
    assert_int_equal(
        dxb_msg_enc_env(sb, t_bytes(hb.data, hb.size), T_BODY_HASH, t_bytes(T_BODY, T_BODY_LEN)),
        DXB_OK);
    msgpack_sbuffer_destroy(&hb);
}

static void
t_build_envs(msgpack_sbuffer *sb, uint8_t type)
{
    msgpack_sbuffer eb;
    msgpack_sbuffer_init(&eb);
    t_build_env(&eb);
    dxb_bytes_t raw = t_bytes(eb.data, eb.size);
    assert_int_equal(dxb_msg_enc_envs(sb, type, &raw, 1), DXB_OK);
    msgpack_sbuffer_destroy(&eb);
}

static void
t_build_hello(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_hello(sb, "sq.hrss", "dxb/0.1.0", 64, 5000), DXB_OK);
}

static void
t_build_welcome(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_welcome(sb, "sq.hrss", "sq.broker", 5000, 67108864, T_CREATED_MS),
                     DXB_OK);
}

static void
t_build_publish(msgpack_sbuffer *sb)
{
    t_build_envs(sb, DXB_T_PUBLISH);
}

static void
t_build_deliver(msgpack_sbuffer *sb)
{
    t_build_envs(sb, DXB_T_DELIVER);
}

static void
t_build_puback(msgpack_sbuffer *sb)
{
    dxb_result_t r[2];
    memcpy(r[0].msg_id, T_MSGID, 16);
    r[0].code = DXB_W_OK;
    memcpy(r[1].msg_id, T_MSGID2, 16);
    r[1].code = DXB_W_EFULL;
    assert_int_equal(dxb_msg_enc_results(sb, DXB_T_PUBACK, r, 2), DXB_OK);
}

static void
t_build_dack(msgpack_sbuffer *sb)
{
    dxb_result_t r;
    memcpy(r.msg_id, T_MSGID, 16);
    r.code = DXB_W_OK;
    assert_int_equal(dxb_msg_enc_results(sb, DXB_T_DACK, &r, 1), DXB_OK);
}

static void
t_build_credit(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_credit(sb, 256), DXB_OK);
}

static void
t_build_ping(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_ping(sb, DXB_T_PING, T_CREATED_MS), DXB_OK);
}

static void
t_build_pong(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_ping(sb, DXB_T_PONG, T_CREATED_MS), DXB_OK);
}

static const char T_ERROR_TEXT[] = "envelope 0: header.dataset: invalid id";

static void
t_build_error(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_error(sb, DXB_W_EPROTO, T_MSGID, T_ERROR_TEXT), DXB_OK);
}

static void
t_nodes(dxb_nodeinfo_t nodes[2])
{
    memset(nodes, 0, 2 * sizeof(nodes[0]));
    strcpy(nodes[0].node, "sq.hrss");
    strcpy(nodes[0].region, "321300");
    nodes[0].level = 4;
    nodes[0].clearance = 2;
    memset(nodes[0].sign_pk, 0x11, 32);
    memset(nodes[0].box_pk, 0x22, 32);
    strcpy(nodes[1].node, "js.province");
    strcpy(nodes[1].region, "320000");
    nodes[1].level = 1;
    nodes[1].clearance = 3;
    memset(nodes[1].sign_pk, 0x33, 32);
    memset(nodes[1].box_pk, 0x44, 32);
}

static void
t_build_directory(msgpack_sbuffer *sb)
{
    dxb_nodeinfo_t nodes[2];
    t_nodes(nodes);
    assert_int_equal(dxb_msg_enc_directory(sb, nodes, 2), DXB_OK);
}

static void
t_build_bye(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_bye(sb, "shutdown"), DXB_OK);
}

static void
t_build_api_publish(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_api_publish(sb, 7, "hr.employees", T_RCPTS, 1, t_cbytes(T_NAME),
                                             t_cbytes(T_PAYLOAD), 0),
                     DXB_OK);
}

static void
t_build_api_result(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_api_result(sb, 7, DXB_W_OK, T_MSGID, ""), DXB_OK);
}

static void
t_build_api_subscribe(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_api_subscribe(sb, 8, ""), DXB_OK);
}

static void
t_build_api_message(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_api_message(sb, T_MSGID, "sq.hrss", "hr.employees", 1,
                                             T_CREATED_MS, t_cbytes(T_NAME), t_cbytes(T_PAYLOAD)),
                     DXB_OK);
}

static void
t_build_api_ack(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_api_ack(sb, T_MSGID), DXB_OK);
}

static const char *const T_ADMIN_ARGS[] = {"sq.mca", "10"};

static void
t_build_admin_req(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_admin_req(sb, "peek", T_ADMIN_ARGS, 2), DXB_OK);
}

static void
t_pk_key(msgpack_packer *pk, const char *key)
{
    assert_int_equal(msgpack_pack_str_with_body(pk, key, strlen(key)), 0);
}

/* One row with a value of every allowed type. */
static void
t_build_admin_rep(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    assert_int_equal(dxb_msg_enc_admin_rep_begin(sb, &pk, DXB_W_OK, "ok"), DXB_OK);
    assert_int_equal(msgpack_pack_array(&pk, 1), 0);
    assert_int_equal(msgpack_pack_map(&pk, 6), 0);
    t_pk_key(&pk, "node");
    t_pk_key(&pk, "sq.mca");
    t_pk_key(&pk, "msgs");
    assert_int_equal(msgpack_pack_uint64(&pk, 3), 0);
    t_pk_key(&pk, "delta");
    assert_int_equal(msgpack_pack_int64(&pk, -2), 0);
    t_pk_key(&pk, "connected");
    assert_int_equal(msgpack_pack_true(&pk), 0);
    t_pk_key(&pk, "oldest_age_s");
    assert_int_equal(msgpack_pack_double(&pk, 1.5), 0);
    t_pk_key(&pk, "region");
    assert_int_equal(msgpack_pack_nil(&pk), 0);
}

static const uint8_t T_NONCE[24] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
                                    0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18};

static void
t_wrap_keys(uint8_t wraps[2][80])
{
    memset(wraps[0], 0x5a, 80);
    memset(wraps[1], 0xa5, 80);
}

static void
t_build_body1(msgpack_sbuffer *sb)
{
    uint8_t wraps[2][80];
    uint8_t sig[64];
    msgpack_sbuffer wb;
    t_wrap_keys(wraps);
    memset(sig, 0x77, sizeof(sig));
    msgpack_sbuffer_init(&wb);
    assert_int_equal(dxb_msg_enc_wraps(&wb, T_RCPTS, (const uint8_t(*)[80])wraps, 2), DXB_OK);
    assert_int_equal(
        dxb_msg_enc_body1(sb, T_NONCE, t_bytes(wb.data, wb.size), t_cbytes("ciphertext"), sig),
        DXB_OK);
    msgpack_sbuffer_destroy(&wb);
}

static void
t_build_plaintext(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_plain(sb, t_cbytes(T_NAME), "text/csv", t_cbytes(T_PAYLOAD)),
                     DXB_OK);
}

/* Runs a builder into a fresh buffer. */
static void
t_build(void (*fn)(msgpack_sbuffer *), msgpack_sbuffer *sb)
{
    msgpack_sbuffer_init(sb);
    fn(sb);
}

/* ---- round trips ---------------------------------------------------------- */

/* Builds, decodes (DXB_OK, right type) and leaves frame + copy to the caller. */
static uint8_t *
t_round_trip(void (*fn)(msgpack_sbuffer *), uint8_t type, dxb_frame_t *f)
{
    msgpack_sbuffer sb;
    uint8_t *copy = NULL;
    t_build(fn, &sb);
    assert_int_equal(t_decode(sb.data, sb.size, f, &copy), DXB_OK);
    assert_int_equal(f->type, type);
    msgpack_sbuffer_destroy(&sb);
    return copy;
}

static void
test_hello_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_hello, DXB_T_HELLO, &f);
    assert_string_equal(f.u.hello.node, "sq.hrss");
    t_assert_bytes(f.u.hello.software, "dxb/0.1.0", 9);
    assert_int_equal(f.u.hello.window, 64);
    assert_int_equal(f.u.hello.heartbeat_ms, 5000);
    free(copy);
}

static void
test_welcome_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_welcome, DXB_T_WELCOME, &f);
    assert_string_equal(f.u.welcome.node, "sq.hrss");
    assert_string_equal(f.u.welcome.broker, "sq.broker");
    assert_int_equal(f.u.welcome.heartbeat_ms, 5000);
    assert_int_equal(f.u.welcome.max_frame, 67108864);
    assert_true(f.u.welcome.epoch == T_CREATED_MS);
    free(copy);
}

/* Checks every field of the fixed envelope. */
static void
t_assert_fixed_env(const dxb_env_t *e)
{
    assert_memory_equal(e->hdr.msg_id, T_MSGID, 16);
    assert_string_equal(e->hdr.sender, "sq.hrss");
    assert_string_equal(e->hdr.dataset, "hr.employees");
    assert_int_equal(e->hdr.kind, DXB_KIND_DELIVERY);
    assert_int_equal(e->hdr.seq, 1);
    assert_true(e->hdr.created_ms == T_CREATED_MS);
    assert_int_equal(e->hdr.ttl_s, 86400);
    assert_int_equal(e->hdr.n_recipients, 2);
    assert_string_equal(e->hdr.region, "321300");
    assert_int_equal(e->hdr.suite, 1);
    assert_int_equal(e->hdr.flags, 0);
    assert_int_equal(e->hdr.body_len, T_BODY_LEN);
    assert_memory_equal(e->body_hash, T_BODY_HASH, 32);
    t_assert_bytes(e->body, T_BODY, T_BODY_LEN);

    dxb_iter_t it;
    char id[DXB_ID_CAP];
    dxb_msg_recipients_begin(e->hdr.recipients, e->hdr.n_recipients, &it);
    assert_true(dxb_msg_next_recipient(&it, id));
    assert_string_equal(id, "sq.mca");
    assert_true(dxb_msg_next_recipient(&it, id));
    assert_string_equal(id, "js.province");
    assert_false(dxb_msg_next_recipient(&it, id));

    /* header_raw is exactly what dxb_msg_enc_header produced (PROTO-R8). */
    dxb_header_in_t h;
    msgpack_sbuffer hb;
    t_header_in(&h);
    msgpack_sbuffer_init(&hb);
    assert_int_equal(dxb_msg_enc_header(&hb, &h), DXB_OK);
    t_assert_bytes(e->header_raw, hb.data, hb.size);
    msgpack_sbuffer_destroy(&hb);
}

static void
t_check_envs_frame(void (*fn)(msgpack_sbuffer *), uint8_t type)
{
    dxb_frame_t f;
    dxb_env_t e;
    uint8_t *copy = t_round_trip(fn, type, &f);
    assert_int_equal(f.u.envs.envs.left, 1);
    assert_true(dxb_msg_next_env(&f.u.envs.envs, &e));
    t_assert_fixed_env(&e);
    /* raw is the exact ENVELOPE span, equal to the standalone encoding. */
    msgpack_sbuffer eb;
    t_build(t_build_env, &eb);
    t_assert_bytes(e.raw, eb.data, eb.size);
    msgpack_sbuffer_destroy(&eb);
    assert_false(dxb_msg_next_env(&f.u.envs.envs, &e));
    free(copy);
}

static void
test_publish_round_trips(void **state)
{
    (void)state;
    t_check_envs_frame(t_build_publish, DXB_T_PUBLISH);
}

static void
test_deliver_round_trips(void **state)
{
    (void)state;
    t_check_envs_frame(t_build_deliver, DXB_T_DELIVER);
}

static void
test_standalone_envelope_round_trips(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    dxb_env_t e;
    t_build(t_build_env, &sb);
    assert_int_equal(dxb_msg_decode_env((const uint8_t *)sb.data, sb.size, &e, NULL, 0), DXB_OK);
    t_assert_fixed_env(&e);
    t_assert_bytes(e.raw, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_puback_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    dxb_result_t r;
    uint8_t *copy = t_round_trip(t_build_puback, DXB_T_PUBACK, &f);
    assert_true(dxb_msg_next_result(&f.u.results.results, &r));
    assert_memory_equal(r.msg_id, T_MSGID, 16);
    assert_int_equal(r.code, DXB_W_OK);
    assert_true(dxb_msg_next_result(&f.u.results.results, &r));
    assert_memory_equal(r.msg_id, T_MSGID2, 16);
    assert_int_equal(r.code, DXB_W_EFULL);
    assert_false(dxb_msg_next_result(&f.u.results.results, &r));
    free(copy);
}

static void
test_dack_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    dxb_result_t r;
    uint8_t *copy = t_round_trip(t_build_dack, DXB_T_DACK, &f);
    assert_true(dxb_msg_next_result(&f.u.results.results, &r));
    assert_memory_equal(r.msg_id, T_MSGID, 16);
    assert_int_equal(r.code, DXB_W_OK);
    assert_false(dxb_msg_next_result(&f.u.results.results, &r));
    free(copy);
}

static void
test_credit_ping_pong_round_trip(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_credit, DXB_T_CREDIT, &f);
    assert_int_equal(f.u.credit.window, 256);
    free(copy);
    copy = t_round_trip(t_build_ping, DXB_T_PING, &f);
    assert_true(f.u.ping.t_ms == T_CREATED_MS);
    free(copy);
    copy = t_round_trip(t_build_pong, DXB_T_PONG, &f);
    assert_true(f.u.ping.t_ms == T_CREATED_MS);
    free(copy);
}

static void
test_error_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_error, DXB_T_ERROR, &f);
    assert_int_equal(f.u.error.code, DXB_W_EPROTO);
    t_assert_bytes(f.u.error.ref, T_MSGID, 16);
    t_assert_bytes(f.u.error.text, T_ERROR_TEXT, strlen(T_ERROR_TEXT));
    free(copy);
}

static void
test_error_without_ref_encodes_empty_ref(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    dxb_frame_t f;
    uint8_t *copy = NULL;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_msg_enc_error(&sb, DXB_W_EAUTH, NULL, NULL), DXB_OK);
    assert_int_equal(t_decode(sb.data, sb.size, &f, &copy), DXB_OK);
    assert_int_equal(f.u.error.ref.len, 0);
    assert_int_equal(f.u.error.text.len, 0);
    free(copy);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_error_text_is_cut_at_512_bytes_on_a_character_boundary(void **state)
{
    (void)state;
    /* 300 two-byte characters: 600 bytes, cut to 512 exactly (256 chars). An
     * odd cut point would split a character; prefix one ASCII byte to force it. */
    char text[700];
    text[0] = 'x';
    for (int i = 0; i < 300; i++) {
        text[1 + 2 * i] = (char)0xc3;
        text[2 + 2 * i] = (char)0xa9; /* é */
    }
    text[601] = '\0';
    msgpack_sbuffer sb;
    dxb_frame_t f;
    uint8_t *copy = NULL;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_msg_enc_error(&sb, DXB_W_EPROTO, NULL, text), DXB_OK);
    assert_int_equal(t_decode(sb.data, sb.size, &f, &copy), DXB_OK);
    assert_int_equal(f.u.error.text.len, 511);
    free(copy);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_directory_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    dxb_nodeinfo_t want[2];
    dxb_nodeinfo_t got;
    t_nodes(want);
    uint8_t *copy = t_round_trip(t_build_directory, DXB_T_DIRECTORY, &f);
    for (int i = 0; i < 2; i++) {
        assert_true(dxb_msg_next_nodeinfo(&f.u.directory.nodes, &got));
        assert_string_equal(got.node, want[i].node);
        assert_string_equal(got.region, want[i].region);
        assert_int_equal(got.level, want[i].level);
        assert_int_equal(got.clearance, want[i].clearance);
        assert_memory_equal(got.sign_pk, want[i].sign_pk, 32);
        assert_memory_equal(got.box_pk, want[i].box_pk, 32);
    }
    assert_false(dxb_msg_next_nodeinfo(&f.u.directory.nodes, &got));
    free(copy);
}

static void
test_empty_directory_round_trips(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    dxb_frame_t f;
    dxb_nodeinfo_t got;
    uint8_t *copy = NULL;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_msg_enc_directory(&sb, NULL, 0), DXB_OK);
    assert_int_equal(t_decode(sb.data, sb.size, &f, &copy), DXB_OK);
    assert_false(dxb_msg_next_nodeinfo(&f.u.directory.nodes, &got));
    free(copy);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_bye_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_bye, DXB_T_BYE, &f);
    t_assert_bytes(f.u.bye.reason, "shutdown", 8);
    free(copy);
}

static void
test_api_publish_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    dxb_iter_t it;
    char id[DXB_ID_CAP];
    uint8_t *copy = t_round_trip(t_build_api_publish, DXB_T_API_PUBLISH, &f);
    assert_int_equal(f.u.api_publish.req, 7);
    assert_string_equal(f.u.api_publish.dataset, "hr.employees");
    assert_int_equal(f.u.api_publish.n_recipients, 1);
    dxb_msg_recipients_begin(f.u.api_publish.recipients, f.u.api_publish.n_recipients, &it);
    assert_true(dxb_msg_next_recipient(&it, id));
    assert_string_equal(id, "sq.mca");
    assert_false(dxb_msg_next_recipient(&it, id));
    t_assert_bytes(f.u.api_publish.name, T_NAME, strlen(T_NAME));
    t_assert_bytes(f.u.api_publish.payload, T_PAYLOAD, strlen(T_PAYLOAD));
    assert_int_equal(f.u.api_publish.ttl_s, 0);
    free(copy);
}

static void
test_api_result_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_api_result, DXB_T_API_RESULT, &f);
    assert_int_equal(f.u.api_result.req, 7);
    assert_int_equal(f.u.api_result.code, DXB_W_OK);
    t_assert_bytes(f.u.api_result.msg_id, T_MSGID, 16);
    assert_int_equal(f.u.api_result.text.len, 0);
    free(copy);
}

static void
test_api_subscribe_round_trips_with_all_and_with_a_dataset(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_api_subscribe, DXB_T_API_SUBSCRIBE, &f);
    assert_int_equal(f.u.api_subscribe.req, 8);
    assert_string_equal(f.u.api_subscribe.dataset, "");
    free(copy);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_msg_enc_api_subscribe(&sb, 9, "hr.employees"), DXB_OK);
    assert_int_equal(t_decode(sb.data, sb.size, &f, &copy), DXB_OK);
    assert_string_equal(f.u.api_subscribe.dataset, "hr.employees");
    free(copy);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_api_message_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_api_message, DXB_T_API_MESSAGE, &f);
    assert_memory_equal(f.u.api_message.msg_id, T_MSGID, 16);
    assert_string_equal(f.u.api_message.sender, "sq.hrss");
    assert_string_equal(f.u.api_message.dataset, "hr.employees");
    assert_int_equal(f.u.api_message.seq, 1);
    assert_true(f.u.api_message.created_ms == T_CREATED_MS);
    t_assert_bytes(f.u.api_message.name, T_NAME, strlen(T_NAME));
    t_assert_bytes(f.u.api_message.payload, T_PAYLOAD, strlen(T_PAYLOAD));
    free(copy);
}

static void
test_api_ack_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_api_ack, DXB_T_API_ACK, &f);
    assert_memory_equal(f.u.api_ack.msg_id, T_MSGID, 16);
    free(copy);
}

static void
test_admin_req_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_admin_req, DXB_T_ADMIN_REQ, &f);
    assert_string_equal(f.u.admin_req.command, "peek");
    assert_int_equal(f.u.admin_req.n_args, 2);
    assert_string_equal(f.u.admin_req.args[0], "sq.mca");
    assert_string_equal(f.u.admin_req.args[1], "10");
    free(copy);
}

static void
test_admin_rep_round_trips_with_result_table(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_admin_rep, DXB_T_ADMIN_REP, &f);
    assert_int_equal(f.u.admin_rep.code, DXB_W_OK);
    t_assert_bytes(f.u.admin_rep.message, "ok", 2);
    /* The result span is the whole table and nothing more. */
    dxb_rd_t rd;
    size_t len = 0;
    dxb_rd_init(&rd, f.u.admin_rep.result.ptr, f.u.admin_rep.result.len);
    assert_int_equal(dxb_rd_array(&rd), 1);
    assert_int_equal(dxb_rd_map(&rd), 6);
    const uint8_t *key = dxb_rd_str(&rd, 64, &len);
    assert_true(len == 4 && memcmp(key, "node", 4) == 0);
    dxb_rd_skip(&rd, 8);
    for (int i = 0; i < 5; i++) {
        dxb_rd_skip(&rd, 8);
        dxb_rd_skip(&rd, 8);
    }
    assert_true(dxb_rd_ok(&rd));
    assert_int_equal(dxb_rd_left(&rd), 0);
    free(copy);
}

static void
test_admin_rep_round_trips_with_nil_result(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    dxb_frame_t f;
    uint8_t *copy = NULL;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_msg_enc_admin_rep_begin(&sb, &pk, DXB_W_ENOTFOUND, "no such node"),
                     DXB_OK);
    assert_int_equal(msgpack_pack_nil(&pk), 0);
    assert_int_equal(t_decode(sb.data, sb.size, &f, &copy), DXB_OK);
    assert_int_equal(f.u.admin_rep.code, DXB_W_ENOTFOUND);
    t_assert_bytes(f.u.admin_rep.result, "\xc0", 1);
    free(copy);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_body1_round_trips_and_finds_each_wrap(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    dxb_body1_t b;
    uint8_t wraps[2][80];
    uint8_t got[80];
    uint8_t sig[64];
    t_wrap_keys(wraps);
    memset(sig, 0x77, sizeof(sig));
    t_build(t_build_body1, &sb);
    assert_int_equal(dxb_msg_decode_body1((const uint8_t *)sb.data, sb.size, &b), DXB_OK);
    assert_memory_equal(b.nonce, T_NONCE, 24);
    assert_int_equal(b.n_wraps, 2);
    t_assert_bytes(b.ciphertext, "ciphertext", 10);
    assert_memory_equal(b.signature, sig, 64);
    assert_true(dxb_msg_body1_find_wrap(&b, "sq.mca", got));
    assert_memory_equal(got, wraps[0], 80);
    assert_true(dxb_msg_body1_find_wrap(&b, "js.province", got));
    assert_memory_equal(got, wraps[1], 80);
    assert_false(dxb_msg_body1_find_wrap(&b, "sq.mc", got));
    assert_false(dxb_msg_body1_find_wrap(&b, "sq.hrss", got));
    msgpack_sbuffer_destroy(&sb);
}

static void
test_plaintext_round_trips(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    dxb_plain_t p;
    t_build(t_build_plaintext, &sb);
    assert_int_equal(dxb_msg_decode_plain((const uint8_t *)sb.data, sb.size, &p), DXB_OK);
    t_assert_bytes(p.name, T_NAME, strlen(T_NAME));
    t_assert_bytes(p.content_type, "text/csv", 8);
    t_assert_bytes(p.payload, T_PAYLOAD, strlen(T_PAYLOAD));
    msgpack_sbuffer_destroy(&sb);
}

/* ---- golden vectors ------------------------------------------------------- */

typedef struct {
    const char *file;                   /* under proto/vectors/ */
    void (*build)(msgpack_sbuffer *sb); /* fixed values, see README.md there */
    const char *hex;                    /* the file's content, without newline */
} t_vector_t;

/* Keep in sync with proto/vectors/: the files hold exactly these strings. */
static const t_vector_t s_vectors[] = {
    {"01-hello.hex", t_build_hello, "960101a773712e68727373a96478622f302e312e3040cd1388"},
    {"02-welcome.hex", t_build_welcome,
     "970102a773712e68727373a973712e62726f6b6572cd1388ce04000000cf0000"
     "019b76daa800"},
    {"03-publish.hex", t_build_publish,
     "93010391939cc410000102030405060708090a0b0c0d0e0fa773712e68727373"
     "ac68722e656d706c6f796565730101cf0000019b76daa800ce0001518092a673"
     "712e6d6361ab6a732e70726f76696e6365a633323133303001000bc420545655"
     "9e1dc55bc31029240fffe9e710ada0084506c83a44c04d99b0df838859c40b6f"
     "70617175652d626f6479"},
    {"04-puback.hex", t_build_puback,
     "9301049292c410000102030405060708090a0b0c0d0e0f0092c4101011121314"
     "15161718191a1b1c1d1e1f08"},
    {"05-deliver.hex", t_build_deliver,
     "93010591939cc410000102030405060708090a0b0c0d0e0fa773712e68727373"
     "ac68722e656d706c6f796565730101cf0000019b76daa800ce0001518092a673"
     "712e6d6361ab6a732e70726f76696e6365a633323133303001000bc420545655"
     "9e1dc55bc31029240fffe9e710ada0084506c83a44c04d99b0df838859c40b6f"
     "70617175652d626f6479"},
    {"06-dack.hex", t_build_dack, "9301069192c410000102030405060708090a0b0c0d0e0f00"},
    {"07-credit.hex", t_build_credit, "930107cd0100"},
    {"08-ping.hex", t_build_ping, "930108cf0000019b76daa800"},
    {"09-pong.hex", t_build_pong, "930109cf0000019b76daa800"},
    {"10-error.hex", t_build_error,
     "95010a01c410000102030405060708090a0b0c0d0e0fd926656e76656c6f7065"
     "20303a206865616465722e646174617365743a20696e76616c6964206964"},
    {"11-directory.hex", t_build_directory,
     "93010b9296a773712e68727373a63332313330300402c4201111111111111111"
     "111111111111111111111111111111111111111111111111c420222222222222"
     "222222222222222222222222222222222222222222222222222296ab6a732e70"
     "726f76696e6365a63332303030300103c4203333333333333333333333333333"
     "333333333333333333333333333333333333c420444444444444444444444444"
     "4444444444444444444444444444444444444444"},
    {"12-bye.hex", t_build_bye, "93010ca873687574646f776e"},
    {"40-api_publish.hex", t_build_api_publish,
     "98012807ac68722e656d706c6f7965657391a673712e6d6361ad656d706c6f79"
     "6565732e637376c40c69642c6e616d650a312c610a00"},
    {"41-api_result.hex", t_build_api_result, "9601290700c410000102030405060708090a0b0c0d0e0fa0"},
    {"42-api_subscribe.hex", t_build_api_subscribe, "94012a08a0"},
    {"43-api_message.hex", t_build_api_message,
     "99012bc410000102030405060708090a0b0c0d0e0fa773712e68727373ac6872"
     "2e656d706c6f7965657301cf0000019b76daa800ad656d706c6f796565732e63"
     "7376c40c69642c6e616d650a312c610a"},
    {"44-api_ack.hex", t_build_api_ack, "93012cc410000102030405060708090a0b0c0d0e0f"},
    {"100-admin_req.hex", t_build_admin_req, "940164a47065656b92a673712e6d6361a23130"},
    {"101-admin_rep.hex", t_build_admin_rep,
     "95016500a26f6b9186a46e6f6465a673712e6d6361a46d73677303a564656c74"
     "61fea9636f6e6e6563746564c3ac6f6c646573745f6167655f73cb3ff8000000"
     "000000a6726567696f6ec0"},
    {"envelope.hex", t_build_env,
     "939cc410000102030405060708090a0b0c0d0e0fa773712e68727373ac68722e"
     "656d706c6f796565730101cf0000019b76daa800ce0001518092a673712e6d63"
     "61ab6a732e70726f76696e6365a633323133303001000bc4205456559e1dc55b"
     "c31029240fffe9e710ada0084506c83a44c04d99b0df838859c40b6f70617175"
     "652d626f6479"},
    {"body1.hex", t_build_body1,
     "94c4180102030405060708090a0b0c0d0e0f1011121314151617189292a67371"
     "2e6d6361c4505a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
     "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
     "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a92ab6a732e70726f7669"
     "6e6365c450a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"
     "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"
     "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5c40a636970686572746578"
     "74c4407777777777777777777777777777777777777777777777777777777777"
     "7777777777777777777777777777777777777777777777777777777777777777"
     "777777"},
    {"plaintext.hex", t_build_plaintext,
     "93ad656d706c6f796565732e637376a8746578742f637376c40c69642c6e616d"
     "650a312c610a"},
};

static char *
t_to_hex(const msgpack_sbuffer *sb)
{
    char *hex = malloc(2 * sb->size + 1);
    assert_non_null(hex);
    dxb_hex_encode((const uint8_t *)sb->data, sb->size, hex);
    return hex;
}

/* When DXB_VECTORS_DIR is set (e.g. to proto/vectors), the files must hold
 * the same hex as this table. */
static void
t_check_vector_file(const t_vector_t *v)
{
    const char *dir = getenv("DXB_VECTORS_DIR");
    if (dir == NULL) {
        return;
    }
    char path[4096];
    uint8_t *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, v->file);
    assert_int_equal(dxb_read_file(path, 1u << 20, &text, &len), DXB_OK);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r')) {
        text[--len] = '\0';
    }
    if (strcmp((const char *)text, v->hex) != 0) {
        fail_msg("%s differs from the table in test_codec.c", path);
    }
    free(text);
}

static void
test_encoders_reproduce_golden_vectors(void **state)
{
    (void)state;
    int mismatches = 0;
    for (size_t i = 0; i < sizeof(s_vectors) / sizeof(s_vectors[0]); i++) {
        msgpack_sbuffer sb;
        t_build(s_vectors[i].build, &sb);
        char *hex = t_to_hex(&sb);
        if (strcmp(hex, s_vectors[i].hex) != 0) {
            print_error("%s: got %s\n", s_vectors[i].file, hex);
            mismatches++;
        }
        free(hex);
        msgpack_sbuffer_destroy(&sb);
        t_check_vector_file(&s_vectors[i]);
    }
    assert_int_equal(mismatches, 0);
}

static void
test_golden_frame_vectors_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(s_vectors) / sizeof(s_vectors[0]); i++) {
        const char *hex = s_vectors[i].hex;
        int type = atoi(s_vectors[i].file);
        if (type == 0) {
            continue; /* bare envelope, body and plaintext: not frames */
        }
        size_t len = strlen(hex) / 2;
        uint8_t *bytes = malloc(len);
        assert_non_null(bytes);
        assert_true(dxb_hex_decode(hex, bytes, len));
        dxb_frame_t f;
        uint8_t *copy = NULL;
        assert_int_equal(t_decode(bytes, len, &f, &copy), DXB_OK);
        assert_int_equal(f.type, type);
        free(copy);
        free(bytes);
    }
}

/* ---- raw packing of malformed frames -------------------------------------- */

/* Every HEADER field, so a test can break exactly one. */
typedef struct {
    uint32_t n_fields; /* 12 */
    size_t msg_id_len; /* 16 */
    const char *sender;
    const char *dataset;
    uint64_t kind;
    uint64_t seq;
    uint64_t ttl_s;
    size_t n_recipients;
    const char *recipient; /* repeated n_recipients times */
    const char *region;
    uint64_t suite;
    uint64_t flags;
    uint64_t body_len;
} t_hdr_t;

static t_hdr_t
t_hdr_default(void)
{
    return (t_hdr_t){
        .n_fields = 12,
        .msg_id_len = 16,
        .sender = "sq.hrss",
        .dataset = "hr.employees",
        .kind = 1,
        .seq = 1,
        .ttl_s = 0,
        .n_recipients = 1,
        .recipient = "sq.mca",
        .region = "",
        .suite = 1,
        .flags = 0,
        .body_len = T_BODY_LEN,
    };
}

static void
t_pk_str(msgpack_packer *pk, const char *s)
{
    assert_int_equal(msgpack_pack_str_with_body(pk, s, strlen(s)), 0);
}

static void
t_pk_bin(msgpack_packer *pk, const void *p, size_t n)
{
    assert_int_equal(msgpack_pack_bin_with_body(pk, p, n), 0);
}

static void
t_pk_uint(msgpack_packer *pk, uint64_t v)
{
    assert_int_equal(msgpack_pack_uint64(pk, v), 0);
}

static void
t_pk_array(msgpack_packer *pk, size_t n)
{
    assert_int_equal(msgpack_pack_array(pk, n), 0);
}

static void
t_pk_header(msgpack_packer *pk, const t_hdr_t *h)
{
    uint8_t id[32] = {0};
    t_pk_array(pk, h->n_fields);
    t_pk_bin(pk, id, h->msg_id_len);
    t_pk_str(pk, h->sender);
    t_pk_str(pk, h->dataset);
    t_pk_uint(pk, h->kind);
    t_pk_uint(pk, h->seq);
    t_pk_uint(pk, T_CREATED_MS);
    t_pk_uint(pk, h->ttl_s);
    t_pk_array(pk, h->n_recipients);
    for (size_t i = 0; i < h->n_recipients; i++) {
        t_pk_str(pk, h->recipient);
    }
    t_pk_str(pk, h->region);
    t_pk_uint(pk, h->suite);
    t_pk_uint(pk, h->flags);
    t_pk_uint(pk, h->body_len);
}

static void
t_pk_env(msgpack_packer *pk, const t_hdr_t *h)
{
    t_pk_array(pk, 3);
    t_pk_header(pk, h);
    t_pk_bin(pk, T_BODY_HASH, 32);
    t_pk_bin(pk, T_BODY, T_BODY_LEN);
}

static void
t_pk_frame_start(msgpack_sbuffer *sb, msgpack_packer *pk, uint64_t type, size_t n_fields)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    t_pk_array(pk, 2 + n_fields);
    t_pk_uint(pk, 1);
    t_pk_uint(pk, type);
}

/* PUBLISH of n copies of the given header's envelope; returns the status. */
static dxb_err_t
t_publish_status(const t_hdr_t *h, size_t n)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    t_pk_frame_start(&sb, &pk, DXB_T_PUBLISH, 1);
    t_pk_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        t_pk_env(&pk, h);
    }
    dxb_err_t err = t_decode_sbuf_status(&sb);
    msgpack_sbuffer_destroy(&sb);
    return err;
}

static dxb_err_t
t_hello_status(const char *node)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    t_pk_frame_start(&sb, &pk, DXB_T_HELLO, 4);
    t_pk_str(&pk, node);
    t_pk_str(&pk, "dxb");
    t_pk_uint(&pk, 1);
    t_pk_uint(&pk, 1);
    dxb_err_t err = t_decode_sbuf_status(&sb);
    msgpack_sbuffer_destroy(&sb);
    return err;
}

/* ---- malformed frames ------------------------------------------------------ */

static void
test_raw_publish_builder_is_valid(void **state)
{
    (void)state;
    /* Guards every malformed-PUBLISH test below: only the broken field fails. */
    t_hdr_t h = t_hdr_default();
    assert_int_equal(t_publish_status(&h, 1), DXB_OK);
    assert_int_equal(t_publish_status(&h, 1024), DXB_OK);
    assert_int_equal(t_hello_status("sq.hrss"), DXB_OK);
}

static void
test_decode_refuses_empty_input(void **state)
{
    (void)state;
    assert_int_equal(t_decode_status(T_LIT("")), DXB_EPROTO);
}

static void
test_decode_refuses_single_byte(void **state)
{
    (void)state;
    assert_int_equal(t_decode_status(T_LIT("\x93")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x01")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x90")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\xc1")), DXB_EPROTO);
}

static void
test_decode_refuses_non_array_frame(void **state)
{
    (void)state;
    assert_int_equal(t_decode_status(T_LIT("\x81\x01\x01")), DXB_EPROTO);
}

static void
test_decode_refuses_wrong_version(void **state)
{
    (void)state;
    assert_int_equal(t_decode_status(T_LIT("\x93\x02\x08\x00")), DXB_EVERSION);
    assert_int_equal(t_decode_status(T_LIT("\x93\x00\x08\x00")), DXB_EVERSION);
    /* A future version may have any shape: the version alone decides. */
    assert_int_equal(t_decode_status(T_LIT("\x91\x02")), DXB_EVERSION);
    /* A version that is not a uint is malformed, not another version. */
    assert_int_equal(t_decode_status(T_LIT("\x93\xa1\x31\x08\x00")), DXB_EPROTO);
}

static void
test_decode_refuses_unknown_type(void **state)
{
    (void)state;
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x00\x00")), DXB_ETYPE);
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0d\x00")), DXB_ETYPE);
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x63\x00")), DXB_ETYPE);
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x30\x00")), DXB_ETYPE); /* 48 */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\xcd\x01\x00\x00")), DXB_ETYPE);
}

static void
test_decode_refuses_reserved_types(void **state)
{
    (void)state;
    static const uint8_t reserved[] = {20, 25, 29, 30, 35, 39, 54, 55, 59};
    for (size_t i = 0; i < sizeof(reserved); i++) {
        uint8_t b[4] = {0x93, 0x01, reserved[i], 0x00};
        assert_int_equal(t_decode_status(b, sizeof(b)), DXB_ETYPE);
    }
}

static void
test_decode_refuses_wrong_element_count(void **state)
{
    (void)state;
    /* PING with an extra element, and with none. */
    assert_int_equal(t_decode_status(T_LIT("\x94\x01\x08\x00\x00")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x92\x01\x08")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x91\x01")), DXB_EPROTO);
    /* HELLO missing heartbeat_ms. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    t_pk_frame_start(&sb, &pk, DXB_T_HELLO, 3);
    t_pk_str(&pk, "sq.hrss");
    t_pk_str(&pk, "dxb");
    t_pk_uint(&pk, 1);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* A HEADER with 11 fields. */
    t_hdr_t h = t_hdr_default();
    h.n_fields = 11;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
}

static void
test_decode_refuses_wrong_field_type(void **state)
{
    (void)state;
    /* PING t_ms as str, as negative int, as float. */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x08\xa1\x31")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x08\xff")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x08\xca\x00\x00\x00\x00")), DXB_EPROTO);
    /* HELLO node as bin instead of str. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    t_pk_frame_start(&sb, &pk, DXB_T_HELLO, 4);
    t_pk_bin(&pk, "sq.hrss", 7);
    t_pk_str(&pk, "dxb");
    t_pk_uint(&pk, 1);
    t_pk_uint(&pk, 1);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* BYE reason as nil. */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0c\xc0")), DXB_EPROTO);
}

static void
test_decode_refuses_every_truncation_of_a_publish(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    t_build(t_build_publish, &sb);
    for (size_t cut = 0; cut < sb.size; cut++) {
        dxb_err_t err = t_decode_status(sb.data, cut);
        if (err != DXB_EPROTO) {
            fail_msg("prefix of %zu bytes: got %d", cut, (int)err);
        }
    }
    assert_int_equal(t_decode_status(sb.data, sb.size), DXB_OK);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_decode_refuses_every_truncation_of_every_vector(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(s_vectors) / sizeof(s_vectors[0]); i++) {
        if (atoi(s_vectors[i].file) == 0) {
            continue;
        }
        msgpack_sbuffer sb;
        t_build(s_vectors[i].build, &sb);
        for (size_t cut = 0; cut < sb.size; cut++) {
            assert_int_equal(t_decode_status(sb.data, cut), DXB_EPROTO);
        }
        msgpack_sbuffer_destroy(&sb);
    }
}

static void
test_decode_refuses_declared_length_over_actual(void **state)
{
    (void)state;
    /* BYE reason declares 5 bytes, has 2. */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0c\xa5\x61\x62")), DXB_EPROTO);
    /* API_ACK msg_id bin32 declaring 4 GiB. */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x2c\xc6\xff\xff\xff\xff\x00")), DXB_EPROTO);
}

static void
test_decode_refuses_array32_and_map32_with_huge_count(void **state)
{
    (void)state;
    assert_int_equal(t_decode_status(T_LIT("\xdd\xff\xff\xff\xff")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\xdf\xff\xff\xff\xff")), DXB_EPROTO);
    /* Inside a PUBLISH: the envelope list claims 2^32-1 entries. */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x03\xdd\xff\xff\xff\xff\x90")), DXB_EPROTO);
    /* Inside an admin reply: the result table claims 2^32-1 rows. */
    assert_int_equal(t_decode_status(T_LIT("\x95\x01\x65\x00\xa0\xdd\xff\xff\xff\xff")),
                     DXB_EPROTO);
}

static void
test_decode_refuses_100000_levels_of_nesting_without_recursing(void **state)
{
    (void)state;
    size_t n = 100000;
    uint8_t *b = malloc(n);
    assert_non_null(b);
    memset(b, 0x91, n);
    assert_int_equal(t_decode_status(b, n), DXB_EPROTO);
    /* Also as the body of an admin result. */
    memcpy(b, "\x95\x01\x65\x00\xa0", 5);
    assert_int_equal(t_decode_status(b, n), DXB_EPROTO);
    free(b);
}

static void
test_decode_refuses_trailing_bytes(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    char detail[128];
    dxb_frame_t f;
    t_build(t_build_ping, &sb);
    assert_int_equal(msgpack_sbuffer_write(&sb, "\x00", 1), 0);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    assert_int_equal(
        dxb_msg_decode((const uint8_t *)sb.data, sb.size, T_MAX, &f, detail, sizeof(detail)),
        DXB_EPROTO);
    assert_string_equal(detail, "frame: trailing bytes");
    msgpack_sbuffer_destroy(&sb);
}

static void
test_decode_refuses_bad_ids(void **state)
{
    (void)state;
    char long_id[66];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    assert_int_equal(t_hello_status("SQ.hrss"), DXB_EPROTO);
    assert_int_equal(t_hello_status(""), DXB_EPROTO);
    assert_int_equal(t_hello_status(long_id), DXB_EPROTO);
    assert_int_equal(t_hello_status("a..b"), DXB_EPROTO);
    assert_int_equal(t_hello_status(".a"), DXB_EPROTO);
    assert_int_equal(t_hello_status("a."), DXB_EPROTO);
    assert_int_equal(t_hello_status("a b"), DXB_EPROTO);
    long_id[64] = '\0';
    assert_int_equal(t_hello_status(long_id), DXB_OK);

    t_hdr_t h = t_hdr_default();
    h.sender = "Sq.hrss";
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h = t_hdr_default();
    h.dataset = "";
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h = t_hdr_default();
    h.recipient = "a..b";
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
}

static void
test_encoders_refuse_bad_ids(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_msg_enc_hello(&sb, "SQ", "dxb", 1, 1), DXB_EINVAL);
    assert_int_equal(dxb_msg_enc_welcome(&sb, "sq", "a..b", 1, 1, 1), DXB_EINVAL);
    assert_int_equal(dxb_msg_enc_api_subscribe(&sb, 1, "Bad"), DXB_EINVAL);
    dxb_header_in_t h;
    t_header_in(&h);
    h.region = "32130";
    assert_int_equal(dxb_msg_enc_header(&sb, &h), DXB_EINVAL);
    t_header_in(&h);
    h.flags = 1u << 5;
    assert_int_equal(dxb_msg_enc_header(&sb, &h), DXB_EINVAL);
    /* A refused call appends nothing. */
    assert_int_equal(sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_decode_refuses_bad_region(void **state)
{
    (void)state;
    static const char *const bad[] = {"32130", "3213000", "32130a", "32 300", " "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t_hdr_t h = t_hdr_default();
        h.region = bad[i];
        assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    }
    t_hdr_t h = t_hdr_default();
    h.region = "321322";
    assert_int_equal(t_publish_status(&h, 1), DXB_OK);
}

static void
test_decode_refuses_msg_id_of_15_bytes(void **state)
{
    (void)state;
    t_hdr_t h = t_hdr_default();
    h.msg_id_len = 15;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h.msg_id_len = 17;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    /* API_ACK msg_id of 15 bytes. */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x2c\xc4\x0f"
                                           "012345678901234")),
                     DXB_EPROTO);
}

static void
test_decode_refuses_body_len_mismatch(void **state)
{
    (void)state;
    t_hdr_t h = t_hdr_default();
    h.body_len = T_BODY_LEN + 1;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h.body_len = T_BODY_LEN - 1;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
}

static void
test_decode_refuses_257_recipients(void **state)
{
    (void)state;
    t_hdr_t h = t_hdr_default();
    h.n_recipients = 256;
    assert_int_equal(t_publish_status(&h, 1), DXB_OK);
    h.n_recipients = 257;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h.n_recipients = 0;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
}

static void
test_decode_refuses_empty_and_oversize_batches(void **state)
{
    (void)state;
    t_hdr_t h = t_hdr_default();
    assert_int_equal(t_publish_status(&h, 0), DXB_EPROTO);
    assert_int_equal(t_publish_status(&h, 1025), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x04\x90")), DXB_EPROTO); /* PUBACK [] */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x06\x90")), DXB_EPROTO); /* DACK [] */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_msg_enc_results(&sb, DXB_T_PUBACK, NULL, 0), DXB_EINVAL);
    assert_int_equal(dxb_msg_enc_envs(&sb, DXB_T_PUBLISH, NULL, 0), DXB_EINVAL);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_decode_refuses_reserved_flag_bits(void **state)
{
    (void)state;
    t_hdr_t h = t_hdr_default();
    h.flags = 1u << 5;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h.flags = 1u << 31;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h.flags = 1u; /* bit 0, chunked: reserved but allowed */
    assert_int_equal(t_publish_status(&h, 1), DXB_OK);
}

static void
test_decode_refuses_kind_seq_and_suite_out_of_range(void **state)
{
    (void)state;
    t_hdr_t h = t_hdr_default();
    h.kind = 0;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h.kind = 6;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h.kind = 5;
    assert_int_equal(t_publish_status(&h, 1), DXB_OK);
    h = t_hdr_default();
    h.seq = 0;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h = t_hdr_default();
    h.suite = 0;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h.suite = 256;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
    h = t_hdr_default();
    h.ttl_s = 1ull << 32;
    assert_int_equal(t_publish_status(&h, 1), DXB_EPROTO);
}

static void
test_decode_refuses_frame_over_max_len(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    dxb_frame_t f;
    char detail[64];
    t_build(t_build_publish, &sb);
    const uint8_t *p = (const uint8_t *)sb.data;
    assert_int_equal(dxb_msg_decode(p, sb.size, sb.size - 1, &f, detail, sizeof(detail)),
                     DXB_ETOOBIG);
    assert_int_equal(dxb_msg_decode(p, sb.size, sb.size, &f, NULL, 0), DXB_OK);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_decode_names_the_failing_envelope_and_field(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    dxb_frame_t f;
    char detail[128];
    t_hdr_t good = t_hdr_default();
    t_hdr_t bad = t_hdr_default();
    bad.dataset = "HR";
    t_pk_frame_start(&sb, &pk, DXB_T_PUBLISH, 1);
    t_pk_array(&pk, 3);
    t_pk_env(&pk, &good);
    t_pk_env(&pk, &good);
    t_pk_env(&pk, &bad);
    assert_int_equal(
        dxb_msg_decode((const uint8_t *)sb.data, sb.size, T_MAX, &f, detail, sizeof(detail)),
        DXB_EPROTO);
    assert_string_equal(detail, "envelope 2: header.dataset: invalid id");
    msgpack_sbuffer_destroy(&sb);

    bad = t_hdr_default();
    bad.recipient = "x..y";
    bad.n_recipients = 2;
    t_pk_frame_start(&sb, &pk, DXB_T_PUBLISH, 1);
    t_pk_array(&pk, 1);
    t_pk_env(&pk, &bad);
    assert_int_equal(
        dxb_msg_decode((const uint8_t *)sb.data, sb.size, T_MAX, &f, detail, sizeof(detail)),
        DXB_EPROTO);
    assert_string_equal(detail, "envelope 0: header.recipients[0]: invalid id");
    msgpack_sbuffer_destroy(&sb);

    /* A tiny detail buffer is cut, not overrun. */
    assert_int_equal(dxb_msg_decode((const uint8_t *)"\x91\x02", 2, T_MAX, &f, detail, 4),
                     DXB_EVERSION);
    assert_string_equal(detail, "ver");
}

static void
test_decode_refuses_invalid_utf8_and_nul_in_text(void **state)
{
    (void)state;
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0c\xa2\xc3\x28")), DXB_EPROTO); /* bad seq */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0c\xa2\x61\x00")), DXB_EPROTO); /* NUL */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0c\xa2\xc0\x80")), DXB_EPROTO); /* overlong */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0c\xa3\xed\xa0\x80")), DXB_EPROTO); /* D800 */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0c\xa3\xe4\xb8\xad")), DXB_OK);     /* 中 */
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0c\xa4\xf0\x9f\x98\x80")), DXB_OK);
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0c\xa4\xf4\x90\x80\x80")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0c\xa2\xe4\xb8")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x0c\xa1\xff")), DXB_EPROTO);
}

static void
test_decode_refuses_text_over_its_limit(void **state)
{
    (void)state;
    char text[600];
    memset(text, 'a', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    msgpack_sbuffer sb;
    msgpack_packer pk;
    t_pk_frame_start(&sb, &pk, DXB_T_BYE, 1);
    t_pk_str(&pk, text);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* HELLO software over 64 bytes. */
    text[65] = '\0';
    t_pk_frame_start(&sb, &pk, DXB_T_HELLO, 4);
    t_pk_str(&pk, "sq.hrss");
    t_pk_str(&pk, text);
    t_pk_uint(&pk, 1);
    t_pk_uint(&pk, 1);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_decode_refuses_credit_outside_1_to_65536(void **state)
{
    (void)state;
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x07\x00")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x07\xce\x00\x01\x00\x01")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x93\x01\x07\xce\x00\x01\x00\x00")), DXB_OK);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_msg_enc_credit(&sb, 0), DXB_EINVAL);
    assert_int_equal(dxb_msg_enc_credit(&sb, 65537), DXB_EINVAL);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_decode_refuses_error_ref_not_0_or_16_bytes(void **state)
{
    (void)state;
    assert_int_equal(t_decode_status(T_LIT("\x95\x01\x0a\x01\xc4\x01\x00\xa0")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x95\x01\x0a\x01\xc4\x00\xa0")), DXB_OK);
}

static void
test_decode_refuses_bad_nodeinfo(void **state)
{
    (void)state;
    uint8_t pk32[32] = {0};
    static const struct {
        const char *region;
        uint64_t level;
        uint64_t clearance;
        size_t pk_len;
        dxb_err_t want;
    } cases[] = {
        {"321300", 4, 3, 32, DXB_OK},     {"", 4, 3, 32, DXB_EPROTO},
        {"321300", 0, 3, 32, DXB_EPROTO}, {"321300", 5, 3, 32, DXB_EPROTO},
        {"321300", 4, 4, 32, DXB_EPROTO}, {"321300", 4, 3, 31, DXB_EPROTO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        t_pk_frame_start(&sb, &pk, DXB_T_DIRECTORY, 1);
        t_pk_array(&pk, 1);
        t_pk_array(&pk, 6);
        t_pk_str(&pk, "sq.hrss");
        t_pk_str(&pk, cases[i].region);
        t_pk_uint(&pk, cases[i].level);
        t_pk_uint(&pk, cases[i].clearance);
        t_pk_bin(&pk, pk32, 32);
        t_pk_bin(&pk, pk32, cases[i].pk_len);
        assert_int_equal(t_decode_sbuf_status(&sb), cases[i].want);
        msgpack_sbuffer_destroy(&sb);
    }
}

static dxb_err_t
t_api_publish_status(const char *name)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    t_pk_frame_start(&sb, &pk, DXB_T_API_PUBLISH, 6);
    t_pk_uint(&pk, 1);
    t_pk_str(&pk, "hr.employees");
    t_pk_array(&pk, 1);
    t_pk_str(&pk, "sq.mca");
    t_pk_str(&pk, name);
    t_pk_bin(&pk, "x", 1);
    t_pk_uint(&pk, 0);
    dxb_err_t err = t_decode_sbuf_status(&sb);
    msgpack_sbuffer_destroy(&sb);
    return err;
}

static void
test_decode_refuses_unsafe_api_file_names(void **state)
{
    (void)state;
    char long_name[202];
    memset(long_name, 'n', 201);
    long_name[201] = '\0';
    assert_int_equal(t_api_publish_status("report.csv"), DXB_OK);
    assert_int_equal(t_api_publish_status("../etc/passwd"), DXB_EPROTO);
    assert_int_equal(t_api_publish_status(".hidden"), DXB_EPROTO);
    assert_int_equal(t_api_publish_status("a/b"), DXB_EPROTO);
    assert_int_equal(t_api_publish_status(""), DXB_EPROTO);
    assert_int_equal(t_api_publish_status("tab\there"), DXB_EPROTO);
    assert_int_equal(t_api_publish_status(long_name), DXB_EPROTO);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(
        dxb_msg_enc_api_publish(&sb, 1, "hr", T_RCPTS, 1, t_cbytes(".x"), t_cbytes("p"), 0),
        DXB_EINVAL);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_decode_refuses_bad_api_subscribe_dataset(void **state)
{
    (void)state;
    assert_int_equal(t_decode_status(T_LIT("\x94\x01\x2a\x01\xa0")), DXB_OK);
    assert_int_equal(t_decode_status(T_LIT("\x94\x01\x2a\x01\xa2hr")), DXB_OK);
    assert_int_equal(t_decode_status(T_LIT("\x94\x01\x2a\x01\xa2HR")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x94\x01\x2a\x01\xa1.")), DXB_EPROTO);
}

static dxb_err_t
t_admin_req_status(const char *command, size_t n_args, const char *arg)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    t_pk_frame_start(&sb, &pk, DXB_T_ADMIN_REQ, 2);
    t_pk_str(&pk, command);
    t_pk_array(&pk, n_args);
    for (size_t i = 0; i < n_args; i++) {
        t_pk_str(&pk, arg);
    }
    dxb_err_t err = t_decode_sbuf_status(&sb);
    msgpack_sbuffer_destroy(&sb);
    return err;
}

static void
test_decode_refuses_bad_admin_requests(void **state)
{
    (void)state;
    char arg[258];
    memset(arg, 'a', 257);
    arg[257] = '\0';
    assert_int_equal(t_admin_req_status("dlq.list", 16, "x"), DXB_OK);
    assert_int_equal(t_admin_req_status("dlq.list", 17, "x"), DXB_EPROTO);
    assert_int_equal(t_admin_req_status("Nodes", 0, "x"), DXB_EPROTO);
    assert_int_equal(t_admin_req_status("", 0, "x"), DXB_EPROTO);
    assert_int_equal(t_admin_req_status("node_s", 0, "x"), DXB_EPROTO);
    assert_int_equal(t_admin_req_status("abcdefghijklmnopqrstuvwxyzabcdefg", 0, "x"), DXB_EPROTO);
    assert_int_equal(t_admin_req_status("peek", 1, arg), DXB_EPROTO);
    arg[256] = '\0';
    assert_int_equal(t_admin_req_status("peek", 1, arg), DXB_OK);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_msg_enc_admin_req(&sb, "Peek", NULL, 0), DXB_EINVAL);
    msgpack_sbuffer_destroy(&sb);
}

/* ADMIN_REP whose result is one row {key: <value packed by fn>}. */
static dxb_err_t
t_admin_rep_status(const char *key, void (*value)(msgpack_packer *pk))
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    t_pk_frame_start(&sb, &pk, DXB_T_ADMIN_REP, 3);
    t_pk_uint(&pk, 0);
    t_pk_str(&pk, "");
    t_pk_array(&pk, 1);
    assert_int_equal(msgpack_pack_map(&pk, 1), 0);
    t_pk_str(&pk, key);
    value(&pk);
    dxb_err_t err = t_decode_sbuf_status(&sb);
    msgpack_sbuffer_destroy(&sb);
    return err;
}

static void
t_value_array(msgpack_packer *pk)
{
    t_pk_array(pk, 0);
}

static void
t_value_bin(msgpack_packer *pk)
{
    t_pk_bin(pk, "x", 1);
}

static void
t_value_int(msgpack_packer *pk)
{
    assert_int_equal(msgpack_pack_int64(pk, INT64_MIN), 0);
}

static void
t_value_long_str(msgpack_packer *pk)
{
    static char s[4098];
    memset(s, 's', 4097);
    t_pk_str(pk, s);
}

static void
test_decode_refuses_bad_admin_results(void **state)
{
    (void)state;
    char key[66];
    memset(key, 'k', 65);
    key[65] = '\0';
    assert_int_equal(t_admin_rep_status("k", t_value_int), DXB_OK);
    assert_int_equal(t_admin_rep_status("k", t_value_array), DXB_EPROTO);
    assert_int_equal(t_admin_rep_status("k", t_value_bin), DXB_EPROTO);
    assert_int_equal(t_admin_rep_status("k", t_value_long_str), DXB_EPROTO);
    assert_int_equal(t_admin_rep_status(key, t_value_int), DXB_EPROTO);
    /* A result that is neither nil nor an array, and a row that is not a map. */
    assert_int_equal(t_decode_status(T_LIT("\x95\x01\x65\x00\xa0\x01")), DXB_EPROTO);
    assert_int_equal(t_decode_status(T_LIT("\x95\x01\x65\x00\xa0\x91\x01")), DXB_EPROTO);
    /* A map key that is not a str. */
    assert_int_equal(t_decode_status(T_LIT("\x95\x01\x65\x00\xa0\x91\x81\x01\x01")), DXB_EPROTO);
}

static void
test_standalone_envelope_refuses_trailing_bytes_and_bad_fields(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    dxb_env_t e;
    char detail[96];
    t_build(t_build_env, &sb);
    assert_int_equal(msgpack_sbuffer_write(&sb, "\xc0", 1), 0);
    assert_int_equal(dxb_msg_decode_env((const uint8_t *)sb.data, sb.size, &e, NULL, 0),
                     DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);

    msgpack_packer pk;
    t_hdr_t h = t_hdr_default();
    h.msg_id_len = 15;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    t_pk_env(&pk, &h);
    assert_int_equal(
        dxb_msg_decode_env((const uint8_t *)sb.data, sb.size, &e, detail, sizeof(detail)),
        DXB_EPROTO);
    assert_string_equal(detail, "header.msg_id: wrong length");
    msgpack_sbuffer_destroy(&sb);
}

static void
test_encoders_refuse_envelopes_that_would_not_decode(void **state)
{
    (void)state;
    msgpack_sbuffer hb;
    msgpack_sbuffer sb;
    dxb_header_in_t h;
    t_header_in(&h);
    msgpack_sbuffer_init(&hb);
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_msg_enc_header(&hb, &h), DXB_OK);
    /* body_len in the header is 11; a 3-byte body does not match. */
    assert_int_equal(dxb_msg_enc_env(&sb, t_bytes(hb.data, hb.size), T_BODY_HASH, t_cbytes("abc")),
                     DXB_EINVAL);
    dxb_bytes_t junk = t_cbytes("\x93\x01\x02");
    assert_int_equal(dxb_msg_enc_envs(&sb, DXB_T_PUBLISH, &junk, 1), DXB_EINVAL);
    assert_int_equal(dxb_msg_enc_envs(&sb, DXB_T_PING, &junk, 1), DXB_EINVAL);
    assert_int_equal(sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&hb);
}

static void
test_body1_decode_refuses_malformed_bodies(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    dxb_body1_t b;
    t_build(t_build_body1, &sb);
    for (size_t cut = 0; cut < sb.size; cut++) {
        assert_int_equal(dxb_msg_decode_body1((const uint8_t *)sb.data, cut, &b), DXB_EPROTO);
    }
    assert_int_equal(msgpack_sbuffer_write(&sb, "\x00", 1), 0);
    assert_int_equal(dxb_msg_decode_body1((const uint8_t *)sb.data, sb.size, &b), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);

    /* A wrapped key of 79 bytes, and an empty wraps list. */
    uint8_t buf[80] = {0};
    msgpack_packer pk;
    for (int variant = 0; variant < 2; variant++) {
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        t_pk_array(&pk, 4);
        t_pk_bin(&pk, buf, 24);
        if (variant == 0) {
            t_pk_array(&pk, 1);
            t_pk_array(&pk, 2);
            t_pk_str(&pk, "sq.mca");
            t_pk_bin(&pk, buf, 79);
        } else {
            t_pk_array(&pk, 0);
        }
        t_pk_bin(&pk, buf, 3);
        t_pk_bin(&pk, buf, 64);
        assert_int_equal(dxb_msg_decode_body1((const uint8_t *)sb.data, sb.size, &b), DXB_EPROTO);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void
test_plaintext_decode_refuses_malformed_plaintexts(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    dxb_plain_t p;
    t_build(t_build_plaintext, &sb);
    for (size_t cut = 0; cut < sb.size; cut++) {
        assert_int_equal(dxb_msg_decode_plain((const uint8_t *)sb.data, cut, &p), DXB_EPROTO);
    }
    msgpack_sbuffer_destroy(&sb);

    char ct[130];
    memset(ct, 'c', 129);
    ct[129] = '\0';
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    t_pk_array(&pk, 3);
    t_pk_str(&pk, "a.csv");
    t_pk_str(&pk, ct);
    t_pk_bin(&pk, "x", 1);
    assert_int_equal(dxb_msg_decode_plain((const uint8_t *)sb.data, sb.size, &p), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_msg_enc_plain(&sb, t_cbytes("../a"), "", t_cbytes("x")), DXB_EINVAL);
    assert_int_equal(dxb_msg_enc_plain(&sb, t_cbytes("a"), ct, t_cbytes("x")), DXB_EINVAL);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- API streams (types 45-47) --------------------------------------------- */

#define T_BIG_SIZE 5368709120ull /* 5 GiB: the size and offsets need 64 bits */
static const uint8_t T_HASH[32] = {0xb2, 0xb2, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                   0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
                                   0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16,
                                   0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0xff};

static void
t_build_api_stream_begin(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_api_stream_begin(sb, 11, "hr.employees", T_RCPTS, 2,
                                                  t_cbytes("base.bin"), T_BIG_SIZE, 3600),
                     DXB_OK);
}

static void
t_build_api_stream_data(msgpack_sbuffer *sb)
{
    assert_int_equal(
        dxb_msg_enc_api_stream_data(sb, 11, T_BIG_SIZE - 4, t_cbytes(T_PAYLOAD)), DXB_OK);
}

static void
t_build_api_stream_end(msgpack_sbuffer *sb)
{
    assert_int_equal(dxb_msg_enc_api_stream_end(sb, 11, T_HASH), DXB_OK);
}

/* Decodes with a limit that admits the largest DATA frame. */
static dxb_err_t
t_decode_big_status(const msgpack_sbuffer *sb)
{
    dxb_frame_t f;
    return dxb_msg_decode((const uint8_t *)sb->data, sb->size, 2 * DXB_MAX_STREAM_DATA, &f, NULL,
                          0);
}

static void
test_api_stream_begin_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    dxb_iter_t it;
    char id[DXB_ID_CAP];
    uint8_t *copy = t_round_trip(t_build_api_stream_begin, DXB_T_API_STREAM_BEGIN, &f);
    assert_int_equal(f.u.api_stream_begin.req, 11);
    assert_string_equal(f.u.api_stream_begin.dataset, "hr.employees");
    assert_int_equal(f.u.api_stream_begin.n_recipients, 2);
    dxb_msg_recipients_begin(f.u.api_stream_begin.recipients, f.u.api_stream_begin.n_recipients,
                             &it);
    assert_true(dxb_msg_next_recipient(&it, id));
    assert_string_equal(id, "sq.mca");
    assert_true(dxb_msg_next_recipient(&it, id));
    assert_string_equal(id, "js.province");
    assert_false(dxb_msg_next_recipient(&it, id));
    t_assert_bytes(f.u.api_stream_begin.name, "base.bin", 8);
    assert_true(f.u.api_stream_begin.size == T_BIG_SIZE);
    assert_int_equal(f.u.api_stream_begin.ttl_s, 3600);
    free(copy);
}

static void
test_api_stream_data_round_trips_up_to_4_mib(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_api_stream_data, DXB_T_API_STREAM_DATA, &f);
    assert_int_equal(f.u.api_stream_data.req, 11);
    assert_true(f.u.api_stream_data.offset == T_BIG_SIZE - 4);
    t_assert_bytes(f.u.api_stream_data.data, T_PAYLOAD, strlen(T_PAYLOAD));
    free(copy);

    /* The largest DATA frame: exactly 4 MiB of data. */
    uint8_t *data = malloc(DXB_MAX_STREAM_DATA);
    assert_non_null(data);
    memset(data, 0x5c, DXB_MAX_STREAM_DATA);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(
        dxb_msg_enc_api_stream_data(&sb, 12, 0, t_bytes(data, DXB_MAX_STREAM_DATA)), DXB_OK);
    assert_int_equal(dxb_msg_decode((const uint8_t *)sb.data, sb.size, 2 * DXB_MAX_STREAM_DATA,
                                    &f, NULL, 0),
                     DXB_OK);
    assert_int_equal(f.type, DXB_T_API_STREAM_DATA);
    t_assert_bytes(f.u.api_stream_data.data, data, DXB_MAX_STREAM_DATA);
    msgpack_sbuffer_destroy(&sb);
    free(data);
}

static void
test_api_stream_end_round_trips(void **state)
{
    (void)state;
    dxb_frame_t f;
    uint8_t *copy = t_round_trip(t_build_api_stream_end, DXB_T_API_STREAM_END, &f);
    assert_int_equal(f.u.api_stream_end.req, 11);
    assert_memory_equal(f.u.api_stream_end.hash, T_HASH, 32);
    free(copy);
}

/* A BEGIN with the given name (packed as str). */
static dxb_err_t
t_stream_begin_status(const char *name)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_BEGIN, 6);
    t_pk_uint(&pk, 1);
    t_pk_str(&pk, "hr.employees");
    t_pk_array(&pk, 1);
    t_pk_str(&pk, "sq.mca");
    t_pk_str(&pk, name);
    t_pk_uint(&pk, 10);
    t_pk_uint(&pk, 0);
    dxb_err_t err = t_decode_sbuf_status(&sb);
    msgpack_sbuffer_destroy(&sb);
    return err;
}

static void
test_decode_leaves_the_stream_file_name_rule_to_the_agent(void **state)
{
    (void)state;
    char name[257];
    memset(name, 'n', 256);
    name[256] = '\0';
    assert_int_equal(t_stream_begin_status("base.bin"), DXB_OK);
    /* Unsafe but well-formed: the agent answers EINVAL (PROTOCOL.md 9). */
    assert_int_equal(t_stream_begin_status("../etc/passwd"), DXB_OK);
    assert_int_equal(t_stream_begin_status(""), DXB_OK);
    name[255] = '\0';
    assert_int_equal(t_stream_begin_status(name), DXB_OK);
    /* Over the field's limit, or not text: malformed. */
    name[255] = 'n';
    assert_int_equal(t_stream_begin_status(name), DXB_EPROTO);
    assert_int_equal(t_stream_begin_status("bad\xff.bin"), DXB_EPROTO);
}

static void
test_decode_refuses_api_stream_fields_of_the_wrong_type(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    /* BEGIN: name as bin. */
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_BEGIN, 6);
    t_pk_uint(&pk, 1);
    t_pk_str(&pk, "hr.employees");
    t_pk_array(&pk, 1);
    t_pk_str(&pk, "sq.mca");
    t_pk_bin(&pk, "a.bin", 5);
    t_pk_uint(&pk, 10);
    t_pk_uint(&pk, 0);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* BEGIN: size negative. */
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_BEGIN, 6);
    t_pk_uint(&pk, 1);
    t_pk_str(&pk, "hr.employees");
    t_pk_array(&pk, 1);
    t_pk_str(&pk, "sq.mca");
    t_pk_str(&pk, "a.bin");
    assert_int_equal(msgpack_pack_int64(&pk, -1), 0);
    t_pk_uint(&pk, 0);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* BEGIN: no recipients, and a bad dataset id. */
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_BEGIN, 6);
    t_pk_uint(&pk, 1);
    t_pk_str(&pk, "hr.employees");
    t_pk_array(&pk, 0);
    t_pk_str(&pk, "a.bin");
    t_pk_uint(&pk, 10);
    t_pk_uint(&pk, 0);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_BEGIN, 6);
    t_pk_uint(&pk, 1);
    t_pk_str(&pk, "HR");
    t_pk_array(&pk, 1);
    t_pk_str(&pk, "sq.mca");
    t_pk_str(&pk, "a.bin");
    t_pk_uint(&pk, 10);
    t_pk_uint(&pk, 0);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* DATA: data as str, offset as bin, req over 32 bits. */
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_DATA, 3);
    t_pk_uint(&pk, 1);
    t_pk_uint(&pk, 0);
    t_pk_str(&pk, "data");
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_DATA, 3);
    t_pk_uint(&pk, 1);
    t_pk_bin(&pk, "\x00", 1);
    t_pk_bin(&pk, "data", 4);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_DATA, 3);
    t_pk_uint(&pk, 1ull << 32);
    t_pk_uint(&pk, 0);
    t_pk_bin(&pk, "data", 4);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* END: hash as str, and of 31 and 33 bytes. */
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_END, 2);
    t_pk_uint(&pk, 1);
    t_pk_str(&pk, "0123456789abcdef0123456789abcdef");
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    uint8_t h33[33] = {0};
    for (size_t n = 31; n <= 33; n += 2) {
        t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_END, 2);
        t_pk_uint(&pk, 1);
        t_pk_bin(&pk, h33, n);
        assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void
test_decode_refuses_empty_and_oversize_stream_data(void **state)
{
    (void)state;
    uint8_t *data = calloc(1, DXB_MAX_STREAM_DATA + 1);
    assert_non_null(data);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_DATA, 3);
    t_pk_uint(&pk, 1);
    t_pk_uint(&pk, 0);
    t_pk_bin(&pk, data, 0);
    assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_DATA, 3);
    t_pk_uint(&pk, 1);
    t_pk_uint(&pk, 0);
    t_pk_bin(&pk, data, DXB_MAX_STREAM_DATA);
    assert_int_equal(t_decode_big_status(&sb), DXB_OK);
    msgpack_sbuffer_destroy(&sb);
    /* One byte more, in a frame the caller's limit would admit. */
    t_pk_frame_start(&sb, &pk, DXB_T_API_STREAM_DATA, 3);
    t_pk_uint(&pk, 1);
    t_pk_uint(&pk, 0);
    t_pk_bin(&pk, data, DXB_MAX_STREAM_DATA + 1);
    assert_int_equal(t_decode_big_status(&sb), DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    free(data);
}

static void
test_decode_refuses_api_stream_frames_with_trailing_or_missing_parts(void **state)
{
    (void)state;
    void (*builders[])(msgpack_sbuffer *) = {t_build_api_stream_begin, t_build_api_stream_data,
                                             t_build_api_stream_end};
    for (size_t i = 0; i < sizeof(builders) / sizeof(builders[0]); i++) {
        msgpack_sbuffer sb;
        t_build(builders[i], &sb);
        /* Every truncation. */
        for (size_t cut = 0; cut < sb.size; cut++) {
            assert_int_equal(t_decode_status(sb.data, cut), DXB_EPROTO);
        }
        /* A byte after the array. */
        assert_int_equal(msgpack_sbuffer_write(&sb, "\x00", 1), 0);
        assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
        /* One element more than the type defines (array header 0x9N + 1). */
        sb.size--;
        ((uint8_t *)sb.data)[0]++;
        assert_int_equal(msgpack_sbuffer_write(&sb, "\x00", 1), 0);
        assert_int_equal(t_decode_sbuf_status(&sb), DXB_EPROTO);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void
test_encoders_refuse_bad_api_stream_arguments(void **state)
{
    (void)state;
    char name[257];
    memset(name, 'n', 256);
    name[256] = '\0';
    uint8_t *data = calloc(1, DXB_MAX_STREAM_DATA + 1);
    assert_non_null(data);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(
        dxb_msg_enc_api_stream_begin(&sb, 1, "hr", T_RCPTS, 0, t_cbytes("a"), 1, 0), DXB_EINVAL);
    assert_int_equal(
        dxb_msg_enc_api_stream_begin(&sb, 1, "HR", T_RCPTS, 1, t_cbytes("a"), 1, 0), DXB_EINVAL);
    assert_int_equal(
        dxb_msg_enc_api_stream_begin(&sb, 1, "hr", T_RCPTS, 1, t_cbytes(name), 1, 0), DXB_EINVAL);
    assert_int_equal(
        dxb_msg_enc_api_stream_begin(&sb, 1, "hr", T_RCPTS, 1, t_cbytes("a\xc3"), 1, 0),
        DXB_EINVAL);
    assert_int_equal(dxb_msg_enc_api_stream_data(&sb, 1, 0, t_bytes(data, 0)), DXB_EINVAL);
    assert_int_equal(
        dxb_msg_enc_api_stream_data(&sb, 1, 0, t_bytes(data, DXB_MAX_STREAM_DATA + 1)),
        DXB_EINVAL);
    assert_int_equal(dxb_msg_enc_api_stream_end(&sb, 1, NULL), DXB_EINVAL);
    /* A refused call appends nothing. */
    assert_int_equal(sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
    free(data);
}

/* ---- error mapping ---------------------------------------------------------- */

static void
test_wire_codes_round_trip_through_local_codes(void **state)
{
    (void)state;
    for (uint16_t code = 0; code <= DXB_W_EINVAL; code++) {
        assert_int_equal(dxb_err_to_wire(dxb_err_from_wire(code)), code);
        assert_string_equal(dxb_wire_err_name(code), dxb_err_name(dxb_err_from_wire(code)));
    }
    assert_string_equal(dxb_wire_err_name(DXB_W_EFULL), "EFULL");
}

static void
test_local_only_codes_map_to_documented_wire_codes(void **state)
{
    (void)state;
    assert_int_equal(dxb_err_to_wire(DXB_ENOMEM), DXB_W_EINTERNAL);
    assert_int_equal(dxb_err_to_wire(DXB_ETIMEOUT), DXB_W_EINTERNAL);
    assert_int_equal(dxb_err_to_wire(DXB_ECONFIG), DXB_W_EINTERNAL);
    assert_int_equal(dxb_err_to_wire(DXB_EEXIST), DXB_W_EINVAL);
    assert_int_equal(dxb_err_to_wire(DXB_ERR_COUNT), DXB_W_EINTERNAL);
}

static void
test_unknown_wire_codes_are_named_and_mapped_safely(void **state)
{
    (void)state;
    assert_string_equal(dxb_wire_err_name(19), "E?");
    assert_string_equal(dxb_wire_err_name(UINT16_MAX), "E?");
    assert_int_equal(dxb_err_from_wire(19), DXB_EINTERNAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_round_trips),
        cmocka_unit_test(test_welcome_round_trips),
        cmocka_unit_test(test_publish_round_trips),
        cmocka_unit_test(test_deliver_round_trips),
        cmocka_unit_test(test_standalone_envelope_round_trips),
        cmocka_unit_test(test_puback_round_trips),
        cmocka_unit_test(test_dack_round_trips),
        cmocka_unit_test(test_credit_ping_pong_round_trip),
        cmocka_unit_test(test_error_round_trips),
        cmocka_unit_test(test_error_without_ref_encodes_empty_ref),
        cmocka_unit_test(test_error_text_is_cut_at_512_bytes_on_a_character_boundary),
        cmocka_unit_test(test_directory_round_trips),
        cmocka_unit_test(test_empty_directory_round_trips),
        cmocka_unit_test(test_bye_round_trips),
        cmocka_unit_test(test_api_publish_round_trips),
        cmocka_unit_test(test_api_result_round_trips),
        cmocka_unit_test(test_api_subscribe_round_trips_with_all_and_with_a_dataset),
        cmocka_unit_test(test_api_message_round_trips),
        cmocka_unit_test(test_api_ack_round_trips),
        cmocka_unit_test(test_admin_req_round_trips),
        cmocka_unit_test(test_admin_rep_round_trips_with_result_table),
        cmocka_unit_test(test_admin_rep_round_trips_with_nil_result),
        cmocka_unit_test(test_body1_round_trips_and_finds_each_wrap),
        cmocka_unit_test(test_plaintext_round_trips),
        cmocka_unit_test(test_encoders_reproduce_golden_vectors),
        cmocka_unit_test(test_golden_frame_vectors_decode),
        cmocka_unit_test(test_raw_publish_builder_is_valid),
        cmocka_unit_test(test_decode_refuses_empty_input),
        cmocka_unit_test(test_decode_refuses_single_byte),
        cmocka_unit_test(test_decode_refuses_non_array_frame),
        cmocka_unit_test(test_decode_refuses_wrong_version),
        cmocka_unit_test(test_decode_refuses_unknown_type),
        cmocka_unit_test(test_decode_refuses_reserved_types),
        cmocka_unit_test(test_decode_refuses_wrong_element_count),
        cmocka_unit_test(test_decode_refuses_wrong_field_type),
        cmocka_unit_test(test_decode_refuses_every_truncation_of_a_publish),
        cmocka_unit_test(test_decode_refuses_every_truncation_of_every_vector),
        cmocka_unit_test(test_decode_refuses_declared_length_over_actual),
        cmocka_unit_test(test_decode_refuses_array32_and_map32_with_huge_count),
        cmocka_unit_test(test_decode_refuses_100000_levels_of_nesting_without_recursing),
        cmocka_unit_test(test_decode_refuses_trailing_bytes),
        cmocka_unit_test(test_decode_refuses_bad_ids),
        cmocka_unit_test(test_encoders_refuse_bad_ids),
        cmocka_unit_test(test_decode_refuses_bad_region),
        cmocka_unit_test(test_decode_refuses_msg_id_of_15_bytes),
        cmocka_unit_test(test_decode_refuses_body_len_mismatch),
        cmocka_unit_test(test_decode_refuses_257_recipients),
        cmocka_unit_test(test_decode_refuses_empty_and_oversize_batches),
        cmocka_unit_test(test_decode_refuses_reserved_flag_bits),
        cmocka_unit_test(test_decode_refuses_kind_seq_and_suite_out_of_range),
        cmocka_unit_test(test_decode_refuses_frame_over_max_len),
        cmocka_unit_test(test_decode_names_the_failing_envelope_and_field),
        cmocka_unit_test(test_decode_refuses_invalid_utf8_and_nul_in_text),
        cmocka_unit_test(test_decode_refuses_text_over_its_limit),
        cmocka_unit_test(test_decode_refuses_credit_outside_1_to_65536),
        cmocka_unit_test(test_decode_refuses_error_ref_not_0_or_16_bytes),
        cmocka_unit_test(test_decode_refuses_bad_nodeinfo),
        cmocka_unit_test(test_decode_refuses_unsafe_api_file_names),
        cmocka_unit_test(test_decode_refuses_bad_api_subscribe_dataset),
        cmocka_unit_test(test_decode_refuses_bad_admin_requests),
        cmocka_unit_test(test_decode_refuses_bad_admin_results),
        cmocka_unit_test(test_standalone_envelope_refuses_trailing_bytes_and_bad_fields),
        cmocka_unit_test(test_encoders_refuse_envelopes_that_would_not_decode),
        cmocka_unit_test(test_body1_decode_refuses_malformed_bodies),
        cmocka_unit_test(test_plaintext_decode_refuses_malformed_plaintexts),
        cmocka_unit_test(test_api_stream_begin_round_trips),
        cmocka_unit_test(test_api_stream_data_round_trips_up_to_4_mib),
        cmocka_unit_test(test_api_stream_end_round_trips),
        cmocka_unit_test(test_decode_leaves_the_stream_file_name_rule_to_the_agent),
        cmocka_unit_test(test_decode_refuses_api_stream_fields_of_the_wrong_type),
        cmocka_unit_test(test_decode_refuses_empty_and_oversize_stream_data),
        cmocka_unit_test(test_decode_refuses_api_stream_frames_with_trailing_or_missing_parts),
        cmocka_unit_test(test_encoders_refuse_bad_api_stream_arguments),
        cmocka_unit_test(test_wire_codes_round_trip_through_local_codes),
        cmocka_unit_test(test_local_only_codes_map_to_documented_wire_codes),
        cmocka_unit_test(test_unknown_wire_codes_are_named_and_mapped_safely),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
