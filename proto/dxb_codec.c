/* dxb_codec: the one implementation of proto/PROTOCOL.md (version 1).
 *
 * Decoding reads untrusted bytes with dxb_rd only (never msgpack-c's
 * unpacker, see STYLE "Untrusted input"). Each decoder walks the fixed schema
 * in order; the cursor's error is sticky, so field readers return zero values
 * after the first failure and the outcome is checked once per message. A
 * small context records where the first failure happened, for the `detail`
 * text. Depth is fixed by the schema (at most 5 levels for a PUBLISH, 3 for an
 * admin reply), well inside PROTO-R6's limit of 8; nothing recurses on input.
 *
 * dxb_msg_decode validates every element of every list before it returns
 * DXB_OK, so the dxb_msg_next_*() iterators re-read bytes that are known to be
 * good and cannot fail.
 *
 * Encoding uses msgpack-c's packer over the caller's msgpack_sbuffer. Every
 * encoder first checks its arguments against the same rules the decoder
 * applies (DXB_EINVAL), then packs; on allocation failure (DXB_ENOMEM) the
 * buffer is cut back to its size on entry, so a failed call appends nothing.
 *
 * Limits the protocol leaves open, chosen here: the admin reply `message` is
 * bounded only by the frame; admin result keys are <= 64 bytes, str values
 * <= 4096 bytes, <= 100000 rows; API_RESULT text <= 512 bytes like ERROR text;
 * API_STREAM_BEGIN name <= 255 bytes of text (the file name rule of section 3
 * is the agent's check, answered EINVAL).
 * Text fields must be valid UTF-8 without NUL bytes (PROTOCOL.md section 2).
 *
 * Thread context: none; all functions are reentrant.
 */
#include "proto/dxb_msg.h"

#include <stdio.h>
#include <string.h>

#include "common/dxb_util.h"
#include "proto/dxb_rd.h"

#define S_MAX_SOFTWARE 64
#define S_MAX_CONTENT_TYPE 128
#define S_MAX_FILENAME 200
#define S_MAX_COMMAND 32
#define S_MAX_CREDIT 65536
#define S_MAX_ADMIN_ROWS 100000
#define S_MAX_ADMIN_KEY 64
#define S_MAX_ADMIN_STR 4096
#define S_NONCE_BYTES 24
#define S_WRAP_BYTES 80
#define S_SIG_BYTES 64
#define S_PK_BYTES 32

/* ---- decoding context --------------------------------------------------- */

/* Cursor plus the position of the first failure. Position fields are only
 * updated while the cursor is ok, so they freeze at the first error. */
typedef struct {
    dxb_rd_t rd;
    dxb_err_t code;      /* returned when rd fails; DXB_EPROTO unless a check says otherwise */
    const char *item;    /* static: list element kind ("envelope"); NULL at top level */
    uint32_t item_index; /* 0-based index of that element */
    const char *field;   /* static: field being read ("header.dataset"); NULL before any */
    bool has_sub;        /* sub_index is meaningful */
    uint32_t sub_index;  /* 0-based index inside the field's own list */
} s_dec_t;

static void
s_dec_init(s_dec_t *d, const uint8_t *buf, size_t len)
{
    memset(d, 0, sizeof(*d));
    dxb_rd_init(&d->rd, buf, len);
    d->code = DXB_EPROTO;
}

static bool
s_ok(const s_dec_t *d)
{
    return dxb_rd_ok(&d->rd);
}

/* Names the field about to be read; an index set by s_at_sub survives
 * repeated reads of the same field. */
static void
s_at(s_dec_t *d, const char *field)
{
    if (s_ok(d) && field != d->field) {
        d->field = field;
        d->has_sub = false;
    }
}

static void
s_at_sub(s_dec_t *d, uint32_t index)
{
    if (s_ok(d)) {
        d->has_sub = true;
        d->sub_index = index;
    }
}

/* Enters element `index` of a list of `item`s (NULL: back at top level). */
static void
s_at_item(s_dec_t *d, const char *item, uint32_t index)
{
    if (s_ok(d)) {
        d->item = item;
        d->item_index = index;
        d->field = NULL;
        d->has_sub = false;
    }
}

static void
s_fail(s_dec_t *d, const char *why)
{
    dxb_rd_fail(&d->rd, why);
}

static void
s_fail_code(s_dec_t *d, dxb_err_t code, const char *why)
{
    if (s_ok(d)) {
        d->code = code;
    }
    dxb_rd_fail(&d->rd, why);
}

static dxb_bytes_t
s_span(const uint8_t *start, const uint8_t *end)
{
    return (dxb_bytes_t){.ptr = start, .len = (size_t)(end - start)};
}

static void
s_write_detail(const s_dec_t *d, char *detail, size_t cap)
{
    if (detail == NULL || cap == 0) {
        return;
    }
    const char *why = d->rd.err != NULL ? d->rd.err : "invalid";
    const char *field = d->field != NULL ? d->field : "frame";
    char sub[16] = "";
    if (d->has_sub) {
        snprintf(sub, sizeof(sub), "[%u]", (unsigned)d->sub_index);
    }
    if (d->item != NULL) {
        snprintf(detail, cap, "%s %u: %s%s: %s", d->item, (unsigned)d->item_index, field, sub, why);
    } else {
        snprintf(detail, cap, "%s%s: %s", field, sub, why);
    }
}

/* PROTO-R5: nothing may follow the outermost array. */
static void
s_expect_end(s_dec_t *d)
{
    if (s_ok(d) && dxb_rd_left(&d->rd) != 0) {
        s_at_item(d, NULL, 0);
        s_at(d, "frame");
        s_fail(d, "trailing bytes");
    }
}

static dxb_err_t
s_finish(const s_dec_t *d, char *detail, size_t cap)
{
    if (s_ok(d)) {
        return DXB_OK;
    }
    s_write_detail(d, detail, cap);
    return d->code;
}

/* ---- text checks ------------------------------------------------------- */

/* Decodes a UTF-8 lead byte: the number of continuation bytes, the payload
 * bits and the smallest code point that needs this length. */
static bool
s_utf8_lead(uint8_t c, size_t *k, uint32_t *cp, uint32_t *min)
{
    if ((c & 0xe0) == 0xc0) {
        *k = 1;
        *cp = c & 0x1fu;
        *min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        *k = 2;
        *cp = c & 0x0fu;
        *min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        *k = 3;
        *cp = c & 0x07u;
        *min = 0x10000;
    } else {
        return false;
    }
    return true;
}

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF)
 * without NUL bytes, so that a str is also a safe C string. */
static bool
s_utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = 0;
        uint32_t cp = 0;
        uint32_t min = 0;
        if (p[i] == 0) {
            return false;
        }
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        if (!s_utf8_lead(p[i], &k, &cp, &min) || n - i <= k) {
            return false;
        }
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80) {
                return false;
            }
            cp = cp << 6 | (p[i + j] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += k + 1;
    }
    return true;
}

static bool
s_command_valid(const uint8_t *p, size_t n)
{
    if (n == 0 || n > S_MAX_COMMAND) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!((p[i] >= 'a' && p[i] <= 'z') || p[i] == '.')) {
            return false;
        }
    }
    return true;
}

/* ---- field readers ----------------------------------------------------- */

/* A uint in [min, max]. */
static uint64_t
s_uint(s_dec_t *d, const char *field, uint64_t min, uint64_t max)
{
    s_at(d, field);
    uint64_t v = dxb_rd_uint(&d->rd, max);
    if (s_ok(d) && v < min) {
        s_fail(d, "integer out of range");
    }
    return s_ok(d) ? v : 0;
}

static dxb_bytes_t
s_bin(s_dec_t *d, const char *field, size_t max)
{
    s_at(d, field);
    dxb_bytes_t b = {0};
    b.ptr = dxb_rd_bin(&d->rd, max, &b.len);
    return b;
}

/* A bin of exactly n bytes, copied into out. */
static void
s_bin_fixed(s_dec_t *d, const char *field, uint8_t *out, size_t n)
{
    dxb_bytes_t b = s_bin(d, field, n);
    if (s_ok(d) && b.len != n) {
        s_fail(d, "wrong length");
    }
    if (s_ok(d)) {
        memcpy(out, b.ptr, n);
    }
}

/* A bin of 0 or 16 bytes (optional message id). */
static dxb_bytes_t
s_bin_opt_id(s_dec_t *d, const char *field)
{
    dxb_bytes_t b = s_bin(d, field, DXB_MSGID_BYTES);
    if (s_ok(d) && b.len != 0 && b.len != DXB_MSGID_BYTES) {
        s_fail(d, "wrong length");
    }
    return b;
}

/* A str of at most max bytes of valid UTF-8. */
static dxb_bytes_t
s_text(s_dec_t *d, const char *field, size_t max)
{
    s_at(d, field);
    dxb_bytes_t b = {0};
    b.ptr = dxb_rd_str(&d->rd, max, &b.len);
    if (s_ok(d) && !s_utf8_valid(b.ptr, b.len)) {
        s_fail(d, "invalid UTF-8");
    }
    return b;
}

