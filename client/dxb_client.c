/* dxb_client: the application side of the local API (PROTOCOL.md section 9).
 *
 * One DEALER socket to the agent's ROUTER. Everything the agent sends comes
 * in on that socket in one stream: API_RESULT frames answering requests
 * (publish, subscribe) and API_MESSAGE frames pushed after a subscribe. What
 * arrives while the client waits for something else is parked:
 *
 * - Results go to a table of CLIENT_MAX_INFLIGHT slots indexed by
 *   req % CLIENT_MAX_INFLIGHT. Request ids are handed out in sequence and a new
 *   request needs its slot free, so at most CLIENT_MAX_INFLIGHT requests are
 *   open and the result of every open request has its place: none is lost.
 *   Results of pipelined publishes also enter a FIFO of request ids in arrival
 *   order, which dxb_client_wait_result() pops.
 * - Messages go to a FIFO bounded by CLIENT_MAX_QUEUED messages and
 *   CLIENT_MAX_QUEUED_BYTES of payload. A message that does not fit is
 *   dropped: it was not acknowledged, so the agent sends it again on the next
 *   subscribe.
 *
 * - While dxb_client_publish_stream runs, every result for the stream's
 *   request id (one per BEGIN, DATA and END frame, in order) is counted in
 *   the client's stream state instead of a slot; the first refusal is kept.
 *   The stream sends DATA only while fewer than CLIENT_STREAM_WINDOW are
 *   unanswered: that is the flow control that bounds memory on both sides.
 *
 * The library is self-contained (codec, error names, util; libsodium for the
 * stream's BLAKE2b); it never touches keys or stores. Thread context: one
 * thread per client.
 */
#include "client/dxb_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/dxb_util.h"
#include "proto/dxb_msg.h"

/* Requests (publish, subscribe) open at the same time. */
#define CLIENT_MAX_INFLIGHT 1024
/* Received messages parked while the application waits for a result. */
#define CLIENT_MAX_QUEUED 4096
#define CLIENT_MAX_QUEUED_BYTES ((size_t)256 * 1024 * 1024)
/* Largest frame either way; the agent's own limit (limits.max_frame_bytes)
 * has the same default. */
#define CLIENT_MAX_FRAME_BYTES ((size_t)64 * 1024 * 1024)
/* Room left in a publish frame for everything but the payload. */
#define CLIENT_FRAME_OVERHEAD ((size_t)64 * 1024)
/* How long an ack may wait for room in the socket's send queue. */
#define CLIENT_ACK_SEND_MS 1000
/* How long unsent frames may hold up dxb_client_destroy(). */
#define CLIENT_LINGER_MS 200
/* Stream data per API_STREAM_DATA frame, and frames sent but unanswered. */
#define CLIENT_STREAM_CHUNK ((size_t)1024 * 1024)
#define CLIENT_STREAM_WINDOW 4
/* How long the frame that abandons a failed stream may wait to be sent. */
#define CLIENT_ABANDON_SEND_MS 1000

typedef enum {
    CLIENT_SLOT_FREE = 0, /* no request uses the slot (or its caller gave up) */
    CLIENT_SLOT_SENT,     /* request sent; no result yet */
    CLIENT_SLOT_DONE,     /* result arrived; not yet handed to the application */
} client_slot_state_t;

/* One open request and, once it arrived, its result. */
typedef struct {
    uint32_t req;    /* request id; meaningful unless FREE */
    uint8_t state;   /* client_slot_state_t */
    bool pipelined;  /* opened by publish_async: its result goes to the FIFO */
    uint16_t code;   /* wire code; DONE only */
    bool has_msg_id; /* the result carried a 16-byte message id */
    uint8_t msg_id[DXB_MSGID_BYTES];
    char *text; /* owned: the agent's text of a failed request, or NULL */
} client_slot_t;

/* One parked message. */
typedef struct client_queued {
    struct client_queued *next; /* owned: the next younger message, or NULL */
    dxb_client_msg_t msg;       /* data owned */
} client_queued_t;

struct dxb_client {
    void *ctx;            /* owned zmq context */
    void *sock;           /* owned DEALER, connected to the agent */
    msgpack_sbuffer sbuf; /* scratch for encoding one frame; empty between calls */
    uint32_t last_req;    /* last request id handed out; 0 is never used */
    client_slot_t slots[CLIENT_MAX_INFLIGHT];
    uint32_t done_fifo[CLIENT_MAX_INFLIGHT]; /* req ids of DONE pipelined slots, oldest first */
    size_t done_head;                        /* index of the oldest in done_fifo */
    size_t done_count;                       /* entries in done_fifo */
    size_t n_pipelined;    /* pipelined slots SENT or DONE: what wait_result may return */
    client_queued_t *head; /* owned FIFO of parked messages: oldest */
    client_queued_t *tail; /* borrowed: youngest, NULL when empty */
    size_t n_queued;       /* messages parked, <= CLIENT_MAX_QUEUED */
    size_t queued_bytes;   /* payload bytes parked, <= CLIENT_MAX_QUEUED_BYTES */
    char last_error[DXB_MAX_TEXT + 1]; /* "" when none */
    /* The stream dxb_client_publish_stream is sending, if any. */
    uint32_t stream_req;     /* its request id (its slot is held); 0 when none */
    uint32_t stream_answers; /* results that arrived for it and are not yet taken */
    uint16_t stream_code;    /* wire code of its first refusal; DXB_W_OK while none */
    bool stream_has_id;      /* the last OK result carried a 16-byte id (END) */
    uint8_t stream_id[DXB_MSGID_BYTES];
    char stream_text[DXB_MAX_TEXT + 1]; /* the agent's text of the first refusal */
};

