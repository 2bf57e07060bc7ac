/* dxb end to end through libdxbclient (the agents' local API).
 *
 *   bench-dxb w1 SEND_API RECV_API TO DATASET N [IGNORED PREFIX]
 *       publish N 1 KiB messages with up to 1000 outstanding, a receiver
 *       thread subscribed at RECV_API drains and acks them concurrently.
 *       PREFIX (default "w1") names the keys.
 *   bench-dxb w2 SEND_API RECV_API TO DATASET N RATE [PREFIX]
 *       publish N messages at RATE msg/s; the payload carries the
 *       CLOCK_MONOTONIC send time; the receiver reports latency percentiles.
 *       PREFIX (default "w2") names the keys, e.g. w3_small_idle gives
 *       w3_small_idle_p50_us (W3 measures small messages next to a transfer).
 *   bench-dxb fanout SEND_API DATASET N SIZE PREFIX NODE=API...
 *       publish N messages of SIZE bytes, each to every NODE (one publish
 *       with all of them as recipients, up to 1000 outstanding), while one
 *       receiver thread per NODE drains and acks at that node's API.
 *   bench-dxb pub SEND_API TO[,TO...] DATASET N SIZE PREFIX
 *       publish only (nobody receives): N messages of SIZE bytes.
 *   bench-dxb recv RECV_API DATASET N PREFIX [STALL_S]
 *       receive only: drain and ack until N distinct messages (by the seq in
 *       the payload) arrived; gives up after STALL_S (default 60) seconds
 *       without a new one.
 *
 * Every payload starts with the CLOCK_MONOTONIC send time and a sequence
 * number (8 bytes each), the rest is 'x'. Results are "key=value" lines on
 * stdout (see bench/README.md). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <dxb_client.h>

#include "bench_util.h"

#define MSG_SIZE 1024
#define WINDOW 1000
#define STALL_S 60.0
#define MAX_RCPT 256

typedef struct {
    const char *api;
    const char *dataset;
    long n;
    double stall_s;
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

static void
s_recv_init(recv_state_t *st, const char *api, const char *dataset, long n)
{
    memset(st, 0, sizeof(*st));
    st->api = api;
    st->dataset = dataset;
    st->n = n;
    st->stall_s = STALL_S;
    atomic_init(&st->expected, n);
    atomic_init(&st->ready, false);
    atomic_init(&st->failed, false);
    st->lat_ns = calloc((size_t)n, sizeof(uint64_t));
    st->seen = calloc((size_t)n, 1);
    if (st->lat_ns == NULL || st->seen == NULL) {
        fprintf(stderr, "bench-dxb: out of memory\n");
        exit(1);
    }
}

static void
s_recv_free(recv_state_t *st)
{
    free(st->lat_ns);
    free(st->seen);
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
            if (now - last_progress > st->stall_s) {
                fprintf(stderr, "bench-dxb: receiver at %s stalled at %ld of %ld\n", st->api,
                        st->received, atomic_load(&st->expected));
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

static void
s_wait_ready(recv_state_t *st)
{
    while (!atomic_load(&st->ready)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static int
s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Publishes n messages of pub->len bytes (rate > 0: paced at rate msg/s),
 * with up to WINDOW outstanding. Returns the number refused; *t0_out is the
 * time of the first publish, *t_end_out that of the last result. */