/* Copies a checked str into a C string buffer of at least len + 1 bytes. */
static void
s_copy_cstr(const s_dec_t *d, dxb_bytes_t b, char *out)
{
    if (s_ok(d)) {
        if (b.len > 0) {
            memcpy(out, b.ptr, b.len);
        }
        out[b.len] = '\0';
    }
}

/* A node or dataset id; allow_empty admits "" (API_SUBSCRIBE "all"). */
static void
s_id_or_empty(s_dec_t *d, const char *field, bool allow_empty, char out[DXB_ID_CAP])
{
    out[0] = '\0';
    dxb_bytes_t b = s_text(d, field, DXB_ID_MAX);
    if (s_ok(d) && !(allow_empty && b.len == 0) && !dxb_id_valid((const char *)b.ptr, b.len)) {
        s_fail(d, "invalid id");
    }
    s_copy_cstr(d, b, out);
}

static void
s_id(s_dec_t *d, const char *field, char out[DXB_ID_CAP])
{
    s_id_or_empty(d, field, false, out);
}

/* A region code: 6 digits, or "" when allow_empty. */
static void
s_region(s_dec_t *d, const char *field, bool allow_empty, char out[7])
{
    out[0] = '\0';
    dxb_bytes_t b = s_text(d, field, 6);
    if (s_ok(d) && !(allow_empty && b.len == 0) && !dxb_region_valid((const char *)b.ptr, b.len)) {
        s_fail(d, "invalid region code");
    }
    s_copy_cstr(d, b, out);
}

/* A file name as the spool will create it (PROTOCOL.md section 3). */
static dxb_bytes_t
s_filename(s_dec_t *d, const char *field)
{
    dxb_bytes_t b = s_text(d, field, S_MAX_FILENAME);
    if (s_ok(d) && !dxb_filename_safe((const char *)b.ptr, b.len)) {
        s_fail(d, "unsafe file name");
    }
    return b;
}

/* An array of exactly n elements (PROTO-R5). */
static void
s_array_exact(s_dec_t *d, const char *field, uint32_t n)
{
    s_at(d, field);
    uint32_t got = dxb_rd_array(&d->rd);
    if (s_ok(d) && got != n) {
        s_fail(d, "wrong element count");
    }
}

/* A list header with min..max elements; returns the count (0 on error). */
static uint32_t
s_list(s_dec_t *d, const char *field, uint32_t min, uint32_t max)
{
    s_at(d, field);
    uint32_t n = dxb_rd_array(&d->rd);
    if (s_ok(d) && n < min) {
        s_fail(d, "too few elements");
    }
    if (s_ok(d) && n > max) {
        s_fail(d, "too many elements");
    }
    return s_ok(d) ? n : 0;
}

/* ---- structure decoders ------------------------------------------------ */

/* recipients:[id] (1..256); returns the raw array span and its count. */
static void
s_dec_recipients(s_dec_t *d, const char *field, uint16_t *n_out, dxb_bytes_t *raw_out)
{
    char scratch[DXB_ID_CAP];
    const uint8_t *start = d->rd.pos;
    uint32_t n = s_list(d, field, 1, DXB_MAX_RECIPIENTS);
    for (uint32_t i = 0; i < n && s_ok(d); i++) {
        s_at_sub(d, i);
        s_id(d, field, scratch);
    }
    *n_out = (uint16_t)n;
    *raw_out = s_span(start, d->rd.pos);
}

/* HEADER (PROTOCOL.md 4.1). */
static void
s_dec_header(s_dec_t *d, dxb_header_t *h)
{
    s_array_exact(d, "header", 12);
    s_bin_fixed(d, "header.msg_id", h->msg_id, DXB_MSGID_BYTES);
    s_id(d, "header.sender", h->sender);
    s_id(d, "header.dataset", h->dataset);
    h->kind = (uint8_t)s_uint(d, "header.kind", DXB_KIND_DELIVERY, DXB_KIND_CATALOG);
    h->seq = s_uint(d, "header.seq", 1, UINT64_MAX);
    h->created_ms = s_uint(d, "header.created_ms", 0, UINT64_MAX);
    h->ttl_s = (uint32_t)s_uint(d, "header.ttl_s", 0, UINT32_MAX);
    s_dec_recipients(d, "header.recipients", &h->n_recipients, &h->recipients);
    s_region(d, "header.region", true, h->region);
    h->suite = (uint8_t)s_uint(d, "header.suite", 1, UINT8_MAX);
    h->flags = (uint32_t)s_uint(d, "header.flags", 0, UINT32_MAX);
    if (s_ok(d) && (h->flags & ~DXB_HDR_FLAGS_KNOWN) != 0) {
        s_fail(d, "reserved flag bits set");
    }
    if (s_ok(d) && (h->flags & 2u) != 0 && (h->flags & 1u) == 0) {
        s_fail(d, "manifest flag without the chunk flag");
    }
    h->body_len = s_uint(d, "header.body_len", 0, UINT64_MAX);
}

/* ENVELOPE = [HEADER, body_hash:bin32, body:bin]. */
static void
s_dec_env(s_dec_t *d, dxb_env_t *e)
{
    const uint8_t *start = d->rd.pos;
    s_array_exact(d, "envelope", 3);
    const uint8_t *header_start = d->rd.pos;
    s_dec_header(d, &e->hdr);
    e->header_raw = s_span(header_start, d->rd.pos);
    s_bin_fixed(d, "body_hash", e->body_hash, DXB_HASH_BYTES);
    e->body = s_bin(d, "body", SIZE_MAX);
    if (s_ok(d) && e->hdr.body_len != (uint64_t)e->body.len) {
        s_at(d, "header.body_len");
        s_fail(d, "does not match body length");
    }
    e->raw = s_span(start, d->rd.pos);
}

/* [msg_id:bin16, code:uint16]. */
static void
s_dec_result(s_dec_t *d, dxb_result_t *r)
{
    s_array_exact(d, "result", 2);
    s_bin_fixed(d, "msg_id", r->msg_id, DXB_MSGID_BYTES);
    r->code = (uint16_t)s_uint(d, "code", 0, UINT16_MAX);
}

/* NODEINFO (PROTOCOL.md 4.2). */
static void
s_dec_nodeinfo(s_dec_t *d, dxb_nodeinfo_t *ni)
{
    s_array_exact(d, "nodeinfo", 6);
    s_id(d, "node", ni->node);
    s_region(d, "region", false, ni->region);
    ni->level = (uint8_t)s_uint(d, "level", 1, 4);
    ni->clearance = (uint8_t)s_uint(d, "clearance", 0, 3);
    s_bin_fixed(d, "sign_pk", ni->sign_pk, S_PK_BYTES);
    s_bin_fixed(d, "box_pk", ni->box_pk, S_PK_BYTES);
}

/* wraps:[[recipient:id, wrapped_key:bin80]] (1..256), section 5. */
static uint16_t
s_dec_wraps(s_dec_t *d)
{
    char scratch[DXB_ID_CAP];
    uint8_t wrap[S_WRAP_BYTES];
    uint32_t n = s_list(d, "wraps", 1, DXB_MAX_RECIPIENTS);
    for (uint32_t i = 0; i < n && s_ok(d); i++) {
        s_at_item(d, "wrap", i);
        s_array_exact(d, "wrap", 2);
        s_id(d, "recipient", scratch);
        s_bin_fixed(d, "wrapped_key", wrap, sizeof(wrap));
    }
    s_at_item(d, NULL, 0);
    return (uint16_t)n;
}

/* Checks every element of a list of `n`, then points an iterator at it. */
typedef void (*s_elem_fn)(s_dec_t *d, void *scratch);

static void
s_elem_env(s_dec_t *d, void *scratch)
{
    s_dec_env(d, scratch);
}

static void
s_elem_result(s_dec_t *d, void *scratch)
{
    s_dec_result(d, scratch);
}

static void
s_elem_nodeinfo(s_dec_t *d, void *scratch)
{
    s_dec_nodeinfo(d, scratch);
}

static void
s_dec_list(s_dec_t *d, const char *field, const char *item, uint32_t min, uint32_t max,
           s_elem_fn fn, void *scratch, dxb_iter_t *it)
{
    uint32_t n = s_list(d, field, min, max);
    const uint8_t *first = d->rd.pos;
    for (uint32_t i = 0; i < n && s_ok(d); i++) {
        s_at_item(d, item, i);
        fn(d, scratch);
    }
    s_at_item(d, NULL, 0);
    *it = (dxb_iter_t){.pos = first, .end = d->rd.pos, .left = n};
}

/* ---- frame decoders (fields after version and type) --------------------- */

