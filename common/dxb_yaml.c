/* dxb_yaml: strict YAML configuration loading (see dxb_yaml.h).
 *
 * The loader drives libyaml's event parser and builds a tree of nodes. Each
 * node records the 1-based line and column of its first character (libyaml's
 * start_mark is 0-based). Strictness errors (anchors, aliases, tags, extra
 * documents, duplicate or non-scalar keys) are recorded and parsing goes on so
 * one run reports all of them; a libyaml syntax error, running out of memory
 * or a document past the depth / node limits stops the parse and drops the
 * tree (root NULL).
 *
 * Invariants: the document owns every node; a map's key nodes are scalars and
 * unique; a "poisoned" node stands in for a rejected alias so that getters
 * fail on it without piling a second error onto the first. Getters take const
 * nodes but flip the `used` flag of map entries: the flag lives in the entry
 * array the node points to, never in the node itself.
 *
 * Thread context: none; a document belongs to one thread.
 */
#include "common/dxb_yaml.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define YAML_MAX_BYTES (4u * 1024u * 1024u)
/* Far above any real config (4096 directory nodes x ~12 nodes each) and low
 * enough that a hostile 4 MiB file cannot make the loader allocate gigabytes. */
#define YAML_MAX_NODES 262144u
/* Keeps the recursive descent (and node freeing) off deep stacks. */
#define YAML_MAX_DEPTH 64
/* Error lines kept in the text; the count goes on past it. */
#define YAML_MAX_ERROR_LINES 100
/* File-derived text quoted in an error message is cut to this many bytes. */
#define YAML_QUOTE_MAX 64

typedef struct {
    dxb_yaml_node_t *key;   /* owned; always a scalar */
    dxb_yaml_node_t *value; /* owned; never NULL */
    bool used;              /* a getter or iterator asked for this entry */
} yaml_entry_t;

struct dxb_yaml_node {
    dxb_yaml_kind_t kind;
    int line;                /* 1-based */
    int col;                 /* 1-based */
    bool plain;              /* scalar written without quotes or block style */
    bool poisoned;           /* stands for a rejected alias: getters fail silently */
    char *text;              /* scalar text, owned, NUL-terminated; NULL otherwise */
    size_t text_len;         /* bytes of text; > strlen(text) when it holds a NUL */
    size_t n;                /* items (seq) or entries (map) in use */
    size_t cap;              /* allocated items or entries */
    dxb_yaml_node_t **items; /* seq: owned items */
    yaml_entry_t *entries;   /* map: owned entries */
};

struct dxb_yaml_doc {
    char *name;            /* owned copy of the file name used in errors */
    dxb_yaml_node_t *root; /* owned; NULL when empty or after a fatal parse error */
    char *errs;            /* owned error text, NUL-terminated; NULL until the first error */
    size_t errs_len;       /* bytes used in errs, without the NUL */
    size_t errs_cap;       /* bytes allocated for errs */
    int n_errs;            /* errors recorded, including those not kept as text */
};

typedef struct {
    yaml_parser_t parser; /* owned; initialised and deleted by dxb_yaml_load_buf */
    dxb_yaml_doc_t *doc;  /* borrowed */
    const char *buf;      /* borrowed input, for positions of reader errors */
    size_t len;           /* bytes of buf */
    size_t n_nodes;       /* nodes created so far */
    bool fatal;           /* parse stopped: syntax error, limit or ENOMEM */
    bool nomem;           /* the fatal error was an allocation failure */
} yaml_ctx_t;

/* ---- errors ------------------------------------------------------------ */

static bool
s_errs_reserve(dxb_yaml_doc_t *doc, size_t extra)
{
    if (doc->errs_len + extra + 1 <= doc->errs_cap) {
        return true;
    }
    size_t cap = doc->errs_cap ? doc->errs_cap : 256;
    while (cap < doc->errs_len + extra + 1) {
        cap *= 2;
    }
    char *grown = realloc(doc->errs, cap);
    if (grown == NULL) {
        return false;
    }
    doc->errs = grown;
    doc->errs_cap = cap;
    return true;
}

static void
s_errs_append(dxb_yaml_doc_t *doc, const char *line)
{
    size_t len = strlen(line);
    if (!s_errs_reserve(doc, len)) {
        /* The count still says something went wrong; only the text is lost. */
        return;
    }
    memcpy(doc->errs + doc->errs_len, line, len + 1);
    doc->errs_len += len;
}

