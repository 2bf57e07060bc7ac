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
/* Largest rate and time left shown, so that a double converts to uint64_t;
 * a longer time left prints as unknown. */
#define CTL_MAX_RATE 1e18
#define CTL_MAX_ETA_S 1e9
/* Cells of the progress bar: at most, and at least when a line is cut. */
#define CTL_BAR_MAX 20
#define CTL_BAR_MIN 5

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

/* Copies sanitised text into dst (cap >= 4 bytes, NUL-terminated), cut with
 * "..." when it does not fit. Returns the bytes written; *width receives the
 * display columns. */
static size_t
s_safe_copy(char *dst, size_t cap, const uint8_t *s, size_t len, size_t *width)
{
    size_t i = 0;
    size_t n = 0;

    *width = 0;
    while (i < len) {
        const uint8_t *piece;
        size_t piece_len;
        size_t piece_width;
        size_t used = s_next_safe(s + i, len - i, &piece, &piece_len, &piece_width);

        /* Keep room for "..." and the NUL. */
        if (n + piece_len + 4 > cap) {
            memcpy(dst + n, "...", 3);
            n += 3;
            *width += 3;
            break;
        }
        memcpy(dst + n, piece, piece_len);
        n += piece_len;
        *width += piece_width;
        i += used;
    }
    dst[n] = '\0';
    return n;
}

