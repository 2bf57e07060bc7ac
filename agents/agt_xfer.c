/* agt_xfer: chunked transfers of large files (PROTOCOL.md 5.1).
 *
 * Sending. A spool file larger than transfer.threshold_bytes becomes a
 * transfer: in the pick-up transaction a record (xout) and the sealed
 * manifest are committed; then the file is renamed into <data_dir>/xfer/out/.
 * agt_xfer_produce keeps at most transfer.window_chunks sealed chunks of each
 * transfer in the outbox: it reads the next chunk, hashes it into the running
 * file hash, compresses and seals it, and commits it to the outbox together
 * with the record's new position. From there chunks travel like any message
 * (resent from the oldest after a reconnect, de-duplicated by id). A crash
 * loses nothing: committed chunks are in the outbox, and production resumes
 * at the recorded position after re-hashing the prefix of the file. When the
 * last chunk is acknowledged the record and the file are removed.
 *
 * Streams (API_STREAM_*, agt_api.c) arrive in a staging file under
 * <data_dir>/xfer/stage/ (agt_xfer_stage_open / _write); at the end
 * agt_xfer_stage_finish fsyncs it and renames it into xfer/out/, and the
 * caller starts the transfer (agt_xfer_start) in its transaction. Staging
 * files are never committed: start-up deletes them all, and a file renamed
 * into xfer/out/ whose commit a crash took away is an orphan that start-up
 * deletes too.
 *
 * Receiving. The manifest creates a record (xin) and an empty hidden part
 * file in the dataset's inbox folder. Each chunk must be the next one: it is
 * opened (AEAD bound to index, transfer and header), written at its offset,
 * hashed, and the part file is fsynced before the batch commits the new
 * position and the DACK leaves. The last chunk carries the sender's signed
 * file hash; only when it matches what was assembled is the file placed like
 * any delivery (sidecar first, rename, directory fsync). Memory: one chunk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agents/agt_agent.h"
#include "common/dxb_log.h"
#include "common/dxb_util.h"
#include "proto/dxb_seal.h"
#include "proto/dxb_xfer.h"

#define XRT_MAX 16
#define PRODUCE_MAX_IDS 64
#define AUTO_GIVE_UP 4 /* chunks in a row that did not shrink: stop trying (auto) */
#define PATH_CAP 4200

/* A running BLAKE2b state saved with a transfer's position, so a restart
 * resumes the file hash without reading back what was already sent or
 * received (a GiB would stall the event loop for seconds). Valid only for
 * the same libsodium state layout: `tag` checks that, else the prefix is
 * re-hashed. */
typedef struct {
    uint32_t tag;   /* sizeof(crypto_generichash_state) | 0x5a000000 when valid */
    uint32_t at;    /* chunks folded in */
    uint8_t state[sizeof(crypto_generichash_state)];
} agt_hsave_t;

#define HSAVE_TAG ((uint32_t)sizeof(crypto_generichash_state) | 0x5a000000u)

/* Record of a transfer being sent; followed by n_rcpt ids of 65 bytes. */
typedef struct {
    uint8_t xfer_id[16];
    char dataset[65];
    char name[256];
    dxb_manifest_t m;      /* secret: holds the transfer key */
    uint32_t produced;     /* next chunk index to seal (1..count+1) */
    uint32_t ttl_s;
    uint64_t started_ms;
    uint64_t packed_bytes; /* chunk data bytes after compression, so far */
    uint32_t no_gain;      /* chunks in a row that did not compress */
    uint8_t compress;      /* AGT_COMPRESS_* */
    uint16_t n_rcpt;
    agt_hsave_t hs;        /* running file hash after chunk produced - 1 */
} agt_xout_t;

/* Record of a transfer being received. */
typedef struct {
    uint8_t xfer_id[16];
    char sender[65];
    char dataset[65];
    char name[256];
    dxb_manifest_t m; /* secret */
    uint32_t received; /* chunks written and fsynced */
    uint8_t failed;
    uint64_t created_ms, started_ms;
    uint64_t updated_ms; /* last chunk taken (or failure): the sweep's clock */
    agt_hsave_t hs;      /* running file hash after chunk received */
} agt_xin_t;

/* Run-time state of one transfer: its open file and running hash. */
typedef struct agt_xrt {
    bool used, out, dirty, resumed, finished;
    uint8_t xfer_id[16];
    int fd;
    crypto_generichash_state h;
    uint32_t hashed; /* chunks folded into h */
    uint64_t last_use;
} agt_xrt_t;

static void s_xrt_drop(agt_xrt_t *r);

/* Files in xfer/out without a record: a stream (API) renamed in before a
 * crash took its commit away. Nobody was acknowledged; the sender retries. */
static void
s_remove_orphans(agt_t *a, MDB_txn *txn)
{
    char dir[PATH_CAP];
    snprintf(dir, sizeof(dir), "%s/xfer/out", a->cfg.data_dir);
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint8_t id[16];
        if (strlen(de->d_name) != 32 || !dxb_hex_decode(de->d_name, id, 16) ||
            agt_xfer_known(a, txn, id)) {
            continue;
        }
        dxb_log_warn("AGT-XFERORPHAN", "removing a transfer file that was never committed file=%s",
                     de->d_name);
        unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

/* Staging files of API streams cut off by a stop or crash: nobody was
 * answered OK for them, so nothing is lost. */
static void
s_clear_stage(agt_t *a)
{
    char dir[PATH_CAP];
    snprintf(dir, sizeof(dir), "%s/xfer/stage", a->cfg.data_dir);
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *de;
    size_t n = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
            unlinkat(dirfd(d), de->d_name, 0) == 0) {
            n++;
        }
    }
    closedir(d);
    if (n > 0) {
        dxb_log_notice("AGT-STREAMCLEAN", "removed unfinished API stream files files=%zu", n);
    }
}

