/* ctl_render: prints the result of an admin command (PROTOCOL.md section 8)
 * for an operator (aligned table) or for a script (JSON).
 *
 * The result arrives from a socket, so it is walked only with the bounded
 * reader proto/dxb_rd.h, and it is checked completely before the first byte
 * is printed: a malformed result prints nothing on stdout, never half a table
 * or half a JSON document. Text from the broker is sanitised before it
 * reaches a terminal (no control or escape sequences, invalid UTF-8 replaced).
 *
 * It also formats figures in human units, and decodes and shows the rows of
 * the `transfers` command (listing, progress bars, one-line summaries) for
 * `dxbctl transfers`, which owns the polling and the terminal.
 *
 * Thread context: none; the functions only write to the FILE they are given.
 */
#ifndef CTL_RENDER_H
#define CTL_RENDER_H

#include <stdbool.h>
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
    CTL_RENDER_JSONL,    /* one JSON object per row, one per line; nil prints nothing */
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

/* ---- human units ------------------------------------------------------ */

/* "512 B", "1.2 KiB", "3.4 MiB", ...: binary units, one decimal. */
void ctl_render_format_bytes(char *out, size_t cap, uint64_t n);

/* "512 B/s", "85.3 MiB/s", ...: as ctl_render_format_bytes, per second; a
 * negative or non-finite rate prints as "0 B/s". */
void ctl_render_format_rate(char *out, size_t cap, double bytes_per_s);

/* "42s", "3m12s", "5h07m", "12d03h": the two largest units. */
void ctl_render_format_duration(char *out, size_t cap, uint64_t s);

/* ---- transfers -------------------------------------------------------- */

/* Hex digits of a transfer id (16 bytes). */
#define CTL_XFER_ID_LEN 32
/* Hex digits of a transfer id shown in tables and lines. */
#define CTL_XFER_SHORT_ID_LEN 12
/* Bytes of a sender or dataset text, NUL included; longer ones are cut. */
#define CTL_XFER_TEXT_CAP 160

typedef enum {
    CTL_XFER_RECEIVING,  /* the broker does not have every chunk yet */
    CTL_XFER_DELIVERING, /* stored whole; recipients still acknowledging */
    CTL_XFER_DONE,       /* every recipient acknowledged every chunk */
    CTL_XFER_UNKNOWN,    /* a state word this dxbctl does not know */
} ctl_xfer_state_t;

/* One row of the `transfers` result (PROTOCOL.md section 8), decoded and
 * sanitised. A key the row lacks, or with a value of the wrong type, leaves
 * the field at its default (texts "-", numbers 0, eta_s -1). */
typedef struct {
    char id[CTL_XFER_ID_LEN + 4];    /* xfer_id as sent, sanitised; a longer one is cut
                                        after 32 bytes and marked "..."; "" absent */
    char sender[CTL_XFER_TEXT_CAP];  /* sanitised node id */
    char dataset[CTL_XFER_TEXT_CAP]; /* sanitised dataset id */
    char state_text[16];             /* the state word as sent, sanitised */
    ctl_xfer_state_t state;          /* state_text, classified */
    uint64_t recipients;             /* nodes the file goes to */
    uint64_t chunks;                 /* chunks of the file; 0 until known */
    uint64_t stored_chunks;          /* distinct chunks the broker stored */
    uint64_t acked_chunks;           /* chunk deliveries acknowledged, all recipients */
    uint64_t total_bytes;            /* file bytes; 0 until known */
    uint64_t stored_bytes;           /* envelope bytes stored at the broker */
    uint64_t resent_bytes;           /* bytes the sender sent again */
    double progress;                 /* 0..1: share of deliveries acknowledged */
    double rate_bps;                 /* >= 0: file bytes per second to all recipients */
    double eta_s;                    /* seconds left; < 0 unknown, 0 done */
    uint64_t started_ms;             /* wall clock of the first piece; 0 unknown */
    uint64_t updated_ms;             /* wall clock of the last change; 0 unknown */
} ctl_xfer_t;

/* Visitor of ctl_render_xfer_each: x is borrowed for the call only; returns
 * false to stop the walk. */
typedef bool (*ctl_xfer_fn)(void *arg, const ctl_xfer_t *x);

/* Checks result (len bytes of msgpack, borrowed) like ctl_render_result, then
 * calls fn for each row in order.
 * Errors: DXB_EPROTO when the result has not the shape of a table; then fn is
 * never called and errbuf (may be NULL) receives a one-line reason. */
dxb_err_t ctl_render_xfer_each(const uint8_t *result, size_t len, ctl_xfer_fn fn, void *arg,
                               char *errbuf, size_t errcap) DXB_MUST_CHECK;

/* How ctl_render_xfer_table shows transfers. */
typedef struct {
    uint64_t now_ms;  /* local wall clock, for AGE */
    bool bars;        /* progress view: ID, PROGRESS (bar and percent), DONE, RATE, ETA,
                         STATE, SENDER, DATASET; else the listing: ID, SENDER, DATASET, RCPT,
                         STATE, DONE, PCT, RATE, ETA, AGE */
    ctl_xfer_fn pick; /* rows to show; NULL: all. Called twice per row, so it must answer
                         the same both times */
    void *pick_arg;   /* borrowed; passed to pick */
    size_t max_rows;  /* rows printed at most; 0: no limit */
    size_t max_cols;  /* display columns per line at most (the bar shrinks first, then
                         lines are cut); 0: no limit */
} ctl_xfer_view_t;

/* Prints the transfers as an aligned table for a person, with a header line,
 * done/total and rate in binary units, ETA "-" when unknown; "(none)" when no
 * row is picked. *picked (may be NULL) receives the rows picked, printed or
 * not (beyond max_rows).
 * Errors: as ctl_render_xfer_each; nothing is printed then. */
dxb_err_t ctl_render_xfer_table(FILE *out, const uint8_t *result, size_t len,
                                const ctl_xfer_view_t *view, size_t *picked, char *errbuf,
                                size_t errcap) DXB_MUST_CHECK;

/* Formats one transfer as one plain line, for logs and pipes, into out (cap
 * bytes, NUL-terminated, no newline): short id, sender, dataset, state,
 * percent, done/total, rate and "eta ...". */
void ctl_render_xfer_line(char *out, size_t cap, const ctl_xfer_t *x);

#endif
