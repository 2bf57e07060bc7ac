/* Unit tests for proto/dxb_seal (suite 1, PROTOCOL.md section 5): round trips
 * to one and several recipients, and every tampering a broker or a network
 * could do, each with the error the recipient must report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/dxb_keys.h"
#include "proto/dxb_msg.h"
#include "proto/dxb_seal.h"

static dxb_keypair_t s_sender;
static dxb_keypair_t s_rcpt[3];
static dxb_keypair_t s_outsider;
static const char *const s_rcpt_ids[3] = {"sq.hrss", "sq.sy.tax", "js.gov"};

static int
s_group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0 || dxb_keys_generate("sq.sender", &s_sender) != DXB_OK ||
        dxb_keys_generate("sq.outsider", &s_outsider) != DXB_OK) {
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        if (dxb_keys_generate(s_rcpt_ids[i], &s_rcpt[i]) != DXB_OK) {
            return -1;
        }
    }
    return 0;
}

/* A sealed envelope owned by the test, plus its decoded view. */
typedef struct {
    msgpack_sbuffer sbuf;
    dxb_env_t env;
} sealed_t;

static void
s_seal_to(sealed_t *s, uint16_t n_rcpt, const char *payload, uint64_t seq)
{
    uint8_t msg_id[DXB_MSGID_BYTES];
    uint8_t box_pks[3][32];
    randombytes_buf(msg_id, sizeof(msg_id));
    for (uint16_t i = 0; i < n_rcpt; i++) {
        memcpy(box_pks[i], s_rcpt[i].box_pk, 32);
    }
    dxb_header_in_t h = {
        .msg_id = msg_id,
        .sender = "sq.sender",
        .dataset = "hr.employees",
        .kind = DXB_KIND_DELIVERY,
        .seq = seq,
        .created_ms = 1700000000000u,
        .ttl_s = 3600,
        .recipients = s_rcpt_ids,
        .n_recipients = n_rcpt,
        .region = "321300",
        .suite = 99,     /* ignored: set by dxb_seal_envelope */
        .body_len = 123, /* ignored */
    };
    const char *name = "employees.csv";
    msgpack_sbuffer_init(&s->sbuf);
    assert_int_equal(dxb_seal_envelope(&s->sbuf, &s_sender, &h, (const uint8_t(*)[32])box_pks,
                                       (dxb_bytes_t){(const uint8_t *)name, strlen(name)},
                                       "text/csv",
                                       (dxb_bytes_t){(const uint8_t *)payload, strlen(payload)}),
                     DXB_OK);
    assert_int_equal(dxb_msg_decode_env((const uint8_t *)s->sbuf.data, s->sbuf.size, &s->env,
                                        NULL, 0),
                     DXB_OK);
}

static void
s_free(sealed_t *s)
{
    msgpack_sbuffer_destroy(&s->sbuf);
}

/* Opens env as `me` and, on success, checks the plaintext carries payload. */
static dxb_err_t
s_open(const dxb_env_t *env, const dxb_keypair_t *me, const uint8_t *sender_pk,
       const char *payload)
{
    uint8_t *plain = NULL;
    size_t len = 0;
    dxb_err_t err = dxb_seal_open(env, me, sender_pk, &plain, &len);
    if (err != DXB_OK) {
        assert_null(plain);
        return err;
    }
    dxb_plain_t p;
    assert_int_equal(dxb_msg_decode_plain(plain, len, &p), DXB_OK);
    assert_int_equal(p.name.len, strlen("employees.csv"));
    assert_memory_equal(p.name.ptr, "employees.csv", p.name.len);
    assert_int_equal(p.content_type.len, strlen("text/csv"));
    assert_int_equal(p.payload.len, strlen(payload));
    assert_memory_equal(p.payload.ptr, payload, p.payload.len);
    dxb_seal_free_plain(&plain, len);
    assert_null(plain);
    return DXB_OK;
}

