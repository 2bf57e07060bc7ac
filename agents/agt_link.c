/* agt_link: the agent's session with the broker (PROTOCOL.md section 7).
 *
 * One CURVE DEALER, pinned to the broker's key. States: DOWN -> HELLO
 * (socket connecting, HELLO queued) -> UP (WELCOME received). Any silence
 * longer than link.timeout_ms, or an EAUTH error, closes the socket and a
 * new one is made after link.reconnect_ms: a fresh socket is the only way
 * to be sure no half-dead connection keeps frames (ZeroMQ loses in-flight
 * messages silently when a link drops, so every unacked envelope is resent
 * from the oldest after each new session and the broker de-duplicates).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "agents/agt_agent.h"
#include "common/dxb_log.h"
#include "common/dxb_util.h"

#define PUB_FRAME_MAX 256
#define PUB_FRAME_BYTES (4u << 20)
#define BACKOFF_MS 1000
#define PUBACK_SILENCE_MS 15000

static int s_on_dealer(zloop_t *loop, zmq_pollitem_t *item, void *arg);
static int s_on_monitor(zloop_t *loop, zmq_pollitem_t *item, void *arg);

static bool
s_send(agt_t *a)
{
    if (a->dealer == NULL) {
        return false;
    }
    if (zmq_send(a->dealer, a->sbuf.data, a->sbuf.size, ZMQ_DONTWAIT) < 0) {
        return false; /* HWM or no peer: the outbox keeps everything */
    }
    return true;
}

void
agt_link_close(agt_t *a)
{
    if (a->dealer == NULL) {
        return;
    }
    zloop_poller_end(a->loop, &a->dealer_item);
    if (a->mon != NULL) {
        zloop_poller_end(a->loop, &a->mon_item);
        zmq_socket_monitor(a->dealer, NULL, 0);
        zmq_close(a->mon);
        a->mon = NULL;
    }
    zmq_close(a->dealer);
    a->dealer = NULL;
    if (a->link == AGT_LINK_UP) {
        dxb_log_notice("AGT-LINKDOWN", "broker session closed broker=%s", a->cfg.broker);
    }
    a->link = AGT_LINK_DOWN;
    a->reconnect_at = dxb_mono_ms() + a->cfg.reconnect_ms;
    a->pub_cursor = 0;
    a->pub_inflight = 0;
}

