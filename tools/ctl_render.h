/* ctl_render: prints the result of an admin command (PROTOCOL.md section 8)
 * for an operator (aligned table) or for a script (JSON).
 *
 * The result arrives from a socket, so it is walked only with the bounded
 * reader proto/dxb_rd.h, and it is checked completely before the first byte
 * is printed: a malformed result prints nothing on stdout, never half a table
 * or half a JSON document. Text from the broker is sanitised before it
 * reaches a terminal (no control or escape sequences, invalid UTF-8 replaced).
 *
 * Thread context: none; the functions only write to the FILE they are given.
 */
#ifndef CTL_RENDER_H
#define CTL_RENDER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/dxb_err.h"

/* Most columns a table may have (keys in the first row). */
#define CTL_RENDER_MAX_COLS 64
/* Longest key accepted in a row, in bytes. */
#define CTL_RENDER_MAX_KEY 128

typedef enum {
    CTL_RENDER_TABLE,    /* one line per row, columns aligned, headers upper-cased */
    CTL_RENDER_VERTICAL, /* one "KEY  value" line per field; for one-row results (stats) */
    CTL_RENDER_JSON,     /* the rows as a JSON array of objects; nil prints as [] */
} ctl_render_mode_t;

/* Renders result (len bytes of msgpack, borrowed: nil or an array of maps with
 * str keys and nil/bool/int/float/str values) on out in the given mode. An
 * empty result prints "(none)" in the human modes.
 * Errors: DXB_EPROTO when the result does not have that shape; then nothing is
 * printed and errbuf (may be NULL) receives a one-line reason. */
dxb_err_t ctl_render_result(FILE *out, const uint8_t *result, size_t len, ctl_render_mode_t mode,
                            char *errbuf, size_t errcap) DXB_MUST_CHECK;

/* Prints len bytes of untrusted text (a broker message) with control bytes
 * and invalid UTF-8 replaced by '?'. */
void ctl_render_text(FILE *out, const uint8_t *text, size_t len);

/* Prints len bytes as a quoted JSON string (escaped; invalid UTF-8 becomes
 * U+FFFD so that the document stays valid). */
void ctl_render_json_string(FILE *out, const uint8_t *text, size_t len);

#endif
