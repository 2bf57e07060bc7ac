/* dxb_mask: masking policies and the JSONL / CSV maskers (see dxb_mask.h).
 *
 * Invariants: a policy's rule table and its name index never change after
 * parsing. A masker's `pending` holds at most one incomplete record (bounded
 * by max_record_bytes); `out` holds whole masked records only. Records are
 * found by a cheap scan (LF, outside quotes for CSV), then validated and
 * masked as a whole, so a record is either fully in the output or not at all.
 * Thread context: see the header.
 */
#include "common/dxb_mask.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/dxb_util.h"

#define S_INDEX_SLOTS 512 /* power of two, > 2 * DXB_MASK_MAX_RULES */
#define S_REDACT_DEFAULT "***"
#define S_ERR_MAX 256

struct dxb_mask_policy {
    dxb_mask_rule_t *rules;       /* count rules, policy order, malloc'd */
    size_t count;                 /* rules in use, <= DXB_MASK_MAX_RULES */
    size_t cap;                   /* rules allocated */
    int16_t index[S_INDEX_SLOTS]; /* open addressing by name hash: rule number, -1 empty */
    bool needs_key;               /* some rule hashes */
};

/* A growable byte buffer; data is NUL-terminated whenever cap > 0. */
typedef struct {
    uint8_t *data; /* malloc'd, cap bytes */
    size_t len;    /* bytes in use, excluding the NUL */
    size_t cap;    /* bytes allocated */
} mask_buf_t;

/* One CSV field of the record being masked, as offsets into its body. */
typedef struct {
    size_t start; /* first raw byte (the opening quote if quoted) */
    size_t end;   /* one past the last raw byte (after the closing quote) */
    bool quoted;  /* written in quotes */
} mask_field_t;

/* Where and why a record is malformed (messages are static strings). */
typedef struct {
    size_t at;       /* byte offset in the record body */
    size_t field;    /* CSV: 1-based field number, 0 when none */
    const char *why; /* one-line reason */
} mask_perr_t;

typedef enum { S_JSON_STRING, S_JSON_NUMBER, S_JSON_BOOL, S_JSON_NULL, S_JSON_NESTED } mask_jtype_t;

struct dxb_mask {
    const dxb_mask_policy_t *policy; /* borrowed, outlives the masker */
    dxb_mask_format_t format;        /* JSONL or CSV */
    bool lenient;                    /* CSV: missing policy fields are fine */
    size_t max_record_bytes;         /* > 0 */
    uint8_t key[DXB_MASK_KEY_BYTES]; /* hash key (secret; wiped by _destroy) */
    mask_buf_t out;                  /* masked whole records not yet drained */
    mask_buf_t pending;              /* incomplete record carried between feeds */
    mask_buf_t val;                  /* scratch: decoded value */
    mask_buf_t key_dec;              /* scratch: decoded JSON key / CSV header name */
    mask_buf_t masked;               /* scratch: masked value */
    bool in_quotes;                  /* CSV scan state at the end of pending */
    uint64_t line;                   /* 1-based line of the next record's start */
    uint64_t offset;                 /* stream offset of the next record's start */
    bool header_done;                /* CSV: header row seen */
    int32_t *col_rule;               /* CSV: rule number per header column, -1 none */
    size_t ncols;                    /* CSV: header columns, <= DXB_MASK_MAX_COLUMNS */
    mask_buf_t names;                /* CSV: decoded header names, concatenated */
    size_t *name_off;                /* CSV: ncols + 1 offsets into names */
    mask_field_t *fields;            /* CSV: fields of the current record */
    size_t fields_cap;               /* CSV: entries allocated in fields */
    bool finished;                   /* finish() was called */
    dxb_err_t failed;                /* sticky error, DXB_OK while alive */
    char errmsg[S_ERR_MAX];          /* detail of failed */
    dxb_mask_stats_t stats;          /* counts of committed records */
};

/* ---- small helpers ----------------------------------------------------------------- */

static void s_errf(char *errbuf, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
s_errf(char *errbuf, size_t errcap, const char *fmt, ...)
{
    if (errbuf == NULL || errcap == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errcap, fmt, ap);
    va_end(ap);
}

static dxb_err_t
s_buf_reserve(mask_buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1) {
        return DXB_ENOMEM;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return DXB_OK;
    }
    size_t cap = b->cap < 256 ? 256 : b->cap;
    while (cap < need) {
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    }
    uint8_t *data = realloc(b->data, cap);
    if (data == NULL) {
        return DXB_ENOMEM;
    }
    b->data = data;
    b->cap = cap;
    b->data[b->len] = '\0';
    return DXB_OK;
}

static dxb_err_t
s_buf_put(mask_buf_t *b, const void *p, size_t n)
{
    dxb_err_t err = s_buf_reserve(b, n);
    if (err) {
        return err;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
    return DXB_OK;
}

static dxb_err_t
s_buf_byte(mask_buf_t *b, uint8_t c)
{
    return s_buf_put(b, &c, 1);
}

static void
s_buf_free(mask_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* Returns the offset of the first byte that is not part of valid UTF-8
 * (RFC 3629: no overlongs, no surrogates, <= U+10FFFF), or len. */
static size_t
s_utf8_invalid_at(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0) {
                lo = 0xa0;
            } else if (c == 0xed) {
                hi = 0x9f;
            }
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0) {
                lo = 0x90;
            } else if (c == 0xf4) {
                hi = 0x8f;
            }
        } else {
            return i;
        }
        if (len - i - 1 < n || p[i + 1] < lo || p[i + 1] > hi) {
            return i;
        }
        for (size_t k = 2; k <= n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return i;
            }
        }
        i += n + 1;
    }
    return len;
}

/* True when p has a byte below 0x20 or 0x7f (policy names and texts). */
static bool
s_has_control(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

/* Copies a field name into out for an error message: about 48 bytes (cut at
 * a character boundary, then "..."), control bytes and quotes shown as '?'. */
static void
s_show_name(const uint8_t *p, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < cap; i++) {
        if (i >= 48 && (p[i] & 0xc0) != 0x80) {
            memcpy(out + n, "...", 3);
            n += 3;
            break;
        }
        uint8_t c = p[i];
        out[n++] = (char)((c < 0x20 || c == 0x7f || c == '"') ? '?' : c);
    }
    out[n] = '\0';
}

