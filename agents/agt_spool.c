/* agt_spool: the spool folders (DESIGN.md section 6).
 *
 * Outbox: a file renamed into <data_dir>/outbox/<dataset>/ is read, sealed,
 * committed to the LMDB outbox and only then unlinked. Its message id is a
 * keyed hash of (dataset, name, inode, size, mtime), so a crash between the
 * commit and the unlink re-reads the same file into the same id, which every
 * hop de-duplicates: picked up once in effect.
 *
 * Inbox: a delivered message is written to a temporary file and fsynced, the
 * intent to rename is committed in LMDB together with the de-duplication
 * record, then the sidecar and the file are renamed into place and the
 * directory is fsynced; only then is the DACK sent. A crash after the commit
 * is finished at start-up from the "placing" table (agt_spool_recover), so an
 * application never sees a partial file or the same file twice.
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

#define SCAN_MAX_FILES 64
#define PATH_CAP 4600

/* ---- outbox ----------------------------------------------------------- */

dxb_err_t
agt_spool_prepare(agt_t *a)
{
    char path[PATH_CAP];
    for (size_t i = 0; i < a->cfg.n_datasets; i++) {
        snprintf(path, sizeof(path), "%s/outbox/%s", a->cfg.data_dir, a->cfg.datasets[i].id);
        dxb_err_t err = dxb_mkdir_p(path, 0770);
        if (!err) {
            snprintf(path, sizeof(path), "%s/inbox/%s", a->cfg.data_dir, a->cfg.datasets[i].id);
            err = dxb_mkdir_p(path, 0770);
        }
        if (err) {
            return err;
        }
    }
    snprintf(path, sizeof(path), "%s/inbox", a->cfg.data_dir);
    return dxb_mkdir_p(path, 0770);
}

static void
s_spool_id(agt_t *a, const char *dataset, const char *name, const struct stat *st,
           uint8_t id[16])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, a->spool_id_key, 32, 16);
    crypto_generichash_update(&h, (const uint8_t *)dataset, strlen(dataset) + 1);
    crypto_generichash_update(&h, (const uint8_t *)name, strlen(name) + 1);
    uint64_t facts[4] = {(uint64_t)st->st_ino, (uint64_t)st->st_size,
                         (uint64_t)st->st_mtim.tv_sec, (uint64_t)st->st_mtim.tv_nsec};
    crypto_generichash_update(&h, (const uint8_t *)facts, sizeof(facts));
    crypto_generichash_final(&h, id, 16);
}

/* Moves a file the agent cannot send out of the way, so it is reported once
 * and not on every scan. */
static void
s_reject(agt_t *a, MDB_txn *txn, const char *dir, const char *name, const char *why)
{
    char from[PATH_CAP], to[PATH_CAP], detail[300];
    snprintf(from, sizeof(from), "%s/%s", dir, name);
    snprintf(to, sizeof(to), "%s/.rejected-%s", dir, name);
    dxb_log_error("AGT-SPOOLERR", "spool file refused and renamed to .rejected-%s: %s file=%s",
                  name, why, from);
    rename(from, to);
    snprintf(detail, sizeof(detail), "file=%s reason=%s", name, why);
    /* In the scan's own transaction: a second write transaction on this
     * thread would wait for ever on LMDB's writer lock. */
    if (dxb_audit_append(&a->audit, txn, a->cfg.id, "spool", dir, "refused", "%s", detail)) {
        dxb_log_warn("AGT-AUDITFAIL", "cannot audit a refused spool file file=%s", name);
    }
    a->stats.rejected++;
}

typedef struct {
    char path[PATH_CAP];
    char xfer_dest[PATH_CAP]; /* "" or where a chunked transfer keeps the file */
} agt_taken_t;

/* True when a grant masks ds for one of its recipients. */
static bool
s_masked_recipient(const agt_t *a, const agt_dataset_cfg_t *ds)
{
    for (size_t i = 0; i < ds->n_recipients; i++) {
        if (agt_gov_mask_grant(a, ds->id, ds->recipients[i]) != NULL) {
            return true;
        }
    }
    return false;
}

