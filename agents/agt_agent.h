/* agt_agent: the agent's shared state, used by its modules:
 *   agt_store  LMDB outbox, inbox de-duplication, API queue, directory, audit
 *   agt_link   the CURVE DEALER session to the broker (publish, deliver, heartbeat)
 *   agt_spool  outbox folder scanning and inbox file placing
 *   agt_api    the local API socket for applications (publish, subscribe, streams)
 *   agt_xfer   chunked transfers of large files (spool and API streams)
 * Everything runs on the main thread in one zloop. The agent acknowledges an
 * application (file pick-up or API publish) only after its outbox commit, and
 * the broker only after its inbox commit (DESIGN.md section 4).
 */
#ifndef AGT_AGENT_H
#define AGT_AGENT_H

#include <czmq.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "agents/agt_cfg.h"
#include "common/dxb_audit.h"
#include "common/dxb_keys.h"
#include "common/dxb_store.h"
#include "proto/dxb_msg.h"

#define AGT_MAX_SUBSCRIBERS 16

/* A node as known from the broker's directory (or a pin). */
typedef struct {
    char id[65];
    char region[7];
    uint8_t level;
    uint8_t clearance;
    uint8_t sign_pk[32];
    uint8_t box_pk[32];
} agt_peer_t;

typedef enum {
    AGT_LINK_DOWN,  /* no socket; reconnect at reconnect_at */
    AGT_LINK_HELLO, /* socket connecting, HELLO sent, waiting for WELCOME */
    AGT_LINK_UP,    /* session established */
} agt_link_state_t;

typedef struct {
    uint8_t rid[256];
    size_t rid_len;
    char dataset[65]; /* "" = all */
    bool active;
} agt_sub_t;

typedef struct {
    uint64_t picked_up, api_published, sent, acked, refused, received, duplicates, rejected;
} agt_stats_t;

typedef struct agt {
    agt_cfg_t cfg;         /* owned */
    dxb_keypair_t keys;    /* secret; wiped at destroy */
    uint8_t broker_box_pk[32];
    uint8_t spool_id_key[32]; /* derives deterministic ids of spool files; secret */

    dxb_store_t *store;    /* owned */
    MDB_dbi out, outid, meta, seen, seent, placing, apiq, apiid, dir, dead, auditdb, xout, xin;
    dxb_audit_t audit;
    uint64_t next_oseq, next_aseq, next_dead;

    void *ctx;             /* owned zmq context */
    void *dealer;          /* owned; NULL while the link is down */
    void *api;             /* owned ROUTER for applications */
    zloop_t *loop;         /* owned */
    zmq_pollitem_t dealer_item;
    void *mon;             /* owned PAIR: disconnect events of the dealer (NULL when down) */
    zmq_pollitem_t mon_item;
    int sigfd;

    agt_link_state_t link;
    uint64_t last_rx_mono, last_ping_mono, reconnect_at, last_puback_mono;
    uint64_t pub_cursor;   /* next outbox oseq to send (0 = from the oldest) */
    uint32_t pub_inflight; /* envelopes sent and not yet answered */
    uint64_t backoff_until;
    uint32_t pub_frame_cap; /* envelopes per PUBLISH; shrinks when the broker is full */
    uint64_t last_scan_mono;
    bool link_logged_down;

    agt_peer_t *peers;     /* owned directory */
    size_t n_peers;

    agt_sub_t subs[AGT_MAX_SUBSCRIBERS];
    uint64_t api_cursor;   /* next API queue aseq to push */
    uint32_t api_inflight;

    msgpack_sbuffer sbuf;  /* scratch for outgoing frames */
    agt_stats_t stats;

    struct agt_xrt *xrt;   /* owned: open files and running hashes of transfers (agt_xfer.c) */
    size_t n_xrt;
    uint8_t *xbuf;         /* owned: one chunk of plaintext (DXB_XFER_CHUNK_MAX) */
    uint64_t n_xout;       /* transfers being sent (records in xout) */

    struct agt_grant *grants; /* owned: grants the broker reported (agt_gov.c) */
    size_t n_grants;
    uint64_t gov_demand_logged; /* highest pending demand id announced in the log */
} agt_t;