static uint32_t
s_name_hash(const uint8_t *p, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

/* ---- formats and actions --------------------------------------------------------- */

static bool
s_ends_with(const char *name, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && strcasecmp(name + len - n, suffix) == 0;
}

bool
dxb_mask_format_guess(const char *file_name, dxb_mask_format_t *format_out)
{
    if (file_name == NULL) {
        return false;
    }
    size_t len = strlen(file_name);
    if (s_ends_with(file_name, len, ".jsonl") || s_ends_with(file_name, len, ".ndjson")) {
        *format_out = DXB_MASK_JSONL;
        return true;
    }
    if (s_ends_with(file_name, len, ".csv")) {
        *format_out = DXB_MASK_CSV;
        return true;
    }
    return false;
}

const char *
dxb_mask_action_name(dxb_mask_action_t action)
{
    switch (action) {
    case DXB_MASK_DROP:
        return "drop";
    case DXB_MASK_REDACT:
        return "redact";
    case DXB_MASK_KEEP:
        return "keep";
    case DXB_MASK_HASH:
        return "hash";
    case DXB_MASK_PASS:
        return "pass";
    case DXB_MASK_ACTION_COUNT:
        break;
    }
    return "?";
}

/* ---- policy ------------------------------------------------------------------------ */

static const dxb_mask_rule_t *
s_policy_lookup(const dxb_mask_policy_t *p, const uint8_t *name, size_t len, int32_t *rule_out)
{
    if (p == NULL || len == 0 || len > DXB_MASK_FIELD_MAX) {
        return NULL;
    }
    uint32_t slot = s_name_hash(name, len) & (S_INDEX_SLOTS - 1);
    for (;;) {
        int16_t r = p->index[slot];
        if (r < 0) {
            return NULL;
        }
        const dxb_mask_rule_t *rule = &p->rules[r];
        if (rule->field_len == len && memcmp(rule->field, name, len) == 0) {
            if (rule_out != NULL) {
                *rule_out = r;
            }
            return rule;
        }
        slot = (slot + 1) & (S_INDEX_SLOTS - 1);
    }
}

/* The rule a data field gets: its own, else the "*" rule when the policy
 * has one (e.g. "*=drop;name=keep:1,0" keeps only what a grant allows). */
static const dxb_mask_rule_t *
s_policy_rule(const dxb_mask_policy_t *p, const uint8_t *name, size_t len, int32_t *rule_out)
{
    const dxb_mask_rule_t *rule = s_policy_lookup(p, name, len, rule_out);
    if (rule == NULL && p != NULL && !(len == 1 && name[0] == '*')) {
        rule = s_policy_lookup(p, (const uint8_t *)"*", 1, rule_out);
    }
    return rule;
}

static void
s_policy_index(dxb_mask_policy_t *p, int16_t r)
{
    const dxb_mask_rule_t *rule = &p->rules[r];
    uint32_t slot =
        s_name_hash((const uint8_t *)rule->field, rule->field_len) & (S_INDEX_SLOTS - 1);
    while (p->index[slot] >= 0) {
        slot = (slot + 1) & (S_INDEX_SLOTS - 1);
    }
    p->index[slot] = r;
}

static bool
s_is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* Reads an escaped token from text[*pos, end) up to an unescaped stop byte
 * (stop < 0: none) into out (cap bytes + NUL). Unescaped trailing spaces/tabs
 * are dropped. *pos ends at the stop byte or end. Returns a static reason on
 * failure (with *pos at the bad byte), NULL on success. */
static const char *
s_read_token(const char *text, size_t *pos, size_t end, int stop, char *out, size_t cap,
             size_t *len_out)
{
    size_t n = 0, i = *pos, ws_from = 0, ws_len = 0;
    while (i < end && (unsigned char)text[i] != stop) {
        char c = text[i];
        if (s_is_ws(c)) {
            ws_from = ws_len == 0 ? i : ws_from;
            ws_len++;
            i++;
            continue;
        }
        if (c == '\\') {
            if (i + 1 >= end) {
                *pos = i;
                return "backslash at the end of the rule";
            }
            c = text[i + 1];
            if (c != '\\' && c != ';' && c != '=' && c != ' ') {
                *pos = i;
                return "bad escape (only \\\\, \\;, \\= and \"\\ \" are allowed)";
            }
            i++;
        }
        /* Inner whitespace is kept as written (a tab is refused later). */
        if (n + ws_len + 1 > cap) {
            *pos = i;
            return "too long";
        }
        memcpy(out + n, text + ws_from, ws_len);
        n += ws_len;
        ws_len = 0;
        out[n++] = c;
        i++;
    }
    out[n] = '\0';
    *len_out = n;
    *pos = i;
    return NULL;
}

/* Parses a decimal 0..DXB_MASK_KEEP_MAX at text[*pos]. */
static bool
s_read_count(const char *text, size_t *pos, size_t end, uint32_t *out)
{
    size_t i = *pos;
    uint32_t v = 0;
    while (i < end && text[i] >= '0' && text[i] <= '9') {
        v = v * 10 + (uint32_t)(text[i] - '0');
        if (v > DXB_MASK_KEEP_MAX) {
            return false;
        }
        i++;
    }
    if (i == *pos) {
        return false;
    }
    *pos = i;
    *out = v;
    return true;
}

/* Checks a token that is going to land in payloads or be matched as a name. */
static const char *
s_check_token(const char *p, size_t len)
{
    if (s_has_control(p, len)) {
        return "control character";
    }
    if (s_utf8_invalid_at((const uint8_t *)p, len) != len) {
        return "invalid UTF-8";
    }
    return NULL;
}

/* Parses one rule text[rs, re) (already known non-blank) into *rule. */
static dxb_err_t
s_parse_rule(const char *text, size_t rs, size_t re, dxb_mask_rule_t *rule, size_t rule_no,
             char *errbuf, size_t errcap)
{
    size_t pos = rs;
    char shown[64];
    while (pos < re && s_is_ws(text[pos])) {
        pos++;
    }
    size_t name_at = pos;
    const char *why =
        s_read_token(text, &pos, re, '=', rule->field, DXB_MASK_FIELD_MAX, &rule->field_len);
    if (why == NULL && rule->field_len == 0) {
        why = "empty";
        pos = name_at;
    }
    if (why == NULL) {
        why = s_check_token(rule->field, rule->field_len);
    }
    if (why != NULL) {
        s_errf(errbuf, errcap, "policy rule %zu (offset %zu): field name: %s", rule_no, pos, why);
        return DXB_EINVAL;
    }
    s_show_name((const uint8_t *)rule->field, rule->field_len, shown, sizeof(shown));
    if (pos >= re) {
        s_errf(errbuf, errcap,
               "policy rule %zu (offset %zu, field \"%s\"): missing '=' and an action", rule_no,
               pos, shown);
        return DXB_EINVAL;
    }
    pos++;
    while (pos < re && s_is_ws(text[pos])) {
        pos++;
    }
    size_t act_at = pos;
    while (pos < re && text[pos] >= 'a' && text[pos] <= 'z') {
        pos++;
    }
    size_t act_len = pos - act_at;
    const char *act = text + act_at;
    bool has_arg = pos < re && text[pos] == ':';
    if (act_len == 4 && memcmp(act, "drop", 4) == 0) {
        rule->action = DXB_MASK_DROP;
    } else if (act_len == 6 && memcmp(act, "redact", 6) == 0) {
        rule->action = DXB_MASK_REDACT;
    } else if (act_len == 4 && memcmp(act, "hash", 4) == 0) {
        rule->action = DXB_MASK_HASH;
    } else if (act_len == 4 && memcmp(act, "keep", 4) == 0) {
        rule->action = DXB_MASK_KEEP;
    } else if (act_len == 4 && memcmp(act, "pass", 4) == 0 && !has_arg) {
        rule->action = DXB_MASK_PASS;
    } else {
        s_errf(errbuf, errcap,
               "policy rule %zu (offset %zu, field \"%s\"): unknown action (expected drop, "
               "redact[:TEXT], keep:F,L, hash[:PREFIX] or pass)",
               rule_no, act_at, shown);
        return DXB_EINVAL;
    }
    if (rule->action == DXB_MASK_KEEP) {
        if (has_arg) {
            pos++;
        }
        if (!has_arg || !s_read_count(text, &pos, re, &rule->keep_first) || pos >= re ||
            text[pos] != ',' || (pos++, !s_read_count(text, &pos, re, &rule->keep_last))) {
            s_errf(errbuf, errcap,
                   "policy rule %zu (offset %zu, field \"%s\"): keep needs F,L: two numbers "
                   "0..%d, e.g. keep:3,4",
                   rule_no, pos, shown, DXB_MASK_KEEP_MAX);
            return DXB_EINVAL;
        }
    } else if (rule->action != DXB_MASK_DROP && has_arg) {
        bool redact = rule->action == DXB_MASK_REDACT;
        pos++;
        why = s_read_token(text, &pos, re, -1, rule->text,
                           redact ? DXB_MASK_TEXT_MAX : DXB_MASK_PREFIX_MAX, &rule->text_len);
        if (why == NULL) {
            why = s_check_token(rule->text, rule->text_len);
        }
        if (why != NULL) {
            s_errf(errbuf, errcap, "policy rule %zu (offset %zu, field \"%s\"): %s: %s", rule_no,
                   pos, shown, redact ? "redact text" : "hash prefix", why);
            return DXB_EINVAL;
        }
        /* Normal form: the default text and the empty prefix are "no text". */
        rule->has_text = redact ? !(rule->text_len == strlen(S_REDACT_DEFAULT) &&
                                    memcmp(rule->text, S_REDACT_DEFAULT, rule->text_len) == 0)
                                : rule->text_len > 0;
        if (!rule->has_text) {
            rule->text_len = 0;
            rule->text[0] = '\0';
        }
    }
    while (pos < re && s_is_ws(text[pos])) {
        pos++;
    }
    if (pos < re) {
        s_errf(errbuf, errcap,
               "policy rule %zu (offset %zu, field \"%s\"): unexpected text after the action%s",
               rule_no, pos, shown,
               rule->action == DXB_MASK_DROP && has_arg ? " (drop takes no argument)" : "");
        return DXB_EINVAL;
    }
    return DXB_OK;
}

dxb_err_t
dxb_mask_policy_parse(const char *text, size_t len, dxb_mask_policy_t **policy_out, char *errbuf,
                      size_t errcap)
{
    s_errf(errbuf, errcap, "%s", "");
    *policy_out = NULL;
    if (text == NULL && len > 0) {
        s_errf(errbuf, errcap, "policy: no text");
        return DXB_EINVAL;
    }
    dxb_mask_policy_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return DXB_ENOMEM;
    }
    memset(p->index, 0xff, sizeof(p->index));
    dxb_err_t err = DXB_OK;
    size_t pos = 0, rule_no = 0;
    while (pos < len) {
        /* One rule: up to the next unescaped ';'. */
        size_t rs = pos, re = pos;
        bool blank = true;
        while (re < len && text[re] != ';') {
            if (text[re] == '\\' && re + 1 < len) {
                re++;
                blank = false;
            } else if (!s_is_ws(text[re])) {
                blank = false;
            }
            re++;
        }
        pos = re < len ? re + 1 : re;
        rule_no++;
        if (blank) {
            continue;
        }
        if (p->count == DXB_MASK_MAX_RULES) {
            s_errf(errbuf, errcap, "policy rule %zu (offset %zu): more than %d rules", rule_no, rs,
                   DXB_MASK_MAX_RULES);
            err = DXB_EINVAL;
            goto out_free;
        }
        if (p->count == p->cap) {
            size_t cap = p->cap == 0 ? 8 : p->cap * 2;
            dxb_mask_rule_t *rules = realloc(p->rules, cap * sizeof(*rules));
            if (rules == NULL) {
                err = DXB_ENOMEM;
                goto out_free;
            }
            p->rules = rules;
            p->cap = cap;
        }
        dxb_mask_rule_t *rule = &p->rules[p->count];
        memset(rule, 0, sizeof(*rule));
        err = s_parse_rule(text, rs, re, rule, rule_no, errbuf, errcap);
        if (err) {
            goto out_free;
        }
        if (s_policy_lookup(p, (const uint8_t *)rule->field, rule->field_len, NULL) != NULL) {
            char shown[64];
            s_show_name((const uint8_t *)rule->field, rule->field_len, shown, sizeof(shown));
            s_errf(errbuf, errcap, "policy rule %zu (offset %zu, field \"%s\"): field named twice",
                   rule_no, rs, shown);
            err = DXB_EINVAL;
            goto out_free;
        }
        s_policy_index(p, (int16_t)p->count);
        p->needs_key = p->needs_key || rule->action == DXB_MASK_HASH;
        p->count++;
    }
    *policy_out = p;
    return DXB_OK;

out_free:
    dxb_mask_policy_destroy(&p);
    return err;
}