/* Rebuilds an envelope from parts; optionally recomputes body_hash the way
 * a broker-side attacker who knows the scheme would. */
static void
s_rebuild(msgpack_sbuffer *out, dxb_bytes_t header_raw, const uint8_t *body, size_t body_len,
          const uint8_t *hash_or_null, dxb_env_t *env)
{
    uint8_t hash[DXB_HASH_BYTES];
    if (hash_or_null == NULL) {
        dxb_seal_body_hash(body, body_len, hash);
        hash_or_null = hash;
    }
    msgpack_sbuffer_init(out);
    assert_int_equal(dxb_msg_enc_env(out, header_raw, hash_or_null,
                                     (dxb_bytes_t){.ptr = body, .len = body_len}),
                     DXB_OK);
    assert_int_equal(dxb_msg_decode_env((const uint8_t *)out->data, out->size, env, NULL, 0),
                     DXB_OK);
}

/* Re-encodes the header of env with a different suite and body_len. */
static void
s_header_with(msgpack_sbuffer *out, const dxb_env_t *env, uint8_t suite, uint64_t body_len)
{
    char ids[DXB_MAX_RECIPIENTS][DXB_ID_CAP];
    const char *ptrs[DXB_MAX_RECIPIENTS];
    dxb_iter_t it;
    uint16_t n = 0;
    dxb_msg_recipients_begin(env->hdr.recipients, env->hdr.n_recipients, &it);
    while (dxb_msg_next_recipient(&it, ids[n])) {
        ptrs[n] = ids[n];
        n++;
    }
    dxb_header_in_t h = {
        .msg_id = env->hdr.msg_id,
        .sender = env->hdr.sender,
        .dataset = env->hdr.dataset,
        .kind = env->hdr.kind,
        .seq = env->hdr.seq,
        .created_ms = env->hdr.created_ms,
        .ttl_s = env->hdr.ttl_s,
        .recipients = ptrs,
        .n_recipients = n,
        .region = env->hdr.region,
        .suite = suite,
        .flags = env->hdr.flags,
        .body_len = body_len,
    };
    msgpack_sbuffer_init(out);
    assert_int_equal(dxb_msg_enc_header(out, &h), DXB_OK);
}

static void
test_seal_round_trip_to_one_recipient(void **state)
{
    (void)state;
    sealed_t s;
    s_seal_to(&s, 1, "id,name\n1,Zhang San\n", 1);
    assert_int_equal(s.env.hdr.suite, DXB_SUITE_SODIUM1);
    assert_int_equal(s.env.hdr.body_len, s.env.body.len);
    uint8_t hash[DXB_HASH_BYTES];
    dxb_seal_body_hash(s.env.body.ptr, s.env.body.len, hash);
    assert_memory_equal(hash, s.env.body_hash, DXB_HASH_BYTES);
    /* The broker sees no plaintext anywhere in the envelope. */
    assert_null(memmem(s.sbuf.data, s.sbuf.size, "Zhang San", 9));
    assert_null(memmem(s.sbuf.data, s.sbuf.size, "employees.csv", 13));

    assert_int_equal(s_open(&s.env, &s_rcpt[0], s_sender.sign_pk, "id,name\n1,Zhang San\n"),
                     DXB_OK);
    s_free(&s);
}

static void
test_seal_round_trip_to_three_recipients_each_can_open(void **state)
{
    (void)state;
    sealed_t s;
    s_seal_to(&s, 3, "payload for three", 7);
    assert_int_equal(s.env.hdr.n_recipients, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s_open(&s.env, &s_rcpt[i], s_sender.sign_pk, "payload for three"),
                         DXB_OK);
    }
    s_free(&s);
}

static void
test_seal_empty_payload_round_trips(void **state)
{
    (void)state;
    sealed_t s;
    s_seal_to(&s, 2, "", 1);
    assert_int_equal(s_open(&s.env, &s_rcpt[1], s_sender.sign_pk, ""), DXB_OK);
    s_free(&s);
}