/* Sets the cell to sanitised text, cut to fit CTL_CELL_CAP. */
static void
s_cell_set(ctl_cell_t *cell, const uint8_t *s, size_t len)
{
    cell->len = s_safe_copy(cell->text, sizeof(cell->text), s, len, &cell->width);
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

void
ctl_render_format_bytes(char *out, size_t cap, uint64_t n)
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

void
ctl_render_format_rate(char *out, size_t cap, double bytes_per_s)
{
    char bytes[32];
    double v = bytes_per_s;

    /* The cast to an integer needs a finite value in range. */
    if (!isfinite(v) || v < 0.0) {
        v = 0.0;
    } else if (v > CTL_MAX_RATE) {
        v = CTL_MAX_RATE;
    }
    ctl_render_format_bytes(bytes, sizeof(bytes), (uint64_t)v);
    snprintf(out, cap, "%s/s", bytes);
}

/* Two units are enough to judge an age or a time left. */
void
ctl_render_format_duration(char *out, size_t cap, uint64_t s)
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
        ctl_render_format_bytes(out, cap, u);
        return;
    }
    if (s_key_is(key, key_len, "age_s") || s_key_ends(key, key_len, "_age_s")) {
        ctl_render_format_duration(out, cap, u);
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

/* JSON lines: each row alone on its line, for streams and for paging (the
 * pages of a long result concatenate into one valid document). */
static void
s_render_jsonl(FILE *out, const uint8_t *buf, size_t len)
{
    dxb_rd_t rd;
    uint32_t n_rows = s_open_rows(&rd, buf, len);

    for (uint32_t r = 0; r < n_rows; r++) {
        uint32_t n = dxb_rd_map(&rd);

        fputc('{', out);
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
        fputs("}\n", out);
    }
}

/* ---- transfers -------------------------------------------------------- */

/* Columns of the transfers tables; each view shows some in its own order. */
enum {
    CTL_XCOL_ID,
    CTL_XCOL_SENDER,
    CTL_XCOL_DATASET,
    CTL_XCOL_RCPT,
    CTL_XCOL_STATE,
    CTL_XCOL_BAR,
    CTL_XCOL_DONE,
    CTL_XCOL_PCT,
    CTL_XCOL_RATE,
    CTL_XCOL_ETA,
    CTL_XCOL_AGE,
    CTL_XCOL_COUNT,
};

static const char *const s_xfer_headers[CTL_XCOL_COUNT] = {
    "ID", "SENDER", "DATASET", "RCPT", "STATE", "PROGRESS", "DONE", "PCT", "RATE", "ETA", "AGE",
};

/* The listing, and the progress view: what matters most comes first, since
 * a line too wide for the terminal is cut at the right. */
static const size_t s_xfer_list_cols[] = {
    CTL_XCOL_ID,   CTL_XCOL_SENDER, CTL_XCOL_DATASET, CTL_XCOL_RCPT, CTL_XCOL_STATE,
    CTL_XCOL_DONE, CTL_XCOL_PCT,    CTL_XCOL_RATE,    CTL_XCOL_ETA,  CTL_XCOL_AGE,
};
static const size_t s_xfer_bar_cols[] = {
    CTL_XCOL_ID,  CTL_XCOL_BAR,   CTL_XCOL_DONE,   CTL_XCOL_RATE,
    CTL_XCOL_ETA, CTL_XCOL_STATE, CTL_XCOL_SENDER, CTL_XCOL_DATASET,
};

/* Least widths of the progress view's figures: "412.0 MiB / 1.0 GiB",
 * "85.3 MiB/s", "1m12s", "delivering". */
static const size_t s_xfer_bar_widths[CTL_XCOL_COUNT] = {
    [CTL_XCOL_DONE] = 19,
    [CTL_XCOL_RATE] = 10,
    [CTL_XCOL_ETA] = 5,
    [CTL_XCOL_STATE] = 10,
};

/* Both passes over a transfers table. */
typedef struct {
    const ctl_xfer_view_t *view;      /* borrowed */
    const size_t *order;              /* CTL_XCOL_* shown, in order; borrowed */
    size_t n_cols;                    /* entries in order */
    size_t bar_cells;                 /* cells of the progress bar; 0 while measuring */
    ctl_col_t cols[CTL_XCOL_COUNT];   /* in display order; widths grow while measuring */
    ctl_cell_t all[CTL_XCOL_COUNT];   /* the row being formatted, by CTL_XCOL_* */
    ctl_cell_t cells[CTL_XCOL_COUNT]; /* the same, in display order */
    FILE *out;                        /* NULL while measuring; borrowed */
    size_t picked;                    /* rows the view picked in this pass */
    size_t shown;                     /* of those, rows printed */
} ctl_xfer_table_t;

static void
s_value_text(char *dst, size_t cap, const ctl_value_t *v)
{
    size_t width;

    if (v->type == DXB_RD_STR) {
        (void)s_safe_copy(dst, cap, v->s, v->s_len, &width);
    }
}

/* A number as a double; dflt for nil, text or a non-finite float. */
static double
s_value_f64(const ctl_value_t *v, double dflt)
{
    switch (v->type) {
    case DXB_RD_UINT:
        return (double)v->u;
    case DXB_RD_INT:
        return (double)v->i;
    case DXB_RD_FLOAT:
        return isfinite(v->f) ? v->f : dflt;
    default:
        return dflt;
    }
}

/* Stores one field of a row; unknown keys and mistyped values are skipped,
 * so that a newer broker's extra columns do no harm. */
static void
s_xfer_field(ctl_xfer_t *x, const uint8_t *key, size_t key_len, const ctl_value_t *v)
{
    struct {
        const char *name;
        char *dst;
        size_t cap;
    } texts[] = {
        {"xfer_id", x->id, sizeof(x->id)},
        {"sender", x->sender, sizeof(x->sender)},
        {"dataset", x->dataset, sizeof(x->dataset)},
        {"state", x->state_text, sizeof(x->state_text)},
    };
    struct {
        const char *name;
        uint64_t *dst;
    } counts[] = {
        {"recipients", &x->recipients},       {"chunks", &x->chunks},
        {"stored_chunks", &x->stored_chunks}, {"acked_chunks", &x->acked_chunks},
        {"total_bytes", &x->total_bytes},     {"stored_bytes", &x->stored_bytes},
        {"resent_bytes", &x->resent_bytes},   {"started_ms", &x->started_ms},
        {"updated_ms", &x->updated_ms},
    };
    struct {
        const char *name;
        double *dst;
    } reals[] = {
        {"progress", &x->progress},
        {"rate_bps", &x->rate_bps},
        {"eta_s", &x->eta_s},
    };

    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        if (s_key_is(key, key_len, texts[i].name)) {
            s_value_text(texts[i].dst, texts[i].cap, v);
            return;
        }
    }
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        if (s_key_is(key, key_len, counts[i].name)) {
            if (v->type == DXB_RD_UINT) {
                *counts[i].dst = v->u;
            }
            return;
        }
    }
    for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
        if (s_key_is(key, key_len, reals[i].name)) {
            *reals[i].dst = s_value_f64(v, *reals[i].dst);
            return;
        }
    }
}

