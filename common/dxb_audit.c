/* dxb_audit: hash-chained audit records in LMDB. */
#include "common/dxb_audit.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/dxb_store.h"
#include "common/dxb_util.h"

#define AUDIT_TEXT_MAX 2048

void
dxb_audit_hash(const uint8_t prev[32], uint64_t seq, const uint8_t *text, size_t len,
               uint8_t out[32])
{
    crypto_generichash_state st;
    uint8_t be[8];
    dxb_be64_put(be, seq);
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, prev, 32);
    crypto_generichash_update(&st, be, 8);
    crypto_generichash_update(&st, text, len);
    crypto_generichash_final(&st, out, 32);
}

uint64_t
dxb_audit_text_time(const uint8_t *text, size_t len)
{
    uint64_t ms = 0;
    for (size_t i = 0; i < len && i < 20 && text[i] >= '0' && text[i] <= '9'; i++) {
        ms = ms * 10 + (uint64_t)(text[i] - '0');
    }
    return ms;
}

/* Moves cur to the last entry whose key is 8 bytes (a seq); keys of any
 * other size (written by someone else than dxb) are stepped over. Returns
 * the LMDB code (MDB_NOTFOUND when there is none). */
static int
s_last_seq_entry(MDB_cursor *cur, MDB_val *k, MDB_val *v)
{
    int rc = mdb_cursor_get(cur, k, v, MDB_LAST);
    while (rc == 0 && k->mv_size != 8) {
        rc = mdb_cursor_get(cur, k, v, MDB_PREV);
    }
    return rc;
}

dxb_err_t
dxb_audit_init(dxb_audit_t *a, MDB_txn *txn, MDB_dbi dbi)
{
    memset(a, 0, sizeof(*a));
    a->dbi = dbi;
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "audit cursor");
    }
    MDB_val k, v;
    rc = s_last_seq_entry(cur, &k, &v);
    /* The head continues after the last seq even when that record is
     * damaged: the process keeps auditing, and verify names the damage. */
    if (rc == 0) {
        a->committed.seq = dxb_be64_get(k.mv_data);
        if (v.mv_size >= 32) {
            memcpy(a->committed.hash, v.mv_data, 32);
        }
    }
    mdb_cursor_close(cur);
    a->working = a->committed;
    return rc == 0 || rc == MDB_NOTFOUND ? DXB_OK : dxb_store_err(rc, "audit last");
}

/* Appends src to dst at *len, turning tabs and control bytes into spaces so
 * that the field structure of the record cannot be forged by a value. */