/* Appends token with the escapes the parser needs: '\' ';' '=' always, spaces
 * where the parser would trim them (leading when lead, trailing always). */
static dxb_err_t
s_put_escaped(mask_buf_t *b, const char *p, size_t len, bool lead)
{
    size_t first = 0, last = len;
    while (first < len && p[first] == ' ') {
        first++;
    }
    while (last > 0 && p[last - 1] == ' ') {
        last--;
    }
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        bool esc =
            c == '\\' || c == ';' || c == '=' || (c == ' ' && ((lead && i < first) || i >= last));
        dxb_err_t err = esc ? s_buf_byte(b, '\\') : DXB_OK;
        if (!err) {
            err = s_buf_byte(b, (uint8_t)c);
        }
        if (err) {
            return err;
        }
    }
    return DXB_OK;
}

dxb_err_t
dxb_mask_policy_format(const dxb_mask_policy_t *policy, char **text_out, size_t *len_out)
{
    mask_buf_t b = {0};
    dxb_err_t err = s_buf_reserve(&b, 0);
    for (size_t i = 0; !err && i < policy->count; i++) {
        const dxb_mask_rule_t *r = &policy->rules[i];
        char num[48];
        if (i > 0) {
            err = s_buf_byte(&b, ';');
        }
        if (!err) {
            err = s_put_escaped(&b, r->field, r->field_len, true);
        }
        if (!err) {
            err = s_buf_byte(&b, '=');
        }
        const char *name = dxb_mask_action_name(r->action);
        if (!err) {
            err = s_buf_put(&b, name, strlen(name));
        }
        if (err) {
            break;
        }
        if (r->action == DXB_MASK_KEEP) {
            int n = snprintf(num, sizeof(num), ":%u,%u", (unsigned)r->keep_first,
                             (unsigned)r->keep_last);
            err = s_buf_put(&b, num, (size_t)n);
        } else if (r->action != DXB_MASK_DROP && r->has_text) {
            err = s_buf_byte(&b, ':');
            if (!err) {
                err = s_put_escaped(&b, r->text, r->text_len, false);
            }
        }
    }
    if (err) {
        s_buf_free(&b);
        return err;
    }
    *text_out = (char *)b.data;
    *len_out = b.len;
    return DXB_OK;
}

size_t
dxb_mask_policy_len(const dxb_mask_policy_t *policy)
{
    return policy == NULL ? 0 : policy->count;
}

const dxb_mask_rule_t *
dxb_mask_policy_rule(const dxb_mask_policy_t *policy, size_t index)
{
    return (policy == NULL || index >= policy->count) ? NULL : &policy->rules[index];
}

const dxb_mask_rule_t *
dxb_mask_policy_find(const dxb_mask_policy_t *policy, const char *field, size_t len)
{
    return s_policy_lookup(policy, (const uint8_t *)field, len, NULL);
}

bool
dxb_mask_policy_needs_key(const dxb_mask_policy_t *policy)
{
    return policy != NULL && policy->needs_key;
}

void
dxb_mask_policy_destroy(dxb_mask_policy_t **policy_p)
{
    if (policy_p == NULL || *policy_p == NULL) {
        return;
    }
    free((*policy_p)->rules);
    free(*policy_p);
    *policy_p = NULL;
}

/* ---- masker: lifecycle --------------------------------------------------------------- */

dxb_err_t
dxb_mask_new(const dxb_mask_policy_t *policy, const dxb_mask_opts_t *opts, dxb_mask_t **mask_out,
             char *errbuf, size_t errcap)
{
    s_errf(errbuf, errcap, "%s", "");
    *mask_out = NULL;
    if (policy == NULL || opts == NULL) {
        s_errf(errbuf, errcap, "mask: no policy or options");
        return DXB_EINVAL;
    }
    if (opts->format != DXB_MASK_JSONL && opts->format != DXB_MASK_CSV) {
        s_errf(errbuf, errcap, "mask: unknown payload format %d", (int)opts->format);
        return DXB_EINVAL;
    }
    if (policy->needs_key && opts->hash_key == NULL) {
        s_errf(errbuf, errcap, "mask: the policy hashes but no hash key was given");
        return DXB_EINVAL;
    }
    dxb_mask_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return DXB_ENOMEM;
    }
    m->policy = policy;
    m->format = opts->format;
    m->lenient = opts->lenient;
    m->max_record_bytes =
        opts->max_record_bytes > 0 ? opts->max_record_bytes : DXB_MASK_RECORD_MAX_DEFAULT;
    if (opts->hash_key != NULL) {
        memcpy(m->key, opts->hash_key, sizeof(m->key));
    }
    m->line = 1;
    if (s_buf_reserve(&m->out, 0) != DXB_OK) {
        dxb_mask_destroy(&m);
        return DXB_ENOMEM;
    }
    *mask_out = m;
    return DXB_OK;
}

