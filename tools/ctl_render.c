/* ctl_render: admin results as tables or JSON (see ctl_render.h).
 *
 * Every renderer walks the same borrowed bytes again with a fresh dxb_rd_t:
 * s_check_result() first validates the whole result, so the renderers may
 * assume its shape. A table takes two walks (column widths, then lines) so
 * that nothing is allocated in proportion to what the broker declared; the
 * only buffers are fixed arrays of CTL_RENDER_MAX_COLS cells.
 */
#include "tools/ctl_render.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "proto/dxb_rd.h"

/* Bytes of one formatted table cell; longer text is cut and ends in "...". */
#define CTL_CELL_CAP 256
/* An integer above this under a key ending in "_ms" is a wall-clock time
 * (it is after 2001-09-09); smaller ones are durations and stay numbers. */
#define CTL_TIMESTAMP_MIN_MS 1000000000000ULL
/* Spaces between table columns. */
#define CTL_COL_GAP 2

/* One scalar value of a row, borrowed from the result bytes. */
typedef struct {
    dxb_rd_type_t type; /* NIL, BOOL, UINT, INT, FLOAT or STR */
    bool b;
    uint64_t u;
    int64_t i;
    double f;
    const uint8_t *s; /* borrowed; STR only */
    size_t s_len;     /* bytes of s */
} ctl_value_t;

/* One column of a table: a key of the first row. */
typedef struct {
    const uint8_t *key; /* borrowed from the result */
    size_t key_len;     /* bytes, 1..CTL_RENDER_MAX_KEY */
    size_t width;       /* display columns of the widest cell, header included */
} ctl_col_t;

/* One formatted, sanitised cell. */
typedef struct {
    char text[CTL_CELL_CAP]; /* NUL-terminated UTF-8, no control characters */
    size_t len;              /* bytes in text */
    size_t width;            /* display columns */
} ctl_cell_t;

/* ---- text ------------------------------------------------------------- */

/* Decodes one UTF-8 sequence of at most left bytes. Returns its length, or 0
 * when the bytes are not valid UTF-8 (overlong, surrogate, too large, cut). */
static size_t
s_utf8_decode(const uint8_t *s, size_t left, uint32_t *cp_out)
{
    uint8_t b = s[0];
    size_t n;
    uint32_t cp;
    uint32_t min;

    if (b < 0x80) {
        *cp_out = b;
        return 1;
    }
    if (b >= 0xc2 && b <= 0xdf) {
        n = 2;
        cp = b & 0x1fu;
        min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
        n = 3;
        cp = b & 0x0fu;
        min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4;
        cp = b & 0x07u;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n > left) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    *cp_out = cp;
    return n;
}

/* False for code points that must not reach a terminal from a remote peer:
 * C0/C1 controls (escape sequences) and bidirectional overrides (which make
 * text look like other text). */
static bool
s_cp_printable(uint32_t cp)
{
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) {
        return false;
    }
    if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) {
        return false;
    }
    return true;
}

/* Terminal columns of a printable code point: 2 for East Asian wide and
 * full-width characters (Chinese names and details are expected), else 1. */
static size_t
s_cp_width(uint32_t cp)
{
    static const uint32_t wide[][2] = {
        {0x1100, 0x115f},   {0x2e80, 0x303e},   {0x3041, 0x33ff}, {0x3400, 0x4dbf},
        {0x4e00, 0x9fff},   {0xa000, 0xa4cf},   {0xac00, 0xd7a3}, {0xf900, 0xfaff},
        {0xfe30, 0xfe4f},   {0xff00, 0xff60},   {0xffe0, 0xffe6}, {0x1f300, 0x1f64f},
        {0x1f900, 0x1f9ff}, {0x20000, 0x3fffd},
    };

    for (size_t i = 0; i < sizeof(wide) / sizeof(wide[0]); i++) {
        if (cp >= wide[i][0] && cp <= wide[i][1]) {
            return 2;
        }
    }
    return 1;
}

