/* Raw libzmq limit: PUSH -> PULL over tcp loopback, with and without CURVE.
 *
 *   bench-zmq [N] [SIZE]
 *
 * N messages of SIZE bytes (default 200000 x 1024). With 1 KiB messages it
 * prints zmq_plain_msgs_s and zmq_curve_msgs_s; with 1 MiB messages (the
 * chunk size of large transfers) zmq_plain_1m_mb_s and zmq_curve_1m_mb_s;
 * other sizes zmq_{plain,curve}_<SIZE>b_mb_s. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "bench_util.h"

typedef struct {
    void *ctx;
    const char *endpoint;
    bool curve;
    const char *server_pub;
    long n;
    size_t size;
} sender_arg_t;

static void *
s_sender(void *p)
{
    sender_arg_t *a = p;
    void *s = zmq_socket(a->ctx, ZMQ_PUSH);
    if (a->size >= 65536) {
        int hwm = 16; /* bounded memory, like a transfer window */
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    }
    if (a->curve) {
        char pub[41], sec[41];
        if (zmq_curve_keypair(pub, sec) != 0) {
            abort();
        }
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, a->server_pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
    }
    if (zmq_connect(s, a->endpoint) != 0) {
        fprintf(stderr, "connect: %s\n", zmq_strerror(zmq_errno()));
        abort();
    }
    char *buf = malloc(a->size);
    if (buf == NULL) {
        abort();
    }
    memset(buf, 'x', a->size);
    for (long i = 0; i < a->n; i++) {
        if (zmq_send(s, buf, a->size, 0) != (int)a->size) {
            fprintf(stderr, "send: %s\n", zmq_strerror(zmq_errno()));
            abort();
        }
    }
    int linger = -1;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_close(s);
    free(buf);
    return NULL;
}

/* Messages/s received; *mb_s gets MB/s. */
static double
s_run(bool curve, long n, size_t size, double *mb_s)
{
    void *ctx = zmq_ctx_new();
    /* Large messages: the sender gets its own context (its own I/O thread),
     * as a separate process would, so CURVE encryption and decryption do
     * not share one I/O thread. The 1 KiB figures keep one context. */
    bool own_ctx = size >= 65536;
    void *sctx = own_ctx ? zmq_ctx_new() : ctx;
    void *pull = zmq_socket(ctx, ZMQ_PULL);
    if (own_ctx) {
        int hwm = 16;
        zmq_setsockopt(pull, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    }
    char pub[41], sec[41];
    if (curve) {
        if (zmq_curve_keypair(pub, sec) != 0) {
            abort();
        }
        int one = 1;
        zmq_setsockopt(pull, ZMQ_CURVE_SERVER, &one, sizeof(one));
        zmq_setsockopt(pull, ZMQ_CURVE_SECRETKEY, sec, 40);
    }
    if (zmq_bind(pull, "tcp://127.0.0.1:*") != 0) {
        fprintf(stderr, "bind: %s\n", zmq_strerror(zmq_errno()));
        abort();
    }
    char endpoint[256];
    size_t elen = sizeof(endpoint);
    zmq_getsockopt(pull, ZMQ_LAST_ENDPOINT, endpoint, &elen);
    sender_arg_t a = {sctx, endpoint, curve, pub, n, size};
    pthread_t th;
    pthread_create(&th, NULL, s_sender, &a);
    double t0 = 0;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    for (long i = 0; i < n; i++) {
        int r = zmq_msg_recv(&msg, pull, 0);
        if (r != (int)size) {
            fprintf(stderr, "recv: %d %s\n", r, zmq_strerror(zmq_errno()));
            abort();
        }
        if (i == 0) {
            t0 = bench_now();
        }
    }
    double dt = bench_now() - t0;
    zmq_msg_close(&msg);
    pthread_join(th, NULL);
    zmq_close(pull);
    if (own_ctx) {
        zmq_ctx_term(sctx);
    }
    zmq_ctx_term(ctx);
    *mb_s = (double)(n - 1) * (double)size / dt / 1e6;
    return (double)(n - 1) / dt;
}

int
main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    long size = argc > 2 ? atol(argv[2]) : 1024;
    if (n < 2) {
        n = 2;
    }
    if (size < 1 || size > (1L << 30)) {
        return 2;
    }
    const char *const modes[2] = {"plain", "curve"};
    for (int c = 0; c < 2; c++) {
        double mb_s = 0, msgs_s = s_run(c == 1, n, (size_t)size, &mb_s);
        char key[64];
        if (size == 1024) {
            snprintf(key, sizeof(key), "zmq_%s_msgs_s", modes[c]);
            bench_put(key, msgs_s);
        } else if (size == 1L << 20) {
            snprintf(key, sizeof(key), "zmq_%s_1m_mb_s", modes[c]);
            bench_put(key, mb_s);
        } else {
            snprintf(key, sizeof(key), "zmq_%s_%ldb_mb_s", modes[c], size);
            bench_put(key, mb_s);
        }
    }
    return 0;
}