void
dxb_mask_destroy(dxb_mask_t **mask_p)
{
    if (mask_p == NULL || *mask_p == NULL) {
        return;
    }
    dxb_mask_t *m = *mask_p;
    sodium_memzero(m->key, sizeof(m->key));
    s_buf_free(&m->out);
    s_buf_free(&m->pending);
    s_buf_free(&m->val);
    s_buf_free(&m->key_dec);
    s_buf_free(&m->masked);
    s_buf_free(&m->names);
    free(m->col_rule);
    free(m->name_off);
    free(m->fields);
    free(m);
    *mask_p = NULL;
}

const uint8_t *
dxb_mask_output(const dxb_mask_t *mask, size_t *len_out)
{
    *len_out = mask->out.len;
    return mask->out.data;
}

void
dxb_mask_drain(dxb_mask_t *mask)
{
    mask->out.len = 0;
    if (mask->out.data != NULL) {
        mask->out.data[0] = '\0';
    }
}

void
dxb_mask_get_stats(const dxb_mask_t *mask, dxb_mask_stats_t *stats_out)
{
    *stats_out = mask->stats;
}

/* ---- masker: errors ------------------------------------------------------------------ */

/* Records a record error at body offset at (body starts base bytes into the
 * record rec): works out the line and stream offset, kills the masker. */
static dxb_err_t s_fail_at(dxb_mask_t *m, dxb_err_t err, const uint8_t *rec, size_t at,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static dxb_err_t
s_fail_at(dxb_mask_t *m, dxb_err_t err, const uint8_t *rec, size_t at, const char *fmt, ...)
{
    uint64_t line = m->line;
    for (size_t i = 0; rec != NULL && i < at; i++) {
        line += rec[i] == '\n';
    }
    char why[S_ERR_MAX - 56]; /* room for the "line L, offset O: " prefix */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(m->errmsg, sizeof(m->errmsg), "line %llu, offset %llu: %s", (unsigned long long)line,
             (unsigned long long)m->offset + (unsigned long long)at, why);
    m->failed = err;
    return err;
}

static dxb_err_t
s_fail_oom(dxb_mask_t *m)
{
    snprintf(m->errmsg, sizeof(m->errmsg), "line %llu: out of memory", (unsigned long long)m->line);
    m->failed = DXB_ENOMEM;
    return DXB_ENOMEM;
}

static dxb_err_t
s_report(const dxb_mask_t *m, dxb_err_t err, char *errbuf, size_t errcap)
{
    if (err) {
        s_errf(errbuf, errcap, "%s", m->errmsg);
    }
    return err;
}

/* ---- masker: values ------------------------------------------------------------------- */

/* Writes into m->masked the keep:F,L form of the UTF-8 value v. */
static dxb_err_t
s_keep(dxb_mask_t *m, const dxb_mask_rule_t *rule, const uint8_t *v, size_t n)
{
    size_t cps = 0;
    for (size_t i = 0; i < n; i++) {
        cps += (v[i] & 0xc0) != 0x80;
    }
    m->masked.len = 0;
    dxb_err_t err = s_buf_reserve(&m->masked, n + cps);
    if (err) {
        return err;
    }
    size_t first = rule->keep_first, last = rule->keep_last;
    if (cps <= first + last) {
        /* Fail closed: a value this short would show whole; hide all of it. */
        first = 0;
        last = 0;
    }
    /* head: the byte where code point number `first` (0-based) starts. */
    size_t head = 0;
    for (size_t kept = 0; kept < first;) {
        head++;
        kept += head == n || (v[head] & 0xc0) != 0x80;
    }
    size_t tail = n;
    for (size_t kept = 0; kept < last;) {
        tail--;
        kept += (v[tail] & 0xc0) != 0x80;
    }
    uint8_t *o = m->masked.data;
    memcpy(o, v, head);
    memset(o + head, '*', cps - first - last);
    memcpy(o + head + cps - first - last, v + tail, n - tail);
    m->masked.len = head + (cps - first - last) + (n - tail);
    m->masked.data[m->masked.len] = '\0';
    return DXB_OK;
}

/* Writes into m->masked the keyed hash of v, with the rule's prefix. */
static dxb_err_t
s_hash(dxb_mask_t *m, const dxb_mask_rule_t *rule, const uint8_t *v, size_t n)
{
    uint8_t digest[DXB_MASK_HASH_HEX / 2];
    char hex[DXB_MASK_HASH_HEX + 1];
    if (crypto_generichash(digest, sizeof(digest), v, n, m->key, sizeof(m->key)) != 0) {
        return DXB_EINTERNAL;
    }
    dxb_hex_encode(digest, sizeof(digest), hex);
    m->masked.len = 0;
    dxb_err_t err = s_buf_put(&m->masked, rule->text, rule->text_len);
    if (!err) {
        err = s_buf_put(&m->masked, hex, DXB_MASK_HASH_HEX);
    }
    return err;
}

/* Fills m->masked with what rule makes of the non-empty value v; returns
 * the bytes through *p, *n. DROP is not handled here. */
static dxb_err_t
s_mask_value(dxb_mask_t *m, const dxb_mask_rule_t *rule, const uint8_t *v, size_t n,
             const uint8_t **p, size_t *len)
{
    dxb_err_t err = DXB_OK;
    switch (rule->action) {
    case DXB_MASK_REDACT:
        if (rule->has_text) {
            *p = (const uint8_t *)rule->text;
            *len = rule->text_len;
        } else {
            *p = (const uint8_t *)S_REDACT_DEFAULT;
            *len = strlen(S_REDACT_DEFAULT);
        }
        return DXB_OK;
    case DXB_MASK_KEEP:
        err = s_keep(m, rule, v, n);
        break;
    case DXB_MASK_HASH:
        err = s_hash(m, rule, v, n);
        break;
    case DXB_MASK_DROP:
    case DXB_MASK_PASS:
    case DXB_MASK_ACTION_COUNT:
        return DXB_EINTERNAL;
    }
    *p = m->masked.data;
    *len = m->masked.len;
    return err;
}

/* ---- masker: JSON Lines ---------------------------------------------------------------- */

static size_t
s_json_ws(const uint8_t *p, size_t len, size_t pos)
{
    while (pos < len && (p[pos] == ' ' || p[pos] == '\t' || p[pos] == '\r' || p[pos] == '\n')) {
        pos++;
    }
    return pos;
}

static int
s_hex4(const uint8_t *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) {
            return -1;
        }
        v = v << 4 | d;
    }
    return v;
}