/* Reads one checked row into x and brings the figures into their ranges. */
static void
s_read_xfer(dxb_rd_t *rd, ctl_xfer_t *x)
{
    uint32_t n = dxb_rd_map(rd);

    memset(x, 0, sizeof(*x));
    strcpy(x->sender, "-");
    strcpy(x->dataset, "-");
    strcpy(x->state_text, "-");
    x->eta_s = -1.0;
    for (uint32_t i = 0; i < n; i++) {
        size_t key_len;
        const uint8_t *key = s_read_key(rd, &key_len);
        ctl_value_t v;

        s_read_value(rd, &v);
        s_xfer_field(x, key, key_len, &v);
    }
    if (strcmp(x->state_text, "receiving") == 0) {
        x->state = CTL_XFER_RECEIVING;
    } else if (strcmp(x->state_text, "delivering") == 0) {
        x->state = CTL_XFER_DELIVERING;
    } else if (strcmp(x->state_text, "done") == 0) {
        x->state = CTL_XFER_DONE;
    } else {
        x->state = CTL_XFER_UNKNOWN;
    }
    if (x->progress < 0.0) {
        x->progress = 0.0;
    } else if (x->progress > 1.0) {
        x->progress = 1.0;
    }
    if (x->rate_bps < 0.0) {
        x->rate_bps = 0.0;
    }
    if (x->eta_s > CTL_MAX_ETA_S) {
        x->eta_s = -1.0;
    }
}

dxb_err_t
ctl_render_xfer_each(const uint8_t *result, size_t len, ctl_xfer_fn fn, void *arg, char *errbuf,
                     size_t errcap)
{
    dxb_rd_t rd;
    uint32_t n_rows;
    dxb_err_t rc = s_check_result(result, len, errbuf, errcap);

    if (rc != DXB_OK) {
        return rc;
    }
    n_rows = s_open_rows(&rd, result, len);
    for (uint32_t r = 0; r < n_rows; r++) {
        ctl_xfer_t x;

        s_read_xfer(&rd, &x);
        if (!fn(arg, &x)) {
            break;
        }
    }
    return DXB_OK;
}

/* The first CTL_XFER_SHORT_ID_LEN digits of the id, or "-". */
static void
s_xfer_short_id(const ctl_xfer_t *x, char *out, size_t cap)
{
    snprintf(out, cap, "%.*s", CTL_XFER_SHORT_ID_LEN, x->id[0] != '\0' ? x->id : "-");
}

/* Whole percent delivered, rounded down: 100 only when all is done. */
static unsigned
s_xfer_percent(const ctl_xfer_t *x)
{
    /* progress is in 0..1, so the cast rounds down. */
    return x->state == CTL_XFER_DONE ? 100u : (unsigned)(x->progress * 100.0);
}

/* "412.0 MiB / 1.0 GiB": file bytes delivered to every recipient out of the
 * file's size ("-" until the broker knows it). */
static void
s_xfer_amount(const ctl_xfer_t *x, char *out, size_t cap)
{
    char done[32];
    char total[32] = "-";
    uint64_t done_bytes = x->state == CTL_XFER_DONE
                              ? x->total_bytes
                              : (uint64_t)(x->progress * (double)x->total_bytes);

    ctl_render_format_bytes(done, sizeof(done), done_bytes);
    if (x->total_bytes > 0 || x->chunks > 0) {
        ctl_render_format_bytes(total, sizeof(total), x->total_bytes);
    }
    snprintf(out, cap, "%s / %s", done, total);
}

static void
s_xfer_eta(const ctl_xfer_t *x, char *out, size_t cap)
{
    uint64_t s;

    if (x->eta_s < 0.0) {
        snprintf(out, cap, "-");
        return;
    }
    /* Round up: "0s" only when nothing is left. eta_s <= CTL_MAX_ETA_S. */
    s = (uint64_t)x->eta_s;
    if ((double)s < x->eta_s) {
        s++;
    }
    ctl_render_format_duration(out, cap, s);
}

/* "[#####-----]  42%": n cells of bar; full only when done. */
static void
s_xfer_bar(const ctl_xfer_t *x, size_t n, char *out, size_t cap)
{
    char cells[CTL_BAR_MAX + 1];
    size_t filled = x->state == CTL_XFER_DONE ? n : (size_t)(x->progress * (double)n);

    memset(cells, '#', filled);
    memset(cells + filled, '-', n - filled);
    cells[n] = '\0';
    snprintf(out, cap, "[%s] %3u%%", cells, s_xfer_percent(x));
}

/* Formats every column of x into cells (by CTL_XCOL_*); the bar has
 * bar_cells cells. */
