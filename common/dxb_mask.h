/* dxb_mask: field masking (脱敏) of record-structured payloads.
 *
 * A provider agent applies a grant's masking policy to a payload before it
 * encrypts it, so masked values never leave the provider. This module is pure
 * computation: no I/O, no logging, no global state.
 *
 * Payload formats (chosen by the caller; dxb_mask_format_guess() maps a file
 * name to one):
 *   JSONL  one JSON object per line (RFC 8259, UTF-8). Values of the named
 *          fields may be string, number, true/false or null. Nested objects
 *          and arrays are validated (depth <= DXB_MASK_JSON_DEPTH) and passed
 *          through as raw text; a policy may drop or redact such a field, but
 *          keep and hash on one are refused (DXB_EPROTO). Objects are written
 *          compactly: keys and untouched values are copied byte for byte,
 *          whitespace between top-level tokens is not kept. Duplicate keys are
 *          each masked. Blank (whitespace-only) lines are copied unchanged
 *          and are not records.
 *   CSV    RFC 4180 with a header row: quoted fields, doubled quotes,
 *          commas, CR and LF inside quotes. Every data row must have as many
 *          fields as the header. Untouched fields are copied byte for byte
 *          (their quoting kept); a masked field is quoted when the original
 *          was quoted or the new value needs it. Empty lines are copied
 *          unchanged and are not records (write `""` for a one-column row with
 *          an empty value). A column named twice in the header is masked in
 *          both places.
 * Both: records end in LF or CRLF and each record keeps its own ending; the
 * last record may have none. A bare CR outside quotes is an error. A leading
 * UTF-8 BOM is copied and ignored. All bytes must be valid UTF-8.
 *
 * Policy text (dxb_mask_policy_parse / _format), one rule per field; the
 * field "*" names every field that has no rule of its own ("*=drop;name=
 * keep:1,0" keeps only name, masked: how a grant narrows the fields):
 *     name=keep:1,0;id_no=keep:6,4;phone=keep:3,4;address=redact;person_id=hash;notes=drop
 *   rule    FIELD '=' ACTION, rules separated by ';'
 *   ACTION  drop            remove the field / column
 *           redact          replace the value by "***"
 *           redact:TEXT     replace the value by TEXT (0..64 bytes)
 *           keep:F,L        keep the first F and the last L characters
 *                           (Unicode code points), replace each one between
 *                           with '*': 张三丰 keep:1,0 -> 张**, 13812345678
 *                           keep:3,4 -> 138****5678. F, L in 0..1000. A value
 *                           of at most F+L characters is masked entirely
 *                           (nothing would be hidden otherwise).
 *           hash            replace the value by a keyed BLAKE2b-128 of it
 *                           (32 lower-case hex chars), key = the grant's
 *                           32-byte hash key: same value and key, same output.
 *           hash:PREFIX     the same, with PREFIX (0..16 bytes) in front: "h:"
 *           pass            leave the field as it is (next to a "*" rule)
 *   FIELD is 1..128 bytes, TEXT and PREFIX as above; all are UTF-8 without
 *   control characters. '\' escapes the next byte, which must be one of
 *   '\' ';' '=' or space. Spaces and tabs around rules, around '=' and at the
 *   end of TEXT are ignored (escape them to keep them); empty rules are
 *   skipped. At most DXB_MASK_MAX_RULES rules; a field may be named once.
 *   Names match JSON keys (after unescaping) and CSV header fields (after
 *   unquoting) exactly, byte for byte. The empty text is the empty policy.
 * dxb_mask_policy_format() writes the canonical form: no spaces, "redact"
 * for the default text, only the escapes needed; parse(format(p)) == p.
 *
 * Values: masking works on the decoded value (a JSON string after escapes,
 * a CSV field after unquoting; a JSON number or bool as its text), so the
 * same value hashes the same in both formats. A JSON null and an empty value
 * are left as they are by redact, keep and hash (nothing to hide, and an
 * empty value must not join with every other empty one). A masked JSON value
 * is always written as a string.
 *
 * Fields the policy does not name pass unchanged. A policy field absent from
 * a JSON record is fine (records vary); absent from the CSV header it is an
 * error (DXB_ENOTFOUND: a renamed column would otherwise leak) unless the
 * options say lenient. A policy that drops every CSV column is refused.
 *
 * Bounds: memory is one record (<= max_record_bytes) plus the output not yet
 * drained plus O(columns); nothing is sized by a count read from the input.
 * Output per record <= input + fields * (2 * DXB_MASK_TEXT_MAX + 4).
 *
 * Errors name where: "line L, offset O: ..." (L 1-based physical line of the
 * problem, O 0-based byte offset in the stream), with the field or column
 * when there is one. After an error a masker is dead: every later call
 * returns the same error. Output is always whole records: a record that
 * fails leaves nothing of itself in the output.
 *
 * Thread context: a policy is immutable after parsing and may be shared by
 * threads; a masker belongs to one thread at a time. Call sodium_init()
 * before hashing.
 */
