/* dxb_xfer: chunked transfers of large files (PROTOCOL.md section 5.1).
 *
 * A file too big for one message travels as a sequence of envelopes that
 * all carry HEADER.flags bit 0 (CHUNK):
 *   piece 0   the MANIFEST: an ordinary suite-1 sealed envelope (flags bit 1
 *             as well) whose PLAINTEXT payload names the size, chunk size,
 *             chunk count, compression and a fresh transfer key; its msg_id
 *             is the transfer id.
 *   piece i   (1..count) a CHUNK_BODY: public routing fields the broker may
 *             read (transfer id, index, count, total size) and the chunk
 *             sealed with XChaCha20-Poly1305 under the transfer key. The
 *             nonce and the AEAD additional data bind it to its index, its
 *             transfer, its count and its own HEADER, so chunks cannot be
 *             reordered, moved between transfers or dropped unnoticed.
 *   the last chunk also carries, inside its ciphertext, the BLAKE2b-256 of
 *             the whole file and the sender's Ed25519 signature over it: a
 *             recipient that shares the transfer key still cannot forge a
 *             file for another recipient, and truncation is caught by the
 *             signed count and hash.
 * Each chunk is sealed independently, so the receiver needs only one chunk
 * in memory, and a resent chunk is simply a duplicate the hops de-duplicate.
 *
 * Requires sodium_init(). Thread context: none. Every key and plaintext
 * buffer that this module allocates is wiped before it is freed.
 */
#ifndef DXB_XFER_H
#define DXB_XFER_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/dxb_err.h"
#include "common/dxb_keys.h"
#include "proto/dxb_msg.h"

#define DXB_FLAG_CHUNK 0x1u    /* the envelope is a piece of a chunked transfer */
#define DXB_FLAG_MANIFEST 0x2u /* ... and it is the transfer's manifest (piece 0) */
#define DXB_FLAGS_KNOWN (DXB_FLAG_CHUNK | DXB_FLAG_MANIFEST)

#define DXB_XFER_CT_MANIFEST "application/vnd.dxb.manifest"
#define DXB_XFER_CHUNK_MIN (4u * 1024u)
#define DXB_XFER_CHUNK_MAX (8u * 1024u * 1024u)
#define DXB_XFER_MAX_COUNT UINT32_MAX

#define DXB_XFER_COMP_NONE 0
#define DXB_XFER_COMP_ZSTD 1

/* Public fields of a CHUNK_BODY (the broker reads these). */
typedef struct {
    uint8_t xfer_id[16]; /* msg_id of the transfer's manifest */
    uint32_t index;      /* 1..count */
    uint32_t count;      /* chunks in the transfer */
    uint64_t total;      /* bytes of the whole file before compression */
    dxb_bytes_t cipher;  /* borrowed from the body */
} dxb_chunk_t;

/* Decodes a CHUNK_BODY strictly (PROTO-R5); detail names the bad field. */
dxb_err_t dxb_xfer_chunk_decode(const uint8_t *body, size_t len, dxb_chunk_t *out,
                                char *detail, size_t detail_cap) DXB_MUST_CHECK;

/* What a transfer's manifest carries (all of it secret except the sizes). */
typedef struct {
    uint64_t size;       /* file bytes */
    uint32_t chunk_size; /* plaintext bytes per chunk (the last may be shorter) */
    uint32_t count;      /* number of chunks, >= 1 */
    uint8_t compression; /* DXB_XFER_COMP_*: chunks MAY be compressed */
    uint8_t key[32];     /* transfer key; secret */
    uint8_t prefix[16];  /* nonce prefix; chunk nonce = prefix || be64(index) */
    char content_type[129];
} dxb_manifest_t;

/* Chunk count for a file of size bytes in chunks of chunk_size (>= 1). */
uint32_t dxb_xfer_count(uint64_t size, uint32_t chunk_size);
/* Plaintext bytes of chunk index (1-based) of a transfer. */
size_t dxb_xfer_chunk_len(const dxb_manifest_t *m, uint32_t index);

/* Fills a fresh manifest: random key and prefix. DXB_EINVAL when chunk_size
 * is outside [CHUNK_MIN, CHUNK_MAX] or the file needs more than 2^32-1 chunks. */
dxb_err_t dxb_xfer_manifest_new(dxb_manifest_t *m, uint64_t size, uint32_t chunk_size,
                                uint8_t compression, const char *content_type) DXB_MUST_CHECK;
/* Appends the MANIFEST msgpack (the manifest envelope's PLAINTEXT payload). */
dxb_err_t dxb_xfer_manifest_encode(msgpack_sbuffer *out, const dxb_manifest_t *m) DXB_MUST_CHECK;
/* Decodes and checks a MANIFEST payload (sizes consistent, limits). */
dxb_err_t dxb_xfer_manifest_decode(const uint8_t *buf, size_t len, dxb_manifest_t *out,
                                   char *detail, size_t detail_cap) DXB_MUST_CHECK;

/* Builds one complete chunk ENVELOPE and appends it to out.
 * h: header fields as for dxb_seal_envelope; flags and body_len are set here.
 * data/len: the chunk's plaintext (exactly dxb_xfer_chunk_len bytes).
 * try_compress: attempt zstd (used only if it saves at least 1/16).
 * file_hash: BLAKE2b-256 of the whole file; required for the last chunk
 * (index == count), ignored otherwise.
 * *sealed_len: bytes of chunk data after compression (for the ratio).
 * Errors: DXB_EINVAL, DXB_ENOMEM, DXB_ECRYPTO. */
dxb_err_t dxb_xfer_seal_chunk(msgpack_sbuffer *out, const dxb_keypair_t *sender,
                              const dxb_header_in_t *h, const uint8_t xfer_id[16],
                              const dxb_manifest_t *m, uint32_t index, const uint8_t *data,
                              size_t len, bool try_compress, const uint8_t file_hash[32],
                              size_t *sealed_len) DXB_MUST_CHECK;

/* Opens a chunk envelope of a transfer whose manifest the caller holds.
 * out: caller buffer of at least m->chunk_size bytes; *out_len is set to the
 * chunk's plaintext length (checked against the manifest).
 * For the last chunk *final is set, the sender's signature over the file
 * hash is verified with sender_sign_pk and the signed hash is copied into
 * file_hash; the caller compares it with the hash of what it assembled.
 * Errors: DXB_EPROTO (body or sizes malformed), DXB_ECRYPTO (decryption or
 * signature failed), DXB_EINVAL (the chunk does not belong to m). */
dxb_err_t dxb_xfer_open_chunk(const dxb_env_t *env, const dxb_chunk_t *pub,
                              const uint8_t xfer_id[16], const dxb_manifest_t *m,
                              const uint8_t sender_sign_pk[32], uint8_t *out, size_t *out_len,
                              bool *final, uint8_t file_hash[32]) DXB_MUST_CHECK;

#endif