/* ---- small helpers ---------------------------------------------------- */

static void s_set_error(dxb_client_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
s_set_error(dxb_client_t *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->last_error, sizeof(c->last_error), fmt, ap);
    va_end(ap);
}

/* Absolute deadline for a timeout; UINT64_MAX waits forever (timeout < 0). */
static uint64_t
s_deadline(int timeout_ms)
{
    if (timeout_ms < 0) {
        return UINT64_MAX;
    }
    return dxb_mono_ms() + (uint64_t)timeout_ms;
}

/* Waits until the socket is ready for events. Errors: DXB_ETIMEOUT, DXB_EIO. */
static dxb_err_t
s_wait(dxb_client_t *c, short events, uint64_t deadline_ms)
{
    for (;;) {
        zmq_pollitem_t item = {.socket = c->sock, .events = events};
        uint64_t now = dxb_mono_ms();
        long wait_ms = -1;
        int n;

        /* A deadline that has passed still polls once: "no wait" means
         * "only what is ready now". */
        if (deadline_ms != UINT64_MAX && now >= deadline_ms) {
            wait_ms = 0;
        } else if (deadline_ms != UINT64_MAX) {
            wait_ms = deadline_ms - now > LONG_MAX ? LONG_MAX : (long)(deadline_ms - now);
        }
        n = zmq_poll(&item, 1, wait_ms);
        if (n < 0 && zmq_errno() != EINTR) {
            s_set_error(c, "cannot poll the API socket: %s", zmq_strerror(zmq_errno()));
            return DXB_EIO;
        }
        if (n > 0 && (item.revents & events) != 0) {
            return DXB_OK;
        }
        if (deadline_ms != UINT64_MAX && dxb_mono_ms() >= deadline_ms) {
            return DXB_ETIMEOUT;
        }
    }
}

/* zmq's deallocator for frames handed over by s_send_frame (sbuffer memory
 * comes from malloc). */
static void
s_free_data(void *data, void *hint)
{
    free(data);
}

/* Sends the frame in c->sbuf, waiting at most until deadline_ms for room in
 * the send queue. The buffer moves into the zmq message (no copy of large
 * payloads); c->sbuf is empty afterwards either way.
 * Errors: DXB_EAGAIN (no room in time), DXB_ENOMEM, DXB_EIO. */
static dxb_err_t
s_send_frame(dxb_client_t *c, uint64_t deadline_ms)
{
    size_t size = c->sbuf.size;
    char *data = msgpack_sbuffer_release(&c->sbuf);
    zmq_msg_t msg;
    dxb_err_t rc = s_wait(c, ZMQ_POLLOUT, deadline_ms);

    if (rc == DXB_ETIMEOUT) {
        s_set_error(c, "the agent does not take requests (send queue full)");
        free(data);
        return DXB_EAGAIN;
    }
    if (rc != DXB_OK) {
        free(data);
        return rc;
    }
    if (zmq_msg_init_data(&msg, data, size, s_free_data, NULL) != 0) {
        s_set_error(c, "cannot create a zmq message: %s", zmq_strerror(zmq_errno()));
        free(data);
        return DXB_ENOMEM;
    }
    if (zmq_msg_send(&msg, c->sock, ZMQ_DONTWAIT) < 0) {
        int err = zmq_errno();

        zmq_msg_close(&msg);
        s_set_error(c, "cannot send to the agent: %s", zmq_strerror(err));
        return err == EAGAIN ? DXB_EAGAIN : DXB_EIO;
    }
    return DXB_OK;
}

/* ---- request slots ---------------------------------------------------- */

static client_slot_t *
s_slot(dxb_client_t *c, uint32_t req)
{
    return &c->slots[req % CLIENT_MAX_INFLIGHT];
}

/* The next request id, without using it yet. Errors: DXB_EAGAIN when the
 * slot it needs still belongs to an open request. */
static dxb_err_t
s_next_req(dxb_client_t *c, uint32_t *req_out)
{
    uint32_t req = c->last_req + 1;

    /* 0 is never a request id, so that a zeroed slot matches no result. */
    if (req == 0) {
        req = 1;
    }
    if (s_slot(c, req)->state != CLIENT_SLOT_FREE) {
        s_set_error(c,
                    "%d requests are waiting for their results; collect some with "
                    "dxb_client_wait_result",
                    CLIENT_MAX_INFLIGHT);
        return DXB_EAGAIN;
    }
    *req_out = req;
    return DXB_OK;
}

