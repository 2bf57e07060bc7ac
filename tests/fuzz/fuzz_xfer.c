/* libFuzzer target: the chunked-transfer decoders (PROTOCOL.md 5.1).
 * The input is tried as a CHUNK_BODY (what the broker parses from every
 * chunk envelope), as a MANIFEST payload (what a recipient parses after
 * opening a manifest envelope), and as a whole chunk ENVELOPE that is
 * opened against a fixed manifest, so decryption, decompression bounds and
 * the signature check of the last chunk all see hostile bytes. */
#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/dxb_keys.h"
#include "proto/dxb_msg.h"
#include "proto/dxb_xfer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t s_sink;
static uint8_t s_sign_pk[32];
static uint8_t *s_out;

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
    uint8_t seed[32], sk[64];
    memset(seed, 0x01, sizeof(seed));
    crypto_sign_seed_keypair(s_sign_pk, sk, seed);
    s_out = malloc(DXB_XFER_CHUNK_MAX);
    if (s_out == NULL) {
        abort();
    }
    done = 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_init_once();
    dxb_chunk_t c;
    if (dxb_xfer_chunk_decode(data, size, &c, NULL, 0) == DXB_OK) {
        s_sink += c.index + c.cipher.len;
    }
    dxb_manifest_t m;
    if (dxb_xfer_manifest_decode(data, size, &m, NULL, 0) == DXB_OK) {
        s_sink += m.count + dxb_xfer_chunk_len(&m, m.count);
    }
    dxb_env_t env;
    if (dxb_msg_decode_env(data, size, &env, NULL, 0) == DXB_OK &&
        dxb_xfer_chunk_decode(env.body.ptr, env.body.len, &c, NULL, 0) == DXB_OK) {
        /* A manifest that matches whatever sizes the chunk claims, with a
         * fixed key: the corpus holds chunks sealed under it. */
        memset(&m, 0, sizeof(m));
        m.size = c.total;
        m.chunk_size = 4096;
        m.count = dxb_xfer_count(c.total, 4096);
        m.compression = DXB_XFER_COMP_ZSTD;
        memset(m.key, 0x11, 32);
        memset(m.prefix, 0x22, 16);
        size_t len = 0;
        bool final = false;
        uint8_t hash[32];
        if (m.count > 0 &&
            dxb_xfer_open_chunk(&env, &c, c.xfer_id, &m, s_sign_pk, s_out, &len, &final,
                                hash) == DXB_OK) {
            s_sink += len + final;
        }
    }
    return 0;
}