static void
s_put_field(char *dst, size_t *len, const char *src, bool last)
{
    for (const char *p = src ? src : "-"; *p && *len < AUDIT_TEXT_MAX - 2; p++) {
        unsigned char c = (unsigned char)*p;
        dst[(*len)++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    if (!last) {
        dst[(*len)++] = '\t';
    }
}

dxb_err_t
dxb_audit_append(dxb_audit_t *a, MDB_txn *txn, const char *actor, const char *action,
                 const char *object, const char *result, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);

    uint8_t val[64 + AUDIT_TEXT_MAX];
    char *text = (char *)val + 64;
    size_t len = (size_t)snprintf(text, 32, "%llu\t", (unsigned long long)dxb_now_ms());
    s_put_field(text, &len, actor, false);
    s_put_field(text, &len, action, false);
    s_put_field(text, &len, object, false);
    s_put_field(text, &len, result, false);
    s_put_field(text, &len, detail, true);

    uint64_t seq = a->working.seq + 1;
    memcpy(val + 32, a->working.hash, 32);
    dxb_audit_hash(a->working.hash, seq, (const uint8_t *)text, len, val);

    uint8_t key[8];
    dxb_be64_put(key, seq);
    MDB_val k = {8, key};
    MDB_val v = {64 + len, val};
    int rc = mdb_put(txn, a->dbi, &k, &v, MDB_APPEND);
    if (rc == MDB_KEYEXIST) {
        /* A foreign key sorts after ours (a tampered store): still append,
         * never overwrite. */
        rc = mdb_put(txn, a->dbi, &k, &v, MDB_NOOVERWRITE);
    }
    if (rc != 0) {
        return dxb_store_err(rc, "audit append");
    }
    a->working.seq = seq;
    memcpy(a->working.hash, val, 32);
    return DXB_OK;
}

void
dxb_audit_settle(dxb_audit_t *a, bool committed)
{
    if (committed) {
        a->committed = a->working;
    } else {
        a->working = a->committed;
    }
}

/* Walks the chain from seq 1 and stops at the first fault: *count records
 * verified before it, *bad_seq and *fault name it (0 and DXB_AUDIT_OK when
 * the whole chain verifies). */
static dxb_err_t
s_walk(MDB_txn *txn, MDB_dbi dbi, uint64_t *count, uint64_t *bad_seq, dxb_audit_fault_t *fault)
{
    MDB_cursor *cur = NULL;
    *count = 0;
    *bad_seq = 0;
    *fault = DXB_AUDIT_OK;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "audit cursor");
    }
    uint8_t prev[32] = {0};
    uint64_t expect = 1;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *val = v.mv_data;
        uint8_t h[32];
        if (k.mv_size != 8 || v.mv_size < 64) {
            *fault = DXB_AUDIT_MALFORMED;
        } else if (dxb_be64_get(k.mv_data) != expect) {
            *fault = DXB_AUDIT_MISSING;
        } else {
            /* The record against itself first (its stored link): a changed
             * or moved record fails here even when its link looks right. */
            dxb_audit_hash(val + 32, expect, val + 64, v.mv_size - 64, h);
            if (memcmp(val, h, 32) != 0) {
                *fault = DXB_AUDIT_BADHASH;
            } else if (memcmp(val + 32, prev, 32) != 0) {
                *fault = DXB_AUDIT_BADLINK;
            }
        }
        if (*fault != DXB_AUDIT_OK) {
            *bad_seq = expect;
            break;
        }
        memcpy(prev, h, 32);
        expect++;
        (*count)++;
    }
    mdb_cursor_close(cur);
    if (*fault == DXB_AUDIT_OK && rc != MDB_NOTFOUND) {
        return dxb_store_err(rc, "audit walk");
    }
    return DXB_OK;
}

dxb_err_t
dxb_audit_verify(MDB_txn *txn, MDB_dbi dbi, uint64_t *count, uint64_t *bad_seq)
{
    dxb_audit_fault_t fault;
    dxb_err_t err = s_walk(txn, dbi, count, bad_seq, &fault);
    if (err == DXB_OK && fault != DXB_AUDIT_OK) {
        err = DXB_EINTEGRITY;
    }
    return err;
}

/* ---- checkpoints -------------------------------------------------------- */

#define CP_CONTEXT "dxb-audit-cp-1"

void
dxb_audit_cp_digest(uint64_t seq, const uint8_t hash[32], uint64_t time_ms, uint8_t out[32])
{
    crypto_generichash_state st;
    uint8_t be[8];
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)CP_CONTEXT, strlen(CP_CONTEXT));
    dxb_be64_put(be, seq);
    crypto_generichash_update(&st, be, 8);
    crypto_generichash_update(&st, hash, 32);
    dxb_be64_put(be, time_ms);
    crypto_generichash_update(&st, be, 8);
    crypto_generichash_final(&st, out, 32);
}

bool
dxb_audit_cp_valid(const dxb_audit_cp_t *cp)
{
    uint8_t digest[32];
    dxb_audit_cp_digest(cp->seq, cp->hash, cp->time_ms, digest);
    return crypto_sign_verify_detached(cp->sig, digest, sizeof(digest), cp->signer_pk) == 0;
}

void
dxb_audit_cp_encode(const dxb_audit_cp_t *cp, uint8_t out[DXB_AUDIT_CP_BYTES])
{
    dxb_be64_put(out, cp->seq);
    memcpy(out + 8, cp->hash, 32);
    dxb_be64_put(out + 40, cp->time_ms);
    memcpy(out + 48, cp->signer_pk, 32);
    memcpy(out + 80, cp->sig, 64);
}