static void
s_dec_hello(s_dec_t *d, dxb_frame_t *f)
{
    s_id(d, "node", f->u.hello.node);
    f->u.hello.software = s_text(d, "software", S_MAX_SOFTWARE);
    f->u.hello.window = (uint32_t)s_uint(d, "window", 0, UINT32_MAX);
    f->u.hello.heartbeat_ms = (uint32_t)s_uint(d, "heartbeat_ms", 0, UINT32_MAX);
}

static void
s_dec_welcome(s_dec_t *d, dxb_frame_t *f)
{
    s_id(d, "node", f->u.welcome.node);
    s_id(d, "broker", f->u.welcome.broker);
    f->u.welcome.heartbeat_ms = (uint32_t)s_uint(d, "heartbeat_ms", 0, UINT32_MAX);
    f->u.welcome.max_frame = (uint32_t)s_uint(d, "max_frame", 0, UINT32_MAX);
    f->u.welcome.epoch = s_uint(d, "epoch", 0, UINT64_MAX);
}

static void
s_dec_envs(s_dec_t *d, dxb_frame_t *f)
{
    dxb_env_t scratch;
    s_dec_list(d, "envelopes", "envelope", 1, DXB_MAX_BATCH, s_elem_env, &scratch, &f->u.envs.envs);
}

static void
s_dec_results(s_dec_t *d, dxb_frame_t *f)
{
    dxb_result_t scratch;
    s_dec_list(d, "results", "result", 1, DXB_MAX_BATCH, s_elem_result, &scratch,
               &f->u.results.results);
}

static void
s_dec_credit(s_dec_t *d, dxb_frame_t *f)
{
    f->u.credit.window = (uint32_t)s_uint(d, "window", 1, S_MAX_CREDIT);
}

static void
s_dec_ping(s_dec_t *d, dxb_frame_t *f)
{
    f->u.ping.t_ms = s_uint(d, "t_ms", 0, UINT64_MAX);
}

static void
s_dec_error(s_dec_t *d, dxb_frame_t *f)
{
    /* Codes are not checked against the known set: a newer peer may send
     * codes this version does not name (dxb_wire_err_name says "E?"). */
    f->u.error.code = (uint16_t)s_uint(d, "code", 0, UINT16_MAX);
    f->u.error.ref = s_bin_opt_id(d, "ref");
    f->u.error.text = s_text(d, "text", DXB_MAX_TEXT);
}

static void
s_dec_directory(s_dec_t *d, dxb_frame_t *f)
{
    dxb_nodeinfo_t scratch;
    s_dec_list(d, "nodes", "node", 0, DXB_MAX_DIRECTORY, s_elem_nodeinfo, &scratch,
               &f->u.directory.nodes);
}

static void
s_dec_bye(s_dec_t *d, dxb_frame_t *f)
{
    f->u.bye.reason = s_text(d, "reason", DXB_MAX_TEXT);
}

static void
s_dec_api_publish(s_dec_t *d, dxb_frame_t *f)
{
    f->u.api_publish.req = (uint32_t)s_uint(d, "req", 0, UINT32_MAX);
    s_id(d, "dataset", f->u.api_publish.dataset);
    s_dec_recipients(d, "recipients", &f->u.api_publish.n_recipients, &f->u.api_publish.recipients);
    f->u.api_publish.name = s_filename(d, "name");
    f->u.api_publish.payload = s_bin(d, "payload", SIZE_MAX);
    f->u.api_publish.ttl_s = (uint32_t)s_uint(d, "ttl_s", 0, UINT32_MAX);
}

static void
s_dec_api_result(s_dec_t *d, dxb_frame_t *f)
{
    f->u.api_result.req = (uint32_t)s_uint(d, "req", 0, UINT32_MAX);
    f->u.api_result.code = (uint16_t)s_uint(d, "code", 0, UINT16_MAX);
    f->u.api_result.msg_id = s_bin_opt_id(d, "msg_id");
    f->u.api_result.text = s_text(d, "text", DXB_MAX_TEXT);
}

static void
s_dec_api_subscribe(s_dec_t *d, dxb_frame_t *f)
{
    f->u.api_subscribe.req = (uint32_t)s_uint(d, "req", 0, UINT32_MAX);
    s_id_or_empty(d, "dataset", true, f->u.api_subscribe.dataset);
}

static void
s_dec_api_message(s_dec_t *d, dxb_frame_t *f)
{
    s_bin_fixed(d, "msg_id", f->u.api_message.msg_id, DXB_MSGID_BYTES);
    s_id(d, "sender", f->u.api_message.sender);
    s_id(d, "dataset", f->u.api_message.dataset);
    f->u.api_message.seq = s_uint(d, "seq", 1, UINT64_MAX);
    f->u.api_message.created_ms = s_uint(d, "created_ms", 0, UINT64_MAX);
    f->u.api_message.name = s_filename(d, "name");
    f->u.api_message.payload = s_bin(d, "payload", SIZE_MAX);
}

static void
s_dec_api_ack(s_dec_t *d, dxb_frame_t *f)
{
    s_bin_fixed(d, "msg_id", f->u.api_ack.msg_id, DXB_MSGID_BYTES);
}

/* The name is only bounded text here: the agent applies the file name rule
 * and answers EINVAL, a refused argument rather than a malformed frame. */
static void
s_dec_api_stream_begin(s_dec_t *d, dxb_frame_t *f)
{
    f->u.api_stream_begin.req = (uint32_t)s_uint(d, "req", 0, UINT32_MAX);
    s_id(d, "dataset", f->u.api_stream_begin.dataset);
    s_dec_recipients(d, "recipients", &f->u.api_stream_begin.n_recipients,
                     &f->u.api_stream_begin.recipients);
    f->u.api_stream_begin.name = s_text(d, "name", DXB_MAX_STREAM_NAME);
    f->u.api_stream_begin.size = s_uint(d, "size", 0, UINT64_MAX);
    f->u.api_stream_begin.ttl_s = (uint32_t)s_uint(d, "ttl_s", 0, UINT32_MAX);
}

static void
s_dec_api_stream_data(s_dec_t *d, dxb_frame_t *f)
{
    f->u.api_stream_data.req = (uint32_t)s_uint(d, "req", 0, UINT32_MAX);
    f->u.api_stream_data.offset = s_uint(d, "offset", 0, UINT64_MAX);
    f->u.api_stream_data.data = s_bin(d, "data", DXB_MAX_STREAM_DATA);
    if (s_ok(d) && f->u.api_stream_data.data.len == 0) {
        s_fail(d, "empty");
    }
}

static void
s_dec_api_stream_end(s_dec_t *d, dxb_frame_t *f)
{
    f->u.api_stream_end.req = (uint32_t)s_uint(d, "req", 0, UINT32_MAX);
    s_bin_fixed(d, "hash", f->u.api_stream_end.hash, DXB_HASH_BYTES);
}

static void
s_dec_admin_req(s_dec_t *d, dxb_frame_t *f)
{
    dxb_bytes_t cmd = s_text(d, "command", S_MAX_COMMAND);
    if (s_ok(d) && !s_command_valid(cmd.ptr, cmd.len)) {
        s_fail(d, "invalid command");
    }
    s_copy_cstr(d, cmd, f->u.admin_req.command);
    uint32_t n = s_list(d, "args", 0, DXB_MAX_ADMIN_ARGS);
    for (uint32_t i = 0; i < n && s_ok(d); i++) {
        s_at_sub(d, i);
        dxb_bytes_t arg = s_text(d, "args", DXB_MAX_ADMIN_ARG);
        s_copy_cstr(d, arg, f->u.admin_req.args[i]);
    }
    f->u.admin_req.n_args = (uint16_t)n;
}

/* One admin result value: a scalar only, so a row adds no nesting. */
static void
s_dec_admin_value(s_dec_t *d)
{
    switch (dxb_rd_peek(&d->rd)) {
    case DXB_RD_NIL:
        dxb_rd_nil(&d->rd);
        break;
    case DXB_RD_BOOL:
        (void)dxb_rd_bool(&d->rd);
        break;
    case DXB_RD_UINT:
        (void)dxb_rd_uint(&d->rd, UINT64_MAX);
        break;
    case DXB_RD_INT:
        (void)dxb_rd_int(&d->rd);
        break;
    case DXB_RD_FLOAT:
        (void)dxb_rd_float(&d->rd);
        break;
    case DXB_RD_STR:
        (void)s_text(d, "result", S_MAX_ADMIN_STR);
        break;
    default:
        s_fail(d, dxb_rd_left(&d->rd) == 0 ? "truncated" : "unsupported value type");
        break;
    }
}