static size_t
s_utf8_put(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xc0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parses the JSON string at p[*pos] == '"' (the body is valid UTF-8) and, when
 * dec is not NULL, decodes it into dec. DXB_EPROTO with *pe on bad syntax. */
static dxb_err_t
s_json_string(const uint8_t *p, size_t len, size_t *pos, mask_buf_t *dec, mask_perr_t *pe)
{
    size_t i = *pos + 1;
    uint8_t *o = NULL;
    if (dec != NULL) {
        dec->len = 0;
        /* Decoded text is never longer than its escaped form. */
        if (s_buf_reserve(dec, len - *pos) != DXB_OK) {
            return DXB_ENOMEM;
        }
        o = dec->data;
    }
    size_t n = 0;
    for (;;) {
        if (i >= len) {
            pe->at = *pos;
            pe->why = "unterminated string";
            return DXB_EPROTO;
        }
        uint8_t c = p[i];
        if (c == '"') {
            break;
        }
        if (c < 0x20) {
            pe->at = i;
            pe->why = "control character in a string (must be escaped)";
            return DXB_EPROTO;
        }
        if (c != '\\') {
            if (o != NULL) {
                o[n++] = c;
            }
            i++;
            continue;
        }
        if (i + 1 >= len) {
            pe->at = i;
            pe->why = "unterminated string";
            return DXB_EPROTO;
        }
        static const char escaped[] = "\"\\/bfnrt";
        static const uint8_t decoded[] = {'"', '\\', '/', '\b', '\f', '\n', '\r', '\t'};
        uint8_t e = p[i + 1];
        const char *simple = e == '\0' ? NULL : strchr(escaped, e);
        if (e != 'u' && simple == NULL) {
            pe->at = i;
            pe->why = "bad escape in a string";
            return DXB_EPROTO;
        }
        if (e != 'u') {
            if (o != NULL) {
                o[n++] = decoded[simple - escaped];
            }
            i += 2;
            continue;
        }
        int cp = (i + 6 <= len) ? s_hex4(p + i + 2) : -1;
        if (cp < 0) {
            pe->at = i;
            pe->why = "bad \\u escape (needs 4 hex digits)";
            return DXB_EPROTO;
        }
        size_t used = 6;
        uint32_t full = (uint32_t)cp;
        if (cp >= 0xdc00 && cp <= 0xdfff) {
            pe->at = i;
            pe->why = "lone low surrogate in a \\u escape";
            return DXB_EPROTO;
        }
        if (cp >= 0xd800 && cp <= 0xdbff) {
            int lo =
                (i + 12 <= len && p[i + 6] == '\\' && p[i + 7] == 'u') ? s_hex4(p + i + 8) : -1;
            if (lo < 0xdc00 || lo > 0xdfff) {
                pe->at = i;
                pe->why = "high surrogate without a low surrogate in a \\u escape";
                return DXB_EPROTO;
            }
            full = 0x10000 + (((uint32_t)cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
            used = 12;
        }
        if (o != NULL) {
            n += s_utf8_put(o + n, full);
        }
        i += used;
    }
    if (dec != NULL) {
        dec->len = n;
        dec->data[n] = '\0';
    }
    *pos = i + 1;
    return DXB_OK;
}

static bool
s_is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static dxb_err_t
s_json_number(const uint8_t *p, size_t len, size_t *pos, mask_perr_t *pe)
{
    size_t i = *pos;
    if (i < len && p[i] == '-') {
        i++;
    }
    if (i < len && p[i] == '0') {
        i++;
    } else if (i < len && s_is_digit(p[i])) {
        while (i < len && s_is_digit(p[i])) {
            i++;
        }
    } else {
        goto out_bad;
    }
    if (i < len && p[i] == '.') {
        i++;
        if (i >= len || !s_is_digit(p[i])) {
            goto out_bad;
        }
        while (i < len && s_is_digit(p[i])) {
            i++;
        }
    }
    if (i < len && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < len && (p[i] == '+' || p[i] == '-')) {
            i++;
        }
        if (i >= len || !s_is_digit(p[i])) {
            goto out_bad;
        }
        while (i < len && s_is_digit(p[i])) {
            i++;
        }
    }
    *pos = i;
    return DXB_OK;

out_bad:
    pe->at = *pos;
    pe->why = "bad number";
    return DXB_EPROTO;
}

static bool
s_json_literal(const uint8_t *p, size_t len, size_t *pos, const char *word)
{
    size_t n = strlen(word);
    if (len - *pos < n || memcmp(p + *pos, word, n) != 0) {
        return false;
    }
    *pos += n;
    return true;
}

/* Skips one JSON value at p[*pos] (validating it) and tells its type; depth is
 * the nesting of the value (the record object is 1). */
static dxb_err_t
s_json_value(const uint8_t *p, size_t len, size_t *pos, unsigned depth, mask_jtype_t *type,
             mask_perr_t *pe)
{
    if (*pos >= len) {
        pe->at = *pos;
        pe->why = "missing value";
        return DXB_EPROTO;
    }
    uint8_t c = p[*pos];
    if (c == '"') {
        *type = S_JSON_STRING;
        return s_json_string(p, len, pos, NULL, pe);
    }
    if (c == '-' || s_is_digit(c)) {
        *type = S_JSON_NUMBER;
        return s_json_number(p, len, pos, pe);
    }
    if (c == 't' || c == 'f' || c == 'n') {
        *type = c == 'n' ? S_JSON_NULL : S_JSON_BOOL;
        if (s_json_literal(p, len, pos, c == 't' ? "true" : c == 'f' ? "false" : "null")) {
            return DXB_OK;
        }
        pe->at = *pos;
        pe->why = "bad literal (expected true, false or null)";
        return DXB_EPROTO;
    }
    if (c != '{' && c != '[') {
        pe->at = *pos;
        pe->why = "unexpected character where a value should be";
        return DXB_EPROTO;
    }
    *type = S_JSON_NESTED;
    if (depth > DXB_MASK_JSON_DEPTH) {
        pe->at = *pos;
        pe->why = "JSON nested too deep";
        return DXB_ETOOBIG;
    }
    uint8_t close = c == '{' ? '}' : ']';
    size_t i = s_json_ws(p, len, *pos + 1);
    if (i < len && p[i] == close) {
        *pos = i + 1;
        return DXB_OK;
    }
    for (;;) {
        mask_jtype_t t;
        dxb_err_t err;
        if (c == '{') {
            if (i >= len || p[i] != '"') {
                pe->at = i;
                pe->why = "expected a string key";
                return DXB_EPROTO;
            }
            err = s_json_string(p, len, &i, NULL, pe);
            if (err) {
                return err;
            }
            i = s_json_ws(p, len, i);
            if (i >= len || p[i] != ':') {
                pe->at = i;
                pe->why = "expected ':' after a key";
                return DXB_EPROTO;
            }
            i = s_json_ws(p, len, i + 1);
        }
        err = s_json_value(p, len, &i, depth + 1, &t, pe);
        if (err) {
            return err;
        }
        i = s_json_ws(p, len, i);
        if (i < len && p[i] == ',') {
            i = s_json_ws(p, len, i + 1);
            continue;
        }
        if (i < len && p[i] == close) {
            *pos = i + 1;
            return DXB_OK;
        }
        pe->at = i;
        pe->why = c == '{' ? "expected ',' or '}'" : "expected ',' or ']'";
        return DXB_EPROTO;
    }
}

/* Appends the JSON string literal of the UTF-8 bytes v. */
static dxb_err_t
s_put_json_string(mask_buf_t *b, const uint8_t *v, size_t n)
{
    dxb_err_t err = s_buf_reserve(b, 6 * n + 2);
    if (err) {
        return err;
    }
    uint8_t *o = b->data + b->len;
    size_t k = 0;
    o[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        uint8_t c = v[i];
        if (c == '"' || c == '\\') {
            o[k++] = '\\';
            o[k++] = c;
        } else if (c < 0x20) {
            static const char hex[] = "0123456789abcdef";
            const char *short_esc = c == '\n'   ? "\\n"
                                    : c == '\r' ? "\\r"
                                    : c == '\t' ? "\\t"
                                    : c == '\b' ? "\\b"
                                    : c == '\f' ? "\\f"
                                                : NULL;
            if (short_esc != NULL) {
                o[k++] = (uint8_t)short_esc[0];
                o[k++] = (uint8_t)short_esc[1];
            } else {
                o[k] = '\\';
                o[k + 1] = 'u';
                o[k + 2] = '0';
                o[k + 3] = '0';
                o[k + 4] = (uint8_t)hex[c >> 4];
                o[k + 5] = (uint8_t)hex[c & 15];
                k += 6;
            }
        } else {
            o[k++] = c;
        }
    }
    o[k++] = '"';
    b->len += k;
    b->data[b->len] = '\0';
    return DXB_OK;
}

/* Appends one member of a JSON record, key p[ks, ke) and value p[vs, ve) of
 * type, masked by rule (NULL: copied). *first: no member written yet. */
static dxb_err_t
s_jsonl_member(dxb_mask_t *m, const uint8_t *rec, size_t base, size_t len, size_t ks, size_t ke,
               size_t vs, size_t ve, mask_jtype_t type, const dxb_mask_rule_t *rule, bool *first)
{
    const uint8_t *p = rec + base;
    const uint8_t *nv = p + vs;
    size_t nlen = ve - vs;
    bool as_string = false;
    if (rule != NULL && rule->action == DXB_MASK_DROP) {
        return DXB_OK;
    }
    if (rule != NULL && type == S_JSON_NESTED && rule->action != DXB_MASK_REDACT) {
        char shown[64];
        s_show_name(m->key_dec.data, m->key_dec.len, shown, sizeof(shown));
        return s_fail_at(m, DXB_EPROTO, rec, base + vs,
                         "field \"%s\": %s needs a string, number or bool, not an object or "
                         "array",
                         shown, dxb_mask_action_name(rule->action));
    }
    /* null and "" stay as they are: nothing to hide. */
    if (rule != NULL && type != S_JSON_NULL && !(type == S_JSON_STRING && nlen == 2)) {
        const uint8_t *v = p + vs;
        size_t vlen = nlen;
        if (type == S_JSON_STRING) {
            mask_perr_t pe = {0, 0, NULL};
            size_t at = vs;
            if (s_json_string(p, len, &at, &m->val, &pe) != DXB_OK) {
                return s_fail_oom(m); /* validated already: only memory can fail */
            }
            v = m->val.data;
            vlen = m->val.len;
        }
        dxb_err_t err = s_mask_value(m, rule, v, vlen, &nv, &nlen);
        if (err) {
            return err == DXB_ENOMEM ? s_fail_oom(m)
                                     : s_fail_at(m, err, rec, base + vs, "hashing failed");
        }
        as_string = true;
    }
    if ((!*first && s_buf_byte(&m->out, ',') != DXB_OK) ||
        s_buf_put(&m->out, p + ks, ke - ks) != DXB_OK || s_buf_byte(&m->out, ':') != DXB_OK ||
        (as_string ? s_put_json_string(&m->out, nv, nlen) : s_buf_put(&m->out, nv, nlen)) !=
            DXB_OK) {
        return s_fail_oom(m);
    }
    *first = false;
    return DXB_OK;
}

/* Masks one JSON Lines record body rec[base, base + len) (without its line
 * end eol), counting into st. */
static dxb_err_t
s_jsonl_record(dxb_mask_t *m, const uint8_t *rec, size_t base, size_t len, const char *eol,
               dxb_mask_stats_t *st)
{
    const uint8_t *p = rec + base;
    mask_perr_t pe = {0, 0, NULL};
    dxb_err_t err = DXB_OK;
    size_t i = s_json_ws(p, len, 0);
    if (i == len) {
        /* Blank line: copied, not a record. */
        if (s_buf_put(&m->out, p, len) != DXB_OK ||
            s_buf_put(&m->out, eol, strlen(eol)) != DXB_OK) {
            return s_fail_oom(m);
        }
        return DXB_OK;
    }
    if (p[i] != '{') {
        return s_fail_at(m, DXB_EPROTO, rec, base + i, "a record must be a JSON object");
    }
    if (s_buf_byte(&m->out, '{') != DXB_OK) {
        return s_fail_oom(m);
    }
    bool first = true;
    i = s_json_ws(p, len, i + 1);
    bool more = !(i < len && p[i] == '}');
    if (!more) {
        i++;
    }
    while (more) {
        if (i >= len || p[i] != '"') {
            pe.at = i;
            pe.why = "expected a string key";
            err = DXB_EPROTO;
            goto out_perr;
        }
        size_t ks = i;
        err = s_json_string(p, len, &i, &m->key_dec, &pe);
        if (err) {
            goto out_perr;
        }
        size_t ke = i;
        i = s_json_ws(p, len, i);
        if (i >= len || p[i] != ':') {
            pe.at = i;
            pe.why = "expected ':' after a key";
            err = DXB_EPROTO;
            goto out_perr;
        }
        i = s_json_ws(p, len, i + 1);
        size_t vs = i;
        mask_jtype_t type = S_JSON_NULL;
        err = s_json_value(p, len, &i, 2, &type, &pe);
        if (err) {
            goto out_perr;
        }
        const dxb_mask_rule_t *rule =
            s_policy_rule(m->policy, m->key_dec.data, m->key_dec.len, NULL);
        if (rule != NULL && rule->action == DXB_MASK_PASS) {
            st->fields[DXB_MASK_PASS]++;
            rule = NULL; /* copied as it is */
        }
        if (rule != NULL) {
            st->fields[rule->action]++;
        }
        err = s_jsonl_member(m, rec, base, len, ks, ke, vs, i, type, rule, &first);
        if (err) {
            return err;
        }
        i = s_json_ws(p, len, i);
        if (i < len && p[i] == ',') {
            i = s_json_ws(p, len, i + 1);
        } else if (i < len && p[i] == '}') {
            i++;
            more = false;
        } else {
            pe.at = i;
            pe.why = "expected ',' or '}'";
            err = DXB_EPROTO;
            goto out_perr;
        }
    }
    i = s_json_ws(p, len, i);
    if (i != len) {
        return s_fail_at(m, DXB_EPROTO, rec, base + i, "unexpected text after the object");
    }
    if (s_buf_byte(&m->out, '}') != DXB_OK || s_buf_put(&m->out, eol, strlen(eol)) != DXB_OK) {
        return s_fail_oom(m);
    }
    st->records++;
    return DXB_OK;

out_perr:
    if (err == DXB_ENOMEM) {
        return s_fail_oom(m);
    }
    return s_fail_at(m, err, rec, base + pe.at, "%s", pe.why);
}

/* ---- masker: CSV ------------------------------------------------------------------------ */

/* Splits a CSV record body p[0, len) into m->fields, *count_out of them.
 * More than max_fields: DXB_ETOOBIG. Malformed: DXB_EPROTO. *pe says where
 * (with the 1-based field number). */
static dxb_err_t
s_csv_split(dxb_mask_t *m, const uint8_t *p, size_t len, size_t max_fields, size_t *count_out,
            mask_perr_t *pe)
{
    size_t pos = 0, n = 0;
    for (;;) {
        pe->at = pos;
        pe->field = n + 1;
        if (n == max_fields) {
            pe->why = "too many fields";
            return DXB_ETOOBIG;
        }
        if (n == m->fields_cap) {
            size_t cap = m->fields_cap == 0 ? 16 : m->fields_cap * 2;
            mask_field_t *grown = realloc(m->fields, cap * sizeof(*grown));
            if (grown == NULL) {
                return DXB_ENOMEM;
            }
            m->fields = grown;
            m->fields_cap = cap;
        }
        mask_field_t *f = &m->fields[n];
        f->start = pos;
        f->quoted = pos < len && p[pos] == '"';
        if (f->quoted) {
            pos++;
            for (;;) {
                const uint8_t *q = memchr(p + pos, '"', len - pos);
                if (q == NULL) {
                    pe->why = "unterminated quoted field";
                    return DXB_EPROTO;
                }
                pos = (size_t)(q - p) + 1;
                if (pos < len && p[pos] == '"') {
                    pos++;
                    continue;
                }
                break;
            }
            if (pos < len && p[pos] != ',') {
                pe->at = pos;
                pe->why = p[pos] == '\r' ? "bare CR after a closing quote (line ends must be "
                                           "LF or CRLF)"
                                         : "text after the closing quote of a field";
                return DXB_EPROTO;
            }
        } else {
            while (pos < len && p[pos] != ',') {
                if (p[pos] == '"' || p[pos] == '\r') {
                    pe->at = pos;
                    pe->why = p[pos] == '"' ? "quote inside an unquoted field"
                                            : "bare CR (line ends must be LF or CRLF)";
                    return DXB_EPROTO;
                }
                pos++;
            }
        }
        f->end = pos;
        n++;
        if (pos == len) {
            break;
        }
        pos++; /* the comma; a record ending in one has an empty last field */
    }
    *count_out = n;
    return DXB_OK;
}

/* Decodes field f of body p (quotes removed, "" -> ") into b. */
static dxb_err_t
s_csv_decode(const uint8_t *p, const mask_field_t *f, mask_buf_t *b)
{
    b->len = 0;
    if (!f->quoted) {
        return s_buf_put(b, p + f->start, f->end - f->start);
    }
    dxb_err_t err = s_buf_reserve(b, f->end - f->start);
    if (err) {
        return err;
    }
    size_t n = 0;
    for (size_t i = f->start + 1; i + 1 < f->end; i++) {
        b->data[n++] = p[i];
        if (p[i] == '"') {
            i++;
        }
    }
    b->len = n;
    b->data[n] = '\0';
    return DXB_OK;
}

/* Appends v as a CSV field, quoted when asked or when it needs quotes. */
static dxb_err_t
s_put_csv_field(mask_buf_t *b, const uint8_t *v, size_t n, bool quote)
{
    for (size_t i = 0; i < n && !quote; i++) {
        quote = v[i] == ',' || v[i] == '"' || v[i] == '\r' || v[i] == '\n';
    }
    if (!quote) {
        return s_buf_put(b, v, n);
    }
    dxb_err_t err = s_buf_reserve(b, 2 * n + 2);
    if (err) {
        return err;
    }
    uint8_t *o = b->data + b->len;
    size_t k = 0;
    o[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '"') {
            o[k++] = '"';
        }
        o[k++] = v[i];
    }
    o[k++] = '"';
    b->len += k;
    b->data[b->len] = '\0';
    return DXB_OK;
}

/* Writes into out the header name of 1-based column col for messages, or ""
 * before the header is known or past its end. */
static void
s_csv_column_name(const dxb_mask_t *m, size_t col, char *out, size_t cap)
{
    out[0] = '\0';
    if (col == 0 || col > m->ncols || m->name_off == NULL) {
        return;
    }
    char shown[64];
    size_t from = m->name_off[col - 1];
    s_show_name(m->names.data + from, m->name_off[col] - from, shown, sizeof(shown));
    snprintf(out, cap, " (\"%s\")", shown);
}

static dxb_err_t
s_csv_split_fail(dxb_mask_t *m, dxb_err_t err, const uint8_t *rec, size_t base,
                 const mask_perr_t *pe)
{
    char col[80];
    if (err == DXB_ENOMEM) {
        return s_fail_oom(m);
    }
    if (err == DXB_ETOOBIG && !m->header_done) {
        return s_fail_at(m, DXB_ETOOBIG, rec, base + pe->at, "header has more than %d columns",
                         DXB_MASK_MAX_COLUMNS);
    }
    if (err == DXB_ETOOBIG) {
        return s_fail_at(m, DXB_EPROTO, rec, base + pe->at,
                         "record has more fields than the header's %zu", m->ncols);
    }
    s_csv_column_name(m, pe->field, col, sizeof(col));
    return s_fail_at(m, err, rec, base + pe->at, "%s %zu%s: %s",
                     m->header_done ? "field" : "header field", pe->field, col, pe->why);
}

/* Writes the header row p without the dropped columns. */
static dxb_err_t
s_csv_put_header(dxb_mask_t *m, const uint8_t *p, const char *eol)
{
    size_t n = m->ncols;
    bool first = true;
    for (size_t c = 0; c < n; c++) {
        int32_t r = m->col_rule[c];
        if (r >= 0 && m->policy->rules[r].action == DXB_MASK_DROP) {
            continue;
        }
        const mask_field_t *f = &m->fields[c];
        if ((!first && s_buf_byte(&m->out, ',') != DXB_OK) ||
            s_buf_put(&m->out, p + f->start, f->end - f->start) != DXB_OK) {
            return s_fail_oom(m);
        }
        first = false;
    }
    if (s_buf_put(&m->out, eol, strlen(eol)) != DXB_OK) {
        return s_fail_oom(m);
    }
    m->header_done = true;
    return DXB_OK;
}

/* Takes the header row: maps columns to rules, checks the policy against
 * it, writes it without the dropped columns. */
static dxb_err_t
s_csv_header(dxb_mask_t *m, const uint8_t *rec, size_t base, size_t len, const char *eol)
{
    const uint8_t *p = rec + base;
    mask_perr_t pe = {0, 0, NULL};
    size_t n = 0;
    dxb_err_t err = s_csv_split(m, p, len, DXB_MASK_MAX_COLUMNS, &n, &pe);
    if (err) {
        return s_csv_split_fail(m, err, rec, base, &pe);
    }
    size_t kept = 0;
    m->col_rule = malloc(n * sizeof(*m->col_rule));
    m->name_off = malloc((n + 1) * sizeof(*m->name_off));
    bool *seen = calloc(m->policy->count + 1, sizeof(*seen));
    if (m->col_rule == NULL || m->name_off == NULL || seen == NULL) {
        err = s_fail_oom(m);
        goto out_free;
    }
    m->name_off[0] = 0;
    for (size_t c = 0; c < n; c++) {
        int32_t r = -1;
        if (s_csv_decode(p, &m->fields[c], &m->key_dec) != DXB_OK ||
            s_buf_put(&m->names, m->key_dec.data, m->key_dec.len) != DXB_OK) {
            err = s_fail_oom(m);
            goto out_free;
        }
        m->name_off[c + 1] = m->names.len;
        if (s_policy_rule(m->policy, m->key_dec.data, m->key_dec.len, &r) != NULL) {
            seen[r] = true;
            if (m->policy->rules[r].action == DXB_MASK_PASS) {
                r = -1; /* copied as it is */
            }
        }
        m->col_rule[c] = r;
        kept += r < 0 || m->policy->rules[r].action != DXB_MASK_DROP;
    }
    m->ncols = n;
    /* A policy field the header lacks may be a renamed column: fail closed. */
    for (size_t r = 0; !m->lenient && r < m->policy->count; r++) {
        const dxb_mask_rule_t *any = &m->policy->rules[r];
        if (!seen[r] && !(any->field_len == 1 && any->field[0] == '*')) {
            char shown[64];
            const dxb_mask_rule_t *rule = &m->policy->rules[r];
            s_show_name((const uint8_t *)rule->field, rule->field_len, shown, sizeof(shown));
            err = s_fail_at(m, DXB_ENOTFOUND, rec, base,
                            "policy field \"%s\" is not a column of the CSV header", shown);
            goto out_free;
        }
    }
    if (kept == 0) {
        err = s_fail_at(m, DXB_EINVAL, rec, base, "the policy drops every column");
        goto out_free;
    }
    err = s_csv_put_header(m, p, eol);

out_free:
    free(seen);
    return err;
}

/* Masks one CSV line body rec[base, base + len) (without its line end eol):
 * the header, a data row (counted into st) or an empty line. */
static dxb_err_t
s_csv_record(dxb_mask_t *m, const uint8_t *rec, size_t base, size_t len, const char *eol,
             dxb_mask_stats_t *st)
{
    const uint8_t *p = rec + base;
    if (len == 0) {
        /* Empty line: copied, not a record. */
        return s_buf_put(&m->out, eol, strlen(eol)) != DXB_OK ? s_fail_oom(m) : DXB_OK;
    }
    if (!m->header_done) {
        return s_csv_header(m, rec, base, len, eol);
    }
    mask_perr_t pe = {0, 0, NULL};
    size_t n = 0;
    dxb_err_t err = s_csv_split(m, p, len, m->ncols, &n, &pe);
    if (err) {
        return s_csv_split_fail(m, err, rec, base, &pe);
    }
    if (n != m->ncols) {
        return s_fail_at(m, DXB_EPROTO, rec, base, "record has %zu fields, the header %zu", n,
                         m->ncols);
    }
    bool first = true;
    for (size_t c = 0; c < n; c++) {
        const mask_field_t *f = &m->fields[c];
        int32_t r = m->col_rule[c];
        const dxb_mask_rule_t *rule = r >= 0 ? &m->policy->rules[r] : NULL;
        const uint8_t *nv = p + f->start;
        size_t nlen = f->end - f->start;
        bool raw = true;
        if (rule != NULL) {
            st->fields[rule->action]++;
            if (rule->action == DXB_MASK_DROP) {
                continue;
            }
            if (s_csv_decode(p, f, &m->val) != DXB_OK) {
                return s_fail_oom(m);
            }
            /* An empty value stays empty: nothing to hide. */
            if (m->val.len > 0) {
                err = s_mask_value(m, rule, m->val.data, m->val.len, &nv, &nlen);
                if (err) {
                    return err == DXB_ENOMEM ? s_fail_oom(m)
                                             : s_fail_at(m, err, rec, base + f->start,
                                                         "column %zu: hashing failed", c + 1);
                }
                raw = false;
            }
        }
        if ((!first && s_buf_byte(&m->out, ',') != DXB_OK) ||
            (raw ? s_buf_put(&m->out, nv, nlen) : s_put_csv_field(&m->out, nv, nlen, f->quoted)) !=
                DXB_OK) {
            return s_fail_oom(m);
        }
        first = false;
    }
    if (s_buf_put(&m->out, eol, strlen(eol)) != DXB_OK) {
        return s_fail_oom(m);
    }
    st->records++;
    return DXB_OK;
}

/* ---- masker: records and streaming ------------------------------------------------------- */

/* Masks one whole record rec[0, len) (with its LF, if any). */
static dxb_err_t
s_record(dxb_mask_t *m, const uint8_t *rec, size_t len)
{
    if (len > m->max_record_bytes) {
        return s_fail_at(m, DXB_ETOOBIG, NULL, 0, "record longer than %zu bytes",
                         m->max_record_bytes);
    }
    size_t body = len, base = 0;
    const char *eol = "";
    if (body > 0 && rec[body - 1] == '\n') {
        body--;
        eol = "\n";
        if (body > 0 && rec[body - 1] == '\r') {
            body--;
            eol = "\r\n";
        }
    }
    size_t out_mark = m->out.len;
    if (m->offset == 0 && body >= 3 && memcmp(rec, "\xef\xbb\xbf", 3) == 0) {
        if (s_buf_put(&m->out, rec, 3) != DXB_OK) {
            return s_fail_oom(m);
        }
        base = 3;
        body -= 3;
    }
    size_t bad = s_utf8_invalid_at(rec + base, body);
    if (bad != body) {
        m->out.len = out_mark;
        return s_fail_at(m, DXB_EPROTO, rec, base + bad, "invalid UTF-8");
    }
    dxb_mask_stats_t st = m->stats;
    dxb_err_t err = m->format == DXB_MASK_JSONL ? s_jsonl_record(m, rec, base, body, eol, &st)
                                                : s_csv_record(m, rec, base, body, eol, &st);
    if (err) {
        /* Whole records only: forget what this one wrote. */
        m->out.len = out_mark;
        m->out.data[out_mark] = '\0';
        return err;
    }
    m->stats = st;
    for (size_t i = 0; i < len; i++) {
        m->line += rec[i] == '\n';
    }
    m->offset += len;
    return DXB_OK;
}

/* Finds the end of the record that continues with p[0, len), given the scan
 * state; true with *end (one past its LF) when it ends within p. */
static bool
s_scan(dxb_mask_t *m, const uint8_t *p, size_t len, size_t *end)
{
    if (m->format == DXB_MASK_JSONL) {
        const uint8_t *nl = memchr(p, '\n', len);
        if (nl == NULL) {
            return false;
        }
        *end = (size_t)(nl - p) + 1;
        return true;
    }
    bool q = m->in_quotes;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '"') {
            q = !q;
        } else if (p[i] == '\n' && !q) {
            m->in_quotes = false;
            *end = i + 1;
            return true;
        }
    }
    m->in_quotes = q;
    return false;
}

