/* dxb_client: the C client library applications use to talk to their local
 * dxb-agent over its API socket (PROTOCOL.md section 9).
 *
 * Link with `pkg-config --cflags --libs dxbclient`. One dxb_client_t per
 * thread (it owns one ZeroMQ DEALER socket). A publish is acknowledged only
 * after the agent committed the message to its durable outbox (PROTO-R10).
 *
 * Files of any size go as a stream (dxb_client_publish_stream and
 * dxb_client_publish_stream_file): 1 MiB frames, at most 4 unanswered, so
 * memory stays a few MiB on both sides; the agent sends the file as a chunked
 * transfer and answers with its transfer id once it holds it durably.
 *
 * Errors are dxb_err_t codes; dxb_client_last_error() gives the agent's text
 * for the last failure (borrowed, valid until the next call).
 */
#ifndef DXB_CLIENT_H
#define DXB_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/dxb_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dxb_client dxb_client_t;

/* What to publish. All pointers are borrowed for the duration of the call. */
typedef struct {
    const char *dataset;           /* dataset id, e.g. "hr.employees" */
    const char *const *recipients; /* node ids */
    uint16_t n_recipients;         /* 1..256 */
    const char *name;              /* file name shown to the recipient */
    const void *data;              /* payload bytes */
    size_t len;                    /* payload length */
    uint32_t ttl_s;                /* 0 = broker default */
} dxb_client_pub_t;

/* A received message. data is malloc'd and owned by the message; release
 * with dxb_client_msg_free(). */
typedef struct {
    uint8_t msg_id[16];
    char sender[65];
    char dataset[65];
    uint64_t seq;
    uint64_t created_ms;
    char name[201];
    uint8_t *data;
    size_t len;
} dxb_client_msg_t;

/* Connects to the agent's API endpoint (e.g. "ipc:///var/lib/dxb/api.sock").
 * *out is owned by the caller. Errors: DXB_EINVAL, DXB_EIO, DXB_ENOMEM. */
dxb_err_t dxb_client_connect(const char *endpoint, dxb_client_t **out) DXB_MUST_CHECK;
/* Closes the connection and frees the client; sets *c_p to NULL. NULL-safe. */
void dxb_client_destroy(dxb_client_t **c_p);

/* Publishes one message and waits until the agent committed it durably.
 * msg_id_out (16 bytes, may be NULL) receives the message id.
 * Errors: the agent's code (DXB_EINVAL, DXB_ETOOBIG, DXB_EFULL, ...), or
 * DXB_ETIMEOUT when no answer came within timeout_ms (-1 = forever). */
dxb_err_t dxb_client_publish(dxb_client_t *c, const dxb_client_pub_t *p, uint8_t *msg_id_out,
                             int timeout_ms) DXB_MUST_CHECK;
/* Reads the file at path (its base name becomes the message name) and publishes it. */
dxb_err_t dxb_client_publish_file(dxb_client_t *c, const char *dataset,
                                  const char *const *recipients, uint16_t n_recipients,
                                  const char *path, uint8_t *msg_id_out,
                                  int timeout_ms) DXB_MUST_CHECK;

/* Source of a stream: copies up to cap bytes into buf and returns how many
 * (1..cap), 0 at the end of the data, or < 0 on a read error. */
typedef long (*dxb_client_read_fn)(void *arg, uint8_t *buf, size_t cap);

