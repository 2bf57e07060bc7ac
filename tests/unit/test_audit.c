/* Unit tests for the signed checkpoints of common/dxb_audit and the full
 * check (chain + checkpoints) that `dxbctl audit verify` runs.
 *
 * The chain itself (append, settle, verify) is covered by test_store.c. Here
 * most chains are written record by record with chosen times (t_put), the
 * way someone with write access to data.mdb could, so that the tests decide
 * which records are older or newer than a checkpoint. Each test runs in a
 * fresh mkdtemp directory. */
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

#include "common/dxb_audit.h"
#include "common/dxb_store.h"
#include "common/dxb_util.h"

#define T_MAP_BYTES (16ull * 1024 * 1024)

typedef struct {
    char root[64]; /* mkdtemp directory, removed at teardown */
    dxb_store_t *store;
    MDB_dbi audit, cps;
    uint8_t pk[32], sk[64];       /* the signer (seed 0x42 .. 0x42) */
    uint8_t other_pk[32], other_sk[64];
    uint8_t hash[16][32];         /* t_put: hash of the record written at each seq */
} t_fx_t;

static int
s_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int
s_setup(void **state)
{
    t_fx_t *fx = calloc(1, sizeof(*fx));
    uint8_t seed[32];
    if (fx == NULL) {
        return -1;
    }
    snprintf(fx->root, sizeof(fx->root), "/tmp/dxb-test-audit-XXXXXX");
    if (mkdtemp(fx->root) == NULL) {
        free(fx);
        return -1;
    }
    dxb_store_opts_t opts = {
        .dir = fx->root, .map_size_bytes = T_MAP_BYTES, .durable = true, .max_dbs = 4};
    if (dxb_store_open(&fx->store, &opts) != DXB_OK ||
        dxb_store_dbi(fx->store, "audit", 0, &fx->audit) != DXB_OK ||
        dxb_store_dbi(fx->store, "auditcp", 0, &fx->cps) != DXB_OK) {
        return -1;
    }
    memset(seed, 0x42, sizeof(seed));
    crypto_sign_seed_keypair(fx->pk, fx->sk, seed);
    memset(seed, 0x43, sizeof(seed));
    crypto_sign_seed_keypair(fx->other_pk, fx->other_sk, seed);
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    t_fx_t *fx = *state;
    dxb_store_destroy(&fx->store);
    int rc = nftw(fx->root, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return rc == 0 ? 0 : -1;
}

static MDB_txn *
t_begin(t_fx_t *fx, bool write)
{
    MDB_txn *txn = NULL;
    assert_int_equal(dxb_store_begin(fx->store, write, &txn), DXB_OK);
    return txn;
}

static void
t_commit(t_fx_t *fx, MDB_txn **txn_p)
{
    assert_int_equal(dxb_store_commit(fx->store, txn_p), DXB_OK);
}

/* Writes record seq with the given time and a text of our choice, chained
 * to the record at seq - 1 as t_put last wrote it. */
static void
t_put(t_fx_t *fx, uint64_t seq, uint64_t time_ms, const char *detail)
{
    static const uint8_t zeros[32];
    uint8_t val[512];
    int len = snprintf((char *)val + 64, sizeof(val) - 64, "%llu\tbroker\ttest\tobj\tok\t%s",
                       (unsigned long long)time_ms, detail);
    const uint8_t *prev = seq == 1 ? zeros : fx->hash[seq - 1];
    memcpy(val + 32, prev, 32);
    dxb_audit_hash(prev, seq, val + 64, (size_t)len, val);
    memcpy(fx->hash[seq], val, 32);
    uint8_t key[8];
    dxb_be64_put(key, seq);
    MDB_val k = {8, key}, v = {64 + (size_t)len, val};
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(mdb_put(txn, fx->audit, &k, &v, 0), 0);
    t_commit(fx, &txn);
}

/* Records 1..n at times 1000 + seq. */
static void
t_chain(t_fx_t *fx, uint64_t n)
{
    for (uint64_t seq = 1; seq <= n; seq++) {
        t_put(fx, seq, 1000 + seq, "x");
    }
}

static void
t_del(t_fx_t *fx, MDB_dbi dbi, uint64_t seq)
{
    uint8_t key[8];
    dxb_be64_put(key, seq);
    MDB_val k = {8, key};
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
    t_commit(fx, &txn);
}

static void
t_put_raw(t_fx_t *fx, MDB_dbi dbi, const void *key, size_t key_len, const void *val,
          size_t val_len)
{
    MDB_val k = {key_len, (void *)key}, v = {val_len, (void *)val};
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    t_commit(fx, &txn);
}

/* Signs the current head at time_ms with sk; returns whether it wrote. */
static bool
t_checkpoint(t_fx_t *fx, const uint8_t *sk, uint64_t time_ms, dxb_audit_cp_t *out)
{
    bool written = false;
    MDB_txn *txn = t_begin(fx, true);
    assert_int_equal(dxb_audit_checkpoint(txn, fx->audit, fx->cps, sk, time_ms, out, &written),
                     DXB_OK);
    if (written) {
        t_commit(fx, &txn);
    } else {
        dxb_store_abort(&txn);
    }
    return written;
}

static dxb_err_t
t_check(t_fx_t *fx, dxb_audit_report_t *r)
{
    MDB_txn *txn = t_begin(fx, false);
    dxb_err_t err = dxb_audit_check(txn, fx->audit, &fx->cps, fx->pk, r);
    dxb_store_abort(&txn);
    return err;
}

/* Records 1..10 at times 1001..1010, checkpoints at 5 (time 2000) and 10
 * (time 3000): the world most tests tamper with. */
static void
t_signed_chain(t_fx_t *fx)
{
    t_chain(fx, 5);
    assert_true(t_checkpoint(fx, fx->sk, 2000, NULL));
    for (uint64_t seq = 6; seq <= 10; seq++) {
        t_put(fx, seq, 1000 + seq, "x");
    }
    assert_true(t_checkpoint(fx, fx->sk, 3000, NULL));
}

/* ---- format ------------------------------------------------------------- */

static void
test_cp_digest_and_signature_match_the_golden_vector(void **state)
{
    t_fx_t *fx = *state;
    /* Computed independently with Python hashlib and PyNaCl (seed 0x42 x 32). */
    static const char digest_hex[] =
        "5ce80849a08f78a777f95b7ca80760697129d4b6152b62f4fe43935f1485b826";
    static const char sig_hex[] =
        "14b7dd23724bbf7f79d9e9b6e3277bc19fc6a65ea446c3fc1dd8ca4467032e11"
        "1da45e762579386b213032d80eae15b0f52914588b4bf4c54318e58e59c9450a";
    dxb_audit_cp_t cp = {.seq = 7, .time_ms = 1795600800000ull};
    uint8_t digest[32], want[64], enc[DXB_AUDIT_CP_BYTES];
    char hex[65];

    memset(cp.hash, 0x11, 32);
    dxb_audit_cp_digest(cp.seq, cp.hash, cp.time_ms, digest);
    dxb_hex_encode(digest, 32, hex);
    assert_string_equal(hex, digest_hex);
    crypto_sign_detached(cp.sig, NULL, digest, 32, fx->sk);
    memcpy(cp.signer_pk, fx->pk, 32);
    assert_true(dxb_hex_decode(sig_hex, want, 64));
    assert_memory_equal(cp.sig, want, 64);
    assert_true(dxb_audit_cp_valid(&cp));

    /* Round trip, strict length, and every signed field matters. */
    dxb_audit_cp_t back;
    dxb_audit_cp_encode(&cp, enc);
    assert_true(dxb_audit_cp_decode(enc, sizeof(enc), &back));
    assert_memory_equal(&back, &cp, sizeof(cp));
    assert_false(dxb_audit_cp_decode(enc, sizeof(enc) - 1, &back));
    back.time_ms++;
    assert_false(dxb_audit_cp_valid(&back));
    back = cp;
    back.hash[31] ^= 1;
    assert_false(dxb_audit_cp_valid(&back));
    back = cp;
    back.seq = 8;
    assert_false(dxb_audit_cp_valid(&back));
}

static void
test_text_time_reads_the_leading_decimal(void **state)
{
    (void)state;
    assert_int_equal(dxb_audit_text_time((const uint8_t *)"1795600800000\tx", 15),
                     1795600800000ull);
    assert_int_equal(dxb_audit_text_time((const uint8_t *)"abc", 3), 0);
    assert_int_equal(dxb_audit_text_time(NULL, 0), 0);
}

/* ---- writing checkpoints ------------------------------------------------ */

static void
test_checkpoint_signs_the_head_only_when_the_chain_moved(void **state)
{
    t_fx_t *fx = *state;
    dxb_audit_cp_t cp, last;
    MDB_txn *txn;

    assert_false(t_checkpoint(fx, fx->sk, 5000, &cp)); /* empty chain */
    t_chain(fx, 3);
    assert_true(t_checkpoint(fx, fx->sk, 5000, &cp));
    assert_int_equal(cp.seq, 3);
    assert_int_equal(cp.time_ms, 5000);
    assert_memory_equal(cp.hash, fx->hash[3], 32);
    assert_memory_equal(cp.signer_pk, fx->pk, 32);
    assert_true(dxb_audit_cp_valid(&cp));
    assert_false(t_checkpoint(fx, fx->sk, 6000, NULL));
    t_put(fx, 4, 1004, "x");
    assert_true(t_checkpoint(fx, fx->sk, 7000, &cp));
    assert_int_equal(cp.seq, 4);

    txn = t_begin(fx, false);
    assert_int_equal(dxb_audit_cp_last(txn, fx->cps, &last), DXB_OK);
    dxb_store_abort(&txn);
    assert_memory_equal(&last, &cp, sizeof(cp));
}

static void
test_checkpoint_is_never_written_over_or_below_a_signed_one(void **state)
{
    t_fx_t *fx = *state;
    t_chain(fx, 5);
    assert_true(t_checkpoint(fx, fx->sk, 2000, NULL));
    t_del(fx, fx->audit, 5);
    t_del(fx, fx->audit, 4);
    assert_false(t_checkpoint(fx, fx->sk, 3000, NULL)); /* head 3 below checkpoint 5 */
    t_put(fx, 4, 4000, "new");
    t_put(fx, 5, 4001, "new");
    assert_false(t_checkpoint(fx, fx->sk, 5000, NULL)); /* head 5: would overwrite */
    t_put(fx, 6, 4002, "new");
    assert_true(t_checkpoint(fx, fx->sk, 5000, NULL));

    /* The evidence stayed: checkpoint 5 no longer matches the chain. */
    dxb_audit_report_t r;
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_CP_DIFFERS);
    assert_int_equal(r.bad_seq, 4);
    assert_int_equal(r.bad_cp_seq, 5);
}

