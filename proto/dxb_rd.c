/* dxb_rd: a bounded msgpack reader for untrusted bytes (see dxb_rd.h).
 *
 * Invariants: pos <= end always; nothing is read past end; after the first
 * failure err is set, pos stops moving and every reader returns a zero value.
 * Nothing here allocates, and no loop runs more often than there are bytes
 * left, so a hostile declared count costs nothing (PROTO-R6).
 * Thread context: none; a cursor belongs to one thread at a time.
 */
#include "proto/dxb_rd.h"

#include <string.h>

/* dxb_rd_skip keeps one pending-element counter per open container. The
 * protocol allows 8 levels (PROTO-R6); deeper requests are clamped to this. */
#define S_SKIP_DEPTH_CAP 64

void
dxb_rd_init(dxb_rd_t *rd, const uint8_t *buf, size_t len)
{
    rd->pos = buf;
    rd->end = buf == NULL ? NULL : buf + len;
    rd->err = NULL;
}

bool
dxb_rd_ok(const dxb_rd_t *rd)
{
    return rd->err == NULL;
}

void
dxb_rd_fail(dxb_rd_t *rd, const char *err)
{
    if (rd->err == NULL) {
        rd->err = err;
    }
}

size_t
dxb_rd_left(const dxb_rd_t *rd)
{
    return (size_t)(rd->end - rd->pos);
}

static dxb_rd_type_t
s_type_of(uint8_t b)
{
    if (b <= 0x7f || (b >= 0xcc && b <= 0xcf)) {
        return DXB_RD_UINT;
    }
    if (b >= 0xe0 || (b >= 0xd0 && b <= 0xd3)) {
        return DXB_RD_INT;
    }
    if (b <= 0x8f || b == 0xde || b == 0xdf) {
        return DXB_RD_MAP;
    }
    if (b <= 0x9f || b == 0xdc || b == 0xdd) {
        return DXB_RD_ARRAY;
    }
    if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb)) {
        return DXB_RD_STR;
    }
    switch (b) {
    case 0xc0:
        return DXB_RD_NIL;
    case 0xc2:
    case 0xc3:
        return DXB_RD_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return DXB_RD_BIN;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return DXB_RD_EXT;
    case 0xca:
    case 0xcb:
        return DXB_RD_FLOAT;
    default:
        return DXB_RD_INVALID; /* 0xc1 is never used */
    }
}

dxb_rd_type_t
dxb_rd_peek(const dxb_rd_t *rd)
{
    if (rd->err != NULL || rd->pos == rd->end) {
        return DXB_RD_INVALID;
    }
    return s_type_of(*rd->pos);
}

/* Reads an n-byte big-endian unsigned value (n = 1, 2, 4 or 8). */
static uint64_t
s_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

/* Consumes n bytes and returns where they start, or NULL (and fails) when
 * fewer are left. The check comes before any pointer arithmetic. */
static const uint8_t *
s_take(dxb_rd_t *rd, size_t n)
{
    if (rd->err != NULL) {
        return NULL;
    }
    if (n > dxb_rd_left(rd)) {
        dxb_rd_fail(rd, "truncated");
        return NULL;
    }
    const uint8_t *p = rd->pos;
    rd->pos += n;
    return p;
}

/* Consumes the type byte when it is of type `want`; fails otherwise. */
static int
s_tag(dxb_rd_t *rd, dxb_rd_type_t want, const char *mismatch)
{
    if (rd->err != NULL) {
        return -1;
    }
    if (rd->pos == rd->end) {
        dxb_rd_fail(rd, "truncated");
        return -1;
    }
    uint8_t b = *rd->pos;
    if (s_type_of(b) != want) {
        dxb_rd_fail(rd, mismatch);
        return -1;
    }
    rd->pos++;
    return b;
}

/* Reads the big-endian length that follows a tag; `n` is its width. */
static uint64_t
s_len(dxb_rd_t *rd, size_t n)
{
    const uint8_t *p = s_take(rd, n);
    return p == NULL ? 0 : s_be(p, n);
}

