/* dxb_util: small helpers shared by every program: clocks, hex, identifier
 * validation, and file-system steps that durability depends on (fsync of
 * files and directories, atomic replace).
 *
 * Identifier rules (PROTOCOL.md section 3):
 *   node id   1..64 chars of [a-z0-9_-] in dot-separated labels, e.g. sq.hrss
 *   dataset   same alphabet and length as a node id
 *   region    exactly 6 ASCII digits (行政区划代码)
 */
#ifndef DXB_UTIL_H
#define DXB_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dxb_err.h"

#define DXB_ID_MAX 64

/* Wall-clock milliseconds since the Unix epoch (timestamps on the wire). */
uint64_t dxb_now_ms(void);
/* Monotonic milliseconds (timeouts; never goes backwards). */
uint64_t dxb_mono_ms(void);
/* Monotonic nanoseconds (benchmarks and latency). */
uint64_t dxb_mono_ns(void);

/* Writes 2*len lower-case hex digits and a NUL into out (size >= 2*len+1). */
void dxb_hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes exactly 2*out_len hex digits; false on any other input. */
bool dxb_hex_decode(const char *in, uint8_t *out, size_t out_len);

/* True when text is a valid node id or dataset id (rules above). */
bool dxb_id_valid(const char *text, size_t len);
/* True when text is a valid 6-digit region code. */
bool dxb_region_valid(const char *text, size_t len);
/* True when a file name is safe to create inside a spool folder:
 * 1..200 bytes, no '/', no NUL, not "." or "..", does not start with '.'. */
bool dxb_filename_safe(const char *name, size_t len);

/* Creates dir and its parents with the given mode (existing dirs are fine). */
dxb_err_t dxb_mkdir_p(const char *path, unsigned mode) DXB_MUST_CHECK;
/* fsyncs a directory so that renames and creations inside it are durable. */
dxb_err_t dxb_fsync_dir(const char *path) DXB_MUST_CHECK;
/* Writes data to path atomically: path.tmp, write, fsync, rename, fsync dir. */
dxb_err_t dxb_write_file_atomic(const char *path, const void *data, size_t len,
                                unsigned mode) DXB_MUST_CHECK;
/* Reads a whole regular file of at most max_bytes. *out_p is malloc'd and
 * owned by the caller (NUL-terminated for convenience, not counted in len).
 * Errors: DXB_ENOTFOUND, DXB_ETOOBIG, DXB_EIO, DXB_ENOMEM. */
dxb_err_t dxb_read_file(const char *path, size_t max_bytes, uint8_t **out_p,
                        size_t *len_out) DXB_MUST_CHECK;
/* Makes a relative path absolute against base_dir (in place, capacity cap);
 * absolute and empty paths are left alone. */
void dxb_path_resolve(const char *base_dir, char *path, size_t cap);
/* Copies src into dst (capacity cap), always NUL-terminating; returns false on truncation. */
bool dxb_strlcpy(char *dst, const char *src, size_t cap);

#endif