/* result = nil | [ {str: scalar} ] (PROTOCOL.md section 8). */
static dxb_bytes_t
s_dec_admin_result(s_dec_t *d)
{
    s_at(d, "result");
    const uint8_t *start = d->rd.pos;
    if (dxb_rd_peek(&d->rd) == DXB_RD_NIL) {
        dxb_rd_nil(&d->rd);
        return s_span(start, d->rd.pos);
    }
    uint32_t rows = s_list(d, "result", 0, S_MAX_ADMIN_ROWS);
    for (uint32_t r = 0; r < rows && s_ok(d); r++) {
        s_at_sub(d, r);
        uint32_t cols = dxb_rd_map(&d->rd);
        for (uint32_t c = 0; c < cols && s_ok(d); c++) {
            (void)s_text(d, "result", S_MAX_ADMIN_KEY);
            s_dec_admin_value(d);
        }
    }
    return s_span(start, d->rd.pos);
}

static void
s_dec_admin_rep(s_dec_t *d, dxb_frame_t *f)
{
    f->u.admin_rep.code = (uint16_t)s_uint(d, "code", 0, UINT16_MAX);
    f->u.admin_rep.message = s_text(d, "message", SIZE_MAX);
    f->u.admin_rep.result = s_dec_admin_result(d);
}

/* ---- governance (PROTOCOL.md section 10) ---------------------------------- */

static void
s_dec_gov_req(s_dec_t *d, dxb_frame_t *f)
{
    f->u.gov_req.req = (uint32_t)s_uint(d, "req", 0, UINT32_MAX);
    dxb_bytes_t op = s_text(d, "op", S_MAX_COMMAND);
    if (s_ok(d) && !s_command_valid(op.ptr, op.len)) {
        s_fail(d, "invalid operation name");
    }
    s_copy_cstr(d, op, f->u.gov_req.op);
    uint32_t n = s_list(d, "args", 0, DXB_MAX_GOV_ARGS);
    for (uint32_t i = 0; i < n && s_ok(d); i++) {
        s_at_sub(d, i);
        f->u.gov_req.args[i] = s_text(d, "args", DXB_MAX_GOV_ARG);
    }
    f->u.gov_req.n_args = (uint16_t)n;
}

static void
s_dec_gov_rep(s_dec_t *d, dxb_frame_t *f)
{
    f->u.gov_rep.req = (uint32_t)s_uint(d, "req", 0, UINT32_MAX);
    f->u.gov_rep.code = (uint16_t)s_uint(d, "code", 0, UINT16_MAX);
    f->u.gov_rep.message = s_text(d, "message", DXB_MAX_TEXT);
    f->u.gov_rep.result = s_dec_admin_result(d);
}

/* FIELD = [name:str(1..128), type:str(<=32), sensitivity:uint8(0..3)]. */
static void
s_dec_catfield(s_dec_t *d, dxb_catfield_t *cf)
{
    s_array_exact(d, "field", 3);
    cf->name = s_text(d, "name", 128);
    if (s_ok(d) && cf->name.len == 0) {
        s_fail(d, "empty");
    }
    cf->type = s_text(d, "type", 32);
    cf->sensitivity = (uint8_t)s_uint(d, "sensitivity", 0, 3);
}

static void
s_elem_catfield(s_dec_t *d, void *scratch)
{
    s_dec_catfield(d, scratch);
}

/* CATENTRY = [dataset:id, title, description, level, share, frequency,
 *             region, fields:[FIELD] (0..256)]. */
static void
s_dec_catentry(s_dec_t *d, dxb_catentry_t *ce)
{
    dxb_catfield_t scratch;
    s_array_exact(d, "entry", 8);
    s_id(d, "dataset", ce->dataset);
    ce->title = s_text(d, "title", 256);
    ce->description = s_text(d, "description", 1024);
    ce->level = (uint8_t)s_uint(d, "level", 0, 3);
    ce->share = (uint8_t)s_uint(d, "share", 0, 2);
    ce->frequency = s_text(d, "frequency", 32);
    s_region(d, "region", true, ce->region);
    s_dec_list(d, "fields", "field", 0, DXB_MAX_CAT_FIELDS, s_elem_catfield, &scratch,
               &ce->fields);
    ce->n_fields = (uint16_t)ce->fields.left;
}

static void
s_elem_catentry(s_dec_t *d, void *scratch)
{
    s_dec_catentry(d, scratch);
}

static void
s_dec_catalog(s_dec_t *d, dxb_frame_t *f)
{
    dxb_catentry_t scratch;
    s_dec_list(d, "entries", "entry", 0, DXB_MAX_CATALOG, s_elem_catentry, &scratch,
               &f->u.catalog.entries);
}

static void
s_dec_gov_state(s_dec_t *d, dxb_frame_t *f)
{
    dxb_bytes_t what = s_text(d, "what", S_MAX_COMMAND);
    if (s_ok(d) && !s_command_valid(what.ptr, what.len)) {
        s_fail(d, "invalid state name");
    }
    s_copy_cstr(d, what, f->u.gov_state.what);
    f->u.gov_state.rows = s_dec_admin_result(d);
}

typedef void (*s_frame_fn)(s_dec_t *d, dxb_frame_t *f);

/* Every frame type with its element count (version and type included). */
static const struct {
    uint8_t type;
    uint8_t n_elems;
    s_frame_fn fn;
} s_frames[] = {
    {DXB_T_HELLO, 6, s_dec_hello},
    {DXB_T_WELCOME, 7, s_dec_welcome},
    {DXB_T_PUBLISH, 3, s_dec_envs},
    {DXB_T_PUBACK, 3, s_dec_results},
    {DXB_T_DELIVER, 3, s_dec_envs},
    {DXB_T_DACK, 3, s_dec_results},
    {DXB_T_CREDIT, 3, s_dec_credit},
    {DXB_T_PING, 3, s_dec_ping},
    {DXB_T_PONG, 3, s_dec_ping},
    {DXB_T_ERROR, 5, s_dec_error},
    {DXB_T_DIRECTORY, 3, s_dec_directory},
    {DXB_T_BYE, 3, s_dec_bye},
    {DXB_T_API_PUBLISH, 8, s_dec_api_publish},
    {DXB_T_API_RESULT, 6, s_dec_api_result},
    {DXB_T_API_SUBSCRIBE, 4, s_dec_api_subscribe},
    {DXB_T_API_MESSAGE, 9, s_dec_api_message},
    {DXB_T_API_ACK, 3, s_dec_api_ack},
    {DXB_T_API_STREAM_BEGIN, 8, s_dec_api_stream_begin},
    {DXB_T_API_STREAM_DATA, 5, s_dec_api_stream_data},
    {DXB_T_API_STREAM_END, 4, s_dec_api_stream_end},
    {DXB_T_GOV_REQ, 5, s_dec_gov_req},
    {DXB_T_GOV_REP, 6, s_dec_gov_rep},
    {DXB_T_CATALOG, 3, s_dec_catalog},
    {DXB_T_GOV_STATE, 4, s_dec_gov_state},
    {DXB_T_ADMIN_REQ, 4, s_dec_admin_req},
    {DXB_T_ADMIN_REP, 5, s_dec_admin_rep},
};

/* Returns the table index of a type, or -1; reserved ranges are unknown. */
static int
s_frame_index(uint64_t type)
{
    for (size_t i = 0; i < sizeof(s_frames) / sizeof(s_frames[0]); i++) {
        if (s_frames[i].type == type) {
            return (int)i;
        }
    }
    return -1;
}

/* [version, type, ...]: checks the prefix and returns the table index. */
static int
s_dec_prefix(s_dec_t *d)
{
    s_at(d, "frame");
    uint32_t n = dxb_rd_array(&d->rd);
    if (s_ok(d) && n == 0) {
        s_fail(d, "wrong element count");
    }
    uint64_t version = s_uint(d, "version", 0, UINT64_MAX);
    if (s_ok(d) && version != DXB_PROTO_VERSION) {
        s_fail_code(d, DXB_EVERSION, "unsupported version");
    }
    if (s_ok(d) && n < 2) {
        s_at(d, "frame");
        s_fail(d, "wrong element count");
    }
    uint64_t type = s_uint(d, "type", 0, UINT64_MAX);
    int idx = s_ok(d) ? s_frame_index(type) : -1;
    if (s_ok(d) && idx < 0) {
        s_fail_code(d, DXB_ETYPE, "unknown type");
    }
    if (s_ok(d) && n != s_frames[idx].n_elems) {
        s_at(d, "frame");
        s_fail(d, "wrong element count");
    }
    return s_ok(d) ? idx : -1;
}

dxb_err_t
dxb_msg_decode(const uint8_t *buf, size_t len, size_t max_len, dxb_frame_t *out, char *detail,
               size_t detail_cap)
{
    s_dec_t d;
    s_dec_init(&d, buf, len);
    memset(out, 0, sizeof(*out));
    /* PROTO-R2: checked again here whatever the socket was told. */
    if (len > max_len || len > DXB_MAX_FRAME_BYTES_HARD) {
        s_at(&d, "frame");
        s_fail_code(&d, DXB_ETOOBIG, "over the size limit");
        return s_finish(&d, detail, detail_cap);
    }
    int idx = s_dec_prefix(&d);
    if (idx >= 0) {
        out->type = s_frames[idx].type;
        s_frames[idx].fn(&d, out);
    }
    s_expect_end(&d);
    return s_finish(&d, detail, detail_cap);
}