/* Marks req as sent (after its frame went out). */
static void
s_open_slot(dxb_client_t *c, uint32_t req, bool pipelined)
{
    client_slot_t *slot = s_slot(c, req);

    memset(slot, 0, sizeof(*slot));
    slot->req = req;
    slot->state = CLIENT_SLOT_SENT;
    slot->pipelined = pipelined;
    c->last_req = req;
    if (pipelined) {
        c->n_pipelined++;
    }
}

static void
s_free_slot(dxb_client_t *c, client_slot_t *slot)
{
    if (slot->pipelined && slot->state != CLIENT_SLOT_FREE) {
        c->n_pipelined--;
    }
    free(slot->text);
    memset(slot, 0, sizeof(*slot));
}

/* Files one API_RESULT under its request. A result for no open request (late
 * answer after the caller gave up, or a confused agent) is dropped. */
/* Counts one result of the open stream; keeps the first refusal. */
static void
s_store_stream_result(dxb_client_t *c, const dxb_frame_t *f)
{
    const dxb_bytes_t *text = &f->u.api_result.text;

    c->stream_answers++;
    if (c->stream_code != DXB_W_OK) {
        return;
    }
    c->stream_code = f->u.api_result.code;
    c->stream_has_id = f->u.api_result.msg_id.len == DXB_MSGID_BYTES;
    if (c->stream_has_id) {
        memcpy(c->stream_id, f->u.api_result.msg_id.ptr, DXB_MSGID_BYTES);
    }
    if (c->stream_code != DXB_W_OK) {
        /* The codec bounds text to DXB_MAX_TEXT bytes. */
        memcpy(c->stream_text, text->ptr, text->len);
        c->stream_text[text->len] = '\0';
    }
}

static void
s_store_result(dxb_client_t *c, const dxb_frame_t *f)
{
    client_slot_t *slot = s_slot(c, f->u.api_result.req);
    const dxb_bytes_t *text = &f->u.api_result.text;

    if (c->stream_req != 0 && f->u.api_result.req == c->stream_req) {
        s_store_stream_result(c, f);
        return;
    }

    if (slot->state != CLIENT_SLOT_SENT || slot->req != f->u.api_result.req) {
        return;
    }
    slot->code = f->u.api_result.code;
    slot->has_msg_id = f->u.api_result.msg_id.len == DXB_MSGID_BYTES;
    if (slot->has_msg_id) {
        memcpy(slot->msg_id, f->u.api_result.msg_id.ptr, DXB_MSGID_BYTES);
    }
    if (slot->code != DXB_W_OK && text->len > 0) {
        /* Without memory the code still tells what happened. */
        slot->text = malloc(text->len + 1);
        if (slot->text != NULL) {
            memcpy(slot->text, text->ptr, text->len);
            slot->text[text->len] = '\0';
        }
    }
    slot->state = CLIENT_SLOT_DONE;
    if (slot->pipelined) {
        /* Cannot overflow: each DONE pipelined slot is in the FIFO once. */
        c->done_fifo[(c->done_head + c->done_count) % CLIENT_MAX_INFLIGHT] = slot->req;
        c->done_count++;
    }
}

/* Hands a DONE slot's result to the application and frees the slot. */
static dxb_err_t
s_take_result(dxb_client_t *c, client_slot_t *slot, uint32_t *req_out, uint8_t *msg_id_out)
{
    dxb_err_t rc = dxb_err_from_wire(slot->code);

    if (req_out != NULL) {
        *req_out = slot->req;
    }
    if (msg_id_out != NULL) {
        memset(msg_id_out, 0, DXB_MSGID_BYTES);
        if (slot->has_msg_id) {
            memcpy(msg_id_out, slot->msg_id, DXB_MSGID_BYTES);
        }
    }
    if (rc != DXB_OK) {
        s_set_error(c, "%s", slot->text != NULL ? slot->text : dxb_strerror(rc));
    }
    s_free_slot(c, slot);
    return rc;
}

/* ---- message queue ---------------------------------------------------- */

