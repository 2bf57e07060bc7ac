/* dxb end to end through libdxbclient (the agents' local API).
 *
 *   bench-dxb w1 SEND_API RECV_API TO DATASET N
 *       publish N 1 KiB messages with up to 1000 outstanding, a receiver
 *       thread subscribed at RECV_API drains and acks them concurrently.
 *   bench-dxb w2 SEND_API RECV_API TO DATASET N RATE [PREFIX]
 *       publish N messages at RATE msg/s; the payload carries the
 *       CLOCK_MONOTONIC send time; the receiver reports latency percentiles.
 *       PREFIX (default "w2") names the keys, e.g. w3_small_idle gives
 *       w3_small_idle_p50_us (W3 measures small messages next to a transfer).
 *
 * Results are "key=value" lines on stdout (see bench/README.md). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dxb_client.h>

#include "bench_util.h"

#define MSG_SIZE 1024
#define WINDOW 1000
#define STALL_S 60.0

typedef struct {
    const char *api;
    const char *dataset;
    long n;
    atomic_long expected; /* lowered by the publisher for refused publishes */
    atomic_bool ready;
    atomic_bool failed;
    long received;
    long dups;
    double t_first, t_last;
    uint64_t *lat_ns; /* per message, index = payload seq */
    unsigned char *seen;
} recv_state_t;

static void
s_fatal(const char *what, dxb_err_t rc, dxb_client_t *c)
{
    fprintf(stderr, "bench-dxb: %s: %s (%s)\n", what, dxb_err_name(rc),
            c != NULL ? dxb_client_last_error(c) : "");
    exit(1);
}

static void *
s_receiver(void *p)
{
    recv_state_t *st = p;
    dxb_client_t *c = NULL;
    dxb_err_t rc = dxb_client_connect(st->api, &c);
    if (rc != DXB_OK) {
        s_fatal("connect (receiver)", rc, NULL);
    }
    rc = dxb_client_subscribe(c, st->dataset, 10000);
    if (rc != DXB_OK) {
        s_fatal("subscribe", rc, c);
    }
    atomic_store(&st->ready, true);
    double last_progress = bench_now();
    while (st->received < atomic_load(&st->expected)) {
        dxb_client_msg_t m;
        rc = dxb_client_recv(c, &m, 500);
        double now = bench_now();
        if (rc == DXB_ETIMEOUT) {
            if (now - last_progress > STALL_S) {
                fprintf(stderr, "bench-dxb: receiver stalled at %ld of %ld\n", st->received,
                        atomic_load(&st->expected));
                atomic_store(&st->failed, true);
                break;
            }
            continue;
        }
        if (rc != DXB_OK) {
            s_fatal("recv", rc, c);
        }
        uint64_t t_ns = bench_now_ns();
        last_progress = now;
        uint64_t sent_ns = 0, seq = 0;
        if (m.len >= 16) {
            memcpy(&sent_ns, m.data, 8);
            memcpy(&seq, m.data + 8, 8);
        }
        if (seq < (uint64_t)st->n && !st->seen[seq]) {
            st->seen[seq] = 1;
            st->lat_ns[seq] = t_ns - sent_ns;
            if (st->received == 0) {
                st->t_first = now;
            }
            st->received++;
            st->t_last = now;
        } else {
            st->dups++;
        }
        rc = dxb_client_ack(c, m.msg_id);
        dxb_client_msg_free(&m);
        if (rc != DXB_OK) {
            s_fatal("ack", rc, c);
        }
    }
    dxb_client_destroy(&c);
    return NULL;
}

