/* dxb_store: safe opening and committing of one LMDB environment. */
#include "common/dxb_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/dxb_log.h"
#include "common/dxb_util.h"

struct dxb_store {
    MDB_env *env; /* owned */
    int lock_fd;  /* owned: flock'd dxb.lock, -1 when closed */
    bool failed;  /* set after an I/O error on commit; never cleared */
    char dir[4096];
};

/* Magic numbers of file systems on which LMDB's locking or fsync cannot be
 * trusted (statfs(2)). */
static bool
s_fs_is_remote(long type)
{
    switch ((unsigned long)type) {
    case 0x6969UL:     /* NFS */
    case 0xFF534D42UL: /* CIFS */
    case 0xFE534D42UL: /* SMB2 */
    case 0x517BUL:     /* SMB */
    case 0x65735546UL: /* FUSE */
        return true;
    default:
        return false;
    }
}

dxb_err_t
dxb_store_err(int rc, const char *what)
{
    switch (rc) {
    case MDB_SUCCESS:
        return DXB_OK;
    case MDB_NOTFOUND:
        return DXB_ENOTFOUND;
    case MDB_KEYEXIST:
        return DXB_EEXIST;
    case MDB_MAP_FULL:
    case ENOSPC:
    case EDQUOT:
        dxb_log_warn("DXB-STOREFULL", "store full what=%s detail=%s", what, mdb_strerror(rc));
        return DXB_EFULL;
    case ENOMEM:
        return DXB_ENOMEM;
    case MDB_READERS_FULL:
    case MDB_TXN_FULL:
    case MDB_CURSOR_FULL:
    case MDB_PAGE_FULL:
    case MDB_BAD_VALSIZE:
        dxb_log_error("DXB-STOREERR", "store limit what=%s detail=%s", what, mdb_strerror(rc));
        return DXB_EINTERNAL;
    default:
        dxb_log_error("DXB-STOREERR", "store error what=%s detail=%s", what, mdb_strerror(rc));
        return DXB_EIO;
    }
}

static dxb_err_t
s_lock_dir(dxb_store_t *s)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/dxb.lock", s->dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lock_fd < 0) {
        dxb_log_error("DXB-STOREOPEN", "cannot create lock file path=%s errno=%s", path,
                      strerror(errno));
        return DXB_EIO;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        dxb_log_error("DXB-STORELOCK",
                      "store directory is in use by another process path=%s", s->dir);
        return DXB_EEXIST;
    }
    return DXB_OK;
}

dxb_err_t
dxb_store_open(dxb_store_t **out, const dxb_store_opts_t *opts)
{
    dxb_err_t err = DXB_OK;
    dxb_store_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return DXB_ENOMEM;
    }
    s->lock_fd = -1;
    if (!dxb_strlcpy(s->dir, opts->dir, sizeof(s->dir))) {
        err = DXB_ECONFIG;
        goto out_free;
    }
    err = dxb_mkdir_p(s->dir, 0700);
    if (err) {
        goto out_free;
    }
    struct statfs sfs;
    if (statfs(s->dir, &sfs) == 0 && s_fs_is_remote((long)sfs.f_type)) {
        dxb_log_error("DXB-STOREREMOTE",
                      "store directory is on a remote or FUSE file system, refused path=%s",
                      s->dir);
        err = DXB_ECONFIG;
        goto out_free;
    }
    err = s_lock_dir(s);
    if (err) {
        goto out_unlock;
    }
    int rc = mdb_env_create(&s->env);
    if (rc == 0) {
        rc = mdb_env_set_mapsize(s->env, (size_t)opts->map_size_bytes);
    }
    if (rc == 0) {
        rc = mdb_env_set_maxdbs(s->env, opts->max_dbs);
    }
    if (rc == 0) {
        rc = mdb_env_set_maxreaders(s->env, 126);
    }
    /* MDB_NOTLS: read txns are tied to our objects, not threads. Never
     * MDB_WRITEMAP (SIGBUS on a full disk). */
    unsigned flags = MDB_NOTLS | (opts->durable ? 0u : MDB_NOSYNC);
    if (rc == 0) {
        rc = mdb_env_open(s->env, s->dir, flags, 0600);
    }
    if (rc != 0) {
        err = dxb_store_err(rc, "env_open");
        goto out_env;
    }
    int dead = 0;
    mdb_reader_check(s->env, &dead);
    if (dead > 0) {
        dxb_log_notice("DXB-STALEREADERS", "cleared stale readers count=%d", dead);
    }
    if (!opts->durable) {
        dxb_log_warn("DXB-FASTMODE",
                     "store in fast mode (no fsync): survives a process crash, NOT power loss "
                     "path=%s",
                     s->dir);
    }
    *out = s;
    return DXB_OK;