/* Parks one API_MESSAGE (copied out of the frame). */
static void
s_queue_message(dxb_client_t *c, const dxb_frame_t *f)
{
    size_t len = f->u.api_message.payload.len;
    client_queued_t *q;

    if (c->n_queued >= CLIENT_MAX_QUEUED || len > CLIENT_MAX_QUEUED_BYTES - c->queued_bytes) {
        return; /* not acked, so the agent sends it again on the next subscribe */
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        return;
    }
    /* malloc(0) may return NULL; one byte keeps "data != NULL" true. */
    q->msg.data = malloc(len > 0 ? len : 1);
    if (q->msg.data == NULL) {
        free(q);
        return;
    }
    if (len > 0) {
        memcpy(q->msg.data, f->u.api_message.payload.ptr, len);
    }
    q->msg.len = len;
    memcpy(q->msg.msg_id, f->u.api_message.msg_id, DXB_MSGID_BYTES);
    dxb_strlcpy(q->msg.sender, f->u.api_message.sender, sizeof(q->msg.sender));
    dxb_strlcpy(q->msg.dataset, f->u.api_message.dataset, sizeof(q->msg.dataset));
    q->msg.seq = f->u.api_message.seq;
    q->msg.created_ms = f->u.api_message.created_ms;
    /* The codec checked the name (1..200 bytes, a safe file name). */
    memcpy(q->msg.name, f->u.api_message.name.ptr, f->u.api_message.name.len);
    q->msg.name[f->u.api_message.name.len] = '\0';

    if (c->tail != NULL) {
        c->tail->next = q;
    } else {
        c->head = q;
    }
    c->tail = q;
    c->n_queued++;
    c->queued_bytes += len;
}

/* Moves the oldest parked message into *out; false when there is none. */
static bool
s_pop_message(dxb_client_t *c, dxb_client_msg_t *out)
{
    client_queued_t *q = c->head;

    if (q == NULL) {
        return false;
    }
    c->head = q->next;
    if (c->head == NULL) {
        c->tail = NULL;
    }
    c->n_queued--;
    c->queued_bytes -= q->msg.len;
    *out = q->msg;
    free(q);
    return true;
}

/* ---- receiving -------------------------------------------------------- */

/* Decodes one frame from the agent and files it. Frames of other types and
 * frames that do not decode are dropped: the agent is local and trusted to
 * speak the protocol, and there is no one to report them to. */
static void
s_handle_frame(dxb_client_t *c, const uint8_t *buf, size_t len)
{
    dxb_frame_t f;

    if (dxb_msg_decode(buf, len, CLIENT_MAX_FRAME_BYTES, &f, NULL, 0) != DXB_OK) {
        return;
    }
    if (f.type == DXB_T_API_RESULT) {
        s_store_result(c, &f);
    } else if (f.type == DXB_T_API_MESSAGE) {
        s_queue_message(c, &f);
    }
}

/* Receives and files one ZeroMQ message. Errors: DXB_ETIMEOUT, DXB_EIO. */
static dxb_err_t
s_recv_one(dxb_client_t *c, uint64_t deadline_ms)
{
    zmq_msg_t msg;
    bool single;
    dxb_err_t rc = s_wait(c, ZMQ_POLLIN, deadline_ms);

    if (rc != DXB_OK) {
        return rc;
    }
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, c->sock, ZMQ_DONTWAIT) < 0) {
        rc = zmq_errno() == EAGAIN ? DXB_OK : DXB_EIO;
        if (rc != DXB_OK) {
            s_set_error(c, "cannot receive from the agent: %s", zmq_strerror(zmq_errno()));
        }
        goto out;
    }
    /* PROTO-R1: a message is one frame; drop all parts of any other. */
    single = !zmq_msg_more(&msg);
    if (single) {
        s_handle_frame(c, zmq_msg_data(&msg), zmq_msg_size(&msg));
    }
    while (zmq_msg_more(&msg) && zmq_msg_recv(&msg, c->sock, ZMQ_DONTWAIT) >= 0) {
        /* discard the remaining parts */
    }
out:
    zmq_msg_close(&msg);
    return rc;
}

/* Waits for the result of one request and takes it. On timeout the slot is
 * given up, so that a late answer is dropped instead of piling up. */
static dxb_err_t
s_wait_req(dxb_client_t *c, uint32_t req, uint64_t deadline_ms, int timeout_ms, uint8_t *msg_id_out)
{
    client_slot_t *slot = s_slot(c, req);

    for (;;) {
        dxb_err_t rc;

        if (slot->req == req && slot->state == CLIENT_SLOT_DONE) {
            return s_take_result(c, slot, NULL, msg_id_out);
        }
        rc = s_recv_one(c, deadline_ms);
        if (rc != DXB_OK) {
            if (rc == DXB_ETIMEOUT) {
                s_set_error(c, "no answer from the agent within %d ms (is dxb-agent running?)",
                            timeout_ms);
            }
            s_free_slot(c, slot);
            return rc;
        }
    }
}

/* ---- lifecycle -------------------------------------------------------- */

static dxb_err_t
s_socket_setup(dxb_client_t *c)
{
    int linger_ms = CLIENT_LINGER_MS;
    int64_t max_bytes = CLIENT_MAX_FRAME_BYTES;

    if (zmq_setsockopt(c->sock, ZMQ_LINGER, &linger_ms, sizeof(linger_ms)) != 0 ||
        zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &max_bytes, sizeof(max_bytes)) != 0) {
        return DXB_EIO;
    }
    return DXB_OK;
}