dxb_err_t
agt_xfer_init(agt_t *a)
{
    char path[PATH_CAP];
    snprintf(path, sizeof(path), "%s/xfer/out", a->cfg.data_dir);
    dxb_err_t err = dxb_mkdir_p(path, 0700);
    if (!err) {
        snprintf(path, sizeof(path), "%s/xfer/stage", a->cfg.data_dir);
        err = dxb_mkdir_p(path, 0700);
        s_clear_stage(a);
    }
    a->xrt = calloc(XRT_MAX, sizeof(*a->xrt));
    a->xbuf = malloc(DXB_XFER_CHUNK_MAX);
    if (!err && (a->xrt == NULL || a->xbuf == NULL)) {
        err = DXB_ENOMEM;
    }
    a->n_xrt = XRT_MAX;
    MDB_txn *txn = NULL;
    if (!err) {
        err = dxb_store_begin(a->store, false, &txn);
    }
    if (!err) {
        MDB_stat st;
        mdb_stat(txn, a->xout, &st);
        a->n_xout = st.ms_entries;
        MDB_stat si;
        mdb_stat(txn, a->xin, &si);
        s_remove_orphans(a, txn);
        if (st.ms_entries + si.ms_entries > 0) {
            dxb_log_notice("AGT-XFERRESUME",
                           "resuming chunked transfers sending=%zu receiving=%zu",
                           (size_t)st.ms_entries, (size_t)si.ms_entries);
        }
        dxb_store_abort(&txn);
    }
    return err;
}

void
agt_xfer_destroy(agt_t *a)
{
    for (size_t i = 0; a->xrt != NULL && i < a->n_xrt; i++) {
        s_xrt_drop(&a->xrt[i]);
    }
    free(a->xrt);
    a->xrt = NULL;
    if (a->xbuf != NULL) {
        sodium_memzero(a->xbuf, DXB_XFER_CHUNK_MAX);
        free(a->xbuf);
        a->xbuf = NULL;
    }
}

bool
agt_xfer_wanted(const agt_t *a, uint64_t size)
{
    return size > a->cfg.xfer_threshold;
}

void
agt_xfer_src_path(const agt_t *a, const uint8_t xfer_id[16], char *out, size_t cap)
{
    char hex[33];
    dxb_hex_encode(xfer_id, 16, hex);
    snprintf(out, cap, "%s/xfer/out/%s", a->cfg.data_dir, hex);
}

static void
s_part_path(const agt_t *a, const agt_xin_t *x, char *out, size_t cap)
{
    char hex[33];
    dxb_hex_encode(x->xfer_id, 16, hex);
    snprintf(out, cap, "%s/inbox/%s/.dxb-part-%s", a->cfg.data_dir, x->dataset, hex);
}

bool
agt_xfer_known(agt_t *a, MDB_txn *txn, const uint8_t xfer_id[16])
{
    MDB_val k = {16, (void *)xfer_id}, v;
    return mdb_get(txn, a->xout, &k, &v) == 0;
}

/* Id of piece index of a transfer: the manifest's id is the transfer id;
 * chunk ids are keyed hashes of it, so a re-sealed chunk keeps its id. */
static void
s_piece_id(const agt_t *a, const uint8_t xfer_id[16], uint32_t index, uint8_t out[16])
{
    if (index == 0) {
        memcpy(out, xfer_id, 16);
        return;
    }
    uint8_t in[4 + 16 + 4];
    memcpy(in, "dxbp", 4);
    memcpy(in + 4, xfer_id, 16);
    memcpy(in + 20, &index, 4);
    crypto_generichash(out, 16, in, sizeof(in), a->spool_id_key, 32);
}

/* ---- run-time state ------------------------------------------------------- */

static void
s_xrt_drop(agt_xrt_t *r)
{
    if (r->used && r->fd >= 0) {
        close(r->fd);
    }
    sodium_memzero(r, sizeof(*r));
    r->fd = -1;
}

static agt_xrt_t *
s_xrt_find(agt_t *a, const uint8_t xfer_id[16], bool out)
{
    agt_xrt_t *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < a->n_xrt; i++) {
        agt_xrt_t *r = &a->xrt[i];
        if (r->used && r->out == out && memcmp(r->xfer_id, xfer_id, 16) == 0) {
            r->last_use = dxb_mono_ms();
            return r;
        }
        if (!r->used && free_slot == NULL) {
            free_slot = r;
        }
        if (r->used && !r->dirty && (oldest == NULL || r->last_use < oldest->last_use)) {
            oldest = r;
        }
    }
    agt_xrt_t *r = free_slot != NULL ? free_slot : oldest;
    if (r == NULL) {
        return NULL;
    }
    s_xrt_drop(r);
    r->used = true;
    r->out = out;
    memcpy(r->xfer_id, xfer_id, 16);
    r->last_use = dxb_mono_ms();
    return r;
}