#ifndef DXB_MASK_H
#define DXB_MASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dxb_err.h"

#define DXB_MASK_MAX_RULES 256
#define DXB_MASK_FIELD_MAX 128                  /* bytes of a field name */
#define DXB_MASK_TEXT_MAX 64                    /* bytes of a redact text */
#define DXB_MASK_PREFIX_MAX 16                  /* bytes of a hash prefix */
#define DXB_MASK_KEEP_MAX 1000                  /* largest F or L of keep:F,L */
#define DXB_MASK_KEY_BYTES 32                   /* per-grant hash key */
#define DXB_MASK_HASH_HEX 32                    /* hex chars of a hash (16-byte digest) */
#define DXB_MASK_MAX_COLUMNS 16384              /* CSV columns */
#define DXB_MASK_JSON_DEPTH 64                  /* nesting of JSON values, record = 1 */
#define DXB_MASK_RECORD_MAX_DEFAULT (16u << 20) /* bytes of one record */

typedef enum {
    DXB_MASK_JSONL = 1, /* JSON Lines (.jsonl, .ndjson) */
    DXB_MASK_CSV = 2,   /* CSV with a header row (.csv) */
} dxb_mask_format_t;

typedef enum {
    DXB_MASK_DROP = 0,
    DXB_MASK_REDACT,
    DXB_MASK_KEEP,
    DXB_MASK_HASH,
    DXB_MASK_PASS, /* leave the value as it is (useful next to a "*" rule) */
    DXB_MASK_ACTION_COUNT
} dxb_mask_action_t;

/* One rule of a policy; read-only view owned by the policy. */
typedef struct {
    char field[DXB_MASK_FIELD_MAX + 1]; /* field name, NUL-terminated, 1..128 bytes */
    size_t field_len;                   /* bytes of field, without the NUL */
    dxb_mask_action_t action;           /* what to do with the field */
    uint32_t keep_first;                /* KEEP: code points kept at the start, 0..1000 */
    uint32_t keep_last;                 /* KEEP: code points kept at the end, 0..1000 */
    bool has_text;                      /* REDACT: text given (else "***"); HASH: prefix given */
    char text[DXB_MASK_TEXT_MAX + 1];   /* REDACT text or HASH prefix, NUL-terminated */
    size_t text_len;                    /* bytes of text, without the NUL */
} dxb_mask_rule_t;

typedef struct dxb_mask_policy dxb_mask_policy_t;
typedef struct dxb_mask dxb_mask_t;

/* Options of a masker; zero-initialise, then set format (and hash_key). */
typedef struct {
    dxb_mask_format_t format; /* payload format; required */
    const uint8_t *hash_key;  /* DXB_MASK_KEY_BYTES, borrowed (copied by _new); required when
                                 the policy has a hash rule */
    bool lenient;             /* CSV: ignore policy fields missing from the header */
    size_t max_record_bytes;  /* largest record incl. its line end; 0 = default (16 MiB) */
} dxb_mask_opts_t;

/* Counts for reporting; all since dxb_mask_new(). */
typedef struct {
    uint64_t records;                       /* JSON objects / CSV data rows masked */
    uint64_t fields[DXB_MASK_ACTION_COUNT]; /* fields each action met (null/empty ones too) */
} dxb_mask_stats_t;

/* Guesses the format from a file name's suffix (.jsonl, .ndjson, .csv; any
 * case). Returns false, leaving *format_out alone, for any other name. */
bool dxb_mask_format_guess(const char *file_name, dxb_mask_format_t *format_out);

/* "drop", "redact", "keep", "hash"; "?" for anything else. Never NULL. */
const char *dxb_mask_action_name(dxb_mask_action_t action);

/* Parses policy text (len bytes, need not be NUL-terminated) into a new
 * policy owned by the caller (*policy_out, free with _destroy).
 * errbuf receives e.g. "policy rule 2 (offset 14, field "id_no"): keep needs
 * F,L ..." on failure.
 * Errors: DXB_EINVAL (syntax, a limit, duplicate field), DXB_ENOMEM. */
