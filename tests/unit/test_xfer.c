/* Unit tests for proto/dxb_xfer (chunked transfers, PROTOCOL.md 5.1): the
 * manifest codec, chunk round trips with and without compression, and every
 * tampering the broker or another recipient could try: a flipped byte, a
 * chunk moved to another index or transfer, a header swapped, a forged last
 * chunk, a wrong count. */
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
#include "proto/dxb_xfer.h"

#define CHUNK 4096u

static dxb_keypair_t s_sender, s_other;
static const char *const s_rcpt_ids[1] = {"sq.hrss"};
static uint8_t s_xfer_id[16];

static int
s_group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0 || dxb_keys_generate("sq.sender", &s_sender) != DXB_OK ||
        dxb_keys_generate("sq.other", &s_other) != DXB_OK) {
        return -1;
    }
    randombytes_buf(s_xfer_id, sizeof(s_xfer_id));
    return 0;
}

typedef struct {
    msgpack_sbuffer sbuf;
    dxb_env_t env;
    dxb_chunk_t pub;
    size_t sealed;
} chunk_t;

static void
s_seal(chunk_t *c, const dxb_keypair_t *who, const dxb_manifest_t *m, uint32_t index,
       const uint8_t *file, bool compress, const uint8_t hash[32])
{
    uint8_t msg_id[16];
    randombytes_buf(msg_id, sizeof(msg_id));
    dxb_header_in_t h = {
        .msg_id = msg_id,
        .sender = who->node,
        .dataset = "hr.base",
        .kind = DXB_KIND_DELIVERY,
        .seq = 10 + index,
        .created_ms = 1700000000000u,
        .recipients = s_rcpt_ids,
        .n_recipients = 1,
        .region = "",
    };
    msgpack_sbuffer_init(&c->sbuf);
    size_t off = (size_t)(index - 1) * m->chunk_size;
    assert_int_equal(dxb_xfer_seal_chunk(&c->sbuf, who, &h, s_xfer_id, m, index, file + off,
                                         dxb_xfer_chunk_len(m, index), compress, hash,
                                         &c->sealed),
                     DXB_OK);
    assert_int_equal(dxb_msg_decode_env((const uint8_t *)c->sbuf.data, c->sbuf.size, &c->env,
                                        NULL, 0),
                     DXB_OK);
    assert_int_equal(c->env.hdr.flags, DXB_FLAG_CHUNK);
    assert_int_equal(dxb_xfer_chunk_decode(c->env.body.ptr, c->env.body.len, &c->pub, NULL, 0),
                     DXB_OK);
    assert_int_equal(c->pub.index, index);
    assert_int_equal(c->pub.count, m->count);
    assert_int_equal(c->pub.total, m->size);
}

static dxb_err_t
s_open(chunk_t *c, const dxb_manifest_t *m, uint8_t *out, size_t *len, bool *final,
       uint8_t hash[32])
{
    return dxb_xfer_open_chunk(&c->env, &c->pub, s_xfer_id, m, s_sender.sign_pk, out, len, final,
                               hash);
}

static uint8_t *
s_file(size_t size, bool compressible)
{
    uint8_t *f = malloc(size ? size : 1);
    assert_non_null(f);
    if (compressible) {
        /* 38 bytes of UTF-8: the period is the row's length, not a guess. */
        static const char row[] = "320102198001011234,张三,13812345678\n";
        for (size_t i = 0; i < size; i++) {
            f[i] = (uint8_t)row[i % (sizeof(row) - 1)];
        }
    } else {
        randombytes_buf(f, size);
    }
    return f;
}