bool
dxb_audit_cp_decode(const uint8_t *buf, size_t len, dxb_audit_cp_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len != DXB_AUDIT_CP_BYTES) {
        return false;
    }
    out->seq = dxb_be64_get(buf);
    memcpy(out->hash, buf + 8, 32);
    out->time_ms = dxb_be64_get(buf + 40);
    memcpy(out->signer_pk, buf + 48, 32);
    memcpy(out->sig, buf + 80, 64);
    return true;
}

dxb_err_t
dxb_audit_cp_last(MDB_txn *txn, MDB_dbi cps, dxb_audit_cp_t *out)
{
    MDB_cursor *cur = NULL;
    memset(out, 0, sizeof(*out));
    int rc = mdb_cursor_open(txn, cps, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "auditcp cursor");
    }
    MDB_val k, v;
    rc = s_last_seq_entry(cur, &k, &v);
    dxb_err_t err = DXB_OK;
    if (rc == MDB_NOTFOUND) {
        err = DXB_ENOTFOUND;
    } else if (rc != 0) {
        err = dxb_store_err(rc, "auditcp last");
    } else if (!dxb_audit_cp_decode(v.mv_data, v.mv_size, out) ||
               out->seq != dxb_be64_get(k.mv_data)) {
        /* Keep the seq of the key: callers must not write below it. */
        out->seq = dxb_be64_get(k.mv_data);
        err = DXB_EINTEGRITY;
    }
    mdb_cursor_close(cur);
    return err;
}

dxb_err_t
dxb_audit_checkpoint(MDB_txn *txn, MDB_dbi audit, MDB_dbi cps, const uint8_t sign_sk[64],
                     uint64_t now_ms, dxb_audit_cp_t *out, bool *written)
{
    dxb_audit_cp_t cp = {0};
    MDB_cursor *cur = NULL;
    *written = false;
    int rc = mdb_cursor_open(txn, audit, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "audit cursor");
    }
    MDB_val k, v;
    rc = s_last_seq_entry(cur, &k, &v);
    if (rc == 0 && v.mv_size >= 32) {
        cp.seq = dxb_be64_get(k.mv_data);
        memcpy(cp.hash, v.mv_data, 32);
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return dxb_store_err(rc, "audit last");
    }
    if (cp.seq == 0) {
        return DXB_OK;
    }
    dxb_audit_cp_t last;
    dxb_err_t err = dxb_audit_cp_last(txn, cps, &last);
    if (err != DXB_OK && err != DXB_ENOTFOUND && err != DXB_EINTEGRITY) {
        return err;
    }
    if (err != DXB_ENOTFOUND && last.seq >= cp.seq) {
        /* Checkpoints only grow: never one below or over a signed one, even
         * when the chain was cut beneath it (verify reports that). */
        return DXB_OK;
    }
    cp.time_ms = now_ms;
    crypto_sign_ed25519_sk_to_pk(cp.signer_pk, sign_sk);
    uint8_t digest[32];
    dxb_audit_cp_digest(cp.seq, cp.hash, cp.time_ms, digest);
    crypto_sign_detached(cp.sig, NULL, digest, sizeof(digest), sign_sk);
    uint8_t key[8], val[DXB_AUDIT_CP_BYTES];
    dxb_be64_put(key, cp.seq);
    dxb_audit_cp_encode(&cp, val);
    k = (MDB_val){sizeof(key), key};
    v = (MDB_val){sizeof(val), val};
    rc = mdb_put(txn, cps, &k, &v, MDB_NOOVERWRITE);
    if (rc != 0) {
        return dxb_store_err(rc, "auditcp put");
    }
    if (out != NULL) {
        *out = cp;
    }
    *written = true;
    return DXB_OK;
}

/* ---- full check --------------------------------------------------------- */

