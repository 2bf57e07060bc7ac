/* dxb_msg: the C mirror of proto/PROTOCOL.md (version 1) and its codec.
 *
 * Decoding is zero-copy and allocation-free: every string and blob in a
 * decoded struct is a borrowed (pointer, length) view into the caller's frame
 * buffer, valid only while that buffer lives. Identifier fields (node ids,
 * dataset ids, region codes) are copied into fixed NUL-terminated arrays
 * because every consumer needs them as C strings.
 *
 * dxb_msg_decode() validates the WHOLE frame (PROTO-R5, R6) before it returns
 * DXB_OK; list-bearing frames are then walked with the dxb_msg_next_*()
 * iterators, which cannot fail on a frame that decoded OK.
 *
 * Encoding goes through msgpack-c's packer into a msgpack_sbuffer owned by the
 * caller (dxb_msg_enc_*). Thread context: none; all functions are reentrant.
 */
#ifndef DXB_MSG_H
#define DXB_MSG_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dxb_err.h"

#define DXB_PROTO_VERSION 1
#define DXB_MSGID_BYTES 16
#define DXB_HASH_BYTES 32
#define DXB_ID_CAP 65 /* 64 chars + NUL */
#define DXB_MAX_RECIPIENTS 256
#define DXB_MAX_BATCH 1024
#define DXB_MAX_DIRECTORY 4096
#define DXB_MAX_TEXT 512
#define DXB_MAX_FRAME_BYTES_HARD (256u * 1024u * 1024u)
#define DXB_MAX_DEPTH 8
#define DXB_MAX_ADMIN_ARGS 16
#define DXB_MAX_ADMIN_ARG 256
/* API_STREAM_DATA carries 1 .. DXB_MAX_STREAM_DATA bytes (PROTOCOL.md 9). */
#define DXB_MAX_STREAM_DATA (4u * 1024u * 1024u)
/* API_STREAM_BEGIN name: a str of at most this many bytes; the agent applies
 * the file name rule of section 3 itself (EINVAL, not EPROTO). */
#define DXB_MAX_STREAM_NAME 255
/* Governance (PROTOCOL.md section 10). */
#define DXB_MAX_GOV_ARGS 16
#define DXB_MAX_GOV_ARG 1024
#define DXB_MAX_CATALOG 1024
#define DXB_MAX_CAT_FIELDS 256
/* HEADER.flags bits defined in version 1: 0 CHUNK, 1 MANIFEST (dxb_xfer.h). */
#define DXB_HDR_FLAGS_KNOWN 0x3u

/* Message types (PROTOCOL.md sections 4, 8, 9). */
typedef enum {
    DXB_T_HELLO = 1,
    DXB_T_WELCOME = 2,
    DXB_T_PUBLISH = 3,
    DXB_T_PUBACK = 4,
    DXB_T_DELIVER = 5,
    DXB_T_DACK = 6,
    DXB_T_CREDIT = 7,
    DXB_T_PING = 8,
    DXB_T_PONG = 9,
    DXB_T_ERROR = 10,
    DXB_T_DIRECTORY = 11,
    DXB_T_BYE = 12,
    DXB_T_API_PUBLISH = 40,
    DXB_T_API_RESULT = 41,
    DXB_T_API_SUBSCRIBE = 42,
    DXB_T_API_MESSAGE = 43,
    DXB_T_API_ACK = 44,
    DXB_T_API_STREAM_BEGIN = 45,
    DXB_T_API_STREAM_DATA = 46,
    DXB_T_API_STREAM_END = 47,
    DXB_T_GOV_REQ = 50,
    DXB_T_GOV_REP = 51,
    DXB_T_CATALOG = 52,
    DXB_T_GOV_STATE = 53,
    DXB_T_ADMIN_REQ = 100,
    DXB_T_ADMIN_REP = 101,
} dxb_msg_type_t;

/* Envelope kinds (PROTOCOL.md 4.1). */
enum {
    DXB_KIND_DELIVERY = 1,
    DXB_KIND_FEED = 2,
    DXB_KIND_REQUEST = 3,
    DXB_KIND_REPLY = 4,
    DXB_KIND_CATALOG = 5,
};

