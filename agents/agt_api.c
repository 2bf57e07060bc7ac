/* agt_api: the local API socket for applications (PROTOCOL.md section 9).
 *
 * A ROUTER on an ipc:// path guarded by file permissions (0660). Publishes
 * drained in one pass are sealed and committed in one transaction (group
 * commit) and answered only after that commit (PROTO-R10). Messages for
 * datasets in inbound mode "api" wait in the LMDB API queue until an
 * application acknowledges them; they are pushed to subscribers in order.
 *
 * Streams (API_STREAM_BEGIN / DATA / END) carry a file of any size as a
 * chunked transfer (PROTOCOL.md 5.1). A stream is keyed by (routing id, req)
 * and owns a staging file (agt_xfer_stage_open); each DATA frame is written
 * at its offset and folded into a running BLAKE2b as soon as it is read, and
 * its buffer released, so memory holds one frame whatever the file size (the
 * application keeps at most 4 DATA frames unanswered). END checks size and
 * hash, moves the fsynced file into the transfer area and starts the transfer
 * in the drain's transaction; OK (with the transfer id) leaves only after
 * that commit, like a publish. At most API_MAX_STREAMS streams are open; one
 * idle for API_STREAM_IDLE_MS is dropped by the housekeeping tick (through
 * agt_api_push). The stream table is this module's state (s_streams), like
 * the drain buffer: one agent per process, main thread only.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
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
#define API_MAX_STREAMS 8
#define API_STREAM_IDLE_MS (10ull * 60 * 1000)
/* Write-back of a stream's staging file is started every this many bytes, so
 * that END's fsync has little left to do and does not stall the loop. */
#define API_STREAM_KICK_BYTES ((uint64_t)8 << 20)
#define API_PATH_CAP 4200
/* Room in a frame for everything but a publish payload or stream data. */
#define API_FRAME_OVERHEAD 65536

typedef struct {
    uint8_t rid[256];
    size_t rid_len;
    zmq_msg_t body; /* owned; released early for DATA frames */
    dxb_frame_t f;  /* borrows body */
    dxb_err_t err;
    uint32_t req;   /* the request id its answer carries */
    uint16_t code;
    bool no_msg_id; /* an OK answer without a message id (stream BEGIN, DATA) */
    bool staged;    /* END: the file is in xfer/out; remove it if the commit fails */
    bool relayed;   /* GOV_REQ: forwarded to the broker, which answers (agt_gov.c) */
    uint8_t msg_id[16];
    char text[160];
} agt_apireq_t;

/* One open stream. Unused slots have used == false and nothing else valid. */
typedef struct {
    bool used;
    uint8_t rid[256]; /* routing id of the application; with req, the key */
    size_t rid_len;
    uint32_t req;
    char dataset[DXB_ID_CAP];
    char rcpt[DXB_MAX_RECIPIENTS][DXB_ID_CAP]; /* n_rcpt ids, in the directory at BEGIN */
    size_t n_rcpt;
    char name[DXB_MAX_STREAM_NAME + 1]; /* a safe file name (PROTOCOL.md section 3) */
    uint64_t size;                      /* declared total bytes */
    uint64_t written;                   /* bytes written so far: the next DATA offset */
    uint64_t kicked;                    /* bytes whose write-back was started */
    uint32_t ttl_s;
    int fd;                             /* owned: the staging file, open for writing */
    char path[API_PATH_CAP];            /* the staging file */
    crypto_generichash_state h;         /* running BLAKE2b-256 of the bytes written */
    uint64_t last_mono;                 /* time of its last request (idle sweep) */
} agt_stream_t;

static agt_stream_t s_streams[API_MAX_STREAMS];

/* Largest frame the API takes: a publish of spool.max_file_bytes, or a
 * stream DATA frame. */
