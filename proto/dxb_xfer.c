/* dxb_xfer: chunked transfers. See dxb_xfer.h and PROTOCOL.md 5.1. */
#include "proto/dxb_xfer.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/dxb_store.h"
#include "common/dxb_util.h"
#include "proto/dxb_rd.h"
#include "proto/dxb_seal.h"

#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define SIG_BYTES crypto_sign_BYTES
#define CP_FLAG_ZSTD 0x1u  /* chunk data is one zstd frame */
#define CP_FLAG_FINAL 0x2u /* hash32 || sig64 follow the flags byte */
#define TRAILER_BYTES (DXB_HASH_BYTES + SIG_BYTES)
#define ZSTD_LEVEL 3

static const char s_ad_context[] = "dxb-chunk-1";
static const char s_sig_context[] = "dxb-xfer-1";

static void
s_detail(char *detail, size_t cap, const char *what, const char *text)
{
    if (detail != NULL && cap > 0) {
        snprintf(detail, cap, "%s: %s", what, text != NULL ? text : "malformed");
    }
}

uint32_t
dxb_xfer_count(uint64_t size, uint32_t chunk_size)
{
    if (chunk_size == 0) {
        return 0;
    }
    uint64_t n = (size + chunk_size - 1) / chunk_size;
    if (n == 0) {
        n = 1; /* an empty file is one empty chunk */
    }
    return n > DXB_XFER_MAX_COUNT ? 0 : (uint32_t)n;
}

size_t
dxb_xfer_chunk_len(const dxb_manifest_t *m, uint32_t index)
{
    if (index == 0 || index > m->count) {
        return 0;
    }
    if (index < m->count) {
        return m->chunk_size;
    }
    return (size_t)(m->size - (uint64_t)(m->count - 1) * m->chunk_size);
}

dxb_err_t
dxb_xfer_chunk_decode(const uint8_t *body, size_t len, dxb_chunk_t *out, char *detail,
                      size_t detail_cap)
{
    dxb_rd_t rd;
    dxb_rd_init(&rd, body, len);
    memset(out, 0, sizeof(*out));
    if (dxb_rd_array(&rd) != 5 && dxb_rd_ok(&rd)) {
        dxb_rd_fail(&rd, "want an array of 5");
    }
    size_t idlen = 0;
    const uint8_t *id = dxb_rd_bin(&rd, 16, &idlen);
    if (dxb_rd_ok(&rd) && idlen != 16) {
        dxb_rd_fail(&rd, "transfer id is not 16 bytes");
    }
    if (dxb_rd_ok(&rd)) {
        memcpy(out->xfer_id, id, 16);
    }
    out->index = (uint32_t)dxb_rd_uint(&rd, UINT32_MAX);
    out->count = (uint32_t)dxb_rd_uint(&rd, UINT32_MAX);
    out->total = dxb_rd_uint(&rd, UINT64_MAX);
    out->cipher.ptr = dxb_rd_bin(&rd, len, &out->cipher.len);
    if (dxb_rd_ok(&rd) && dxb_rd_left(&rd) != 0) {
        dxb_rd_fail(&rd, "trailing bytes");
    }
    if (dxb_rd_ok(&rd) && (out->count == 0 || out->index == 0 || out->index > out->count)) {
        dxb_rd_fail(&rd, "index outside 1..count");
    }
    if (dxb_rd_ok(&rd) && out->cipher.len < TAG_BYTES + 1) {
        dxb_rd_fail(&rd, "ciphertext shorter than its tag");
    }
    if (!dxb_rd_ok(&rd)) {
        s_detail(detail, detail_cap, "chunk body", rd.err);
        return DXB_EPROTO;
    }
    return DXB_OK;
}