dxb_err_t
dxb_mask_feed(dxb_mask_t *mask, const uint8_t *data, size_t len, char *errbuf, size_t errcap)
{
    dxb_mask_t *m = mask;
    if (m->failed) {
        return s_report(m, m->failed, errbuf, errcap);
    }
    if (m->finished) {
        s_errf(errbuf, errcap, "mask: feed after finish");
        return DXB_EINVAL;
    }
    size_t pos = 0;
    while (pos < len) {
        size_t end = 0;
        size_t have = m->pending.len;
        if (!s_scan(m, data + pos, len - pos, &end)) {
            if (len - pos > m->max_record_bytes - have) {
                dxb_err_t err = s_fail_at(m, DXB_ETOOBIG, NULL, 0, "record longer than %zu bytes",
                                          m->max_record_bytes);
                return s_report(m, err, errbuf, errcap);
            }
            if (s_buf_put(&m->pending, data + pos, len - pos) != DXB_OK) {
                return s_report(m, s_fail_oom(m), errbuf, errcap);
            }
            break;
        }
        dxb_err_t err;
        if (have > 0) {
            if (end > m->max_record_bytes - have) {
                err = s_fail_at(m, DXB_ETOOBIG, NULL, 0, "record longer than %zu bytes",
                                m->max_record_bytes);
                return s_report(m, err, errbuf, errcap);
            }
            if (s_buf_put(&m->pending, data + pos, end) != DXB_OK) {
                return s_report(m, s_fail_oom(m), errbuf, errcap);
            }
            err = s_record(m, m->pending.data, m->pending.len);
            m->pending.len = 0;
        } else {
            err = s_record(m, data + pos, end);
        }
        if (err) {
            return s_report(m, err, errbuf, errcap);
        }
        pos += end;
    }
    return DXB_OK;
}