static size_t
s_max_frame(const agt_t *a)
{
    uint64_t body =
        a->cfg.max_file_bytes > DXB_MAX_STREAM_DATA ? a->cfg.max_file_bytes : DXB_MAX_STREAM_DATA;
    return (size_t)body + API_FRAME_OVERHEAD;
}

dxb_err_t
agt_api_bind(agt_t *a)
{
    a->api = zmq_socket(a->ctx, ZMQ_ROUTER);
    int linger = 0, one = 1;
    int64_t maxmsg = (int64_t)s_max_frame(a);
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

static void s_stream_drop_rid(const uint8_t *rid, size_t rid_len);

static void
s_reply(agt_t *a, const agt_apireq_t *r)
{
    msgpack_sbuffer_clear(&a->sbuf);
    if (dxb_msg_enc_api_result(&a->sbuf, r->req, r->code,
                               r->code == 0 && !r->no_msg_id ? r->msg_id : NULL,
                               r->text) != DXB_OK) {
        return;
    }
    if (zmq_send(a->api, r->rid, r->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 &&
        zmq_errno() == EHOSTUNREACH) {
        s_stream_drop_rid(r->rid, r->rid_len); /* the application went away */
        return;
    }
    zmq_send(a->api, a->sbuf.data, a->sbuf.size, ZMQ_DONTWAIT);
}

static void s_answer(agt_apireq_t *r, uint16_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets a request's answer: its wire code and text. */
static void
s_answer(agt_apireq_t *r, uint16_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
    va_end(ap);
    r->code = code;
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

/* ---- streams ---------------------------------------------------------- */

static agt_stream_t *
s_stream_find(const uint8_t *rid, size_t rid_len, uint32_t req)
{
    for (size_t i = 0; i < API_MAX_STREAMS; i++) {
        agt_stream_t *st = &s_streams[i];
        if (st->used && st->req == req && st->rid_len == rid_len &&
            memcmp(st->rid, rid, rid_len) == 0) {
            return st;
        }
    }
    return NULL;
}

/* Frees a slot. why != NULL: the stream is abandoned (its staging file goes,
 * and the log says why); NULL: its file was moved into the transfer area. */
static void
s_stream_close(agt_stream_t *st, const char *why)
{
    if (!st->used) {
        return;
    }
    if (st->fd >= 0) {
        close(st->fd);
    }
    if (why != NULL) {
        unlink(st->path);
        dxb_log_warn("AGT-STREAMABORT",
                     "API stream abandoned dataset=%s file=%s received=%llu size=%llu: %s",
                     st->dataset, st->name, (unsigned long long)st->written,
                     (unsigned long long)st->size, why);
    }
    memset(st, 0, sizeof(*st));
    st->fd = -1;
}

static void
s_stream_drop_rid(const uint8_t *rid, size_t rid_len)
{
    for (size_t i = 0; i < API_MAX_STREAMS; i++) {
        agt_stream_t *st = &s_streams[i];
        if (st->used && st->rid_len == rid_len && memcmp(st->rid, rid, rid_len) == 0) {
            s_stream_close(st, "the application went away");
        }
    }
}

/* Drops streams nobody has fed for API_STREAM_IDLE_MS. */
static void
s_stream_sweep(void)
{
    uint64_t now = dxb_mono_ms();
    for (size_t i = 0; i < API_MAX_STREAMS; i++) {
        agt_stream_t *st = &s_streams[i];
        if (st->used && now - st->last_mono > API_STREAM_IDLE_MS) {
            s_stream_close(st, "idle for more than 10 minutes");
        }
    }
}

/* Copies and checks BEGIN's recipients into st; false (answer set) when one
 * is not in the directory. */
static bool
s_stream_recipients(agt_t *a, agt_apireq_t *r, agt_stream_t *st)
{
    dxb_iter_t it;
    st->n_rcpt = 0;
    dxb_msg_recipients_begin(r->f.u.api_stream_begin.recipients,
                             r->f.u.api_stream_begin.n_recipients, &it);
    while (dxb_msg_next_recipient(&it, st->rcpt[st->n_rcpt])) {
        const char *id = st->rcpt[st->n_rcpt];
        if (agt_peer_find(a, id) == NULL) {
            s_answer(r, DXB_W_ENOROUTE, "unknown recipient '%s' (not in the directory)", id);
            return false;
        }
        /* agt_xfer_start refuses these too; saying so now spares the upload. */
        if (agt_gov_mask_grant(a, r->f.u.api_stream_begin.dataset, id) != NULL) {
            s_answer(r, DXB_W_EDENIED,
                     "a grant masks this dataset for '%s'; transfers are not masked yet", id);
            return false;
        }
        st->n_rcpt++;
    }
    return true;
}

static void
s_stream_begin(agt_t *a, agt_apireq_t *r)
{
    const dxb_bytes_t name = r->f.u.api_stream_begin.name;
    uint64_t size = r->f.u.api_stream_begin.size;
    agt_stream_t *st = NULL;
    r->no_msg_id = true;
    if (s_stream_find(r->rid, r->rid_len, r->req) != NULL) {
        s_answer(r, DXB_W_EINVAL, "request id %u already names an open stream", r->req);
        return;
    }
    if (!dxb_filename_safe((const char *)name.ptr, name.len)) {
        s_answer(r, DXB_W_EINVAL,
                 "unsafe file name (1-200 bytes, no '/' or control bytes, not starting with '.')");
        return;
    }
    if (size > a->cfg.xfer_max_bytes) {
        s_answer(r, DXB_W_ETOOBIG, "%llu bytes is over transfer.max_file_bytes (%llu)",
                 (unsigned long long)size, (unsigned long long)a->cfg.xfer_max_bytes);
        return;
    }
    for (size_t i = 0; i < API_MAX_STREAMS && st == NULL; i++) {
        st = s_streams[i].used ? NULL : &s_streams[i];
    }
    if (st == NULL) {
        s_answer(r, DXB_W_EAGAIN, "too many open streams (max %d); retry later", API_MAX_STREAMS);
        return;
    }
    if (!s_stream_recipients(a, r, st)) {
        return;
    }
    dxb_err_t err = agt_xfer_stage_open(a, st->path, sizeof(st->path), &st->fd);
    if (err) {
        s_answer(r, dxb_err_to_wire(err), "cannot create the staging file: %s", dxb_strerror(err));
        return;
    }
    st->used = true;
    memcpy(st->rid, r->rid, r->rid_len);
    st->rid_len = r->rid_len;
    st->req = r->req;
    dxb_strlcpy(st->dataset, r->f.u.api_stream_begin.dataset, sizeof(st->dataset));
    memcpy(st->name, name.ptr, name.len);
    st->name[name.len] = '\0';
    st->size = size;
    st->written = 0;
    st->kicked = 0;
    st->ttl_s = r->f.u.api_stream_begin.ttl_s;
    crypto_generichash_init(&st->h, NULL, 0, 32);
    st->last_mono = dxb_mono_ms();
    dxb_log_info("AGT-STREAMBEGIN", "API stream opened dataset=%s file=%s size=%llu", st->dataset,
                 st->name, (unsigned long long)size);
}

static void
s_stream_data(agt_apireq_t *r)
{
    uint64_t offset = r->f.u.api_stream_data.offset;
    dxb_bytes_t data = r->f.u.api_stream_data.data;
    agt_stream_t *st = s_stream_find(r->rid, r->rid_len, r->req);
    r->no_msg_id = true;
    if (st == NULL) {
        s_answer(r, DXB_W_EINVAL, "no open stream with request id %u", r->req);
        return;
    }
    st->last_mono = dxb_mono_ms();
    if (offset != st->written) {
        s_answer(r, DXB_W_EINVAL, "offset %llu out of order (expected %llu); stream aborted",
                 (unsigned long long)offset, (unsigned long long)st->written);
        s_stream_close(st, "offset out of order");
        return;
    }
    if (data.len > st->size - st->written) {
        s_answer(r, DXB_W_EINTEGRITY, "more data than the declared %llu bytes; stream aborted",
                 (unsigned long long)st->size);
        s_stream_close(st, "more data than declared");
        return;
    }
    dxb_err_t err = agt_xfer_stage_write(st->fd, data.ptr, data.len, offset);
    if (err) {
        s_answer(r, dxb_err_to_wire(err), "cannot write the stream: %s; stream aborted",
                 dxb_strerror(err));
        s_stream_close(st, "write failed");
        return;
    }
    crypto_generichash_update(&st->h, data.ptr, data.len);
    st->written += data.len;
    if (st->written - st->kicked >= API_STREAM_KICK_BYTES) {
        /* Only starts write-back (never waits): keeps dirty pages and END's
         * fsync small. Advisory, so its failure is not the stream's. */
        (void)sync_file_range(st->fd, (off_t)st->kicked, (off_t)(st->written - st->kicked),
                              SYNC_FILE_RANGE_WRITE);
        st->kicked = st->written;
    }
}

/* A DATA or END frame that did not decode (say, data over 4 MiB) leaves its
 * stream with a gap or no end: abandon it, like an offset out of order. */
static void
s_stream_malformed(const agt_apireq_t *r)
{
    agt_stream_t *st = NULL;
    if (r->f.type == DXB_T_API_STREAM_DATA || r->f.type == DXB_T_API_STREAM_END) {
        st = s_stream_find(r->rid, r->rid_len, r->req);
    }
    if (st != NULL) {
        s_stream_close(st, "malformed frame");
    }
}

/* END after the drain's transaction failed: the stream cannot be stored. */
static void
s_stream_end_failed(agt_apireq_t *r, dxb_err_t err)
{
    agt_stream_t *st = s_stream_find(r->rid, r->rid_len, r->req);
    if (st != NULL) {
        s_stream_close(st, "the agent's store failed");
    }
    s_answer(r, dxb_err_to_wire(err), "not stored: %s", dxb_strerror(err));
}

/* Checks and stores a finished stream as a transfer inside txn. Returns only
 * errors that spoil txn (the whole drain fails); the stream's own refusals
 * are its answer. */
static dxb_err_t
s_stream_end(agt_t *a, MDB_txn *txn, agt_apireq_t *r)
{
    agt_stream_t *st = s_stream_find(r->rid, r->rid_len, r->req);
    uint8_t hash[32];
    if (st == NULL) {
        s_answer(r, DXB_W_EINVAL, "no open stream with request id %u", r->req);
        return DXB_OK;
    }
    if (st->written != st->size) {
        s_answer(r, DXB_W_EINTEGRITY, "stream ended after %llu of %llu bytes; stream aborted",
                 (unsigned long long)st->written, (unsigned long long)st->size);
        s_stream_close(st, "ended short of the declared size");
        return DXB_OK;
    }
    crypto_generichash_final(&st->h, hash, sizeof(hash));
    if (sodium_memcmp(hash, r->f.u.api_stream_end.hash, sizeof(hash)) != 0) {
        s_answer(r, DXB_W_EINTEGRITY,
                 "BLAKE2b-256 of the data differs from API_STREAM_END's hash; stream aborted");
        s_stream_close(st, "hash mismatch");
        return DXB_OK;
    }
    dxb_err_t err = agt_xfer_stage_finish(a, st->path, st->fd, r->msg_id);
    if (err) {
        s_answer(r, dxb_err_to_wire(err), "cannot store the stream: %s; stream aborted",
                 dxb_strerror(err));
        s_stream_close(st, "could not be moved into the transfer area");
        return DXB_OK;
    }
    r->staged = true;
    agt_xfer_spec_t sp = {.dataset = st->dataset,
                          .recipients = st->rcpt,
                          .n_recipients = st->n_rcpt,
                          .ttl_s = st->ttl_s};
    err = agt_xfer_start(a, txn, &sp, st->name, st->size, r->msg_id);
    if (err == DXB_ENOROUTE || err == DXB_EDENIED) {
        /* Refused before anything was written (a recipient left the
         * directory, or a grant now masks the dataset): txn is untouched. */
        char src[API_PATH_CAP];
        agt_xfer_src_path(a, r->msg_id, src, sizeof(src));
        unlink(src);
        r->staged = false;
        s_answer(r, dxb_err_to_wire(err), "%s; stream aborted",
                 err == DXB_ENOROUTE ? "a recipient is no longer in the directory"
                                     : "a grant masks this dataset for a recipient");
        dxb_log_warn("AGT-STREAMABORT", "API stream abandoned dataset=%s file=%s: %s",
                     st->dataset, st->name, dxb_strerror(err));
        s_stream_close(st, NULL);
        return DXB_OK;
    }
    s_stream_close(st, NULL);
    if (!err) {
        a->stats.api_published++;
    }
    return err;
}

/* The request id of an API request frame. Every request type starts with
 * req, and the decoder reads it first, so a frame that failed to decode
 * still answers under the id it carried (0 when even that was bad). */
static uint32_t
s_req_of(const dxb_frame_t *f)
{
    switch (f->type) {
    case DXB_T_API_SUBSCRIBE:
        return f->u.api_subscribe.req;
    case DXB_T_API_STREAM_BEGIN:
        return f->u.api_stream_begin.req;
    case DXB_T_API_STREAM_DATA:
        return f->u.api_stream_data.req;
    case DXB_T_API_STREAM_END:
        return f->u.api_stream_end.req;
    case DXB_T_GOV_REQ:
        return f->u.gov_req.req;
    default:
        return f->u.api_publish.req;
    }
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
    r->err = dxb_msg_decode(zmq_msg_data(&r->body), zmq_msg_size(&r->body), s_max_frame(a),
                            &r->f, r->text, sizeof(r->text));
    r->req = s_req_of(&r->f);
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
            s_stream_malformed(r);
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
        case DXB_T_API_STREAM_BEGIN:
            s_stream_begin(a, r);
            break;
        case DXB_T_API_STREAM_DATA:
            s_stream_data(r);
            /* Written and hashed: the frame's memory goes now, not after the
             * drain, so a drain of DATA frames holds one at a time. */
            zmq_msg_close(&r->body);
            zmq_msg_init(&r->body);
            break;
        case DXB_T_API_STREAM_END:
            if (txn == NULL && !err) {
                err = dxb_store_begin(a->store, true, &txn);
            }
            if (!err) {
                err = s_stream_end(a, txn, r);
            } else {
                s_stream_end_failed(r, err);
            }
            break;
        case DXB_T_GOV_REQ:
            /* Governance as this node (PROTOCOL.md 10): the broker decides
             * and answers; agt_gov relays its GOV_REP to the application. */
            agt_gov_api_request(a, r->rid, r->rid_len, &r->f);
            r->relayed = true;
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
        bool answer = r->err || r->f.type != DXB_T_API_ACK || r->code != 0;
        if (r->f.type == DXB_T_API_PUBLISH && err && r->code == 0) {
            r->code = dxb_err_to_wire(err);
            snprintf(r->text, sizeof(r->text), "not stored: %s", dxb_strerror(err));
        }
        if (r->staged && err) {
            /* The record naming the file did not commit. */
            char src[API_PATH_CAP];
            agt_xfer_src_path(a, r->msg_id, src, sizeof(src));
            unlink(src);
            s_answer(r, dxb_err_to_wire(err), "not stored: %s", dxb_strerror(err));
        }
        if (answer && !r->relayed && !(r->f.type == DXB_T_API_ACK && !r->err)) {
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

/* Also the API's share of the housekeeping tick: idle streams go here. */
void
agt_api_push(agt_t *a)
{
    s_stream_sweep();
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
