/* dxb_keys: node key pairs and key files.
 *
 * A node has ONE identity key: an Ed25519 signing key pair. Its X25519 key
 * pair (used by CURVE for the transport and by crypto_box_seal for end-to-end
 * key wrapping) is derived from it with libsodium's
 * crypto_sign_ed25519_{pk,sk}_to_curve25519. So a node is named everywhere by
 * one 40-character Z85 string: its Ed25519 public key.
 *
 * Key files (text, written by `dxbctl keygen`):
 *   DIR/ID.pub     mode 0644   "node: ID\nsuite: 1\npublic_key: <z85 40>\n"
 *   DIR/ID.secret  mode 0600   "node: ID\nsuite: 1\nsecret_seed: <z85 40>\n"
 * Lines starting with '#' are comments. A secret file readable by group or
 * others is refused (DXB_EDENIED), as is a symlink.
 *
 * Secrets are wiped with sodium_memzero by dxb_keys_wipe(). libsodium must be
 * initialised (sodium_init) before any call.
 */
#ifndef DXB_KEYS_H
#define DXB_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "common/dxb_err.h"

#define DXB_Z85_KEY_LEN 40

typedef struct {
    char node[65];       /* node id the key belongs to */
    uint8_t sign_pk[32]; /* Ed25519 public */
    uint8_t sign_sk[64]; /* Ed25519 secret (seed || pk); secret */
    uint8_t box_pk[32];  /* X25519 public, derived */
    uint8_t box_sk[32];  /* X25519 secret, derived; secret */
} dxb_keypair_t;

/* Generates a new key pair for node (node must be a valid id). */
dxb_err_t dxb_keys_generate(const char *node, dxb_keypair_t *out) DXB_MUST_CHECK;
/* Writes DIR/NODE.pub and DIR/NODE.secret (durably, atomically). Refuses to
 * overwrite existing files (DXB_EEXIST). Creates DIR (0700) if missing. */
dxb_err_t dxb_keys_save(const dxb_keypair_t *kp, const char *dir) DXB_MUST_CHECK;
/* Loads a secret key file. errbuf receives "PATH: reason" on failure.
 * Errors: DXB_ENOTFOUND, DXB_EDENIED (permissions, symlink), DXB_ECONFIG
 * (format), DXB_EIO. */
dxb_err_t dxb_keys_load_secret(const char *path, dxb_keypair_t *out, char *errbuf,
                               size_t errcap) DXB_MUST_CHECK;
/* Loads a public key file: node id and Ed25519 public key. */
dxb_err_t dxb_keys_load_public(const char *path, char node_out[65], uint8_t sign_pk[32],
                               char *errbuf, size_t errcap) DXB_MUST_CHECK;
/* Parses a 40-char Z85 public key (as written in configs). DXB_EINVAL if bad
 * (wrong length, bad alphabet, or not a valid Ed25519 point). */
dxb_err_t dxb_keys_parse_public(const char *z85, uint8_t sign_pk[32]) DXB_MUST_CHECK;
/* Derives the X25519 public key from an Ed25519 public key. */
dxb_err_t dxb_keys_box_from_sign(const uint8_t sign_pk[32], uint8_t box_pk[32]) DXB_MUST_CHECK;
/* Encodes a 32-byte key as 40 Z85 chars + NUL. */
void dxb_keys_z85(const uint8_t key[32], char out[DXB_Z85_KEY_LEN + 1]);
/* Zeroes the secret parts. */
void dxb_keys_wipe(dxb_keypair_t *kp);

#endif