static void s_error_at(dxb_yaml_doc_t *doc, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
s_verror_at(dxb_yaml_doc_t *doc, int line, int col, const char *fmt, va_list ap)
{
    doc->n_errs++;
    if (doc->n_errs > YAML_MAX_ERROR_LINES + 1) {
        return;
    }
    char msg[512];
    char text[1024];
    if (doc->n_errs == YAML_MAX_ERROR_LINES + 1) {
        snprintf(text, sizeof(text), "%.400s:%d:%d: too many errors, the rest are not shown\n",
                 doc->name, line, col);
    } else {
        /* Both parts are bounded so the line always fits, newline included. */
        vsnprintf(msg, sizeof(msg), fmt, ap);
        snprintf(text, sizeof(text), "%.400s:%d:%d: %s\n", doc->name, line, col, msg);
    }
    s_errs_append(doc, text);
}

static void
s_error_at(dxb_yaml_doc_t *doc, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_verror_at(doc, line, col, fmt, ap);
    va_end(ap);
}

void
dxb_yaml_error(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_verror_at(doc, node ? node->line : 1, node ? node->col : 1, fmt, ap);
    va_end(ap);
}

int
dxb_yaml_error_count(const dxb_yaml_doc_t *doc)
{
    return doc->n_errs;
}

const char *
dxb_yaml_errors(const dxb_yaml_doc_t *doc)
{
    return doc->errs ? doc->errs : "";
}

/* Copies file-derived text into out for an error message: control bytes
 * become '?' so that every error stays one line, long text is cut. */
static void
s_quote(const char *text, size_t len, char out[YAML_QUOTE_MAX + 4])
{
    size_t n = len < YAML_QUOTE_MAX ? len : YAML_QUOTE_MAX;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (len > n) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* ---- nodes ------------------------------------------------------------- */

static void
s_node_free(dxb_yaml_node_t *node)
{
    if (node == NULL) {
        return;
    }
    for (size_t i = 0; node->items && i < node->n; i++) {
        s_node_free(node->items[i]);
    }
    for (size_t i = 0; node->entries && i < node->n; i++) {
        s_node_free(node->entries[i].key);
        s_node_free(node->entries[i].value);
    }
    free(node->items);
    free(node->entries);
    free(node->text);
    free(node);
}

static dxb_yaml_node_t *
s_node_new(yaml_ctx_t *ctx, dxb_yaml_kind_t kind, const yaml_mark_t *mark)
{
    if (ctx->n_nodes >= YAML_MAX_NODES) {
        s_error_at(ctx->doc, (int)mark->line + 1, (int)mark->column + 1,
                   "document has more than %u nodes", YAML_MAX_NODES);
        ctx->fatal = true;
        return NULL;
    }
    dxb_yaml_node_t *node = calloc(1, sizeof(*node));
    if (node == NULL) {
        ctx->fatal = ctx->nomem = true;
        return NULL;
    }
    ctx->n_nodes++;
    node->kind = kind;
    node->line = (int)mark->line + 1;
    node->col = (int)mark->column + 1;
    return node;
}

/* Makes room for one more item or entry; false on allocation failure. */
static bool
s_node_grow(dxb_yaml_node_t *node)
{
    if (node->n < node->cap) {
        return true;
    }
    size_t cap = node->cap ? node->cap * 2 : 4;
    if (node->kind == DXB_YAML_SEQ) {
        dxb_yaml_node_t **items = realloc(node->items, cap * sizeof(*items));
        if (items == NULL) {
            return false;
        }
        node->items = items;
    } else {
        yaml_entry_t *entries = realloc(node->entries, cap * sizeof(*entries));
        if (entries == NULL) {
            return false;
        }
        node->entries = entries;
    }
    node->cap = cap;
    return true;
}

/* ---- parsing ----------------------------------------------------------- */

/* Line and column of a byte offset, for reader errors, which carry an offset
 * instead of a mark. Columns count characters (UTF-8 lead bytes) as libyaml's
 * marks do. */
static void
s_offset_position(const char *buf, size_t len, size_t offset, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n') {
            (*line)++;
            *col = 1;
        } else if ((c & 0xc0) != 0x80) {
            (*col)++;
        }
    }
}