/* Reads exactly len bytes at off (short only at end of file: DXB_EPROTO). */
static dxb_err_t
s_pread_all(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return DXB_EIO;
        }
        if (n == 0) {
            return DXB_EPROTO;
        }
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return DXB_OK;
}

static dxb_err_t
s_pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return errno == ENOSPC || errno == EDQUOT ? DXB_EFULL : DXB_EIO;
        }
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return DXB_OK;
}

/* Opens the run-time state of a transfer whose first `done` chunks are
 * already processed: the running hash is rebuilt by reading them back (after
 * a restart; one pass over what was already sent or received). */
static dxb_err_t
s_xrt_open(agt_t *a, agt_xrt_t *r, const char *path, bool create, const dxb_manifest_t *m,
           uint32_t done, const agt_hsave_t *hs)
{
    if (r->fd >= 0 && r->hashed == done) {
        return DXB_OK;
    }
    if (r->fd < 0) {
        int flags = create ? (O_RDWR | O_CREAT) : O_RDONLY;
        r->fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (r->fd < 0) {
            dxb_log_error("AGT-XFERERR", "cannot open transfer file path=%s errno=%s", path,
                          strerror(errno));
            r->fd = -1;
            return errno == ENOSPC ? DXB_EFULL : DXB_EIO;
        }
    }
    crypto_generichash_init(&r->h, NULL, 0, 32);
    r->hashed = 0;
    if (hs != NULL && hs->tag == HSAVE_TAG && hs->at == done) {
        memcpy(&r->h, hs->state, sizeof(r->h));
        r->hashed = done;
    }
    while (r->hashed < done) {
        uint32_t i = r->hashed + 1;
        size_t len = dxb_xfer_chunk_len(m, i);
        dxb_err_t err = s_pread_all(r->fd, a->xbuf, len, (uint64_t)(i - 1) * m->chunk_size);
        if (err) {
            return err;
        }
        crypto_generichash_update(&r->h, a->xbuf, len);
        r->hashed = i;
    }
    r->resumed = done > 0;
    return DXB_OK;
}

/* ---- sending --------------------------------------------------------------- */

static int
s_compress_mode(const agt_t *a, const agt_dataset_cfg_t *ds)
{
    return ds != NULL && ds->compress >= 0 ? ds->compress : a->cfg.xfer_compress;
}

dxb_err_t
agt_xfer_start(agt_t *a, MDB_txn *txn, const agt_xfer_spec_t *sp, const char *name,
               uint64_t size, const uint8_t xfer_id[16])
{
    size_t n = sp->n_recipients;
    size_t rec_len = sizeof(agt_xout_t) + n * 65;
    agt_xout_t *x = calloc(1, rec_len);
    msgpack_sbuffer man, env;
    msgpack_sbuffer_init(&man);
    msgpack_sbuffer_init(&env);
    static uint8_t box_pks[DXB_MAX_RECIPIENTS][32];
    const char *rcpt[DXB_MAX_RECIPIENTS];
    dxb_err_t err = x == NULL ? DXB_ENOMEM : DXB_OK;
    for (size_t i = 0; !err && i < n; i++) {
        agt_peer_t *p = agt_peer_find(a, sp->recipients[i]);
        if (p == NULL) {
            err = DXB_ENOROUTE;
            break;
        }
        if (agt_gov_mask_grant(a, sp->dataset, sp->recipients[i]) != NULL) {
            /* Chunked transfers are not masked (yet): refuse rather than
             * send a consumer more than its grant allows. */
            dxb_log_error("AGT-MASKFAIL", "a grant masks dataset %s for %s; chunked transfers "
                          "are not masked yet, transfer refused", sp->dataset, sp->recipients[i]);
            err = DXB_EDENIED;
            break;
        }
        memcpy(box_pks[i], p->box_pk, 32);
        rcpt[i] = sp->recipients[i];
    }
    int mode = s_compress_mode(a, agt_cfg_dataset(&a->cfg, sp->dataset));
    if (!err) {
        err = dxb_xfer_manifest_new(&x->m, size, a->cfg.xfer_chunk,
                                    mode == AGT_COMPRESS_NONE ? DXB_XFER_COMP_NONE
                                                              : DXB_XFER_COMP_ZSTD,
                                    "application/octet-stream");
    }
    if (!err) {
        err = dxb_xfer_manifest_encode(&man, &x->m);
    }
    uint64_t seq = 0;
    if (!err) {
        err = agt_store_next_seq(a, txn, sp->dataset, &seq);
    }
    if (!err) {
        dxb_header_in_t h = {.msg_id = xfer_id,
                             .sender = a->cfg.id,
                             .dataset = sp->dataset,
                             .kind = DXB_KIND_DELIVERY,
                             .seq = seq,
                             .created_ms = dxb_now_ms(),
                             .ttl_s = sp->ttl_s,
                             .recipients = rcpt,
                             .n_recipients = (uint16_t)n,
                             .region = "",
                             .suite = DXB_SUITE_SODIUM1,
                             .flags = DXB_FLAG_CHUNK | DXB_FLAG_MANIFEST};
        err = dxb_seal_envelope(&env, &a->keys, &h, (const uint8_t(*)[32])box_pks,
                                (dxb_bytes_t){(const uint8_t *)name, strlen(name)},
                                DXB_XFER_CT_MANIFEST,
                                (dxb_bytes_t){(const uint8_t *)man.data, man.size});
    }
    if (!err) {
        err = agt_store_outbox_put(a, txn, xfer_id, &env, sp->dataset, seq, man.size, n);
    }
    if (!err) {
        memcpy(x->xfer_id, xfer_id, 16);
        dxb_strlcpy(x->dataset, sp->dataset, sizeof(x->dataset));
        dxb_strlcpy(x->name, name, sizeof(x->name));
        x->produced = 1;
        x->ttl_s = sp->ttl_s;
        x->started_ms = dxb_now_ms();
        x->compress = (uint8_t)mode;
        x->n_rcpt = (uint16_t)n;
        memcpy((uint8_t *)(x + 1), sp->recipients, n * 65);
        MDB_val k = {16, (void *)xfer_id}, v = {rec_len, x};
        err = dxb_store_err(mdb_put(txn, a->xout, &k, &v, 0), "xout put");
    }
    if (!err) {
        char hex[33];
        dxb_hex_encode(xfer_id, 16, hex);
        err = dxb_audit_append(&a->audit, txn, a->cfg.id, "transfer-start", sp->dataset, "ok",
                               "xfer_id=%s name=%s size=%llu chunks=%u", hex, name,
                               (unsigned long long)size, x->m.count);
        dxb_log_notice("AGT-XFERSTART",
                       "chunked transfer queued xfer_id=%s dataset=%s file=%s size=%llu "
                       "chunks=%u chunk_bytes=%u",
                       hex, sp->dataset, name, (unsigned long long)size, x->m.count,
                       x->m.chunk_size);
        a->n_xout++;
    }
    if (man.data != NULL) {
        sodium_memzero(man.data, man.alloc);
    }
    msgpack_sbuffer_destroy(&man);
    msgpack_sbuffer_destroy(&env);
    if (x != NULL) {
        sodium_memzero(x, rec_len);
        free(x);
    }
    return err;
}