static void
s_connect(agt_t *a)
{
    a->dealer = zmq_socket(a->ctx, ZMQ_DEALER);
    int linger = 0, ivl = (int)a->cfg.reconnect_ms;
    int hwm = 10000;
    int64_t maxmsg = (int64_t)DXB_MAX_FRAME_BYTES_HARD;
    zmq_setsockopt(a->dealer, ZMQ_CURVE_SERVERKEY, a->broker_box_pk, 32);
    zmq_setsockopt(a->dealer, ZMQ_CURVE_PUBLICKEY, a->keys.box_pk, 32);
    zmq_setsockopt(a->dealer, ZMQ_CURVE_SECRETKEY, a->keys.box_sk, 32);
    zmq_setsockopt(a->dealer, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(a->dealer, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl));
    zmq_setsockopt(a->dealer, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(a->dealer, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(a->dealer, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    if (zmq_connect(a->dealer, a->cfg.broker) != 0) {
        dxb_log_error("AGT-CONNECT", "cannot connect broker=%s err=%s", a->cfg.broker,
                      zmq_strerror(errno));
        zmq_close(a->dealer);
        a->dealer = NULL;
        a->reconnect_at = dxb_mono_ms() + a->cfg.reconnect_ms;
        return;
    }
    a->dealer_item = (zmq_pollitem_t){.socket = a->dealer, .events = ZMQ_POLLIN};
    zloop_poller(a->loop, &a->dealer_item, s_on_dealer, a);
    /* ZeroMQ reconnects a dropped TCP connection by itself and says nothing:
     * frames in flight are lost and the broker sees a new peer. Watching for
     * the disconnect lets the agent start a clean session at once instead of
     * waiting for answers that will never come. */
    static unsigned mon_seq;
    char mon_ep[64];
    snprintf(mon_ep, sizeof(mon_ep), "inproc://agt-mon-%u", mon_seq++);
    if (zmq_socket_monitor(a->dealer, mon_ep, ZMQ_EVENT_DISCONNECTED) == 0) {
        a->mon = zmq_socket(a->ctx, ZMQ_PAIR);
        if (a->mon != NULL && zmq_connect(a->mon, mon_ep) == 0) {
            a->mon_item = (zmq_pollitem_t){.socket = a->mon, .events = ZMQ_POLLIN};
            zloop_poller(a->loop, &a->mon_item, s_on_monitor, a);
        } else if (a->mon != NULL) {
            zmq_close(a->mon);
            a->mon = NULL;
        }
    }
    a->link = AGT_LINK_HELLO;
    a->last_rx_mono = dxb_mono_ms();
    msgpack_sbuffer_clear(&a->sbuf);
    if (dxb_msg_enc_hello(&a->sbuf, a->cfg.id, "dxb-agent/0.1.0", a->cfg.window,
                          a->cfg.heartbeat_ms) == DXB_OK) {
        s_send(a);
    }
}

/* ---- publishing ------------------------------------------------------- */

void
agt_link_pump(agt_t *a)
{
    uint64_t now = dxb_mono_ms();
    agt_xfer_produce(a); /* keeps each transfer's next chunks sealed in the outbox */
    if (a->link != AGT_LINK_UP || now < a->backoff_until) {
        return;
    }
    static dxb_bytes_t envs[PUB_FRAME_MAX];
    uint32_t frame_cap = a->pub_frame_cap ? a->pub_frame_cap : PUB_FRAME_MAX;
    while (a->pub_inflight < a->cfg.publish_window) {
        MDB_txn *txn = NULL;
        if (dxb_store_begin(a->store, false, &txn) != DXB_OK) {
            return;
        }
        MDB_cursor *cur = NULL;
        mdb_cursor_open(txn, a->out, &cur);
        uint8_t key[8];
        dxb_be64_put(key, a->pub_cursor);
        MDB_val k = {8, key}, v;
        size_t n = 0, bytes = 0;
        uint64_t last = 0;
        uint32_t room = a->cfg.publish_window - a->pub_inflight;
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && n < room &&
                                                                  n < frame_cap;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (n > 0 && bytes + v.mv_size > PUB_FRAME_BYTES) {
                break;
            }
            envs[n].ptr = v.mv_data;
            envs[n].len = v.mv_size;
            bytes += v.mv_size;
            last = dxb_be64_get(k.mv_data);
            n++;
        }
        bool sent = false;
        if (n > 0) {
            msgpack_sbuffer_clear(&a->sbuf);
            sent = dxb_msg_enc_envs(&a->sbuf, DXB_T_PUBLISH, envs, n) == DXB_OK && s_send(a);
        }
        mdb_cursor_close(cur);
        dxb_store_abort(&txn);
        if (!sent) {
            return;
        }
        if (a->pub_inflight == 0) {
            a->last_puback_mono = now;
        }
        a->pub_inflight += (uint32_t)n;
        a->pub_cursor = last + 1;
        a->stats.sent += n;
    }
}

static bool
s_retryable(uint16_t code)
{
    return code == DXB_W_EFULL || code == DXB_W_EAGAIN || code == DXB_W_EIO ||
           code == DXB_W_EINTERNAL;
}

static void
s_on_puback(agt_t *a, dxb_iter_t it)
{
    MDB_txn *txn = NULL;
    dxb_err_t err = dxb_store_begin(a->store, true, &txn);
    if (err) {
        return;
    }
    dxb_result_t r;
    bool backoff = false;
    uint16_t backoff_code = 0;
    a->last_puback_mono = dxb_mono_ms();
    while (!err && dxb_msg_next_result(&it, &r)) {
        a->pub_inflight = a->pub_inflight > 0 ? a->pub_inflight - 1 : 0;
        char idhex[33];
        dxb_hex_encode(r.msg_id, 16, idhex);
        if (r.code == DXB_W_OK) {
            err = agt_store_outbox_del(a, txn, r.msg_id, 0);
            if (err == DXB_OK) {
                a->stats.acked++;
                err = dxb_audit_append(&a->audit, txn, a->cfg.id, "sent", "broker", "ok",
                                       "msg_id=%s", idhex);
            }
        } else if (s_retryable(r.code)) {
            backoff = true;
            backoff_code = r.code;
        } else {
            a->stats.refused++;
            dxb_log_error("AGT-REFUSED",
                          "broker refused a message; kept in the local dead-letter table "
                          "msg_id=%s code=%s",
                          idhex, dxb_wire_err_name(r.code));
            err = agt_store_outbox_del(a, txn, r.msg_id, r.code);
            if (err == DXB_OK) {
                err = dxb_audit_append(&a->audit, txn, a->cfg.id, "sent", "broker",
                                       dxb_wire_err_name(r.code), "msg_id=%s", idhex);
            }
        }
        if (err == DXB_ENOTFOUND) {
            err = DXB_OK; /* a duplicate answer for an entry already removed */
        }
    }
    if (!err) {
        err = agt_store_commit(a, &txn);
    }
    dxb_store_abort(&txn);
    dxb_audit_settle(&a->audit, err == DXB_OK);
    uint32_t cap = a->pub_frame_cap ? a->pub_frame_cap : PUB_FRAME_MAX;
    if (backoff && backoff_code == DXB_W_EFULL) {
        /* A frame bigger than the broker's free space would be refused
         * forever: send smaller frames until space comes back. */
        a->pub_frame_cap = cap > 4 ? cap / 4 : 1;
    } else if (!backoff && cap < PUB_FRAME_MAX) {
        a->pub_frame_cap = cap * 2 > PUB_FRAME_MAX ? PUB_FRAME_MAX : cap * 2;
    }
    if (backoff) {
        /* The broker kept nothing of those: resend everything unacked, in
         * order, after a pause (back-pressure; PROTOCOL 7.2.4). */
        dxb_log_warn("AGT-BACKOFF", "broker asked to retry later code=%s outbox=%llu",
                     dxb_wire_err_name(backoff_code),
                     (unsigned long long)agt_store_outbox_count(a));
        a->backoff_until = dxb_mono_ms() + BACKOFF_MS;
        a->pub_cursor = 0;
        a->pub_inflight = 0;
    }
}

/* ---- directory -------------------------------------------------------- */

static void
s_on_directory(agt_t *a, dxb_iter_t it)
{
    agt_peer_t *peers = calloc(it.left + 1, sizeof(*peers));
    if (peers == NULL) {
        return;
    }
    size_t n = 0;
    dxb_nodeinfo_t ni;
    while (dxb_msg_next_nodeinfo(&it, &ni)) {
        bool pinned_ok = true;
        for (size_t i = 0; i < a->cfg.n_peers; i++) {
            if (strcmp(a->cfg.peers[i].id, ni.node) == 0 &&
                memcmp(a->cfg.peers[i].sign_pk, ni.sign_pk, 32) != 0) {
                pinned_ok = false;
            }
        }
        uint8_t derived[32];
        if (!pinned_ok || dxb_keys_box_from_sign(ni.sign_pk, derived) != DXB_OK ||
            memcmp(derived, ni.box_pk, 32) != 0) {
            dxb_log_error("AGT-PINMISMATCH",
                          "broker directory key for a node disagrees with its pinned or derived "
                          "key; entry ignored node=%s",
                          ni.node);
            continue;
        }
        agt_peer_t *p = &peers[n++];
        dxb_strlcpy(p->id, ni.node, sizeof(p->id));
        dxb_strlcpy(p->region, ni.region, sizeof(p->region));
        p->level = ni.level;
        p->clearance = ni.clearance;
        memcpy(p->sign_pk, ni.sign_pk, 32);
        memcpy(p->box_pk, ni.box_pk, 32);
    }
    free(a->peers);
    a->peers = peers;
    a->n_peers = n;
    agt_store_save_directory(a);
    dxb_log_info("AGT-DIRECTORY", "node directory received nodes=%zu", n);
}

/* ---- frames from the broker ------------------------------------------- */

static void
s_on_deliver(agt_t *a, dxb_iter_t envs)
{
    static dxb_result_t results[DXB_MAX_BATCH];
    size_t n = 0;
    agt_spool_deliver(a, envs, results, &n);
    if (n == 0) {
        return;
    }
    msgpack_sbuffer_clear(&a->sbuf);
    if (dxb_msg_enc_results(&a->sbuf, DXB_T_DACK, results, n) == DXB_OK) {
        s_send(a);
    }
    agt_api_push(a);
}

static void
s_on_error(agt_t *a, const dxb_frame_t *f)
{
    int len = (int)(f->u.error.text.len > 200 ? 200 : f->u.error.text.len);
    dxb_log_warn("AGT-BROKERERR", "broker error code=%s text=%.*s",
                 dxb_wire_err_name(f->u.error.code), len, (const char *)f->u.error.text.ptr);
    if (f->u.error.code == DXB_W_EAUTH || f->u.error.code == DXB_W_ESPOOF) {
        agt_link_close(a); /* no session (broker restart) or revoked: start over */
    }
}

static void
s_on_frame(agt_t *a, const uint8_t *data, size_t len)
{
    dxb_frame_t f;
    char detail[160];
    dxb_err_t err = dxb_msg_decode(data, len, DXB_MAX_FRAME_BYTES_HARD, &f, detail,
                                   sizeof(detail));
    if (err) {
        dxb_log_warn("AGT-BADFRAME", "malformed frame from broker err=%s detail=%s",
                     dxb_err_name(err), detail);
        return;
    }
    switch (f.type) {
    case DXB_T_WELCOME:
        if (strcmp(f.u.welcome.node, a->cfg.id) == 0) {
            a->link = AGT_LINK_UP;
            a->pub_cursor = 0;
            a->pub_inflight = 0;
            a->backoff_until = 0;
            dxb_log_notice("AGT-LINKUP", "broker session established broker=%s epoch=%llu",
                           f.u.welcome.broker, (unsigned long long)f.u.welcome.epoch);
            agt_gov_send_catalog(a);
        }
        break;
    case DXB_T_GOV_STATE:
        agt_gov_on_state(a, f.u.gov_state.what, f.u.gov_state.rows);
        break;
    case DXB_T_GOV_REP:
        agt_gov_on_rep(a, &f);
        break;
    case DXB_T_DIRECTORY:
        s_on_directory(a, f.u.directory.nodes);
        break;
    case DXB_T_PUBACK:
        s_on_puback(a, f.u.results.results);
        break;
    case DXB_T_DELIVER:
        if (a->link == AGT_LINK_UP) {
            s_on_deliver(a, f.u.envs.envs);
        }
        break;
    case DXB_T_ERROR:
        s_on_error(a, &f);
        break;
    case DXB_T_PING:
        msgpack_sbuffer_clear(&a->sbuf);
        if (dxb_msg_enc_ping(&a->sbuf, DXB_T_PONG, f.u.ping.t_ms) == DXB_OK) {
            s_send(a);
        }
        break;
    default:
        break; /* PONG and others only count as liveness */
    }
}

static int
s_on_dealer(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    agt_t *a = arg;
    for (int i = 0; i < 64 && a->dealer != NULL; i++) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, a->dealer, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            break;
        }
        a->last_rx_mono = dxb_mono_ms();
        bool more = zmq_msg_more(&msg);
        if (!more) {
            s_on_frame(a, zmq_msg_data(&msg), zmq_msg_size(&msg));
        }
        zmq_msg_close(&msg);
        while (more && a->dealer != NULL) {
            zmq_msg_t junk;
            zmq_msg_init(&junk);
            zmq_msg_recv(&junk, a->dealer, 0);
            more = zmq_msg_more(&junk);
            zmq_msg_close(&junk);
        }
    }
    agt_link_pump(a);
    (void)loop;
    (void)item;
    return 0;
}