static void
s_xfer_cells(const ctl_xfer_t *x, uint64_t now_ms, size_t bar_cells, ctl_cell_t *cells)
{
    char tmp[96];

    s_xfer_short_id(x, tmp, sizeof(tmp));
    s_cell_set_str(&cells[CTL_XCOL_ID], tmp);
    s_cell_set_str(&cells[CTL_XCOL_SENDER], x->sender);
    s_cell_set_str(&cells[CTL_XCOL_DATASET], x->dataset);
    snprintf(tmp, sizeof(tmp), "%" PRIu64, x->recipients);
    s_cell_set_str(&cells[CTL_XCOL_RCPT], tmp);
    s_cell_set_str(&cells[CTL_XCOL_STATE], x->state_text);
    s_xfer_bar(x, bar_cells, tmp, sizeof(tmp));
    s_cell_set_str(&cells[CTL_XCOL_BAR], tmp);
    s_xfer_amount(x, tmp, sizeof(tmp));
    s_cell_set_str(&cells[CTL_XCOL_DONE], tmp);
    snprintf(tmp, sizeof(tmp), "%u%%", s_xfer_percent(x));
    s_cell_set_str(&cells[CTL_XCOL_PCT], tmp);
    ctl_render_format_rate(tmp, sizeof(tmp), x->rate_bps);
    s_cell_set_str(&cells[CTL_XCOL_RATE], tmp);
    s_xfer_eta(x, tmp, sizeof(tmp));
    s_cell_set_str(&cells[CTL_XCOL_ETA], tmp);
    if (x->started_ms == 0) {
        snprintf(tmp, sizeof(tmp), "-");
    } else {
        /* A clock behind the broker's shows age 0, not a wrapped number. */
        ctl_render_format_duration(tmp, sizeof(tmp),
                                   now_ms > x->started_ms ? (now_ms - x->started_ms) / 1000 : 0);
    }
    s_cell_set_str(&cells[CTL_XCOL_AGE], tmp);
}

/* Cuts sanitised text to at most max_cols display columns, between
 * characters. */
static void
s_cut_width(char *text, size_t max_cols)
{
    size_t len = strlen(text);
    size_t i = 0;
    size_t cols = 0;

    while (i < len) {
        const uint8_t *piece;
        size_t piece_len;
        size_t width;
        size_t used = s_next_safe((const uint8_t *)text + i, len - i, &piece, &piece_len, &width);

        if (cols + width > max_cols) {
            text[i] = '\0';
            return;
        }
        cols += width;
        i += used;
    }
}

/* Prints one line of a transfers table, cut to the view's max_cols. */
static void
s_xfer_print_line(const ctl_xfer_table_t *t)
{
    /* A cell takes < CTL_CELL_CAP bytes and its padding at most the column's
     * width (< CTL_CELL_CAP, the widest cell's) plus the gap. */
    char line[CTL_XCOL_COUNT * (2 * CTL_CELL_CAP + CTL_COL_GAP) + 1];
    size_t n = 0;

    for (size_t c = 0; c < t->n_cols; c++) {
        memcpy(line + n, t->cells[c].text, t->cells[c].len);
        n += t->cells[c].len;
        if (c + 1 < t->n_cols) {
            size_t pad =
                (t->cols[c].width > t->cells[c].width ? t->cols[c].width - t->cells[c].width : 0) +
                CTL_COL_GAP;

            memset(line + n, ' ', pad);
            n += pad;
        }
    }
    line[n] = '\0';
    if (t->view->max_cols > 0) {
        s_cut_width(line, t->view->max_cols);
    }
    fputs(line, t->out);
    fputc('\n', t->out);
}

static bool
s_xfer_table_row(void *arg, const ctl_xfer_t *x)
{
    ctl_xfer_table_t *t = arg;
    const ctl_xfer_view_t *view = t->view;

    if (view->pick != NULL && !view->pick(view->pick_arg, x)) {
        return true;
    }
    t->picked++;
    if (view->max_rows > 0 && t->picked > view->max_rows) {
        return true;
    }
    s_xfer_cells(x, view->now_ms, t->bar_cells, t->all);
    for (size_t c = 0; c < t->n_cols; c++) {
        t->cells[c] = t->all[t->order[c]];
    }
    if (t->out != NULL) {
        s_xfer_print_line(t);
        t->shown++;
        return true;
    }
    for (size_t c = 0; c < t->n_cols; c++) {
        /* The bar column is sized after this pass, from the room left. */
        if (t->order[c] != CTL_XCOL_BAR && t->cells[c].width > t->cols[c].width) {
            t->cols[c].width = t->cells[c].width;
        }
    }
    return true;
}