dxb_err_t
dxb_client_connect(const char *endpoint, dxb_client_t **out)
{
    dxb_client_t *c = NULL;
    dxb_err_t rc = DXB_EINVAL;

    if (endpoint == NULL || endpoint[0] == '\0' || out == NULL) {
        goto out;
    }
    rc = DXB_ENOMEM;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        goto out;
    }
    msgpack_sbuffer_init(&c->sbuf);
    rc = DXB_EIO;
    c->ctx = zmq_ctx_new();
    if (c->ctx == NULL) {
        goto out;
    }
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (c->sock == NULL) {
        goto out;
    }
    rc = s_socket_setup(c);
    if (rc != DXB_OK) {
        goto out;
    }
    if (zmq_connect(c->sock, endpoint) != 0) {
        rc = zmq_errno() == EINVAL || zmq_errno() == EPROTONOSUPPORT ? DXB_EINVAL : DXB_EIO;
        goto out;
    }
    *out = c;
    c = NULL;
    rc = DXB_OK;
out:
    dxb_client_destroy(&c);
    return rc;
}

void
dxb_client_destroy(dxb_client_t **c_p)
{
    dxb_client_t *c = c_p != NULL ? *c_p : NULL;
    dxb_client_msg_t m;

    if (c == NULL) {
        return;
    }
    *c_p = NULL;
    if (c->sock != NULL) {
        zmq_close(c->sock);
    }
    if (c->ctx != NULL) {
        zmq_ctx_term(c->ctx);
    }
    while (s_pop_message(c, &m)) {
        dxb_client_msg_free(&m);
    }
    for (size_t i = 0; i < CLIENT_MAX_INFLIGHT; i++) {
        free(c->slots[i].text);
    }
    msgpack_sbuffer_destroy(&c->sbuf);
    free(c);
}

/* ---- publishing ------------------------------------------------------- */

/* Encodes and sends one API_PUBLISH as request req. */
static dxb_err_t
s_send_publish(dxb_client_t *c, const dxb_client_pub_t *p, uint32_t req, uint64_t deadline_ms)
{
    dxb_bytes_t name;
    dxb_bytes_t payload;
    dxb_err_t rc;

    if (p == NULL || p->dataset == NULL || p->recipients == NULL || p->n_recipients == 0 ||
        p->name == NULL || (p->data == NULL && p->len > 0)) {
        s_set_error(c, "publish needs a dataset, 1..%d recipients, a name and data",
                    DXB_MAX_RECIPIENTS);
        return DXB_EINVAL;
    }
    if (p->len > CLIENT_MAX_FRAME_BYTES - CLIENT_FRAME_OVERHEAD) {
        s_set_error(c, "payload of %zu bytes is over the API frame limit", p->len);
        return DXB_ETOOBIG;
    }
    name.ptr = (const uint8_t *)p->name;
    name.len = strlen(p->name);
    payload.ptr = p->data;
    payload.len = p->len;
    rc = dxb_msg_enc_api_publish(&c->sbuf, req, p->dataset, p->recipients, p->n_recipients, name,
                                 payload, p->ttl_s);
    if (rc != DXB_OK) {
        msgpack_sbuffer_clear(&c->sbuf);
        s_set_error(c, "invalid publish of '%s' to dataset '%s': %s", p->name, p->dataset,
                    dxb_strerror(rc));
        return rc;
    }
    return s_send_frame(c, deadline_ms);
}

dxb_err_t
dxb_client_publish_async(dxb_client_t *c, const dxb_client_pub_t *p, uint32_t *req_out)
{
    uint32_t req = 0;
    dxb_err_t rc = s_next_req(c, &req);

    if (rc != DXB_OK) {
        return rc;
    }
    /* Never block: a full send queue is the caller's signal to collect results. */
    rc = s_send_publish(c, p, req, dxb_mono_ms());
    if (rc != DXB_OK) {
        return rc;
    }
    s_open_slot(c, req, true);
    if (req_out != NULL) {
        *req_out = req;
    }
    return DXB_OK;
}

dxb_err_t
dxb_client_wait_result(dxb_client_t *c, int timeout_ms, uint32_t *req_out, uint8_t *msg_id_out)
{
    uint64_t deadline_ms = s_deadline(timeout_ms);
    uint32_t req;

    if (c->n_pipelined == 0) {
        s_set_error(c, "no publish is waiting for its result");
        return DXB_EINVAL;
    }
    while (c->done_count == 0) {
        dxb_err_t rc = s_recv_one(c, deadline_ms);

        if (rc == DXB_ETIMEOUT) {
            s_set_error(c, "no result from the agent within %d ms", timeout_ms);
        }
        if (rc != DXB_OK) {
            return rc;
        }
    }
    req = c->done_fifo[c->done_head];
    c->done_head = (c->done_head + 1) % CLIENT_MAX_INFLIGHT;
    c->done_count--;
    return s_take_result(c, s_slot(c, req), req_out, msg_id_out);
}