static int
s_on_monitor(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    agt_t *a = arg;
    bool lost = false;
    while (a->mon != NULL) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, a->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            break;
        }
        if (zmq_msg_size(&ev) >= 2) {
            uint16_t id;
            memcpy(&id, zmq_msg_data(&ev), 2);
            lost = lost || id == ZMQ_EVENT_DISCONNECTED;
        }
        bool more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        if (more) {
            zmq_msg_init(&addr);
            zmq_msg_recv(&addr, a->mon, 0);
            zmq_msg_close(&addr);
        }
    }
    if (lost && a->link != AGT_LINK_DOWN) {
        dxb_log_notice("AGT-LINKDOWN", "connection to the broker lost broker=%s; new session",
                       a->cfg.broker);
        agt_link_close(a);
        a->reconnect_at = dxb_mono_ms(); /* at once: the broker may well be there */
    }
    (void)loop;
    (void)item;
    return 0;
}

void
agt_link_tick(agt_t *a)
{
    uint64_t now = dxb_mono_ms();
    if (a->link == AGT_LINK_DOWN) {
        if (now >= a->reconnect_at) {
            s_connect(a);
        }
        return;
    }
    if (now - a->last_rx_mono > a->cfg.timeout_ms) {
        if (a->link == AGT_LINK_UP || !a->link_logged_down) {
            dxb_log_notice("AGT-LINKDOWN", "no answer from broker within %u ms, reconnecting",
                           a->cfg.timeout_ms);
            a->link_logged_down = true;
        }
        a->link = a->link == AGT_LINK_UP ? AGT_LINK_HELLO : a->link;
        agt_link_close(a);
        return;
    }
    a->link_logged_down = false;
    if (now - a->last_ping_mono >= a->cfg.heartbeat_ms) {
        a->last_ping_mono = now;
        msgpack_sbuffer_clear(&a->sbuf);
        if (a->link == AGT_LINK_UP && dxb_msg_enc_ping(&a->sbuf, DXB_T_PING, now) == DXB_OK) {
            s_send(a);
        }
    }
    if (a->link == AGT_LINK_UP && a->pub_inflight > 0 &&
        now - a->last_puback_mono > PUBACK_SILENCE_MS) {
        /* Answers went missing on a live link: resend from the oldest. */
        a->pub_cursor = 0;
        a->pub_inflight = 0;
    }
    agt_link_pump(a);
}
