/* brk_auditcp: signed checkpoints of the broker's audit chain.
 *
 * Owns the "auditcp" database of the broker's store: key be64(seq), value a
 * checkpoint signed with the broker's identity key (format and signature in
 * common/dxb_audit.h, PROTOCOL.md section 8). A checkpoint is written in its
 * own small transaction when the chain's head is beyond the newest one and
 * either audit.checkpoint_s seconds have passed since it or
 * audit.checkpoint_records records were appended since (conf/broker.yaml).
 * Every checkpoint is also logged (BRK-AUDITCP, with seq and hash), so that
 * a witness of it exists outside the store.
 *
 * The database is opened by name inside each transaction that needs it
 * (mdb_dbi_open hands back the same handle once it exists), so the module
 * keeps no state: the newest checkpoint in the store and the audit head say
 * when the next one is due, across restarts too.
 *
 * Thread context: the broker's main thread (the store's one writer); call
 * nothing here while another transaction of the process is open, except
 * brk_auditcp_check and brk_auditcp_scan_last, which run inside the
 * caller's transaction.
 */
#ifndef BRK_AUDITCP_H
#define BRK_AUDITCP_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker/brk_server.h"
#include "common/dxb_audit.h"
#include "common/dxb_err.h"

/* Name of the checkpoint database in the broker's store. */
#define BRK_AUDITCP_DB "auditcp"

/* Writes a checkpoint when one is due (see above). Meant for the
 * housekeeping timer, about once a second: when nothing is due it costs one
 * read transaction. A failure is logged (BRK-AUDITCPFAIL, at most once a
 * minute) and retried on a later call; it never stops the broker. */
void brk_auditcp_tick(brk_server_t *srv);

/* Writes a checkpoint now if the chain moved past the newest one, whatever
 * the schedule says (at shutdown, after the "stop" record). Errors are
 * logged as for brk_auditcp_tick. */
void brk_auditcp_flush(brk_server_t *srv);

/* Verifies the whole audit log in txn (read-only is fine): the hash chain
 * and every checkpoint against the broker's public key (dxb_audit_check).
 * Returns DXB_OK, DXB_EINTEGRITY (*r names the first broken entry) or a
 * store error. */
dxb_err_t brk_auditcp_check(brk_server_t *srv, MDB_txn *txn,
                            dxb_audit_report_t *r) DXB_MUST_CHECK;

/* Visitor of brk_auditcp_scan_last: cp is borrowed for the call; valid tells
 * whether its signature verifies under the broker's key. Returns false to
 * stop. */
typedef bool (*brk_auditcp_visit_fn)(void *arg, const dxb_audit_cp_t *cp, bool valid);

/* Visits the newest n checkpoints in txn, oldest first; malformed values are
 * skipped. No checkpoint database yet: visits nothing. Errors: store errors. */
dxb_err_t brk_auditcp_scan_last(brk_server_t *srv, MDB_txn *txn, uint64_t n,
                                brk_auditcp_visit_fn fn, void *arg) DXB_MUST_CHECK;

#endif
