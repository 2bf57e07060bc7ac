/* agt_cfg: the agent's configuration (conf/agent.yaml documents every key).
 * Relative paths are taken relative to the config file's directory. */
#ifndef AGT_CFG_H
#define AGT_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dxb_err.h"

#define AGT_MAX_DATASET_RECIPIENTS 256

/* A field of a catalog declaration. */
typedef struct {
    char name[129];
    char type[33];
    uint8_t sensitivity; /* 0..3 */
} agt_catfield_cfg_t;

/* datasets[].catalog: this node owns the dataset and declares it (数据目录). */
typedef struct {
    bool declared;
    char title[257];
    char description[1025];
    uint8_t level;      /* classification 0..3 */
    uint8_t share;      /* 0 none, 1 conditional, 2 unconditional */
    char frequency[33];
    char region[7];
    agt_catfield_cfg_t *fields; /* owned */
    size_t n_fields;
} agt_catalog_cfg_t;

typedef struct {
    char id[65];
    agt_catalog_cfg_t catalog;
    char (*recipients)[65]; /* owned array */
    size_t n_recipients;
    bool inbound_api;       /* received messages go to the API queue, not the spool */
    uint32_t ttl_s;
    int compress;           /* AGT_COMPRESS_*, or -1 for transfer.compress */
} agt_dataset_cfg_t;

/* Compression of chunked transfers (transfer.compress, datasets[].compress). */
#define AGT_COMPRESS_NONE 0
#define AGT_COMPRESS_ZSTD 1 /* try every chunk */
#define AGT_COMPRESS_AUTO 2 /* try, and stop trying after chunks that do not shrink */

typedef struct {
    char id[65];
    uint8_t sign_pk[32];
} agt_peer_cfg_t;

typedef struct {
    char id[65];
    char key_path[4096];
    char data_dir[4096];
    char broker[256];
    uint8_t broker_sign_pk[32];
    char api_endpoint[4300];
    int log_level;
    uint64_t map_size_bytes;
    bool durable;
    uint32_t window;
    uint32_t publish_window;
    uint32_t heartbeat_ms;
    uint32_t timeout_ms;
    uint32_t reconnect_ms;
    uint32_t scan_ms;
    uint64_t max_file_bytes;
    bool inbound_api_default;
    uint64_t dedup_window_s;
    uint64_t xfer_threshold; /* spool files larger than this travel chunked */
    uint32_t xfer_chunk;     /* plaintext bytes per chunk */
    uint32_t xfer_window;    /* chunks of one transfer in the outbox at once */
    uint64_t xfer_max_bytes; /* largest file taken for a chunked transfer */
    int xfer_compress;       /* AGT_COMPRESS_* */
    agt_dataset_cfg_t *datasets; /* owned */
    size_t n_datasets;
    agt_peer_cfg_t *peers;       /* owned */
    size_t n_peers;
} agt_cfg_t;

/* Loads path into *out; on DXB_ECONFIG *errors_p is malloc'd FILE:L:C lines. */
dxb_err_t agt_cfg_load(const char *path, agt_cfg_t *out, char **errors_p) DXB_MUST_CHECK;
void agt_cfg_free(agt_cfg_t *cfg);
/* Dataset entry or NULL. */
const agt_dataset_cfg_t *agt_cfg_dataset(const agt_cfg_t *cfg, const char *id);

#endif