static void
s_roundtrip(size_t size, bool compressible, bool compress)
{
    dxb_manifest_t m;
    assert_int_equal(dxb_xfer_manifest_new(&m, size, CHUNK,
                                           compress ? DXB_XFER_COMP_ZSTD : DXB_XFER_COMP_NONE,
                                           "text/csv"),
                     DXB_OK);
    uint8_t *file = s_file(size, compressible);
    uint8_t hash[32], got_hash[32];
    crypto_generichash(hash, 32, file, size, NULL, 0);
    uint8_t *out = malloc(size + CHUNK);
    size_t pos = 0, packed = 0;
    for (uint32_t i = 1; i <= m.count; i++) {
        chunk_t c;
        s_seal(&c, &s_sender, &m, i, file, compress, hash);
        packed += c.sealed;
        size_t len = 0;
        bool final = false;
        assert_int_equal(s_open(&c, &m, out + pos, &len, &final, got_hash), DXB_OK);
        assert_int_equal(len, dxb_xfer_chunk_len(&m, i));
        assert_int_equal(final, i == m.count);
        pos += len;
        msgpack_sbuffer_destroy(&c.sbuf);
    }
    assert_int_equal(pos, size);
    assert_memory_equal(out, file, size);
    assert_memory_equal(got_hash, hash, 32);
    if (compress && compressible && size > 0) {
        assert_true(packed < size / 4);
    } else {
        assert_int_equal(packed, size);
    }
    free(out);
    free(file);
}

static void
test_roundtrip_plain(void **state)
{
    (void)state;
    s_roundtrip(3 * CHUNK + 100, false, false);
    s_roundtrip(2 * CHUNK, false, false); /* exact multiple: last chunk is full */
    s_roundtrip(0, false, false);         /* empty file: one empty chunk */
    s_roundtrip(10, false, true);
}

static void
test_roundtrip_compressed(void **state)
{
    (void)state;
    s_roundtrip(5 * CHUNK + 7, true, true);
    s_roundtrip(5 * CHUNK + 7, false, true); /* random data: compression skipped */
}

static void
test_manifest_codec(void **state)
{
    (void)state;
    dxb_manifest_t m, back;
    assert_int_equal(dxb_xfer_manifest_new(&m, (uint64_t)5 << 30, 1u << 20, DXB_XFER_COMP_ZSTD,
                                           "application/octet-stream"),
                     DXB_OK);
    assert_int_equal(m.count, 5120);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dxb_xfer_manifest_encode(&sb, &m), DXB_OK);
    char detail[128] = "";
    assert_int_equal(dxb_xfer_manifest_decode((const uint8_t *)sb.data, sb.size, &back, detail,
                                              sizeof(detail)),
                     DXB_OK);
    assert_int_equal(back.size, m.size);
    assert_int_equal(back.count, m.count);
    assert_memory_equal(back.key, m.key, 32);
    assert_memory_equal(back.prefix, m.prefix, 16);
    assert_string_equal(back.content_type, "application/octet-stream");
    /* a count that does not match size / chunk size is refused */
    m.count++;
    msgpack_sbuffer_clear(&sb);
    assert_int_equal(dxb_xfer_manifest_encode(&sb, &m), DXB_OK);
    assert_int_equal(dxb_xfer_manifest_decode((const uint8_t *)sb.data, sb.size, &back, detail,
                                              sizeof(detail)),
                     DXB_EPROTO);
    assert_non_null(strstr(detail, "chunk count"));
    /* trailing byte */
    m.count--;
    msgpack_sbuffer_clear(&sb);
    assert_int_equal(dxb_xfer_manifest_encode(&sb, &m), DXB_OK);
    msgpack_sbuffer_write(&sb, "\x00", 1);
    assert_int_equal(dxb_xfer_manifest_decode((const uint8_t *)sb.data, sb.size, &back, detail,
                                              sizeof(detail)),
                     DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* limits */
    assert_int_equal(dxb_xfer_manifest_new(&m, 1000, 100, 0, "x"), DXB_EINVAL);
    assert_int_equal(dxb_xfer_manifest_new(&m, 1000, DXB_XFER_CHUNK_MAX + 1, 0, "x"), DXB_EINVAL);
}