static void
test_seal_large_payload_round_trips(void **state)
{
    (void)state;
    /* Over 64 KiB: the ciphertext gets a bin32 header, which body_len must
     * predict. */
    size_t len = 70000;
    char *payload = malloc(len + 1);
    assert_non_null(payload);
    memset(payload, 'x', len);
    payload[len] = '\0';
    sealed_t s;
    s_seal_to(&s, 1, payload, 1);
    assert_int_equal(s_open(&s.env, &s_rcpt[0], s_sender.sign_pk, payload), DXB_OK);
    s_free(&s);
    free(payload);
}

static void
test_seal_non_recipient_gets_not_found(void **state)
{
    (void)state;
    sealed_t s;
    s_seal_to(&s, 2, "secret", 1);
    assert_int_equal(s_open(&s.env, &s_outsider, s_sender.sign_pk, "secret"), DXB_ENOTFOUND);
    assert_int_equal(s_open(&s.env, &s_rcpt[2], s_sender.sign_pk, "secret"), DXB_ENOTFOUND);
    s_free(&s);
}

static void
test_seal_wrong_sender_key_fails_signature(void **state)
{
    (void)state;
    sealed_t s;
    s_seal_to(&s, 1, "secret", 1);
    assert_int_equal(s_open(&s.env, &s_rcpt[0], s_outsider.sign_pk, "secret"), DXB_ECRYPTO);
    s_free(&s);
}

static void
test_seal_recipient_with_wrong_box_key_fails_unwrap(void **state)
{
    (void)state;
    sealed_t s;
    s_seal_to(&s, 1, "secret", 1);
    dxb_keypair_t impostor = s_outsider;
    memcpy(impostor.node, s_rcpt[0].node, sizeof(impostor.node));
    assert_int_equal(s_open(&s.env, &impostor, s_sender.sign_pk, "secret"), DXB_ECRYPTO);
    s_free(&s);
}

/* Flips one byte of the body at offset (from the start when >= 0, from the
 * end when < 0) and opens the result with and without a recomputed hash. */
static void
s_assert_body_flip(long offset)
{
    sealed_t s;
    s_seal_to(&s, 3, "flip me", 1);
    uint8_t *body = malloc(s.env.body.len);
    assert_non_null(body);
    memcpy(body, s.env.body.ptr, s.env.body.len);
    size_t at = offset >= 0 ? (size_t)offset : s.env.body.len - (size_t)(-offset);
    body[at] ^= 0x01;

    msgpack_sbuffer out;
    dxb_env_t env;
    /* The stale hash no longer matches: the broker-level check catches it. */
    s_rebuild(&out, s.env.header_raw, body, s.env.body.len, s.env.body_hash, &env);
    assert_int_equal(s_open(&env, &s_rcpt[1], s_sender.sign_pk, "flip me"), DXB_EINTEGRITY);
    msgpack_sbuffer_destroy(&out);

    /* A forger who fixes the hash is stopped by the signature. */
    s_rebuild(&out, s.env.header_raw, body, s.env.body.len, NULL, &env);
    assert_int_equal(s_open(&env, &s_rcpt[1], s_sender.sign_pk, "flip me"), DXB_ECRYPTO);
    msgpack_sbuffer_destroy(&out);
    free(body);
    s_free(&s);
}

static void
test_seal_flipped_ciphertext_byte_is_refused(void **state)
{
    (void)state;
    /* The ciphertext ends just before the signature's 2 + 64 bytes. */
    s_assert_body_flip(-(2 + 64 + 1));
}

static void
test_seal_flipped_nonce_byte_is_refused(void **state)
{
    (void)state;
    /* fixarray, bin8 header (2 bytes), then the nonce. */
    s_assert_body_flip(3);
}

