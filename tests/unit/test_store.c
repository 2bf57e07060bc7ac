/* Unit tests for common/dxb_store (one LMDB environment opened safely),
 * common/dxb_audit (the hash-chained audit log) and broker/brk_queue (the
 * broker's durable FIFOs, bodies stored once, dedup, TTL and dead letters).
 *
 * Each test runs in a fresh mkdtemp directory; the store lives in <tmp>/db,
 * which does not exist until dxb_store_open creates it. Envelopes are built
 * with the real codec (dxb_msg_enc_header + dxb_msg_enc_env) and decoded with
 * dxb_msg_decode_env, exactly as the broker receives them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <ftw.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/brk_queue.h"
#include "common/dxb_audit.h"
#include "common/dxb_store.h"
#include "common/dxb_util.h"
#include "proto/dxb_msg.h"
#include "proto/dxb_seal.h"

#define T_MIB (1024u * 1024u)
#define T_MAP_BYTES (64ull * T_MIB)
#define T_SENDER "sq.hrss"
#define T_NOW_MS 1767225600000ull /* 2026-01-01T00:00:00Z */
#define T_TTL_MS 86400000ull

/* ---- fixture ------------------------------------------------------------ */

typedef struct {
    char root[64];  /* mkdtemp directory, removed at teardown */
    char dir[96];   /* root/db: the store directory */
    dxb_store_t *store;
    brk_queue_t *q;
    MDB_dbi kv;     /* "kv" (store tests) */
    MDB_dbi audit;  /* "audit" (audit tests) */
    dxb_audit_t a;
} t_fx_t;

static int
s_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int
s_setup(void **state)
{
    t_fx_t *fx = calloc(1, sizeof(*fx));
    if (fx == NULL) {
        return -1;
    }
    snprintf(fx->root, sizeof(fx->root), "/tmp/dxb-test-store-XXXXXX");
    if (mkdtemp(fx->root) == NULL) {
        free(fx);
        return -1;
    }
    snprintf(fx->dir, sizeof(fx->dir), "%s/db", fx->root);
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    t_fx_t *fx = *state;
    brk_queue_destroy(&fx->q);
    dxb_store_destroy(&fx->store);
    int rc = nftw(fx->root, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return rc == 0 ? 0 : -1;
}

static dxb_err_t
t_open_at(dxb_store_t **out, const char *dir, uint64_t map_size_bytes)
{
    dxb_store_opts_t opts = {
        .dir = dir, .map_size_bytes = map_size_bytes, .durable = true, .max_dbs = 16};
    return dxb_store_open(out, &opts);
}

static void
t_open(t_fx_t *fx, uint64_t map_size_bytes)
{
    assert_int_equal(t_open_at(&fx->store, fx->dir, map_size_bytes), DXB_OK);
    assert_non_null(fx->store);
}

static MDB_txn *
t_begin(t_fx_t *fx, bool write)
{
    MDB_txn *txn = NULL;
    assert_int_equal(dxb_store_begin(fx->store, write, &txn), DXB_OK);
    assert_non_null(txn);
    return txn;
}

static void
t_commit(t_fx_t *fx, MDB_txn **txn_p)
{
    assert_int_equal(dxb_store_commit(fx->store, txn_p), DXB_OK);
    assert_null(*txn_p);
}

static size_t
t_entries(t_fx_t *fx, MDB_dbi dbi)
{
    MDB_txn *txn = t_begin(fx, false);
    MDB_stat st;
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    dxb_store_abort(&txn);
    return st.ms_entries;
}

static void
t_kv_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const char *val)
{
    MDB_val k = {strlen(key), (void *)key}, v = {strlen(val), (void *)val};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
}

/* ---- dxb_store ------------------------------------------------------------ */

