/* Raw libsodium limits:
 *   sodium_aead_1k_mb_s / sodium_aead_1m_mb_s   XChaCha20-Poly1305-IETF encrypt, MB/s
 *   sodium_aead_open_1m_mb_s                    the same, decrypt + verify, 1 MiB, MB/s
 *   sodium_blake2b_1m_mb_s                      crypto_generichash (BLAKE2b-256) of 1 MiB, MB/s
 *   sodium_sign_ops_s                           crypto_sign_detached, 1 KiB message
 *   sodium_seal_ops_s                           crypto_box_seal of a 32-byte key */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"

#define SECONDS 1.0

static double
s_aead(size_t len)
{
    unsigned char *m = calloc(1, len), *c = malloc(len + crypto_aead_xchacha20poly1305_ietf_ABYTES);
    unsigned char k[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    unsigned char n[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    crypto_aead_xchacha20poly1305_ietf_keygen(k);
    randombytes_buf(n, sizeof(n));
    unsigned long long clen;
    double bytes = 0, t0 = bench_now(), t = t0;
    while (t - t0 < SECONDS) {
        for (int i = 0; i < 64; i++) {
            crypto_aead_xchacha20poly1305_ietf_encrypt(c, &clen, m, len, NULL, 0, NULL, n, k);
            bytes += (double)len;
        }
        t = bench_now();
    }
    free(m);
    free(c);
    return bytes / (t - t0) / 1e6;
}

static double
s_aead_open(size_t len)
{
    unsigned char *m = calloc(1, len), *c = malloc(len + crypto_aead_xchacha20poly1305_ietf_ABYTES);
    unsigned char k[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
    unsigned char n[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    crypto_aead_xchacha20poly1305_ietf_keygen(k);
    randombytes_buf(n, sizeof(n));
    unsigned long long clen, mlen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(c, &clen, m, len, NULL, 0, NULL, n, k);
    double bytes = 0, t0 = bench_now(), t = t0;
    while (t - t0 < SECONDS) {
        for (int i = 0; i < 64; i++) {
            if (crypto_aead_xchacha20poly1305_ietf_decrypt(m, &mlen, NULL, c, clen, NULL, 0, n, k) !=
                0) {
                abort();
            }
            bytes += (double)len;
        }
        t = bench_now();
    }
    free(m);
    free(c);
    return bytes / (t - t0) / 1e6;
}

static double
s_blake2b(size_t len)
{
    unsigned char *m = malloc(len), h[32];
    randombytes_buf(m, len);
    double bytes = 0, t0 = bench_now(), t = t0;
    while (t - t0 < SECONDS) {
        for (int i = 0; i < 64; i++) {
            crypto_generichash(h, sizeof(h), m, len, NULL, 0);
            m[0] ^= h[0]; /* keep the calls dependent */
            bytes += (double)len;
        }
        t = bench_now();
    }
    free(m);
    return bytes / (t - t0) / 1e6;
}

static double
s_sign(void)
{
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    unsigned char sig[crypto_sign_BYTES], m[1024] = {0};
    crypto_sign_keypair(pk, sk);
    long ops = 0;
    double t0 = bench_now(), t = t0;
    while (t - t0 < SECONDS) {
        for (int i = 0; i < 64; i++) {
            crypto_sign_detached(sig, NULL, m, sizeof(m), sk);
        }
        ops += 64;
        t = bench_now();
    }
    return (double)ops / (t - t0);
}

static double
s_seal(void)
{
    unsigned char pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
    unsigned char m[32] = {0}, c[32 + crypto_box_SEALBYTES];
    crypto_box_keypair(pk, sk);
    long ops = 0;
    double t0 = bench_now(), t = t0;
    while (t - t0 < SECONDS) {
        for (int i = 0; i < 64; i++) {
            crypto_box_seal(c, m, sizeof(m), pk);
        }
        ops += 64;
        t = bench_now();
    }
    return (double)ops / (t - t0);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    bench_put("sodium_aead_1k_mb_s", s_aead(1024));
    bench_put("sodium_aead_1m_mb_s", s_aead(1024 * 1024));
    bench_put("sodium_aead_open_1m_mb_s", s_aead_open(1024 * 1024));
    bench_put("sodium_blake2b_1m_mb_s", s_blake2b(1024 * 1024));
    bench_put("sodium_sign_ops_s", s_sign());
    bench_put("sodium_seal_ops_s", s_seal());
    return 0;
}