/* Takes a large file as a chunked transfer (agt_xfer.c) in txn. */
static dxb_err_t
s_take_xfer(agt_t *a, MDB_txn *txn, const agt_dataset_cfg_t *ds, const char *name,
            const struct stat *st, const uint8_t id[16], agt_taken_t *t, bool *taken)
{
    *taken = false;
    agt_xfer_src_path(a, id, t->xfer_dest, sizeof(t->xfer_dest));
    if (agt_store_outbox_has(a, txn, id) || agt_xfer_known(a, txn, id)) {
        *taken = true; /* committed before a crash; only the rename is left */
        return DXB_OK;
    }
    agt_xfer_spec_t sp = {.dataset = ds->id,
                          .recipients = ds->recipients,
                          .n_recipients = ds->n_recipients,
                          .ttl_s = ds->ttl_s};
    dxb_err_t err = agt_xfer_start(a, txn, &sp, name, (uint64_t)st->st_size, id);
    *taken = err == DXB_OK;
    return err;
}

/* Picks up to SCAN_MAX_FILES files of one dataset folder into txn. */
static size_t
s_scan_dataset(agt_t *a, MDB_txn *txn, const agt_dataset_cfg_t *ds, agt_taken_t *taken,
               size_t n_taken, dxb_err_t *err)
{
    char dir[PATH_CAP];
    snprintf(dir, sizeof(dir), "%s/outbox/%s", a->cfg.data_dir, ds->id);
    DIR *d = opendir(dir);
    if (d == NULL) {
        return n_taken;
    }
    struct dirent *de;
    while (!*err && n_taken < SCAN_MAX_FILES && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.') {
            continue; /* hidden: in progress, or already rejected */
        }
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            s_reject(a, txn, dir, name, S_ISLNK(st.st_mode) ? "symbolic link" : "not a regular file");
            continue;
        }
        if (!dxb_filename_safe(name, strlen(name))) {
            s_reject(a, txn, dir, name, "unsafe file name");
            continue;
        }
        bool chunked = agt_xfer_wanted(a, (uint64_t)st.st_size);
        if (chunked && (uint64_t)st.st_size > a->cfg.xfer_max_bytes) {
            s_reject(a, txn, dir, name, "larger than transfer.max_file_bytes");
            continue;
        }
        if (!chunked && (uint64_t)st.st_size > a->cfg.max_file_bytes) {
            s_reject(a, txn, dir, name, "larger than spool.max_file_bytes");
            continue;
        }
        uint8_t id[16];
        s_spool_id(a, ds->id, name, &st, id);
        agt_taken_t *t = &taken[n_taken];
        snprintf(t->path, sizeof(t->path), "%s/%s", dir, name);
        t->xfer_dest[0] = '\0';
        if (chunked && s_masked_recipient(a, ds)) {
            s_reject(a, txn, dir, name, "a grant masks this dataset and chunked transfers are "
                                        "not masked yet: raise transfer.threshold_bytes");
            continue;
        }
        if (chunked) {
            bool took = false;
            *err = s_take_xfer(a, txn, ds, name, &st, id, t, &took);
            if (*err == DXB_ENOROUTE) {
                dxb_log_warn("AGT-NOROUTE", "a recipient of dataset %s is not known yet; waiting",
                             ds->id);
                *err = DXB_OK;
                break;
            }
            if (took) {
                n_taken++;
                a->stats.picked_up++;
            }
            continue;
        }
        if (agt_store_outbox_has(a, txn, id)) {
            n_taken++; /* committed before a crash; only the unlink is left */
            continue;
        }
        uint8_t *data = NULL;
        size_t len = 0;
        if (dxb_read_file(t->path, a->cfg.max_file_bytes, &data, &len) != DXB_OK) {
            continue; /* vanished or unreadable right now: next scan */
        }
        dxb_bytes_t nm = {(const uint8_t *)name, strlen(name)};
        dxb_bytes_t pl = {data, len};
        *err = agt_store_outbox_add(a, txn, id, ds->id, ds->recipients, ds->n_recipients, nm, pl,
                                    ds->ttl_s);
        sodium_memzero(data, len);
        free(data);
        if (*err == DXB_EINVAL || *err == DXB_EPROTO || *err == DXB_ETOOBIG ||
            *err == DXB_ENOTFOUND) {
            /* A grant's masking policy could not be applied (AGT-MASKFAIL
             * says why): nothing is sent rather than unmasked data. */
            s_reject(a, txn, dir, name, "masking for a grant failed (see AGT-MASKFAIL)");
            *err = DXB_OK;
            continue;
        }
        if (*err == DXB_ENOROUTE) {
            /* Recipient not in the directory yet (first start without the
             * broker): leave the file and try again later. */
            dxb_log_warn("AGT-NOROUTE", "a recipient of dataset %s is not known yet; waiting",
                         ds->id);
            *err = DXB_OK;
            break;
        }
        if (!*err) {
            n_taken++;
            a->stats.picked_up++;
        }
    }
    closedir(d);
    return n_taken;
}