/* ---- API streams ------------------------------------------------------------ */

dxb_err_t
agt_xfer_stage_open(agt_t *a, char *path, size_t cap, int *fd_out)
{
    char dir[PATH_CAP], hex[33];
    uint8_t rnd[16];
    snprintf(dir, sizeof(dir), "%s/xfer/stage", a->cfg.data_dir);
    dxb_err_t err = dxb_mkdir_p(dir, 0700);
    if (err) {
        return err;
    }
    randombytes_buf(rnd, sizeof(rnd));
    dxb_hex_encode(rnd, sizeof(rnd), hex);
    snprintf(path, cap, "%s/%s", dir, hex);
    *fd_out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (*fd_out < 0) {
        int e = errno;
        dxb_log_error("AGT-STREAMERR", "cannot create a stream staging file path=%s errno=%s",
                      path, strerror(e));
        return e == ENOSPC || e == EDQUOT ? DXB_EFULL : DXB_EIO;
    }
    return DXB_OK;
}

dxb_err_t
agt_xfer_stage_write(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
    dxb_err_t err = s_pwrite_all(fd, buf, len, off);
    if (err) {
        dxb_log_error("AGT-STREAMERR", "cannot write a stream staging file errno=%s",
                      strerror(errno));
    }
    return err;
}

dxb_err_t
agt_xfer_stage_finish(agt_t *a, const char *staged, int fd, uint8_t xfer_id_out[16])
{
    char dest[PATH_CAP], dir[PATH_CAP];
    if (fsync(fd) != 0) {
        int e = errno;
        dxb_log_error("AGT-STREAMERR", "fsync of a stream staging file failed path=%s errno=%s",
                      staged, strerror(e));
        return e == ENOSPC || e == EDQUOT ? DXB_EFULL : DXB_EIO;
    }
    randombytes_buf(xfer_id_out, 16);
    agt_xfer_src_path(a, xfer_id_out, dest, sizeof(dest));
    if (rename(staged, dest) != 0) {
        dxb_log_error("AGT-STREAMERR", "cannot move a stream into the transfer area path=%s "
                      "errno=%s", staged, strerror(errno));
        return DXB_EIO;
    }
    /* Durable before the record that names the file commits; a crash in
     * between leaves an orphan that agt_xfer_init removes. */
    snprintf(dir, sizeof(dir), "%s/xfer/out", a->cfg.data_dir);
    dxb_err_t err = dxb_fsync_dir(dir);
    if (err) {
        unlink(dest);
    }
    return err;
}