static void
test_tamper(void **state)
{
    (void)state;
    dxb_manifest_t m, other;
    assert_int_equal(dxb_xfer_manifest_new(&m, 3 * CHUNK, CHUNK, 0, "x"), DXB_OK);
    assert_int_equal(dxb_xfer_manifest_new(&other, 3 * CHUNK, CHUNK, 0, "x"), DXB_OK);
    uint8_t *file = s_file(3 * CHUNK, false);
    uint8_t hash[32], got[32], out[CHUNK];
    crypto_generichash(hash, 32, file, 3 * CHUNK, NULL, 0);
    chunk_t c1, c2, c3;
    s_seal(&c1, &s_sender, &m, 1, file, false, hash);
    s_seal(&c2, &s_sender, &m, 2, file, false, hash);
    s_seal(&c3, &s_sender, &m, 3, file, false, hash);
    size_t len;
    bool final;
    /* flipped ciphertext byte */
    ((uint8_t *)c1.pub.cipher.ptr)[10] ^= 1;
    assert_int_equal(s_open(&c1, &m, out, &len, &final, got), DXB_ECRYPTO);
    ((uint8_t *)c1.pub.cipher.ptr)[10] ^= 1;
    assert_int_equal(s_open(&c1, &m, out, &len, &final, got), DXB_OK);
    /* chunk 2's body under chunk 1's header (moved between envelopes) */
    chunk_t mix = c1;
    mix.pub = c2.pub;
    assert_int_equal(s_open(&mix, &m, out, &len, &final, got), DXB_ECRYPTO);
    /* chunk 1 claiming index 2 */
    mix = c1;
    mix.pub.index = 2;
    assert_int_equal(s_open(&mix, &m, out, &len, &final, got), DXB_ECRYPTO);
    /* opened with another transfer's manifest (key) */
    assert_int_equal(s_open(&c1, &other, out, &len, &final, got), DXB_ECRYPTO);
    /* a chunk whose public count disagrees with the manifest */
    mix = c1;
    mix.pub.count = 4;
    assert_int_equal(s_open(&mix, &m, out, &len, &final, got), DXB_EINVAL);
    /* last chunk signed by someone else who knows the transfer key */
    chunk_t forged;
    uint8_t fake[32] = {0};
    (void)fake;
    s_seal(&forged, &s_other, &m, 3, file, false, hash);
    assert_int_equal(s_open(&forged, &m, out, &len, &final, got), DXB_ECRYPTO);
    assert_int_equal(s_open(&c3, &m, out, &len, &final, got), DXB_OK);
    assert_true(final);
    assert_memory_equal(got, hash, 32);
    msgpack_sbuffer_destroy(&c1.sbuf);
    msgpack_sbuffer_destroy(&c2.sbuf);
    msgpack_sbuffer_destroy(&c3.sbuf);
    msgpack_sbuffer_destroy(&forged.sbuf);
    free(file);
}

static void
test_chunk_decode_strict(void **state)
{
    (void)state;
    static const uint8_t id[16] = {1};
    static const uint8_t ct[32] = {2};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    dxb_chunk_t c;
    char detail[128];
    /* index 0 */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_bin_with_body(&pk, id, 16);
    msgpack_pack_uint32(&pk, 0);
    msgpack_pack_uint32(&pk, 3);
    msgpack_pack_uint64(&pk, 100);
    msgpack_pack_bin_with_body(&pk, id, 16);
    msgpack_pack_bin_with_body(&pk, id, 1);
    assert_int_equal(dxb_xfer_chunk_decode((const uint8_t *)sb.data, sb.size - 3, &c, detail,
                                           sizeof(detail)),
                     DXB_EPROTO);
    assert_non_null(strstr(detail, "index"));
    /* trailing bytes after a valid body */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_bin_with_body(&pk, id, 16);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_uint32(&pk, 3);
    msgpack_pack_uint64(&pk, 100);
    msgpack_pack_bin_with_body(&pk, ct, sizeof(ct));
    size_t good = sb.size;
    msgpack_pack_nil(&pk);
    assert_int_equal(dxb_xfer_chunk_decode((const uint8_t *)sb.data, good, &c, NULL, 0), DXB_OK);
    assert_int_equal(dxb_xfer_chunk_decode((const uint8_t *)sb.data, sb.size, &c, detail,
                                           sizeof(detail)),
                     DXB_EPROTO);
    assert_non_null(strstr(detail, "trailing"));
    /* truncated */
    assert_int_equal(dxb_xfer_chunk_decode((const uint8_t *)sb.data, good - 1, &c, NULL, 0),
                     DXB_EPROTO);
    msgpack_sbuffer_destroy(&sb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_plain),    cmocka_unit_test(test_roundtrip_compressed),
        cmocka_unit_test(test_manifest_codec),     cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_chunk_decode_strict),
    };
    return cmocka_run_group_tests(tests, s_group_setup, NULL);
}