/* agt_store.c */
dxb_err_t agt_store_open(agt_t *a) DXB_MUST_CHECK;
/* Seals and appends one message to the outbox inside txn. msg_id is given
 * (deterministic for spool files, random for API). */
dxb_err_t agt_store_outbox_add(agt_t *a, MDB_txn *txn, const uint8_t msg_id[16],
                               const char *dataset, char (*recipients)[65], size_t n,
                               dxb_bytes_t name, dxb_bytes_t payload,
                               uint32_t ttl_s) DXB_MUST_CHECK;
bool agt_store_outbox_has(agt_t *a, MDB_txn *txn, const uint8_t msg_id[16]);
/* Assigns the next seq of dataset (committed with txn). */
dxb_err_t agt_store_next_seq(agt_t *a, MDB_txn *txn, const char *dataset,
                             uint64_t *seq) DXB_MUST_CHECK;
/* Appends an already sealed envelope to the outbox (and its audit record). */
dxb_err_t agt_store_outbox_put(agt_t *a, MDB_txn *txn, const uint8_t msg_id[16],
                               const msgpack_sbuffer *env, const char *dataset, uint64_t seq,
                               size_t size, size_t n_rcpt) DXB_MUST_CHECK;
/* Removes an outbox entry by message id (acked or dead). DXB_ENOTFOUND if gone. */
dxb_err_t agt_store_outbox_del(agt_t *a, MDB_txn *txn, const uint8_t msg_id[16],
                               uint16_t dead_code) DXB_MUST_CHECK;
/* Writes a small transaction with just an audit record. */
void agt_store_audit_now(agt_t *a, const char *action, const char *object, const char *result,
                         const char *detail);
/* Commits txn, settles the audit head; logs failures. */
dxb_err_t agt_store_commit(agt_t *a, MDB_txn **txn_p) DXB_MUST_CHECK;
void agt_store_save_directory(agt_t *a);
agt_peer_t *agt_peer_find(agt_t *a, const char *id);
/* Forgets inbox de-duplication records older than inbound.dedup_window_s. */
void agt_store_sweep(agt_t *a);
/* Outbox depth for the log and API. */
uint64_t agt_store_outbox_count(agt_t *a);

/* agt_link.c */
void agt_link_tick(agt_t *a);
void agt_link_pump(agt_t *a);
void agt_link_close(agt_t *a);

/* agt_spool.c */
dxb_err_t agt_spool_prepare(agt_t *a) DXB_MUST_CHECK;
void agt_spool_scan(agt_t *a);
void agt_spool_recover(agt_t *a);
/* Handles a DELIVER frame: verify, decrypt, store, place; fills results. */
void agt_spool_deliver(agt_t *a, dxb_iter_t envs, dxb_result_t *results, size_t *n_results);

/* agt_xfer.c: chunked transfers of large files (PROTOCOL.md 5.1) */
typedef struct {
    bool place;          /* the last chunk arrived and verified: place the file */
    char part[4200];     /* the assembled file */
    char name[256];
    char dataset[65];
    uint8_t xfer_id[16];
    uint64_t size;
    uint32_t chunks;
    uint8_t hash[32];    /* BLAKE2b-256 of the file */
    uint64_t created_ms; /* when the sender started it */
} agt_xfer_done_t;
dxb_err_t agt_xfer_init(agt_t *a) DXB_MUST_CHECK;
void agt_xfer_destroy(agt_t *a);
/* True when a spool file of this size travels chunked. */
bool agt_xfer_wanted(const agt_t *a, uint64_t size);
/* Where the sender keeps the file of a transfer while it is sent. */
void agt_xfer_src_path(const agt_t *a, const uint8_t xfer_id[16], char *out, size_t cap);
bool agt_xfer_known(agt_t *a, MDB_txn *txn, const uint8_t xfer_id[16]);
/* Starts sending path as a transfer: record + manifest in the outbox, in txn.
 * After the commit the caller renames the file to agt_xfer_src_path. */
