/* Raw LMDB limit: durable (fsync) commits in DIR (argv[1]).
 *   lmdb_commit1_s          commits/s with one 1 KiB record per commit
 *   lmdb_batch1000_recs_s   records/s with 1000 records of 1 KiB per commit
 * Each phase runs for about SECONDS (argv[2], default 3). */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-lmdb DIR [SECONDS]\n");
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    char d1[4096], d2[4096];
    snprintf(d1, sizeof(d1), "%s/one", argv[1]);
    snprintf(d2, sizeof(d2), "%s/batch", argv[1]);
    mkdir(d1, 0700);
    mkdir(d2, 0700);
    bench_put("lmdb_commit1_s", s_phase(d1, 1, seconds));
    bench_put("lmdb_batch1000_recs_s", s_phase(d2, 1000, seconds));
    return 0;
}