/* Wire error codes (PROTOCOL.md section 6). */
typedef enum {
    DXB_W_OK = 0,
    DXB_W_EPROTO = 1,
    DXB_W_EVERSION = 2,
    DXB_W_ETYPE = 3,
    DXB_W_ETOOBIG = 4,
    DXB_W_EAUTH = 5,
    DXB_W_EDENIED = 6,
    DXB_W_ENOROUTE = 7,
    DXB_W_EFULL = 8,
    DXB_W_EIO = 9,
    DXB_W_EEXPIRED = 10,
    DXB_W_EINTEGRITY = 11,
    DXB_W_ESPOOF = 12,
    DXB_W_ECRYPTO = 13,
    DXB_W_ESUITE = 14,
    DXB_W_EAGAIN = 15,
    DXB_W_EINTERNAL = 16,
    DXB_W_ENOTFOUND = 17,
    DXB_W_EINVAL = 18,
} dxb_wire_err_t;

/* Borrowed byte view into a frame buffer. */
typedef struct {
    const uint8_t *ptr; /* borrowed; NULL only when len == 0 */
    size_t len;         /* bytes */
} dxb_bytes_t;

/* Decoded HEADER (PROTOCOL.md 4.1). */
typedef struct {
    uint8_t msg_id[DXB_MSGID_BYTES];
    char sender[DXB_ID_CAP];  /* valid id */
    char dataset[DXB_ID_CAP]; /* valid id */
    uint8_t kind;             /* DXB_KIND_* (1..5) */
    uint64_t seq;             /* >= 1 */
    uint64_t created_ms;      /* wall clock ms */
    uint32_t ttl_s;           /* 0 = broker default */
    uint16_t n_recipients;    /* 1..256 */
    dxb_bytes_t recipients;   /* raw msgpack array, walk with dxb_msg_next_recipient */
    char region[7];           /* "" or 6 digits */
    uint8_t suite;            /* 1..255 */
    uint32_t flags;           /* DXB_FLAG_CHUNK | DXB_FLAG_MANIFEST; others 0 */
    uint64_t body_len;        /* == body.len after envelope decode */
} dxb_header_t;

/* Decoded ENVELOPE. */
typedef struct {
    dxb_header_t hdr;
    dxb_bytes_t header_raw; /* exact msgpack bytes of HEADER (signed, used as AEAD ad) */
    uint8_t body_hash[DXB_HASH_BYTES];
    dxb_bytes_t body;      /* opaque end-to-end body */
    dxb_bytes_t raw;       /* exact msgpack bytes of the whole ENVELOPE */
} dxb_env_t;

/* Decoded NODEINFO. */
typedef struct {
    char node[DXB_ID_CAP];
    char region[7];
    uint8_t level;     /* 1..4 */
    uint8_t clearance; /* 0..3 */
    uint8_t sign_pk[32];
    uint8_t box_pk[32];
} dxb_nodeinfo_t;

/* One [msg_id, code] pair of PUBACK / DACK. */
typedef struct {
    uint8_t msg_id[DXB_MSGID_BYTES];
    uint16_t code; /* dxb_wire_err_t */
} dxb_result_t;

/* Iterator over a list inside a decoded frame. */
typedef struct {
    const uint8_t *pos; /* borrowed: next element */
    const uint8_t *end; /* borrowed: end of the list's bytes */
    uint32_t left;      /* elements not yet returned */
} dxb_iter_t;

