/* brk_server: sockets, ZAP authentication, sessions, group-committed
 * publishing, credit-limited delivery and housekeeping. See brk_server.h. */
#include "broker/brk_server.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#ifdef DXB_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "common/dxb_log.h"
#include "common/dxb_util.h"
#include "broker/brk_auditcp.h"
#include "broker/brk_xfer.h"
#include "proto/dxb_seal.h"
#include "proto/dxb_xfer.h"

#define HOUSEKEEPING_MS 100
#define DELIVER_MAX_BYTES (4u << 20)
/* Chunks of large transfers in flight per session. The rest of the window
 * stays open for other messages, which pass queued chunks (of other
 * (sender, dataset) pairs: order within a pair holds), so a transfer of
 * gigabytes never starves small messages to the same node. */
#define BULK_INFLIGHT 4
/* Entries one delivery scan looks at, at most (bounds the cost of scanning
 * past a long run of held chunks). */
#define PUMP_SCAN_MAX 4096
#define XFER_KEEP_DONE_MS (3600u * 1000u)
#define ZAP_AUDIT_PER_SEC 20

/* One frame drained from the agent socket, waiting for its group commit. */
typedef struct {
    zmq_msg_t body;           /* owned */
    uint8_t rid[256];
    size_t rid_len;
    brk_sess_t *sess;         /* borrowed; NULL when the key is unknown/revoked */
    dxb_frame_t frame;        /* views into body */
    dxb_err_t err;            /* decode result */
    char detail[160];
    dxb_result_t *results;    /* owned: PUBLISH results */
    size_t n_results;
    uint64_t n_published_before, n_refused_before; /* session counters to restore */
} brk_item_t;

static void s_pump(brk_server_t *srv, brk_sess_t *s);

/* ---- small helpers ---------------------------------------------------- */

static void
s_notify(const char *state)
{
#ifdef DXB_HAVE_SYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

static bool
s_send_to(brk_server_t *srv, void *sock, const uint8_t *rid, size_t rid_len, int *errno_out)
{
    *errno_out = 0;
    if (zmq_send(sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(sock, srv->sbuf.data, srv->sbuf.size, ZMQ_DONTWAIT) < 0) {
        *errno_out = zmq_errno();
        return false;
    }
    return true;
}

/* Sends srv->sbuf to a session; handles ROUTER_MANDATORY outcomes (PROTO-R3). */
static bool
s_send_sess(brk_server_t *srv, brk_sess_t *s)
{
    int e;
    if (s_send_to(srv, srv->router, s->rid, s->rid_len, &e)) {
        return true;
    }
    if (e == EAGAIN) {
        s->blocked = true;
    } else if (e == EHOSTUNREACH) {
        dxb_log_info("BRK-UNREACH", "node unreachable, marking offline node=%s", s->cfg.id);
        s->connected = false;
    }
    return false;
}

static void
s_send_error(brk_server_t *srv, const uint8_t *rid, size_t rid_len, uint16_t code,
             const char *text)
{
    int e;
    msgpack_sbuffer_clear(&srv->sbuf);
    if (dxb_msg_enc_error(&srv->sbuf, code, NULL, text) == DXB_OK) {
        s_send_to(srv, srv->router, rid, rid_len, &e);
    }
}

/* Appends an audit record in its own small transaction (events that change
 * no other state: refusals, connections). A failure is logged, not fatal. */
static void
s_audit_now(brk_server_t *srv, const char *actor, const char *action, const char *object,
            const char *result, const char *detail)
{
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(srv->store, true, &txn);
    if (!err) {
        err = dxb_audit_append(&srv->queue->audit, txn, actor, action, object, result, "%s",
                               detail);
    }
    if (!err) {
        err = dxb_store_commit(srv->store, &txn);
    }
    dxb_store_abort(&txn);
    dxb_audit_settle(&srv->queue->audit, err == DXB_OK);
    if (err) {
        dxb_log_error("BRK-AUDITFAIL", "cannot write audit record action=%s err=%s", action,
                      dxb_strerror(err));
    }
}

/* ---- sessions --------------------------------------------------------- */

static void
s_inflight_clear(brk_sess_t *s)
{
    s->if_head = 0;
    s->if_count = 0;
    s->if_bulk = 0;
    s->send_from = 0;
}

static dxb_err_t
s_sess_window(brk_sess_t *s, uint32_t window)
{
    if (window == 0 || window > 65536) {
        return DXB_EINVAL;
    }
    if (window != s->window_cap) {
        brk_inflight_t *ring = calloc(window, sizeof(*ring));
        if (ring == NULL) {
            return DXB_ENOMEM;
        }
        free(s->inflight);
        s->inflight = ring;
        s->window_cap = window;
        s_inflight_clear(s);
    }
    s->window = window;
    return DXB_OK;
}

/* Counts the in-flight deliveries of a lost or restarted session as failed
 * attempts (they may or may not have arrived) and dead-letters those that
 * reached max_attempts. Runs inside the caller's write transaction. */
static dxb_err_t
s_requeue_inflight(brk_server_t *srv, MDB_txn *txn, brk_sess_t *s)
{
    for (uint32_t i = 0; i < s->if_count; i++) {
        brk_inflight_t *f = &s->inflight[(s->if_head + i) % s->window_cap];
        uint32_t attempts = 0;
        dxb_err_t err = brk_queue_bump(srv->queue, txn, s->cfg.id, f->qseq, &attempts);
        if (err == DXB_ENOTFOUND) {
            continue;
        }
        if (err) {
            return err;
        }
        if (attempts >= srv->cfg.max_attempts) {
            err = brk_queue_dead(srv->queue, txn, s->cfg.id, f->qseq, DXB_W_EAGAIN,
                                 "max-attempts");
            if (err) {
                return err;
            }
            srv->stats.dead_lettered++;
        }
    }
    s_inflight_clear(s);
    s->dirty = true;
    return DXB_OK;
}

static void
s_requeue_now(brk_server_t *srv, brk_sess_t *s)
{
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(srv->store, true, &txn);
    if (!err) {
        err = s_requeue_inflight(srv, txn, s);
    }
    if (!err) {
        err = dxb_store_commit(srv->store, &txn);
    }
    dxb_store_abort(&txn);
    dxb_audit_settle(&srv->queue->audit, err == DXB_OK);
    if (err) {
        /* Attempts were not counted; deliveries are still resent from the
         * head, so nothing is lost, only the attempt count lags. */
        s_inflight_clear(s);
        dxb_log_warn("BRK-REQUEUE", "cannot count attempts node=%s err=%s", s->cfg.id,
                     dxb_strerror(err));
    }
}

static void
s_sess_offline(brk_server_t *srv, brk_sess_t *s, const char *why)
{
    if (!s->connected) {
        return;
    }
    s->connected = false;
    dxb_log_info("BRK-OFFLINE", "node offline node=%s reason=%s in_flight=%u", s->cfg.id, why,
                 s->if_count);
    s_requeue_now(srv, s);
    s_audit_now(srv, s->cfg.id, "disconnect", s->cfg.id, "ok", why);
}

static void
s_rebuild_index(brk_server_t *srv)
{
    zhashx_purge(srv->by_key);
    for (size_t i = 0; i < srv->n_sess; i++) {
        zhashx_insert(srv->by_key, srv->sess[i]->cfg.box_z85, srv->sess[i]);
    }
}

brk_sess_t *
brk_server_find(brk_server_t *srv, const char *node)
{
    for (size_t i = 0; i < srv->n_sess; i++) {
        if (strcmp(srv->sess[i]->cfg.id, node) == 0) {
            return srv->sess[i];
        }
    }
    return NULL;
}

static dxb_err_t
s_sessions_from_cfg(brk_server_t *srv)
{
    srv->sess = calloc(srv->cfg.n_nodes ? srv->cfg.n_nodes : 1, sizeof(*srv->sess));
    if (srv->sess == NULL) {
        return DXB_ENOMEM;
    }
    for (size_t i = 0; i < srv->cfg.n_nodes; i++) {
        brk_sess_t *s = calloc(1, sizeof(*s));
        if (s == NULL) {
            return DXB_ENOMEM;
        }
        s->cfg = srv->cfg.nodes[i];
        srv->sess[srv->n_sess++] = s;
    }
    s_rebuild_index(srv);
    return DXB_OK;
}

static void
s_sess_free(brk_sess_t **s_p)
{
    if (*s_p != NULL) {
        free((*s_p)->inflight);
        free(*s_p);
        *s_p = NULL;
    }
}

/* ---- ZAP: the only place a CURVE key becomes a node ------------------- */

/* A refused connection: logged, counted, and audited at most
 * ZAP_AUDIT_PER_SEC times a second so a flood cannot fill the store. */
static void
s_auth_refused(brk_server_t *srv, const char *why, const char *detail)
{
    srv->stats.auth_failures++;
    dxb_log_warn("BRK-AUTHFAIL", "connection refused: %s %s", why, detail);
    uint64_t now = dxb_mono_ms();
    if (now - srv->zap_window_start >= 1000) {
        srv->zap_window_start = now;
        srv->zap_denied_window = 0;
    }
    if (srv->zap_denied_window++ < ZAP_AUDIT_PER_SEC) {
        s_audit_now(srv, "unknown", "auth", "connection", "refused", detail);
    }
}

static int
s_on_zap(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    brk_server_t *srv = arg;
    zmq_msg_t parts[8];
    int n = 0;
    int more = 1;
    while (more && n < 8) {
        zmq_msg_init(&parts[n]);
        if (zmq_msg_recv(&parts[n], srv->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&parts[n]);
            break;
        }
        more = zmq_msg_more(&parts[n]);
        n++;
    }
    const char *status = "400";
    const char *text = "unknown key";
    char user[41] = "";
    char address[64] = "";
    if (n >= 7) {
        size_t alen = zmq_msg_size(&parts[3]);
        alen = alen < sizeof(address) - 1 ? alen : sizeof(address) - 1;
        memcpy(address, zmq_msg_data(&parts[3]), alen);
        address[alen] = 0;
        bool curve = zmq_msg_size(&parts[5]) == 5 && memcmp(zmq_msg_data(&parts[5]), "CURVE", 5) == 0;
        if (curve && zmq_msg_size(&parts[6]) == 32) {
            dxb_keys_z85(zmq_msg_data(&parts[6]), user);
            if (zhashx_lookup(srv->by_key, user) != NULL) {
                status = "200";
                text = "OK";
            }
        } else {
            text = "mechanism not allowed";
        }
    }
    if (n >= 2) {
        zmq_send(srv->zap, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(srv->zap, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), ZMQ_SNDMORE);
        zmq_send(srv->zap, status, 3, ZMQ_SNDMORE);
        zmq_send(srv->zap, text, strlen(text), ZMQ_SNDMORE);
        zmq_send(srv->zap, user, strlen(user), ZMQ_SNDMORE);
        zmq_send(srv->zap, "", 0, 0);
    }
    for (int i = 0; i < n; i++) {
        zmq_msg_close(&parts[i]);
    }
    if (status[0] != '2') {
        char detail[160];
        snprintf(detail, sizeof(detail), "key=%s address=%s", user[0] ? user : "-", address);
        s_auth_refused(srv, text, detail);
    }
    (void)loop;
    (void)item;
    return 0;
}

/* Handshakes that fail before ZAP is asked (a NULL or PLAIN client on the
 * CURVE port, garbage instead of ZMTP) are only visible to a socket
 * monitor; they are logged, counted and audited like ZAP refusals. */
static int
s_on_monitor(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    brk_server_t *srv = arg;
    for (int i = 0; i < 64; i++) {
        zmq_msg_t ev, ep;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, srv->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            break;
        }
        uint16_t id = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&id, zmq_msg_data(&ev), 2);
            memcpy(&value, (uint8_t *)zmq_msg_data(&ev) + 2, 4);
        }
        bool more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        if (more) {
            zmq_msg_init(&ep);
            zmq_msg_recv(&ep, srv->mon, 0);
            zmq_msg_close(&ep);
        }
        if (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || id == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            char detail[96];
            snprintf(detail, sizeof(detail), "handshake failed code=0x%x%s", value,
                     value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
                         ? " (security mechanism is not CURVE)"
                         : "");
            s_auth_refused(srv, "handshake failed before authentication", detail);
        }
    }
    (void)loop;
    (void)item;
    return 0;
}

