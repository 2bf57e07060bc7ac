/* dxb_seal: suite 1 "DXB-SODIUM-1" sealing and opening of envelope bodies
 * (PROTOCOL.md section 5; see dxb_seal.h).
 *
 * Owns nothing between calls. Invariants: the content key K and every
 * plaintext buffer are wiped on every path out of a function that held them;
 * dxb_seal_open never decrypts before the signature over the exact received
 * bytes has verified. Thread context: none (reentrant after sodium_init()).
 */
#include "proto/dxb_seal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define SEAL_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define SEAL_KEY_BYTES crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define SEAL_TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define SEAL_WRAP_BYTES (crypto_box_SEALBYTES + SEAL_KEY_BYTES)
#define SEAL_SIG_BYTES crypto_sign_BYTES

_Static_assert(SEAL_NONCE_BYTES == sizeof(((dxb_body1_t *)0)->nonce), "nonce size");
_Static_assert(SEAL_WRAP_BYTES == 80, "wrapped key size");
_Static_assert(SEAL_SIG_BYTES == sizeof(((dxb_body1_t *)0)->signature), "signature size");

/* Domain separation for the signed digest (section 5). */
static const char s_sig_context[] = "dxb-sig-1";

void
dxb_seal_body_hash(const uint8_t *body, size_t len, uint8_t out[DXB_HASH_BYTES])
{
    crypto_generichash(out, DXB_HASH_BYTES, body, len, NULL, 0);
}

/* BLAKE2b-256("dxb-sig-1" || header || nonce || wraps || ciphertext): the
 * message the sender signs. Every part is the exact bytes on the wire. */
static void
s_sig_digest(dxb_bytes_t header, const uint8_t nonce[SEAL_NONCE_BYTES], dxb_bytes_t wraps,
             dxb_bytes_t ciphertext, uint8_t out[DXB_HASH_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, DXB_HASH_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)s_sig_context, sizeof(s_sig_context) - 1);
    crypto_generichash_update(&st, header.ptr, header.len);
    crypto_generichash_update(&st, nonce, SEAL_NONCE_BYTES);
    crypto_generichash_update(&st, wraps.ptr, wraps.len);
    crypto_generichash_update(&st, ciphertext.ptr, ciphertext.len);
    crypto_generichash_final(&st, out, DXB_HASH_BYTES);
}

/* Size of a msgpack bin header for a payload of len bytes (bin8/16/32). */
static size_t
s_bin_header_len(size_t len)
{
    if (len < 256) {
        return 2;
    }
    return len < 65536 ? 3 : 5;
}

/* BODY's encoded size, needed in HEADER.body_len before the body exists
 * (the header is the AEAD's associated data). The encoded body is checked
 * against it afterwards. */
static size_t
s_body_len(size_t wraps_len, size_t ct_len)
{
    return 1 /* fixarray(4) */ + s_bin_header_len(SEAL_NONCE_BYTES) + SEAL_NONCE_BYTES +
           wraps_len + s_bin_header_len(ct_len) + ct_len + s_bin_header_len(SEAL_SIG_BYTES) +
           SEAL_SIG_BYTES;
}

static dxb_bytes_t
s_view(const msgpack_sbuffer *sbuf)
{
    return (dxb_bytes_t){.ptr = (const uint8_t *)sbuf->data, .len = sbuf->size};
}

/* Wipes a buffer that held plaintext, then frees it. */
static void
s_sbuffer_wipe(msgpack_sbuffer *sbuf)
{
    if (sbuf->data != NULL) {
        sodium_memzero(sbuf->data, sbuf->alloc);
    }
    msgpack_sbuffer_destroy(sbuf);
}

/* Gives an empty sbuffer room for cap bytes up front, so that packing the
 * plaintext never reallocs and leaves unwiped copies in freed memory. */
static bool
s_sbuffer_reserve(msgpack_sbuffer *sbuf, size_t cap)
{
    sbuf->data = malloc(cap);
    if (sbuf->data == NULL) {
        return false;
    }
    sbuf->alloc = cap;
    return true;
}

