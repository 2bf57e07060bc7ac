/* Raw libzstd limit: ZSTD_compressCCtx at level 3 on 1 MiB buffers of random
 * (incompressible) bytes, as a transfer chunk of such a file is tried.
 *   zstd3_random_1m_mb_s   input MB/s
 *   zstd3_random_1m_ratio  compressed / input size (about 1.0) */
#include <stdio.h>
#include <stdlib.h>
#include <zstd.h>

#include "bench_util.h"

#define LEN ((size_t)1 << 20)
#define SECONDS 1.5

int
main(void)
{
    unsigned char *in = malloc(LEN);
    size_t cap = ZSTD_compressBound(LEN);
    unsigned char *out = malloc(cap);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    if (in == NULL || out == NULL || cctx == NULL) {
        return 1;
    }
    /* xorshift64*: fast, incompressible for zstd */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i + 8 <= LEN; i += 8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545f4914f6cdd1dull;
        for (int b = 0; b < 8; b++) {
            in[i + (size_t)b] = (unsigned char)(v >> (8 * b));
        }
    }
    double bytes = 0, packed = 0, t0 = bench_now(), t = t0;
    while (t - t0 < SECONDS) {
        for (int i = 0; i < 16; i++) {
            in[i] ^= 1; /* not the same input every time */
            size_t n = ZSTD_compressCCtx(cctx, out, cap, in, LEN, 3);
            if (ZSTD_isError(n)) {
                fprintf(stderr, "zstd: %s\n", ZSTD_getErrorName(n));
                return 1;
            }
            bytes += (double)LEN;
            packed += (double)n;
        }
        t = bench_now();
    }
    bench_put("zstd3_random_1m_mb_s", bytes / (t - t0) / 1e6);
    bench_put("zstd3_random_1m_ratio", packed / bytes);
    ZSTD_freeCCtx(cctx);
    free(in);
    free(out);
    return 0;
}
