/* Raw LMDB and disk limits: durable (fsync) writes in DIR.
 *
 *   bench-lmdb DIR [SECONDS] [small|bulk]
 *
 * small (default):
 *   lmdb_commit1_s          commits/s with one 1 KiB record per commit
 *   lmdb_batch1000_recs_s   records/s with 1000 records of 1 KiB per commit
 * bulk (the chunks of large transfers, 1 MiB each):
 *   lmdb_1m_x1_mb_s         MB/s, one 1 MiB value per durable commit
 *   lmdb_1m_x8_mb_s         MB/s, eight 1 MiB values per durable commit
 *                           (both keep a window of 16 values: each commit also
 *                           deletes the oldest ones, like a queue, so the
 *                           file stays small and freed pages are reused)
 *   file_1m_fdatasync_mb_s  MB/s, pwrite of 1 MiB at the next offset of a
 *                           file + fdatasync, 256 MiB at most (how a receiver
 *                           assembles a transfer)
 * Each phase runs for about SECONDS (default 3). */
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"

#define REC 1024

static void
s_check(int rc, const char *what)
{
    if (rc != MDB_SUCCESS) {
        fprintf(stderr, "%s: %s\n", what, mdb_strerror(rc));
        exit(1);
    }
}

static double
s_phase(const char *dir, int per_commit, double seconds)
{
    MDB_env *env;
    s_check(mdb_env_create(&env), "env_create");
    s_check(mdb_env_set_mapsize(env, (size_t)8 << 30), "set_mapsize");
    s_check(mdb_env_open(env, dir, 0, 0600), "env_open"); /* default: fsync on commit */
    MDB_txn *txn;
    MDB_dbi dbi;
    s_check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
    s_check(mdb_dbi_open(txn, NULL, 0, &dbi), "dbi_open");
    s_check(mdb_drop(txn, dbi, 0), "drop");
    s_check(mdb_txn_commit(txn), "commit");
    static char val[REC];
    memset(val, 'v', sizeof(val));
    uint64_t key = 0;
    long records = 0;
    double t0 = bench_now(), t = t0;
    while (t - t0 < seconds) {
        s_check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
        for (int i = 0; i < per_commit; i++) {
            uint64_t k = __builtin_bswap64(++key); /* big endian: appends */
            MDB_val mk = {sizeof(k), &k}, mv = {sizeof(val), val};
            s_check(mdb_put(txn, dbi, &mk, &mv, MDB_APPEND), "put");
        }
        s_check(mdb_txn_commit(txn), "commit");
        records += per_commit;
        t = bench_now();
    }
    mdb_env_close(env);
    return (double)records / (t - t0);
}

#define BIG ((size_t)1 << 20)
#define BIG_WINDOW 16

/* MB/s with per_commit values of 1 MiB per durable commit. */
static double
s_bulk(const char *dir, int per_commit, double seconds)
{
    MDB_env *env;
    s_check(mdb_env_create(&env), "env_create");
    s_check(mdb_env_set_mapsize(env, (size_t)8 << 30), "set_mapsize");
    s_check(mdb_env_open(env, dir, 0, 0600), "env_open");
    MDB_txn *txn;
    MDB_dbi dbi;
    s_check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
    s_check(mdb_dbi_open(txn, NULL, 0, &dbi), "dbi_open");
    s_check(mdb_drop(txn, dbi, 0), "drop");
    s_check(mdb_txn_commit(txn), "commit");
    unsigned char *val = malloc(BIG);
    if (val == NULL) {
        exit(1);
    }
    for (size_t i = 0; i < BIG; i++) {
        val[i] = (unsigned char)(i * 2654435761u >> 13); /* not all zero */
    }
    uint64_t key = 0, oldest = 1;
    double bytes = 0, t0 = bench_now(), t = t0;
    while (t - t0 < seconds) {
        s_check(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
        for (int i = 0; i < per_commit; i++) {
            uint64_t k = __builtin_bswap64(++key);
            MDB_val mk = {sizeof(k), &k}, mv = {BIG, val};
            val[0] = (unsigned char)key;
            s_check(mdb_put(txn, dbi, &mk, &mv, MDB_APPEND), "put");
        }
        while (key - oldest + 1 > BIG_WINDOW) {
            uint64_t k = __builtin_bswap64(oldest++);
            MDB_val mk = {sizeof(k), &k};
            s_check(mdb_del(txn, dbi, &mk, NULL), "del");
        }
        s_check(mdb_txn_commit(txn), "commit");
        bytes += (double)per_commit * (double)BIG;
        t = bench_now();
    }
    mdb_env_close(env);
    free(val);
    return bytes / (t - t0) / 1e6;
}

/* MB/s of pwrite(1 MiB) + fdatasync into a growing file. */
static double
s_file(const char *path, double seconds)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror("open");
        exit(1);
    }
    unsigned char *buf = malloc(BIG);
    if (buf == NULL) {
        exit(1);
    }
    memset(buf, 0x5a, BIG);
    off_t off = 0;
    double t0 = bench_now(), t = t0;
    while (t - t0 < seconds && off < (off_t)256 << 20) {
        buf[0] = (unsigned char)off;
        if (pwrite(fd, buf, BIG, off) != (ssize_t)BIG || fdatasync(fd) != 0) {
            perror("pwrite/fdatasync");
            exit(1);
        }
        off += (off_t)BIG;
        t = bench_now();
    }
    close(fd);
    unlink(path);
    free(buf);
    return (double)off / (t - t0) / 1e6;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-lmdb DIR [SECONDS] [small|bulk]\n");
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    if (argc > 3 && strcmp(argv[3], "bulk") == 0) {
        char d1[4096], d8[4096], f[4096];
        snprintf(d1, sizeof(d1), "%s/bulk1", argv[1]);
        snprintf(d8, sizeof(d8), "%s/bulk8", argv[1]);
        snprintf(f, sizeof(f), "%s/file.bin", argv[1]);
        mkdir(d1, 0700);
        mkdir(d8, 0700);
        bench_put("lmdb_1m_x1_mb_s", s_bulk(d1, 1, seconds));
        bench_put("lmdb_1m_x8_mb_s", s_bulk(d8, 8, seconds));
        bench_put("file_1m_fdatasync_mb_s", s_file(f, seconds));
        return 0;
    }
    char d1[4096], d2[4096];
    snprintf(d1, sizeof(d1), "%s/one", argv[1]);
    snprintf(d2, sizeof(d2), "%s/batch", argv[1]);
    mkdir(d1, 0700);
    mkdir(d2, 0700);
    bench_put("lmdb_commit1_s", s_phase(d1, 1, seconds));
    bench_put("lmdb_batch1000_recs_s", s_phase(d2, 1000, seconds));
    return 0;
}