static void
test_store_open_creates_missing_dir_0700(void **state)
{
    t_fx_t *fx = *state;
    struct stat st;
    assert_int_not_equal(stat(fx->dir, &st), 0);
    t_open(fx, T_MAP_BYTES);
    assert_int_equal(stat(fx->dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    char path[160];
    snprintf(path, sizeof(path), "%s/data.mdb", fx->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_false(dxb_store_failed(fx->store));
}

static void
test_store_second_open_same_dir_is_eexist_until_destroy(void **state)
{
    t_fx_t *fx = *state;
    t_open(fx, T_MAP_BYTES);
    dxb_store_t *second = NULL;
    assert_int_equal(t_open_at(&second, fx->dir, T_MAP_BYTES), DXB_EEXIST);
    assert_null(second);
    /* The refusal leaves the first store working. */
    assert_int_equal(dxb_store_dbi(fx->store, "kv", 0, &fx->kv), DXB_OK);
    MDB_txn *txn = t_begin(fx, true);
    t_kv_put(txn, fx->kv, "k", "v");
    t_commit(fx, &txn);

    dxb_store_destroy(&fx->store);
    assert_null(fx->store);
    dxb_store_destroy(&fx->store); /* NULL-safe */
    assert_int_equal(t_open_at(&second, fx->dir, T_MAP_BYTES), DXB_OK);
    assert_non_null(second);
    dxb_store_destroy(&second);
    assert_null(second);
}

static void
test_store_committed_put_survives_reopen_aborted_does_not(void **state)
{
    t_fx_t *fx = *state;
    t_open(fx, T_MAP_BYTES);
    assert_int_equal(dxb_store_dbi(fx->store, "kv", 0, &fx->kv), DXB_OK);
    MDB_txn *txn = t_begin(fx, true);
    t_kv_put(txn, fx->kv, "kept", "value-1");
    t_commit(fx, &txn);
    txn = t_begin(fx, true);
    t_kv_put(txn, fx->kv, "lost", "value-2");
    dxb_store_abort(&txn);
    assert_null(txn);
    dxb_store_abort(&txn); /* NULL-safe */
    dxb_store_destroy(&fx->store);

    t_open(fx, T_MAP_BYTES);
    assert_int_equal(dxb_store_dbi(fx->store, "kv", 0, &fx->kv), DXB_OK);
    txn = t_begin(fx, false);
    MDB_val k = {4, "kept"}, v;
    assert_int_equal(mdb_get(txn, fx->kv, &k, &v), 0);
    assert_int_equal(v.mv_size, 7);
    assert_memory_equal(v.mv_data, "value-1", 7);
    MDB_val k2 = {4, "lost"};
    assert_int_equal(dxb_store_err(mdb_get(txn, fx->kv, &k2, &v), "get"), DXB_ENOTFOUND);
    dxb_store_abort(&txn);
}

static void
test_store_full_map_is_efull_and_store_stays_usable(void **state)
{
    t_fx_t *fx = *state;
    t_open(fx, 1 * T_MIB);
    assert_int_equal(dxb_store_dbi(fx->store, "kv", 0, &fx->kv), DXB_OK);
    static uint8_t big[64 * 1024];
    memset(big, 0xab, sizeof(big));

    /* One 64 KiB value per transaction until the map is full: LMDB reports
     * it either from mdb_put (no page left) or from the commit. */
    dxb_err_t err = DXB_OK;
    uint64_t stored = 0;
    for (uint64_t i = 0; i < 64 && err == DXB_OK; i++) {
        MDB_txn *txn = t_begin(fx, true);
        uint8_t key[8];
        dxb_be64_put(key, i);
        MDB_val k = {8, key}, v = {sizeof(big), big};
        err = dxb_store_err(mdb_put(txn, fx->kv, &k, &v, 0), "put");
        if (err) {
            dxb_store_abort(&txn);
            break;
        }
        err = dxb_store_commit(fx->store, &txn);
        assert_null(txn);
        if (err == DXB_OK) {
            stored++;
        }
    }
    assert_int_equal(err, DXB_EFULL);
    assert_true(stored > 0);
    assert_false(dxb_store_failed(fx->store));
    uint64_t used = 0, map = 0;
    dxb_store_usage(fx->store, &used, &map);
    assert_int_equal(map, 1 * T_MIB);
    assert_true(used > 0 && used <= map);

    /* Nothing committed is lost. */
    assert_int_equal(t_entries(fx, fx->kv), stored);

    /* Delete data, then one extra commit so LMDB can reuse the freed pages
     * (they are reusable only once no snapshot can see them). */
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(mdb_drop(txn, fx->kv, 0), 0);
    t_commit(fx, &txn);
    txn = t_begin(fx, true);
    t_kv_put(txn, fx->kv, "tick", "1");
    t_commit(fx, &txn);

    txn = t_begin(fx, true);
    t_kv_put(txn, fx->kv, "small", "after-full");
    t_commit(fx, &txn);
    txn = t_begin(fx, false);
    MDB_val k = {5, "small"}, v;
    assert_int_equal(mdb_get(txn, fx->kv, &k, &v), 0);
    assert_int_equal(v.mv_size, 10);
    dxb_store_abort(&txn);
}

static void
test_store_be64_round_trips_and_sorts_numerically(void **state)
{
    static const uint64_t vals[] = {0,
                                    1,
                                    255,
                                    256,
                                    65535,
                                    65536,
                                    0xffffffffull,
                                    0x100000000ull,
                                    0x0102030405060708ull,
                                    0x7fffffffffffffffull,
                                    0x8000000000000000ull,
                                    UINT64_MAX};
    const size_t n = sizeof(vals) / sizeof(vals[0]);
    uint8_t enc[sizeof(vals) / sizeof(vals[0])][8];
    for (size_t i = 0; i < n; i++) {
        dxb_be64_put(enc[i], vals[i]);
        assert_int_equal(dxb_be64_get(enc[i]), vals[i]);
    }
    /* Big-endian: most significant byte first. */
    static const uint8_t want[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(enc[8], want, 8);
    /* vals is ascending, so byte order (memcmp, LMDB's default) must agree. */
    for (size_t i = 0; i + 1 < n; i++) {
        assert_true(memcmp(enc[i], enc[i + 1], 8) < 0);
    }
}

/* ---- dxb_audit ------------------------------------------------------------ */

static void
t_audit_open(t_fx_t *fx)
{
    t_open(fx, T_MAP_BYTES);
    assert_int_equal(dxb_store_dbi(fx->store, "audit", 0, &fx->audit), DXB_OK);
    MDB_txn *txn = t_begin(fx, false);
    assert_int_equal(dxb_audit_init(&fx->a, txn, fx->audit), DXB_OK);
    dxb_store_abort(&txn);
}

/* Appends n records in one transaction, commits and settles. */
static void
t_audit_append_n(t_fx_t *fx, unsigned n)
{
    MDB_txn *txn = t_begin(fx, true);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(dxb_audit_append(&fx->a, txn, "admin", "test", "obj", "ok", "i=%u", i),
                         DXB_OK);
    }
    t_commit(fx, &txn);
    dxb_audit_settle(&fx->a, true);
}

static dxb_err_t
t_audit_verify(t_fx_t *fx, uint64_t *count, uint64_t *bad_seq)
{
    MDB_txn *txn = t_begin(fx, false);
    dxb_err_t err = dxb_audit_verify(txn, fx->audit, count, bad_seq);
    dxb_store_abort(&txn);
    return err;
}

/* Copies the raw value of record seq into buf (cap bytes); returns its length. */
static size_t
t_audit_raw(t_fx_t *fx, uint64_t seq, uint8_t *buf, size_t cap)
{
    MDB_txn *txn = t_begin(fx, false);
    uint8_t key[8];
    dxb_be64_put(key, seq);
    MDB_val k = {8, key}, v;
    assert_int_equal(mdb_get(txn, fx->audit, &k, &v), 0);
    assert_true(v.mv_size <= cap);
    memcpy(buf, v.mv_data, v.mv_size);
    size_t len = v.mv_size;
    dxb_store_abort(&txn);
    return len;
}

/* Overwrites record seq with raw bytes, bypassing dxb_audit (an attacker with
 * write access to data.mdb). */
static void
t_audit_overwrite(t_fx_t *fx, uint64_t seq, const uint8_t *buf, size_t len)
{
    MDB_txn *txn = t_begin(fx, true);
    uint8_t key[8];
    dxb_be64_put(key, seq);
    MDB_val k = {8, key}, v = {len, (void *)buf};
    assert_int_equal(mdb_put(txn, fx->audit, &k, &v, 0), 0);
    t_commit(fx, &txn);
}

static void
t_audit_delete(t_fx_t *fx, uint64_t seq)
{
    MDB_txn *txn = t_begin(fx, true);
    uint8_t key[8];
    dxb_be64_put(key, seq);
    MDB_val k = {8, key};
    assert_int_equal(mdb_del(txn, fx->audit, &k, NULL), 0);
    t_commit(fx, &txn);
}

static void
test_audit_empty_log_verifies_with_count_zero(void **state)
{
    t_fx_t *fx = *state;
    t_audit_open(fx);
    assert_int_equal(fx->a.committed.seq, 0);
    uint64_t count = 99, bad = 99;
    assert_int_equal(t_audit_verify(fx, &count, &bad), DXB_OK);
    assert_int_equal(count, 0);
    assert_int_equal(bad, 0);
}

static void
test_audit_n_appends_in_one_txn_verify_with_count_n(void **state)
{
    t_fx_t *fx = *state;
    t_audit_open(fx);
    t_audit_append_n(fx, 7);
    assert_int_equal(fx->a.committed.seq, 7);
    assert_int_equal(fx->a.working.seq, 7);
    uint64_t count = 0, bad = 99;
    assert_int_equal(t_audit_verify(fx, &count, &bad), DXB_OK);
    assert_int_equal(count, 7);
    assert_int_equal(bad, 0);

    /* Record layout: hash || prev_hash || text; seq 1 chains from zeros, and
     * control characters in fields cannot forge the tab structure. */
    uint8_t r1[4096], r2[4096];
    size_t l1 = t_audit_raw(fx, 1, r1, sizeof(r1));
    t_audit_raw(fx, 2, r2, sizeof(r2));
    static const uint8_t zeros[32];
    assert_memory_equal(r1 + 32, zeros, 32);
    assert_memory_equal(r2 + 32, r1, 32);
    char text[4096];
    memcpy(text, r1 + 64, l1 - 64);
    text[l1 - 64] = 0;
    assert_non_null(strstr(text, "\tadmin\ttest\tobj\tok\ti=0"));
}

static void
test_audit_head_reloads_from_last_record_on_init(void **state)
{
    t_fx_t *fx = *state;
    t_audit_open(fx);
    t_audit_append_n(fx, 3);
    dxb_audit_head_t before = fx->a.committed;
    dxb_store_destroy(&fx->store);
    memset(&fx->a, 0, sizeof(fx->a));
    t_audit_open(fx);
    assert_int_equal(fx->a.committed.seq, 3);
    assert_memory_equal(fx->a.committed.hash, before.hash, 32);
    t_audit_append_n(fx, 2);
    uint64_t count = 0, bad = 0;
    assert_int_equal(t_audit_verify(fx, &count, &bad), DXB_OK);
    assert_int_equal(count, 5);
}

static void
test_audit_settle_false_after_abort_rolls_head_back(void **state)
{
    t_fx_t *fx = *state;
    t_audit_open(fx);
    t_audit_append_n(fx, 3);
    dxb_audit_head_t committed = fx->a.committed;

    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(dxb_audit_append(&fx->a, txn, "admin", "lost", "obj", "ok", "x"), DXB_OK);
    assert_int_equal(dxb_audit_append(&fx->a, txn, "admin", "lost", "obj", "ok", "y"), DXB_OK);
    assert_int_equal(fx->a.working.seq, 5);
    dxb_store_abort(&txn);
    dxb_audit_settle(&fx->a, false);
    assert_int_equal(fx->a.working.seq, 3);
    assert_memory_equal(fx->a.working.hash, committed.hash, 32);

    /* The next append continues the chain from seq 3 and the log verifies. */
    t_audit_append_n(fx, 1);
    assert_int_equal(fx->a.committed.seq, 4);
    uint64_t count = 0, bad = 99;
    assert_int_equal(t_audit_verify(fx, &count, &bad), DXB_OK);
    assert_int_equal(count, 4);
    assert_int_equal(bad, 0);
}

static void
test_audit_changed_text_byte_fails_verify_at_that_seq(void **state)
{
    t_fx_t *fx = *state;
    t_audit_open(fx);
    t_audit_append_n(fx, 5);
    uint8_t buf[4096];
    size_t len = t_audit_raw(fx, 3, buf, sizeof(buf));
    assert_true(len > 64);
    buf[len - 1] ^= 0x01; /* last byte of the detail field */
    t_audit_overwrite(fx, 3, buf, len);
    uint64_t count = 0, bad = 0;
    assert_int_equal(t_audit_verify(fx, &count, &bad), DXB_EINTEGRITY);
    assert_int_equal(bad, 3);
    assert_int_equal(count, 2);
}

static void
test_audit_deleted_middle_record_fails_verify_at_missing_seq(void **state)
{
    t_fx_t *fx = *state;
    t_audit_open(fx);
    t_audit_append_n(fx, 5);
    t_audit_delete(fx, 3);
    uint64_t count = 0, bad = 0;
    assert_int_equal(t_audit_verify(fx, &count, &bad), DXB_EINTEGRITY);
    assert_int_equal(bad, 3);
    assert_int_equal(count, 2);
}

static void
test_audit_swapped_records_fail_verify_at_first_of_them(void **state)
{
    t_fx_t *fx = *state;
    t_audit_open(fx);
    t_audit_append_n(fx, 5);
    uint8_t b2[4096], b4[4096];
    size_t l2 = t_audit_raw(fx, 2, b2, sizeof(b2));
    size_t l4 = t_audit_raw(fx, 4, b4, sizeof(b4));
    t_audit_overwrite(fx, 2, b4, l4);
    t_audit_overwrite(fx, 4, b2, l2);
    uint64_t count = 0, bad = 0;
    assert_int_equal(t_audit_verify(fx, &count, &bad), DXB_EINTEGRITY);
    assert_int_equal(bad, 2);
    assert_int_equal(count, 1);
}

/* KNOWN LIMITATION, documented on purpose: the chain alone cannot detect a
 * truncated tail; what is left is a valid, shorter chain. Detecting it needs
 * a signed checkpoint of (seq, hash) kept outside the store (future work).
 * When that lands, this test should change to expect DXB_EINTEGRITY. */
static void
test_audit_truncated_tail_is_not_detected_by_chain_alone(void **state)
{
    t_fx_t *fx = *state;
    t_audit_open(fx);
    t_audit_append_n(fx, 5);
    t_audit_delete(fx, 5);
    t_audit_delete(fx, 4);
    uint64_t count = 0, bad = 99;
    assert_int_equal(t_audit_verify(fx, &count, &bad), DXB_OK);
    assert_int_equal(count, 3);
    assert_int_equal(bad, 0);
}

/* ---- brk_queue ------------------------------------------------------------ */

#define T_NA "sq.mca"
#define T_NB "js.province"
#define T_NC "sq.stats"

/* One encoded envelope and its decoded view (which borrows sb). */
typedef struct {
    msgpack_sbuffer sb;
    dxb_env_t env;
} t_env_t;

static void
t_env_build(t_env_t *te, uint8_t id_byte, const char *sender, const char *body)
{
    uint8_t msg_id[16];
    memset(msg_id, id_byte, sizeof(msg_id));
    static const char *const rcpts[] = {T_NA, T_NB, T_NC};
    dxb_header_in_t h = {
        .msg_id = msg_id,
        .sender = sender,
        .dataset = "hr.employees",
        .kind = DXB_KIND_DELIVERY,
        .seq = id_byte == 0 ? 1 : id_byte,
        .created_ms = T_NOW_MS,
        .ttl_s = 86400,
        .recipients = rcpts,
        .n_recipients = 3,
        .region = "",
        .suite = 1,
        .flags = 0,
        .body_len = strlen(body),
    };
    msgpack_sbuffer hb;
    msgpack_sbuffer_init(&hb);
    assert_int_equal(dxb_msg_enc_header(&hb, &h), DXB_OK);
    uint8_t hash[DXB_HASH_BYTES];
    dxb_seal_body_hash((const uint8_t *)body, strlen(body), hash);
    msgpack_sbuffer_init(&te->sb);
    dxb_bytes_t hraw = {(const uint8_t *)hb.data, hb.size};
    dxb_bytes_t braw = {(const uint8_t *)body, strlen(body)};
    assert_int_equal(dxb_msg_enc_env(&te->sb, hraw, hash, braw), DXB_OK);
    msgpack_sbuffer_destroy(&hb);
    char detail[128];
    assert_int_equal(dxb_msg_decode_env((const uint8_t *)te->sb.data, te->sb.size, &te->env,
                                        detail, sizeof(detail)),
                     DXB_OK);
    assert_int_equal(te->env.raw.len, te->sb.size);
}

static void
t_env_free(t_env_t *te)
{
    msgpack_sbuffer_destroy(&te->sb);
}

static void
t_queue_open(t_fx_t *fx)
{
    t_open(fx, T_MAP_BYTES);
    assert_int_equal(brk_queue_open(&fx->q, fx->store), DXB_OK);
    assert_non_null(fx->q);
}

/* Puts te to the given recipients in its own committed transaction. */
static dxb_err_t
t_put(t_fx_t *fx, const t_env_t *te, const char *const *nodes, size_t n, uint64_t now_ms,
      uint64_t expires_ms)
{
    char rcpt[3][DXB_ID_CAP];
    assert_true(n <= 3);
    for (size_t i = 0; i < n; i++) {
        assert_true(dxb_strlcpy(rcpt[i], nodes[i], sizeof(rcpt[i])));
    }
    MDB_txn *txn = t_begin(fx, true);
    dxb_err_t err = brk_queue_put(fx->q, txn, &te->env, rcpt, n, now_ms, expires_ms);
    if (err) {
        dxb_store_abort(&txn);
        return err;
    }
    t_commit(fx, &txn);
    return DXB_OK;
}

static void
t_put_ok(t_fx_t *fx, const t_env_t *te, const char *const *nodes, size_t n, uint64_t now_ms)
{
    assert_int_equal(t_put(fx, te, nodes, n, now_ms, now_ms + T_TTL_MS), DXB_OK);
}

static const char *const T_ALL3[] = {T_NA, T_NB, T_NC};

/* Entries seen by a scan; env bytes are copied out of the read txn. */
typedef struct {
    size_t n;
    size_t stop_after; /* 0 = never stop */
    brk_qentry_t e[8];
    uint8_t env[8][512];
    size_t env_len[8];
} t_seen_t;

static bool
s_visit(void *arg, const brk_qentry_t *e, const uint8_t *env, size_t env_len)
{
    t_seen_t *s = arg;
    assert_true(s->n < 8);
    s->e[s->n] = *e;
    assert_non_null(env);
    assert_true(env_len <= sizeof(s->env[0]));
    memcpy(s->env[s->n], env, env_len);
    s->env_len[s->n] = env_len;
    s->n++;
    return s->stop_after == 0 || s->n < s->stop_after;
}

static void
t_scan(t_fx_t *fx, const char *node, uint64_t from, t_seen_t *seen)
{
    size_t stop = seen->stop_after;
    memset(seen, 0, sizeof(*seen));
    seen->stop_after = stop;
    MDB_txn *txn = t_begin(fx, false);
    assert_int_equal(brk_queue_scan(fx->q, txn, node, from, s_visit, seen), DXB_OK);
    dxb_store_abort(&txn);
}

static void
t_assert_env(const t_seen_t *seen, size_t i, const t_env_t *te)
{
    assert_memory_equal(seen->e[i].msg_id, te->env.hdr.msg_id, 16);
    assert_int_equal(seen->e[i].size, te->env.raw.len);
    assert_int_equal(seen->env_len[i], te->env.raw.len);
    assert_memory_equal(seen->env[i], te->env.raw.ptr, te->env.raw.len);
}

static brk_qdepth_t
t_depth(t_fx_t *fx, const char *node)
{
    brk_qdepth_t d;
    MDB_txn *txn = t_begin(fx, false);
    assert_int_equal(brk_queue_depth(fx->q, txn, node, &d), DXB_OK);
    dxb_store_abort(&txn);
    return d;
}

static void
t_ack(t_fx_t *fx, const char *node, uint64_t qseq)
{
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(brk_queue_ack(fx->q, txn, node, qseq), DXB_OK);
    t_commit(fx, &txn);
}

static void
t_dead(t_fx_t *fx, const char *node, uint64_t qseq, uint16_t code, const char *reason)
{
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(brk_queue_dead(fx->q, txn, node, qseq, code, reason), DXB_OK);
    t_commit(fx, &txn);
    dxb_audit_settle(&fx->q->audit, true);
}

typedef struct {
    size_t n;
    brk_dlqrec_t rec[8];
    bool has_env[8];
    size_t env_len[8];
} t_dlq_seen_t;

static bool
s_dlq_visit(void *arg, const brk_dlqrec_t *rec, const uint8_t *env, size_t env_len)
{
    t_dlq_seen_t *s = arg;
    assert_true(s->n < 8);
    s->rec[s->n] = *rec;
    s->has_env[s->n] = env != NULL;
    s->env_len[s->n] = env_len;
    s->n++;
    return true;
}

static void
t_dlq_scan(t_fx_t *fx, t_dlq_seen_t *seen)
{
    memset(seen, 0, sizeof(*seen));
    MDB_txn *txn = t_begin(fx, false);
    assert_int_equal(brk_queue_dlq_scan(fx->q, txn, s_dlq_visit, seen), DXB_OK);
    dxb_store_abort(&txn);
}

static void
test_queue_put_to_three_stores_body_once_with_three_entries(void **state)
{
    t_fx_t *fx = *state;
    t_queue_open(fx);
    t_env_t a;
    t_env_build(&a, 0xa1, T_SENDER, "body-a");
    t_put_ok(fx, &a, T_ALL3, 3, T_NOW_MS);

    assert_int_equal(t_entries(fx, fx->q->msg), 1);
    assert_int_equal(t_entries(fx, fx->q->q), 3);
    assert_int_equal(t_entries(fx, fx->q->exp), 3);
    assert_int_equal(t_entries(fx, fx->q->dedup), 1);
    for (size_t i = 0; i < 3; i++) {
        t_seen_t seen = {0};
        t_scan(fx, T_ALL3[i], 0, &seen);
        assert_int_equal(seen.n, 1);
        assert_int_equal(seen.e[0].qseq, 1);
        assert_int_equal(seen.e[0].attempts, 0);
        assert_int_equal(seen.e[0].enq_ms, T_NOW_MS);
        assert_int_equal(seen.e[0].expires_ms, T_NOW_MS + T_TTL_MS);
        t_assert_env(&seen, 0, &a);
    }
    t_env_free(&a);
}

static void
test_queue_scan_returns_fifo_order_with_env_bytes(void **state)
{
    t_fx_t *fx = *state;
    t_queue_open(fx);
    t_env_t e[3];
    t_env_build(&e[0], 0x01, T_SENDER, "first");
    t_env_build(&e[1], 0x02, T_SENDER, "second-body");
    t_env_build(&e[2], 0x03, T_SENDER, "third");
    static const char *const only_a[] = {T_NA};
    static const char *const a_and_b[] = {T_NB, T_NA};
    t_put_ok(fx, &e[0], only_a, 1, T_NOW_MS);
    t_put_ok(fx, &e[1], a_and_b, 2, T_NOW_MS + 1);
    t_put_ok(fx, &e[2], only_a, 1, T_NOW_MS + 2);

    t_seen_t seen = {0};
    t_scan(fx, T_NA, 0, &seen);
    assert_int_equal(seen.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(seen.e[i].qseq, i + 1);
        assert_int_equal(seen.e[i].enq_ms, T_NOW_MS + i);
        t_assert_env(&seen, i, &e[i]);
    }
    /* Another node's FIFO is separate and numbered on its own. */
    t_scan(fx, T_NB, 0, &seen);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.e[0].qseq, 1);
    t_assert_env(&seen, 0, &e[1]);
    /* from_qseq skips earlier entries; the visitor can stop the scan. */
    t_scan(fx, T_NA, 2, &seen);
    assert_int_equal(seen.n, 2);
    t_assert_env(&seen, 0, &e[1]);
    t_assert_env(&seen, 1, &e[2]);
    seen.stop_after = 1;
    t_scan(fx, T_NA, 0, &seen);
    assert_int_equal(seen.n, 1);
    t_assert_env(&seen, 0, &e[0]);
    /* A node without a FIFO scans empty. */
    seen.stop_after = 0;
    t_scan(fx, T_NC, 0, &seen);
    assert_int_equal(seen.n, 0);

    brk_qentry_t got;
    MDB_txn *txn = t_begin(fx, false);
    assert_int_equal(brk_queue_get(fx->q, txn, T_NA, 2, &got), DXB_OK);
    assert_memory_equal(got.msg_id, e[1].env.hdr.msg_id, 16);
    assert_int_equal(brk_queue_get(fx->q, txn, T_NA, 4, &got), DXB_ENOTFOUND);
    dxb_store_abort(&txn);
    for (size_t i = 0; i < 3; i++) {
        t_env_free(&e[i]);
    }
}

static void
test_queue_ack_of_all_recipients_deletes_body(void **state)
{
    t_fx_t *fx = *state;
    t_queue_open(fx);
    t_env_t a;
    t_env_build(&a, 0xa1, T_SENDER, "body-a");
    t_put_ok(fx, &a, T_ALL3, 3, T_NOW_MS);

    t_ack(fx, T_NA, 1);
    assert_int_equal(t_entries(fx, fx->q->msg), 1);
    assert_int_equal(t_entries(fx, fx->q->q), 2);
    t_ack(fx, T_NB, 1);
    assert_int_equal(t_entries(fx, fx->q->msg), 1);
    t_ack(fx, T_NC, 1);
    assert_int_equal(t_entries(fx, fx->q->msg), 0);
    assert_int_equal(t_entries(fx, fx->q->q), 0);
    assert_int_equal(t_entries(fx, fx->q->exp), 0);
    for (size_t i = 0; i < 3; i++) {
        brk_qdepth_t d = t_depth(fx, T_ALL3[i]);
        assert_int_equal(d.msgs, 0);
        assert_int_equal(d.bytes, 0);
    }
    /* Acking again is not found and changes nothing. */
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(brk_queue_ack(fx->q, txn, T_NA, 1), DXB_ENOTFOUND);
    dxb_store_abort(&txn);
    t_env_free(&a);
}

static void
test_queue_same_msg_id_same_sender_again_is_eexist_and_stores_nothing(void **state)
{
    t_fx_t *fx = *state;
    t_queue_open(fx);
    t_env_t a, again;
    t_env_build(&a, 0xa1, T_SENDER, "body-a");
    t_env_build(&again, 0xa1, T_SENDER, "other-body-same-id");
    t_put_ok(fx, &a, T_ALL3, 3, T_NOW_MS);

    /* Commit the transaction that got EEXIST: nothing of it may be stored. */
    char rcpt[3][DXB_ID_CAP] = {T_NA, T_NB, T_NC};
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(brk_queue_put(fx->q, txn, &again.env, rcpt, 3, T_NOW_MS + 5,
                                   T_NOW_MS + T_TTL_MS),
                     DXB_EEXIST);
    t_commit(fx, &txn);

    assert_int_equal(t_entries(fx, fx->q->msg), 1);
    assert_int_equal(t_entries(fx, fx->q->q), 3);
    assert_int_equal(t_entries(fx, fx->q->exp), 3);
    assert_int_equal(t_entries(fx, fx->q->dedup), 1);
    assert_int_equal(t_entries(fx, fx->q->dedupt), 1);
    t_seen_t seen = {0};
    t_scan(fx, T_NA, 0, &seen);
    assert_int_equal(seen.n, 1);
    t_assert_env(&seen, 0, &a); /* the first body, not the duplicate's */
    brk_qdepth_t d = t_depth(fx, T_NA);
    assert_int_equal(d.msgs, 1);
    assert_int_equal(d.bytes, a.env.raw.len);
    t_env_free(&a);
    t_env_free(&again);
}

static void
test_queue_dead_moves_entry_to_dlq_and_keeps_body(void **state)
{
    t_fx_t *fx = *state;
    t_queue_open(fx);
    t_env_t a;
    t_env_build(&a, 0xa1, T_SENDER, "body-a");
    t_put_ok(fx, &a, T_ALL3, 3, T_NOW_MS);

    uint32_t attempts = 0;
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(brk_queue_bump(fx->q, txn, T_NB, 1, &attempts), DXB_OK);
    assert_int_equal(attempts, 1);
    assert_int_equal(brk_queue_bump(fx->q, txn, T_NB, 1, &attempts), DXB_OK);
    assert_int_equal(attempts, 2);
    t_commit(fx, &txn);
    t_dead(fx, T_NB, 1, DXB_W_EDENIED, "denied");

    t_dlq_seen_t dl;
    t_dlq_scan(fx, &dl);
    assert_int_equal(dl.n, 1);
    assert_int_equal(dl.rec[0].dlq_id, 1);
    assert_string_equal(dl.rec[0].node, T_NB);
    assert_memory_equal(dl.rec[0].msg_id, a.env.hdr.msg_id, 16);
    assert_int_equal(dl.rec[0].code, DXB_W_EDENIED);
    assert_int_equal(dl.rec[0].attempts, 2);
    assert_string_equal(dl.rec[0].reason, "denied");
    assert_true(dl.has_env[0]);
    assert_int_equal(dl.env_len[0], a.env.raw.len);

    brk_qdepth_t d = t_depth(fx, T_NB);
    assert_int_equal(d.msgs, 0);
    assert_int_equal(d.bytes, 0);
    assert_int_equal(d.head_qseq, 0);
    assert_int_equal(t_depth(fx, T_NA).msgs, 1);
    assert_int_equal(t_entries(fx, fx->q->msg), 1);
    assert_int_equal(t_entries(fx, fx->q->q), 2);
    assert_int_equal(t_entries(fx, fx->q->exp), 2);

    /* The dead letter is audited in the same transaction. */
    uint64_t count = 0, bad = 0;
    txn = t_begin(fx, false);
    assert_int_equal(dxb_audit_verify(txn, fx->q->auditdb, &count, &bad), DXB_OK);
    dxb_store_abort(&txn);
    assert_int_equal(count, 1);
    assert_int_equal(fx->q->audit.committed.seq, 1);

    /* The other recipients' acks do not release the dead letter's body. */
    t_ack(fx, T_NA, 1);
    t_ack(fx, T_NC, 1);
    assert_int_equal(t_entries(fx, fx->q->msg), 1);
    t_env_free(&a);
}

static void
test_queue_dlq_retry_requeues_at_tail(void **state)
{
    t_fx_t *fx = *state;
    t_queue_open(fx);
    t_env_t a, b;
    t_env_build(&a, 0xa1, T_SENDER, "body-a");
    t_env_build(&b, 0xb2, T_SENDER, "body-bb");
    static const char *const only_a[] = {T_NA};
    t_put_ok(fx, &a, only_a, 1, T_NOW_MS);
    t_put_ok(fx, &b, only_a, 1, T_NOW_MS + 1);
    uint32_t attempts = 0;
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(brk_queue_bump(fx->q, txn, T_NA, 1, &attempts), DXB_OK);
    t_commit(fx, &txn);
    t_dead(fx, T_NA, 1, DXB_W_EIO, "attempts");

    const uint64_t retry_ms = T_NOW_MS + 1000;
    txn = t_begin(fx, true);
    assert_int_equal(brk_queue_dlq_retry(fx->q, txn, 1, retry_ms, 5000), DXB_OK);
    t_commit(fx, &txn);

    t_dlq_seen_t dl;
    t_dlq_scan(fx, &dl);
    assert_int_equal(dl.n, 0);
    t_seen_t seen = {0};
    t_scan(fx, T_NA, 0, &seen);
    assert_int_equal(seen.n, 2);
    assert_int_equal(seen.e[0].qseq, 2);
    t_assert_env(&seen, 0, &b);
    assert_int_equal(seen.e[1].qseq, 3);
    t_assert_env(&seen, 1, &a);
    assert_int_equal(seen.e[1].attempts, 0);
    assert_int_equal(seen.e[1].enq_ms, retry_ms);
    assert_int_equal(seen.e[1].expires_ms, retry_ms + 5000);
    brk_qdepth_t d = t_depth(fx, T_NA);
    assert_int_equal(d.msgs, 2);
    assert_int_equal(d.bytes, a.env.raw.len + b.env.raw.len);
    assert_int_equal(t_entries(fx, fx->q->exp), 2);

    /* Retrying a dead letter that is gone is not found. */
    txn = t_begin(fx, true);
    assert_int_equal(brk_queue_dlq_retry(fx->q, txn, 1, retry_ms, 5000), DXB_ENOTFOUND);
    dxb_store_abort(&txn);

    /* The reference moved back with the entry: acking both frees both bodies. */
    t_ack(fx, T_NA, 2);
    t_ack(fx, T_NA, 3);
    assert_int_equal(t_entries(fx, fx->q->msg), 0);
    t_env_free(&a);
    t_env_free(&b);
}

static void
test_queue_dlq_drop_deletes_and_releases_body(void **state)
{
    t_fx_t *fx = *state;
    t_queue_open(fx);
    t_env_t a;
    t_env_build(&a, 0xa1, T_SENDER, "body-a");
    static const char *const a_and_b[] = {T_NA, T_NB};
    t_put_ok(fx, &a, a_and_b, 2, T_NOW_MS);
    t_dead(fx, T_NA, 1, DXB_W_EDENIED, "denied");
    t_dead(fx, T_NB, 1, DXB_W_EDENIED, "denied");
    assert_int_equal(t_entries(fx, fx->q->dlq), 2);

    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(brk_queue_dlq_drop(fx->q, txn, 1), DXB_OK);
    t_commit(fx, &txn);
    t_dlq_seen_t dl;
    t_dlq_scan(fx, &dl);
    assert_int_equal(dl.n, 1);
    assert_int_equal(dl.rec[0].dlq_id, 2);
    assert_true(dl.has_env[0]);
    assert_int_equal(t_entries(fx, fx->q->msg), 1); /* still referenced by dlq 2 */

    txn = t_begin(fx, true);
    assert_int_equal(brk_queue_dlq_drop(fx->q, txn, 2), DXB_OK);
    t_commit(fx, &txn);
    assert_int_equal(t_entries(fx, fx->q->dlq), 0);
    assert_int_equal(t_entries(fx, fx->q->msg), 0);

    txn = t_begin(fx, true);
    assert_int_equal(brk_queue_dlq_drop(fx->q, txn, 2), DXB_ENOTFOUND);
    dxb_store_abort(&txn);
    t_env_free(&a);
}

static void
test_queue_expire_past_deadline_dead_letters_with_reason_ttl(void **state)
{
    t_fx_t *fx = *state;
    t_queue_open(fx);
    t_env_t a, b;
    t_env_build(&a, 0xa1, T_SENDER, "body-a");
    t_env_build(&b, 0xb2, T_SENDER, "body-b");
    static const char *const only_a[] = {T_NA};
    assert_int_equal(t_put(fx, &a, only_a, 1, T_NOW_MS, T_NOW_MS + 1000), DXB_OK);
    assert_int_equal(t_put(fx, &b, only_a, 1, T_NOW_MS, T_NOW_MS + 5000), DXB_OK);

    unsigned moved = 99;
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(brk_queue_expire(fx->q, txn, T_NOW_MS + 999, 10, &moved), DXB_OK);
    assert_int_equal(moved, 0);
    assert_int_equal(brk_queue_expire(fx->q, txn, T_NOW_MS + 2000, 10, &moved), DXB_OK);
    assert_int_equal(moved, 1);
    t_commit(fx, &txn);
    dxb_audit_settle(&fx->q->audit, true);

    t_dlq_seen_t dl;
    t_dlq_scan(fx, &dl);
    assert_int_equal(dl.n, 1);
    assert_string_equal(dl.rec[0].reason, "ttl");
    assert_int_equal(dl.rec[0].code, DXB_W_EEXPIRED);
    assert_string_equal(dl.rec[0].node, T_NA);
    assert_memory_equal(dl.rec[0].msg_id, a.env.hdr.msg_id, 16);
    t_seen_t seen = {0};
    t_scan(fx, T_NA, 0, &seen);
    assert_int_equal(seen.n, 1);
    t_assert_env(&seen, 0, &b);
    assert_int_equal(t_entries(fx, fx->q->exp), 1);
    assert_int_equal(t_entries(fx, fx->q->msg), 2);

    /* Nothing more is due at the same time. */
    txn = t_begin(fx, true);
    assert_int_equal(brk_queue_expire(fx->q, txn, T_NOW_MS + 2000, 10, &moved), DXB_OK);
    assert_int_equal(moved, 0);
    dxb_store_abort(&txn);
    t_env_free(&a);
    t_env_free(&b);
}

static void
test_queue_depth_reports_msgs_bytes_and_oldest(void **state)
{
    t_fx_t *fx = *state;
    t_queue_open(fx);
    brk_qdepth_t d = t_depth(fx, T_NA);
    assert_int_equal(d.msgs, 0);
    assert_int_equal(d.bytes, 0);
    assert_int_equal(d.oldest_enq_ms, 0);
    assert_int_equal(d.head_qseq, 0);

    t_env_t a, b;
    t_env_build(&a, 0xa1, T_SENDER, "body-a");
    t_env_build(&b, 0xb2, T_SENDER, "a-longer-body-b");
    static const char *const only_a[] = {T_NA};
    t_put_ok(fx, &a, only_a, 1, T_NOW_MS + 100);
    t_put_ok(fx, &b, only_a, 1, T_NOW_MS + 200);
    d = t_depth(fx, T_NA);
    assert_int_equal(d.msgs, 2);
    assert_int_equal(d.bytes, a.env.raw.len + b.env.raw.len);
    assert_int_equal(d.oldest_enq_ms, T_NOW_MS + 100);
    assert_int_equal(d.head_qseq, 1);

    t_ack(fx, T_NA, 1);
    d = t_depth(fx, T_NA);
    assert_int_equal(d.msgs, 1);
    assert_int_equal(d.bytes, b.env.raw.len);
    assert_int_equal(d.oldest_enq_ms, T_NOW_MS + 200);
    assert_int_equal(d.head_qseq, 2);
    t_env_free(&a);
    t_env_free(&b);
}

static void
test_queue_dedup_sweep_forgets_old_ids_so_they_can_be_put_again(void **state)
{
    t_fx_t *fx = *state;
    t_queue_open(fx);
    t_env_t a;
    t_env_build(&a, 0xa1, T_SENDER, "body-a");
    static const char *const only_a[] = {T_NA};
    t_put_ok(fx, &a, only_a, 1, T_NOW_MS);
    t_ack(fx, T_NA, 1);

    /* A sweep that does not reach the record keeps it. */
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(brk_queue_dedup_sweep(fx->q, txn, T_NOW_MS, 100), DXB_OK);
    t_commit(fx, &txn);
    assert_int_equal(t_entries(fx, fx->q->dedup), 1);
    assert_int_equal(t_put(fx, &a, only_a, 1, T_NOW_MS + 10, T_NOW_MS + T_TTL_MS), DXB_EEXIST);

    txn = t_begin(fx, true);
    assert_int_equal(brk_queue_dedup_sweep(fx->q, txn, T_NOW_MS + 1, 100), DXB_OK);
    t_commit(fx, &txn);
    assert_int_equal(t_entries(fx, fx->q->dedup), 0);
    assert_int_equal(t_entries(fx, fx->q->dedupt), 0);

    t_put_ok(fx, &a, only_a, 1, T_NOW_MS + 20);
    t_seen_t seen = {0};
    t_scan(fx, T_NA, 0, &seen);
    assert_int_equal(seen.n, 1);
    assert_int_equal(seen.e[0].qseq, 2);
    t_assert_env(&seen, 0, &a);
    t_env_free(&a);
}

#define T_CASE(fn) cmocka_unit_test_setup_teardown(fn, s_setup, s_teardown)

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        T_CASE(test_store_open_creates_missing_dir_0700),
        T_CASE(test_store_second_open_same_dir_is_eexist_until_destroy),
        T_CASE(test_store_committed_put_survives_reopen_aborted_does_not),
        T_CASE(test_store_full_map_is_efull_and_store_stays_usable),
        T_CASE(test_store_be64_round_trips_and_sorts_numerically),
        T_CASE(test_audit_empty_log_verifies_with_count_zero),
        T_CASE(test_audit_n_appends_in_one_txn_verify_with_count_n),
        T_CASE(test_audit_head_reloads_from_last_record_on_init),
        T_CASE(test_audit_settle_false_after_abort_rolls_head_back),
        T_CASE(test_audit_changed_text_byte_fails_verify_at_that_seq),
        T_CASE(test_audit_deleted_middle_record_fails_verify_at_missing_seq),
        T_CASE(test_audit_swapped_records_fail_verify_at_first_of_them),
        T_CASE(test_audit_truncated_tail_is_not_detected_by_chain_alone),
        T_CASE(test_queue_put_to_three_stores_body_once_with_three_entries),
        T_CASE(test_queue_scan_returns_fifo_order_with_env_bytes),
        T_CASE(test_queue_ack_of_all_recipients_deletes_body),
        T_CASE(test_queue_same_msg_id_same_sender_again_is_eexist_and_stores_nothing),
        T_CASE(test_queue_dead_moves_entry_to_dlq_and_keeps_body),
        T_CASE(test_queue_dlq_retry_requeues_at_tail),
        T_CASE(test_queue_dlq_drop_deletes_and_releases_body),
        T_CASE(test_queue_expire_past_deadline_dead_letters_with_reason_ttl),
        T_CASE(test_queue_depth_reports_msgs_bytes_and_oldest),
        T_CASE(test_queue_dedup_sweep_forgets_old_ids_so_they_can_be_put_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