dxb_err_t
dxb_xfer_manifest_new(dxb_manifest_t *m, uint64_t size, uint32_t chunk_size,
                      uint8_t compression, const char *content_type)
{
    memset(m, 0, sizeof(*m));
    if (chunk_size < DXB_XFER_CHUNK_MIN || chunk_size > DXB_XFER_CHUNK_MAX ||
        compression > DXB_XFER_COMP_ZSTD || content_type == NULL ||
        strlen(content_type) >= sizeof(m->content_type)) {
        return DXB_EINVAL;
    }
    m->count = dxb_xfer_count(size, chunk_size);
    if (m->count == 0) {
        return DXB_EINVAL;
    }
    m->size = size;
    m->chunk_size = chunk_size;
    m->compression = compression;
    crypto_aead_xchacha20poly1305_ietf_keygen(m->key);
    randombytes_buf(m->prefix, sizeof(m->prefix));
    dxb_strlcpy(m->content_type, content_type, sizeof(m->content_type));
    return DXB_OK;
}

dxb_err_t
dxb_xfer_manifest_encode(msgpack_sbuffer *out, const dxb_manifest_t *m)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    size_t ctlen = strlen(m->content_type);
    int rc = msgpack_pack_array(&pk, 7);
    rc |= msgpack_pack_uint64(&pk, m->size);
    rc |= msgpack_pack_uint32(&pk, m->chunk_size);
    rc |= msgpack_pack_uint32(&pk, m->count);
    rc |= msgpack_pack_uint8(&pk, m->compression);
    rc |= msgpack_pack_bin(&pk, 32);
    rc |= msgpack_pack_bin_body(&pk, m->key, 32);
    rc |= msgpack_pack_bin(&pk, 16);
    rc |= msgpack_pack_bin_body(&pk, m->prefix, 16);
    rc |= msgpack_pack_str(&pk, ctlen);
    rc |= msgpack_pack_str_body(&pk, m->content_type, ctlen);
    return rc == 0 ? DXB_OK : DXB_ENOMEM;
}

dxb_err_t
dxb_xfer_manifest_decode(const uint8_t *buf, size_t len, dxb_manifest_t *out, char *detail,
                         size_t detail_cap)
{
    dxb_rd_t rd;
    dxb_rd_init(&rd, buf, len);
    memset(out, 0, sizeof(*out));
    if (dxb_rd_array(&rd) != 7 && dxb_rd_ok(&rd)) {
        dxb_rd_fail(&rd, "want an array of 7");
    }
    out->size = dxb_rd_uint(&rd, UINT64_MAX);
    out->chunk_size = (uint32_t)dxb_rd_uint(&rd, DXB_XFER_CHUNK_MAX);
    out->count = (uint32_t)dxb_rd_uint(&rd, UINT32_MAX);
    out->compression = (uint8_t)dxb_rd_uint(&rd, DXB_XFER_COMP_ZSTD);
    size_t klen = 0, plen = 0, ctlen = 0;
    const uint8_t *key = dxb_rd_bin(&rd, 32, &klen);
    const uint8_t *prefix = dxb_rd_bin(&rd, 16, &plen);
    const uint8_t *ct = dxb_rd_str(&rd, sizeof(out->content_type) - 1, &ctlen);
    if (dxb_rd_ok(&rd) && dxb_rd_left(&rd) != 0) {
        dxb_rd_fail(&rd, "trailing bytes");
    }
    if (dxb_rd_ok(&rd) && (klen != 32 || plen != 16)) {
        dxb_rd_fail(&rd, "key or nonce prefix of the wrong length");
    }
    if (dxb_rd_ok(&rd) && out->chunk_size < DXB_XFER_CHUNK_MIN) {
        dxb_rd_fail(&rd, "chunk size below the minimum");
    }
    if (dxb_rd_ok(&rd) && out->count != dxb_xfer_count(out->size, out->chunk_size)) {
        dxb_rd_fail(&rd, "chunk count does not match size / chunk size");
    }
    if (!dxb_rd_ok(&rd)) {
        s_detail(detail, detail_cap, "manifest", rd.err);
        sodium_memzero(out, sizeof(*out));
        return DXB_EPROTO;
    }
    memcpy(out->key, key, 32);
    memcpy(out->prefix, prefix, 16);
    memcpy(out->content_type, ct, ctlen);
    out->content_type[ctlen] = '\0';
    return DXB_OK;
}

/* ---- sealing ------------------------------------------------------------ */