dxb_err_t
dxb_client_publish(dxb_client_t *c, const dxb_client_pub_t *p, uint8_t *msg_id_out, int timeout_ms)
{
    uint64_t deadline_ms = s_deadline(timeout_ms);
    uint32_t req = 0;
    dxb_err_t rc = s_next_req(c, &req);

    if (rc != DXB_OK) {
        return rc;
    }
    rc = s_send_publish(c, p, req, deadline_ms);
    if (rc != DXB_OK) {
        return rc;
    }
    s_open_slot(c, req, false);
    return s_wait_req(c, req, deadline_ms, timeout_ms, msg_id_out);
}

dxb_err_t
dxb_client_publish_file(dxb_client_t *c, const char *dataset, const char *const *recipients,
                        uint16_t n_recipients, const char *path, uint8_t *msg_id_out,
                        int timeout_ms)
{
    dxb_client_pub_t p = {
        .dataset = dataset, .recipients = recipients, .n_recipients = n_recipients};
    uint8_t *data = NULL;
    size_t len = 0;
    const char *slash = path != NULL ? strrchr(path, '/') : NULL;
    dxb_err_t rc;

    if (path == NULL) {
        s_set_error(c, "publish_file needs a path");
        return DXB_EINVAL;
    }
    p.name = slash != NULL ? slash + 1 : path;
    rc = dxb_read_file(path, CLIENT_MAX_FRAME_BYTES - CLIENT_FRAME_OVERHEAD, &data, &len);
    if (rc != DXB_OK) {
        s_set_error(c, "cannot read '%s': %s", path, dxb_strerror(rc));
        goto out;
    }
    p.data = data;
    p.len = len;
    rc = dxb_client_publish(c, &p, msg_id_out, timeout_ms);
out:
    free(data);
    return rc;
}

/* ---- streams ---------------------------------------------------------- */

/* Waits for the next result of the open stream and takes it. Returns the
 * stream's first refusal (the agent's text in last_error) or DXB_OK.
 * Errors: also DXB_ETIMEOUT, DXB_EIO. */
static dxb_err_t
s_stream_wait(dxb_client_t *c, int timeout_ms)
{
    uint64_t deadline_ms = s_deadline(timeout_ms);

    while (c->stream_answers == 0) {
        dxb_err_t rc = s_recv_one(c, deadline_ms);

        if (rc == DXB_ETIMEOUT) {
            s_set_error(c, "no answer from the agent within %d ms (is dxb-agent running?)",
                        timeout_ms);
        }
        if (rc != DXB_OK) {
            return rc;
        }
    }
    c->stream_answers--;
    if (c->stream_code != DXB_W_OK) {
        dxb_err_t rc = dxb_err_from_wire(c->stream_code);

        s_set_error(c, "%s", c->stream_text[0] != '\0' ? c->stream_text : dxb_strerror(rc));
        return rc;
    }
    return DXB_OK;
}

/* Sends one frame of the stream (already encoded in c->sbuf, or rc says why
 * not). Errors: the encoder's, and s_send_frame's. */
static dxb_err_t
s_stream_send(dxb_client_t *c, dxb_err_t rc, int timeout_ms)
{
    if (rc != DXB_OK) {
        msgpack_sbuffer_clear(&c->sbuf);
        s_set_error(c, "cannot encode a stream frame: %s", dxb_strerror(rc));
        return rc;
    }
    return s_send_frame(c, s_deadline(timeout_ms));
}

/* Ends a stream that cannot be finished with an END whose hash cannot match,
 * so that the agent drops what it received now rather than when the stream
 * times out. Best effort: its answer is not awaited. */
static void
s_stream_abandon(dxb_client_t *c, crypto_generichash_state *h)
{
    uint8_t hash[DXB_HASH_BYTES];
    char saved[sizeof(c->last_error)];

    crypto_generichash_final(h, hash, sizeof(hash));
    hash[0] ^= 0xff;
    memcpy(saved, c->last_error, sizeof(saved)); /* the caller's error stays */
    if (dxb_msg_enc_api_stream_end(&c->sbuf, c->stream_req, hash) == DXB_OK) {
        (void)s_send_frame(c, s_deadline(CLIENT_ABANDON_SEND_MS));
    }
    msgpack_sbuffer_clear(&c->sbuf);
    memcpy(c->last_error, saved, sizeof(saved));
}

/* Reads the next piece of the source into buf: 1..cap bytes.
 * Errors: DXB_EIO (read error, or more than asked), DXB_EINTEGRITY (the
 * source ended early). */
static dxb_err_t
s_stream_read(dxb_client_t *c, dxb_client_read_fn read_fn, void *arg, uint8_t *buf, size_t cap,
              uint64_t sent, uint64_t size, size_t *len_out)
{
    long n = read_fn(arg, buf, cap);

    if (n < 0 || (unsigned long)n > cap) {
        s_set_error(c, "the stream's source failed after %llu of %llu bytes",
                    (unsigned long long)sent, (unsigned long long)size);
        return DXB_EIO;
    }
    if (n == 0) {
        s_set_error(c, "the stream's source ended after %llu of the %llu bytes declared",
                    (unsigned long long)sent, (unsigned long long)size);
        return DXB_EINTEGRITY;
    }
    *len_out = (size_t)n;
    return DXB_OK;
}