static const struct {
    const char *name;
    const char *text;
} s_faults[] = {
    [DXB_AUDIT_OK] = {"", "the log verifies"},
    [DXB_AUDIT_MISSING] = {"missing-record", "record missing (deleted or moved)"},
    [DXB_AUDIT_MALFORMED] = {"malformed-record", "record malformed (bad key or short value)"},
    [DXB_AUDIT_BADHASH] = {"hash-mismatch",
                           "hash mismatch (record changed, moved or forged)"},
    [DXB_AUDIT_BADLINK] = {"broken-link",
                           "broken link (record does not follow the one before it)"},
    [DXB_AUDIT_CP_MALFORMED] = {"checkpoint-malformed", "checkpoint malformed"},
    [DXB_AUDIT_CP_OTHERKEY] = {"checkpoint-other-key",
                               "checkpoint signed by a key that is not this broker's"},
    [DXB_AUDIT_CP_BADSIG] = {"checkpoint-signature-bad", "checkpoint signature bad"},
    [DXB_AUDIT_CP_SHORT] = {"chain-shorter-than-checkpoint",
                            "chain shorter than a signed checkpoint (records cut off)"},
    [DXB_AUDIT_CP_DIFFERS] = {"chain-differs-from-checkpoint",
                              "chain differs from a signed checkpoint (records rewritten)"},
};

const char *
dxb_audit_fault_name(dxb_audit_fault_t fault)
{
    return (size_t)fault < sizeof(s_faults) / sizeof(s_faults[0]) ? s_faults[fault].name : "?";
}

const char *
dxb_audit_fault_text(dxb_audit_fault_t fault)
{
    return (size_t)fault < sizeof(s_faults) / sizeof(s_faults[0]) ? s_faults[fault].text : "?";
}

/* First seq in [from, to] whose record is missing, malformed or newer than
 * cp_ms: a checkpoint signed at cp_ms cannot cover a record written after
 * it. *out = to when every record there looks old enough. */
static dxb_err_t
s_locate(MDB_txn *txn, MDB_dbi audit, uint64_t from, uint64_t to, uint64_t cp_ms, uint64_t *out)
{
    *out = to;
    for (uint64_t seq = from; seq <= to; seq++) {
        uint8_t key[8];
        dxb_be64_put(key, seq);
        MDB_val k = {8, key}, v;
        int rc = mdb_get(txn, audit, &k, &v);
        if (rc != 0 && rc != MDB_NOTFOUND) {
            return dxb_store_err(rc, "audit get");
        }
        if (rc == MDB_NOTFOUND || v.mv_size < 64 ||
            dxb_audit_text_time((const uint8_t *)v.mv_data + 64, v.mv_size - 64) > cp_ms) {
            *out = seq;
            break;
        }
    }
    return DXB_OK;
}

/* Checks one checkpoint (key k, value v) against the chain. */
static dxb_err_t
s_check_cp(MDB_txn *txn, MDB_dbi audit, const uint8_t sign_pk[32], const MDB_val *k,
           const MDB_val *v, dxb_audit_cp_t *cp, dxb_audit_fault_t *fault)
{
    *fault = DXB_AUDIT_OK;
    /* A key of the wrong size skips the decode; the caller still reports
     * cp->time_ms (audit.verify's "signed ..."), so it must not be garbage. */
    memset(cp, 0, sizeof(*cp));
    if (k->mv_size != 8 || !dxb_audit_cp_decode(v->mv_data, v->mv_size, cp) ||
        cp->seq != dxb_be64_get(k->mv_data) || cp->seq == 0) {
        cp->seq = k->mv_size == 8 ? dxb_be64_get(k->mv_data) : 0;
        *fault = DXB_AUDIT_CP_MALFORMED;
        return DXB_OK;
    }
    if (sodium_memcmp(cp->signer_pk, sign_pk, 32) != 0) {
        *fault = DXB_AUDIT_CP_OTHERKEY;
        return DXB_OK;
    }
    if (!dxb_audit_cp_valid(cp)) {
        *fault = DXB_AUDIT_CP_BADSIG;
        return DXB_OK;
    }
    uint8_t key[8];
    dxb_be64_put(key, cp->seq);
    MDB_val rk = {8, key}, rv;
    int rc = mdb_get(txn, audit, &rk, &rv);
    if (rc == MDB_NOTFOUND) {
        *fault = DXB_AUDIT_CP_SHORT;
    } else if (rc != 0) {
        return dxb_store_err(rc, "audit get");
    } else if (rv.mv_size < 32 || memcmp(rv.mv_data, cp->hash, 32) != 0) {
        *fault = DXB_AUDIT_CP_DIFFERS;
    }
    return DXB_OK;
}