dxb_err_t
dxb_mask_finish(dxb_mask_t *mask, char *errbuf, size_t errcap)
{
    dxb_mask_t *m = mask;
    if (m->failed) {
        return s_report(m, m->failed, errbuf, errcap);
    }
    if (m->finished) {
        s_errf(errbuf, errcap, "mask: finish called twice");
        return DXB_EINVAL;
    }
    m->finished = true;
    if (m->pending.len > 0) {
        dxb_err_t err = s_record(m, m->pending.data, m->pending.len);
        m->pending.len = 0;
        if (err) {
            return s_report(m, err, errbuf, errcap);
        }
    }
    return DXB_OK;
}

dxb_err_t
dxb_mask_apply(const dxb_mask_policy_t *policy, const dxb_mask_opts_t *opts, const uint8_t *in,
               size_t len, uint8_t **out_p, size_t *out_len, dxb_mask_stats_t *stats_out,
               char *errbuf, size_t errcap)
{
    *out_p = NULL;
    *out_len = 0;
    dxb_mask_t *m = NULL;
    dxb_err_t err = dxb_mask_new(policy, opts, &m, errbuf, errcap);
    if (err) {
        return err;
    }
    err = dxb_mask_feed(m, in, len, errbuf, errcap);
    if (!err) {
        err = dxb_mask_finish(m, errbuf, errcap);
    }
    if (!err) {
        if (stats_out != NULL) {
            *stats_out = m->stats;
        }
        *out_p = m->out.data;
        *out_len = m->out.len;
        m->out.data = NULL;
        m->out.len = 0;
        m->out.cap = 0;
    }
    dxb_mask_destroy(&m);
    return err;
}