/* ---- checking ----------------------------------------------------------- */

static void
test_check_passes_and_reports_the_last_checkpoint(void **state)
{
    t_fx_t *fx = *state;
    dxb_audit_report_t r;
    t_signed_chain(fx);
    t_put(fx, 11, 3500, "after the last checkpoint");
    assert_int_equal(t_check(fx, &r), DXB_OK);
    assert_int_equal(r.fault, DXB_AUDIT_OK);
    assert_int_equal(r.records, 11);
    assert_int_equal(r.head_seq, 11);
    assert_int_equal(r.bad_seq, 0);
    assert_int_equal(r.checkpoints, 2);
    assert_int_equal(r.checkpoints_ok, 2);
    assert_int_equal(r.last_cp_seq, 10);
    assert_int_equal(r.last_cp_ms, 3000);
    assert_string_equal(dxb_audit_fault_name(r.fault), "");

    /* No checkpoint database: the chain alone. */
    MDB_txn *txn = t_begin(fx, false);
    assert_int_equal(dxb_audit_check(txn, fx->audit, NULL, fx->pk, &r), DXB_OK);
    dxb_store_abort(&txn);
    assert_int_equal(r.checkpoints, 0);
}

static void
test_check_names_the_first_record_written_after_a_cut(void **state)
{
    t_fx_t *fx = *state;
    dxb_audit_report_t r;
    t_signed_chain(fx);
    for (uint64_t seq = 10; seq >= 8; seq--) {
        t_del(fx, fx->audit, seq);
    }
    /* Cut to 7: the chain verifies alone, only checkpoint 10 can tell. */
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_CP_SHORT);
    assert_string_equal(dxb_audit_fault_name(r.fault), "chain-shorter-than-checkpoint");
    assert_int_equal(r.bad_seq, 8); /* the first missing one */
    assert_int_equal(r.bad_cp_seq, 10);
    assert_int_equal(r.good_below_seq, 5);
    assert_int_equal(r.records, 7);
    assert_int_equal(r.checkpoints_ok, 1);

    /* The process goes on appending after the cut (newer than the checkpoint). */
    t_put(fx, 8, 9000, "restart");
    t_put(fx, 9, 9001, "x");
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_CP_SHORT);
    assert_int_equal(r.bad_seq, 8);
    t_put(fx, 10, 9002, "x");
    t_put(fx, 11, 9003, "x");
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_CP_DIFFERS);
    assert_int_equal(r.bad_seq, 8);
    assert_int_equal(r.records, 7);
}