/* ---- frames from agents ----------------------------------------------- */

/* Receives one ROUTER message (routing id + exactly one body frame). Returns
 * false when nothing is waiting. Extra frames are discarded and flagged. */
static bool
s_recv_item(brk_server_t *srv, brk_item_t *it)
{
    zmq_msg_t rid;
    zmq_msg_init(&rid);
    if (zmq_msg_recv(&rid, srv->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&rid);
        return false;
    }
    memset(it, 0, sizeof(*it));
    it->rid_len = zmq_msg_size(&rid) < sizeof(it->rid) ? zmq_msg_size(&rid) : sizeof(it->rid);
    memcpy(it->rid, zmq_msg_data(&rid), it->rid_len);
    zmq_msg_close(&rid);
    zmq_msg_init(&it->body);
    if (zmq_msg_recv(&it->body, srv->router, 0) < 0) {
        it->err = DXB_EPROTO;
        snprintf(it->detail, sizeof(it->detail), "missing body frame");
        return true;
    }
    int extra = 0;
    while (zmq_msg_more(&it->body)) {
        zmq_msg_t junk;
        zmq_msg_init(&junk);
        zmq_msg_recv(&junk, srv->router, 0);
        bool more = zmq_msg_more(&junk);
        zmq_msg_close(&junk);
        extra++;
        if (!more) {
            break;
        }
    }
    const char *user = zmq_msg_gets(&it->body, "User-Id");
    it->sess = user != NULL ? zhashx_lookup(srv->by_key, user) : NULL;
    if (extra > 0) {
        it->err = DXB_EPROTO;
        snprintf(it->detail, sizeof(it->detail), "%d extra frames (PROTO-R1: one frame)", extra);
        return true;
    }
    it->err = dxb_msg_decode(zmq_msg_data(&it->body), zmq_msg_size(&it->body),
                             srv->cfg.max_frame_bytes, &it->frame, it->detail,
                             sizeof(it->detail));
    return true;
}

static void
s_item_free(brk_item_t *it)
{
    zmq_msg_close(&it->body);
    free(it->results);
    it->results = NULL;
}

static void
s_send_directory(brk_server_t *srv, brk_sess_t *s)
{
    dxb_nodeinfo_t *infos = calloc(srv->n_sess ? srv->n_sess : 1, sizeof(*infos));
    if (infos == NULL) {
        return;
    }
    for (size_t i = 0; i < srv->n_sess; i++) {
        const brk_node_cfg_t *c = &srv->sess[i]->cfg;
        dxb_strlcpy(infos[i].node, c->id, sizeof(infos[i].node));
        dxb_strlcpy(infos[i].region, c->region, sizeof(infos[i].region));
        infos[i].level = c->level;
        infos[i].clearance = c->clearance;
        memcpy(infos[i].sign_pk, c->sign_pk, 32);
        memcpy(infos[i].box_pk, c->box_pk, 32);
    }
    msgpack_sbuffer_clear(&srv->sbuf);
    if (dxb_msg_enc_directory(&srv->sbuf, infos, srv->n_sess) == DXB_OK) {
        s_send_sess(srv, s);
    }
    free(infos);
}

/* HELLO: (re)starts the node's session. Runs inside phase A's transaction. */
static dxb_err_t
s_on_hello(brk_server_t *srv, MDB_txn *txn, brk_item_t *it)
{
    brk_sess_t *s = it->sess;
    if (strcmp(it->frame.u.hello.node, s->cfg.id) != 0) {
        srv->stats.spoofs++;
        dxb_log_warn("BRK-SPOOF", "HELLO claims another node node=%s claimed=%s", s->cfg.id,
                     it->frame.u.hello.node);
        s_send_error(srv, it->rid, it->rid_len, DXB_W_ESPOOF,
                     "HELLO node differs from the authenticated key's node");
        return dxb_audit_append(&srv->queue->audit, txn, s->cfg.id, "hello", s->cfg.id,
                                "refused", "claimed=%s reason=spoof", it->frame.u.hello.node);
    }
    if (s->if_count > 0) {
        dxb_err_t err = s_requeue_inflight(srv, txn, s);
        if (err) {
            return err;
        }
    }
    uint32_t window = it->frame.u.hello.window ? it->frame.u.hello.window
                                               : srv->cfg.default_window;
    if (window > 65536) {
        window = 65536;
    }
    if (s_sess_window(s, window) != DXB_OK) {
        return DXB_ENOMEM;
    }
    memcpy(s->rid, it->rid, it->rid_len);
    s->rid_len = it->rid_len;
    s->connected = true;
    s->blocked = false;
    s->dirty = true;
    s->epoch = ++srv->next_epoch;
    s_inflight_clear(s);
    msgpack_sbuffer_clear(&srv->sbuf);
    if (dxb_msg_enc_welcome(&srv->sbuf, s->cfg.id, srv->cfg.id, srv->cfg.hb_interval_ms,
                            (uint32_t)srv->cfg.max_frame_bytes, s->epoch) == DXB_OK) {
        s_send_sess(srv, s);
    }
    s_send_directory(srv, s);
    s->gov_dirty = srv->cfg.gov_enforce; /* its governance view follows on the next tick */
    dxb_log_info("BRK-CONNECT", "node connected node=%s window=%u epoch=%llu", s->cfg.id,
                 window, (unsigned long long)s->epoch);
    return dxb_audit_append(&srv->queue->audit, txn, s->cfg.id, "connect", s->cfg.id, "ok",
                            "epoch=%llu window=%u", (unsigned long long)s->epoch, window);
}