static void
s_record_parser_error(yaml_ctx_t *ctx)
{
    yaml_parser_t *p = &ctx->parser;
    ctx->fatal = true;
    if (p->error == YAML_MEMORY_ERROR) {
        ctx->nomem = true;
        return;
    }
    const char *problem = p->problem ? p->problem : "syntax error";
    int line = (int)p->problem_mark.line + 1;
    int col = (int)p->problem_mark.column + 1;
    if (p->error == YAML_READER_ERROR) {
        s_offset_position(ctx->buf, ctx->len, p->problem_offset, &line, &col);
    }
    s_error_at(ctx->doc, line, col, "%s", problem);
}

/* Fetches the next event into ev (owned by the caller on true). */
static bool
s_next(yaml_ctx_t *ctx, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&ctx->parser, ev)) {
        s_record_parser_error(ctx);
        return false;
    }
    return true;
}

/* Records the strictness errors every node event can carry. */
static void
s_check_props(yaml_ctx_t *ctx, const yaml_event_t *ev, const yaml_char_t *anchor,
              const yaml_char_t *tag)
{
    int line = (int)ev->start_mark.line + 1;
    int col = (int)ev->start_mark.column + 1;
    if (anchor != NULL) {
        s_error_at(ctx->doc, line, col, "anchors are not allowed");
    }
    if (tag != NULL) {
        s_error_at(ctx->doc, line, col, "tags are not allowed");
    }
}

static dxb_yaml_node_t *s_parse_node(yaml_ctx_t *ctx, yaml_event_t *ev, int depth);

static dxb_yaml_node_t *
s_parse_scalar(yaml_ctx_t *ctx, const yaml_event_t *ev)
{
    s_check_props(ctx, ev, ev->data.scalar.anchor, ev->data.scalar.tag);
    dxb_yaml_node_t *node = s_node_new(ctx, DXB_YAML_SCALAR, &ev->start_mark);
    if (node == NULL) {
        return NULL;
    }
    size_t len = ev->data.scalar.length;
    node->text = malloc(len + 1);
    if (node->text == NULL) {
        ctx->fatal = ctx->nomem = true;
        s_node_free(node);
        return NULL;
    }
    memcpy(node->text, ev->data.scalar.value, len);
    node->text[len] = '\0';
    node->text_len = len;
    node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return node;
}

static dxb_yaml_node_t *
s_parse_alias(yaml_ctx_t *ctx, const yaml_event_t *ev)
{
    s_error_at(ctx->doc, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
               "aliases are not allowed");
    dxb_yaml_node_t *node = s_node_new(ctx, DXB_YAML_SCALAR, &ev->start_mark);
    if (node == NULL) {
        return NULL;
    }
    node->text = calloc(1, 1);
    if (node->text == NULL) {
        ctx->fatal = ctx->nomem = true;
        s_node_free(node);
        return NULL;
    }
    node->poisoned = true;
    return node;
}

static dxb_yaml_node_t *
s_parse_seq(yaml_ctx_t *ctx, dxb_yaml_node_t *seq, int depth)
{
    for (;;) {
        yaml_event_t ev;
        if (!s_next(ctx, &ev)) {
            goto out_free;
        }
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return seq;
        }
        dxb_yaml_node_t *item = s_parse_node(ctx, &ev, depth + 1);
        if (item == NULL) {
            goto out_free;
        }
        if (!s_node_grow(seq)) {
            ctx->fatal = ctx->nomem = true;
            s_node_free(item);
            goto out_free;
        }
        seq->items[seq->n++] = item;
    }
out_free:
    s_node_free(seq);
    return NULL;
}

static const yaml_entry_t *
s_map_find(const dxb_yaml_node_t *map, const char *key, size_t key_len)
{
    for (size_t i = 0; i < map->n; i++) {
        const dxb_yaml_node_t *k = map->entries[i].key;
        if (k->text_len == key_len && memcmp(k->text, key, key_len) == 0) {
            return &map->entries[i];
        }
    }
    return NULL;
}

/* Adds key: value to map, or records why the pair is dropped. Takes both
 * nodes. False only on allocation failure. */