void
agt_spool_scan(agt_t *a)
{
    static agt_taken_t taken[SCAN_MAX_FILES];
    size_t n = 0;
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(a->store, true, &txn);
    if (err) {
        return;
    }
    uint64_t rejected_before = a->stats.rejected;
    for (size_t i = 0; !err && i < a->cfg.n_datasets && n < SCAN_MAX_FILES; i++) {
        const agt_dataset_cfg_t *ds = &a->cfg.datasets[i];
        if (ds->n_recipients > 0) {
            n = s_scan_dataset(a, txn, ds, taken, n, &err);
        }
    }
    if ((n == 0 && a->stats.rejected == rejected_before) || err) {
        if (err) {
            dxb_log_error("AGT-SPOOLERR", "spool pick-up failed err=%s", dxb_strerror(err));
        }
        dxb_store_abort(&txn);
        dxb_audit_settle(&a->audit, false);
        return;
    }
    err = agt_store_commit(a, &txn);
    dxb_store_abort(&txn);
    if (err) {
        return; /* files stay in the folder: nothing was acknowledged */
    }
    bool moved = false;
    for (size_t i = 0; i < n; i++) {
        if (taken[i].xfer_dest[0] == '\0') {
            unlink(taken[i].path); /* after the commit: the file is now ours */
        } else if (rename(taken[i].path, taken[i].xfer_dest) == 0) {
            moved = true; /* kept until every chunk is acknowledged */
        } else {
            dxb_log_error("AGT-SPOOLERR", "cannot move a file into the transfer area file=%s "
                          "errno=%s", taken[i].path, strerror(errno));
        }
    }
    if (moved) {
        char xdir[PATH_CAP];
        snprintf(xdir, sizeof(xdir), "%s/xfer/out", a->cfg.data_dir);
        if (dxb_fsync_dir(xdir) != DXB_OK) {
            dxb_log_warn("AGT-SPOOLERR", "directory fsync failed dir=%s", xdir);
        }
    }
    agt_link_pump(a);
}

/* ---- inbox ------------------------------------------------------------ */

static dxb_err_t
s_write_fsync(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        dxb_log_error("AGT-INBOXERR", "cannot create path=%s errno=%s", path, strerror(errno));
        return errno == ENOSPC ? DXB_EFULL : DXB_EIO;
    }
    const uint8_t *p = data;
    dxb_err_t err = DXB_OK;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            err = errno == ENOSPC ? DXB_EFULL : DXB_EIO;
            break;
        }
        p += w;
        len -= (size_t)w;
    }
    if (!err && fsync(fd) != 0) {
        err = DXB_EIO;
    }
    close(fd);
    if (err) {
        dxb_log_error("AGT-INBOXERR", "write failed path=%s err=%s", path, dxb_strerror(err));
        unlink(path);
    }
    return err;
}

/* JSON string escaping for the sidecar (names are UTF-8, no control bytes). */
static void
s_json_str(char *out, size_t cap, const uint8_t *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < cap; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            out[o++] = '\\';
            out[o++] = (char)s[i];
        } else if (s[i] < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", s[i]);
        } else {
            out[o++] = (char)s[i];
        }
    }
    out[o] = 0;
}

typedef struct {
    char tmp[PATH_CAP], final[PATH_CAP], tmp_meta[PATH_CAP], final_meta[PATH_CAP];
    char dir[PATH_CAP];
    bool keep_tmp; /* tmp is a transfer's part file: never deleted on abort */
} agt_place_t;

