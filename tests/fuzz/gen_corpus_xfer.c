/* Writes the seed corpus of fuzz_xfer into the directory given: chunk
 * envelopes sealed under the fixed keys the target uses (sender seed 0x01 as
 * "sq.sender", transfer key 0x11 x 32, nonce prefix 0x22 x 16, chunk size
 * 4096), plain and zstd, middle and last chunks, plus a manifest payload and
 * a bare chunk body. Not built by meson; run it by hand when the formats
 * change:
 *   cc -I. tests/fuzz/gen_corpus_xfer.c build/proto/libdxbproto.a \
 *      build/common/libdxbcommon.a $(pkg-config --libs msgpack libsodium libzstd \
 *      lmdb yaml-0.1 libczmq libzmq) -o /tmp/gen && /tmp/gen tests/fuzz/corpus/xfer */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "proto/dxb_msg.h"
#include "proto/dxb_xfer.h"

static void
s_write(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f != NULL) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

int
main(int argc, char **argv)
{
    if (argc != 2 || sodium_init() < 0) {
        return 64;
    }
    dxb_keypair_t kp;
    uint8_t seed[32];
    memset(seed, 0x01, sizeof(seed));
    memset(&kp, 0, sizeof(kp));
    strcpy(kp.node, "sq.sender");
    crypto_sign_seed_keypair(kp.sign_pk, kp.sign_sk, seed);
    dxb_manifest_t m = {.size = 3 * 4096 + 100, .chunk_size = 4096, .count = 4,
                        .compression = DXB_XFER_COMP_ZSTD};
    memset(m.key, 0x11, 32);
    memset(m.prefix, 0x22, 16);
    strcpy(m.content_type, "text/csv");
    static uint8_t file[3 * 4096 + 100];
    for (size_t i = 0; i < sizeof(file); i++) {
        file[i] = (uint8_t)("id,name,phone\n1,Zhang,13812345678\n"[i % 34]);
    }
    uint8_t hash[32], xfer_id[16], msg_id[16];
    crypto_generichash(hash, 32, file, sizeof(file), NULL, 0);
    memset(xfer_id, 0x33, 16);
    const char *rcpt[1] = {"sq.hrss"};
    for (uint32_t i = 1; i <= m.count; i++) {
        for (int z = 0; z < 2; z++) {
            memset(msg_id, (int)(i * 2 + (uint32_t)z), 16);
            dxb_header_in_t h = {.msg_id = msg_id, .sender = "sq.sender", .dataset = "hr.base",
                                 .kind = DXB_KIND_DELIVERY, .seq = i, .created_ms = 1,
                                 .recipients = rcpt, .n_recipients = 1, .region = ""};
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            if (dxb_xfer_seal_chunk(&sb, &kp, &h, xfer_id, &m, i,
                                    file + (size_t)(i - 1) * 4096, dxb_xfer_chunk_len(&m, i),
                                    z == 1, hash, NULL) == DXB_OK) {
                char name[64];
                snprintf(name, sizeof(name), "chunk-%u-%s", i, z ? "zstd" : "plain");
                s_write(argv[1], name, sb.data, sb.size);
            }
            msgpack_sbuffer_destroy(&sb);
        }
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (dxb_xfer_manifest_encode(&sb, &m) == DXB_OK) {
        s_write(argv[1], "manifest", sb.data, sb.size);
    }
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