/* Publishes `size` bytes read from read_fn(arg, ...) as one file called
 * name to dataset for n recipients (1..256), whatever the size, with memory
 * bounded by a few MiB (PROTOCOL.md section 9, API_STREAM_*). The data goes in 1 MiB
 * frames, at most 4 unanswered; a BLAKE2b-256 of everything read travels at
 * the end so that the agent can tell the stream arrived intact. Returns
 * DXB_OK only after the agent committed the transfer (record and manifest in
 * its LMDB, the data fsynced); xfer_id_out (16 bytes, may be NULL) then
 * receives the transfer id, which the recipient sees as the file's msg_id.
 * read_fn must deliver exactly size bytes and then 0; it must not call other
 * functions of c. ttl_s: 0 = broker default. timeout_ms bounds each wait
 * for one answer of the agent (-1 = forever), not the whole stream.
 * All pointers are borrowed for the duration of the call.
 * Errors: DXB_EINVAL (bad argument or file name, checked before anything is
 * sent; or the agent's), DXB_ENOROUTE (a recipient not in the agent's
 * directory), DXB_ETOOBIG (over the agent's transfer.max_file_bytes),
 * DXB_EAGAIN (the agent has too many streams open; retry later),
 * DXB_EINTEGRITY (read_fn gave fewer or more bytes than size, or the agent's
 * size/hash check failed), DXB_EIO (read_fn returned < 0, or the agent's storage
 * failed), DXB_EFULL, DXB_ENOMEM, DXB_ETIMEOUT (outcome unknown). On a failure
 * the agent keeps nothing of the stream: the library ends it with a frame the
 * agent must refuse, or the agent dropped it itself. */
dxb_err_t dxb_client_publish_stream(dxb_client_t *c, const char *dataset,
                                    const char *const *recipients, size_t n, const char *name,
                                    uint64_t size, uint32_t ttl_s, dxb_client_read_fn read_fn,
                                    void *arg, uint8_t *xfer_id_out,
                                    int timeout_ms) DXB_MUST_CHECK;
/* Streams the regular file at path with dxb_client_publish_stream; name
 * (NULL = the path's base name) is the file name the recipient sees. The
 * file must not change while it is sent (a file that grows or shrinks fails
 * with DXB_EINTEGRITY). Errors: as dxb_client_publish_stream, and
 * DXB_ENOTFOUND (no such file), DXB_EINVAL (not a regular file), DXB_EIO. */
dxb_err_t dxb_client_publish_stream_file(dxb_client_t *c, const char *dataset,
                                         const char *const *recipients, size_t n,
                                         const char *path, const char *name, uint32_t ttl_s,
                                         uint8_t *xfer_id_out, int timeout_ms) DXB_MUST_CHECK;

/* Pipelined publishing: send without waiting; *req_out names the request. */
dxb_err_t dxb_client_publish_async(dxb_client_t *c, const dxb_client_pub_t *p,
                                   uint32_t *req_out) DXB_MUST_CHECK;
/* Waits for the next publish result. Returns that publish's code; *req_out
 * and msg_id_out (may be NULL) tell which one. DXB_ETIMEOUT when none came. */
dxb_err_t dxb_client_wait_result(dxb_client_t *c, int timeout_ms, uint32_t *req_out,
                                 uint8_t *msg_id_out) DXB_MUST_CHECK;

/* Asks the agent to push messages of dataset ("" or NULL = every dataset
 * whose inbound mode is api). Waits for the agent's answer. */
dxb_err_t dxb_client_subscribe(dxb_client_t *c, const char *dataset,
                               int timeout_ms) DXB_MUST_CHECK;
/* Waits for the next message. DXB_ETIMEOUT when none came in timeout_ms. */
dxb_err_t dxb_client_recv(dxb_client_t *c, dxb_client_msg_t *out, int timeout_ms) DXB_MUST_CHECK;
/* Acknowledges a message: the agent forgets it. Until then it is sent again
 * on the next subscribe. */
dxb_err_t dxb_client_ack(dxb_client_t *c, const uint8_t msg_id[16]) DXB_MUST_CHECK;
/* Frees the data of a received message and zeroes the struct. */
void dxb_client_msg_free(dxb_client_msg_t *m);

/* Text of the last error reported by the agent ("" when none). */
const char *dxb_client_last_error(const dxb_client_t *c);

#ifdef __cplusplus
}
#endif

#endif