static bool
s_map_add(yaml_ctx_t *ctx, dxb_yaml_node_t *map, dxb_yaml_node_t *key, dxb_yaml_node_t *value)
{
    if (key->kind != DXB_YAML_SCALAR) {
        dxb_yaml_error(ctx->doc, key, "mapping keys must be scalars");
        goto out_drop;
    }
    if (key->poisoned) {
        goto out_drop; /* the alias error is already recorded */
    }
    const yaml_entry_t *first = s_map_find(map, key->text, key->text_len);
    if (first != NULL) {
        char quoted[YAML_QUOTE_MAX + 4];
        s_quote(key->text, key->text_len, quoted);
        dxb_yaml_error(ctx->doc, key, "duplicate key '%s' (first at line %d)", quoted,
                       first->key->line);
        goto out_drop;
    }
    if (!s_node_grow(map)) {
        ctx->fatal = ctx->nomem = true;
        goto out_drop;
    }
    map->entries[map->n++] = (yaml_entry_t){.key = key, .value = value, .used = false};
    return true;
out_drop:
    s_node_free(key);
    s_node_free(value);
    return !ctx->fatal;
}

static dxb_yaml_node_t *
s_parse_map(yaml_ctx_t *ctx, dxb_yaml_node_t *map, int depth)
{
    for (;;) {
        yaml_event_t ev;
        if (!s_next(ctx, &ev)) {
            goto out_free;
        }
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return map;
        }
        dxb_yaml_node_t *key = s_parse_node(ctx, &ev, depth + 1);
        if (key == NULL) {
            goto out_free;
        }
        if (!s_next(ctx, &ev)) {
            s_node_free(key);
            goto out_free;
        }
        dxb_yaml_node_t *value = s_parse_node(ctx, &ev, depth + 1);
        if (value == NULL) {
            s_node_free(key);
            goto out_free;
        }
        if (!s_map_add(ctx, map, key, value)) {
            goto out_free;
        }
    }
out_free:
    s_node_free(map);
    return NULL;
}

/* Builds the node that starts with ev (taken and deleted here) and every
 * event up to its end. NULL when the parse must stop (ctx->fatal). */
static dxb_yaml_node_t *
s_parse_node(yaml_ctx_t *ctx, yaml_event_t *ev, int depth)
{
    dxb_yaml_node_t *node = NULL;
    dxb_yaml_kind_t kind = DXB_YAML_SCALAR;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        node = s_parse_scalar(ctx, ev);
        yaml_event_delete(ev);
        return node;
    case YAML_ALIAS_EVENT:
        node = s_parse_alias(ctx, ev);
        yaml_event_delete(ev);
        return node;
    case YAML_SEQUENCE_START_EVENT:
        s_check_props(ctx, ev, ev->data.sequence_start.anchor, ev->data.sequence_start.tag);
        kind = DXB_YAML_SEQ;
        break;
    case YAML_MAPPING_START_EVENT:
        s_check_props(ctx, ev, ev->data.mapping_start.anchor, ev->data.mapping_start.tag);
        kind = DXB_YAML_MAP;
        break;
    default:
        /* libyaml only hands out node events here; anything else is a bug. */
        s_error_at(ctx->doc, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                   "unexpected YAML event");
        ctx->fatal = true;
        yaml_event_delete(ev);
        return NULL;
    }
    if (depth >= YAML_MAX_DEPTH) {
        s_error_at(ctx->doc, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                   "nesting deeper than %d levels", YAML_MAX_DEPTH);
        ctx->fatal = true;
        yaml_event_delete(ev);
        return NULL;
    }
    node = s_node_new(ctx, kind, &ev->start_mark);
    yaml_event_delete(ev);
    if (node == NULL) {
        return NULL;
    }
    return kind == DXB_YAML_SEQ ? s_parse_seq(ctx, node, depth) : s_parse_map(ctx, node, depth);
}

/* Expects an event of the given type; anything else means libyaml broke its
 * own grammar, which is reported rather than trusted. */
static bool
s_expect(yaml_ctx_t *ctx, yaml_event_type_t type)
{
    yaml_event_t ev;
    if (!s_next(ctx, &ev)) {
        return false;
    }
    bool ok = ev.type == type;
    if (!ok) {
        s_error_at(ctx->doc, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                   "unexpected YAML event");
        ctx->fatal = true;
    }
    yaml_event_delete(&ev);
    return ok;
}