/* Sends every DATA frame of the stream, at most CLIENT_STREAM_WINDOW
 * unanswered, and waits for all their answers. buf holds CLIENT_STREAM_CHUNK
 * bytes. */
static dxb_err_t
s_stream_data(dxb_client_t *c, uint64_t size, dxb_client_read_fn read_fn, void *arg, uint8_t *buf,
              crypto_generichash_state *h, int timeout_ms)
{
    uint64_t sent = 0;
    unsigned unanswered = 0;
    dxb_err_t rc = DXB_OK;

    while (rc == DXB_OK && (sent < size || unanswered > 0)) {
        if (sent < size && unanswered < CLIENT_STREAM_WINDOW) {
            uint64_t left = size - sent;
            size_t want = left < CLIENT_STREAM_CHUNK ? (size_t)left : CLIENT_STREAM_CHUNK;
            dxb_bytes_t piece = {buf, 0};

            rc = s_stream_read(c, read_fn, arg, buf, want, sent, size, &piece.len);
            if (rc != DXB_OK) {
                break;
            }
            crypto_generichash_update(h, buf, piece.len);
            rc = s_stream_send(
                c, dxb_msg_enc_api_stream_data(&c->sbuf, c->stream_req, sent, piece), timeout_ms);
            sent += piece.len;
            unanswered++;
            continue;
        }
        rc = s_stream_wait(c, timeout_ms);
        unanswered--;
    }
    if (rc == DXB_OK) {
        /* Exactly size bytes: a source with more (a file that grew) would
         * otherwise arrive cut short without anyone noticing. */
        uint8_t probe;
        long n = read_fn(arg, &probe, 1);

        if (n != 0) {
            s_set_error(c, n > 0 ? "the stream's source has more than the %llu bytes declared"
                                 : "the stream's source failed at its end (%llu bytes)",
                        (unsigned long long)size);
            rc = n > 0 ? DXB_EINTEGRITY : DXB_EIO;
        }
    }
    return rc;
}

dxb_err_t
dxb_client_publish_stream(dxb_client_t *c, const char *dataset, const char *const *recipients,
                          size_t n, const char *name, uint64_t size, uint32_t ttl_s,
                          dxb_client_read_fn read_fn, void *arg, uint8_t *xfer_id_out,
                          int timeout_ms)
{
    crypto_generichash_state h;
    uint8_t hash[DXB_HASH_BYTES];
    dxb_bytes_t name_bytes;
    uint8_t *buf = NULL;
    uint32_t req = 0;
    bool begun = false; /* the agent may hold a stream for req */
    dxb_err_t rc;

    if (dataset == NULL || recipients == NULL || n == 0 || n > DXB_MAX_RECIPIENTS || name == NULL ||
        read_fn == NULL) {
        s_set_error(c, "a stream needs a dataset, 1..%d recipients, a name and a source",
                    DXB_MAX_RECIPIENTS);
        return DXB_EINVAL;
    }
    if (!dxb_filename_safe(name, strlen(name))) {
        s_set_error(c,
                    "unsafe file name '%s' (1-200 bytes, no '/' or control bytes, not "
                    "starting with '.')",
                    name);
        return DXB_EINVAL;
    }
    name_bytes.ptr = (const uint8_t *)name;
    name_bytes.len = strlen(name);
    if (sodium_init() < 0) {
        s_set_error(c, "libsodium failed to initialise");
        return DXB_EINTERNAL;
    }
    rc = s_next_req(c, &req);
    if (rc != DXB_OK) {
        return rc;
    }
    buf = malloc(CLIENT_STREAM_CHUNK);
    if (buf == NULL) {
        s_set_error(c, "no memory for the stream buffer");
        return DXB_ENOMEM;
    }
    crypto_generichash_init(&h, NULL, 0, sizeof(hash));
    c->stream_answers = 0;
    c->stream_code = DXB_W_OK;
    c->stream_has_id = false;
    c->stream_text[0] = '\0';
    rc = s_stream_send(c,
                       dxb_msg_enc_api_stream_begin(&c->sbuf, req, dataset, recipients,
                                                    (uint16_t)n, name_bytes, size, ttl_s),
                       timeout_ms);
    if (rc != DXB_OK) {
        goto out_free;
    }
    /* From here on every result for req is the stream's (s_store_result). */
    s_open_slot(c, req, false);
    c->stream_req = req;
    begun = true; /* unless refused: a BEGIN that timed out may still open it */
    rc = s_stream_wait(c, timeout_ms);
    if (rc != DXB_OK) {
        goto out_close;
    }
    rc = s_stream_data(c, size, read_fn, arg, buf, &h, timeout_ms);
    if (rc != DXB_OK) {
        goto out_close;
    }
    crypto_generichash_final(&h, hash, sizeof(hash));
    begun = false; /* END answered or not, the agent no longer holds the stream */
    rc = s_stream_send(c, dxb_msg_enc_api_stream_end(&c->sbuf, req, hash), timeout_ms);
    if (rc == DXB_OK) {
        rc = s_stream_wait(c, timeout_ms);
    }
    if (rc == DXB_OK && !c->stream_has_id) {
        s_set_error(c, "the agent accepted the stream without a transfer id");
        rc = DXB_EINTERNAL;
    }
    if (rc == DXB_OK && xfer_id_out != NULL) {
        memcpy(xfer_id_out, c->stream_id, DXB_MSGID_BYTES);
    }
out_close:
    /* A refusal (of BEGIN or DATA) means the agent holds no stream; anything
     * local (source, timeout) leaves one there. */
    if (begun && c->stream_code == DXB_W_OK) {
        s_stream_abandon(c, &h);
    }
    s_free_slot(c, s_slot(c, req));
    c->stream_req = 0;
out_free:
    sodium_memzero(&h, sizeof(h));
    free(buf);
    return rc;
}