typedef struct {
    const char *dataset;
    char (*recipients)[65]; /* borrowed */
    size_t n_recipients;
    uint32_t ttl_s;
} agt_xfer_spec_t;
dxb_err_t agt_xfer_start(agt_t *a, MDB_txn *txn, const agt_xfer_spec_t *sp, const char *name,
                         uint64_t size, const uint8_t xfer_id[16]) DXB_MUST_CHECK;
/* API streams (agt_api.c). Creates <data_dir>/xfer/stage/<random hex> (0600,
 * exclusive, no symlinks) and opens it for writing; path (cap bytes) receives
 * its name, *fd_out the descriptor (the caller closes it). Errors: DXB_EFULL,
 * DXB_EIO (logged). Start-up deletes every staging file. */
dxb_err_t agt_xfer_stage_open(agt_t *a, char *path, size_t cap, int *fd_out) DXB_MUST_CHECK;
/* Writes len bytes at off. Errors: DXB_EFULL (disk or quota full), DXB_EIO. */
dxb_err_t agt_xfer_stage_write(int fd, const uint8_t *buf, size_t len,
                               uint64_t off) DXB_MUST_CHECK;
/* Moves a complete staging file into the transfer area: fsyncs fd, renames
 * staged to agt_xfer_src_path under a fresh random id (xfer_id_out) and
 * fsyncs that directory. The caller then calls agt_xfer_start with that id
 * and, when it or the commit fails, removes agt_xfer_src_path(xfer_id_out).
 * On error nothing is left in xfer/out (staged may remain: the caller
 * removes it). Errors: DXB_EFULL, DXB_EIO (logged). */
dxb_err_t agt_xfer_stage_finish(agt_t *a, const char *staged, int fd,
                                uint8_t xfer_id_out[16]) DXB_MUST_CHECK;
/* Seals the next chunks of every transfer into the outbox (bounded window). */
void agt_xfer_produce(agt_t *a);
/* Receiving side, inside agt_spool_deliver's transaction. Return a wire code
 * for the envelope; *err is set for local failures (abort the batch). */
uint16_t agt_xfer_on_manifest(agt_t *a, MDB_txn *txn, const dxb_env_t *env,
                              const dxb_plain_t *pt, dxb_err_t *err);
uint16_t agt_xfer_on_chunk(agt_t *a, MDB_txn *txn, const dxb_env_t *env, agt_xfer_done_t *done,
                           dxb_err_t *err);
/* fsyncs the files written in this batch: before the commit. */
dxb_err_t agt_xfer_sync(agt_t *a) DXB_MUST_CHECK;
/* After the batch's commit (ok) or abort (!ok). */
void agt_xfer_settle(agt_t *a, bool ok);
/* Forgets incoming transfers idle longer than inbound.dedup_window_s. */
void agt_xfer_sweep(agt_t *a);

/* agt_gov.c: catalog declaration, governance state, masking (PROTOCOL.md 10) */
typedef struct agt_grant agt_grant_t;
void agt_gov_send_catalog(agt_t *a);
void agt_gov_on_state(agt_t *a, const char *what, dxb_bytes_t rows);
void agt_gov_on_rep(agt_t *a, const dxb_frame_t *f);
void agt_gov_api_request(agt_t *a, const uint8_t *rid, size_t rid_len, const dxb_frame_t *f);
/* The active grant with a masking policy of consumer for dataset (this node
 * the owner), or NULL: borrowed until the next GOV_STATE. */
const agt_grant_t *agt_gov_mask_grant(const agt_t *a, const char *dataset, const char *consumer);
uint64_t agt_gov_grant_id(const agt_grant_t *g);
/* Masks a record-structured payload for a grant; *out is malloc'd. */
dxb_err_t agt_gov_mask(const agt_t *a, const agt_grant_t *g, const char *name, dxb_bytes_t in,
                       uint8_t **out, size_t *out_len, char *why, size_t why_cap) DXB_MUST_CHECK;

/* agt_api.c */
dxb_err_t agt_api_bind(agt_t *a) DXB_MUST_CHECK;
int agt_api_on_readable(zloop_t *loop, zmq_pollitem_t *item, void *arg);
void agt_api_push(agt_t *a);

#endif