static void
test_seal_flipped_wrap_byte_is_refused(void **state)
{
    (void)state;
    /* Inside the first wrapped key: 1 + 26 (nonce) + 1 (array) + 1 (pair)
     * + 8 ("sq.hrss" as fixstr) + 2 (bin8 header) + 10. */
    s_assert_body_flip(1 + 26 + 1 + 1 + 8 + 2 + 10);
}

static void
test_seal_flipped_signature_byte_is_refused(void **state)
{
    (void)state;
    s_assert_body_flip(-1);
}

static void
test_seal_flipped_header_byte_is_refused(void **state)
{
    (void)state;
    sealed_t s;
    s_seal_to(&s, 1, "secret", 1);
    uint8_t *raw = malloc(s.sbuf.size);
    assert_non_null(raw);
    memcpy(raw, s.sbuf.data, s.sbuf.size);
    /* ENVELOPE fixarray, HEADER fixarray, bin8 header: then msg_id. */
    raw[1 + 1 + 2 + 5] ^= 0x80;
    dxb_env_t env;
    assert_int_equal(dxb_msg_decode_env(raw, s.sbuf.size, &env, NULL, 0), DXB_OK);
    /* The body hash still matches (it does not cover the header). */
    assert_int_equal(s_open(&env, &s_rcpt[0], s_sender.sign_pk, "secret"), DXB_ECRYPTO);
    free(raw);
    s_free(&s);
}

static void
test_seal_header_moved_onto_another_body_is_refused(void **state)
{
    (void)state;
    sealed_t a;
    sealed_t b;
    s_seal_to(&a, 1, "message A", 1);
    s_seal_to(&b, 1, "message B", 2);
    assert_int_equal(a.env.body.len, b.env.body.len);
    msgpack_sbuffer out;
    dxb_env_t env;
    s_rebuild(&out, a.env.header_raw, b.env.body.ptr, b.env.body.len, NULL, &env);
    assert_int_equal(s_open(&env, &s_rcpt[0], s_sender.sign_pk, "message B"), DXB_ECRYPTO);
    msgpack_sbuffer_destroy(&out);
    s_free(&a);
    s_free(&b);
}

static void
test_seal_unknown_suite_is_refused_before_anything_else(void **state)
{
    (void)state;
    sealed_t s;
    s_seal_to(&s, 1, "secret", 1);
    msgpack_sbuffer hdr;
    msgpack_sbuffer out;
    dxb_env_t env;
    s_header_with(&hdr, &s.env, 2, s.env.body.len);
    s_rebuild(&out, (dxb_bytes_t){(const uint8_t *)hdr.data, hdr.size}, s.env.body.ptr,
              s.env.body.len, NULL, &env);
    assert_int_equal(env.hdr.suite, 2);
    assert_int_equal(s_open(&env, &s_rcpt[0], s_sender.sign_pk, "secret"), DXB_ESUITE);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&hdr);
    s_free(&s);
}

static void
test_seal_truncated_body_is_refused(void **state)
{
    (void)state;
    sealed_t s;
    s_seal_to(&s, 1, "secret", 1);

    /* Length no longer matches the header: integrity. */
    dxb_env_t env = s.env;
    env.body.len -= 10;
    assert_int_equal(s_open(&env, &s_rcpt[0], s_sender.sign_pk, "secret"), DXB_EINTEGRITY);

    /* Header and hash made to agree with the cut body: it no longer parses. */
    msgpack_sbuffer hdr;
    msgpack_sbuffer out;
    size_t cut = s.env.body.len - 10;
    s_header_with(&hdr, &s.env, DXB_SUITE_SODIUM1, cut);
    s_rebuild(&out, (dxb_bytes_t){(const uint8_t *)hdr.data, hdr.size}, s.env.body.ptr, cut,
              NULL, &env);
    assert_int_equal(s_open(&env, &s_rcpt[0], s_sender.sign_pk, "secret"), DXB_EPROTO);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&hdr);
    s_free(&s);
}