/* Finds a delivery in flight by message id; acks usually arrive in order, so
 * the head is checked first. Returns the ring offset or -1. */
static int
s_inflight_find(const brk_sess_t *s, const uint8_t *msg_id)
{
    for (uint32_t i = 0; i < s->if_count; i++) {
        const brk_inflight_t *f = &s->inflight[(s->if_head + i) % s->window_cap];
        if (memcmp(f->msg_id, msg_id, 16) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Removes ring offset i, keeping the others in send order. */
static void
s_inflight_remove(brk_sess_t *s, uint32_t i)
{
    if (s->inflight[(s->if_head + i) % s->window_cap].bulk && s->if_bulk > 0) {
        s->if_bulk--;
    }
    if (i == 0) {
        s->if_head = (s->if_head + 1) % s->window_cap;
        s->if_count--;
        return;
    }
    for (uint32_t j = i; j + 1 < s->if_count; j++) {
        s->inflight[(s->if_head + j) % s->window_cap] =
            s->inflight[(s->if_head + j + 1) % s->window_cap];
    }
    s->if_count--;
}

/* DACK: applies each result in phase A's transaction. The in-flight entries
 * are removed right away: if the commit fails the store still holds the
 * messages, and a later redelivery (dedup'd by the agent) repairs it. */
static dxb_err_t
s_on_dack(brk_server_t *srv, MDB_txn *txn, brk_item_t *it)
{
    brk_sess_t *s = it->sess;
    dxb_iter_t iter = it->frame.u.results.results;
    dxb_result_t r;
    while (dxb_msg_next_result(&iter, &r)) {
        int i = s_inflight_find(s, r.msg_id);
        if (i < 0) {
            continue; /* late ack of an earlier attempt (PROTOCOL 7.3.3) */
        }
        brk_inflight_t f = s->inflight[(s->if_head + (uint32_t)i) % s->window_cap];
        s_inflight_remove(s, (uint32_t)i);
        dxb_err_t err;
        char idhex[33];
        dxb_hex_encode(r.msg_id, 16, idhex);
        if (r.code == DXB_W_OK) {
            err = brk_queue_ack(srv->queue, txn, s->cfg.id, f.qseq);
            if (!err && f.bulk && !f.manifest) {
                err = brk_xfer_note_acked(srv->queue, txn, f.xfer_id, f.size, dxb_now_ms());
            }
            if (!err) {
                err = brk_gstat_note(&srv->gstat, txn, BRK_GSTAT_DELIVERED, f.dataset, s->cfg.id,
                                     f.size, dxb_now_ms());
            }
            if (!err) {
                srv->stats.acked++;
                s->n_delivered++;
                err = dxb_audit_append(&srv->queue->audit, txn, s->cfg.id, "delivered",
                                       s->cfg.id, "ok", "msg_id=%s", idhex);
            }
        } else {
            const char *why = dxb_wire_err_name(r.code);
            dxb_log_warn("BRK-REJECTED", "recipient rejected message node=%s msg_id=%s code=%s",
                         s->cfg.id, idhex, why);
            err = brk_queue_dead(srv->queue, txn, s->cfg.id, f.qseq, r.code, why);
            srv->stats.dead_lettered++;
        }
        if (err && err != DXB_ENOTFOUND) {
            return err;
        }
        s->dirty = true;
    }
    return DXB_OK;
}

/* Validates one envelope against the session and the registry; fills the
 * recipient list. Returns a wire code; OK means "store it". */
static uint16_t
s_check_env(brk_server_t *srv, brk_sess_t *s, const dxb_env_t *env,
            char (*rcpt)[DXB_ID_CAP], size_t *n_rcpt, const char **why)
{
    if (strcmp(env->hdr.sender, s->cfg.id) != 0) {
        *why = "sender is not the authenticated node";
        return DXB_W_ESPOOF; /* PROTO-R4 */
    }
    if (env->hdr.kind != DXB_KIND_DELIVERY) {
        *why = "kind not supported by this broker version";
        return DXB_W_ETYPE;
    }
    if (env->hdr.suite != DXB_SUITE_SODIUM1) {
        *why = "unknown crypto suite";
        return DXB_W_ESUITE;
    }
    if (env->body.len > srv->cfg.max_message_bytes) {
        *why = "body over limits.max_message_bytes";
        return DXB_W_ETOOBIG;
    }
    if ((env->hdr.flags & (DXB_FLAG_CHUNK | DXB_FLAG_MANIFEST)) == DXB_FLAG_CHUNK) {
        /* The broker reads the public part of a chunk (transfer id, index,
         * count, size) for flow control and progress; it must be sound. */
        static char detail[96];
        dxb_chunk_t c;
        if (dxb_xfer_chunk_decode(env->body.ptr, env->body.len, &c, detail, sizeof(detail))) {
            *why = detail;
            return DXB_W_EPROTO;
        }
    }
    uint8_t h[DXB_HASH_BYTES];
    dxb_seal_body_hash(env->body.ptr, env->body.len, h);
    if (sodium_memcmp(h, env->body_hash, DXB_HASH_BYTES) != 0) {
        *why = "body hash mismatch";
        return DXB_W_EINTEGRITY; /* PROTO-R7 */
    }
    dxb_iter_t ri;
    dxb_msg_recipients_begin(env->hdr.recipients, env->hdr.n_recipients, &ri);
    size_t n = 0;
    while (dxb_msg_next_recipient(&ri, rcpt[n])) {
        if (brk_server_find(srv, rcpt[n]) == NULL) {
            *why = "unknown recipient";
            return DXB_W_ENOROUTE;
        }
        for (size_t j = 0; j < n; j++) {
            if (strcmp(rcpt[j], rcpt[n]) == 0) {
                *why = "recipient listed twice";
                return DXB_W_EPROTO;
            }
        }
        n++;
    }
    *n_rcpt = n;
    return DXB_W_OK;
}

/* PUBLISH: validates and stores every envelope in phase B's transaction. */
static dxb_err_t
s_on_publish(brk_server_t *srv, MDB_txn *txn, brk_item_t *it, uint64_t now)
{
    brk_sess_t *s = it->sess;
    dxb_iter_t iter = it->frame.u.envs.envs;
    it->results = calloc(iter.left, sizeof(*it->results));
    if (it->results == NULL) {
        return DXB_ENOMEM;
    }
    static char rcpt[DXB_MAX_RECIPIENTS][DXB_ID_CAP];
    dxb_env_t env;
    while (dxb_msg_next_env(&iter, &env)) {
        dxb_result_t *r = &it->results[it->n_results++];
        memcpy(r->msg_id, env.hdr.msg_id, 16);
        size_t n = 0;
        const char *why = "";
        r->code = s_check_env(srv, s, &env, rcpt, &n, &why);
        char idhex[33];
        dxb_hex_encode(env.hdr.msg_id, 16, idhex);
        uint64_t last = 0;
        dxb_err_t serr = brk_queue_seq_last(srv->queue, txn, s->cfg.id, env.hdr.dataset, &last);
        if (serr) {
            return serr;
        }
        if (r->code == DXB_W_OK && last > 0 && env.hdr.seq > last + 1) {
            /* An earlier message of this dataset is missing (refused with
             * EFULL and not yet resent): storing this one first would break
             * the per-sender order. The agent resends from its oldest. */
            r->code = DXB_W_EAGAIN;
            continue;
        }
        if (r->code == DXB_W_OK && srv->cfg.gov_enforce) {
            r->code = brk_gov_check(&srv->gov, txn, &env, rcpt, n, &why);
        }
        if (r->code != DXB_W_ESPOOF) {
            serr = brk_queue_seq_note(srv->queue, txn, s->cfg.id, env.hdr.dataset, env.hdr.seq);
            if (serr) {
                return serr;
            }
        }
        if (r->code != DXB_W_OK && r->code != DXB_W_EAGAIN && r->code != DXB_W_EFULL &&
            r->code != DXB_W_EIO) {
            serr = brk_gstat_note(&srv->gstat, txn, BRK_GSTAT_REFUSED, env.hdr.dataset, s->cfg.id,
                                  0, now);
            if (serr) {
                return serr;
            }
        }
        if (r->code != DXB_W_OK) {
            srv->stats.refused++;
            s->n_refused++;
            if (r->code == DXB_W_ESPOOF) {
                srv->stats.spoofs++;
            }
            dxb_log_warn("BRK-REFUSED", "envelope refused node=%s msg_id=%s code=%s reason=%s",
                         s->cfg.id, idhex, dxb_wire_err_name(r->code), why);
            dxb_err_t aerr = dxb_audit_append(&srv->queue->audit, txn, s->cfg.id, "publish",
                                              env.hdr.dataset, dxb_wire_err_name(r->code),
                                              "msg_id=%s reason=%s", idhex, why);
            if (aerr) {
                return aerr;
            }
            continue;
        }
        uint64_t ttl_s = env.hdr.ttl_s ? env.hdr.ttl_s : srv->cfg.default_ttl_s;
        dxb_err_t err = brk_queue_put(srv->queue, txn, &env, rcpt, n, now, now + ttl_s * 1000);
        if ((err == DXB_OK || err == DXB_EEXIST) && (env.hdr.flags & DXB_FLAG_CHUNK)) {
            dxb_err_t xerr = brk_xfer_note_stored(srv->queue, txn, &env, (uint32_t)n,
                                                  err == DXB_EEXIST, now);
            if (xerr) {
                return xerr;
            }
        }
        if (err == DXB_EEXIST) {
            srv->stats.duplicates++;
            continue; /* already stored: OK again, stored once */
        }
        if (err == DXB_EINTEGRITY) {
            r->code = DXB_W_EINTEGRITY;
            continue;
        }
        if (err) {
            return err;
        }
        err = brk_gstat_note(&srv->gstat, txn, BRK_GSTAT_PUBLISHED, env.hdr.dataset, s->cfg.id,
                             env.raw.len, now);
        if (err) {
            return err;
        }
        err = dxb_audit_append(&srv->queue->audit, txn, s->cfg.id, "accepted", env.hdr.dataset,
                               "ok", "msg_id=%s seq=%llu size=%zu recipients=%zu", idhex,
                               (unsigned long long)env.hdr.seq, env.body.len, n);
        if (err) {
            return err;
        }
        for (size_t i = 0; i < n; i++) {
            brk_sess_t *rs = brk_server_find(srv, rcpt[i]);
            rs->dirty = true;
        }
        srv->stats.published++;
        s->n_published++;
    }
    return DXB_OK;
}

/* Frames that touch no store state are answered at once. */
static void
s_on_light(brk_server_t *srv, brk_item_t *it)
{
    brk_sess_t *s = it->sess;
    switch (it->frame.type) {
    case DXB_T_PING:
        msgpack_sbuffer_clear(&srv->sbuf);
        if (dxb_msg_enc_ping(&srv->sbuf, DXB_T_PONG, it->frame.u.ping.t_ms) == DXB_OK) {
            int e;
            s_send_to(srv, srv->router, it->rid, it->rid_len, &e);
        }
        break;
    case DXB_T_CREDIT:
        if (s->connected && s_sess_window(s, it->frame.u.credit.window) == DXB_OK) {
            s->dirty = true;
        }
        break;
    case DXB_T_BYE:
        if (s->connected && it->rid_len == s->rid_len &&
            memcmp(it->rid, s->rid, s->rid_len) == 0) {
            s_sess_offline(srv, s, "bye");
        }
        break;
    default:
        break;
    }
}

/* ---- governance frames (PROTOCOL.md section 10) ------------------------- */

/* Converts a CATALOG frame into entries for brk_gov_declare. */
static size_t
s_catalog_entries(dxb_iter_t it, brk_catentry_t *out, size_t cap)
{
    size_t n = 0;
    dxb_catentry_t ce;
    while (n < cap && dxb_msg_next_catentry(&it, &ce)) {
        brk_catentry_t *e = &out[n++];
        memset(e, 0, sizeof(*e));
        dxb_strlcpy(e->dataset, ce.dataset, sizeof(e->dataset));
        snprintf(e->title, sizeof(e->title), "%.*s", (int)ce.title.len, ce.title.ptr);
        snprintf(e->description, sizeof(e->description), "%.*s", (int)ce.description.len,
                 ce.description.ptr);
        snprintf(e->frequency, sizeof(e->frequency), "%.*s", (int)ce.frequency.len,
                 ce.frequency.ptr);
        dxb_strlcpy(e->region, ce.region, sizeof(e->region));
        e->level = ce.level;
        e->share = ce.share;
        dxb_catfield_t cf;
        while (e->n_fields < BRK_GOV_MAX_FIELDS && dxb_msg_next_catfield(&ce.fields, &cf)) {
            brk_catfield_t *f = &e->fields[e->n_fields++];
            snprintf(f->name, sizeof(f->name), "%.*s", (int)cf.name.len, cf.name.ptr);
            snprintf(f->type, sizeof(f->type), "%.*s", (int)cf.type.len, cf.type.ptr);
            f->sensitivity = cf.sensitivity;
        }
    }
    return n;
}

static void
s_gov_reply(brk_server_t *srv, brk_item_t *it, uint32_t req, uint16_t code, const char *text,
            const msgpack_sbuffer *rows)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(&srv->sbuf);
    if (dxb_msg_enc_gov_rep_begin(&srv->sbuf, &pk, req, code, text) != DXB_OK) {
        return;
    }
    if (rows != NULL && rows->size > 0) {
        msgpack_sbuffer_write(&srv->sbuf, rows->data, rows->size);
    } else {
        msgpack_pack_nil(&pk);
    }
    int e;
    s_send_to(srv, srv->router, it->rid, it->rid_len, &e);
}

/* GOV_REQ and CATALOG from an agent: run as that node, in their own write
 * transaction, committed (with their audit records) before the answer. */
static void
s_on_gov(brk_server_t *srv, brk_item_t *it)
{
    static brk_catentry_t entries[64];
    brk_sess_t *s = it->sess;
    const dxb_frame_t *f = &it->frame;
    bool is_req = f->type == DXB_T_GOV_REQ;
    uint32_t req = is_req ? f->u.gov_req.req : 0;
    char args_buf[DXB_MAX_GOV_ARGS][DXB_MAX_GOV_ARG + 1];
    const char *args[DXB_MAX_GOV_ARGS];
    uint16_t n_args = is_req ? f->u.gov_req.n_args : 0;
    for (uint16_t i = 0; i < n_args; i++) {
        snprintf(args_buf[i], sizeof(args_buf[i]), "%.*s", (int)f->u.gov_req.args[i].len,
                 (const char *)f->u.gov_req.args[i].ptr);
        args[i] = args_buf[i];
    }
    bool writes = !is_req || brk_gov_op_writes(f->u.gov_req.op);
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(srv->store, writes, &txn);
    msgpack_sbuffer rows;
    msgpack_sbuffer_init(&rows);
    msgpack_packer rpk;
    msgpack_packer_init(&rpk, &rows, msgpack_sbuffer_write);
    uint16_t code = 0;
    char text[512] = "ok";
    bool wrote = false;
    if (!err && is_req) {
        err = brk_gov_request(&srv->gov, txn, s->cfg.id, f->u.gov_req.op, args, n_args, &rpk,
                              &code, text, sizeof(text), &wrote);
    } else if (!err) {
        size_t n = s_catalog_entries(f->u.catalog.entries, entries, 64);
        size_t changed = 0, refused = 0;
        if (f->u.catalog.entries.left > 64) {
            code = DXB_W_ETOOBIG;
            snprintf(text, sizeof(text), "at most 64 datasets per node in this version");
        } else {
            err = brk_gov_declare(&srv->gov, txn, s->cfg.id, entries, n, &changed, &refused);
            wrote = changed + refused > 0;
            code = refused ? DXB_W_EDENIED : DXB_W_OK;
            snprintf(text, sizeof(text), "catalog: %zu declared, %zu changed, %zu refused", n,
                     changed, refused);
        }
    }
    if (!err && wrote) {
        err = dxb_store_commit(srv->store, &txn);
    }
    dxb_store_abort(&txn);
    dxb_audit_settle(&srv->queue->audit, !err && wrote);
    if (err) {
        code = dxb_err_to_wire(err);
        snprintf(text, sizeof(text), "not done: %s", dxb_strerror(err));
        msgpack_sbuffer_clear(&rows);
    }
    s_gov_reply(srv, it, req, code, text, code == 0 && is_req ? &rows : NULL);
    msgpack_sbuffer_destroy(&rows);
    if (!err && wrote) {
        brk_server_gov_changed(srv);
    }
}

/* Sends a node its view of the governance state: the catalog, and the
 * grants, demands and objections it is a party to (PROTOCOL.md 10.4). */
static void
s_send_gov_state(brk_server_t *srv, brk_sess_t *s)
{
    static const struct {
        const char *what, *op;
    } views[] = {{"catalog", "catalog.list"},
                 {"grants", "grant.list"},
                 {"demands", "demand.list"},
                 {"objections", "objection.list"}};
    MDB_txn *txn = NULL;
    if (dxb_store_begin(srv->store, false, &txn) != DXB_OK) {
        return;
    }
    s->gov_dirty = false;
    msgpack_sbuffer rows;
    msgpack_sbuffer_init(&rows);
    for (size_t i = 0; i < sizeof(views) / sizeof(views[0]); i++) {
        msgpack_packer rpk, pk;
        msgpack_sbuffer_clear(&rows);
        msgpack_packer_init(&rpk, &rows, msgpack_sbuffer_write);
        uint16_t code = 0;
        char text[256];
        bool wrote = false;
        const char *actor = strcmp(views[i].what, "catalog") == 0 ? NULL : s->cfg.id;
        if (brk_gov_request(&srv->gov, txn, actor, views[i].op, NULL, 0, &rpk, &code, text,
                            sizeof(text), &wrote) != DXB_OK ||
            code != 0) {
            continue;
        }
        msgpack_sbuffer_clear(&srv->sbuf);
        if (dxb_msg_enc_gov_state_begin(&srv->sbuf, &pk, views[i].what) == DXB_OK) {
            msgpack_sbuffer_write(&srv->sbuf, rows.data, rows.size);
            s_send_sess(srv, s);
        }
    }
    msgpack_sbuffer_destroy(&rows);
    dxb_store_abort(&txn);
}

/* Refuses a frame that failed authentication or decoding. */
static void
s_refuse(brk_server_t *srv, brk_item_t *it)
{
    srv->stats.frames_bad++;
    if (it->sess == NULL) {
        /* The key passed ZAP at handshake but is no longer registered:
         * revoked by a reload. Cut the session off. */
        srv->stats.auth_failures++;
        dxb_log_warn("BRK-REVOKED", "frame from a revoked or unknown key refused");
        s_send_error(srv, it->rid, it->rid_len, DXB_W_EAUTH, "key revoked or unknown");
        s_audit_now(srv, "unknown", "frame", "session", "refused", "key revoked or unknown");
        return;
    }
    dxb_log_warn("BRK-BADFRAME", "malformed frame refused node=%s err=%s detail=%s",
                 it->sess->cfg.id, dxb_err_name(it->err), it->detail);
    s_send_error(srv, it->rid, it->rid_len, dxb_err_to_wire(it->err), it->detail);
    char detail[200];
    snprintf(detail, sizeof(detail), "%s: %s", dxb_err_name(it->err), it->detail);
    s_audit_now(srv, it->sess->cfg.id, "frame", "session", "refused", detail);
}

/* Phase A: session changes and acknowledgements (they free space, so they
 * must commit even when the store is full). */
static void
s_phase_a(brk_server_t *srv, brk_item_t *items, size_t n)
{
    MDB_txn *txn = NULL;
    bool any = false;
    dxb_err_t err = DXB_OK;
    for (size_t i = 0; i < n && !err; i++) {
        brk_item_t *it = &items[i];
        if (it->err || it->sess == NULL) {
            continue;
        }
        uint8_t t = it->frame.type;
        bool session_ok = it->sess->connected || t == DXB_T_HELLO;
        if (t != DXB_T_HELLO && t != DXB_T_DACK) {
            continue;
        }
        if (!session_ok) {
            continue; /* DACK without a session: the message will be resent */
        }
        if (txn == NULL) {
            err = dxb_store_begin(srv->store, true, &txn);
            if (err) {
                break;
            }
        }
        err = t == DXB_T_HELLO ? s_on_hello(srv, txn, it) : s_on_dack(srv, txn, it);
        any = true;
    }
    if (txn != NULL && !err && any) {
        err = brk_gstat_flush(&srv->gstat, txn);
    }
    if (txn != NULL && !err && any) {
        err = dxb_store_commit(srv->store, &txn);
        srv->stats.commits++;
    }
    dxb_store_abort(&txn);
    brk_gstat_drop(&srv->gstat);
    dxb_audit_settle(&srv->queue->audit, err == DXB_OK);
    if (err) {
        dxb_log_error("BRK-COMMIT", "session/ack commit failed err=%s", dxb_strerror(err));
    }
}

/* Runs every PUBLISH of the drain in one transaction and commits it. */
static dxb_err_t
s_store_publishes(brk_server_t *srv, brk_item_t *items, size_t n, bool *any)
{
    MDB_txn *txn = NULL;
    dxb_err_t err = DXB_OK;
    uint64_t now = dxb_now_ms();
    /* Counters move only with a commit: keep the old values to restore. */
    brk_stats_t stats_before = srv->stats;
    *any = false;
    for (size_t i = 0; i < n; i++) {
        if (items[i].sess != NULL) {
            items[i].n_published_before = items[i].sess->n_published;
            items[i].n_refused_before = items[i].sess->n_refused;
        }
    }
    for (size_t i = 0; i < n && !err; i++) {
        brk_item_t *it = &items[i];
        if (it->err || it->sess == NULL || it->frame.type != DXB_T_PUBLISH) {
            continue;
        }
        *any = true; /* even when the store refuses to begin: every publish is answered */
        if (txn == NULL) {
            err = dxb_store_begin(srv->store, true, &txn);
            if (err) {
                break;
            }
        }
        free(it->results);
        it->results = NULL;
        it->n_results = 0;
        err = s_on_publish(srv, txn, it, now);
    }
    if (txn != NULL && !err) {
        err = brk_gstat_flush(&srv->gstat, txn);
    }
    if (txn != NULL && !err) {
        err = dxb_store_commit(srv->store, &txn);
        srv->stats.commits++;
    }
    dxb_store_abort(&txn);
    brk_gstat_drop(&srv->gstat);
    dxb_audit_settle(&srv->queue->audit, err == DXB_OK);
    if (err) {
        uint64_t commits = srv->stats.commits;
        srv->stats = stats_before;
        srv->stats.commits = commits;
        for (size_t i = n; i-- > 0;) {
            if (items[i].sess != NULL) {
                items[i].sess->n_published = items[i].n_published_before;
                items[i].sess->n_refused = items[i].n_refused_before;
            }
        }
    }
    return err;
}

/* LMDB reuses the pages freed by transaction N only from transaction N+2 on
 * (a reader could still see N). After a drain frees space, the next write
 * commit is what makes it usable; when that write is a publish that fails for
 * want of space, nothing would ever commit again. This commits a one-key
 * write so the freed pages become reusable. */
static void
s_touch_store(brk_server_t *srv)
{
    MDB_txn *txn = NULL;
    uint64_t now = dxb_now_ms();
    MDB_val k = {9, "last_full"}, v = {8, &now};
    dxb_err_t err = dxb_store_begin(srv->store, true, &txn);
    if (!err) {
        err = dxb_store_err(mdb_put(txn, srv->queue->meta, &k, &v, 0), "meta put");
    }
    if (!err) {
        err = dxb_store_commit(srv->store, &txn);
    }
    dxb_store_abort(&txn);
}

/* Phase B: publishes, one transaction, then PUBACKs (PROTO-R9). */
static void
s_phase_b(brk_server_t *srv, brk_item_t *items, size_t n)
{
    bool any = false;
    dxb_err_t err = s_store_publishes(srv, items, n, &any);
    if (!any) {
        return;
    }
    if (err == DXB_EFULL) {
        s_touch_store(srv);
        err = s_store_publishes(srv, items, n, &any);
    }
    if (err) {
        dxb_log_warn("BRK-PUBFAIL", "publish batch not stored err=%s", dxb_strerror(err));
    }
    uint16_t fail = dxb_err_to_wire(err == DXB_ENOMEM ? DXB_EAGAIN : err);
    for (size_t i = 0; i < n; i++) {
        brk_item_t *it = &items[i];
        if (it->err || it->sess == NULL || it->frame.type != DXB_T_PUBLISH) {
            continue;
        }
        if (err) {
            /* Nothing of this batch is stored: every envelope gets the
             * store's error (EFULL = back-pressure, EIO = stopped). */
            dxb_iter_t iter = it->frame.u.envs.envs;
            free(it->results);
            it->results = calloc(iter.left ? iter.left : 1, sizeof(*it->results));
            it->n_results = 0;
            dxb_env_t env;
            while (it->results != NULL && dxb_msg_next_env(&iter, &env)) {
                memcpy(it->results[it->n_results].msg_id, env.hdr.msg_id, 16);
                it->results[it->n_results++].code = fail;
            }
        }
        if (it->results == NULL || it->n_results == 0) {
            continue;
        }
        msgpack_sbuffer_clear(&srv->sbuf);
        if (dxb_msg_enc_results(&srv->sbuf, DXB_T_PUBACK, it->results, it->n_results) == DXB_OK) {
            int e;
            s_send_to(srv, srv->router, it->rid, it->rid_len, &e);
        }
    }
}

static int
s_on_router(zloop_t *loop, zmq_pollitem_t *pi, void *arg)
{
    brk_server_t *srv = arg;
    size_t cap = srv->cfg.batch_max;
    brk_item_t *items = calloc(cap, sizeof(*items));
    if (items == NULL) {
        return 0;
    }
    size_t n = 0;
    while (n < cap && s_recv_item(srv, &items[n])) {
        brk_item_t *it = &items[n++];
        srv->stats.frames_in++;
        if (it->sess != NULL) {
            it->sess->last_seen_mono = dxb_mono_ms();
            it->sess->last_seen_wall = dxb_now_ms();
        }
        if (it->err || it->sess == NULL) {
            s_refuse(srv, it);
            it->err = it->err ? it->err : DXB_EAUTH;
            continue;
        }
        uint8_t t = it->frame.type;
        if (t != DXB_T_HELLO && !it->sess->connected) {
            /* No HELLO on this connection yet (e.g. after a broker restart the
             * agent's socket reconnected silently): even a PING is answered
             * with "start again", or an idle agent would never notice. */
            s_send_error(srv, it->rid, it->rid_len, DXB_W_EAUTH, "no session: send HELLO");
            it->err = DXB_EAUTH;
        } else if (t == DXB_T_PING || t == DXB_T_CREDIT || t == DXB_T_BYE) {
            s_on_light(srv, it);
        } else if (t == DXB_T_GOV_REQ || t == DXB_T_CATALOG) {
            s_on_gov(srv, it);
        } else if (t != DXB_T_HELLO && t != DXB_T_PUBLISH && t != DXB_T_DACK) {
            it->err = DXB_ETYPE;
            snprintf(it->detail, sizeof(it->detail), "message type %u not accepted from agents",
                     t);
            s_refuse(srv, it);
        }
        if (t == DXB_T_HELLO) {
            /* End the batch here: frames behind a HELLO belong to the session
             * it starts, which exists only once phase A has run. */
            break;
        }
    }
    s_phase_a(srv, items, n);
    s_phase_b(srv, items, n);
    for (size_t i = 0; i < n; i++) {
        s_item_free(&items[i]);
    }
    free(items);
    for (size_t i = 0; i < srv->n_sess; i++) {
        if (srv->sess[i]->dirty) {
            s_pump(srv, srv->sess[i]);
        }
    }
    (void)loop;
    (void)pi;
    return 0;
}

/* ---- delivery --------------------------------------------------------- */

/* A (sender, dataset) pair whose entries wait behind a held chunk. */
typedef struct {
    char sender[DXB_ID_CAP];
    char dataset[DXB_ID_CAP];
} brk_pair_t;

#define PUMP_MAX_HELD 16

typedef struct {
    brk_server_t *srv;
    brk_sess_t *s;
    dxb_bytes_t envs[DXB_MAX_BATCH];
    uint64_t qseqs[DXB_MAX_BATCH];
    uint8_t ids[DXB_MAX_BATCH][16];
    uint8_t xfer_ids[DXB_MAX_BATCH][16];
    char datasets[DXB_MAX_BATCH][DXB_ID_CAP];
    bool bulk[DXB_MAX_BATCH];
    bool manifest[DXB_MAX_BATCH];
    size_t n;
    size_t bytes;
    uint32_t space;
    uint32_t bulk_space;   /* chunks this scan may still send */
    uint64_t last_qseq;    /* last entry passed before anything was held */
    uint64_t first_held;   /* first entry left behind (0 = none): the next scan starts there */
    brk_pair_t held[PUMP_MAX_HELD];
    size_t n_held;
    unsigned visited;
    uint64_t now_ms;
    uint64_t bad_qseq[16]; /* entries whose stored body fails its hash */
    size_t n_bad;
} brk_pump_t;

static bool
s_pair_held(const brk_pump_t *p, const dxb_header_t *h)
{
    for (size_t i = 0; i < p->n_held; i++) {
        if (strcmp(p->held[i].sender, h->sender) == 0 &&
            strcmp(p->held[i].dataset, h->dataset) == 0) {
            return true;
        }
    }
    return false;
}

/* Marks an entry as passed: the scan cursor may move beyond it, unless an
 * earlier entry was held back. */
static void
s_pump_pass(brk_pump_t *p, uint64_t qseq)
{
    if (p->first_held == 0) {
        p->last_qseq = qseq;
    }
}

/* Leaves an entry for a later scan; false when no more pairs can be held. */
static bool
s_pump_hold(brk_pump_t *p, const dxb_header_t *h, uint64_t qseq)
{
    if (!s_pair_held(p, h)) {
        if (p->n_held == PUMP_MAX_HELD) {
            return false;
        }
        dxb_strlcpy(p->held[p->n_held].sender, h->sender, DXB_ID_CAP);
        dxb_strlcpy(p->held[p->n_held].dataset, h->dataset, DXB_ID_CAP);
        p->n_held++;
    }
    if (p->first_held == 0) {
        p->first_held = qseq;
    }
    return true;
}

static bool
s_pump_visit(void *arg, const brk_qentry_t *e, const uint8_t *raw, size_t len)
{
    brk_pump_t *p = arg;
    if (p->n >= p->space || p->n >= DXB_MAX_BATCH || ++p->visited > PUMP_SCAN_MAX ||
        (p->n > 0 && p->bytes + len > DELIVER_MAX_BYTES)) {
        return false;
    }
    if (e->expires_ms <= p->now_ms || s_inflight_find(p->s, e->msg_id) >= 0) {
        s_pump_pass(p, e->qseq); /* the TTL sweep dead-letters it / already sent */
        return true;
    }
    dxb_env_t env;
    bool ok = raw != NULL && dxb_msg_decode_env(raw, len, &env, NULL, 0) == DXB_OK;
    bool bulk = ok && (env.hdr.flags & DXB_FLAG_CHUNK) != 0;
    if (ok && (s_pair_held(p, &env.hdr) || (bulk && p->bulk_space == 0))) {
        /* Held entries are not hashed: a long run of waiting chunks would
         * otherwise be hashed again on every scan. They are checked when
         * they are actually sent. */
        return s_pump_hold(p, &env.hdr, e->qseq);
    }
    if (ok) {
        uint8_t h[DXB_HASH_BYTES];
        dxb_seal_body_hash(env.body.ptr, env.body.len, h);
        ok = sodium_memcmp(h, env.body_hash, DXB_HASH_BYTES) == 0;
    }
    if (!ok) {
        if (p->n_bad < 16) {
            p->bad_qseq[p->n_bad++] = e->qseq; /* PROTO-R7: corrupted at rest */
        }
        s_pump_pass(p, e->qseq);
        return p->n_bad < 16;
    }
    if (bulk) {
        p->bulk_space--;
        if (!brk_xfer_id_of(&env, p->xfer_ids[p->n])) {
            memset(p->xfer_ids[p->n], 0, 16);
        }
    }
    p->bulk[p->n] = bulk;
    p->manifest[p->n] = (env.hdr.flags & DXB_FLAG_MANIFEST) != 0;
    memcpy(p->datasets[p->n], env.hdr.dataset, DXB_ID_CAP);
    p->envs[p->n].ptr = raw;
    p->envs[p->n].len = len;
    p->qseqs[p->n] = e->qseq;
    memcpy(p->ids[p->n], e->msg_id, 16);
    p->n++;
    p->bytes += len;
    s_pump_pass(p, e->qseq);
    return true;
}

static void
s_dead_corrupt(brk_server_t *srv, brk_sess_t *s, const uint64_t *qseqs, size_t n)
{
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(srv->store, true, &txn);
    for (size_t i = 0; i < n && !err; i++) {
        err = brk_queue_dead(srv->queue, txn, s->cfg.id, qseqs[i], DXB_W_EINTEGRITY,
                             "integrity");
        if (err == DXB_ENOTFOUND) {
            err = DXB_OK;
        }
        srv->stats.dead_lettered++;
    }
    if (!err) {
        err = dxb_store_commit(srv->store, &txn);
    }
    dxb_store_abort(&txn);
    dxb_audit_settle(&srv->queue->audit, err == DXB_OK);
    dxb_log_error("BRK-CORRUPT", "stored message failed its hash, dead-lettered node=%s count=%zu",
                  s->cfg.id, n);
}

/* Sends as many queued messages as the session's window allows, oldest
 * first, except that chunks beyond BULK_INFLIGHT (and whatever of their
 * (sender, dataset) pair follows them) wait for a later scan. */
static void
s_pump(brk_server_t *srv, brk_sess_t *s)
{
    s->dirty = false;
    static brk_pump_t p;
    while (s->connected && !s->blocked && s->if_count < s->window) {
        /* Only the scalars: the arrays (128 KB) are written before they are
         * read, and clearing them for every session on every tick was most
         * of an idle broker's time. */
        p.n = 0;
        p.bytes = 0;
        p.last_qseq = 0;
        p.first_held = 0;
        p.n_held = 0;
        p.visited = 0;
        p.n_bad = 0;
        p.srv = srv;
        p.s = s;
        p.space = s->window - s->if_count;
        p.bulk_space = s->if_bulk < BULK_INFLIGHT ? BULK_INFLIGHT - s->if_bulk : 0;
        p.now_ms = dxb_now_ms();
        MDB_txn *txn = NULL;
        if (dxb_store_begin(srv->store, false, &txn) != DXB_OK) {
            return;
        }
        dxb_err_t err = brk_queue_scan(srv->queue, txn, s->cfg.id, s->send_from, s_pump_visit, &p);
        bool sent = false;
        if (!err && p.n > 0) {
            msgpack_sbuffer_clear(&srv->sbuf);
            err = dxb_msg_enc_envs(&srv->sbuf, DXB_T_DELIVER, p.envs, p.n);
            sent = !err && s_send_sess(srv, s);
        }
        dxb_store_abort(&txn); /* values were copied into sbuf above */
        if (p.n_bad > 0) {
            s_dead_corrupt(srv, s, p.bad_qseq, p.n_bad);
        }
        if (p.n > 0 && !sent) {
            return; /* blocked or unreachable: retried on the next tick */
        }
        uint64_t now = dxb_mono_ms();
        for (size_t i = 0; i < p.n; i++) {
            brk_inflight_t *f = &s->inflight[(s->if_head + s->if_count) % s->window_cap];
            f->qseq = p.qseqs[i];
            memcpy(f->msg_id, p.ids[i], 16);
            f->sent_mono_ms = now;
            f->bulk = p.bulk[i];
            f->manifest = p.manifest[i];
            f->size = (uint32_t)p.envs[i].len;
            memcpy(f->xfer_id, p.xfer_ids[i], 16);
            memcpy(f->dataset, p.datasets[i], DXB_ID_CAP);
            s->if_bulk += p.bulk[i] ? 1 : 0;
            s->if_count++;
        }
        srv->stats.delivered += p.n;
        if (p.first_held != 0) {
            s->send_from = p.first_held; /* rescanned when a chunk is acknowledged */
        } else if (p.last_qseq != 0) {
            s->send_from = p.last_qseq + 1;
        }
        if (p.n == 0 && p.n_bad == 0) {
            return; /* nothing more to send now */
        }
    }
}

void
brk_server_gov_changed(brk_server_t *srv)
{
    for (size_t i = 0; i < srv->n_sess; i++) {
        srv->sess[i]->gov_dirty = srv->cfg.gov_enforce;
    }
}

void
brk_server_pump_all(brk_server_t *srv)
{
    for (size_t i = 0; i < srv->n_sess; i++) {
        srv->sess[i]->dirty = true;
        s_pump(srv, srv->sess[i]);
    }
}

/* ---- housekeeping ----------------------------------------------------- */

static void
s_sweep(brk_server_t *srv)
{
    MDB_txn *txn = NULL;
    unsigned moved = 0;
    uint64_t now = dxb_now_ms();
    dxb_err_t err = dxb_store_begin(srv->store, true, &txn);
    if (!err) {
        err = brk_queue_expire(srv->queue, txn, now, 1024, &moved);
    }
    if (!err) {
        err = brk_queue_dedup_sweep(srv->queue, txn, now - srv->cfg.dedup_window_s * 1000, 4096);
    }
    if (!err) {
        err = brk_xfer_sweep(srv->queue, txn, now, XFER_KEEP_DONE_MS,
                             srv->cfg.default_ttl_s * 1000, 64);
    }
    if (!err) {
        err = dxb_store_commit(srv->store, &txn);
    }
    dxb_store_abort(&txn);
    dxb_audit_settle(&srv->queue->audit, err == DXB_OK);
    if (!err && moved > 0) {
        srv->stats.dead_lettered += moved;
        dxb_log_notice("BRK-EXPIRED", "messages past their TTL moved to the DLQ count=%u", moved);
    }
}

static int
s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    brk_server_t *srv = arg;
    uint64_t now = dxb_mono_ms();
    static uint64_t last_sweep;
    for (size_t i = 0; i < srv->n_sess; i++) {
        brk_sess_t *s = srv->sess[i];
        if (!s->connected) {
            continue;
        }
        if (now - s->last_seen_mono > srv->cfg.hb_timeout_ms) {
            s_sess_offline(srv, s, "heartbeat-timeout");
            continue;
        }
        if (s->if_count > 0 &&
            now - s->inflight[s->if_head].sent_mono_ms > srv->cfg.redeliver_ms) {
            dxb_log_notice("BRK-REDELIVER", "unacknowledged deliveries resent node=%s count=%u",
                           s->cfg.id, s->if_count);
            s_requeue_now(srv, s);
        }
        s->blocked = false;
        if (s->gov_dirty) {
            s_send_gov_state(srv, s);
        }
        s_pump(srv, s);
    }
    if (now - last_sweep >= 1000) {
        last_sweep = now;
        s_sweep(srv);
        brk_auditcp_tick(srv);
    }
#ifdef DXB_HAVE_SYSTEMD
    static uint64_t last_watchdog;
    uint64_t wd_usec = 0;
    if (now - last_watchdog >= 1000 && sd_watchdog_enabled(0, &wd_usec) > 0) {
        last_watchdog = now;
        sd_notify(0, "WATCHDOG=1");
    }
#endif
    (void)loop;
    (void)timer_id;
    return 0;
}

/* ---- admin and signals ------------------------------------------------ */

static int
s_on_admin(zloop_t *loop, zmq_pollitem_t *pi, void *arg)
{
    brk_server_t *srv = arg;
    for (int i = 0; i < 64; i++) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, srv->admin, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            break;
        }
        zmq_msg_init(&body);
        bool have_body = zmq_msg_more(&rid) && zmq_msg_recv(&body, srv->admin, 0) >= 0;
        bool extra = have_body && zmq_msg_more(&body);
        while (extra) {
            zmq_msg_t junk;
            zmq_msg_init(&junk);
            int rc = zmq_msg_recv(&junk, srv->admin, 0);
            bool more = rc >= 0 && zmq_msg_more(&junk);
            zmq_msg_close(&junk);
            if (!more) {
                break;
            }
        }
        if (have_body) {
            msgpack_sbuffer_clear(&srv->sbuf);
            if (extra) {
                /* PROTO-R1: one frame per message; run nothing of it. */
                brk_admin_refuse(srv, DXB_EPROTO, "admin request of more than one frame");
            } else {
                brk_admin_handle(srv, zmq_msg_data(&body), zmq_msg_size(&body));
            }
            int e;
            s_send_to(srv, srv->admin, zmq_msg_data(&rid), zmq_msg_size(&rid), &e);
        }
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
    (void)loop;
    (void)pi;
    return 0;
}