static void
test_check_blames_the_checkpoint_of_a_rewritten_chain(void **state)
{
    t_fx_t *fx = *state;
    dxb_audit_report_t r;
    t_signed_chain(fx);
    /* Record 7 changed and 7..10 re-hashed, times kept. */
    t_put(fx, 7, 1007, "forged");
    for (uint64_t seq = 8; seq <= 10; seq++) {
        t_put(fx, seq, 1000 + seq, "x");
    }
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_CP_DIFFERS);
    assert_int_equal(r.bad_seq, 10);
    assert_int_equal(r.good_below_seq, 5);
    assert_int_equal(r.records, 9);
}

static void
test_check_rejects_bad_foreign_and_malformed_checkpoints(void **state)
{
    t_fx_t *fx = *state;
    dxb_audit_report_t r;
    uint8_t key[8], val[DXB_AUDIT_CP_BYTES];
    dxb_audit_cp_t cp;
    MDB_val k = {8, key}, v;
    MDB_txn *txn;

    t_signed_chain(fx);
    dxb_be64_put(key, 10);
    txn = t_begin(fx, false);
    assert_int_equal(mdb_get(txn, fx->cps, &k, &v), 0);
    assert_true(dxb_audit_cp_decode(v.mv_data, v.mv_size, &cp));
    dxb_store_abort(&txn);

    cp.sig[0] ^= 1;
    dxb_audit_cp_encode(&cp, val);
    t_put_raw(fx, fx->cps, key, 8, val, sizeof(val));
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_CP_BADSIG);
    assert_int_equal(r.bad_seq, 10);
    assert_int_equal(r.bad_cp_seq, 10);
    assert_int_equal(r.checkpoints_ok, 1);
    assert_int_equal(r.records, 9);

    /* Validly signed, but by someone else. */
    uint8_t digest[32];
    memcpy(cp.signer_pk, fx->other_pk, 32);
    dxb_audit_cp_digest(cp.seq, cp.hash, cp.time_ms, digest);
    crypto_sign_detached(cp.sig, NULL, digest, 32, fx->other_sk);
    assert_true(dxb_audit_cp_valid(&cp));
    dxb_audit_cp_encode(&cp, val);
    t_put_raw(fx, fx->cps, key, 8, val, sizeof(val));
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_CP_OTHERKEY);

    t_put_raw(fx, fx->cps, key, 8, "short", 5);
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_CP_MALFORMED);
    assert_int_equal(r.bad_seq, 10);
}