/* Parses the whole stream into ctx->doc->root. */
static void
s_parse_stream(yaml_ctx_t *ctx)
{
    yaml_event_t ev;
    if (!s_expect(ctx, YAML_STREAM_START_EVENT) || !s_next(ctx, &ev)) {
        return;
    }
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return; /* empty file or only comments */
    }
    yaml_event_delete(&ev); /* DOCUMENT-START */
    if (!s_next(ctx, &ev)) {
        return;
    }
    dxb_yaml_node_t *root = s_parse_node(ctx, &ev, 0);
    if (root == NULL) {
        return;
    }
    ctx->doc->root = root;
    if (!s_expect(ctx, YAML_DOCUMENT_END_EVENT) || !s_next(ctx, &ev)) {
        return;
    }
    if (ev.type == YAML_DOCUMENT_START_EVENT) {
        /* One file, one config: a second document would be silently ignored. */
        s_error_at(ctx->doc, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                   "multiple documents are not allowed");
    }
    yaml_event_delete(&ev);
}

/* ---- loading ----------------------------------------------------------- */

dxb_err_t
dxb_yaml_load_buf(const char *name, const char *buf, size_t len, dxb_yaml_doc_t **doc_out)
{
    if (len > YAML_MAX_BYTES) {
        return DXB_ETOOBIG;
    }
    dxb_err_t err = DXB_OK;
    dxb_yaml_doc_t *doc = calloc(1, sizeof(*doc));
    if (doc == NULL) {
        return DXB_ENOMEM;
    }
    yaml_ctx_t ctx = {.doc = doc, .buf = buf, .len = len};
    doc->name = strdup(name);
    if (doc->name == NULL) {
        err = DXB_ENOMEM;
        goto out_doc;
    }
    if (!yaml_parser_initialize(&ctx.parser)) {
        err = DXB_ENOMEM;
        goto out_doc;
    }
    yaml_parser_set_input_string(&ctx.parser, (const unsigned char *)buf, len);
    s_parse_stream(&ctx);
    yaml_parser_delete(&ctx.parser);
    if (ctx.nomem) {
        err = DXB_ENOMEM;
        goto out_doc;
    }
    if (ctx.fatal) {
        /* A half-built tree would make getters report misleading errors. */
        s_node_free(doc->root);
        doc->root = NULL;
    }
    *doc_out = doc;
    return DXB_OK;
out_doc:
    dxb_yaml_destroy(&doc);
    return err;
}

/* Reads a config file of at most YAML_MAX_BYTES. Unlike dxb_read_file this
 * follows symlinks: configs are often linked into place (/etc, ConfigMaps). */