static void
s_nonce(const dxb_manifest_t *m, uint32_t index, uint8_t nonce[24])
{
    memcpy(nonce, m->prefix, 16);
    dxb_be64_put(nonce + 16, index);
}

/* AD = "dxb-chunk-1" || HEADER || xfer_id || be32 index || be32 count ||
 * be64 total. Returns a malloc'd buffer (not secret) or NULL. */
static uint8_t *
s_ad(dxb_bytes_t header, const uint8_t xfer_id[16], uint32_t index, uint32_t count,
     uint64_t total, size_t *len_out)
{
    size_t ctx = sizeof(s_ad_context) - 1;
    size_t len = ctx + header.len + 16 + 4 + 4 + 8;
    uint8_t *ad = malloc(len);
    if (ad == NULL) {
        return NULL;
    }
    uint8_t *p = ad;
    memcpy(p, s_ad_context, ctx);
    p += ctx;
    memcpy(p, header.ptr, header.len);
    p += header.len;
    memcpy(p, xfer_id, 16);
    p += 16;
    uint8_t be[8];
    dxb_be64_put(be, index);
    memcpy(p, be + 4, 4);
    p += 4;
    dxb_be64_put(be, count);
    memcpy(p, be + 4, 4);
    p += 4;
    dxb_be64_put(p, total);
    *len_out = len;
    return ad;
}

/* The digest the sender signs for the whole file. */
static void
s_file_digest(const uint8_t xfer_id[16], const dxb_manifest_t *m, const uint8_t hash[32],
              uint8_t out[DXB_HASH_BYTES])
{
    uint8_t be[8];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, DXB_HASH_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)s_sig_context, sizeof(s_sig_context) - 1);
    crypto_generichash_update(&st, xfer_id, 16);
    dxb_be64_put(be, m->size);
    crypto_generichash_update(&st, be, 8);
    dxb_be64_put(be, m->count);
    crypto_generichash_update(&st, be, 8);
    dxb_be64_put(be, m->chunk_size);
    crypto_generichash_update(&st, be, 8);
    crypto_generichash_update(&st, hash, 32);
    crypto_generichash_final(&st, out, DXB_HASH_BYTES);
}

/* Builds the chunk plaintext P = flags || [hash || sig] || data into a
 * malloc'd buffer (wiped and freed by the caller). */
static dxb_err_t
s_plain(const dxb_keypair_t *sender, const uint8_t xfer_id[16], const dxb_manifest_t *m,
        uint32_t index, const uint8_t *data, size_t len, bool try_compress,
        const uint8_t file_hash[32], uint8_t **plain_p, size_t *plain_len, size_t *data_len)
{
    bool final = index == m->count;
    size_t head = 1 + (final ? TRAILER_BYTES : 0);
    size_t cap = head + len;
    if (try_compress && m->compression == DXB_XFER_COMP_ZSTD) {
        cap = head + ZSTD_compressBound(len);
    }
    uint8_t *p = malloc(cap);
    if (p == NULL) {
        return DXB_ENOMEM;
    }
    p[0] = final ? CP_FLAG_FINAL : 0;
    if (final) {
        uint8_t digest[DXB_HASH_BYTES];
        s_file_digest(xfer_id, m, file_hash, digest);
        memcpy(p + 1, file_hash, DXB_HASH_BYTES);
        crypto_sign_detached(p + 1 + DXB_HASH_BYTES, NULL, digest, sizeof(digest),
                             sender->sign_sk);
    }
    size_t dlen = len;
    bool packed = false;
    if (cap > head + len && len > 0) {
        size_t z = ZSTD_compress(p + head, cap - head, data, len, ZSTD_LEVEL);
        /* Keep it only when it saves at least 1/16: decompression is not free. */
        if (!ZSTD_isError(z) && z < len - len / 16) {
            dlen = z;
            packed = true;
            p[0] |= CP_FLAG_ZSTD;
        }
    }
    if (!packed && len > 0) {
        memcpy(p + head, data, len);
    }
    *plain_p = p;
    *plain_len = head + dlen;
    *data_len = dlen;
    return DXB_OK;
}