static int
s_on_signal(zloop_t *loop, zmq_pollitem_t *pi, void *arg)
{
    brk_server_t *srv = arg;
    struct signalfd_siginfo si;
    if (read(srv->sigfd, &si, sizeof(si)) != (ssize_t)sizeof(si)) {
        return 0;
    }
    if (si.ssi_signo == SIGHUP) {
        brk_server_reload(srv);
        return 0;
    }
    dxb_log_notice("BRK-STOP", "stopping on signal %u", si.ssi_signo);
    (void)loop;
    (void)pi;
    return -1; /* ends zloop_start; every commit already finished */
}

/* ---- registry reload (SIGHUP) ----------------------------------------- */

void
brk_server_reload(brk_server_t *srv)
{
    brk_cfg_t next;
    char *errors = NULL;
    s_notify("RELOADING=1");
    if (brk_cfg_load(srv->cfg_path, &next, &errors) != DXB_OK) {
        dxb_log_error("BRK-RELOADFAIL", "config reload refused, keeping the old registry: %s",
                      errors ? errors : "");
        free(errors);
        s_notify("READY=1");
        return;
    }
    size_t removed = 0, added = 0, changed = 0;
    brk_sess_t **sess = calloc(next.n_nodes ? next.n_nodes : 1, sizeof(*sess));
    if (sess == NULL) {
        brk_cfg_free(&next);
        return;
    }
    for (size_t i = 0; i < next.n_nodes; i++) {
        brk_sess_t *old = brk_server_find(srv, next.nodes[i].id);
        if (old != NULL && memcmp(old->cfg.sign_pk, next.nodes[i].sign_pk, 32) == 0) {
            old->cfg = next.nodes[i]; /* region/level/clearance may change */
            sess[i] = old;
            continue;
        }
        sess[i] = calloc(1, sizeof(**sess));
        if (sess[i] == NULL) {
            continue;
        }
        sess[i]->cfg = next.nodes[i];
        if (old != NULL) {
            changed++;
        } else {
            added++;
        }
    }
    /* Sessions not carried over (removed, or key changed) are cut off. */
    for (size_t j = 0; j < srv->n_sess; j++) {
        bool kept = false;
        for (size_t i = 0; i < next.n_nodes; i++) {
            kept = kept || sess[i] == srv->sess[j];
        }
        if (!kept) {
            brk_sess_t *s = srv->sess[j];
            if (s->connected) {
                msgpack_sbuffer_clear(&srv->sbuf);
                if (dxb_msg_enc_error(&srv->sbuf, DXB_W_EAUTH, NULL, "key revoked") == DXB_OK) {
                    s_send_sess(srv, s);
                }
                s_sess_offline(srv, s, "key-revoked");
            }
            s_audit_now(srv, "operator", "revoke", s->cfg.id, "ok", "registry reload");
            removed++;
            s_sess_free(&s);
        }
    }
    removed -= changed < removed ? changed : removed;
    free(srv->sess);
    srv->sess = sess;
    srv->n_sess = next.n_nodes;
    free(srv->cfg.nodes);
    srv->cfg.nodes = next.nodes;
    srv->cfg.n_nodes = next.n_nodes;
    s_rebuild_index(srv);
    dxb_log_notice("BRK-RELOAD", "registry reloaded nodes=%zu added=%zu removed=%zu changed=%zu",
                   srv->n_sess, added, removed, changed);
    char detail[128];
    snprintf(detail, sizeof(detail), "nodes=%zu added=%zu removed=%zu changed=%zu", srv->n_sess,
             added, removed, changed);
    s_audit_now(srv, "operator", "reload", "registry", "ok", detail);
    for (size_t i = 0; i < srv->n_sess; i++) {
        if (srv->sess[i]->connected) {
            s_send_directory(srv, srv->sess[i]);
        }
    }
    s_notify("READY=1");
}