dxb_err_t
dxb_msg_decode_env(const uint8_t *buf, size_t len, dxb_env_t *out, char *detail, size_t detail_cap)
{
    s_dec_t d;
    s_dec_init(&d, buf, len);
    memset(out, 0, sizeof(*out));
    s_dec_env(&d, out);
    s_expect_end(&d);
    return s_finish(&d, detail, detail_cap);
}

/* ---- iterators ----------------------------------------------------------- */

/* Runs one element decoder on the iterator's next bytes. The list was
 * validated by dxb_msg_decode, so failure means misuse; it ends the walk. */
static bool
s_iter_next(dxb_iter_t *it, s_elem_fn fn, void *out)
{
    if (it->left == 0 || it->pos == NULL) {
        return false;
    }
    s_dec_t d;
    s_dec_init(&d, it->pos, (size_t)(it->end - it->pos));
    fn(&d, out);
    if (!s_ok(&d)) {
        it->left = 0;
        return false;
    }
    it->pos = d.rd.pos;
    it->left--;
    return true;
}

bool
dxb_msg_next_env(dxb_iter_t *it, dxb_env_t *out)
{
    return s_iter_next(it, s_elem_env, out);
}

bool
dxb_msg_next_result(dxb_iter_t *it, dxb_result_t *out)
{
    return s_iter_next(it, s_elem_result, out);
}

bool
dxb_msg_next_catentry(dxb_iter_t *it, dxb_catentry_t *out)
{
    return s_iter_next(it, s_elem_catentry, out);
}

bool
dxb_msg_next_catfield(dxb_iter_t *it, dxb_catfield_t *out)
{
    return s_iter_next(it, s_elem_catfield, out);
}

bool
dxb_msg_next_nodeinfo(dxb_iter_t *it, dxb_nodeinfo_t *out)
{
    return s_iter_next(it, s_elem_nodeinfo, out);
}

void
dxb_msg_recipients_begin(dxb_bytes_t raw, uint16_t n, dxb_iter_t *it)
{
    dxb_rd_t rd;
    dxb_rd_init(&rd, raw.ptr, raw.len);
    uint32_t count = dxb_rd_array(&rd);
    *it = (dxb_iter_t){.pos = rd.pos, .end = rd.end, .left = 0};
    if (dxb_rd_ok(&rd)) {
        it->left = count < n ? count : n;
    }
}

bool
dxb_msg_next_recipient(dxb_iter_t *it, char out[DXB_ID_CAP])
{
    if (it->left == 0 || it->pos == NULL) {
        return false;
    }
    s_dec_t d;
    s_dec_init(&d, it->pos, (size_t)(it->end - it->pos));
    s_id(&d, "recipient", out);
    if (!s_ok(&d)) {
        it->left = 0;
        return false;
    }
    it->pos = d.rd.pos;
    it->left--;
    return true;
}

/* ---- suite-1 body and plaintext (section 5) ------------------------------ */

dxb_err_t
dxb_msg_decode_body1(const uint8_t *buf, size_t len, dxb_body1_t *out)
{
    s_dec_t d;
    s_dec_init(&d, buf, len);
    memset(out, 0, sizeof(*out));
    s_array_exact(&d, "body", 4);
    s_bin_fixed(&d, "nonce", out->nonce, S_NONCE_BYTES);
    const uint8_t *wraps_start = d.rd.pos;
    out->n_wraps = s_dec_wraps(&d);
    out->wraps_raw = s_span(wraps_start, d.rd.pos);
    out->ciphertext = s_bin(&d, "ciphertext", SIZE_MAX);
    s_bin_fixed(&d, "signature", out->signature, S_SIG_BYTES);
    s_expect_end(&d);
    return s_finish(&d, NULL, 0);
}

bool
dxb_msg_body1_find_wrap(const dxb_body1_t *body, const char *recipient, uint8_t wrap[80])
{
    dxb_rd_t rd;
    dxb_rd_init(&rd, body->wraps_raw.ptr, body->wraps_raw.len);
    size_t want = strlen(recipient);
    uint32_t n = dxb_rd_array(&rd);
    for (uint32_t i = 0; i < n && dxb_rd_ok(&rd); i++) {
        size_t id_len = 0;
        size_t wrap_len = 0;
        if (dxb_rd_array(&rd) != 2) {
            return false;
        }
        const uint8_t *id = dxb_rd_str(&rd, DXB_ID_MAX, &id_len);
        const uint8_t *w = dxb_rd_bin(&rd, S_WRAP_BYTES, &wrap_len);
        if (dxb_rd_ok(&rd) && wrap_len == S_WRAP_BYTES && id_len == want &&
            memcmp(id, recipient, want) == 0) {
            memcpy(wrap, w, S_WRAP_BYTES);
            return true;
        }
    }
    return false;
}

dxb_err_t
dxb_msg_decode_plain(const uint8_t *buf, size_t len, dxb_plain_t *out)
{
    s_dec_t d;
    s_dec_init(&d, buf, len);
    memset(out, 0, sizeof(*out));
    s_array_exact(&d, "plaintext", 3);
    out->name = s_filename(&d, "name");
    out->content_type = s_text(&d, "content_type", S_MAX_CONTENT_TYPE);
    out->payload = s_bin(&d, "payload", SIZE_MAX);
    s_expect_end(&d);
    return s_finish(&d, NULL, 0);
}

/* ---- encoding ------------------------------------------------------------ */

/* Packer state with a sticky status: after the first failure nothing more is
 * written, and s_enc_end cuts the buffer back to where this call started. */
typedef struct {
    msgpack_sbuffer *sbuf; /* borrowed */
    msgpack_packer pk;
    size_t mark; /* sbuf->size on entry */
    int rc;      /* first non-zero msgpack return */
} s_enc_t;

static void
s_enc_bare(s_enc_t *e, msgpack_sbuffer *sbuf)
{
    e->sbuf = sbuf;
    e->mark = sbuf->size;
    e->rc = 0;
    msgpack_packer_init(&e->pk, sbuf, msgpack_sbuffer_write);
}

static void
s_put_array(s_enc_t *e, size_t n)
{
    if (e->rc == 0) {
        e->rc = msgpack_pack_array(&e->pk, n);
    }
}

static void
s_put_uint(s_enc_t *e, uint64_t v)
{
    if (e->rc == 0) {
        e->rc = msgpack_pack_uint64(&e->pk, v);
    }
}

/* Bodies of zero length are not written: the sbuffer would memcpy to NULL. */
static void
s_put_str(s_enc_t *e, const void *p, size_t n)
{
    if (e->rc == 0) {
        e->rc = msgpack_pack_str(&e->pk, n);
    }
    if (e->rc == 0 && n > 0) {
        e->rc = msgpack_pack_str_body(&e->pk, p, n);
    }
}

static void
s_put_cstr(s_enc_t *e, const char *s)
{
    s_put_str(e, s, strlen(s));
}

static void
s_put_bin(s_enc_t *e, const void *p, size_t n)
{
    if (e->rc == 0) {
        e->rc = msgpack_pack_bin(&e->pk, n);
    }
    if (e->rc == 0 && n > 0) {
        e->rc = msgpack_pack_bin_body(&e->pk, p, n);
    }
}

/* Copies already-encoded msgpack bytes verbatim. */
static void
s_put_raw(s_enc_t *e, dxb_bytes_t raw)
{
    if (e->rc == 0 && raw.len > 0) {
        e->rc = msgpack_sbuffer_write(e->sbuf, (const char *)raw.ptr, raw.len);
    }
}

/* Starts a frame: [version, type, ...n_fields more]. */
static void
s_enc_frame(s_enc_t *e, msgpack_sbuffer *sbuf, uint8_t type, size_t n_fields)
{
    s_enc_bare(e, sbuf);
    s_put_array(e, 2 + n_fields);
    s_put_uint(e, DXB_PROTO_VERSION);
    s_put_uint(e, type);
}

static dxb_err_t
s_enc_end(s_enc_t *e)
{
    if (e->rc != 0) {
        e->sbuf->size = e->mark;
        return DXB_ENOMEM;
    }
    return DXB_OK;
}

/* ---- argument checks (the decoder's rules, applied before packing) ------- */

static bool
s_cstr_text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n <= max && s_utf8_valid((const uint8_t *)s, n);
}

static bool
s_cstr_id_ok(const char *s)
{
    return s != NULL && dxb_id_valid(s, strlen(s));
}

static bool
s_ids_ok(const char *const *ids, size_t n)
{
    if (n > 0 && ids == NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!s_cstr_id_ok(ids[i])) {
            return false;
        }
    }
    return true;
}