/* Rewrites record seq through fn(value, len), bypassing any re-hashing. */
static void
t_edit(t_fx_t *fx, uint64_t seq, void (*fn)(uint8_t *val, size_t len))
{
    uint8_t key[8], val[512];
    MDB_val k = {8, key}, v;
    MDB_txn *txn = t_begin(fx, false);
    dxb_be64_put(key, seq);
    assert_int_equal(mdb_get(txn, fx->audit, &k, &v), 0);
    assert_true(v.mv_size <= sizeof(val));
    size_t len = v.mv_size;
    memcpy(val, v.mv_data, len);
    dxb_store_abort(&txn);
    fn(val, len);
    t_put_raw(fx, fx->audit, key, 8, val, len);
}

static void
t_flip_last_text_byte(uint8_t *val, size_t len)
{
    val[len - 1] ^= 0x01;
}

/* A wrong link with a hash that matches it: the record alone looks fine. */
static void
t_relink(uint8_t *val, size_t len)
{
    val[32] ^= 0x01;
    dxb_audit_hash(val + 32, 4, val + 64, len - 64, val);
}

static void
t_flip_sig(uint8_t *val, size_t len)
{
    val[len - 1] ^= 0x01;
}

static void
test_check_reports_the_fault_with_the_lowest_seq(void **state)
{
    t_fx_t *fx = *state;
    dxb_audit_report_t r;
    uint8_t key[8], val[DXB_AUDIT_CP_BYTES];
    MDB_val k = {8, key}, v;
    MDB_txn *txn;

    t_signed_chain(fx);
    /* Record 8 changed: the walk fails there; both checkpoints hold (they
     * compare the stored hashes, which did not change). */
    t_edit(fx, 8, t_flip_last_text_byte);
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_BADHASH);
    assert_string_equal(dxb_audit_fault_name(r.fault), "hash-mismatch");
    assert_int_equal(r.bad_seq, 8);
    assert_int_equal(r.records, 7);
    assert_int_equal(r.checkpoints_ok, 2);

    /* Checkpoint 5 forged as well: it is lower, so it is the first fault. */
    dxb_be64_put(key, 5);
    txn = t_begin(fx, false);
    assert_int_equal(mdb_get(txn, fx->cps, &k, &v), 0);
    memcpy(val, v.mv_data, sizeof(val));
    dxb_store_abort(&txn);
    t_flip_sig(val, sizeof(val));
    t_put_raw(fx, fx->cps, key, 8, val, sizeof(val));
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_CP_BADSIG);
    assert_int_equal(r.bad_seq, 5);
    assert_int_equal(r.records, 4);
    assert_int_equal(r.checkpoints_ok, 0);
}