/* A decoded frame. Only the member of `u` that matches `type` is set. */
typedef struct {
    uint8_t type; /* dxb_msg_type_t */
    union {
        struct {
            char node[DXB_ID_CAP];
            dxb_bytes_t software;
            uint32_t window;
            uint32_t heartbeat_ms;
        } hello;
        struct {
            char node[DXB_ID_CAP];
            char broker[DXB_ID_CAP];
            uint32_t heartbeat_ms;
            uint32_t max_frame;
            uint64_t epoch;
        } welcome;
        struct {
            dxb_iter_t envs; /* PUBLISH and DELIVER: ENVELOPE list */
        } envs;
        struct {
            dxb_iter_t results; /* PUBACK and DACK: result list */
        } results;
        struct {
            uint32_t window;
        } credit;
        struct {
            uint64_t t_ms; /* PING and PONG */
        } ping;
        struct {
            uint16_t code;
            dxb_bytes_t ref; /* 0 or 16 bytes */
            dxb_bytes_t text;
        } error;
        struct {
            dxb_iter_t nodes;
        } directory;
        struct {
            dxb_bytes_t reason;
        } bye;
        struct {
            uint32_t req;
            char dataset[DXB_ID_CAP];
            uint16_t n_recipients;
            dxb_bytes_t recipients; /* raw array: walk with dxb_msg_next_recipient */
            dxb_bytes_t name;
            dxb_bytes_t payload;
            uint32_t ttl_s;
        } api_publish;
        struct {
            uint32_t req;
            uint16_t code;
            dxb_bytes_t msg_id; /* 0 or 16 bytes */
            dxb_bytes_t text;
        } api_result;
        struct {
            uint32_t req;
            char dataset[DXB_ID_CAP]; /* "" = all */
        } api_subscribe;
        struct {
            uint8_t msg_id[DXB_MSGID_BYTES];
            char sender[DXB_ID_CAP];
            char dataset[DXB_ID_CAP];
            uint64_t seq;
            uint64_t created_ms;
            dxb_bytes_t name;
            dxb_bytes_t payload;
        } api_message;
        struct {
            uint8_t msg_id[DXB_MSGID_BYTES];
        } api_ack;
        struct {
            uint32_t req;
            char dataset[DXB_ID_CAP];
            uint16_t n_recipients;
            dxb_bytes_t recipients; /* raw array: walk with dxb_msg_next_recipient */
            dxb_bytes_t name;       /* UTF-8, <= 255 bytes; NOT checked as a file name */
            uint64_t size;          /* declared total bytes */
            uint32_t ttl_s;
        } api_stream_begin;
        struct {
            uint32_t req;
            uint64_t offset; /* bytes of the stream before this frame */
            dxb_bytes_t data; /* 1 .. DXB_MAX_STREAM_DATA bytes */
        } api_stream_data;
        struct {
            uint32_t req;
            uint8_t hash[DXB_HASH_BYTES]; /* BLAKE2b-256 of the whole stream */
        } api_stream_end;
        struct {
            char command[33];
            uint16_t n_args;
            char args[DXB_MAX_ADMIN_ARGS][DXB_MAX_ADMIN_ARG + 1];
        } admin_req;
        struct {
            uint32_t req;
            char op[33];
            uint16_t n_args;
            dxb_bytes_t args[DXB_MAX_GOV_ARGS]; /* UTF-8 text, <= DXB_MAX_GOV_ARG each */
        } gov_req;
        struct {
            uint32_t req;
            uint16_t code;
            dxb_bytes_t message;
            dxb_bytes_t result; /* raw msgpack: nil or array of maps, as admin */
        } gov_rep;
        struct {
            dxb_iter_t entries; /* CATENTRY list: walk with dxb_msg_next_catentry */
        } catalog;
        struct {
            char what[33];
            dxb_bytes_t rows; /* raw msgpack array of maps */
        } gov_state;
        struct {
            uint16_t code;
            dxb_bytes_t message;
            dxb_bytes_t result; /* raw msgpack of the result (nil or array of maps) */
        } admin_rep;
    } u;
} dxb_frame_t;

/* A decoded CATENTRY (PROTOCOL.md 10.1); text views borrow the frame. */
typedef struct {
    char dataset[DXB_ID_CAP];
    dxb_bytes_t title;       /* <= 256 */
    dxb_bytes_t description; /* <= 1024 */
    uint8_t level;           /* 0..3 */
    uint8_t share;           /* 0 none, 1 conditional, 2 unconditional */
    dxb_bytes_t frequency;   /* <= 32 */
    char region[7];          /* "" or 6 digits */
    uint16_t n_fields;
    dxb_iter_t fields;       /* walk with dxb_msg_next_catfield */
} dxb_catentry_t;

typedef struct {
    dxb_bytes_t name; /* 1..128 */
    dxb_bytes_t type; /* <= 32 */
    uint8_t sensitivity; /* 0..3 */
} dxb_catfield_t;