static bool
s_region_ok(const char *s, bool allow_empty)
{
    if (s == NULL) {
        return false;
    }
    size_t n = strlen(s);
    return (allow_empty && n == 0) || dxb_region_valid(s, n);
}

static bool
s_filename_ok(dxb_bytes_t name)
{
    return name.len <= S_MAX_FILENAME && name.ptr != NULL &&
           dxb_filename_safe((const char *)name.ptr, name.len) && s_utf8_valid(name.ptr, name.len);
}

/* Length of s cut to at most max bytes without splitting a UTF-8 sequence. */
static size_t
s_cut_text(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max) {
        return n;
    }
    n = max;
    while (n > 0 && ((uint8_t)s[n] & 0xc0) == 0x80) {
        n--;
    }
    return n;
}

/* Text that the encoder truncates instead of refusing (human messages). */
static bool
s_cut_text_ok(const char *s, size_t max, size_t *len_out)
{
    *len_out = s_cut_text(s, max);
    return s_utf8_valid((const uint8_t *)s, *len_out);
}

/* ---- frame encoders ------------------------------------------------------ */

dxb_err_t
dxb_msg_enc_hello(msgpack_sbuffer *sbuf, const char *node, const char *software, uint32_t window,
                  uint32_t heartbeat_ms)
{
    if (!s_cstr_id_ok(node) || software == NULL || !s_cstr_text_ok(software, S_MAX_SOFTWARE)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_HELLO, 4);
    s_put_cstr(&e, node);
    s_put_cstr(&e, software);
    s_put_uint(&e, window);
    s_put_uint(&e, heartbeat_ms);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_welcome(msgpack_sbuffer *sbuf, const char *node, const char *broker,
                    uint32_t heartbeat_ms, uint32_t max_frame, uint64_t epoch)
{
    if (!s_cstr_id_ok(node) || !s_cstr_id_ok(broker)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_WELCOME, 5);
    s_put_cstr(&e, node);
    s_put_cstr(&e, broker);
    s_put_uint(&e, heartbeat_ms);
    s_put_uint(&e, max_frame);
    s_put_uint(&e, epoch);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_envs(msgpack_sbuffer *sbuf, uint8_t type, const dxb_bytes_t *raw_envs, size_t n)
{
    if ((type != DXB_T_PUBLISH && type != DXB_T_DELIVER) || n == 0 || n > DXB_MAX_BATCH ||
        raw_envs == NULL) {
        return DXB_EINVAL;
    }
    /* The envelopes come from our own store, but a corrupt one must fail here
     * rather than make the peer refuse the whole frame. */
    for (size_t i = 0; i < n; i++) {
        dxb_env_t env;
        if (dxb_msg_decode_env(raw_envs[i].ptr, raw_envs[i].len, &env, NULL, 0) != DXB_OK) {
            return DXB_EINVAL;
        }
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, type, 1);
    s_put_array(&e, n);
    for (size_t i = 0; i < n; i++) {
        s_put_raw(&e, raw_envs[i]);
    }
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_results(msgpack_sbuffer *sbuf, uint8_t type, const dxb_result_t *results, size_t n)
{
    if ((type != DXB_T_PUBACK && type != DXB_T_DACK) || n == 0 || n > DXB_MAX_BATCH ||
        results == NULL) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, type, 1);
    s_put_array(&e, n);
    for (size_t i = 0; i < n; i++) {
        s_put_array(&e, 2);
        s_put_bin(&e, results[i].msg_id, DXB_MSGID_BYTES);
        s_put_uint(&e, results[i].code);
    }
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_credit(msgpack_sbuffer *sbuf, uint32_t window)
{
    if (window == 0 || window > S_MAX_CREDIT) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_CREDIT, 1);
    s_put_uint(&e, window);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_ping(msgpack_sbuffer *sbuf, uint8_t type, uint64_t t_ms)
{
    if (type != DXB_T_PING && type != DXB_T_PONG) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, type, 1);
    s_put_uint(&e, t_ms);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_error(msgpack_sbuffer *sbuf, uint16_t code, const uint8_t *ref, const char *text)
{
    size_t text_len = 0;
    if (text == NULL) {
        text = "";
    }
    if (!s_cut_text_ok(text, DXB_MAX_TEXT, &text_len)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_ERROR, 3);
    s_put_uint(&e, code);
    s_put_bin(&e, ref, ref == NULL ? 0 : DXB_MSGID_BYTES);
    s_put_str(&e, text, text_len);
    return s_enc_end(&e);
}

static bool
s_nodeinfo_ok(const dxb_nodeinfo_t *ni)
{
    return dxb_id_valid(ni->node, strnlen(ni->node, DXB_ID_CAP)) &&
           dxb_region_valid(ni->region, strnlen(ni->region, sizeof(ni->region))) &&
           ni->level >= 1 && ni->level <= 4 && ni->clearance <= 3;
}

dxb_err_t
dxb_msg_enc_directory(msgpack_sbuffer *sbuf, const dxb_nodeinfo_t *nodes, size_t n)
{
    if (n > DXB_MAX_DIRECTORY || (n > 0 && nodes == NULL)) {
        return DXB_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!s_nodeinfo_ok(&nodes[i])) {
            return DXB_EINVAL;
        }
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_DIRECTORY, 1);
    s_put_array(&e, n);
    for (size_t i = 0; i < n; i++) {
        s_put_array(&e, 6);
        s_put_cstr(&e, nodes[i].node);
        s_put_cstr(&e, nodes[i].region);
        s_put_uint(&e, nodes[i].level);
        s_put_uint(&e, nodes[i].clearance);
        s_put_bin(&e, nodes[i].sign_pk, S_PK_BYTES);
        s_put_bin(&e, nodes[i].box_pk, S_PK_BYTES);
    }
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_bye(msgpack_sbuffer *sbuf, const char *reason)
{
    /* Like ERROR text, a reason is for humans: cut, not refused. */
    size_t len = 0;
    if (reason == NULL) {
        reason = "";
    }
    if (!s_cut_text_ok(reason, DXB_MAX_TEXT, &len)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_BYE, 1);
    s_put_str(&e, reason, len);
    return s_enc_end(&e);
}

static bool
s_header_ok(const dxb_header_in_t *h)
{
    return h->msg_id != NULL && s_cstr_id_ok(h->sender) && s_cstr_id_ok(h->dataset) &&
           h->kind >= DXB_KIND_DELIVERY && h->kind <= DXB_KIND_CATALOG && h->seq >= 1 &&
           h->n_recipients >= 1 && h->n_recipients <= DXB_MAX_RECIPIENTS &&
           s_ids_ok(h->recipients, h->n_recipients) && s_region_ok(h->region, true) &&
           h->suite != 0 && (h->flags & ~DXB_HDR_FLAGS_KNOWN) == 0 &&
           ((h->flags & 2u) == 0 || (h->flags & 1u) != 0);
}

dxb_err_t
dxb_msg_enc_header(msgpack_sbuffer *sbuf, const dxb_header_in_t *h)
{
    if (h == NULL || !s_header_ok(h)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_bare(&e, sbuf);
    s_put_array(&e, 12);
    s_put_bin(&e, h->msg_id, DXB_MSGID_BYTES);
    s_put_cstr(&e, h->sender);
    s_put_cstr(&e, h->dataset);
    s_put_uint(&e, h->kind);
    s_put_uint(&e, h->seq);
    s_put_uint(&e, h->created_ms);
    s_put_uint(&e, h->ttl_s);
    s_put_array(&e, h->n_recipients);
    for (uint16_t i = 0; i < h->n_recipients; i++) {
        s_put_cstr(&e, h->recipients[i]);
    }
    s_put_cstr(&e, h->region);
    s_put_uint(&e, h->suite);
    s_put_uint(&e, h->flags);
    s_put_uint(&e, h->body_len);
    return s_enc_end(&e);
}

/* True when raw is exactly one valid HEADER whose body_len is body_len. */
static bool
s_header_raw_ok(dxb_bytes_t raw, size_t body_len)
{
    s_dec_t d;
    dxb_header_t h;
    s_dec_init(&d, raw.ptr, raw.len);
    s_dec_header(&d, &h);
    s_expect_end(&d);
    return s_ok(&d) && h.body_len == (uint64_t)body_len;
}

dxb_err_t
dxb_msg_enc_env(msgpack_sbuffer *sbuf, dxb_bytes_t header_raw,
                const uint8_t body_hash[DXB_HASH_BYTES], dxb_bytes_t body)
{
    if (body_hash == NULL || (body.len > 0 && body.ptr == NULL) ||
        !s_header_raw_ok(header_raw, body.len)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_bare(&e, sbuf);
    s_put_array(&e, 3);
    s_put_raw(&e, header_raw);
    s_put_bin(&e, body_hash, DXB_HASH_BYTES);
    s_put_bin(&e, body.ptr, body.len);
    return s_enc_end(&e);
}

/* True when raw is exactly one valid wraps array. */
static bool
s_wraps_raw_ok(dxb_bytes_t raw)
{
    s_dec_t d;
    s_dec_init(&d, raw.ptr, raw.len);
    (void)s_dec_wraps(&d);
    s_expect_end(&d);
    return s_ok(&d);
}

dxb_err_t
dxb_msg_enc_body1(msgpack_sbuffer *sbuf, const uint8_t nonce[24], dxb_bytes_t wraps_raw,
                  dxb_bytes_t ciphertext, const uint8_t signature[64])
{
    if (nonce == NULL || signature == NULL || (ciphertext.len > 0 && ciphertext.ptr == NULL) ||
        !s_wraps_raw_ok(wraps_raw)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_bare(&e, sbuf);
    s_put_array(&e, 4);
    s_put_bin(&e, nonce, S_NONCE_BYTES);
    s_put_raw(&e, wraps_raw);
    s_put_bin(&e, ciphertext.ptr, ciphertext.len);
    s_put_bin(&e, signature, S_SIG_BYTES);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_wraps(msgpack_sbuffer *sbuf, const char *const *recipients, const uint8_t (*wraps)[80],
                  size_t n)
{
    if (n == 0 || n > DXB_MAX_RECIPIENTS || wraps == NULL || !s_ids_ok(recipients, n)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_bare(&e, sbuf);
    s_put_array(&e, n);
    for (size_t i = 0; i < n; i++) {
        s_put_array(&e, 2);
        s_put_cstr(&e, recipients[i]);
        s_put_bin(&e, wraps[i], S_WRAP_BYTES);
    }
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_plain(msgpack_sbuffer *sbuf, dxb_bytes_t name, const char *content_type,
                  dxb_bytes_t payload)
{
    if (content_type == NULL) {
        content_type = "";
    }
    if (!s_filename_ok(name) || !s_cstr_text_ok(content_type, S_MAX_CONTENT_TYPE) ||
        (payload.len > 0 && payload.ptr == NULL)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_bare(&e, sbuf);
    s_put_array(&e, 3);
    s_put_str(&e, name.ptr, name.len);
    s_put_cstr(&e, content_type);
    s_put_bin(&e, payload.ptr, payload.len);
    return s_enc_end(&e);
}

/* ---- local API encoders ---------------------------------------------------- */

dxb_err_t
dxb_msg_enc_api_publish(msgpack_sbuffer *sbuf, uint32_t req, const char *dataset,
                        const char *const *recipients, uint16_t n_recipients, dxb_bytes_t name,
                        dxb_bytes_t payload, uint32_t ttl_s)
{
    if (!s_cstr_id_ok(dataset) || n_recipients == 0 || n_recipients > DXB_MAX_RECIPIENTS ||
        !s_ids_ok(recipients, n_recipients) || !s_filename_ok(name) ||
        (payload.len > 0 && payload.ptr == NULL)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_API_PUBLISH, 6);
    s_put_uint(&e, req);
    s_put_cstr(&e, dataset);
    s_put_array(&e, n_recipients);
    for (uint16_t i = 0; i < n_recipients; i++) {
        s_put_cstr(&e, recipients[i]);
    }
    s_put_str(&e, name.ptr, name.len);
    s_put_bin(&e, payload.ptr, payload.len);
    s_put_uint(&e, ttl_s);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_api_result(msgpack_sbuffer *sbuf, uint32_t req, uint16_t code, const uint8_t *msg_id,
                       const char *text)
{
    size_t text_len = 0;
    if (text == NULL) {
        text = "";
    }
    if (!s_cut_text_ok(text, DXB_MAX_TEXT, &text_len)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_API_RESULT, 4);
    s_put_uint(&e, req);
    s_put_uint(&e, code);
    s_put_bin(&e, msg_id, msg_id == NULL ? 0 : DXB_MSGID_BYTES);
    s_put_str(&e, text, text_len);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_api_subscribe(msgpack_sbuffer *sbuf, uint32_t req, const char *dataset)
{
    if (dataset == NULL) {
        dataset = "";
    }
    if (dataset[0] != '\0' && !s_cstr_id_ok(dataset)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_API_SUBSCRIBE, 2);
    s_put_uint(&e, req);
    s_put_cstr(&e, dataset);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_api_message(msgpack_sbuffer *sbuf, const uint8_t *msg_id, const char *sender,
                        const char *dataset, uint64_t seq, uint64_t created_ms, dxb_bytes_t name,
                        dxb_bytes_t payload)
{
    if (msg_id == NULL || !s_cstr_id_ok(sender) || !s_cstr_id_ok(dataset) || seq == 0 ||
        !s_filename_ok(name) || (payload.len > 0 && payload.ptr == NULL)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_API_MESSAGE, 7);
    s_put_bin(&e, msg_id, DXB_MSGID_BYTES);
    s_put_cstr(&e, sender);
    s_put_cstr(&e, dataset);
    s_put_uint(&e, seq);
    s_put_uint(&e, created_ms);
    s_put_str(&e, name.ptr, name.len);
    s_put_bin(&e, payload.ptr, payload.len);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_api_ack(msgpack_sbuffer *sbuf, const uint8_t *msg_id)
{
    if (msg_id == NULL) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_API_ACK, 1);
    s_put_bin(&e, msg_id, DXB_MSGID_BYTES);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_api_stream_begin(msgpack_sbuffer *sbuf, uint32_t req, const char *dataset,
                             const char *const *recipients, uint16_t n_recipients,
                             dxb_bytes_t name, uint64_t size, uint32_t ttl_s)
{
    if (!s_cstr_id_ok(dataset) || n_recipients == 0 || n_recipients > DXB_MAX_RECIPIENTS ||
        !s_ids_ok(recipients, n_recipients) || name.len > DXB_MAX_STREAM_NAME ||
        (name.len > 0 && name.ptr == NULL) || !s_utf8_valid(name.ptr, name.len)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_API_STREAM_BEGIN, 6);
    s_put_uint(&e, req);
    s_put_cstr(&e, dataset);
    s_put_array(&e, n_recipients);
    for (uint16_t i = 0; i < n_recipients; i++) {
        s_put_cstr(&e, recipients[i]);
    }
    s_put_str(&e, name.ptr, name.len);
    s_put_uint(&e, size);
    s_put_uint(&e, ttl_s);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_api_stream_data(msgpack_sbuffer *sbuf, uint32_t req, uint64_t offset,
                            dxb_bytes_t data)
{
    if (data.len == 0 || data.len > DXB_MAX_STREAM_DATA || data.ptr == NULL) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_API_STREAM_DATA, 3);
    s_put_uint(&e, req);
    s_put_uint(&e, offset);
    s_put_bin(&e, data.ptr, data.len);
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_api_stream_end(msgpack_sbuffer *sbuf, uint32_t req, const uint8_t hash[DXB_HASH_BYTES])
{
    if (hash == NULL) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_API_STREAM_END, 2);
    s_put_uint(&e, req);
    s_put_bin(&e, hash, DXB_HASH_BYTES);
    return s_enc_end(&e);
}

/* ---- admin encoders -------------------------------------------------------- */

dxb_err_t
dxb_msg_enc_admin_req(msgpack_sbuffer *sbuf, const char *command, const char *const *args,
                      size_t n_args)
{
    if (command == NULL || !s_command_valid((const uint8_t *)command, strlen(command)) ||
        n_args > DXB_MAX_ADMIN_ARGS || (n_args > 0 && args == NULL)) {
        return DXB_EINVAL;
    }
    for (size_t i = 0; i < n_args; i++) {
        if (args[i] == NULL || !s_cstr_text_ok(args[i], DXB_MAX_ADMIN_ARG)) {
            return DXB_EINVAL;
        }
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_ADMIN_REQ, 2);
    s_put_cstr(&e, command);
    s_put_array(&e, n_args);
    for (size_t i = 0; i < n_args; i++) {
        s_put_cstr(&e, args[i]);
    }
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_admin_rep_begin(msgpack_sbuffer *sbuf, msgpack_packer *pk_out, uint16_t code,
                            const char *message)
{
    if (pk_out == NULL) {
        return DXB_EINVAL;
    }
    if (message == NULL) {
        message = "";
    }
    if (!s_cstr_text_ok(message, SIZE_MAX)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_ADMIN_REP, 3);
    s_put_uint(&e, code);
    s_put_cstr(&e, message);
    msgpack_packer_init(pk_out, sbuf, msgpack_sbuffer_write);
    return s_enc_end(&e);
}

/* ---- governance encoders ----------------------------------------------------- */

dxb_err_t
dxb_msg_enc_gov_req(msgpack_sbuffer *sbuf, uint32_t req, const char *op, const char *const *args,
                    size_t n_args)
{
    if (op == NULL || !s_command_valid((const uint8_t *)op, strlen(op)) ||
        strlen(op) > S_MAX_COMMAND || n_args > DXB_MAX_GOV_ARGS || (n_args > 0 && args == NULL)) {
        return DXB_EINVAL;
    }
    for (size_t i = 0; i < n_args; i++) {
        if (args[i] == NULL || !s_cstr_text_ok(args[i], DXB_MAX_GOV_ARG)) {
            return DXB_EINVAL;
        }
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_GOV_REQ, 3);
    s_put_uint(&e, req);
    s_put_cstr(&e, op);
    s_put_array(&e, n_args);
    for (size_t i = 0; i < n_args; i++) {
        s_put_cstr(&e, args[i]);
    }
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_gov_rep_begin(msgpack_sbuffer *sbuf, msgpack_packer *pk_out, uint32_t req,
                          uint16_t code, const char *message)
{
    size_t len = 0;
    if (pk_out == NULL) {
        return DXB_EINVAL;
    }
    if (!s_cut_text_ok(message ? message : "", DXB_MAX_TEXT, &len)) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_GOV_REP, 4);
    s_put_uint(&e, req);
    s_put_uint(&e, code);
    s_put_str(&e, message ? message : "", len);
    msgpack_packer_init(pk_out, sbuf, msgpack_sbuffer_write);
    return s_enc_end(&e);
}

static bool
s_catentry_ok(const dxb_catentry_in_t *c)
{
    if (c->dataset == NULL || !s_cstr_id_ok(c->dataset) || c->title == NULL ||
        !s_cstr_text_ok(c->title, 256) || c->description == NULL ||
        !s_cstr_text_ok(c->description, 1024) || c->frequency == NULL ||
        !s_cstr_text_ok(c->frequency, 32) || c->region == NULL ||
        !s_region_ok(c->region, true) || c->level > 3 || c->share > 2 ||
        c->n_fields > DXB_MAX_CAT_FIELDS) {
        return false;
    }
    for (size_t i = 0; i < c->n_fields; i++) {
        if (c->field_names[i] == NULL || c->field_names[i][0] == '\0' ||
            !s_cstr_text_ok(c->field_names[i], 128) || c->field_types[i] == NULL ||
            !s_cstr_text_ok(c->field_types[i], 32) || c->field_sensitivity[i] > 3) {
            return false;
        }
    }
    return true;
}

dxb_err_t
dxb_msg_enc_catalog(msgpack_sbuffer *sbuf, const dxb_catentry_in_t *entries, size_t n)
{
    if (n > DXB_MAX_CATALOG || (n > 0 && entries == NULL)) {
        return DXB_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!s_catentry_ok(&entries[i])) {
            return DXB_EINVAL;
        }
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_CATALOG, 1);
    s_put_array(&e, n);
    for (size_t i = 0; i < n; i++) {
        const dxb_catentry_in_t *c = &entries[i];
        s_put_array(&e, 8);
        s_put_cstr(&e, c->dataset);
        s_put_cstr(&e, c->title);
        s_put_cstr(&e, c->description);
        s_put_uint(&e, c->level);
        s_put_uint(&e, c->share);
        s_put_cstr(&e, c->frequency);
        s_put_cstr(&e, c->region);
        s_put_array(&e, c->n_fields);
        for (size_t j = 0; j < c->n_fields; j++) {
            s_put_array(&e, 3);
            s_put_cstr(&e, c->field_names[j]);
            s_put_cstr(&e, c->field_types[j]);
            s_put_uint(&e, c->field_sensitivity[j]);
        }
    }
    return s_enc_end(&e);
}

dxb_err_t
dxb_msg_enc_gov_state_begin(msgpack_sbuffer *sbuf, msgpack_packer *pk_out, const char *what)
{
    if (pk_out == NULL || what == NULL || !s_command_valid((const uint8_t *)what, strlen(what)) ||
        strlen(what) > S_MAX_COMMAND) {
        return DXB_EINVAL;
    }
    s_enc_t e;
    s_enc_frame(&e, sbuf, DXB_T_GOV_STATE, 2);
    s_put_cstr(&e, what);
    msgpack_packer_init(pk_out, sbuf, msgpack_sbuffer_write);
    return s_enc_end(&e);
}

/* ---- error mapping --------------------------------------------------------- */

/* dxb_err_t codes without a wire twin are mapped by what the peer may
 * conclude (PROTOCOL.md section 6, last column):
 *   ENOMEM, ETIMEOUT -> EINTERNAL: our failure, and whether the operation
 *                       happened is unknown, which is what EINTERNAL says;
 *   ECONFIG          -> EINTERNAL: our misconfiguration, not the peer's fault;
 *   EEXIST           -> EINVAL: only admin/API objects can "already exist";
 *                       a duplicate message is answered OK by the protocol
 *                       itself (section 6), never through this mapping.
 * Anything unknown maps to EINTERNAL. */
static const uint16_t s_to_wire[DXB_ERR_COUNT] = {
    [DXB_OK] = DXB_W_OK,
    [DXB_EPROTO] = DXB_W_EPROTO,
    [DXB_EVERSION] = DXB_W_EVERSION,
    [DXB_ETYPE] = DXB_W_ETYPE,
    [DXB_ETOOBIG] = DXB_W_ETOOBIG,
    [DXB_EAUTH] = DXB_W_EAUTH,
    [DXB_EDENIED] = DXB_W_EDENIED,
    [DXB_ENOROUTE] = DXB_W_ENOROUTE,
    [DXB_EFULL] = DXB_W_EFULL,
    [DXB_EIO] = DXB_W_EIO,
    [DXB_EEXPIRED] = DXB_W_EEXPIRED,
    [DXB_EINTEGRITY] = DXB_W_EINTEGRITY,
    [DXB_ESPOOF] = DXB_W_ESPOOF,
    [DXB_ECRYPTO] = DXB_W_ECRYPTO,
    [DXB_ECONFIG] = DXB_W_EINTERNAL,
    [DXB_ENOTFOUND] = DXB_W_ENOTFOUND,
    [DXB_EEXIST] = DXB_W_EINVAL,
    [DXB_ENOMEM] = DXB_W_EINTERNAL,
    [DXB_EINVAL] = DXB_W_EINVAL,
    [DXB_ETIMEOUT] = DXB_W_EINTERNAL,
    [DXB_EAGAIN] = DXB_W_EAGAIN,
    [DXB_ESUITE] = DXB_W_ESUITE,
    [DXB_EINTERNAL] = DXB_W_EINTERNAL,
};

/* Wire code -> name and local code; the index is the wire code. */
static const struct {
    const char *name;
    dxb_err_t err;
} s_wire[] = {
    [DXB_W_OK] = {"OK", DXB_OK},
    [DXB_W_EPROTO] = {"EPROTO", DXB_EPROTO},
    [DXB_W_EVERSION] = {"EVERSION", DXB_EVERSION},
    [DXB_W_ETYPE] = {"ETYPE", DXB_ETYPE},
    [DXB_W_ETOOBIG] = {"ETOOBIG", DXB_ETOOBIG},
    [DXB_W_EAUTH] = {"EAUTH", DXB_EAUTH},
    [DXB_W_EDENIED] = {"EDENIED", DXB_EDENIED},
    [DXB_W_ENOROUTE] = {"ENOROUTE", DXB_ENOROUTE},
    [DXB_W_EFULL] = {"EFULL", DXB_EFULL},
    [DXB_W_EIO] = {"EIO", DXB_EIO},
    [DXB_W_EEXPIRED] = {"EEXPIRED", DXB_EEXPIRED},
    [DXB_W_EINTEGRITY] = {"EINTEGRITY", DXB_EINTEGRITY},
    [DXB_W_ESPOOF] = {"ESPOOF", DXB_ESPOOF},
    [DXB_W_ECRYPTO] = {"ECRYPTO", DXB_ECRYPTO},
    [DXB_W_ESUITE] = {"ESUITE", DXB_ESUITE},
    [DXB_W_EAGAIN] = {"EAGAIN", DXB_EAGAIN},
    [DXB_W_EINTERNAL] = {"EINTERNAL", DXB_EINTERNAL},
    [DXB_W_ENOTFOUND] = {"ENOTFOUND", DXB_ENOTFOUND},
    [DXB_W_EINVAL] = {"EINVAL", DXB_EINVAL},
};

#define S_WIRE_COUNT (sizeof(s_wire) / sizeof(s_wire[0]))

uint16_t
dxb_err_to_wire(dxb_err_t err)
{
    if ((unsigned)err >= DXB_ERR_COUNT) {
        return DXB_W_EINTERNAL;
    }
    return s_to_wire[err];
}

/* Unknown codes (from a newer peer) become EINTERNAL: the outcome is unknown. */
dxb_err_t
dxb_err_from_wire(uint16_t code)
{
    if (code >= S_WIRE_COUNT) {
        return DXB_EINTERNAL;
    }
    return s_wire[code].err;
}

const char *
dxb_wire_err_name(uint16_t code)
{
    if (code >= S_WIRE_COUNT) {
        return "E?";
    }
    return s_wire[code].name;
}