dxb_err_t dxb_mask_policy_parse(const char *text, size_t len, dxb_mask_policy_t **policy_out,
                                char *errbuf, size_t errcap) DXB_MUST_CHECK;

/* Writes the canonical text of policy into a new NUL-terminated string
 * (*text_out, malloc'd, caller frees; *len_out without the NUL).
 * Errors: DXB_ENOMEM. */
dxb_err_t dxb_mask_policy_format(const dxb_mask_policy_t *policy, char **text_out,
                                 size_t *len_out) DXB_MUST_CHECK;

/* Number of rules. */
size_t dxb_mask_policy_len(const dxb_mask_policy_t *policy);
/* Rule number index (policy order), borrowed; NULL past the end. */
const dxb_mask_rule_t *dxb_mask_policy_rule(const dxb_mask_policy_t *policy, size_t index);
/* The rule for a field name, borrowed; NULL when the policy does not name it. */
const dxb_mask_rule_t *dxb_mask_policy_find(const dxb_mask_policy_t *policy, const char *field,
                                            size_t len);
/* True when a rule hashes, so a masker needs a hash key. */
bool dxb_mask_policy_needs_key(const dxb_mask_policy_t *policy);
/* Frees a policy and NULLs *policy_p (NULL or *NULL: nothing). */
void dxb_mask_policy_destroy(dxb_mask_policy_t **policy_p);

/* Creates a streaming masker. policy is borrowed and must outlive it; opts is
 * read now (the key is copied, and wiped by _destroy).
 * Errors: DXB_EINVAL (bad format, hash rule without key), DXB_ENOMEM. */
dxb_err_t dxb_mask_new(const dxb_mask_policy_t *policy, const dxb_mask_opts_t *opts,
                       dxb_mask_t **mask_out, char *errbuf, size_t errcap) DXB_MUST_CHECK;

/* Feeds the next len bytes of the payload (any split, even inside a UTF-8
 * character). Every record completed by them is masked and appended to the
 * output (dxb_mask_output); an incomplete tail is kept for the next call.
 * Errors: DXB_EPROTO (malformed record: JSON, CSV, UTF-8, field count, a
 * keep/hash on a nested value), DXB_ETOOBIG (a record over max_record_bytes,
 * more than DXB_MASK_MAX_COLUMNS columns, JSON nested too deep),
 * DXB_ENOTFOUND (CSV header lacks a policy field, not lenient), DXB_EINVAL
 * (policy drops every CSV column; feed after finish), DXB_ENOMEM,
 * DXB_EINTERNAL (hash failed). */
dxb_err_t dxb_mask_feed(dxb_mask_t *mask, const uint8_t *data, size_t len, char *errbuf,
                        size_t errcap) DXB_MUST_CHECK;

/* Ends the payload: masks a last record without a line end. Errors: as
 * dxb_mask_feed (an unterminated quoted CSV field is DXB_EPROTO here), and
 * DXB_EINVAL when called twice. Empty input is fine and gives empty output. */
dxb_err_t dxb_mask_finish(dxb_mask_t *mask, char *errbuf, size_t errcap) DXB_MUST_CHECK;

/* Output produced so far and not yet drained, borrowed until the next call
 * on mask; whole records only. NUL-terminated for convenience (not counted). */
const uint8_t *dxb_mask_output(const dxb_mask_t *mask, size_t *len_out);
/* Forgets the output returned by dxb_mask_output (the caller has written it). */
void dxb_mask_drain(dxb_mask_t *mask);
/* Counts so far (records and fields of records fully masked). */
void dxb_mask_get_stats(const dxb_mask_t *mask, dxb_mask_stats_t *stats_out);
/* Frees a masker, wipes its key, NULLs *mask_p (NULL or *NULL: nothing). */
void dxb_mask_destroy(dxb_mask_t **mask_p);

/* Masks a whole payload: in (len bytes) -> *out_p (malloc'd, caller frees,
 * NUL-terminated, *out_len without the NUL). stats_out may be NULL. On error
 * *out_p is NULL. Errors: as dxb_mask_new, dxb_mask_feed, dxb_mask_finish. */
dxb_err_t dxb_mask_apply(const dxb_mask_policy_t *policy, const dxb_mask_opts_t *opts,
                         const uint8_t *in, size_t len, uint8_t **out_p, size_t *out_len,
                         dxb_mask_stats_t *stats_out, char *errbuf, size_t errcap) DXB_MUST_CHECK;

#endif