/* Takes the next piece of untrusted text: a printable UTF-8 sequence, or "?"
 * in place of a control character or an invalid byte. Returns the bytes of
 * the input it consumed (>= 1). */
static size_t
s_next_safe(const uint8_t *s, size_t left, const uint8_t **piece, size_t *piece_len, size_t *width)
{
    uint32_t cp = 0;
    size_t n = s_utf8_decode(s, left, &cp);

    if (n == 0 || !s_cp_printable(cp)) {
        *piece = (const uint8_t *)"?";
        *piece_len = 1;
        *width = 1;
        return n == 0 ? 1 : n;
    }
    *piece = s;
    *piece_len = n;
    *width = s_cp_width(cp);
    return n;
}

void
ctl_render_text(FILE *out, const uint8_t *text, size_t len)
{
    size_t i = 0;

    while (i < len) {
        const uint8_t *piece;
        size_t piece_len;
        size_t width;

        i += s_next_safe(text + i, len - i, &piece, &piece_len, &width);
        fwrite(piece, 1, piece_len, out);
    }
}

void
ctl_render_json_string(FILE *out, const uint8_t *text, size_t len)
{
    size_t i = 0;

    fputc('"', out);
    while (i < len) {
        uint32_t cp = 0;
        size_t n = s_utf8_decode(text + i, len - i, &cp);

        if (n == 0) {
            /* Invalid UTF-8 would make the whole document invalid JSON. */
            fputs("\\ufffd", out);
            i++;
            continue;
        }
        if (cp == '"' || cp == '\\') {
            fprintf(out, "\\%c", (char)cp);
        } else if (cp == '\n') {
            fputs("\\n", out);
        } else if (cp == '\r') {
            fputs("\\r", out);
        } else if (cp == '\t') {
            fputs("\\t", out);
        } else if (cp < 0x20) {
            fprintf(out, "\\u%04x", (unsigned)cp);
        } else {
            fwrite(text + i, 1, n, out);
        }
        i += n;
    }
    fputc('"', out);
}

/* ---- values ----------------------------------------------------------- */

/* Reads one value of a row; anything but a scalar fails the reader. */
static void
s_read_value(dxb_rd_t *rd, ctl_value_t *v)
{
    memset(v, 0, sizeof(*v));
    v->type = dxb_rd_peek(rd);
    switch (v->type) {
    case DXB_RD_NIL:
        dxb_rd_nil(rd);
        break;
    case DXB_RD_BOOL:
        v->b = dxb_rd_bool(rd);
        break;
    case DXB_RD_UINT:
        v->u = dxb_rd_uint(rd, UINT64_MAX);
        break;
    case DXB_RD_INT:
        v->i = dxb_rd_int(rd);
        break;
    case DXB_RD_FLOAT:
        v->f = dxb_rd_float(rd);
        break;
    case DXB_RD_STR:
        v->s = dxb_rd_str(rd, SIZE_MAX, &v->s_len);
        break;
    default:
        dxb_rd_fail(rd, "a value is not nil, bool, int, float or str");
        break;
    }
}

/* Reads one key of a row: a non-empty str of at most CTL_RENDER_MAX_KEY bytes. */
static const uint8_t *
s_read_key(dxb_rd_t *rd, size_t *len_out)
{
    const uint8_t *key;

    *len_out = 0;
    if (dxb_rd_peek(rd) != DXB_RD_STR) {
        dxb_rd_fail(rd, "a key is not a str");
        return NULL;
    }
    key = dxb_rd_str(rd, CTL_RENDER_MAX_KEY, len_out);
    if (dxb_rd_ok(rd) && *len_out == 0) {
        dxb_rd_fail(rd, "a key is empty");
    }
    return key;
}

static bool
s_key_is(const uint8_t *key, size_t key_len, const char *name)
{
    size_t n = strlen(name);

    return key_len == n && memcmp(key, name, n) == 0;
}

static bool
s_key_ends(const uint8_t *key, size_t key_len, const char *suffix)
{
    size_t n = strlen(suffix);

    return key_len >= n && memcmp(key + key_len - n, suffix, n) == 0;
}