static bool
s_name_taken(const agt_place_t *batch, size_t n, const char *final)
{
    if (access(final, F_OK) == 0) {
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(batch[i].final, final) == 0) {
            return true;
        }
    }
    return false;
}

/* Writes tmp files for one message and records the placing intent in txn. */
static dxb_err_t
s_stage_file(agt_t *a, MDB_txn *txn, const dxb_env_t *env, const dxb_plain_t *pt,
             agt_place_t *batch, size_t n_batch)
{
    agt_place_t *p = &batch[n_batch];
    p->keep_tmp = false;
    char idhex[33], name[256], sha_hex[65], jname[1200];
    uint8_t sha[32];
    dxb_hex_encode(env->hdr.msg_id, 16, idhex);
    memcpy(name, pt->name.ptr, pt->name.len);
    name[pt->name.len] = 0;
    snprintf(p->dir, sizeof(p->dir), "%s/inbox/%s", a->cfg.data_dir, env->hdr.dataset);
    dxb_err_t err = dxb_mkdir_p(p->dir, 0770);
    if (err) {
        return err;
    }
    snprintf(p->final, sizeof(p->final), "%s/%s", p->dir, name);
    if (s_name_taken(batch, n_batch, p->final)) {
        snprintf(p->final, sizeof(p->final), "%s/%s.%.8s", p->dir, name, idhex);
    }
    snprintf(p->final_meta, sizeof(p->final_meta), "%s.dxbmeta", p->final);
    snprintf(p->tmp, sizeof(p->tmp), "%s/.dxb-tmp-%s", p->dir, idhex);
    snprintf(p->tmp_meta, sizeof(p->tmp_meta), "%s/.dxb-tmp-%s.meta", p->dir, idhex);
    crypto_hash_sha256(sha, pt->payload.ptr, pt->payload.len);
    dxb_hex_encode(sha, 32, sha_hex);
    s_json_str(jname, sizeof(jname), pt->name.ptr, pt->name.len);
    char meta[2048];
    int mlen = snprintf(meta, sizeof(meta),
                        "{\"sender\": \"%s\", \"dataset\": \"%s\", \"msg_id\": \"%s\", "
                        "\"seq\": %llu, \"name\": \"%s\", \"created_ms\": %llu, "
                        "\"received_ms\": %llu, \"size\": %zu, \"sha256\": \"%s\"}\n",
                        env->hdr.sender, env->hdr.dataset, idhex,
                        (unsigned long long)env->hdr.seq, jname,
                        (unsigned long long)env->hdr.created_ms,
                        (unsigned long long)dxb_now_ms(), pt->payload.len, sha_hex);
    err = s_write_fsync(p->tmp, pt->payload.ptr, pt->payload.len);
    if (!err) {
        err = s_write_fsync(p->tmp_meta, meta, (size_t)mlen);
    }
    if (err) {
        return err;
    }
    /* value: four NUL-terminated paths */
    char val[4 * PATH_CAP];
    size_t vl = 0;
    const char *parts[4] = {p->tmp, p->final, p->tmp_meta, p->final_meta};
    for (int i = 0; i < 4; i++) {
        size_t l = strlen(parts[i]) + 1;
        memcpy(val + vl, parts[i], l);
        vl += l;
    }
    MDB_val k = {16, (void *)env->hdr.msg_id}, v = {vl, val};
    return dxb_store_err(mdb_put(txn, a->placing, &k, &v, 0), "placing put");
}

/* Stages the placement of an assembled transfer: the part file is already
 * fsynced; only the sidecar is written here. */