out_env:
    mdb_env_close(s->env);
out_unlock:
    if (s->lock_fd >= 0) {
        close(s->lock_fd);
    }
out_free:
    free(s);
    return err;
}

void
dxb_store_destroy(dxb_store_t **store_p)
{
    if (store_p == NULL || *store_p == NULL) {
        return;
    }
    dxb_store_t *s = *store_p;
    mdb_env_close(s->env);
    if (s->lock_fd >= 0) {
        close(s->lock_fd);
    }
    free(s);
    *store_p = NULL;
}

dxb_err_t
dxb_store_dbi(dxb_store_t *store, const char *name, unsigned flags, MDB_dbi *out)
{
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(store->env, NULL, 0, &txn);
    if (rc == 0) {
        rc = mdb_dbi_open(txn, name, flags | MDB_CREATE, out);
    }
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    return dxb_store_err(rc, name);
}

dxb_err_t
dxb_store_begin(dxb_store_t *store, bool write, MDB_txn **txn_out)
{
    if (write && store->failed) {
        return DXB_EIO;
    }
    int rc = mdb_txn_begin(store->env, NULL, write ? 0 : MDB_RDONLY, txn_out);
    return dxb_store_err(rc, write ? "txn_begin_write" : "txn_begin_read");
}

/* True when the file system holding dir has less than 1 MiB free for us. */
static bool
s_disk_nearly_full(const char *dir)
{
    struct statvfs st;
    if (statvfs(dir, &st) != 0) {
        return false;
    }
    return (uint64_t)st.f_bavail * st.f_frsize < (1u << 20);
}

dxb_err_t
dxb_store_commit(dxb_store_t *store, MDB_txn **txn_p)
{
    int rc = mdb_txn_commit(*txn_p);
    *txn_p = NULL;
    dxb_err_t err = dxb_store_err(rc, "commit");
    if (err == DXB_EIO && s_disk_nearly_full(store->dir)) {
        /* LMDB reports a short page write (the file system ran out of space
         * before fsync) as EIO. The meta page was not written, so the store
         * is intact: this is back-pressure, not a failed fsync. */
        dxb_log_warn("DXB-STOREFULL", "store full: No space left on device (short write during commit) path=%s",
                     store->dir);
        return DXB_EFULL;
    }
    if (err == DXB_EIO) {
        /* fsyncgate: after a failed fsync the kernel may have dropped the
         * dirty pages; a retry could "succeed" without the data. Stop. */
        store->failed = true;
        dxb_log_error("DXB-STOREFAILED",
                      "store commit failed with an I/O error; refusing all further writes "
                      "path=%s",
                      store->dir);
    }
    return err;
}

void
dxb_store_abort(MDB_txn **txn_p)
{
    if (txn_p != NULL && *txn_p != NULL) {
        mdb_txn_abort(*txn_p);
        *txn_p = NULL;
    }
}

bool
dxb_store_failed(const dxb_store_t *store)
{
    return store->failed;
}

void
dxb_store_usage(dxb_store_t *store, uint64_t *used_bytes, uint64_t *map_bytes)
{
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(store->env, &info);
    mdb_env_stat(store->env, &st);
    *used_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    *map_bytes = (uint64_t)info.me_mapsize;
}

void
dxb_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

uint64_t
dxb_be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}