/* Fails unless `count` containers of `unit` bytes each can still fit. */
static uint32_t
s_check_count(dxb_rd_t *rd, uint64_t count, size_t unit)
{
    if (rd->err != NULL) {
        return 0;
    }
    /* PROTO-R6: each element needs at least one byte, so a count larger than
     * what is left is a lie; refuse it before anyone loops on it. */
    if (count > dxb_rd_left(rd) / unit) {
        dxb_rd_fail(rd, "count exceeds bytes left");
        return 0;
    }
    return (uint32_t)count;
}

uint32_t
dxb_rd_array(dxb_rd_t *rd)
{
    int b = s_tag(rd, DXB_RD_ARRAY, "expected array");
    if (b < 0) {
        return 0;
    }
    uint64_t n = b <= 0x9f ? (uint64_t)(b & 0x0f) : s_len(rd, b == 0xdc ? 2 : 4);
    return s_check_count(rd, n, 1);
}

uint32_t
dxb_rd_map(dxb_rd_t *rd)
{
    int b = s_tag(rd, DXB_RD_MAP, "expected map");
    if (b < 0) {
        return 0;
    }
    uint64_t n = b <= 0x8f ? (uint64_t)(b & 0x0f) : s_len(rd, b == 0xde ? 2 : 4);
    /* A map entry is a key and a value: at least two bytes. */
    return s_check_count(rd, n, 2);
}

uint64_t
dxb_rd_uint(dxb_rd_t *rd, uint64_t max)
{
    int b = s_tag(rd, DXB_RD_UINT, "expected uint");
    if (b < 0) {
        return 0;
    }
    uint64_t v = b <= 0x7f ? (uint64_t)b : s_len(rd, (size_t)1 << (b - 0xcc));
    if (rd->err != NULL) {
        return 0;
    }
    if (v > max) {
        dxb_rd_fail(rd, "integer out of range");
        return 0;
    }
    return v;
}

int64_t
dxb_rd_int(dxb_rd_t *rd)
{
    if (dxb_rd_peek(rd) == DXB_RD_UINT) {
        return (int64_t)dxb_rd_uint(rd, INT64_MAX);
    }
    int b = s_tag(rd, DXB_RD_INT, "expected integer");
    if (b < 0) {
        return 0;
    }
    if (b >= 0xe0) {
        return (int64_t)(int8_t)(uint8_t)b;
    }
    size_t n = (size_t)1 << (b - 0xd0);
    uint64_t u = s_len(rd, n);
    if (rd->err != NULL) {
        return 0;
    }
    /* Sign-extend from n bytes without relying on implementation-defined
     * conversions of out-of-range unsigned values. */
    switch (n) {
    case 1:
        return (int8_t)(uint8_t)u;
    case 2:
        return (int16_t)(uint16_t)u;
    case 4:
        return (int32_t)(uint32_t)u;
    default: {
        int64_t v;
        memcpy(&v, &u, sizeof(v));
        return v;
    }
    }
}

bool
dxb_rd_bool(dxb_rd_t *rd)
{
    return s_tag(rd, DXB_RD_BOOL, "expected bool") == 0xc3;
}

double
dxb_rd_float(dxb_rd_t *rd)
{
    int b = s_tag(rd, DXB_RD_FLOAT, "expected float");
    if (b < 0) {
        return 0.0;
    }
    if (b == 0xca) {
        uint32_t u = (uint32_t)s_len(rd, 4);
        float f;
        memcpy(&f, &u, sizeof(f));
        return rd->err != NULL ? 0.0 : (double)f;
    }
    uint64_t u = s_len(rd, 8);
    double d;
    memcpy(&d, &u, sizeof(d));
    return rd->err != NULL ? 0.0 : d;
}

void
dxb_rd_nil(dxb_rd_t *rd)
{
    (void)s_tag(rd, DXB_RD_NIL, "expected nil");
}