/* ---- life cycle ------------------------------------------------------- */

static dxb_err_t
s_open_store(brk_server_t *srv)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/store", srv->cfg.data_dir);
    dxb_store_opts_t o = {.dir = dir,
                          .map_size_bytes = srv->cfg.map_size_bytes,
                          .durable = srv->cfg.durable,
                          .max_dbs = 32};
    dxb_err_t err = dxb_store_open(&srv->store, &o);
    if (!err) {
        err = brk_queue_open(&srv->queue, srv->store);
    }
    if (!err) {
        err = brk_gov_open(&srv->gov, srv);
    }
    MDB_dbi gdbi = 0;
    if (!err) {
        err = dxb_store_dbi(srv->store, "gstat", 0, &gdbi);
    }
    if (!err) {
        err = brk_gstat_open(&srv->gstat, gdbi);
    }
    return err;
}

static dxb_err_t
s_bind_admin(brk_server_t *srv)
{
    srv->admin = zmq_socket(srv->ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(srv->admin, ZMQ_LINGER, &linger, sizeof(linger));
    int64_t maxmsg = 1 << 20;
    zmq_setsockopt(srv->admin, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    const char *ep = srv->cfg.admin_endpoint;
    bool ipc = strncmp(ep, "ipc://", 6) == 0;
    if (!ipc) {
        dxb_log_error("BRK-ADMIN", "admin_endpoint must be ipc:// (file permissions guard it) "
                                   "endpoint=%s", ep);
        return DXB_ECONFIG;
    }
    unlink(ep + 6); /* a stale socket file of a killed broker; the store lock proves we own it */
    mode_t old = umask(0177);
    int rc = zmq_bind(srv->admin, ep);
    umask(old);
    if (rc != 0) {
        dxb_log_error("BRK-BIND", "cannot bind admin endpoint=%s err=%s", ep, zmq_strerror(errno));
        return DXB_EIO;
    }
    chmod(ep + 6, 0600);
    return DXB_OK;
}

static dxb_err_t
s_bind(brk_server_t *srv)
{
    srv->ctx = zmq_ctx_new();
    srv->zap = zmq_socket(srv->ctx, ZMQ_REP);
    if (zmq_bind(srv->zap, "inproc://zeromq.zap.01") != 0) {
        dxb_log_error("BRK-BIND", "cannot bind ZAP handler err=%s", zmq_strerror(errno));
        return DXB_EIO;
    }
    srv->router = zmq_socket(srv->ctx, ZMQ_ROUTER);
    int one = 1, linger = 0;
    int64_t maxmsg = (int64_t)srv->cfg.max_frame_bytes;
    int hwm = 100000;
    zmq_setsockopt(srv->router, ZMQ_CURVE_SERVER, &one, sizeof(one));
    zmq_setsockopt(srv->router, ZMQ_CURVE_SECRETKEY, srv->keys.box_sk, 32);
    zmq_setsockopt(srv->router, ZMQ_ZAP_DOMAIN, "dxb", 3);
    zmq_setsockopt(srv->router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one)); /* PROTO-R3 */
    zmq_setsockopt(srv->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)); /* PROTO-R2 */
    zmq_setsockopt(srv->router, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(srv->router, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(srv->router, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    if (zmq_bind(srv->router, srv->cfg.endpoint) != 0) {
        dxb_log_error("BRK-BIND", "cannot bind endpoint=%s err=%s", srv->cfg.endpoint,
                      zmq_strerror(errno));
        return DXB_EIO;
    }
    if (zmq_socket_monitor(srv->router, "inproc://dxb-broker-monitor",
                           ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) == 0) {
        srv->mon = zmq_socket(srv->ctx, ZMQ_PAIR);
        if (srv->mon != NULL && zmq_connect(srv->mon, "inproc://dxb-broker-monitor") != 0) {
            zmq_close(srv->mon);
            srv->mon = NULL;
        }
    }
    return s_bind_admin(srv);
}

dxb_err_t
brk_server_new(brk_server_t **out, brk_cfg_t *cfg, const char *cfg_path, int sigfd)
{
    brk_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        return DXB_ENOMEM;
    }
    srv->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    dxb_strlcpy(srv->cfg_path, cfg_path, sizeof(srv->cfg_path));
    srv->sigfd = sigfd;
    srv->stats.started_wall_ms = dxb_now_ms();
    srv->stats.started_mono_ms = dxb_mono_ms();
    msgpack_sbuffer_init(&srv->sbuf);
    srv->by_key = zhashx_new();
    char errbuf[512];
    dxb_err_t err = dxb_keys_load_secret(srv->cfg.key_path, &srv->keys, errbuf, sizeof(errbuf));
    if (err) {
        dxb_log_error("BRK-KEY", "cannot load broker key: %s", errbuf);
        goto out_fail;
    }
    err = s_sessions_from_cfg(srv);
    if (!err) {
        err = s_open_store(srv);
    }
    if (!err) {
        err = s_bind(srv);
    }
    if (err) {
        goto out_fail;
    }
    *out = srv;
    return DXB_OK;
out_fail:
    brk_server_destroy(&srv);
    return err;
}

dxb_err_t
brk_server_run(brk_server_t *srv)
{
    srv->loop = zloop_new();
    zmq_pollitem_t items[5] = {
        {.socket = srv->router, .events = ZMQ_POLLIN},
        {.socket = srv->zap, .events = ZMQ_POLLIN},
        {.socket = srv->admin, .events = ZMQ_POLLIN},
        {.fd = srv->sigfd, .events = ZMQ_POLLIN},
        {.socket = srv->mon, .events = ZMQ_POLLIN},
    };
    zloop_poller(srv->loop, &items[0], s_on_router, srv);
    zloop_poller(srv->loop, &items[1], s_on_zap, srv);
    zloop_poller(srv->loop, &items[2], s_on_admin, srv);
    zloop_poller(srv->loop, &items[3], s_on_signal, srv);
    if (srv->mon != NULL) {
        zloop_poller(srv->loop, &items[4], s_on_monitor, srv);
    }
    zloop_timer(srv->loop, HOUSEKEEPING_MS, 0, s_on_tick, srv);
    zloop_set_nonstop(srv->loop, true);
    s_audit_now(srv, "broker", "start", srv->cfg.id, "ok", srv->cfg.endpoint);
    char ready[128];
    snprintf(ready, sizeof(ready), "READY=1\nSTATUS=serving %zu nodes", srv->n_sess);
    s_notify(ready);
    dxb_log_notice("BRK-READY", "broker ready id=%s endpoint=%s admin=%s nodes=%zu sync=%s",
                   srv->cfg.id, srv->cfg.endpoint, srv->cfg.admin_endpoint, srv->n_sess,
                   srv->cfg.durable ? "durable" : "fast");
    zloop_start(srv->loop);
    s_notify("STOPPING=1");
    s_audit_now(srv, "broker", "stop", srv->cfg.id, "ok", "signal");
    brk_auditcp_flush(srv); /* sign the last records: a cut tail is then detected */
    return DXB_OK;
}

void
brk_server_destroy(brk_server_t **srv_p)
{
    if (srv_p == NULL || *srv_p == NULL) {
        return;
    }
    brk_server_t *srv = *srv_p;
    zloop_destroy(&srv->loop);
    if (srv->mon) {
        zmq_socket_monitor(srv->router, NULL, 0);
        zmq_close(srv->mon);
    }
    if (srv->router) {
        zmq_close(srv->router);
    }
    if (srv->zap) {
        zmq_close(srv->zap);
    }
    if (srv->admin) {
        if (strncmp(srv->cfg.admin_endpoint, "ipc://", 6) == 0) {
            unlink(srv->cfg.admin_endpoint + 6);
        }
        zmq_close(srv->admin);
    }
    if (srv->ctx) {
        zmq_ctx_term(srv->ctx);
    }
    brk_queue_destroy(&srv->queue);
    dxb_store_destroy(&srv->store);
    for (size_t i = 0; i < srv->n_sess; i++) {
        s_sess_free(&srv->sess[i]);
    }
    free(srv->sess);
    zhashx_destroy(&srv->by_key);
    msgpack_sbuffer_destroy(&srv->sbuf);
    dxb_keys_wipe(&srv->keys);
    brk_cfg_free(&srv->cfg);
    free(srv);
    *srv_p = NULL;
}