/* Seals chunk x->produced into the outbox. */
static dxb_err_t
s_produce_one(agt_t *a, MDB_txn *txn, agt_xout_t *x, agt_xrt_t *r)
{
    uint32_t i = x->produced;
    size_t len = dxb_xfer_chunk_len(&x->m, i);
    dxb_err_t err = s_pread_all(r->fd, a->xbuf, len, (uint64_t)(i - 1) * x->m.chunk_size);
    if (err) {
        return err;
    }
    crypto_generichash_update(&r->h, a->xbuf, len);
    r->hashed = i;
    x->hs.tag = HSAVE_TAG;
    x->hs.at = i;
    memcpy(x->hs.state, &r->h, sizeof(r->h));
    uint8_t hash[32];
    bool last = i == x->m.count;
    if (last) {
        crypto_generichash_final(&r->h, hash, sizeof(hash));
    }
    uint64_t seq = 0;
    err = agt_store_next_seq(a, txn, x->dataset, &seq);
    if (err) {
        return err;
    }
    const char *rcpt[DXB_MAX_RECIPIENTS];
    const char (*ids)[65] = (const char(*)[65])(x + 1);
    for (uint16_t k = 0; k < x->n_rcpt; k++) {
        rcpt[k] = ids[k];
    }
    uint8_t piece[16];
    s_piece_id(a, x->xfer_id, i, piece);
    dxb_header_in_t h = {.msg_id = piece,
                         .sender = a->cfg.id,
                         .dataset = x->dataset,
                         .kind = DXB_KIND_DELIVERY,
                         .seq = seq,
                         .created_ms = dxb_now_ms(),
                         .ttl_s = x->ttl_s,
                         .recipients = rcpt,
                         .n_recipients = x->n_rcpt,
                         .region = ""};
    bool try_zstd = x->compress == AGT_COMPRESS_ZSTD ||
                    (x->compress == AGT_COMPRESS_AUTO && x->no_gain < AUTO_GIVE_UP);
    msgpack_sbuffer env;
    msgpack_sbuffer_init(&env);
    size_t sealed = 0;
    err = dxb_xfer_seal_chunk(&env, &a->keys, &h, x->xfer_id, &x->m, i, a->xbuf, len, try_zstd,
                              last ? hash : NULL, &sealed);
    if (!err) {
        err = agt_store_outbox_put(a, txn, piece, &env, x->dataset, seq, len, x->n_rcpt);
    }
    msgpack_sbuffer_destroy(&env);
    if (!err) {
        x->no_gain = sealed < len ? 0 : x->no_gain + 1;
        x->packed_bytes += sealed;
        x->produced++;
    }
    return err;
}

/* Chunks of x sealed and still waiting in the outbox. */
static uint32_t
s_pending(agt_t *a, MDB_txn *txn, const agt_xout_t *x)
{
    uint32_t w = a->cfg.xfer_window, n = 0;
    uint32_t from = x->produced > w ? x->produced - w : 0;
    for (uint32_t i = from; i < x->produced; i++) {
        uint8_t id[16];
        s_piece_id(a, x->xfer_id, i, id);
        n += agt_store_outbox_has(a, txn, id) ? 1 : 0;
    }
    return n;
}

typedef struct {
    uint8_t ids[PRODUCE_MAX_IDS][16];
    size_t n;
    uint8_t done[PRODUCE_MAX_IDS][16];
    size_t n_done;
} agt_produce_t;

/* Advances one transfer inside txn. *changed when anything was written. */
static dxb_err_t
s_produce_xfer(agt_t *a, MDB_txn *txn, const uint8_t id[16], agt_produce_t *pr, bool *changed)
{
    MDB_val k = {16, (void *)id}, v;
    if (mdb_get(txn, a->xout, &k, &v) != 0 || v.mv_size < sizeof(agt_xout_t)) {
        return DXB_OK;
    }
    size_t rec_len = v.mv_size;
    agt_xout_t *x = malloc(rec_len);
    if (x == NULL) {
        return DXB_ENOMEM;
    }
    memcpy(x, v.mv_data, rec_len);
    uint32_t pending = s_pending(a, txn, x);
    dxb_err_t err = DXB_OK;
    char hex[33];
    dxb_hex_encode(x->xfer_id, 16, hex);
    if (x->produced > x->m.count && pending == 0) {
        /* Every chunk is acknowledged by the broker: the transfer is sent. */
        err = dxb_store_err(mdb_del(txn, a->xout, &k, NULL), "xout del");
        if (!err) {
            double secs = (double)(dxb_now_ms() - x->started_ms) / 1000.0;
            err = dxb_audit_append(&a->audit, txn, a->cfg.id, "transfer-sent", x->dataset, "ok",
                                   "xfer_id=%s size=%llu packed=%llu", hex,
                                   (unsigned long long)x->m.size,
                                   (unsigned long long)x->packed_bytes);
            dxb_log_notice("AGT-XFERSENT",
                           "chunked transfer acknowledged by the broker xfer_id=%s file=%s "
                           "size=%llu packed=%llu ratio=%.3f seconds=%.1f",
                           hex, x->name, (unsigned long long)x->m.size,
                           (unsigned long long)x->packed_bytes,
                           x->m.size ? (double)x->packed_bytes / (double)x->m.size : 1.0, secs);
            memcpy(pr->done[pr->n_done++], x->xfer_id, 16);
            *changed = true;
        }
        goto out;
    }
    if (x->produced > x->m.count || pending >= a->cfg.xfer_window) {
        goto out;
    }
    agt_xrt_t *r = s_xrt_find(a, x->xfer_id, true);
    char path[PATH_CAP];
    agt_xfer_src_path(a, x->xfer_id, path, sizeof(path));
    err = r == NULL ? DXB_EAGAIN : s_xrt_open(a, r, path, false, &x->m, x->produced - 1, &x->hs);
    if (!err && r->resumed) {
        dxb_log_notice("AGT-XFERRESUME", "resuming chunked transfer xfer_id=%s at chunk %u of %u",
                       hex, x->produced, x->m.count);
        r->resumed = false;
    }
    while (!err && pending < a->cfg.xfer_window && x->produced <= x->m.count) {
        err = s_produce_one(a, txn, x, r);
        pending++;
        *changed = true;
    }
    if (!err && *changed) {
        MDB_val nv = {rec_len, x};
        err = dxb_store_err(mdb_put(txn, a->xout, &k, &nv, 0), "xout put");
    }
    if (err && r != NULL) {
        s_xrt_drop(r); /* the hash ran ahead of the store: rebuilt next time */
    }
    if (err == DXB_EPROTO) {
        dxb_log_error("AGT-XFERERR", "transfer file shorter than when it was taken xfer_id=%s",
                      hex);
    }
out:
    sodium_memzero(x, rec_len);
    free(x);
    return err;
}

