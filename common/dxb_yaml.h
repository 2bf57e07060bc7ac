/* dxb_yaml: strict YAML configuration loading with file:line:column errors.
 *
 * Loads a YAML file with libyaml's event parser into a small tree of
 * scalars, sequences and maps. Strictness (STYLE "Untrusted input"):
 * anchors, aliases, tags, multiple documents and duplicate map keys are
 * errors. The typed getters below record errors in the document instead of
 * failing fast, so one run reports every mistake in a config; each error is
 * one line "FILE:LINE:COL: message" (line and column 1-based).
 *
 * Every map remembers which keys a getter asked for; dxb_yaml_check_unused()
 * then reports the rest as "unknown key 'x'" so typos never pass silently.
 *
 * Ownership: the document owns every node; nodes are borrowed and live until
 * dxb_yaml_destroy(). Not thread-safe; use from one thread.
 */
#ifndef DXB_YAML_H
#define DXB_YAML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dxb_err.h"

typedef struct dxb_yaml_doc dxb_yaml_doc_t;
typedef struct dxb_yaml_node dxb_yaml_node_t;

typedef enum {
    DXB_YAML_SCALAR,
    DXB_YAML_SEQ,
    DXB_YAML_MAP,
} dxb_yaml_kind_t;

/* Parses a file. On DXB_OK *doc_out is a new document owned by the caller.
 * A syntax error still returns DXB_OK with the error recorded in the document
 * (root may then be NULL) so the caller prints all errors the same way.
 * Errors returned: DXB_ENOTFOUND / DXB_EIO (cannot read), DXB_ETOOBIG
 * (over 4 MiB), DXB_ENOMEM. */
dxb_err_t dxb_yaml_load_file(const char *path, dxb_yaml_doc_t **doc_out) DXB_MUST_CHECK;
/* Same from memory; name is used in error messages (copied). */
dxb_err_t dxb_yaml_load_buf(const char *name, const char *buf, size_t len,
                            dxb_yaml_doc_t **doc_out) DXB_MUST_CHECK;
/* Frees the document and every node; sets *doc_p to NULL. NULL-safe. */
void dxb_yaml_destroy(dxb_yaml_doc_t **doc_p);

/* Root node, or NULL for an empty document or after a syntax error. */
const dxb_yaml_node_t *dxb_yaml_root(const dxb_yaml_doc_t *doc);

dxb_yaml_kind_t dxb_yaml_kind(const dxb_yaml_node_t *node);
int dxb_yaml_line(const dxb_yaml_node_t *node); /* 1-based */
int dxb_yaml_col(const dxb_yaml_node_t *node);  /* 1-based */
/* Scalar text (NUL-terminated, borrowed) or NULL when not a scalar. */
const char *dxb_yaml_scalar(const dxb_yaml_node_t *node);
/* True for a plain (unquoted) scalar `~`, `null` or empty. */
bool dxb_yaml_is_null(const dxb_yaml_node_t *node);
/* Number of items of a sequence or entries of a map; 0 for scalars. */
size_t dxb_yaml_len(const dxb_yaml_node_t *node);
/* i-th item of a sequence, NULL when out of range or not a sequence. */
const dxb_yaml_node_t *dxb_yaml_item(const dxb_yaml_node_t *seq, size_t i);
/* i-th key text / value of a map (for iterating maps with free-form keys;
 * marks the entry used). */
const char *dxb_yaml_map_key(const dxb_yaml_node_t *map, size_t i);
const dxb_yaml_node_t *dxb_yaml_map_value(const dxb_yaml_node_t *map, size_t i);

/* Looks up key in map and marks it used; NULL when absent or map is not a map. */
const dxb_yaml_node_t *dxb_yaml_get(const dxb_yaml_node_t *map, const char *key);

/* Records an error at node (or at 1:1 when node is NULL). */
void dxb_yaml_error(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Number of errors recorded so far. */
int dxb_yaml_error_count(const dxb_yaml_doc_t *doc);
/* All errors, one per line, each ending in '\n' ("" when none). Borrowed. */
const char *dxb_yaml_errors(const dxb_yaml_doc_t *doc);

/* Requires node to be a map (records "expected a mapping" otherwise);
 * returns whether it is. NULL node counts as an error only when required. */
bool dxb_yaml_expect_map(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *node, const char *what,
                         bool required);
/* Records "unknown key 'k'" for every entry of map never asked for. */
void dxb_yaml_check_unused(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map);

/* Typed getters. Each marks the key used. When the key is absent: if required,
 * record "missing key 'k'" (at the map) and return false; otherwise leave *out
 * untouched (the caller's default) and return true. When present but wrong
 * (type, range, length), record an error naming the key and the rule and
 * return false. */
bool dxb_yaml_get_str(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key,
                      char *out, size_t cap, bool required);
bool dxb_yaml_get_u64(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key,
                      uint64_t *out, uint64_t min, uint64_t max, bool required);
/* Like get_u64 but accepts size suffixes: 512, 64KiB, 16MiB, 2GiB, 1TiB. */
bool dxb_yaml_get_size(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key,
                       uint64_t *out, uint64_t min, uint64_t max, bool required);
/* true/false/yes/no/on/off (plain scalars only). */
bool dxb_yaml_get_bool(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key,
                       bool *out, bool required);
/* One of choices (NULL-terminated array); *out is the index. */
bool dxb_yaml_get_enum(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *map, const char *key,
                       const char *const *choices, int *out, bool required);

/* Loads a whole configuration file: reads and parses path, requires a map at
 * the top level, calls fill(doc, root, cfg_dir, arg) to read the sections
 * (cfg_dir = the file's directory, for relative paths), and reports unknown
 * top-level keys. Returns DXB_ECONFIG with *errors_p (malloc'd "FILE:L:C:
 * msg" lines, owned by the caller) when anything was wrong. */
typedef void (*dxb_yaml_fill_fn)(dxb_yaml_doc_t *doc, const dxb_yaml_node_t *root,
                                 const char *cfg_dir, void *arg);
dxb_err_t dxb_yaml_load_config(const char *path, dxb_yaml_fill_fn fill, void *arg,
                               char **errors_p) DXB_MUST_CHECK;

#endif
