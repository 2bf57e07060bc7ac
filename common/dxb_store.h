/* dxb_store: one LMDB environment on local disk, opened safely.
 *
 * Owns the MDB_env and the process-exclusive lock on the directory (a second
 * process on the same directory is refused, LMDB lock files alone allow it).
 * Invariants and choices, each learnt from field reports
 * (shared/reference/reliability-anchors.md):
 *   - never MDB_WRITEMAP: a full disk would kill us with SIGBUS;
 *   - durable mode syncs on every commit; "fast" mode (MDB_NOSYNC) survives a
 *     process crash but not power loss, and says so in the log at start-up;
 *   - stale readers of killed processes are cleared at open (mdb_reader_check);
 *   - remote file systems (NFS, SMB, FUSE) are refused;
 *   - after a commit fails with EIO the store is "failed": every later write
 *     is refused with DXB_EIO and fsync is never retried (fsyncgate).
 * Map or disk full (MDB_MAP_FULL, ENOSPC) is DXB_EFULL: back-pressure, the
 * store stays usable, nothing committed is lost.
 *
 * Thread context: the owning thread only (one writer). Never fork after open.
 */
#ifndef DXB_STORE_H
#define DXB_STORE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/dxb_err.h"

typedef struct dxb_store dxb_store_t;

typedef struct {
    const char *dir;         /* directory of data.mdb; created 0700 if missing */
    uint64_t map_size_bytes; /* LMDB map size: the store's hard size limit */
    bool durable;            /* true: fsync every commit; false: MDB_NOSYNC ("fast") */
    unsigned max_dbs;        /* named databases */
} dxb_store_opts_t;

/* Opens (creating) the environment. *out is owned by the caller.
 * Errors: DXB_EEXIST (another process holds the directory), DXB_ECONFIG
 * (remote file system, bad options), DXB_EIO, DXB_ENOMEM. */
dxb_err_t dxb_store_open(dxb_store_t **out, const dxb_store_opts_t *opts) DXB_MUST_CHECK;
/* Closes the environment and releases the lock; sets *store_p to NULL. NULL-safe. */
void dxb_store_destroy(dxb_store_t **store_p);

/* Opens (creating) a named database. Call at start-up only. */
dxb_err_t dxb_store_dbi(dxb_store_t *store, const char *name, unsigned flags,
                        MDB_dbi *out) DXB_MUST_CHECK;

/* Begins a transaction. Write transactions fail with DXB_EIO once the store failed. */
dxb_err_t dxb_store_begin(dxb_store_t *store, bool write, MDB_txn **txn_out) DXB_MUST_CHECK;
/* Commits and NULLs *txn_p. Errors: DXB_EFULL (map/disk full), DXB_EIO (the
 * store is now failed). On error the transaction is gone (aborted). */
dxb_err_t dxb_store_commit(dxb_store_t *store, MDB_txn **txn_p) DXB_MUST_CHECK;
/* Aborts and NULLs *txn_p. NULL-safe. */
void dxb_store_abort(MDB_txn **txn_p);

/* Maps an LMDB return code to dxb_err_t; logs the raw detail once with what. */
dxb_err_t dxb_store_err(int rc, const char *what);

/* True after an I/O failure: the process must stop taking writes. */
bool dxb_store_failed(const dxb_store_t *store);
/* Bytes of the data file in use (last page * page size) and the map size. */
void dxb_store_usage(dxb_store_t *store, uint64_t *used_bytes, uint64_t *map_bytes);

/* Big-endian helpers for keys that sort by number. */
void dxb_be64_put(uint8_t *p, uint64_t v);
uint64_t dxb_be64_get(const uint8_t *p);

#endif