static long
s_publish(const char *send_api, dxb_client_pub_t *pub, unsigned char *payload, long n,
          double rate, double *t0_out, double *t_end_out)
{
    dxb_client_t *c = NULL;
    dxb_err_t rc = dxb_client_connect(send_api, &c);
    if (rc != DXB_OK) {
        s_fatal("connect (publisher)", rc, NULL);
    }
    long sent = 0, results = 0, errors = 0, outstanding = 0;
    double t0 = bench_now();
    uint64_t t0_ns = bench_now_ns();
    while (results < n) {
        while (sent < n && outstanding < WINDOW) {
            if (rate > 0) {
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
            rc = dxb_client_publish_async(c, pub, &req);
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
    *t0_out = t0;
    *t_end_out = bench_now();
    dxb_client_destroy(&c);
    return errors;
}

static void
s_put(const char *prefix, const char *name, double v)
{
    char key[128];
    snprintf(key, sizeof(key), "%s_%s", prefix, name);
    bench_put(key, v);
}

/* Latency percentiles of the messages st saw. */
static void
s_put_latency(const char *w, recv_state_t *st)
{
    long k = 0;
    for (long i = 0; i < st->n; i++) {
        if (st->seen[i]) {
            st->lat_ns[k++] = st->lat_ns[i];
        }
    }
    if (k > 0) {
        qsort(st->lat_ns, (size_t)k, sizeof(uint64_t), s_cmp_u64);
        s_put(w, "p50_us", (double)st->lat_ns[(size_t)((double)k * 0.50)] / 1e3);
        s_put(w, "p99_us", (double)st->lat_ns[(size_t)((double)k * 0.99)] / 1e3);
        s_put(w, "p999_us", (double)st->lat_ns[(size_t)((double)k * 0.999)] / 1e3);
        s_put(w, "max_us", (double)st->lat_ns[k - 1] / 1e3);
    }
}

/* CPU time (user + system) of this process so far, seconds. */
static double
s_cpu_self(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static unsigned char *
s_payload(size_t size)
{
    unsigned char *p = malloc(size);
    if (p == NULL) {
        fprintf(stderr, "bench-dxb: out of memory\n");
        exit(1);
    }
    memset(p, 'x', size);
    return p;
}

/* w1 / w2: one sender, one receiver. */
static int
s_w12(int argc, char **argv)
{
    bool w2 = strcmp(argv[1], "w2") == 0;
    const char *send_api = argv[2], *to = argv[4], *dataset = argv[5];
    long n = atol(argv[6]);
    double rate = argc > 7 ? atof(argv[7]) : 5000.0;
    if (n < 1 || (w2 && rate <= 0)) {
        return 2;
    }
    const char *w = argc > 8 ? argv[8] : w2 ? "w2" : "w1";

    recv_state_t st;
    s_recv_init(&st, argv[3], dataset, n);
    pthread_t th;
    pthread_create(&th, NULL, s_receiver, &st);
    s_wait_ready(&st);

    unsigned char *payload = s_payload(MSG_SIZE);
    const char *const recipients[] = {to};
    dxb_client_pub_t pub = {dataset, recipients, 1, "bench.bin", payload, MSG_SIZE, 0};
    double t0, t_end;
    long errors = s_publish(send_api, &pub, payload, n, w2 ? rate : 0, &t0, &t_end);
    double t_pub = t_end - t0;
    atomic_fetch_sub(&st.expected, errors);
    pthread_join(th, NULL);

    s_put(w, "n", (double)n);
    s_put(w, "publish_errors", (double)errors);
    s_put(w, "received", (double)st.received);
    s_put(w, "duplicates", (double)st.dups);
    s_put(w, "publish_msgs_s", (double)n / t_pub);
    if (!w2) {
        if (st.received > 1) {
            s_put(w, "drain_msgs_s", (double)(st.received - 1) / (st.t_last - st.t_first));
        }
        s_put(w, "total_msgs_s", (double)st.received / (st.t_last - t0));
        s_put(w, "total_s", st.t_last - t0);
    } else {
        s_put_latency(w, &st);
    }
    bool failed = atomic_load(&st.failed) || st.received + errors < n;
    s_recv_free(&st);
    free(payload);
    return failed ? 1 : 0;
}

/* fanout: one sender, every message to k receivers, each drained by its
 * own thread. */
static int
s_fanout(int argc, char **argv)
{
    const char *send_api = argv[2], *dataset = argv[3], *w = argv[6];
    long n = atol(argv[4]);
    long size = atol(argv[5]);
    int k = argc - 7;
    if (n < 1 || size < 16 || k < 1 || k > MAX_RCPT) {
        return 2;
    }
    static const char *rcpt[MAX_RCPT];
    static recv_state_t st[MAX_RCPT];
    static pthread_t th[MAX_RCPT];
    for (int i = 0; i < k; i++) {
        char *eq = strchr(argv[7 + i], '=');
        if (eq == NULL) {
            fprintf(stderr, "bench-dxb: fanout wants NODE=API, got %s\n", argv[7 + i]);
            return 2;
        }
        *eq = '\0';
        rcpt[i] = argv[7 + i];
        s_recv_init(&st[i], eq + 1, dataset, n);
        pthread_create(&th[i], NULL, s_receiver, &st[i]);
    }
    for (int i = 0; i < k; i++) {
        s_wait_ready(&st[i]);
    }
    unsigned char *payload = s_payload((size_t)size);
    dxb_client_pub_t pub = {dataset, rcpt, (uint16_t)k, "bench.bin", payload, (size_t)size, 0};
    double t0, t_end;
    long errors = s_publish(send_api, &pub, payload, n, 0, &t0, &t_end);
    long received = 0, dups = 0, complete = 0;
    double t_last = t0, slowest = 0, fastest = 0;
    bool failed = false;
    for (int i = 0; i < k; i++) {
        atomic_fetch_sub(&st[i].expected, errors);
        pthread_join(th[i], NULL);
        received += st[i].received;
        dups += st[i].dups;
        complete += st[i].received + errors >= n;
        failed = failed || atomic_load(&st[i].failed);
        if (st[i].received > 0 && st[i].t_last > t_last) {
            t_last = st[i].t_last;
        }
        if (st[i].received > 1) {
            double r = (double)(st[i].received - 1) / (st[i].t_last - st[i].t_first);
            slowest = slowest == 0 || r < slowest ? r : slowest;
            fastest = r > fastest ? r : fastest;
        }
    }
    s_put(w, "n", (double)n);
    s_put(w, "rcpts", (double)k);
    s_put(w, "size", (double)size);
    s_put(w, "publish_errors", (double)errors);
    s_put(w, "received", (double)received);
    s_put(w, "duplicates", (double)dups);
    s_put(w, "rcpts_complete", (double)complete);
    s_put(w, "publish_msgs_s", (double)n / (t_end - t0));
    s_put(w, "total_s", t_last - t0);
    /* a message counts once every recipient has it: N / time to the last */
    s_put(w, "msgs_s", (double)(n - errors) / (t_last - t0));
    s_put(w, "deliveries_s", (double)received / (t_last - t0));
    s_put(w, "drain_slowest_msgs_s", slowest);
    s_put(w, "drain_fastest_msgs_s", fastest);
    s_put(w, "client_cpu_s", s_cpu_self()); /* publisher + receiver threads */
    for (int i = 0; i < k; i++) {
        s_recv_free(&st[i]);
    }
    free(payload);
    return failed || complete < k ? 1 : 0;
}

/* pub: publish only; TO is a comma-separated list of nodes. */
static int
s_pub(int argc, char **argv)
{
    (void)argc;
    const char *send_api = argv[2], *dataset = argv[4], *w = argv[7];
    long n = atol(argv[5]);
    long size = atol(argv[6]);
    if (n < 1 || size < 16) {
        return 2;
    }
    static const char *rcpt[MAX_RCPT];
    int k = 0;
    for (char *tok = strtok(argv[3], ","); tok != NULL && k < MAX_RCPT; tok = strtok(NULL, ",")) {
        rcpt[k++] = tok;
    }
    if (k == 0) {
        return 2;
    }
    unsigned char *payload = s_payload((size_t)size);
    dxb_client_pub_t pub = {dataset, rcpt, (uint16_t)k, "bench.bin", payload, (size_t)size, 0};
    double t0, t_end;
    long errors = s_publish(send_api, &pub, payload, n, 0, &t0, &t_end);
    s_put(w, "n", (double)n);
    s_put(w, "size", (double)size);
    s_put(w, "publish_errors", (double)errors);
    s_put(w, "publish_s", t_end - t0);
    s_put(w, "publish_msgs_s", (double)n / (t_end - t0));
    free(payload);
    return errors > 0 ? 1 : 0;
}

/* recv: drain only. */
static int
s_recv(int argc, char **argv)
{
    const char *w = argv[5];
    long n = atol(argv[4]);
    if (n < 1) {
        return 2;
    }
    recv_state_t st;
    s_recv_init(&st, argv[2], argv[3], n);
    if (argc > 6) {
        st.stall_s = atof(argv[6]);
    }
    double t0 = bench_now();
    s_receiver(&st);
    s_put(w, "received", (double)st.received);
    s_put(w, "duplicates", (double)st.dups);
    if (st.received > 0) {
        s_put(w, "first_s", st.t_first - t0);
        s_put(w, "total_s", st.t_last - t0);
        s_put(w, "total_msgs_s", (double)st.received / (st.t_last - t0));
    }
    if (st.received > 1) {
        s_put(w, "drain_msgs_s", (double)(st.received - 1) / (st.t_last - st.t_first));
    }
    s_put(w, "client_cpu_s", s_cpu_self());
    bool failed = atomic_load(&st.failed) || st.received < n;
    s_recv_free(&st);
    return failed ? 1 : 0;
}

int
main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if ((strcmp(mode, "w1") == 0 || strcmp(mode, "w2") == 0) && argc >= 7) {
        return s_w12(argc, argv);
    }
    if (strcmp(mode, "fanout") == 0 && argc >= 8) {
        return s_fanout(argc, argv);
    }
    if (strcmp(mode, "pub") == 0 && argc == 8) {
        return s_pub(argc, argv);
    }
    if (strcmp(mode, "recv") == 0 && (argc == 6 || argc == 7)) {
        return s_recv(argc, argv);
    }
    fprintf(stderr,
            "usage: bench-dxb w1|w2 SEND_API RECV_API TO DATASET N [RATE [PREFIX]]\n"
            "       bench-dxb fanout SEND_API DATASET N SIZE PREFIX NODE=API...\n"
            "       bench-dxb pub SEND_API TO[,TO...] DATASET N SIZE PREFIX\n"
            "       bench-dxb recv RECV_API DATASET N PREFIX [STALL_S]\n");
    return 2;
}
