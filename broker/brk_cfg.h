/* brk_cfg: the broker's configuration (conf/broker.yaml documents every key).
 *
 * Loading validates everything and reports every problem as FILE:LINE:COL.
 * Relative paths are taken relative to the config file's directory.
 */
#ifndef BRK_CFG_H
#define BRK_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dxb_err.h"

/* One registered node. */
typedef struct {
    char id[65];
    char region[7];
    uint8_t level;     /* 1 province, 2 city, 3 county, 4 department */
    uint8_t clearance; /* 0..3 */
    uint8_t sign_pk[32];
    uint8_t box_pk[32];   /* derived X25519 key = the node's CURVE key */
    char box_z85[41];     /* Z85 of box_pk: the ZAP User-Id */
} brk_node_cfg_t;

typedef struct {
    char id[65];
    char endpoint[256];
    char key_path[4096];
    char data_dir[4096];
    char admin_endpoint[4300];
    int log_level;
    uint64_t map_size_bytes;
    bool durable;
    uint32_t batch_max;       /* frames drained per group commit */
    uint32_t redeliver_ms;    /* unacked delivery resent after this */
    uint32_t max_attempts;    /* deliveries before the DLQ */
    uint64_t default_ttl_s;
    uint64_t dedup_window_s;
    uint32_t hb_interval_ms;
    uint32_t hb_timeout_ms;
    uint64_t max_message_bytes;
    uint64_t max_frame_bytes;
    uint32_t default_window;  /* delivery window when HELLO asks for 0 */
    bool gov_enforce;         /* governance.enforce: catalog + grants + clearance on every publish */
    uint32_t audit_checkpoint_s;       /* sign an audit checkpoint this often, s (0 off) */
    uint64_t audit_checkpoint_records; /* ... or after this many records (0 off) */
    brk_node_cfg_t *nodes;    /* owned array */
    size_t n_nodes;
} brk_cfg_t;

/* Loads and validates path into *out (caller frees with brk_cfg_free).
 * On DXB_ECONFIG *errors_p is a malloc'd text of "FILE:L:C: msg\n" lines. */
dxb_err_t brk_cfg_load(const char *path, brk_cfg_t *out, char **errors_p) DXB_MUST_CHECK;
void brk_cfg_free(brk_cfg_t *cfg);
/* Level names used in configs and output. */
const char *brk_cfg_level_name(uint8_t level);

#endif
