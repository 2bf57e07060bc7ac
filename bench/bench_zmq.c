/* Raw libzmq limit: PUSH -> PULL over tcp loopback, 1 KiB messages, with and
 * without CURVE. Prints zmq_plain_msgs_s and zmq_curve_msgs_s. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "bench_util.h"

#define MSG_SIZE 1024

typedef struct {
    void *ctx;
    const char *endpoint;
    bool curve;
    const char *server_pub;
    long n;
} sender_arg_t;

static void *
s_sender(void *p)
{
    sender_arg_t *a = p;
    void *s = zmq_socket(a->ctx, ZMQ_PUSH);
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
    char buf[MSG_SIZE];
    memset(buf, 'x', sizeof(buf));
    for (long i = 0; i < a->n; i++) {
        if (zmq_send(s, buf, sizeof(buf), 0) != MSG_SIZE) {
            fprintf(stderr, "send: %s\n", zmq_strerror(zmq_errno()));
            abort();
        }
    }
    int linger = -1;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_close(s);
    return NULL;
}

static double
s_run(bool curve, long n)
{
    void *ctx = zmq_ctx_new();
    void *pull = zmq_socket(ctx, ZMQ_PULL);
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
    sender_arg_t a = {ctx, endpoint, curve, pub, n};
    pthread_t th;
    pthread_create(&th, NULL, s_sender, &a);
    char buf[MSG_SIZE];
    double t0 = 0;
    for (long i = 0; i < n; i++) {
        int r = zmq_recv(pull, buf, sizeof(buf), 0);
        if (r != MSG_SIZE) {
            fprintf(stderr, "recv: %d %s\n", r, zmq_strerror(zmq_errno()));
            abort();
        }
        if (i == 0) {
            t0 = bench_now();
        }
    }
    double dt = bench_now() - t0;
    pthread_join(th, NULL);
    zmq_close(pull);
    zmq_ctx_term(ctx);
    return (double)(n - 1) / dt;
}

int
main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    if (n < 2) {
        n = 2;
    }
    bench_put("zmq_plain_msgs_s", s_run(false, n));
    bench_put("zmq_curve_msgs_s", s_run(true, n));
    return 0;
}