void
agt_xfer_produce(agt_t *a)
{
    if (a->n_xout == 0) {
        return;
    }
    static agt_produce_t pr;
    pr.n = 0;
    pr.n_done = 0;
    MDB_txn *txn = NULL;
    if (dxb_store_begin(a->store, true, &txn) != DXB_OK) {
        return;
    }
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    mdb_cursor_open(txn, a->xout, &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && pr.n < PRODUCE_MAX_IDS;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size == 16) {
            memcpy(pr.ids[pr.n++], k.mv_data, 16);
        }
    }
    mdb_cursor_close(cur);
    bool changed = false;
    dxb_err_t err = DXB_OK;
    for (size_t i = 0; !err && i < pr.n; i++) {
        err = s_produce_xfer(a, txn, pr.ids[i], &pr, &changed);
    }
    if (!err && changed) {
        err = agt_store_commit(a, &txn);
    }
    dxb_store_abort(&txn);
    dxb_audit_settle(&a->audit, !err && changed);
    if (err) {
        for (size_t i = 0; i < a->n_xrt; i++) {
            if (a->xrt[i].out) {
                s_xrt_drop(&a->xrt[i]);
            }
        }
        return;
    }
    for (size_t i = 0; i < pr.n_done; i++) {
        char path[PATH_CAP];
        agt_xfer_src_path(a, pr.done[i], path, sizeof(path));
        unlink(path);
        agt_xrt_t *r = s_xrt_find(a, pr.done[i], true);
        if (r != NULL) {
            s_xrt_drop(r);
        }
        a->n_xout = a->n_xout > 0 ? a->n_xout - 1 : 0;
    }
}

/* ---- receiving ------------------------------------------------------------- */

static dxb_err_t
s_xin_get(agt_t *a, MDB_txn *txn, const uint8_t id[16], agt_xin_t *x, bool *found)
{
    MDB_val k = {16, (void *)id}, v;
    int rc = mdb_get(txn, a->xin, &k, &v);
    *found = rc == 0 && v.mv_size == sizeof(*x);
    if (*found) {
        memcpy(x, v.mv_data, sizeof(*x));
    }
    return rc == 0 || rc == MDB_NOTFOUND ? DXB_OK : dxb_store_err(rc, "xin get");
}

static dxb_err_t
s_xin_put(agt_t *a, MDB_txn *txn, agt_xin_t *x)
{
    x->updated_ms = dxb_now_ms();
    MDB_val k = {16, (void *)x->xfer_id}, v = {sizeof(*x), (void *)x};
    return dxb_store_err(mdb_put(txn, a->xin, &k, &v, 0), "xin put");
}

uint16_t
agt_xfer_on_manifest(agt_t *a, MDB_txn *txn, const dxb_env_t *env, const dxb_plain_t *pt,
                     dxb_err_t *err)
{
    static agt_xin_t x;
    char detail[96] = "", hex[33];
    dxb_hex_encode(env->hdr.msg_id, 16, hex);
    memset(&x, 0, sizeof(x));
    if (pt->name.len == 0 || pt->name.len >= sizeof(x.name) ||
        !dxb_filename_safe((const char *)pt->name.ptr, pt->name.len) ||
        dxb_xfer_manifest_decode(pt->payload.ptr, pt->payload.len, &x.m, detail,
                                 sizeof(detail)) != DXB_OK) {
        dxb_log_warn("AGT-XFERBAD", "transfer manifest refused sender=%s xfer_id=%s detail=%s",
                     env->hdr.sender, hex, detail[0] ? detail : "unsafe file name");
        sodium_memzero(&x, sizeof(x));
        return DXB_W_EPROTO;
    }
    memcpy(x.xfer_id, env->hdr.msg_id, 16);
    dxb_strlcpy(x.sender, env->hdr.sender, sizeof(x.sender));
    dxb_strlcpy(x.dataset, env->hdr.dataset, sizeof(x.dataset));
    memcpy(x.name, pt->name.ptr, pt->name.len);
    x.created_ms = env->hdr.created_ms;
    x.started_ms = dxb_now_ms();
    char dir[PATH_CAP], path[PATH_CAP];
    snprintf(dir, sizeof(dir), "%s/inbox/%s", a->cfg.data_dir, x.dataset);
    s_part_path(a, &x, path, sizeof(path));
    *err = dxb_mkdir_p(dir, 0770);
    if (!*err) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0) {
            *err = errno == ENOSPC ? DXB_EFULL : DXB_EIO;
        } else {
            close(fd);
        }
    }
    if (!*err) {
        *err = s_xin_put(a, txn, &x);
    }
    if (!*err) {
        *err = dxb_audit_append(&a->audit, txn, a->cfg.id, "transfer-begin", x.dataset, "ok",
                                "xfer_id=%s sender=%s name=%s size=%llu chunks=%u", hex,
                                x.sender, x.name, (unsigned long long)x.m.size, x.m.count);
        dxb_log_notice("AGT-XFERRECV",
                       "receiving chunked transfer xfer_id=%s sender=%s dataset=%s file=%s "
                       "size=%llu chunks=%u",
                       hex, x.sender, x.dataset, x.name, (unsigned long long)x.m.size,
                       x.m.count);
    }
    sodium_memzero(&x, sizeof(x));
    return DXB_W_OK;
}

