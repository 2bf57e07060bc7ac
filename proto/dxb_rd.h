/* dxb_rd: a bounded msgpack reader for untrusted bytes.
 *
 * Why not msgpack-c's unpacker: it sizes allocations from the declared count
 * before reading (msgpack-c #1013, #985). This reader allocates nothing, checks
 * every declared length against the bytes left, and keeps a sticky error: after
 * the first failure every call returns a zero value and dxb_rd_ok() is false,
 * so callers check once per message (STYLE "Untrusted input").
 *
 * The cursor borrows the buffer; returned pointers point into it.
 */
#ifndef DXB_RD_H
#define DXB_RD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DXB_RD_NIL,
    DXB_RD_BOOL,
    DXB_RD_UINT,  /* positive integer */
    DXB_RD_INT,   /* negative integer */
    DXB_RD_FLOAT, /* float32 or float64 */
    DXB_RD_STR,
    DXB_RD_BIN,
    DXB_RD_ARRAY,
    DXB_RD_MAP,
    DXB_RD_EXT,
    DXB_RD_INVALID, /* reserved byte 0xc1, or end of input */
} dxb_rd_type_t;

typedef struct {
    const uint8_t *pos;  /* borrowed: next byte */
    const uint8_t *end;  /* borrowed: one past the last byte */
    const char *err;     /* static text of the first error, NULL while ok */
} dxb_rd_t;

void dxb_rd_init(dxb_rd_t *rd, const uint8_t *buf, size_t len);
/* True while no error has happened. */
bool dxb_rd_ok(const dxb_rd_t *rd);
/* Records an error (first one wins); err must be a static string. */
void dxb_rd_fail(dxb_rd_t *rd, const char *err);
size_t dxb_rd_left(const dxb_rd_t *rd);
/* Type of the next object without consuming it. */
dxb_rd_type_t dxb_rd_peek(const dxb_rd_t *rd);

/* Each reader consumes one object of exactly that type or fails. Counts
 * returned by array/map are checked: n <= bytes left (each element needs at
 * least one byte), so a huge declared count fails immediately. */
uint32_t dxb_rd_array(dxb_rd_t *rd);
uint32_t dxb_rd_map(dxb_rd_t *rd);
uint64_t dxb_rd_uint(dxb_rd_t *rd, uint64_t max); /* fails when > max */
int64_t dxb_rd_int(dxb_rd_t *rd);                 /* any integer that fits int64 */
bool dxb_rd_bool(dxb_rd_t *rd);
double dxb_rd_float(dxb_rd_t *rd);
void dxb_rd_nil(dxb_rd_t *rd);
/* str/bin: returns a borrowed pointer and the length; fails when len > max. */
const uint8_t *dxb_rd_str(dxb_rd_t *rd, size_t max, size_t *len_out);
const uint8_t *dxb_rd_bin(dxb_rd_t *rd, size_t max, size_t *len_out);
/* Skips one whole object of any type, recursing at most max_depth levels. */
void dxb_rd_skip(dxb_rd_t *rd, int max_depth);

#endif