static dxb_err_t
s_stage_xfer(agt_t *a, MDB_txn *txn, const dxb_env_t *env, const agt_xfer_done_t *d,
             agt_place_t *batch, size_t n_batch)
{
    agt_place_t *p = &batch[n_batch];
    p->keep_tmp = true;
    char idhex[33], xhex[33], hash_hex[65], jname[1200];
    dxb_hex_encode(env->hdr.msg_id, 16, idhex);
    dxb_hex_encode(d->xfer_id, 16, xhex);
    dxb_hex_encode(d->hash, 32, hash_hex);
    snprintf(p->dir, sizeof(p->dir), "%s/inbox/%s", a->cfg.data_dir, d->dataset);
    snprintf(p->final, sizeof(p->final), "%s/%s", p->dir, d->name);
    if (s_name_taken(batch, n_batch, p->final)) {
        snprintf(p->final, sizeof(p->final), "%s/%s.%.8s", p->dir, d->name, xhex);
    }
    snprintf(p->final_meta, sizeof(p->final_meta), "%s.dxbmeta", p->final);
    dxb_strlcpy(p->tmp, d->part, sizeof(p->tmp));
    snprintf(p->tmp_meta, sizeof(p->tmp_meta), "%s/.dxb-tmp-%s.meta", p->dir, idhex);
    s_json_str(jname, sizeof(jname), (const uint8_t *)d->name, strlen(d->name));
    char meta[2048];
    int mlen = snprintf(meta, sizeof(meta),
                        "{\"sender\": \"%s\", \"dataset\": \"%s\", \"msg_id\": \"%s\", "
                        "\"seq\": %llu, \"name\": \"%s\", \"created_ms\": %llu, "
                        "\"received_ms\": %llu, \"size\": %llu, \"blake2b256\": \"%s\", "
                        "\"chunks\": %u}\n",
                        env->hdr.sender, d->dataset, xhex, (unsigned long long)env->hdr.seq,
                        jname, (unsigned long long)d->created_ms,
                        (unsigned long long)dxb_now_ms(), (unsigned long long)d->size, hash_hex,
                        d->chunks);
    dxb_err_t err = s_write_fsync(p->tmp_meta, meta, (size_t)mlen);
    if (err) {
        return err;
    }
    char val[4 * PATH_CAP];
    size_t vl = 0;
    const char *parts[4] = {p->tmp, p->final, p->tmp_meta, p->final_meta};
    for (int i = 0; i < 4; i++) {
        size_t l = strlen(parts[i]) + 1;
        memcpy(val + vl, parts[i], l);
        vl += l;
    }
    MDB_val k = {16, (void *)env->hdr.msg_id}, v = {vl, val};
    return dxb_store_err(mdb_put(txn, a->placing, &k, &v, 0), "placing put");
}

/* Queues a message for applications (inbound mode api). */
static dxb_err_t
s_stage_api(agt_t *a, MDB_txn *txn, const dxb_env_t *env, const dxb_plain_t *pt)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dxb_err_t err = dxb_msg_enc_api_message(&sb, env->hdr.msg_id, env->hdr.sender,
                                            env->hdr.dataset, env->hdr.seq, env->hdr.created_ms,
                                            pt->name, pt->payload);
    if (!err) {
        uint8_t key[8];
        dxb_be64_put(key, a->next_aseq);
        MDB_val k = {8, key}, v = {sb.size, sb.data};
        MDB_val ik = {16, (void *)env->hdr.msg_id}, iv = {8, key};
        err = dxb_store_err(mdb_put(txn, a->apiq, &k, &v, MDB_APPEND), "apiq put");
        if (!err) {
            err = dxb_store_err(mdb_put(txn, a->apiid, &ik, &iv, 0), "apiid put");
        }
        if (!err) {
            a->next_aseq++;
        }
    }
    msgpack_sbuffer_destroy(&sb);
    return err;
}

static bool
s_seen(agt_t *a, MDB_txn *txn, const uint8_t *msg_id)
{
    MDB_val k = {16, (void *)msg_id}, v;
    return mdb_get(txn, a->seen, &k, &v) == 0;
}

static dxb_err_t
s_mark_seen(agt_t *a, MDB_txn *txn, const uint8_t *msg_id)
{
    uint8_t ts[8], tkey[24];
    dxb_be64_put(ts, dxb_now_ms());
    MDB_val k = {16, (void *)msg_id}, v = {8, ts};
    int rc = mdb_put(txn, a->seen, &k, &v, 0);
    memcpy(tkey, ts, 8);
    memcpy(tkey + 8, msg_id, 16);
    MDB_val tk = {24, tkey}, tv = {0, NULL};
    if (rc == 0) {
        rc = mdb_put(txn, a->seent, &tk, &tv, 0);
    }
    return dxb_store_err(rc, "seen put");
}