/* Shared tail of str and bin: the body of `len` bytes, checked twice. */
static const uint8_t *
s_body(dxb_rd_t *rd, uint64_t len, size_t max, size_t *len_out)
{
    *len_out = 0;
    if (rd->err != NULL) {
        return NULL;
    }
    if (len > max) {
        dxb_rd_fail(rd, "too long");
        return NULL;
    }
    const uint8_t *p = s_take(rd, (size_t)len);
    if (p == NULL) {
        return NULL;
    }
    *len_out = (size_t)len;
    return p;
}

const uint8_t *
dxb_rd_str(dxb_rd_t *rd, size_t max, size_t *len_out)
{
    int b = s_tag(rd, DXB_RD_STR, "expected str");
    if (b < 0) {
        *len_out = 0;
        return NULL;
    }
    uint64_t len = b <= 0xbf ? (uint64_t)(b & 0x1f) : s_len(rd, (size_t)1 << (b - 0xd9));
    return s_body(rd, len, max, len_out);
}

const uint8_t *
dxb_rd_bin(dxb_rd_t *rd, size_t max, size_t *len_out)
{
    int b = s_tag(rd, DXB_RD_BIN, "expected bin");
    if (b < 0) {
        *len_out = 0;
        return NULL;
    }
    uint64_t len = s_len(rd, (size_t)1 << (b - 0xc4));
    return s_body(rd, len, max, len_out);
}

/* Consumes one object's header and any scalar body. Returns how many child
 * objects follow (elements, or 2 per map entry); 0 for scalars. */
static uint64_t
s_skip_head(dxb_rd_t *rd)
{
    size_t len = 0;
    switch (dxb_rd_peek(rd)) {
    case DXB_RD_NIL:
    case DXB_RD_BOOL:
        (void)s_take(rd, 1);
        return 0;
    case DXB_RD_UINT:
        (void)dxb_rd_uint(rd, UINT64_MAX);
        return 0;
    case DXB_RD_INT:
        (void)dxb_rd_int(rd);
        return 0;
    case DXB_RD_FLOAT:
        (void)dxb_rd_float(rd);
        return 0;
    case DXB_RD_STR:
        (void)dxb_rd_str(rd, SIZE_MAX, &len);
        return 0;
    case DXB_RD_BIN:
        (void)dxb_rd_bin(rd, SIZE_MAX, &len);
        return 0;
    case DXB_RD_ARRAY:
        return dxb_rd_array(rd);
    case DXB_RD_MAP:
        return 2 * (uint64_t)dxb_rd_map(rd);
    case DXB_RD_EXT: {
        uint8_t b = *rd->pos;
        uint64_t n;
        rd->pos++;
        if (b >= 0xd4) {
            n = (uint64_t)1 << (b - 0xd4); /* fixext 1..16 */
        } else {
            n = s_len(rd, (size_t)1 << (b - 0xc7));
        }
        if (rd->err == NULL && n >= dxb_rd_left(rd)) {
            dxb_rd_fail(rd, "truncated");
            return 0;
        }
        (void)s_take(rd, 1 + (size_t)n); /* the ext type byte, then the data */
        return 0;
    }
    default:
        dxb_rd_fail(rd, rd->err == NULL && rd->pos == rd->end ? "truncated" : "invalid type byte");
        return 0;
    }
}

void
dxb_rd_skip(dxb_rd_t *rd, int max_depth)
{
    /* Iterative, with one counter per open container, so that hostile nesting
     * (100000 bytes of 0x91) costs neither stack nor time beyond max_depth. */
    uint64_t pending[S_SKIP_DEPTH_CAP + 1];
    int cap = max_depth < 0 ? 0 : max_depth > S_SKIP_DEPTH_CAP ? S_SKIP_DEPTH_CAP : max_depth;
    int depth = 0;
    pending[0] = 1;
    while (rd->err == NULL) {
        while (depth > 0 && pending[depth] == 0) {
            depth--;
        }
        if (pending[depth] == 0) {
            return;
        }
        pending[depth]--;
        uint64_t children = s_skip_head(rd);
        if (children == 0) {
            continue;
        }
        if (depth == cap) {
            dxb_rd_fail(rd, "nesting too deep");
            return;
        }
        pending[++depth] = children;
    }
}
