/* brk_auditcp: signed checkpoints of the audit chain. See brk_auditcp.h. */
#include "broker/brk_auditcp.h"

#include <sodium.h>
#include <string.h>

#include "common/dxb_log.h"
#include "common/dxb_store.h"
#include "common/dxb_util.h"

/* Failures are retried every tick; say so in the log once a minute. */
#define AUDITCP_LOG_EVERY_MS 60000u

/* Opens the checkpoint database in txn. MDB_NOTFOUND (no checkpoint was ever
 * written) comes back as is when create is false. */
static int
s_open_db(MDB_txn *txn, bool create, MDB_dbi *out)
{
    return mdb_dbi_open(txn, BRK_AUDITCP_DB, create ? MDB_CREATE : 0, out);
}

/* True when a checkpoint is due: none yet, or the chain moved past the newest
 * one by checkpoint_records records or checkpoint_s seconds ago. */
static bool
s_due(const brk_cfg_t *cfg, uint64_t head_seq, const dxb_audit_cp_t *last, uint64_t now_ms)
{
    if (head_seq == 0) {
        return false;
    }
    if (last == NULL) {
        return true;
    }
    if (head_seq <= last->seq) {
        /* Not moved, or cut below a signed checkpoint: verify reports that,
         * and no checkpoint is ever written over or below one. */
        return false;
    }
    if (cfg->audit_checkpoint_records > 0 &&
        head_seq - last->seq >= cfg->audit_checkpoint_records) {
        return true;
    }
    return cfg->audit_checkpoint_s > 0 &&
           now_ms >= last->time_ms + (uint64_t)cfg->audit_checkpoint_s * 1000u;
}

static void
s_log_failure(dxb_err_t err)
{
    static uint64_t last_logged_ms;
    uint64_t now = dxb_mono_ms();
    if (last_logged_ms == 0 || now - last_logged_ms >= AUDITCP_LOG_EVERY_MS) {
        last_logged_ms = now;
        dxb_log_error("BRK-AUDITCPFAIL", "cannot write an audit checkpoint, will retry err=%s",
                      dxb_strerror(err));
    }
}

/* Signs and stores the head in its own transaction. */
static void
s_write(brk_server_t *srv)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi = 0;
    dxb_audit_cp_t cp;
    bool written = false;
    dxb_err_t err = dxb_store_begin(srv->store, true, &txn);
    if (!err) {
        int rc = s_open_db(txn, true, &dbi);
        err = rc == 0 ? DXB_OK : dxb_store_err(rc, "auditcp open");
    }
    if (!err) {
        err = dxb_audit_checkpoint(txn, srv->queue->auditdb, dbi, srv->keys.sign_sk,
                                   dxb_now_ms(), &cp, &written);
    }
    if (!err && written) {
        err = dxb_store_commit(srv->store, &txn);
    }
    dxb_store_abort(&txn);
    if (err) {
        s_log_failure(err);
        return;
    }
    if (written) {
        char hex[65];
        dxb_hex_encode(cp.hash, 32, hex);
        dxb_log_info("BRK-AUDITCP", "audit checkpoint signed seq=%llu time_ms=%llu hash=%s",
                     (unsigned long long)cp.seq, (unsigned long long)cp.time_ms, hex);
    }
}

void
brk_auditcp_tick(brk_server_t *srv)
{
    uint64_t head = srv->queue->audit.committed.seq;
    if (head == 0 || dxb_store_failed(srv->store)) {
        return;
    }
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(srv->store, false, &txn);
    if (err) {
        s_log_failure(err);
        return;
    }
    MDB_dbi dbi;
    dxb_audit_cp_t last;
    bool have = false;
    int rc = s_open_db(txn, false, &dbi);
    if (rc == 0) {
        err = dxb_audit_cp_last(txn, dbi, &last);
        /* A malformed newest checkpoint still holds its seq (in the key). */
        have = err == DXB_OK || err == DXB_EINTEGRITY;
        err = have || err == DXB_ENOTFOUND ? DXB_OK : err;
    } else if (rc != MDB_NOTFOUND) {
        err = dxb_store_err(rc, "auditcp open");
    }
    dxb_store_abort(&txn);
    if (err) {
        s_log_failure(err);
        return;
    }
    if (s_due(&srv->cfg, head, have ? &last : NULL, dxb_now_ms())) {
        s_write(srv);
    }
}

void
brk_auditcp_flush(brk_server_t *srv)
{
    if (srv->queue->audit.committed.seq > 0 && !dxb_store_failed(srv->store)) {
        s_write(srv);
    }
}

dxb_err_t
brk_auditcp_check(brk_server_t *srv, MDB_txn *txn, dxb_audit_report_t *r)
{
    MDB_dbi dbi;
    int rc = s_open_db(txn, false, &dbi);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        memset(r, 0, sizeof(*r));
        return dxb_store_err(rc, "auditcp open");
    }
    return dxb_audit_check(txn, srv->queue->auditdb, rc == 0 ? &dbi : NULL, srv->keys.sign_pk,
                           r);
}

dxb_err_t
brk_auditcp_scan_last(brk_server_t *srv, MDB_txn *txn, uint64_t n, brk_auditcp_visit_fn fn,
                      void *arg)
{
    MDB_dbi dbi;
    MDB_cursor *cur = NULL;
    int rc = s_open_db(txn, false, &dbi);
    if (rc == MDB_NOTFOUND || n == 0) {
        return DXB_OK;
    }
    if (rc == 0) {
        rc = mdb_cursor_open(txn, dbi, &cur);
    }
    if (rc != 0) {
        return dxb_store_err(rc, "auditcp open");
    }
    /* Step back n entries from the end, then visit forwards. */
    MDB_val k, v;
    uint64_t back = 1;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    while (rc == 0 && back < n) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
        back++;
    }
    if (rc == MDB_NOTFOUND && back > 1) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    }
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        dxb_audit_cp_t cp;
        if (k.mv_size != 8 || !dxb_audit_cp_decode(v.mv_data, v.mv_size, &cp)) {
            continue;
        }
        bool valid = sodium_memcmp(cp.signer_pk, srv->keys.sign_pk, 32) == 0 &&
                     dxb_audit_cp_valid(&cp);
        if (!fn(arg, &cp, valid)) {
            rc = MDB_NOTFOUND;
            break;
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? DXB_OK : dxb_store_err(rc, "auditcp walk");
}