static void
test_check_names_a_broken_link(void **state)
{
    t_fx_t *fx = *state;
    dxb_audit_report_t r;
    t_chain(fx, 6);
    t_edit(fx, 4, t_relink);
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_BADLINK);
    assert_string_equal(dxb_audit_fault_name(r.fault), "broken-link");
    assert_int_equal(r.bad_seq, 4);
    assert_int_equal(r.records, 3);
}

static void
test_check_deleted_record_at_a_checkpoint_is_a_missing_record(void **state)
{
    t_fx_t *fx = *state;
    dxb_audit_report_t r;
    t_signed_chain(fx);
    t_del(fx, fx->audit, 5);
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_MISSING); /* ties go to the chain walk */
    assert_int_equal(r.bad_seq, 5);
    assert_int_equal(r.records, 4);
    assert_int_equal(r.bad_cp_seq, 5);
}

/* ---- a damaged log keeps the process auditing ---------------------------- */

static void
test_init_continues_after_a_damaged_last_record_and_a_foreign_key(void **state)
{
    t_fx_t *fx = *state;
    dxb_audit_t a;
    uint8_t key[8];
    static const uint8_t foreign[9] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    MDB_txn *txn;

    t_chain(fx, 3);
    dxb_be64_put(key, 3);
    t_put_raw(fx, fx->audit, key, 8, "short", 5);
    t_put_raw(fx, fx->audit, foreign, sizeof(foreign), "junk", 4);

    txn = t_begin(fx, false);
    assert_int_equal(dxb_audit_init(&a, txn, fx->audit), DXB_OK);
    dxb_store_abort(&txn);
    assert_int_equal(a.committed.seq, 3);

    txn = t_begin(fx, true);
    assert_int_equal(dxb_audit_append(&a, txn, "broker", "start", "sq.hub", "ok", "-"), DXB_OK);
    t_commit(fx, &txn);
    dxb_audit_settle(&a, true);
    assert_int_equal(a.committed.seq, 4);

    dxb_audit_report_t r;
    assert_int_equal(t_check(fx, &r), DXB_EINTEGRITY);
    assert_int_equal(r.fault, DXB_AUDIT_MALFORMED);
    assert_int_equal(r.bad_seq, 3);
    assert_int_equal(r.head_seq, 4);
}

#define T_CASE(fn) cmocka_unit_test_setup_teardown(fn, s_setup, s_teardown)

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        T_CASE(test_cp_digest_and_signature_match_the_golden_vector),
        T_CASE(test_text_time_reads_the_leading_decimal),
        T_CASE(test_checkpoint_signs_the_head_only_when_the_chain_moved),
        T_CASE(test_checkpoint_is_never_written_over_or_below_a_signed_one),
        T_CASE(test_check_passes_and_reports_the_last_checkpoint),
        T_CASE(test_check_names_the_first_record_written_after_a_cut),
        T_CASE(test_check_blames_the_checkpoint_of_a_rewritten_chain),
        T_CASE(test_check_rejects_bad_foreign_and_malformed_checkpoints),
        T_CASE(test_check_reports_the_fault_with_the_lowest_seq),
        T_CASE(test_check_names_a_broken_link),
        T_CASE(test_check_deleted_record_at_a_checkpoint_is_a_missing_record),
        T_CASE(test_init_continues_after_a_damaged_last_record_and_a_foreign_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