/* Encoder input for one CATENTRY (C strings, borrowed). */
typedef struct {
    const char *dataset, *title, *description, *frequency, *region;
    uint8_t level, share;
    size_t n_fields;
    const char *const *field_names;
    const char *const *field_types;
    const uint8_t *field_sensitivity;
} dxb_catentry_in_t;

/* ---- decoding ---------------------------------------------------------- */

/* Decodes and fully validates one frame of `len` bytes (borrowed; must outlive
 * *out). max_len is the caller's size limit. Errors: DXB_ETOOBIG, DXB_EPROTO,
 * DXB_EVERSION, DXB_ETYPE. On error *out is unspecified and, when detail is
 * not NULL, a short static description of what was wrong and where
 * ("envelope 3: header field 'dataset': invalid id") is written to it. */
dxb_err_t dxb_msg_decode(const uint8_t *buf, size_t len, size_t max_len, dxb_frame_t *out,
                         char *detail, size_t detail_cap) DXB_MUST_CHECK;

/* Returns the next envelope; false when the list is exhausted. */
bool dxb_msg_next_env(dxb_iter_t *it, dxb_env_t *out);
/* Returns the next [msg_id, code] result; false when exhausted. */
bool dxb_msg_next_result(dxb_iter_t *it, dxb_result_t *out);
/* Returns the next NODEINFO; false when exhausted. */
bool dxb_msg_next_nodeinfo(dxb_iter_t *it, dxb_nodeinfo_t *out);
/* Starts iterating the recipient list of a header or API_PUBLISH. */
void dxb_msg_recipients_begin(dxb_bytes_t raw, uint16_t n, dxb_iter_t *it);
/* Copies the next recipient id (NUL-terminated) into out; false when exhausted. */
bool dxb_msg_next_recipient(dxb_iter_t *it, char out[DXB_ID_CAP]);

/* Decodes a standalone ENVELOPE (as stored by the broker and agent).
 * Same validation as inside PUBLISH. */
dxb_err_t dxb_msg_decode_env(const uint8_t *buf, size_t len, dxb_env_t *out, char *detail,
                             size_t detail_cap) DXB_MUST_CHECK;

/* Decodes a suite-1 BODY (PROTOCOL.md section 5) into borrowed views.
 * wraps is the raw wraps array (for signing); n_wraps its element count. */
typedef struct {
    uint8_t nonce[24];
    dxb_bytes_t wraps_raw; /* exact bytes of the wraps array */
    uint16_t n_wraps;
    dxb_bytes_t ciphertext;
    uint8_t signature[64];
} dxb_body1_t;
dxb_err_t dxb_msg_decode_body1(const uint8_t *buf, size_t len, dxb_body1_t *out) DXB_MUST_CHECK;
/* Finds the wrapped key for `recipient` in a decoded body; false when absent. */
bool dxb_msg_body1_find_wrap(const dxb_body1_t *body, const char *recipient, uint8_t wrap[80]);

/* Decodes PLAINTEXT = [name:str, content_type:str, payload:bin]. */
typedef struct {
    dxb_bytes_t name;
    dxb_bytes_t content_type;
    dxb_bytes_t payload;
} dxb_plain_t;
dxb_err_t dxb_msg_decode_plain(const uint8_t *buf, size_t len, dxb_plain_t *out) DXB_MUST_CHECK;

/* ---- encoding ---------------------------------------------------------- */
/* Each dxb_msg_enc_* appends one complete frame to sbuf (caller-owned,
 * initialised with msgpack_sbuffer_init; call msgpack_sbuffer_clear between
 * frames). They return DXB_ENOMEM on allocation failure, DXB_EINVAL on
 * arguments that would not decode (bad id, too many items). */

dxb_err_t dxb_msg_enc_hello(msgpack_sbuffer *sbuf, const char *node, const char *software,
                            uint32_t window, uint32_t heartbeat_ms) DXB_MUST_CHECK;