static void
test_seal_envelope_refuses_bad_arguments(void **state)
{
    (void)state;
    uint8_t msg_id[DXB_MSGID_BYTES] = {1};
    uint8_t box_pks[1][32];
    memcpy(box_pks[0], s_rcpt[0].box_pk, 32);
    dxb_header_in_t h = {
        .msg_id = msg_id,
        .sender = "sq.somebody.else",
        .dataset = "hr.employees",
        .kind = DXB_KIND_DELIVERY,
        .seq = 1,
        .recipients = s_rcpt_ids,
        .n_recipients = 1,
        .region = "",
    };
    dxb_bytes_t name = {(const uint8_t *)"a.txt", 5};
    dxb_bytes_t payload = {(const uint8_t *)"x", 1};
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    /* The sender field must be the signing node. */
    assert_int_equal(dxb_seal_envelope(&out, &s_sender, &h, (const uint8_t(*)[32])box_pks, name,
                                       "", payload),
                     DXB_EINVAL);
    h.sender = "sq.sender";
    h.n_recipients = 0;
    assert_int_equal(dxb_seal_envelope(&out, &s_sender, &h, (const uint8_t(*)[32])box_pks, name,
                                       "", payload),
                     DXB_EINVAL);
    h.n_recipients = 1;
    dxb_bytes_t bad_name = {(const uint8_t *)"../x", 4};
    assert_int_equal(dxb_seal_envelope(&out, &s_sender, &h, (const uint8_t(*)[32])box_pks,
                                       bad_name, "", payload),
                     DXB_EINVAL);
    h.dataset = "Not An Id";
    assert_int_equal(dxb_seal_envelope(&out, &s_sender, &h, (const uint8_t(*)[32])box_pks, name,
                                       "", payload),
                     DXB_EINVAL);
    assert_int_equal(out.size, 0);
    msgpack_sbuffer_destroy(&out);
}

static void
test_seal_two_seals_of_same_message_differ(void **state)
{
    (void)state;
    /* Fresh K and nonce per message: equal plaintexts give unrelated bodies. */
    sealed_t a;
    sealed_t b;
    s_seal_to(&a, 1, "same", 1);
    s_seal_to(&b, 1, "same", 1);
    assert_int_equal(a.env.body.len, b.env.body.len);
    assert_memory_not_equal(a.env.body.ptr, b.env.body.ptr, a.env.body.len);
    s_free(&a);
    s_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_round_trip_to_one_recipient),
        cmocka_unit_test(test_seal_round_trip_to_three_recipients_each_can_open),
        cmocka_unit_test(test_seal_empty_payload_round_trips),
        cmocka_unit_test(test_seal_large_payload_round_trips),
        cmocka_unit_test(test_seal_non_recipient_gets_not_found),
        cmocka_unit_test(test_seal_wrong_sender_key_fails_signature),
        cmocka_unit_test(test_seal_recipient_with_wrong_box_key_fails_unwrap),
        cmocka_unit_test(test_seal_flipped_ciphertext_byte_is_refused),
        cmocka_unit_test(test_seal_flipped_nonce_byte_is_refused),
        cmocka_unit_test(test_seal_flipped_wrap_byte_is_refused),
        cmocka_unit_test(test_seal_flipped_signature_byte_is_refused),
        cmocka_unit_test(test_seal_flipped_header_byte_is_refused),
        cmocka_unit_test(test_seal_header_moved_onto_another_body_is_refused),
        cmocka_unit_test(test_seal_unknown_suite_is_refused_before_anything_else),
        cmocka_unit_test(test_seal_truncated_body_is_refused),
        cmocka_unit_test(test_seal_envelope_refuses_bad_arguments),
        cmocka_unit_test(test_seal_two_seals_of_same_message_differ),
    };
    return cmocka_run_group_tests(tests, s_group_setup, NULL);
}
