/* agt_api: the local API socket for applications (PROTOCOL.md section 9).
 *
 * A ROUTER on an ipc:// path guarded by file permissions (0660). Publishes
 * drained in one pass are sealed and committed in one transaction (group
 * commit) and answered only after that commit (PROTO-R10). Messages for
 * datasets in inbound mode "api" wait in the LMDB API queue until an
 * application acknowledges them; they are pushed to subscribers in order.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "agents/agt_agent.h"
#include "common/dxb_log.h"
#include "common/dxb_util.h"

#define API_DRAIN_MAX 256
#define API_PUSH_WINDOW 256

typedef struct {
    uint8_t rid[256];
    size_t rid_len;
    zmq_msg_t body; /* owned */
    dxb_frame_t f;
    dxb_err_t err;
    uint16_t code;
    uint8_t msg_id[16];
    char text[160];
} agt_apireq_t;

dxb_err_t
agt_api_bind(agt_t *a)
{
    a->api = zmq_socket(a->ctx, ZMQ_ROUTER);
    int linger = 0, one = 1;
    int64_t maxmsg = (int64_t)a->cfg.max_file_bytes + 65536;
    zmq_setsockopt(a->api, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
    zmq_setsockopt(a->api, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(a->api, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    const char *ep = a->cfg.api_endpoint;
    if (strncmp(ep, "ipc://", 6) == 0) {
        unlink(ep + 6); /* stale socket of a killed agent; the store lock proves ownership */
    }
    mode_t old = umask(0117);
    int rc = zmq_bind(a->api, ep);
    umask(old);
    if (rc != 0) {
        dxb_log_error("AGT-BIND", "cannot bind API endpoint=%s err=%s", ep, zmq_strerror(errno));
        return DXB_EIO;
    }
    if (strncmp(ep, "ipc://", 6) == 0) {
        chmod(ep + 6, 0660);
    }
    return DXB_OK;
}

static void
s_reply(agt_t *a, const agt_apireq_t *r)
{
    msgpack_sbuffer_clear(&a->sbuf);
    if (dxb_msg_enc_api_result(&a->sbuf, r->f.u.api_publish.req, r->code,
                               r->code == 0 ? r->msg_id : NULL, r->text) != DXB_OK) {
        return;
    }
    zmq_send(a->api, r->rid, r->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(a->api, a->sbuf.data, a->sbuf.size, ZMQ_DONTWAIT);
}

/* Seals one API publish into txn; sets r->code and r->text. */
static dxb_err_t
s_publish(agt_t *a, MDB_txn *txn, agt_apireq_t *r)
{
    static char rcpt[DXB_MAX_RECIPIENTS][65];
    dxb_iter_t it;
    size_t n = 0;
    dxb_msg_recipients_begin(r->f.u.api_publish.recipients, r->f.u.api_publish.n_recipients,
                             &it);
    while (dxb_msg_next_recipient(&it, rcpt[n])) {
        if (agt_peer_find(a, rcpt[n]) == NULL) {
            r->code = DXB_W_ENOROUTE;
            snprintf(r->text, sizeof(r->text), "unknown recipient '%s' (not in the directory)",
                     rcpt[n]);
            return DXB_OK;
        }
        n++;
    }
    randombytes_buf(r->msg_id, 16);
    dxb_err_t err = agt_store_outbox_add(a, txn, r->msg_id, r->f.u.api_publish.dataset, rcpt, n,
                                         r->f.u.api_publish.name, r->f.u.api_publish.payload,
                                         r->f.u.api_publish.ttl_s);
    if (err) {
        return err;
    }
    a->stats.api_published++;
    return DXB_OK;
}

static void
s_subscribe(agt_t *a, agt_apireq_t *r)
{
    agt_sub_t *slot = NULL;
    for (int i = 0; i < AGT_MAX_SUBSCRIBERS; i++) {
        agt_sub_t *s = &a->subs[i];
        if (s->active && s->rid_len == r->rid_len && memcmp(s->rid, r->rid, r->rid_len) == 0) {
            slot = s;
        } else if (!s->active && slot == NULL) {
            slot = s;
        }
    }
    if (slot == NULL) {
        r->code = DXB_W_EAGAIN;
        snprintf(r->text, sizeof(r->text), "too many subscribers (max %d)", AGT_MAX_SUBSCRIBERS);
        return;
    }
    slot->active = true;
    memcpy(slot->rid, r->rid, r->rid_len);
    slot->rid_len = r->rid_len;
    dxb_strlcpy(slot->dataset, r->f.u.api_subscribe.dataset, sizeof(slot->dataset));
    /* Everything not yet acknowledged is offered again to a new subscriber. */
    a->api_cursor = 0;
    a->api_inflight = 0;
}

/* Forgets an acknowledged API message inside the drain's transaction: one
 * commit covers every ack of a drain (losing one in a crash only means the
 * message is offered again, which the API allows). */
static dxb_err_t
s_ack(agt_t *a, MDB_txn *txn, const uint8_t *msg_id)
{
    MDB_val ik = {16, (void *)msg_id}, iv;
    int rc = mdb_get(txn, a->apiid, &ik, &iv);
    if (rc == MDB_NOTFOUND || iv.mv_size != 8) {
        return DXB_OK; /* acknowledged twice, or unknown: nothing to do */
    }
    if (rc != 0) {
        return dxb_store_err(rc, "apiid get");
    }
    uint8_t key[8];
    memcpy(key, iv.mv_data, 8);
    MDB_val k = {8, key};
    rc = mdb_del(txn, a->apiq, &k, NULL);
    if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = mdb_del(txn, a->apiid, &ik, NULL);
    }
    a->api_inflight = a->api_inflight > 0 ? a->api_inflight - 1 : 0;
    return dxb_store_err(rc, "api ack");
}

static bool
s_recv(agt_t *a, agt_apireq_t *r)
{
    zmq_msg_t rid;
    zmq_msg_init(&rid);
    if (zmq_msg_recv(&rid, a->api, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&rid);
        return false;
    }
    memset(r, 0, sizeof(*r));
    r->rid_len = zmq_msg_size(&rid) < sizeof(r->rid) ? zmq_msg_size(&rid) : sizeof(r->rid);
    memcpy(r->rid, zmq_msg_data(&rid), r->rid_len);
    zmq_msg_close(&rid);
    zmq_msg_init(&r->body);
    if (zmq_msg_recv(&r->body, a->api, 0) < 0 || zmq_msg_more(&r->body)) {
        r->err = DXB_EPROTO;
        while (zmq_msg_more(&r->body)) {
            zmq_msg_close(&r->body);
            zmq_msg_init(&r->body);
            zmq_msg_recv(&r->body, a->api, 0);
        }
        return true;
    }
    r->err = dxb_msg_decode(zmq_msg_data(&r->body), zmq_msg_size(&r->body),
                            a->cfg.max_file_bytes + 65536, &r->f, r->text, sizeof(r->text));
    return true;
}

int
agt_api_on_readable(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    agt_t *a = arg;
    static agt_apireq_t reqs[API_DRAIN_MAX];
    size_t n = 0;
    MDB_txn *txn = NULL;
    dxb_err_t err = DXB_OK;
    while (n < API_DRAIN_MAX && s_recv(a, &reqs[n])) {
        agt_apireq_t *r = &reqs[n++];
        if (r->err) {
            r->code = dxb_err_to_wire(r->err);
            dxb_log_warn("AGT-APIBAD", "malformed API request err=%s detail=%s",
                         dxb_err_name(r->err), r->text);
            continue;
        }
        switch (r->f.type) {
        case DXB_T_API_PUBLISH:
            if (txn == NULL && !err) {
                err = dxb_store_begin(a->store, true, &txn);
            }
            if (!err) {
                err = s_publish(a, txn, r);
            }
            break;
        case DXB_T_API_SUBSCRIBE:
            s_subscribe(a, r);
            break;
        case DXB_T_API_ACK:
            if (txn == NULL && !err) {
                err = dxb_store_begin(a->store, true, &txn);
            }
            if (!err) {
                err = s_ack(a, txn, r->f.u.api_ack.msg_id);
            }
            break;
        default:
            r->code = DXB_W_ETYPE;
            snprintf(r->text, sizeof(r->text), "message type %u not accepted on the API",
                     r->f.type);
            break;
        }
    }
    if (txn != NULL && !err) {
        err = agt_store_commit(a, &txn);
    }
    dxb_store_abort(&txn);
    dxb_audit_settle(&a->audit, err == DXB_OK);
    for (size_t i = 0; i < n; i++) {
        agt_apireq_t *r = &reqs[i];
        bool answer = r->err || r->f.type == DXB_T_API_PUBLISH ||
                      r->f.type == DXB_T_API_SUBSCRIBE || r->code != 0;
        if (r->f.type == DXB_T_API_PUBLISH && err && r->code == 0) {
            r->code = dxb_err_to_wire(err);
            snprintf(r->text, sizeof(r->text), "not stored: %s", dxb_strerror(err));
        }
        if (answer && !(r->f.type == DXB_T_API_ACK && !r->err)) {
            s_reply(a, r);
        }
        zmq_msg_close(&r->body);
    }
    agt_link_pump(a);
    agt_api_push(a);
    (void)loop;
    (void)item;
    return 0;
}

static agt_sub_t *
s_sub_for(agt_t *a, const char *dataset)
{
    for (int i = 0; i < AGT_MAX_SUBSCRIBERS; i++) {
        agt_sub_t *s = &a->subs[i];
        if (s->active && (s->dataset[0] == 0 || strcmp(s->dataset, dataset) == 0)) {
            return s;
        }
    }
    return NULL;
}

void
agt_api_push(agt_t *a)
{
    bool any = false;
    for (int i = 0; i < AGT_MAX_SUBSCRIBERS; i++) {
        any = any || a->subs[i].active;
    }
    if (!any || a->api_inflight >= API_PUSH_WINDOW) {
        return;
    }
    MDB_txn *txn = NULL;
    if (dxb_store_begin(a->store, false, &txn) != DXB_OK) {
        return;
    }
    MDB_cursor *cur = NULL;
    mdb_cursor_open(txn, a->apiq, &cur);
    uint8_t key[8];
    dxb_be64_put(key, a->api_cursor);
    MDB_val k = {8, key}, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && a->api_inflight < API_PUSH_WINDOW; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        dxb_frame_t f;
        if (dxb_msg_decode(v.mv_data, v.mv_size, DXB_MAX_FRAME_BYTES_HARD, &f, NULL, 0) !=
                DXB_OK ||
            f.type != DXB_T_API_MESSAGE) {
            continue;
        }
        agt_sub_t *s = s_sub_for(a, f.u.api_message.dataset);
        uint64_t aseq = dxb_be64_get(k.mv_data);
        if (s == NULL) {
            continue;
        }
        if (zmq_send(a->api, s->rid, s->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
            zmq_send(a->api, v.mv_data, v.mv_size, ZMQ_DONTWAIT) < 0) {
            if (zmq_errno() == EHOSTUNREACH) {
                s->active = false; /* the application went away */
            }
            break;
        }
        a->api_cursor = aseq + 1;
        a->api_inflight++;
    }
    mdb_cursor_close(cur);
    dxb_store_abort(&txn);
}