/* ---- checking --------------------------------------------------------- */

static void s_errf(char *errbuf, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
s_errf(char *errbuf, size_t errcap, const char *fmt, ...)
{
    va_list ap;

    if (errbuf == NULL || errcap == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(errbuf, errcap, fmt, ap);
    va_end(ap);
}

/* Checks one row. The first row names the columns, so its keys are bounded
 * in number and must be distinct; later rows may carry any keys (unknown
 * ones are not shown in a table). */
static void
s_check_row(dxb_rd_t *rd, bool first)
{
    const uint8_t *keys[CTL_RENDER_MAX_COLS];
    size_t key_lens[CTL_RENDER_MAX_COLS];
    uint32_t n = dxb_rd_map(rd);

    if (first && n > CTL_RENDER_MAX_COLS) {
        dxb_rd_fail(rd, "more columns than dxbctl shows");
        return;
    }
    for (uint32_t i = 0; i < n && dxb_rd_ok(rd); i++) {
        size_t key_len;
        const uint8_t *key = s_read_key(rd, &key_len);
        ctl_value_t v;

        s_read_value(rd, &v);
        if (!first || !dxb_rd_ok(rd)) {
            continue;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (key_lens[j] == key_len && memcmp(keys[j], key, key_len) == 0) {
                dxb_rd_fail(rd, "a key appears twice");
            }
        }
        keys[i] = key;
        key_lens[i] = key_len;
    }
}

/* Validates the whole result: nil, or an array of maps with str keys and
 * scalar values, and nothing after it. */
static dxb_err_t
s_check_result(const uint8_t *buf, size_t len, char *errbuf, size_t errcap)
{
    dxb_rd_t rd;
    uint32_t n_rows;
    uint32_t row = 0;

    dxb_rd_init(&rd, buf, len);
    if (dxb_rd_peek(&rd) == DXB_RD_NIL) {
        dxb_rd_nil(&rd);
    } else {
        n_rows = dxb_rd_array(&rd);
        while (row < n_rows && dxb_rd_ok(&rd)) {
            s_check_row(&rd, row == 0);
            row++;
        }
    }
    if (dxb_rd_ok(&rd) && dxb_rd_left(&rd) != 0) {
        dxb_rd_fail(&rd, "bytes follow the result");
    }
    if (dxb_rd_ok(&rd)) {
        return DXB_OK;
    }
    /* row counts the rows begun, so it is the 1-based number of the bad one. */
    if (row == 0) {
        s_errf(errbuf, errcap, "result: %s", rd.err);
    } else {
        s_errf(errbuf, errcap, "result row %" PRIu32 ": %s", row, rd.err);
    }
    return DXB_EPROTO;
}

/* Opens a checked result: returns the number of rows (0 for nil). */
static uint32_t
s_open_rows(dxb_rd_t *rd, const uint8_t *buf, size_t len)
{
    dxb_rd_init(rd, buf, len);
    if (dxb_rd_peek(rd) == DXB_RD_NIL) {
        dxb_rd_nil(rd);
        return 0;
    }
    return dxb_rd_array(rd);
}

/* ---- cells ------------------------------------------------------------ */

/* Sets the cell to sanitised text, cut to fit CTL_CELL_CAP. */
static void
s_cell_set(ctl_cell_t *cell, const uint8_t *s, size_t len)
{
    size_t i = 0;

    cell->len = 0;
    cell->width = 0;
    while (i < len) {
        const uint8_t *piece;
        size_t piece_len;
        size_t width;
        size_t used = s_next_safe(s + i, len - i, &piece, &piece_len, &width);

        /* Keep room for "..." and the NUL. */
        if (cell->len + piece_len + 4 > sizeof(cell->text)) {
            memcpy(cell->text + cell->len, "...", 3);
            cell->len += 3;
            cell->width += 3;
            break;
        }
        memcpy(cell->text + cell->len, piece, piece_len);
        cell->len += piece_len;
        cell->width += width;
        i += used;
    }
    cell->text[cell->len] = '\0';
}

static void
s_cell_set_str(ctl_cell_t *cell, const char *s)
{
    s_cell_set(cell, (const uint8_t *)s, strlen(s));
}

/* "2026-11-25 05:04:51" (UTC); false when the time cannot be shown. */
static bool
s_format_time(char *out, size_t cap, uint64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL) {
        return false;
    }
    return strftime(out, cap, "%Y-%m-%d %H:%M:%S", &tm) != 0;
}

/* "512 B", "1.2 KiB", "3.4 MiB", ... */
static void
s_format_bytes(char *out, size_t cap, uint64_t n)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v;
    size_t u = 0;

    if (n < 1024) {
        snprintf(out, cap, "%" PRIu64 " B", n);
        return;
    }
    v = (double)n / 1024.0;
    /* 1023.95 would print as "1024.0"; move up a unit instead. */
    while (v >= 1023.95 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, cap, "%.1f %s", v, units[u]);
}