static dxb_err_t
s_read_config(const char *path, char **buf_out, size_t *len_out)
{
    dxb_err_t err = DXB_OK;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? DXB_ENOTFOUND : DXB_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err = DXB_EIO;
        goto out_close;
    }
    if ((uint64_t)st.st_size > YAML_MAX_BYTES) {
        err = DXB_ETOOBIG;
        goto out_close;
    }
    /* One byte more than the limit, so a file that grew since fstat is caught. */
    buf = malloc(YAML_MAX_BYTES + 1);
    if (buf == NULL) {
        err = DXB_ENOMEM;
        goto out_close;
    }
    size_t got = 0;
    while (got <= YAML_MAX_BYTES) {
        ssize_t n = read(fd, buf + got, YAML_MAX_BYTES + 1 - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            err = DXB_EIO;
            goto out_free;
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    if (got > YAML_MAX_BYTES) {
        err = DXB_ETOOBIG;
        goto out_free;
    }
    *buf_out = buf;
    *len_out = got;
    buf = NULL;
out_free:
    free(buf);
out_close:
    close(fd);
    return err;
}

dxb_err_t
dxb_yaml_load_file(const char *path, dxb_yaml_doc_t **doc_out)
{
    char *buf = NULL;
    size_t len = 0;
    dxb_err_t err = s_read_config(path, &buf, &len);
    if (err != DXB_OK) {
        return err;
    }
    err = dxb_yaml_load_buf(path, buf, len, doc_out);
    free(buf);
    return err;
}

void
dxb_yaml_destroy(dxb_yaml_doc_t **doc_p)
{
    if (doc_p == NULL || *doc_p == NULL) {
        return;
    }
    dxb_yaml_doc_t *doc = *doc_p;
    s_node_free(doc->root);
    free(doc->errs);
    free(doc->name);
    free(doc);
    *doc_p = NULL;
}

/* ---- tree access ------------------------------------------------------- */

const dxb_yaml_node_t *
dxb_yaml_root(const dxb_yaml_doc_t *doc)
{
    /* An empty document ("---" alone) parses as a null scalar. */
    if (doc->root != NULL && dxb_yaml_is_null(doc->root)) {
        return NULL;
    }
    return doc->root;
}

dxb_yaml_kind_t
dxb_yaml_kind(const dxb_yaml_node_t *node)
{
    assert(node != NULL);
    return node->kind;
}

int
dxb_yaml_line(const dxb_yaml_node_t *node)
{
    return node ? node->line : 1;
}

int
dxb_yaml_col(const dxb_yaml_node_t *node)
{
    return node ? node->col : 1;
}

const char *
dxb_yaml_scalar(const dxb_yaml_node_t *node)
{
    return node && node->kind == DXB_YAML_SCALAR ? node->text : NULL;
}

bool
dxb_yaml_is_null(const dxb_yaml_node_t *node)
{
    if (node == NULL || node->kind != DXB_YAML_SCALAR || !node->plain) {
        return false;
    }
    return node->text_len == 0 || strcmp(node->text, "~") == 0 || strcmp(node->text, "null") == 0;
}

size_t
dxb_yaml_len(const dxb_yaml_node_t *node)
{
    return node && node->kind != DXB_YAML_SCALAR ? node->n : 0;
}

const dxb_yaml_node_t *
dxb_yaml_item(const dxb_yaml_node_t *seq, size_t i)
{
    if (seq == NULL || seq->kind != DXB_YAML_SEQ || i >= seq->n) {
        return NULL;
    }
    return seq->items[i];
}

const char *
dxb_yaml_map_key(const dxb_yaml_node_t *map, size_t i)
{
    if (map == NULL || map->kind != DXB_YAML_MAP || i >= map->n) {
        return NULL;
    }
    map->entries[i].used = true;
    return map->entries[i].key->text;
}

const dxb_yaml_node_t *
dxb_yaml_map_value(const dxb_yaml_node_t *map, size_t i)
{
    if (map == NULL || map->kind != DXB_YAML_MAP || i >= map->n) {
        return NULL;
    }
    map->entries[i].used = true;
    return map->entries[i].value;
}

const dxb_yaml_node_t *
dxb_yaml_get(const dxb_yaml_node_t *map, const char *key)
{
    if (map == NULL || map->kind != DXB_YAML_MAP) {
        return NULL;
    }
    yaml_entry_t *entry = (yaml_entry_t *)s_map_find(map, key, strlen(key));
    if (entry == NULL) {
        return NULL;
    }
    entry->used = true;
    return entry->value;
}

bool
dxb_yaml_expect_map(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *node, const char *what,
                    bool required)
{
    if (node != NULL && node->kind == DXB_YAML_MAP) {
        return true;
    }
    if (node != NULL && node->poisoned) {
        return false;
    }
    /* An absent or empty optional section ("store:" with every key commented
     * out) means "all defaults", not a mistake. */
    if (node == NULL || (dxb_yaml_is_null(node) && !required)) {
        if (required) {
            dxb_yaml_error(doc, NULL, "missing section '%s' (expected a mapping)", what);
        }
        return false;
    }
    dxb_yaml_error(doc, node, "'%s': expected a mapping", what);
    return false;
}

void
dxb_yaml_check_unused(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map)
{
    if (map == NULL || map->kind != DXB_YAML_MAP) {
        return;
    }
    for (size_t i = 0; i < map->n; i++) {
        if (map->entries[i].used) {
            continue;
        }
        const dxb_yaml_node_t *key = map->entries[i].key;
        char quoted[YAML_QUOTE_MAX + 4];
        s_quote(key->text, key->text_len, quoted);
        dxb_yaml_error(doc, key, "unknown key '%s'", quoted);
    }
}

/* ---- typed getters ----------------------------------------------------- */

typedef enum {
    FIND_ABSENT, /* not there and not required: keep the caller's default */
    FIND_FOUND,  /* *val_out is the value node */
    FIND_FAILED, /* error recorded (or value is a poisoned alias) */
} yaml_find_t;

static yaml_find_t
s_find(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key, bool required,
       const dxb_yaml_node_t **val_out)
{
    const dxb_yaml_node_t *val = dxb_yaml_get(map, key);
    if (val == NULL) {
        if (!required) {
            return FIND_ABSENT;
        }
        dxb_yaml_error(doc, map, "missing key '%s'", key);
        return FIND_FAILED;
    }
    if (val->poisoned) {
        return FIND_FAILED;
    }
    *val_out = val;
    return FIND_FOUND;
}

static bool
s_is_plain_scalar(const dxb_yaml_node_t *node)
{
    return node->kind == DXB_YAML_SCALAR && node->plain;
}

/* Parses decimal digits only (no sign, no spaces) of text[0..len); false on
 * anything else or overflow. */
static bool
s_parse_digits(const char *text, size_t len, uint64_t *out)
{
    if (len == 0) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
        unsigned digit = (unsigned)(text[i] - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            return false;
        }
        v = v * 10 + digit;
    }
    *out = v;
    return true;
}