dxb_err_t dxb_msg_enc_welcome(msgpack_sbuffer *sbuf, const char *node, const char *broker,
                              uint32_t heartbeat_ms, uint32_t max_frame,
                              uint64_t epoch) DXB_MUST_CHECK;
/* PUBLISH / DELIVER: `raw_envs[i]` are complete encoded ENVELOPEs (as stored),
 * copied verbatim. type must be DXB_T_PUBLISH or DXB_T_DELIVER. */
dxb_err_t dxb_msg_enc_envs(msgpack_sbuffer *sbuf, uint8_t type, const dxb_bytes_t *raw_envs,
                           size_t n) DXB_MUST_CHECK;
/* PUBACK / DACK. type must be DXB_T_PUBACK or DXB_T_DACK. */
dxb_err_t dxb_msg_enc_results(msgpack_sbuffer *sbuf, uint8_t type, const dxb_result_t *results,
                              size_t n) DXB_MUST_CHECK;
dxb_err_t dxb_msg_enc_credit(msgpack_sbuffer *sbuf, uint32_t window) DXB_MUST_CHECK;
/* PING / PONG. */
dxb_err_t dxb_msg_enc_ping(msgpack_sbuffer *sbuf, uint8_t type, uint64_t t_ms) DXB_MUST_CHECK;
/* ref may be NULL (encoded as empty bin) or 16 bytes. text is truncated to 512 bytes. */
dxb_err_t dxb_msg_enc_error(msgpack_sbuffer *sbuf, uint16_t code, const uint8_t *ref,
                            const char *text) DXB_MUST_CHECK;
dxb_err_t dxb_msg_enc_directory(msgpack_sbuffer *sbuf, const dxb_nodeinfo_t *nodes,
                                size_t n) DXB_MUST_CHECK;
dxb_err_t dxb_msg_enc_bye(msgpack_sbuffer *sbuf, const char *reason) DXB_MUST_CHECK;

/* Header fields for encoding (strings are NUL-terminated and borrowed). */
typedef struct {
    const uint8_t *msg_id; /* 16 bytes */
    const char *sender;
    const char *dataset;
    uint8_t kind;
    uint64_t seq;
    uint64_t created_ms;
    uint32_t ttl_s;
    const char *const *recipients; /* n_recipients ids */
    uint16_t n_recipients;
    const char *region; /* "" or 6 digits */
    uint8_t suite;
    uint32_t flags;
    uint64_t body_len;
} dxb_header_in_t;
/* Appends a bare HEADER array (no frame prefix): the bytes that get signed. */
dxb_err_t dxb_msg_enc_header(msgpack_sbuffer *sbuf, const dxb_header_in_t *h) DXB_MUST_CHECK;
/* Appends a bare ENVELOPE array from already-encoded header bytes. */
dxb_err_t dxb_msg_enc_env(msgpack_sbuffer *sbuf, dxb_bytes_t header_raw,
                          const uint8_t body_hash[DXB_HASH_BYTES],
                          dxb_bytes_t body) DXB_MUST_CHECK;
/* Appends a bare suite-1 BODY. wraps_raw is an already-encoded wraps array. */
dxb_err_t dxb_msg_enc_body1(msgpack_sbuffer *sbuf, const uint8_t nonce[24], dxb_bytes_t wraps_raw,
                            dxb_bytes_t ciphertext, const uint8_t signature[64]) DXB_MUST_CHECK;
/* Appends a bare wraps array: n pairs [recipients[i], wraps[i] (80 bytes)]. */
dxb_err_t dxb_msg_enc_wraps(msgpack_sbuffer *sbuf, const char *const *recipients,
                            const uint8_t (*wraps)[80], size_t n) DXB_MUST_CHECK;
/* Appends a bare PLAINTEXT array. */
dxb_err_t dxb_msg_enc_plain(msgpack_sbuffer *sbuf, dxb_bytes_t name, const char *content_type,
                            dxb_bytes_t payload) DXB_MUST_CHECK;

dxb_err_t dxb_msg_enc_api_publish(msgpack_sbuffer *sbuf, uint32_t req, const char *dataset,
                                  const char *const *recipients, uint16_t n_recipients,
                                  dxb_bytes_t name, dxb_bytes_t payload,
                                  uint32_t ttl_s) DXB_MUST_CHECK;