/* Source for dxb_client_publish_stream_file: a file descriptor. */
static long
s_read_fd(void *arg, uint8_t *buf, size_t cap)
{
    int fd = *(const int *)arg;

    for (;;) {
        ssize_t n = read(fd, buf, cap);

        if (n >= 0 || errno != EINTR) {
            return (long)n;
        }
    }
}

dxb_err_t
dxb_client_publish_stream_file(dxb_client_t *c, const char *dataset,
                               const char *const *recipients, size_t n, const char *path,
                               const char *name, uint32_t ttl_s, uint8_t *xfer_id_out,
                               int timeout_ms)
{
    const char *slash = path != NULL ? strrchr(path, '/') : NULL;
    struct stat st;
    dxb_err_t rc;
    int fd;

    if (path == NULL) {
        s_set_error(c, "publish_stream_file needs a path");
        return DXB_EINVAL;
    }
    if (name == NULL) {
        name = slash != NULL ? slash + 1 : path;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;

        s_set_error(c, "cannot open '%s': %s", path, strerror(err));
        return err == ENOENT ? DXB_ENOTFOUND : DXB_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        s_set_error(c, "'%s' is not a regular file", path);
        rc = DXB_EINVAL;
        goto out;
    }
    rc = dxb_client_publish_stream(c, dataset, recipients, n, name, (uint64_t)st.st_size, ttl_s,
                                   s_read_fd, &fd, xfer_id_out, timeout_ms);
out:
    close(fd);
    return rc;
}

/* ---- receiving messages ----------------------------------------------- */

dxb_err_t
dxb_client_subscribe(dxb_client_t *c, const char *dataset, int timeout_ms)
{
    uint64_t deadline_ms = s_deadline(timeout_ms);
    uint32_t req = 0;
    dxb_err_t rc = s_next_req(c, &req);

    if (rc != DXB_OK) {
        return rc;
    }
    rc = dxb_msg_enc_api_subscribe(&c->sbuf, req, dataset != NULL ? dataset : "");
    if (rc != DXB_OK) {
        msgpack_sbuffer_clear(&c->sbuf);
        s_set_error(c, "invalid dataset '%s'", dataset);
        return rc;
    }
    rc = s_send_frame(c, deadline_ms);
    if (rc != DXB_OK) {
        return rc;
    }
    s_open_slot(c, req, false);
    return s_wait_req(c, req, deadline_ms, timeout_ms, NULL);
}

dxb_err_t
dxb_client_recv(dxb_client_t *c, dxb_client_msg_t *out, int timeout_ms)
{
    uint64_t deadline_ms = s_deadline(timeout_ms);

    memset(out, 0, sizeof(*out));
    while (!s_pop_message(c, out)) {
        dxb_err_t rc = s_recv_one(c, deadline_ms);

        if (rc == DXB_ETIMEOUT) {
            s_set_error(c, "no message within %d ms", timeout_ms);
        }
        if (rc != DXB_OK) {
            return rc;
        }
    }
    return DXB_OK;
}

dxb_err_t
dxb_client_ack(dxb_client_t *c, const uint8_t msg_id[16])
{
    dxb_err_t rc = dxb_msg_enc_api_ack(&c->sbuf, msg_id);

    if (rc != DXB_OK) {
        msgpack_sbuffer_clear(&c->sbuf);
        s_set_error(c, "cannot encode the ack: %s", dxb_strerror(rc));
        return rc;
    }
    return s_send_frame(c, s_deadline(CLIENT_ACK_SEND_MS));
}

void
dxb_client_msg_free(dxb_client_msg_t *m)
{
    if (m == NULL) {
        return;
    }
    free(m->data);
    memset(m, 0, sizeof(*m));
}

const char *
dxb_client_last_error(const dxb_client_t *c)
{
    return c != NULL ? c->last_error : "";
}
