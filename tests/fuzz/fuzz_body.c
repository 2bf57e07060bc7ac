/* libFuzzer target: a stored ENVELOPE as a recipient agent gets it. Decodes
 * the input with dxb_msg_decode_env and, when that passes, runs dxb_seal_open
 * as two recipients with the sender's key; an opened plaintext is decoded too.
 * The body, plaintext and wraps decoders also get the raw input directly, so
 * that they are exercised without a valid envelope around them.
 *
 * Keys are derived once from fixed seeds (crypto_sign_seed_keypair), so the
 * committed corpus (real sealed envelopes made with the same seeds) reaches
 * the signature check, unwrap and decryption. Seeds: sender 0x01 x 32 as
 * "sq.sender", recipients 0x02 x 32 as "sq.hrss" and 0x03 x 32 as
 * "sq.sy.tax". */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/dxb_keys.h"
#include "proto/dxb_msg.h"
#include "proto/dxb_seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static dxb_keypair_t s_sender;
static dxb_keypair_t s_rcpt[2];
/* Results are consumed here so that decoders run for real (and gcc's
 * warn_unused_result, which a (void) cast does not silence, is satisfied). */
static volatile size_t s_sink;

static void
s_fixed_keypair(const char *node, uint8_t seed_byte, dxb_keypair_t *kp)
{
    uint8_t seed[32];
    memset(seed, seed_byte, sizeof(seed));
    memset(kp, 0, sizeof(*kp));
    strcpy(kp->node, node);
    if (crypto_sign_seed_keypair(kp->sign_pk, kp->sign_sk, seed) != 0 ||
        crypto_sign_ed25519_pk_to_curve25519(kp->box_pk, kp->sign_pk) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(kp->box_sk, kp->sign_sk) != 0) {
        abort();
    }
}

static void
s_init_once(void)
{
    static int done;
    if (done) {
        return;
    }
    if (sodium_init() < 0) {
        abort();
    }
    s_fixed_keypair("sq.sender", 0x01, &s_sender);
    s_fixed_keypair("sq.hrss", 0x02, &s_rcpt[0]);
    s_fixed_keypair("sq.sy.tax", 0x03, &s_rcpt[1]);
    done = 1;
}

static void
s_open_as(const dxb_env_t *env, const dxb_keypair_t *me)
{
    uint8_t *plain = NULL;
    size_t len = 0;
    if (dxb_seal_open(env, me, s_sender.sign_pk, &plain, &len) != DXB_OK) {
        return;
    }
    dxb_plain_t p;
    if (dxb_msg_decode_plain(plain, len, &p) == DXB_OK) {
        s_sink += p.name.len + p.content_type.len + p.payload.len;
    }
    dxb_seal_free_plain(&plain, len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_init_once();
    dxb_env_t env;
    if (dxb_msg_decode_env(data, size, &env, NULL, 0) == DXB_OK) {
        s_open_as(&env, &s_rcpt[0]);
        s_open_as(&env, &s_rcpt[1]);
        return 0;
    }
    dxb_body1_t body;
    if (dxb_msg_decode_body1(data, size, &body) == DXB_OK) {
        uint8_t wrap[80];
        s_sink += dxb_msg_body1_find_wrap(&body, "sq.hrss", wrap) ? wrap[0] : 0u;
    }
    dxb_plain_t p;
    if (dxb_msg_decode_plain(data, size, &p) == DXB_OK) {
        s_sink += p.payload.len;
    }
    return 0;
}