/* Verifies and decrypts one envelope; returns a wire code. */
static uint16_t
s_open(agt_t *a, const dxb_env_t *env, uint8_t **plain, size_t *plain_len, dxb_plain_t *pt)
{
    agt_peer_t *sender = agt_peer_find(a, env->hdr.sender);
    if (sender == NULL) {
        dxb_log_warn("AGT-UNKNOWNSENDER", "message from a node not in the directory sender=%s",
                     env->hdr.sender);
        return DXB_W_ECRYPTO;
    }
    dxb_err_t err = dxb_seal_open(env, &a->keys, sender->sign_pk, plain, plain_len);
    if (!err) {
        err = dxb_msg_decode_plain(*plain, *plain_len, pt);
    }
    if (err) {
        char idhex[33];
        dxb_hex_encode(env->hdr.msg_id, 16, idhex);
        dxb_log_warn("AGT-OPENFAIL", "message refused sender=%s msg_id=%s err=%s",
                     env->hdr.sender, idhex, dxb_err_name(err));
        return err == DXB_ENOTFOUND ? DXB_W_ECRYPTO : dxb_err_to_wire(err);
    }
    return DXB_W_OK;
}

static void
s_finish_places(const agt_place_t *places, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* Sidecar first: when the data file appears, its metadata is there. */
        rename(places[i].tmp_meta, places[i].final_meta);
        rename(places[i].tmp, places[i].final);
    }
    for (size_t i = 0; i < n; i++) {
        bool done = false;
        for (size_t j = 0; j < i; j++) {
            done = done || strcmp(places[j].dir, places[i].dir) == 0;
        }
        if (!done && dxb_fsync_dir(places[i].dir) != DXB_OK) {
            dxb_log_error("AGT-INBOXERR", "directory fsync failed dir=%s", places[i].dir);
        }
    }
}

static void
s_clear_placing(agt_t *a, const uint8_t (*ids)[16], size_t n)
{
    MDB_txn *txn = NULL;
    if (n == 0 || dxb_store_begin(a->store, true, &txn) != DXB_OK) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        MDB_val k = {16, (void *)ids[i]};
        mdb_del(txn, a->placing, &k, NULL);
    }
    if (agt_store_commit(a, &txn) != DXB_OK) {
        dxb_log_warn("AGT-PLACING", "cannot clear finished renames; redone at next start");
    }
    dxb_store_abort(&txn);
}

