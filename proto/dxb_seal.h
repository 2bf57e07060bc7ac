/* dxb_seal: end-to-end envelope crypto, suite 1 "DXB-SODIUM-1"
 * (PROTOCOL.md section 5).
 *
 * The sender builds a complete ENVELOPE: a fresh content key K encrypts the
 * PLAINTEXT with XChaCha20-Poly1305 (AD = the exact HEADER bytes); K is
 * sealed to each recipient's X25519 key with crypto_box_seal; an Ed25519
 * signature over BLAKE2b-256("dxb-sig-1" || HEADER || nonce || wraps ||
 * ciphertext) authenticates the sender. The broker can check body_hash but
 * can read nothing. The recipient verifies the signature first, then unwraps
 * K and decrypts.
 *
 * Every plaintext buffer and key is wiped (sodium_memzero) before it is freed.
 * Requires sodium_init(). Thread context: none.
 */
#ifndef DXB_SEAL_H
#define DXB_SEAL_H

#include <msgpack.h>
#include <stdint.h>

#include "common/dxb_err.h"
#include "common/dxb_keys.h"
#include "proto/dxb_msg.h"

#define DXB_SUITE_SODIUM1 1

/* BLAKE2b-256 of a body, as carried in ENVELOPE.body_hash. */
void dxb_seal_body_hash(const uint8_t *body, size_t len, uint8_t out[DXB_HASH_BYTES]);

/* Builds and appends one complete ENVELOPE to out (caller-owned sbuffer).
 * h: header fields; h->msg_id, sender, dataset, seq, created_ms, recipients
 *    are used as given; h->suite and h->body_len are ignored (set here).
 * recipient_box_pks[i]: X25519 public key of h->recipients[i] (borrowed).
 * sender: the sender's key pair; sender->node must equal h->sender.
 * Errors: DXB_EINVAL (bad ids, counts), DXB_ETOOBIG, DXB_ENOMEM, DXB_ECRYPTO. */
dxb_err_t dxb_seal_envelope(msgpack_sbuffer *out, const dxb_keypair_t *sender,
                            const dxb_header_in_t *h, const uint8_t (*recipient_box_pks)[32],
                            dxb_bytes_t name, const char *content_type,
                            dxb_bytes_t payload) DXB_MUST_CHECK;

/* Verifies and decrypts an envelope addressed to me.
 * env: decoded envelope (borrowed). me: recipient key pair.
 * sender_sign_pk: the Ed25519 key of env->hdr.sender as the recipient knows it.
 * On DXB_OK *plain_p is a malloc'd PLAINTEXT (msgpack, decode with
 * dxb_msg_decode_plain) of *plain_len bytes, owned by the caller, who must
 * wipe it with dxb_seal_free_plain().
 * Errors: DXB_ESUITE (suite not 1), DXB_EINTEGRITY (body hash/length),
 * DXB_EPROTO (body malformed), DXB_ENOTFOUND (no wrap for me),
 * DXB_ECRYPTO (bad signature, unwrap or decryption failure), DXB_ENOMEM. */
dxb_err_t dxb_seal_open(const dxb_env_t *env, const dxb_keypair_t *me,
                        const uint8_t sender_sign_pk[32], uint8_t **plain_p,
                        size_t *plain_len) DXB_MUST_CHECK;

/* Wipes and frees a plaintext from dxb_seal_open; sets *plain_p to NULL. */
void dxb_seal_free_plain(uint8_t **plain_p, size_t len);

#endif