static int
s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    if (argc < 7 || (strcmp(argv[1], "w1") != 0 && strcmp(argv[1], "w2") != 0)) {
        fprintf(stderr, "usage: bench-dxb w1|w2 SEND_API RECV_API TO DATASET N [RATE [PREFIX]]\n");
        return 2;
    }
    bool w2 = strcmp(argv[1], "w2") == 0;
    const char *send_api = argv[2], *to = argv[4], *dataset = argv[5];
    long n = atol(argv[6]);
    double rate = argc > 7 ? atof(argv[7]) : 5000.0;
    if (n < 1 || rate <= 0) {
        return 2;
    }
    const char *w = w2 ? (argc > 8 ? argv[8] : "w2") : "w1";

    recv_state_t st;
    memset(&st, 0, sizeof(st));
    st.api = argv[3];
    st.dataset = dataset;
    st.n = n;
    atomic_init(&st.expected, n);
    atomic_init(&st.ready, false);
    atomic_init(&st.failed, false);
    st.lat_ns = calloc((size_t)n, sizeof(uint64_t));
    st.seen = calloc((size_t)n, 1);
    if (st.lat_ns == NULL || st.seen == NULL) {
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, s_receiver, &st);
    while (!atomic_load(&st.ready)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }

    dxb_client_t *c = NULL;
    dxb_err_t rc = dxb_client_connect(send_api, &c);
    if (rc != DXB_OK) {
        s_fatal("connect (publisher)", rc, NULL);
    }
    static unsigned char payload[MSG_SIZE];
    memset(payload, 'x', sizeof(payload));
    const char *const recipients[] = {to};
    dxb_client_pub_t pub = {dataset, recipients, 1, "bench.bin", payload, sizeof(payload), 0};

    long sent = 0, results = 0, errors = 0, outstanding = 0;
    double t0 = bench_now();
    uint64_t t0_ns = bench_now_ns();
    while (results < n) {
        while (sent < n && outstanding < WINDOW) {
            if (w2) {
                uint64_t due = t0_ns + (uint64_t)((double)sent * 1e9 / rate);
                /* collect results that are already there, then sleep until due */
                uint32_t req;
                while (outstanding > 0 && bench_now_ns() < due &&
                       (rc = dxb_client_wait_result(c, 0, &req, NULL)) != DXB_ETIMEOUT) {
                    outstanding--;
                    results++;
                    errors += rc != DXB_OK;
                }
                struct timespec ts = {(time_t)(due / 1000000000ull), (long)(due % 1000000000ull)};
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
                }
            }
            uint64_t now_ns = bench_now_ns(), seq = (uint64_t)sent;
            memcpy(payload, &now_ns, 8);
            memcpy(payload + 8, &seq, 8);
            uint32_t req;
            rc = dxb_client_publish_async(c, &pub, &req);
            if (rc == DXB_EAGAIN) {
                break;
            }
            if (rc != DXB_OK) {
                s_fatal("publish_async", rc, c);
            }
            sent++;
            outstanding++;
        }
        if (outstanding == 0) {
            continue;
        }
        uint32_t req;
        rc = dxb_client_wait_result(c, (int)(STALL_S * 1000), &req, NULL);
        if (rc == DXB_ETIMEOUT) {
            s_fatal("wait_result: no result", rc, c);
        }
        outstanding--;
        results++;
        if (rc != DXB_OK) {
            if (errors++ < 5) {
                fprintf(stderr, "bench-dxb: publish refused: %s (%s)\n", dxb_err_name(rc),
                        dxb_client_last_error(c));
            }
        }
    }
    double t_pub = bench_now() - t0;
    atomic_fetch_sub(&st.expected, errors);
    pthread_join(th, NULL);
    dxb_client_destroy(&c);

    char key[128];
#define PUT(name, v) (snprintf(key, sizeof(key), "%s_%s", w, name), bench_put(key, (v)))
    PUT("n", (double)n);
    PUT("publish_errors", (double)errors);
    PUT("received", (double)st.received);
    PUT("duplicates", (double)st.dups);
    PUT("publish_msgs_s", (double)n / t_pub);
    if (!w2) {
        if (st.received > 1) {
            PUT("drain_msgs_s", (double)(st.received - 1) / (st.t_last - st.t_first));
        }
        PUT("total_msgs_s", (double)st.received / (st.t_last - t0));
        PUT("total_s", st.t_last - t0);
    } else {
        long k = 0;
        for (long i = 0; i < n; i++) {
            if (st.seen[i]) {
                st.lat_ns[k++] = st.lat_ns[i];
            }
        }
        if (k > 0) {
            qsort(st.lat_ns, (size_t)k, sizeof(uint64_t), s_cmp_u64);
            PUT("p50_us", (double)st.lat_ns[(size_t)((double)k * 0.50)] / 1e3);
            PUT("p99_us", (double)st.lat_ns[(size_t)((double)k * 0.99)] / 1e3);
            PUT("p999_us", (double)st.lat_ns[(size_t)((double)k * 0.999)] / 1e3);
            PUT("max_us", (double)st.lat_ns[k - 1] / 1e3);
        }
    }
#undef PUT
    free(st.lat_ns);
    free(st.seen);
    return atomic_load(&st.failed) || st.received + errors < n ? 1 : 0;
}