/* msgpack bin header length for a payload of len bytes. */
static size_t
s_bin_hdr(size_t len)
{
    return len < 256 ? 2 : (len < 65536 ? 3 : 5);
}

/* msgpack uint length. */
static size_t
s_uint_len(uint64_t v)
{
    if (v < 128) {
        return 1;
    }
    if (v < 256) {
        return 2;
    }
    if (v < 65536) {
        return 3;
    }
    return v <= UINT32_MAX ? 5 : 9;
}

dxb_err_t
dxb_xfer_seal_chunk(msgpack_sbuffer *out, const dxb_keypair_t *sender, const dxb_header_in_t *h,
                    const uint8_t xfer_id[16], const dxb_manifest_t *m, uint32_t index,
                    const uint8_t *data, size_t len, bool try_compress,
                    const uint8_t file_hash[32], size_t *sealed_len)
{
    uint8_t *plain = NULL, *ad = NULL, *body = NULL;
    size_t plain_len = 0, ad_len = 0, data_len = 0;
    msgpack_sbuffer header;
    msgpack_sbuffer_init(&header);
    dxb_err_t err = DXB_EINVAL;
    if (index == 0 || index > m->count || len != dxb_xfer_chunk_len(m, index) ||
        (index == m->count && file_hash == NULL) || strcmp(h->sender, sender->node) != 0) {
        goto out;
    }
    err = s_plain(sender, xfer_id, m, index, data, len, try_compress, file_hash, &plain,
                  &plain_len, &data_len);
    if (err) {
        goto out;
    }
    size_t ct_len = plain_len + TAG_BYTES;
    size_t body_len = 1 + 2 + 16 + s_uint_len(index) + s_uint_len(m->count) +
                      s_uint_len(m->size) + s_bin_hdr(ct_len) + ct_len;
    dxb_header_in_t hdr = *h;
    hdr.suite = DXB_SUITE_SODIUM1;
    hdr.flags = DXB_FLAG_CHUNK;
    hdr.body_len = body_len;
    err = dxb_msg_enc_header(&header, &hdr);
    if (err) {
        goto out;
    }
    dxb_bytes_t hv = {(const uint8_t *)header.data, header.size};
    ad = s_ad(hv, xfer_id, index, m->count, m->size, &ad_len);
    body = malloc(body_len);
    if (ad == NULL || body == NULL) {
        err = DXB_ENOMEM;
        goto out;
    }
    /* Encode the public part by hand: the layout is fixed by s_uint_len. */
    msgpack_sbuffer bs = {.size = 0, .data = (char *)body, .alloc = body_len};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &bs, msgpack_sbuffer_write);
    int rc = msgpack_pack_array(&pk, 5);
    rc |= msgpack_pack_bin(&pk, 16);
    rc |= msgpack_pack_bin_body(&pk, xfer_id, 16);
    rc |= msgpack_pack_uint32(&pk, index);
    rc |= msgpack_pack_uint32(&pk, m->count);
    rc |= msgpack_pack_uint64(&pk, m->size);
    rc |= msgpack_pack_bin(&pk, ct_len);
    if (rc != 0 || bs.data != (char *)body || bs.size + ct_len != body_len) {
        err = DXB_EINTERNAL; /* the packer sized differently from s_uint_len: a bug */
        body = (uint8_t *)bs.data;
        goto out;
    }
    uint8_t nonce[24];
    s_nonce(m, index, nonce);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(body + bs.size, &clen, plain, plain_len, ad,
                                               ad_len, NULL, nonce, m->key);
    uint8_t body_hash[DXB_HASH_BYTES];
    dxb_seal_body_hash(body, body_len, body_hash);
    err = dxb_msg_enc_env(out, hv, body_hash, (dxb_bytes_t){body, body_len});
    if (sealed_len != NULL) {
        *sealed_len = data_len;
    }
out:
    if (plain != NULL) {
        sodium_memzero(plain, plain_len);
        free(plain);
    }
    free(ad);
    free(body);
    msgpack_sbuffer_destroy(&header);
    return err;
}

/* ---- opening ------------------------------------------------------------ */