void
agt_spool_deliver(agt_t *a, dxb_iter_t envs, dxb_result_t *results, size_t *n_results)
{
    static agt_place_t places[DXB_MAX_BATCH];
    static uint8_t place_ids[DXB_MAX_BATCH][16];
    size_t n_places = 0;
    *n_results = 0;
    MDB_txn *txn = NULL;
    if (dxb_store_begin(a->store, true, &txn) != DXB_OK) {
        return; /* no DACK: the broker redelivers */
    }
    dxb_err_t err = DXB_OK;
    dxb_env_t env;
    while (!err && dxb_msg_next_env(&envs, &env)) {
        dxb_result_t *r = &results[(*n_results)++];
        memcpy(r->msg_id, env.hdr.msg_id, 16);
        r->code = DXB_W_OK;
        if (s_seen(a, txn, env.hdr.msg_id)) {
            a->stats.duplicates++;
            continue; /* delivered before: acknowledge again, place nothing */
        }
        if ((env.hdr.flags & (DXB_FLAG_CHUNK | DXB_FLAG_MANIFEST)) == DXB_FLAG_CHUNK) {
            static agt_xfer_done_t done;
            r->code = agt_xfer_on_chunk(a, txn, &env, &done, &err);
            if (!err && r->code == DXB_W_OK && done.place) {
                err = s_stage_xfer(a, txn, &env, &done, places, n_places);
                if (!err) {
                    memcpy(place_ids[n_places++], env.hdr.msg_id, 16);
                    a->stats.received++;
                }
            }
            if (!err && r->code == DXB_W_OK) {
                err = s_mark_seen(a, txn, env.hdr.msg_id);
            }
            continue;
        }
        uint8_t *plain = NULL;
        size_t plain_len = 0;
        dxb_plain_t pt;
        r->code = s_open(a, &env, &plain, &plain_len, &pt);
        if (r->code == DXB_W_OK && (env.hdr.flags & DXB_FLAG_MANIFEST)) {
            r->code = agt_xfer_on_manifest(a, txn, &env, &pt, &err);
            if (!err && r->code == DXB_W_OK) {
                err = s_mark_seen(a, txn, env.hdr.msg_id);
            }
            dxb_seal_free_plain(&plain, plain_len);
            continue;
        }

        if (r->code == DXB_W_OK) {
            const agt_dataset_cfg_t *ds = agt_cfg_dataset(&a->cfg, env.hdr.dataset);
            bool api = ds != NULL ? ds->inbound_api : a->cfg.inbound_api_default;
            err = api ? s_stage_api(a, txn, &env, &pt)
                      : s_stage_file(a, txn, &env, &pt, places, n_places);
            if (!err && !api) {
                memcpy(place_ids[n_places++], env.hdr.msg_id, 16);
            }
            if (!err) {
                err = s_mark_seen(a, txn, env.hdr.msg_id);
            }
            if (!err) {
                char idhex[33];
                dxb_hex_encode(env.hdr.msg_id, 16, idhex);
                err = dxb_audit_append(&a->audit, txn, a->cfg.id, "received", env.hdr.dataset,
                                       "ok", "msg_id=%s sender=%s seq=%llu size=%zu", idhex,
                                       env.hdr.sender, (unsigned long long)env.hdr.seq,
                                       pt.payload.len);
            }
            a->stats.received++;
        }
        dxb_seal_free_plain(&plain, plain_len);
    }
    if (!err) {
        err = agt_xfer_sync(a); /* chunk data on disk before its DACK */
    }
    if (!err) {
        err = agt_store_commit(a, &txn);
    }
    dxb_store_abort(&txn);
    dxb_audit_settle(&a->audit, err == DXB_OK);
    agt_xfer_settle(a, err == DXB_OK);
    if (err) {
        /* Nothing committed: no DACK at all, the broker resends the batch. */
        for (size_t i = 0; i < n_places; i++) {
            if (!places[i].keep_tmp) {
                unlink(places[i].tmp);
            }
            unlink(places[i].tmp_meta);
        }
        *n_results = 0;
        return;
    }
    s_finish_places(places, n_places);
    s_clear_placing(a, (const uint8_t(*)[16])place_ids, n_places);
}

void
agt_spool_recover(agt_t *a)
{
    MDB_txn *txn = NULL;
    if (dxb_store_begin(a->store, false, &txn) != DXB_OK) {
        return;
    }
    static agt_place_t places[DXB_MAX_BATCH];
    static uint8_t ids[DXB_MAX_BATCH][16];
    size_t n = 0;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    mdb_cursor_open(txn, a->placing, &cur);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < DXB_MAX_BATCH;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const char *s = v.mv_data;
        const char *end = s + v.mv_size;
        char *dst[4] = {places[n].tmp, places[n].final, places[n].tmp_meta, places[n].final_meta};
        bool ok = k.mv_size == 16 && v.mv_size > 0 && end[-1] == 0;
        for (int i = 0; ok && i < 4; i++) {
            size_t l = strnlen(s, (size_t)(end - s));
            ok = s + l < end && l < PATH_CAP;
            if (ok) {
                memcpy(dst[i], s, l + 1);
                s += l + 1;
            }
        }
        if (!ok) {
            continue;
        }
        char *slash = strrchr(places[n].final, '/');
        size_t dl = slash ? (size_t)(slash - places[n].final) : 0;
        memcpy(places[n].dir, places[n].final, dl);
        places[n].dir[dl] = 0;
        memcpy(ids[n], k.mv_data, 16);
        /* Renamed already if the temporary file is gone. */
        if (access(places[n].tmp, F_OK) == 0) {
            n++;
        } else {
            memcpy(ids[n], k.mv_data, 16);
            places[n].tmp[0] = 0;
            n++;
        }
    }
    mdb_cursor_close(cur);
    dxb_store_abort(&txn);
    size_t todo = 0;
    for (size_t i = 0; i < n; i++) {
        if (places[i].tmp[0] != 0) {
            places[todo] = places[i];
            todo++;
        }
    }
    s_finish_places(places, todo);
    s_clear_placing(a, (const uint8_t(*)[16])ids, n);
    if (n > 0) {
        dxb_log_notice("AGT-RECOVER", "finished interrupted inbox placements count=%zu", todo);
    }
}