dxb_err_t dxb_msg_enc_api_result(msgpack_sbuffer *sbuf, uint32_t req, uint16_t code,
                                 const uint8_t *msg_id, const char *text) DXB_MUST_CHECK;
dxb_err_t dxb_msg_enc_api_subscribe(msgpack_sbuffer *sbuf, uint32_t req,
                                    const char *dataset) DXB_MUST_CHECK;
dxb_err_t dxb_msg_enc_api_message(msgpack_sbuffer *sbuf, const uint8_t *msg_id,
                                  const char *sender, const char *dataset, uint64_t seq,
                                  uint64_t created_ms, dxb_bytes_t name,
                                  dxb_bytes_t payload) DXB_MUST_CHECK;
dxb_err_t dxb_msg_enc_api_ack(msgpack_sbuffer *sbuf, const uint8_t *msg_id) DXB_MUST_CHECK;
/* API_STREAM_BEGIN. name: valid UTF-8 of 1..DXB_MAX_STREAM_NAME bytes (the
 * file name rule is the agent's to apply). */
dxb_err_t dxb_msg_enc_api_stream_begin(msgpack_sbuffer *sbuf, uint32_t req, const char *dataset,
                                       const char *const *recipients, uint16_t n_recipients,
                                       dxb_bytes_t name, uint64_t size,
                                       uint32_t ttl_s) DXB_MUST_CHECK;
/* API_STREAM_DATA: data.len must be 1..DXB_MAX_STREAM_DATA. */
dxb_err_t dxb_msg_enc_api_stream_data(msgpack_sbuffer *sbuf, uint32_t req, uint64_t offset,
                                      dxb_bytes_t data) DXB_MUST_CHECK;
/* API_STREAM_END: hash is 32 bytes. */
dxb_err_t dxb_msg_enc_api_stream_end(msgpack_sbuffer *sbuf, uint32_t req,
                                     const uint8_t hash[DXB_HASH_BYTES]) DXB_MUST_CHECK;

bool dxb_msg_next_catentry(dxb_iter_t *it, dxb_catentry_t *out);
bool dxb_msg_next_catfield(dxb_iter_t *it, dxb_catfield_t *out);
dxb_err_t dxb_msg_enc_gov_req(msgpack_sbuffer *sbuf, uint32_t req, const char *op,
                              const char *const *args, size_t n_args) DXB_MUST_CHECK;
/* Begins a GOV_REP; the caller packs the result (nil or array of maps) with
 * *pk_out, exactly one object. */
dxb_err_t dxb_msg_enc_gov_rep_begin(msgpack_sbuffer *sbuf, msgpack_packer *pk_out, uint32_t req,
                                    uint16_t code, const char *message) DXB_MUST_CHECK;
dxb_err_t dxb_msg_enc_catalog(msgpack_sbuffer *sbuf, const dxb_catentry_in_t *entries,
                              size_t n) DXB_MUST_CHECK;
/* Begins a GOV_STATE; the caller packs the rows array with *pk_out. */
dxb_err_t dxb_msg_enc_gov_state_begin(msgpack_sbuffer *sbuf, msgpack_packer *pk_out,
                                      const char *what) DXB_MUST_CHECK;
dxb_err_t dxb_msg_enc_admin_req(msgpack_sbuffer *sbuf, const char *command,
                                const char *const *args, size_t n_args) DXB_MUST_CHECK;
/* The caller packs the result itself right after this call with the packer
 * returned through pk_out (nil, or an array of maps). pk_out is owned by the
 * caller's stack: pass the address of a msgpack_packer. */
dxb_err_t dxb_msg_enc_admin_rep_begin(msgpack_sbuffer *sbuf, msgpack_packer *pk_out,
                                      uint16_t code, const char *message) DXB_MUST_CHECK;

/* ---- error mapping ----------------------------------------------------- */
uint16_t dxb_err_to_wire(dxb_err_t err);
dxb_err_t dxb_err_from_wire(uint16_t code);
/* Stable name of a wire code ("EFULL"); "E?" for unknown codes. */
const char *dxb_wire_err_name(uint16_t code);

#endif