/* The bar's cells: CTL_BAR_MAX, or fewer when the line would not fit. The
 * trailing texts (sender, dataset) are left out of the sum: they are cut
 * rather than the bar shrunk, so that the bar keeps its size from poll to
 * poll. */
static size_t
s_xfer_bar_cells(const ctl_xfer_table_t *t)
{
    size_t used = 0;
    /* "[" "]" " 100%" around the cells. */
    size_t frame = 2 + 5;

    if (t->view->max_cols == 0) {
        return CTL_BAR_MAX;
    }
    for (size_t c = 0; c < t->n_cols; c++) {
        size_t col = t->order[c];

        if (col == CTL_XCOL_SENDER || col == CTL_XCOL_DATASET) {
            continue;
        }
        used += (col == CTL_XCOL_BAR ? frame : t->cols[c].width) + CTL_COL_GAP;
    }
    if (used + CTL_BAR_MIN >= t->view->max_cols) {
        return CTL_BAR_MIN;
    }
    return t->view->max_cols - used < CTL_BAR_MAX ? t->view->max_cols - used : CTL_BAR_MAX;
}

dxb_err_t
ctl_render_xfer_table(FILE *out, const uint8_t *result, size_t len, const ctl_xfer_view_t *view,
                      size_t *picked, char *errbuf, size_t errcap)
{
    ctl_xfer_table_t t;
    dxb_err_t rc;

    memset(&t, 0, sizeof(t));
    t.view = view;
    t.order = view->bars ? s_xfer_bar_cols : s_xfer_list_cols;
    t.n_cols = view->bars ? sizeof(s_xfer_bar_cols) / sizeof(s_xfer_bar_cols[0])
                          : sizeof(s_xfer_list_cols) / sizeof(s_xfer_list_cols[0]);
    for (size_t c = 0; c < t.n_cols; c++) {
        const char *header = s_xfer_headers[t.order[c]];

        t.cols[c].key = (const uint8_t *)header;
        t.cols[c].key_len = strlen(header);
        t.cols[c].width = t.cols[c].key_len;
        /* Redrawn figures keep their columns while they grow. */
        if (view->bars && s_xfer_bar_widths[t.order[c]] > t.cols[c].width) {
            t.cols[c].width = s_xfer_bar_widths[t.order[c]];
        }
    }
    /* The first pass checks the result and measures; nothing is printed yet. */
    rc = ctl_render_xfer_each(result, len, s_xfer_table_row, &t, errbuf, errcap);
    if (rc != DXB_OK) {
        return rc;
    }
    if (picked != NULL) {
        *picked = t.picked;
    }
    if (t.picked == 0) {
        fputs("(none)\n", out);
        return DXB_OK;
    }
    t.bar_cells = s_xfer_bar_cells(&t);
    for (size_t c = 0; c < t.n_cols; c++) {
        if (t.order[c] == CTL_XCOL_BAR) {
            t.cols[c].width = t.bar_cells + 2 + 5;
        }
        s_header_cell(&t.cells[c], &t.cols[c]);
    }
    t.out = out;
    s_xfer_print_line(&t);
    t.picked = 0;
    return ctl_render_xfer_each(result, len, s_xfer_table_row, &t, errbuf, errcap);
}

void
ctl_render_xfer_line(char *out, size_t cap, const ctl_xfer_t *x)
{
    char id[CTL_XFER_SHORT_ID_LEN + 1];
    char amount[80];
    char rate[32];
    char eta[32];

    s_xfer_short_id(x, id, sizeof(id));
    s_xfer_amount(x, amount, sizeof(amount));
    ctl_render_format_rate(rate, sizeof(rate), x->rate_bps);
    s_xfer_eta(x, eta, sizeof(eta));
    snprintf(out, cap, "%s  %s  %s  %s  %u%%  %s  %s  eta %s", id, x->sender, x->dataset,
             x->state_text, s_xfer_percent(x), amount, rate, eta);
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
    case CTL_RENDER_JSONL:
        s_render_jsonl(out, result, len);
        break;
    case CTL_RENDER_TABLE:
    default:
        s_render_table(out, result, len);
        break;
    }
    return DXB_OK;
}