/* Seals K to every recipient, in header order, and encodes the wraps array. */
static dxb_err_t
s_wrap_key(msgpack_sbuffer *wraps_out, const dxb_header_in_t *h,
           const uint8_t (*recipient_box_pks)[32], const uint8_t key[SEAL_KEY_BYTES])
{
    uint8_t (*wraps)[SEAL_WRAP_BYTES] = calloc(h->n_recipients, sizeof(*wraps));
    if (wraps == NULL) {
        return DXB_ENOMEM;
    }
    dxb_err_t err = DXB_OK;
    for (uint16_t i = 0; i < h->n_recipients; i++) {
        if (crypto_box_seal(wraps[i], key, SEAL_KEY_BYTES, recipient_box_pks[i]) != 0) {
            err = DXB_ECRYPTO;
            goto out_free;
        }
    }
    err = dxb_msg_enc_wraps(wraps_out, h->recipients, (const uint8_t(*)[80])wraps,
                            h->n_recipients);
out_free:
    free(wraps);
    return err;
}

/* Encrypts plain under key with AD = header, signs, and appends the BODY to
 * body_out, which must come out exactly body_len bytes long. */
static dxb_err_t
s_build_body(msgpack_sbuffer *body_out, const dxb_keypair_t *sender, dxb_bytes_t header,
             dxb_bytes_t wraps, dxb_bytes_t plain, const uint8_t key[SEAL_KEY_BYTES],
             size_t body_len)
{
    uint8_t nonce[SEAL_NONCE_BYTES];
    uint8_t digest[DXB_HASH_BYTES];
    uint8_t sig[SEAL_SIG_BYTES];
    unsigned long long ct_len = 0;
    uint8_t *ct = malloc(plain.len + SEAL_TAG_BYTES);
    if (ct == NULL) {
        return DXB_ENOMEM;
    }
    randombytes_buf(nonce, sizeof(nonce));
    /* AD = the exact header bytes: a header altered or moved fails to open. */
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &ct_len, plain.ptr, plain.len, header.ptr,
                                               header.len, NULL, nonce, key);
    dxb_bytes_t ct_view = {.ptr = ct, .len = (size_t)ct_len};
    s_sig_digest(header, nonce, wraps, ct_view, digest);
    crypto_sign_detached(sig, NULL, digest, sizeof(digest), sender->sign_sk);

    dxb_err_t err = dxb_msg_enc_body1(body_out, nonce, wraps, ct_view, sig);
    if (err == DXB_OK && body_out->size != body_len) {
        /* The codec packed differently from s_body_len: a bug, not input. */
        err = DXB_EINTERNAL;
    }
    free(ct);
    return err;
}

dxb_err_t
dxb_seal_envelope(msgpack_sbuffer *out, const dxb_keypair_t *sender, const dxb_header_in_t *h,
                  const uint8_t (*recipient_box_pks)[32], dxb_bytes_t name,
                  const char *content_type, dxb_bytes_t payload)
{
    uint8_t key[SEAL_KEY_BYTES];
    uint8_t body_hash[DXB_HASH_BYTES];
    dxb_header_in_t hdr = *h;
    /* Three msgpack headers of at most 5 bytes each plus the fixarray byte. */
    size_t plain_cap = 16 + name.len + (content_type ? strlen(content_type) : 0) + payload.len;
    msgpack_sbuffer plain;
    msgpack_sbuffer wraps;
    msgpack_sbuffer header;
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&plain);
    msgpack_sbuffer_init(&wraps);
    msgpack_sbuffer_init(&header);
    msgpack_sbuffer_init(&body);
    crypto_aead_xchacha20poly1305_ietf_keygen(key);

    dxb_err_t err = DXB_EINVAL;
    if (h->sender == NULL || strcmp(h->sender, sender->node) != 0 || h->n_recipients == 0 ||
        h->n_recipients > DXB_MAX_RECIPIENTS || recipient_box_pks == NULL) {
        goto out_wipe;
    }
    /* Past the hard frame limit no peer would take it; refuse it here. */
    if (payload.len > DXB_MAX_FRAME_BYTES_HARD || plain_cap > DXB_MAX_FRAME_BYTES_HARD) {
        err = DXB_ETOOBIG;
        goto out_wipe;
    }
    if (!s_sbuffer_reserve(&plain, plain_cap)) {
        err = DXB_ENOMEM;
        goto out_wipe;
    }
    err = dxb_msg_enc_plain(&plain, name, content_type, payload);
    if (err != DXB_OK) {
        goto out_wipe;
    }
    err = s_wrap_key(&wraps, h, recipient_box_pks, key);
    if (err != DXB_OK) {
        goto out_wipe;
    }
    hdr.suite = DXB_SUITE_SODIUM1;
    hdr.body_len = s_body_len(wraps.size, plain.size + SEAL_TAG_BYTES);
    err = dxb_msg_enc_header(&header, &hdr);
    if (err != DXB_OK) {
        goto out_wipe;
    }
    err = s_build_body(&body, sender, s_view(&header), s_view(&wraps), s_view(&plain), key,
                       (size_t)hdr.body_len);
    if (err != DXB_OK) {
        goto out_wipe;
    }
    dxb_seal_body_hash((const uint8_t *)body.data, body.size, body_hash);
    err = dxb_msg_enc_env(out, s_view(&header), body_hash, s_view(&body));