/* Decrypts into a malloc'd buffer (*plain_p, wiped and freed by the caller). */
static dxb_err_t
s_decrypt(const dxb_env_t *env, const dxb_chunk_t *pub, const uint8_t xfer_id[16],
          const dxb_manifest_t *m, uint8_t **plain_p, size_t *plain_len)
{
    size_t ad_len = 0;
    uint8_t *ad = s_ad(env->header_raw, xfer_id, pub->index, pub->count, pub->total, &ad_len);
    uint8_t *plain = malloc(pub->cipher.len);
    dxb_err_t err = DXB_ENOMEM;
    if (ad == NULL || plain == NULL) {
        goto out;
    }
    uint8_t nonce[24];
    s_nonce(m, pub->index, nonce);
    unsigned long long plen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, pub->cipher.ptr,
                                                   pub->cipher.len, ad, ad_len, nonce,
                                                   m->key) != 0) {
        err = DXB_ECRYPTO;
        goto out;
    }
    *plain_p = plain;
    *plain_len = (size_t)plen;
    plain = NULL;
    err = DXB_OK;
out:
    if (plain != NULL) {
        sodium_memzero(plain, pub->cipher.len);
        free(plain);
    }
    free(ad);
    return err;
}

/* Unpacks the chunk data of P into out (exactly want bytes). */
static dxb_err_t
s_unpack(const uint8_t *data, size_t len, bool zstd, uint8_t *out, size_t want)
{
    if (!zstd) {
        if (len != want) {
            return DXB_EPROTO;
        }
        memcpy(out, data, len);
        return DXB_OK;
    }
    unsigned long long declared = ZSTD_getFrameContentSize(data, len);
    if (declared != want) {
        return DXB_EPROTO; /* unknown, error or a size the manifest does not allow */
    }
    size_t got = ZSTD_decompress(out, want, data, len);
    if (ZSTD_isError(got) || got != want) {
        return DXB_EPROTO;
    }
    return DXB_OK;
}

dxb_err_t
dxb_xfer_open_chunk(const dxb_env_t *env, const dxb_chunk_t *pub, const uint8_t xfer_id[16],
                    const dxb_manifest_t *m, const uint8_t sender_sign_pk[32], uint8_t *out,
                    size_t *out_len, bool *final, uint8_t file_hash[32])
{
    if (memcmp(pub->xfer_id, xfer_id, 16) != 0 || pub->count != m->count ||
        pub->total != m->size || pub->index == 0 || pub->index > m->count) {
        return DXB_EINVAL;
    }
    uint8_t *plain = NULL;
    size_t plain_len = 0;
    dxb_err_t err = s_decrypt(env, pub, xfer_id, m, &plain, &plain_len);
    if (err) {
        return err;
    }
    bool last = pub->index == m->count;
    size_t head = 1 + (last ? TRAILER_BYTES : 0);
    size_t want = dxb_xfer_chunk_len(m, pub->index);
    err = DXB_EPROTO;
    if (plain_len < head || (plain[0] & ~(CP_FLAG_ZSTD | CP_FLAG_FINAL)) != 0 ||
        ((plain[0] & CP_FLAG_FINAL) != 0) != last ||
        (m->compression == DXB_XFER_COMP_NONE && (plain[0] & CP_FLAG_ZSTD) != 0)) {
        goto out;
    }
    if (last) {
        uint8_t digest[DXB_HASH_BYTES];
        s_file_digest(xfer_id, m, plain + 1, digest);
        if (crypto_sign_verify_detached(plain + 1 + DXB_HASH_BYTES, digest, sizeof(digest),
                                        sender_sign_pk) != 0) {
            err = DXB_ECRYPTO;
            goto out;
        }
        memcpy(file_hash, plain + 1, DXB_HASH_BYTES);
    }
    err = s_unpack(plain + head, plain_len - head, (plain[0] & CP_FLAG_ZSTD) != 0, out, want);
    if (err == DXB_OK) {
        *out_len = want;
        *final = last;
    }
out:
    sodium_memzero(plain, plain_len);
    free(plain);
    return err;
}
