/* brk_server: the broker's event loop and sessions.
 *
 * Owns the ZeroMQ context and sockets (CURVE ROUTER for agents, the ZAP
 * handler, the admin ROUTER), the store, and one session per registered node.
 * Everything runs on the main thread in one zloop: socket readers, the
 * signalfd, and one housekeeping timer (heartbeat expiry, redelivery, TTL and
 * de-duplication sweeps). Writes are group-committed per socket drain and
 * acknowledgements leave only after the commit returned (PROTO-R9).
 */
#ifndef BRK_SERVER_H
#define BRK_SERVER_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker/brk_cfg.h"
#include "broker/brk_gov.h"
#include "broker/brk_gstat.h"
#include "broker/brk_queue.h"
#include "common/dxb_keys.h"
#include "common/dxb_store.h"

/* One delivery sent and not yet acknowledged. */
typedef struct {
    uint64_t qseq;
    uint8_t msg_id[16];
    uint64_t sent_mono_ms;
    bool bulk;           /* a piece of a chunked transfer (counts against BULK_INFLIGHT) */
    bool manifest;       /* ... its manifest (not a chunk of file data) */
    uint32_t size;       /* envelope bytes */
    uint8_t xfer_id[16]; /* its transfer, when bulk */
    char dataset[DXB_ID_CAP]; /* for the per-dataset figures */
} brk_inflight_t;

/* A registered node and its live session, if any. */
typedef struct {
    brk_node_cfg_t cfg;       /* registry entry (copy) */
    bool connected;           /* a HELLO was accepted and the link is alive */
    uint8_t rid[256];         /* ROUTER routing id of the current connection */
    size_t rid_len;
    uint64_t last_seen_mono;  /* monotonic ms of the last frame from the node */
    uint64_t last_seen_wall;  /* wall-clock ms of the same, for operators */
    uint64_t epoch;           /* session number given in WELCOME */
    uint32_t window;          /* max deliveries in flight (credit) */
    uint64_t send_from;       /* next qseq to consider for delivery (0 = head) */
    brk_inflight_t *inflight; /* owned ring of capacity window_cap */
    uint32_t window_cap;
    uint32_t if_head, if_count;
    uint32_t if_bulk;         /* in-flight pieces of chunked transfers */
    bool blocked;             /* last send hit EAGAIN: wait for the next tick */
    bool dirty;               /* queue or window changed: pump on next chance */
    bool gov_dirty;           /* governance state changed: send GOV_STATE */
    uint64_t n_published, n_delivered, n_refused;
} brk_sess_t;

typedef struct {
    uint64_t frames_in, frames_bad, published, duplicates, delivered, acked, refused;
    uint64_t dead_lettered, commits, auth_failures, spoofs;
    uint64_t started_wall_ms;
    uint64_t started_mono_ms; /* uptime: immune to wall-clock steps */
} brk_stats_t;

typedef struct brk_server {
    brk_cfg_t cfg;            /* owned */
    char cfg_path[4096];
    dxb_keypair_t keys;       /* broker identity; secret, wiped at destroy */
    void *ctx;                /* owned zmq context */
    void *router;             /* owned: agents */
    void *zap;                /* owned: ZAP handler (REP) */
    void *admin;              /* owned: operators */
    void *mon;                /* owned PAIR: handshake failures of the router (monitor) */
    dxb_store_t *store;       /* owned */
    brk_queue_t *queue;       /* owned */
    brk_gov_t gov;            /* catalog, demands, grants, objections (same store) */
    brk_gstat_t gstat;        /* per-day figures per dataset and node (same store) */
    brk_sess_t **sess;        /* owned array of owned sessions */
    size_t n_sess;
    zhashx_t *by_key;         /* box_z85 -> brk_sess_t* (borrowed) */
    zloop_t *loop;            /* owned */
    int sigfd;
    uint64_t next_epoch;
    brk_stats_t stats;
    msgpack_sbuffer sbuf;     /* scratch for outgoing frames */
    uint32_t zap_denied_window;   /* ZAP denials audited in the current second */
    uint64_t zap_window_start;
} brk_server_t;

/* Builds the server from a loaded config (taken: *cfg is moved in and zeroed).
 * Opens the store, binds sockets. Errors are logged where they happen. */
dxb_err_t brk_server_new(brk_server_t **out, brk_cfg_t *cfg, const char *cfg_path,
                         int sigfd) DXB_MUST_CHECK;
/* Governance state changed (demand, grant, objection, catalog): every
 * connected node gets its view again (PROTOCOL.md 10.4). */
void brk_server_gov_changed(brk_server_t *srv);
/* Runs the loop until SIGTERM/SIGINT. */
dxb_err_t brk_server_run(brk_server_t *srv) DXB_MUST_CHECK;
void brk_server_destroy(brk_server_t **srv_p);

/* Finds a session by node id (NULL when unknown). */
brk_sess_t *brk_server_find(brk_server_t *srv, const char *node);
/* Re-reads the config file and applies the node registry (SIGHUP). */
void brk_server_reload(brk_server_t *srv);
/* Marks every session dirty and tries to deliver (after admin DLQ retry). */
void brk_server_pump_all(brk_server_t *srv);

/* brk_admin.c: handles one admin request frame; appends the reply frame to
 * srv->sbuf (cleared by the caller). */
void brk_admin_handle(brk_server_t *srv, const uint8_t *frame, size_t len);
/* Puts an error answer for a refused admin request into srv->sbuf. */
void brk_admin_refuse(brk_server_t *srv, dxb_err_t err, const char *text);

#endif