/* Gives up on a transfer that cannot complete (a chunk missing, forged or
 * corrupt): the part file goes, the record stays marked failed so that its
 * remaining chunks are refused rather than assembled into nonsense. */
static dxb_err_t
s_fail(agt_t *a, MDB_txn *txn, agt_xin_t *x, const char *why)
{
    char hex[33], path[PATH_CAP];
    dxb_hex_encode(x->xfer_id, 16, hex);
    s_part_path(a, x, path, sizeof(path));
    unlink(path);
    agt_xrt_t *r = s_xrt_find(a, x->xfer_id, false);
    if (r != NULL) {
        s_xrt_drop(r);
    }
    x->failed = 1;
    dxb_log_error("AGT-XFERFAIL", "chunked transfer failed xfer_id=%s sender=%s file=%s: %s",
                  hex, x->sender, x->name, why);
    dxb_err_t err = s_xin_put(a, txn, x);
    if (!err) {
        err = dxb_audit_append(&a->audit, txn, a->cfg.id, "transfer-failed", x->dataset, why,
                               "xfer_id=%s sender=%s name=%s", hex, x->sender, x->name);
    }
    return err;
}

/* Writes chunk pub of x; on the last chunk verifies the file hash and fills
 * done. Returns a wire code; *err for local failures. */
static uint16_t
s_take_chunk(agt_t *a, MDB_txn *txn, const dxb_env_t *env, const dxb_chunk_t *pub, agt_xin_t *x,
             agt_xfer_done_t *done, dxb_err_t *err)
{
    agt_peer_t *peer = agt_peer_find(a, x->sender);
    agt_xrt_t *r = s_xrt_find(a, x->xfer_id, false);
    char path[PATH_CAP];
    s_part_path(a, x, path, sizeof(path));
    if (peer == NULL || r == NULL) {
        *err = DXB_EAGAIN;
        return DXB_W_EAGAIN;
    }
    *err = s_xrt_open(a, r, path, true, &x->m, x->received, &x->hs);
    if (*err == DXB_EPROTO) {
        *err = s_fail(a, txn, x, "part file shorter than recorded");
        return DXB_W_EPROTO;
    }
    if (*err) {
        return DXB_W_EIO;
    }
    if (r->resumed) {
        char hex[33];
        dxb_hex_encode(x->xfer_id, 16, hex);
        dxb_log_notice("AGT-XFERRESUME", "resuming chunked transfer xfer_id=%s at chunk %u of %u",
                       hex, x->received + 1, x->m.count);
        r->resumed = false;
    }
    size_t len = 0;
    bool final = false;
    uint8_t signed_hash[32];
    dxb_err_t oerr = dxb_xfer_open_chunk(env, pub, x->xfer_id, &x->m, peer->sign_pk, a->xbuf,
                                         &len, &final, signed_hash);
    if (oerr) {
        *err = s_fail(a, txn, x, oerr == DXB_ECRYPTO ? "chunk failed authentication"
                                                     : "chunk malformed");
        return oerr == DXB_ECRYPTO ? DXB_W_ECRYPTO : DXB_W_EPROTO;
    }
    *err = s_pwrite_all(r->fd, a->xbuf, len, (uint64_t)(pub->index - 1) * x->m.chunk_size);
    if (*err) {
        s_xrt_drop(r);
        return DXB_W_EIO;
    }
    crypto_generichash_update(&r->h, a->xbuf, len);
    r->hashed = pub->index;
    r->dirty = true;
    x->received = pub->index;
    x->hs.tag = HSAVE_TAG;
    x->hs.at = pub->index;
    memcpy(x->hs.state, &r->h, sizeof(r->h));
    if (!final) {
        *err = s_xin_put(a, txn, x);
        return DXB_W_OK;
    }
    uint8_t hash[32];
    crypto_generichash_final(&r->h, hash, sizeof(hash));
    if (sodium_memcmp(hash, signed_hash, 32) != 0) {
        *err = s_fail(a, txn, x, "file hash differs from the sender's signed hash");
        return DXB_W_ECRYPTO;
    }
    done->place = true;
    r->finished = true;
    dxb_strlcpy(done->part, path, sizeof(done->part));
    dxb_strlcpy(done->name, x->name, sizeof(done->name));
    dxb_strlcpy(done->dataset, x->dataset, sizeof(done->dataset));
    memcpy(done->xfer_id, x->xfer_id, 16);
    memcpy(done->hash, hash, 32);
    done->size = x->m.size;
    done->chunks = x->m.count;
    done->created_ms = x->created_ms;
    MDB_val k = {16, x->xfer_id};
    *err = dxb_store_err(mdb_del(txn, a->xin, &k, NULL), "xin del");
    if (!*err) {
        char hex[33];
        dxb_hex_encode(x->xfer_id, 16, hex);
        double secs = (double)(dxb_now_ms() - x->started_ms) / 1000.0;
        *err = dxb_audit_append(&a->audit, txn, a->cfg.id, "transfer-received", x->dataset, "ok",
                                "xfer_id=%s sender=%s name=%s size=%llu", hex, x->sender,
                                x->name, (unsigned long long)x->m.size);
        dxb_log_notice("AGT-XFERDONE",
                       "chunked transfer complete and verified xfer_id=%s sender=%s file=%s "
                       "size=%llu seconds=%.1f MBps=%.1f",
                       hex, x->sender, x->name, (unsigned long long)x->m.size, secs,
                       secs > 0 ? (double)x->m.size / 1e6 / secs : 0.0);
    }
    return DXB_W_OK;
}