bool
dxb_yaml_get_str(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key, char *out,
                 size_t cap, bool required)
{
    const dxb_yaml_node_t *val = NULL;
    yaml_find_t found = s_find(doc, map, key, required, &val);
    if (found != FIND_FOUND) {
        return found == FIND_ABSENT;
    }
    if (val->kind != DXB_YAML_SCALAR || dxb_yaml_is_null(val)) {
        dxb_yaml_error(doc, val, "key '%s' must be a string", key);
        return false;
    }
    if (strlen(val->text) != val->text_len) {
        dxb_yaml_error(doc, val, "key '%s' must not contain NUL characters", key);
        return false;
    }
    if (val->text_len >= cap) {
        dxb_yaml_error(doc, val, "key '%s' must be at most %zu bytes long", key,
                       cap ? cap - 1 : 0);
        return false;
    }
    memcpy(out, val->text, val->text_len + 1);
    return true;
}

bool
dxb_yaml_get_u64(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key,
                 uint64_t *out, uint64_t min, uint64_t max, bool required)
{
    const dxb_yaml_node_t *val = NULL;
    yaml_find_t found = s_find(doc, map, key, required, &val);
    if (found != FIND_FOUND) {
        return found == FIND_ABSENT;
    }
    uint64_t v = 0;
    if (!s_is_plain_scalar(val) || !s_parse_digits(val->text, val->text_len, &v) || v < min ||
        v > max) {
        dxb_yaml_error(doc, val, "key '%s' must be an integer between %" PRIu64 " and %" PRIu64,
                       key, min, max);
        return false;
    }
    *out = v;
    return true;
}