/* Checks the checkpoints in seq order up to the first that fails; counts
 * all of them. */
static dxb_err_t
s_check_cps(MDB_txn *txn, MDB_dbi audit, MDB_dbi cps, const uint8_t sign_pk[32],
            dxb_audit_report_t *r, uint64_t *bad_seq, dxb_audit_fault_t *fault)
{
    MDB_cursor *cur = NULL;
    *bad_seq = 0;
    *fault = DXB_AUDIT_OK;
    int rc = mdb_cursor_open(txn, cps, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "auditcp cursor");
    }
    dxb_err_t err = DXB_OK;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !err;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        r->checkpoints++;
        if (*fault != DXB_AUDIT_OK) {
            continue;
        }
        dxb_audit_cp_t cp;
        err = s_check_cp(txn, audit, sign_pk, &k, &v, &cp, fault);
        if (err || *fault == DXB_AUDIT_OK) {
            if (!err) {
                r->checkpoints_ok++;
                r->last_cp_seq = cp.seq;
                r->last_cp_ms = cp.time_ms;
            }
            continue;
        }
        r->bad_cp_seq = cp.seq;
        r->bad_cp_ms = cp.time_ms;
        r->good_below_seq = r->last_cp_seq;
        /* A checkpoint without a seq of its own breaks what no good one covers. */
        *bad_seq = cp.seq != 0 ? cp.seq : r->last_cp_seq + 1;
        if (*fault == DXB_AUDIT_CP_SHORT || *fault == DXB_AUDIT_CP_DIFFERS) {
            err = s_locate(txn, audit, r->last_cp_seq + 1, cp.seq, cp.time_ms, bad_seq);
        }
    }
    mdb_cursor_close(cur);
    if (!err && rc != MDB_NOTFOUND) {
        err = dxb_store_err(rc, "auditcp walk");
    }
    return err;
}

dxb_err_t
dxb_audit_check(MDB_txn *txn, MDB_dbi audit, const MDB_dbi *cps, const uint8_t sign_pk[32],
                dxb_audit_report_t *r)
{
    memset(r, 0, sizeof(*r));
    dxb_err_t err = s_walk(txn, audit, &r->records, &r->bad_seq, &r->fault);
    if (!err) {
        MDB_cursor *cur = NULL;
        int rc = mdb_cursor_open(txn, audit, &cur);
        MDB_val k, v;
        if (rc == 0) {
            rc = s_last_seq_entry(cur, &k, &v);
            mdb_cursor_close(cur);
        }
        if (rc == 0) {
            r->head_seq = dxb_be64_get(k.mv_data);
        } else if (rc != MDB_NOTFOUND) {
            err = dxb_store_err(rc, "audit last");
        }
    }
    uint64_t cp_bad = 0;
    dxb_audit_fault_t cp_fault = DXB_AUDIT_OK;
    if (!err && cps != NULL) {
        err = s_check_cps(txn, audit, *cps, sign_pk, r, &cp_bad, &cp_fault);
    }
    if (err) {
        return err;
    }
    if (cp_fault != DXB_AUDIT_OK && (r->fault == DXB_AUDIT_OK || cp_bad < r->bad_seq)) {
        r->fault = cp_fault;
        r->bad_seq = cp_bad;
        /* Records past the first broken one do not verify. */
        if (r->records >= cp_bad) {
            r->records = cp_bad - 1;
        }
    }
    return r->fault == DXB_AUDIT_OK ? DXB_OK : DXB_EINTEGRITY;
}