uint16_t
agt_xfer_on_chunk(agt_t *a, MDB_txn *txn, const dxb_env_t *env, agt_xfer_done_t *done,
                  dxb_err_t *err)
{
    static agt_xin_t x;
    dxb_chunk_t pub;
    char detail[96], hex[33];
    done->place = false;
    *err = DXB_OK;
    if (dxb_xfer_chunk_decode(env->body.ptr, env->body.len, &pub, detail, sizeof(detail))) {
        dxb_log_warn("AGT-XFERBAD", "chunk refused sender=%s detail=%s", env->hdr.sender, detail);
        return DXB_W_EPROTO;
    }
    dxb_hex_encode(pub.xfer_id, 16, hex);
    bool found = false;
    uint16_t code = DXB_W_OK;
    *err = s_xin_get(a, txn, pub.xfer_id, &x, &found);
    if (*err) {
        code = DXB_W_EIO;
    } else if (!found || strcmp(x.sender, env->hdr.sender) != 0 ||
               strcmp(x.dataset, env->hdr.dataset) != 0) {
        dxb_log_warn("AGT-XFERBAD", "chunk of an unknown transfer refused sender=%s xfer_id=%s",
                     env->hdr.sender, hex);
        code = DXB_W_EPROTO;
    } else if (x.failed) {
        code = DXB_W_EPROTO; /* the transfer was abandoned; see AGT-XFERFAIL */
    } else if (pub.index <= x.received) {
        code = DXB_W_OK; /* written before (a resend): acknowledge again */
    } else if (pub.index != x.received + 1) {
        *err = s_fail(a, txn, &x, "a chunk is missing (dead-lettered or expired at the broker)");
        code = DXB_W_EPROTO;
    } else {
        code = s_take_chunk(a, txn, env, &pub, &x, done, err);
    }
    sodium_memzero(&x, sizeof(x));
    return code;
}

dxb_err_t
agt_xfer_sync(agt_t *a)
{
    dxb_err_t err = DXB_OK;
    for (size_t i = 0; i < a->n_xrt; i++) {
        agt_xrt_t *r = &a->xrt[i];
        if (r->used && r->dirty && r->fd >= 0 && fdatasync(r->fd) != 0) {
            dxb_log_error("AGT-XFERERR", "fsync of a transfer part file failed errno=%s",
                          strerror(errno));
            err = DXB_EIO;
        }
    }
    return err;
}

/* Forgets incoming transfers that made no progress for longer than the
 * inbox de-duplication window (the sender gave up or its chunks expired at
 * the broker), with their part files. Failed ones are kept that long too, so
 * their late chunks are still refused. */
void
agt_xfer_sweep(agt_t *a)
{
    static agt_xin_t x;
    uint64_t now = dxb_now_ms(), window = a->cfg.dedup_window_s * 1000;
    MDB_txn *txn = NULL;
    if (dxb_store_begin(a->store, true, &txn) != DXB_OK) {
        return;
    }
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    unsigned n = 0;
    mdb_cursor_open(txn, a->xin, &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < 64;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size != sizeof(x)) {
            continue;
        }
        memcpy(&x, v.mv_data, sizeof(x));
        if (now <= x.updated_ms + window) {
            continue;
        }
        char path[PATH_CAP], hex[33];
        s_part_path(a, &x, path, sizeof(path));
        dxb_hex_encode(x.xfer_id, 16, hex);
        if (mdb_cursor_del(cur, 0) == 0) {
            unlink(path);
            n++;
            dxb_log_notice("AGT-XFERSWEEP", "abandoned incoming transfer forgotten xfer_id=%s "
                           "sender=%s file=%s received=%u of %u", hex, x.sender, x.name,
                           x.received, x.m.count);
        }
    }
    mdb_cursor_close(cur);
    sodium_memzero(&x, sizeof(x));
    if (n == 0 || agt_store_commit(a, &txn) != DXB_OK) {
        dxb_store_abort(&txn);
    }
}

void
agt_xfer_settle(agt_t *a, bool ok)
{
    for (size_t i = 0; i < a->n_xrt; i++) {
        agt_xrt_t *r = &a->xrt[i];
        if (!r->used || r->out || !r->dirty) {
            continue;
        }
        r->dirty = false;
        if (!ok || r->finished) {
            s_xrt_drop(r); /* !ok: the store did not move; rebuilt from what it says */
        }
    }
}