out_wipe:
    sodium_memzero(key, sizeof(key));
    s_sbuffer_wipe(&plain);
    msgpack_sbuffer_destroy(&wraps);
    msgpack_sbuffer_destroy(&header);
    msgpack_sbuffer_destroy(&body);
    return err;
}

/* Body checks a broker can also make: suite, length and hash (PROTO-R7). */
static dxb_err_t
s_check_envelope(const dxb_env_t *env)
{
    if (env->hdr.suite != DXB_SUITE_SODIUM1) {
        return DXB_ESUITE;
    }
    if (env->hdr.body_len != (uint64_t)env->body.len) {
        return DXB_EINTEGRITY;
    }
    uint8_t hash[DXB_HASH_BYTES];
    dxb_seal_body_hash(env->body.ptr, env->body.len, hash);
    if (sodium_memcmp(hash, env->body_hash, DXB_HASH_BYTES) != 0) {
        return DXB_EINTEGRITY;
    }
    return DXB_OK;
}

/* True when node is one of the header's recipients. A wrap for someone the
 * header does not name is not an invitation to read. */
static bool
s_header_names(const dxb_header_t *hdr, const char *node)
{
    dxb_iter_t it;
    char id[DXB_ID_CAP];
    dxb_msg_recipients_begin(hdr->recipients, hdr->n_recipients, &it);
    while (dxb_msg_next_recipient(&it, id)) {
        if (strcmp(id, node) == 0) {
            return true;
        }
    }
    return false;
}

dxb_err_t
dxb_seal_open(const dxb_env_t *env, const dxb_keypair_t *me, const uint8_t sender_sign_pk[32],
              uint8_t **plain_p, size_t *plain_len)
{
    uint8_t key[SEAL_KEY_BYTES];
    uint8_t wrap[SEAL_WRAP_BYTES];
    uint8_t digest[DXB_HASH_BYTES];
    uint8_t *plain = NULL;
    size_t plain_cap = 0;
    unsigned long long got = 0;
    dxb_body1_t body;

    dxb_err_t err = s_check_envelope(env);
    if (err != DXB_OK) {
        return err;
    }
    if (dxb_msg_decode_body1(env->body.ptr, env->body.len, &body) != DXB_OK ||
        body.n_wraps != env->hdr.n_recipients || body.ciphertext.len < SEAL_TAG_BYTES) {
        return DXB_EPROTO;
    }
    /* Section 5: verify the sender before touching the ciphertext. */
    s_sig_digest(env->header_raw, body.nonce, body.wraps_raw, body.ciphertext, digest);
    if (crypto_sign_verify_detached(body.signature, digest, sizeof(digest), sender_sign_pk) != 0) {
        return DXB_ECRYPTO;
    }
    if (!s_header_names(&env->hdr, me->node) || !dxb_msg_body1_find_wrap(&body, me->node, wrap)) {
        return DXB_ENOTFOUND;
    }
    if (crypto_box_seal_open(key, wrap, sizeof(wrap), me->box_pk, me->box_sk) != 0) {
        err = DXB_ECRYPTO;
        goto out_wipe;
    }
    plain_cap = body.ciphertext.len - SEAL_TAG_BYTES;
    /* malloc(0) may return NULL; an empty plaintext still needs a buffer. */
    plain = malloc(plain_cap ? plain_cap : 1);
    if (plain == NULL) {
        err = DXB_ENOMEM;
        goto out_wipe;
    }
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &got, NULL, body.ciphertext.ptr,
                                                   body.ciphertext.len, env->header_raw.ptr,
                                                   env->header_raw.len, body.nonce, key) != 0) {
        err = DXB_ECRYPTO;
        goto out_wipe;
    }
    *plain_p = plain;
    *plain_len = (size_t)got;
    plain = NULL;
out_wipe:
    sodium_memzero(key, sizeof(key));
    dxb_seal_free_plain(&plain, plain_cap);
    return err;
}

void
dxb_seal_free_plain(uint8_t **plain_p, size_t len)
{
    if (plain_p == NULL || *plain_p == NULL) {
        return;
    }
    sodium_memzero(*plain_p, len);
    free(*plain_p);
    *plain_p = NULL;
}
