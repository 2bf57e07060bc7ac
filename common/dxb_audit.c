/* dxb_audit: hash-chained audit records in LMDB. */
#include "common/dxb_audit.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/dxb_store.h"
#include "common/dxb_util.h"

#define AUDIT_TEXT_MAX 2048

static void
s_hash(const uint8_t prev[32], uint64_t seq, const uint8_t *text, size_t len, uint8_t out[32])
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
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8 && v.mv_size >= 64) {
        a->committed.seq = dxb_be64_get(k.mv_data);
        memcpy(a->committed.hash, v.mv_data, 32);
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
    s_hash(a->working.hash, seq, (const uint8_t *)text, len, val);

    uint8_t key[8];
    dxb_be64_put(key, seq);
    MDB_val k = {8, key};
    MDB_val v = {64 + len, val};
    int rc = mdb_put(txn, a->dbi, &k, &v, MDB_APPEND);
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

dxb_err_t
dxb_audit_verify(MDB_txn *txn, MDB_dbi dbi, uint64_t *count, uint64_t *bad_seq)
{
    MDB_cursor *cur = NULL;
    *count = 0;
    *bad_seq = 0;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0) {
        return dxb_store_err(rc, "audit cursor");
    }
    uint8_t prev[32] = {0};
    uint64_t expect = 1;
    dxb_err_t err = DXB_OK;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint8_t h[32];
        bool ok = k.mv_size == 8 && v.mv_size >= 64 && dxb_be64_get(k.mv_data) == expect;
        if (ok) {
            const uint8_t *val = v.mv_data;
            s_hash(prev, expect, val + 64, v.mv_size - 64, h);
            ok = memcmp(val + 32, prev, 32) == 0 && memcmp(val, h, 32) == 0;
        }
        if (!ok) {
            *bad_seq = expect;
            err = DXB_EINTEGRITY;
            break;
        }
        memcpy(prev, h, 32);
        expect++;
        (*count)++;
    }
    mdb_cursor_close(cur);
    if (err == DXB_OK && rc != MDB_NOTFOUND) {
        err = dxb_store_err(rc, "audit walk");
    }
    return err;
}