/* "42s", "3m12s", "5h07m", "12d03h": two units are enough to judge an age. */
static void
s_format_age(char *out, size_t cap, uint64_t s)
{
    if (s < 60) {
        snprintf(out, cap, "%" PRIu64 "s", s);
    } else if (s < 3600) {
        snprintf(out, cap, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    } else if (s < 86400) {
        snprintf(out, cap, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
    } else {
        snprintf(out, cap, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s % 86400 / 3600);
    }
}

/* Formats an unsigned integer by what its key says it is. */
static void
s_format_uint(char *out, size_t cap, const uint8_t *key, size_t key_len, uint64_t u)
{
    if (s_key_ends(key, key_len, "_ms") && u > CTL_TIMESTAMP_MIN_MS && s_format_time(out, cap, u)) {
        return;
    }
    if (s_key_is(key, key_len, "bytes") || s_key_ends(key, key_len, "_bytes")) {
        s_format_bytes(out, cap, u);
        return;
    }
    if (s_key_is(key, key_len, "age_s") || s_key_ends(key, key_len, "_age_s")) {
        s_format_age(out, cap, u);
        return;
    }
    snprintf(out, cap, "%" PRIu64, u);
}

/* Formats one value for a human; v == NULL means the row lacks the key. */
static void
s_format_cell(ctl_cell_t *cell, const uint8_t *key, size_t key_len, const ctl_value_t *v)
{
    char tmp[64];

    if (v == NULL || v->type == DXB_RD_NIL) {
        s_cell_set_str(cell, "-");
        return;
    }
    switch (v->type) {
    case DXB_RD_BOOL:
        s_cell_set_str(cell, v->b ? "yes" : "no");
        return;
    case DXB_RD_UINT:
        s_format_uint(tmp, sizeof(tmp), key, key_len, v->u);
        break;
    case DXB_RD_INT:
        snprintf(tmp, sizeof(tmp), "%" PRId64, v->i);
        break;
    case DXB_RD_FLOAT:
        snprintf(tmp, sizeof(tmp), "%g", v->f);
        break;
    case DXB_RD_STR:
        s_cell_set(cell, v->s, v->s_len);
        return;
    default:
        s_cell_set_str(cell, "?");
        return;
    }
    s_cell_set_str(cell, tmp);
}

/* ---- table ------------------------------------------------------------ */

/* Takes the columns from the keys of the first row, in their order. */
static size_t
s_load_columns(const uint8_t *buf, size_t len, ctl_col_t *cols)
{
    dxb_rd_t rd;
    uint32_t n;

    if (s_open_rows(&rd, buf, len) == 0) {
        return 0;
    }
    n = dxb_rd_map(&rd);
    for (uint32_t i = 0; i < n && i < CTL_RENDER_MAX_COLS; i++) {
        ctl_value_t v;

        cols[i].key = s_read_key(&rd, &cols[i].key_len);
        cols[i].width = 0;
        s_read_value(&rd, &v);
    }
    return n;
}

static ptrdiff_t
s_find_column(const ctl_col_t *cols, size_t n_cols, const uint8_t *key, size_t key_len)
{
    for (size_t c = 0; c < n_cols; c++) {
        if (cols[c].key_len == key_len && memcmp(cols[c].key, key, key_len) == 0) {
            return (ptrdiff_t)c;
        }
    }
    return -1;
}

/* Reads one row and formats the value of each column into cells. */
static void
s_read_row(dxb_rd_t *rd, const ctl_col_t *cols, size_t n_cols, ctl_cell_t *cells)
{
    ctl_value_t values[CTL_RENDER_MAX_COLS];
    bool have[CTL_RENDER_MAX_COLS] = {false};
    uint32_t n = dxb_rd_map(rd);

    for (uint32_t i = 0; i < n; i++) {
        size_t key_len;
        const uint8_t *key = s_read_key(rd, &key_len);
        ctl_value_t v;
        ptrdiff_t c;

        s_read_value(rd, &v);
        c = s_find_column(cols, n_cols, key, key_len);
        if (c >= 0) {
            values[c] = v;
            have[c] = true;
        }
    }
    for (size_t c = 0; c < n_cols; c++) {
        s_format_cell(&cells[c], cols[c].key, cols[c].key_len, have[c] ? &values[c] : NULL);
    }
}

/* The header cell of a column: its key, upper-cased. */
static void
s_header_cell(ctl_cell_t *cell, const ctl_col_t *col)
{
    s_cell_set(cell, col->key, col->key_len);
    for (size_t i = 0; i < cell->len; i++) {
        if (cell->text[i] >= 'a' && cell->text[i] <= 'z') {
            cell->text[i] = (char)(cell->text[i] - 'a' + 'A');
        }
    }
}

static void
s_print_line(FILE *out, const ctl_col_t *cols, size_t n_cols, const ctl_cell_t *cells)
{
    for (size_t c = 0; c < n_cols; c++) {
        fwrite(cells[c].text, 1, cells[c].len, out);
        if (c + 1 < n_cols) {
            fprintf(out, "%*s", (int)(cols[c].width - cells[c].width + CTL_COL_GAP), "");
        }
    }
    fputc('\n', out);
}

static void
s_render_table(FILE *out, const uint8_t *buf, size_t len)
{
    ctl_col_t cols[CTL_RENDER_MAX_COLS];
    ctl_cell_t cells[CTL_RENDER_MAX_COLS];
    size_t n_cols = s_load_columns(buf, len, cols);
    dxb_rd_t rd;
    uint32_t n_rows;

    if (n_cols == 0) {
        /* No rows, or rows without fields: there is nothing to line up. */
        fputs("(none)\n", out);
        return;
    }
    for (size_t c = 0; c < n_cols; c++) {
        s_header_cell(&cells[c], &cols[c]);
        cols[c].width = cells[c].width;
    }
    n_rows = s_open_rows(&rd, buf, len);
    for (uint32_t r = 0; r < n_rows; r++) {
        s_read_row(&rd, cols, n_cols, cells);
        for (size_t c = 0; c < n_cols; c++) {
            if (cells[c].width > cols[c].width) {
                cols[c].width = cells[c].width;
            }
        }
    }

    for (size_t c = 0; c < n_cols; c++) {
        s_header_cell(&cells[c], &cols[c]);
    }
    s_print_line(out, cols, n_cols, cells);
    n_rows = s_open_rows(&rd, buf, len);
    for (uint32_t r = 0; r < n_rows; r++) {
        s_read_row(&rd, cols, n_cols, cells);
        s_print_line(out, cols, n_cols, cells);
    }
}

/* ---- vertical --------------------------------------------------------- */

/* Prints one row as "key  value" lines, keys padded to the longest. */
static void
s_render_fields(FILE *out, dxb_rd_t *rd)
{
    dxb_rd_t start = *rd;
    size_t key_width = 0;
    ctl_cell_t key_cell;
    ctl_cell_t value_cell;
    uint32_t n = dxb_rd_map(rd);

    for (uint32_t i = 0; i < n; i++) {
        size_t key_len;
        const uint8_t *key = s_read_key(rd, &key_len);
        ctl_value_t v;

        s_read_value(rd, &v);
        s_cell_set(&key_cell, key, key_len);
        if (key_cell.width > key_width) {
            key_width = key_cell.width;
        }
    }

    *rd = start;
    n = dxb_rd_map(rd);
    for (uint32_t i = 0; i < n; i++) {
        size_t key_len;
        const uint8_t *key = s_read_key(rd, &key_len);
        ctl_value_t v;

        s_read_value(rd, &v);
        s_cell_set(&key_cell, key, key_len);
        s_format_cell(&value_cell, key, key_len, &v);
        fprintf(out, "%s%*s%s\n", key_cell.text, (int)(key_width - key_cell.width + CTL_COL_GAP),
                "", value_cell.text);
    }
}

static void
s_render_vertical(FILE *out, const uint8_t *buf, size_t len)
{
    dxb_rd_t rd;
    uint32_t n_rows = s_open_rows(&rd, buf, len);

    if (n_rows == 0) {
        fputs("(none)\n", out);
        return;
    }
    for (uint32_t r = 0; r < n_rows; r++) {
        if (r > 0) {
            fputc('\n', out);
        }
        s_render_fields(out, &rd);
    }
}

/* ---- JSON ------------------------------------------------------------- */

static void
s_print_json_value(FILE *out, const ctl_value_t *v)
{
    switch (v->type) {
    case DXB_RD_BOOL:
        fputs(v->b ? "true" : "false", out);
        break;
    case DXB_RD_UINT:
        fprintf(out, "%" PRIu64, v->u);
        break;
    case DXB_RD_INT:
        fprintf(out, "%" PRId64, v->i);
        break;
    case DXB_RD_FLOAT:
        /* JSON has no NaN or infinity. */
        if (isfinite(v->f)) {
            fprintf(out, "%.17g", v->f);
        } else {
            fputs("null", out);
        }
        break;
    case DXB_RD_STR:
        ctl_render_json_string(out, v->s, v->s_len);
        break;
    default:
        fputs("null", out);
        break;
    }
}

static void
s_render_json(FILE *out, const uint8_t *buf, size_t len)
{
    dxb_rd_t rd;
    uint32_t n_rows = s_open_rows(&rd, buf, len);

    if (n_rows == 0) {
        fputs("[]\n", out);
        return;
    }
    fputs("[\n", out);
    for (uint32_t r = 0; r < n_rows; r++) {
        uint32_t n = dxb_rd_map(&rd);

        fputs("  {", out);
        for (uint32_t i = 0; i < n; i++) {
            size_t key_len;
            const uint8_t *key = s_read_key(&rd, &key_len);
            ctl_value_t v;

            s_read_value(&rd, &v);
            if (i > 0) {
                fputs(", ", out);
            }
            ctl_render_json_string(out, key, key_len);
            fputs(": ", out);
            s_print_json_value(out, &v);
        }
        fputs(r + 1 < n_rows ? "},\n" : "}\n", out);
    }
    fputs("]\n", out);
}

/* ---- entry point ------------------------------------------------------ */

dxb_err_t
ctl_render_result(FILE *out, const uint8_t *result, size_t len, ctl_render_mode_t mode,
                  char *errbuf, size_t errcap)
{
    dxb_err_t rc = s_check_result(result, len, errbuf, errcap);

    if (rc != DXB_OK) {
        return rc;
    }
    switch (mode) {
    case CTL_RENDER_JSON:
        s_render_json(out, result, len);
        break;
    case CTL_RENDER_VERTICAL:
        s_render_vertical(out, result, len);
        break;
    case CTL_RENDER_TABLE:
    default:
        s_render_table(out, result, len);
        break;
    }
    return DXB_OK;
}