static const struct {
    const char *suffix;
    unsigned shift;
} s_size_units[] = {
    {"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10},
    {"T", 40},   {"G", 30},   {"M", 20},   {"K", 10},
};

/* Parses "512", "64KiB", "16 MiB", "2G"; false on anything else or overflow. */
static bool
s_parse_size(const char *text, size_t len, uint64_t *out)
{
    size_t digits = 0;
    while (digits < len && text[digits] >= '0' && text[digits] <= '9') {
        digits++;
    }
    uint64_t v = 0;
    if (!s_parse_digits(text, digits, &v)) {
        return false;
    }
    size_t rest = digits;
    if (rest < len && text[rest] == ' ') {
        rest++;
    }
    if (rest == len) {
        if (rest != digits) {
            return false; /* "512 " with nothing after the space is a typo */
        }
        *out = v;
        return true;
    }
    for (size_t i = 0; i < sizeof(s_size_units) / sizeof(s_size_units[0]); i++) {
        if (strcmp(text + rest, s_size_units[i].suffix) != 0) {
            continue;
        }
        if (v > (UINT64_MAX >> s_size_units[i].shift)) {
            return false;
        }
        *out = v << s_size_units[i].shift;
        return true;
    }
    return false;
}

/* Writes a size the way a config would say it: "1GiB" when exact, else bytes. */
static void
s_format_size(uint64_t v, char *out, size_t cap)
{
    for (size_t i = 0; i < 4; i++) {
        unsigned shift = s_size_units[i].shift;
        if (v != 0 && (v & ((UINT64_C(1) << shift) - 1)) == 0) {
            snprintf(out, cap, "%" PRIu64 "%s", v >> shift, s_size_units[i].suffix);
            return;
        }
    }
    snprintf(out, cap, "%" PRIu64, v);
}

bool
dxb_yaml_get_size(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key,
                  uint64_t *out, uint64_t min, uint64_t max, bool required)
{
    const dxb_yaml_node_t *val = NULL;
    yaml_find_t found = s_find(doc, map, key, required, &val);
    if (found != FIND_FOUND) {
        return found == FIND_ABSENT;
    }
    uint64_t v = 0;
    if (!s_is_plain_scalar(val) || strlen(val->text) != val->text_len ||
        !s_parse_size(val->text, val->text_len, &v) || v < min || v > max) {
        char lo[32];
        char hi[32];
        s_format_size(min, lo, sizeof(lo));
        s_format_size(max, hi, sizeof(hi));
        dxb_yaml_error(doc, val,
                       "key '%s' must be a size between %s and %s (bytes, or with a "
                       "KiB/MiB/GiB/TiB suffix)",
                       key, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool
dxb_yaml_get_bool(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key, bool *out,
                  bool required)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    const dxb_yaml_node_t *val = NULL;
    yaml_find_t found = s_find(doc, map, key, required, &val);
    if (found != FIND_FOUND) {
        return found == FIND_ABSENT;
    }
    /* Quoted "yes" is a string in YAML; accepting it would hide a mistake. */
    if (s_is_plain_scalar(val)) {
        for (size_t i = 0; i < 3; i++) {
            if (strcasecmp(val->text, yes[i]) == 0) {
                *out = true;
                return true;
            }
            if (strcasecmp(val->text, no[i]) == 0) {
                *out = false;
                return true;
            }
        }
    }
    dxb_yaml_error(doc, val, "key '%s' must be true or false (yes/no, on/off)", key);
    return false;
}

bool
dxb_yaml_get_enum(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key,
                  const char *const *choices, int *out, bool required)
{
    const dxb_yaml_node_t *val = NULL;
    yaml_find_t found = s_find(doc, map, key, required, &val);
    if (found != FIND_FOUND) {
        return found == FIND_ABSENT;
    }
    if (val->kind == DXB_YAML_SCALAR && strlen(val->text) == val->text_len) {
        for (int i = 0; choices[i] != NULL; i++) {
            if (strcmp(val->text, choices[i]) == 0) {
                *out = i;
                return true;
            }
        }
    }
    char list[256] = "";
    size_t used = 0;
    for (int i = 0; choices[i] != NULL && used < sizeof(list); i++) {
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", choices[i]);
        if (n < 0) {
            break;
        }
        used += (size_t)n;
    }
    dxb_yaml_error(doc, val, "key '%s' must be one of: %s", key, list);
    return false;
}

dxb_err_t
dxb_yaml_load_config(const char *path, dxb_yaml_fill_fn fill, void *arg, char **errors_p)
{
    dxb_yaml_doc_t *doc = NULL;
    *errors_p = NULL;
    dxb_err_t err = dxb_yaml_load_file(path, &doc);
    if (err) {
        char buf[4300];
        snprintf(buf, sizeof(buf), "%s: cannot read config: %s\n", path, dxb_strerror(err));
        *errors_p = strdup(buf);
        return DXB_ECONFIG;
    }
    char dirbuf[4096];
    snprintf(dirbuf, sizeof(dirbuf), "%s", path);
    const char *cfg_dir = dirname(dirbuf);
    const dxb_yaml_node_t *root = dxb_yaml_root(doc);
    if (dxb_yaml_expect_map(doc, root, "top level", true)) {
        fill(doc, root, cfg_dir, arg);
        dxb_yaml_check_unused(doc, root);
    }
    err = DXB_OK;
    if (dxb_yaml_error_count(doc) > 0) {
        *errors_p = strdup(dxb_yaml_errors(doc));
        err = DXB_ECONFIG;
    }
    dxb_yaml_destroy(&doc);
    return err;
}
