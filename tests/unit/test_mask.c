/* Unit tests for common/dxb_mask: the policy text (parse, canonical format,
 * every error message), every action on realistic records in JSON Lines and
 * CSV (Chinese names, 18-digit ID numbers with a trailing X, 11-digit phone
 * numbers, addresses), keyed hashes, malformed payloads with the line they
 * name, line ends, streaming in pieces and the bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/dxb_mask.h"
#include "common/dxb_util.h"

static uint8_t s_key_a[DXB_MASK_KEY_BYTES];
static uint8_t s_key_b[DXB_MASK_KEY_BYTES];

static int
s_group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0) {
        return -1;
    }
    for (size_t i = 0; i < DXB_MASK_KEY_BYTES; i++) {
        s_key_a[i] = (uint8_t)i;
        s_key_b[i] = (uint8_t)(0xa5 ^ i);
    }
    return 0;
}

/* One masking run: what dxb_mask_apply returned. */
typedef struct {
    dxb_err_t err;          /* status */
    char *out;              /* output (NUL-terminated), NULL on error; owned */
    size_t len;             /* bytes of out */
    dxb_mask_stats_t stats; /* counts on success */
    char msg[256];          /* error detail */
} run_t;

static dxb_mask_policy_t *
s_policy(const char *text)
{
    dxb_mask_policy_t *p = NULL;
    char msg[256];
    dxb_err_t err = dxb_mask_policy_parse(text, strlen(text), &p, msg, sizeof(msg));
    if (err != DXB_OK) {
        print_error("policy \"%s\": %s\n", text, msg);
    }
    assert_int_equal(err, DXB_OK);
    assert_non_null(p);
    return p;
}

/* Masks in (NUL-terminated) with policy text; key may be NULL. */
static void
s_run_opts(run_t *r, const char *policy, const char *in, size_t in_len, const dxb_mask_opts_t *opts)
{
    dxb_mask_policy_t *p = s_policy(policy);
    uint8_t *out = NULL;
    memset(r, 0, sizeof(*r));
    r->err = dxb_mask_apply(p, opts, (const uint8_t *)in, in_len, &out, &r->len, &r->stats, r->msg,
                            sizeof(r->msg));
    r->out = (char *)out;
    if (r->err == DXB_OK) {
        assert_non_null(r->out);
        assert_int_equal(strlen(r->out), r->len);
    } else {
        assert_null(r->out);
        assert_true(strlen(r->msg) > 0);
    }
    dxb_mask_policy_destroy(&p);
    assert_null(p);
}

static void
s_run(run_t *r, dxb_mask_format_t format, const char *policy, const char *in, const uint8_t *key)
{
    dxb_mask_opts_t opts = {.format = format, .hash_key = key};
    s_run_opts(r, policy, in, strlen(in), &opts);
}

static void
s_done(run_t *r)
{
    free(r->out);
    r->out = NULL;
}

/* Asserts that masking in gives exactly want. */
static void
s_expect(dxb_mask_format_t format, const char *policy, const char *in, const char *want)
{
    run_t r;
    s_run(&r, format, policy, in, s_key_a);
    if (r.err != DXB_OK) {
        print_error("unexpected error: %s\n", r.msg);
    }
    assert_int_equal(r.err, DXB_OK);
    assert_string_equal(r.out, want);
    s_done(&r);
}

/* Asserts that masking in fails with err and a message containing each of
 * the (up to two) fragments. */
static void
s_expect_error(dxb_mask_format_t format, const char *policy, const char *in, dxb_err_t err,
               const char *frag1, const char *frag2)
{
    run_t r;
    s_run(&r, format, policy, in, s_key_a);
    if (r.err != err || strstr(r.msg, frag1) == NULL ||
        (frag2 != NULL && strstr(r.msg, frag2) == NULL)) {
        print_error("input %s\ngot %s: \"%s\"\nwant %s with \"%s\" and \"%s\"\n", in,
                    dxb_err_name(r.err), r.msg, dxb_err_name(err), frag1,
                    frag2 == NULL ? "" : frag2);
        fail();
    }
    s_done(&r);
}

/* The expected keyed hash of value, as 32 hex chars after prefix. */
static void
s_hash_of(const char *prefix, const char *value, const uint8_t *key, char *out, size_t cap)
{
    uint8_t d[16];
    char hex[33];
    assert_int_equal(crypto_generichash(d, sizeof(d), (const uint8_t *)value, strlen(value), key,
                                        DXB_MASK_KEY_BYTES),
                     0);
    dxb_hex_encode(d, sizeof(d), hex);
    snprintf(out, cap, "%s%s", prefix, hex);
}

/* ---- policy text ---------------------------------------------------------------------- */

static void
test_mask_policy_parses_every_action_and_formats_canonically(void **state)
{
    (void)state;
    const char *text =
        "name=keep:1,0;id_no=keep:6,4;phone=keep:3,4;address=redact;person_id=hash;notes=drop";
    dxb_mask_policy_t *p = s_policy(text);
    assert_int_equal(dxb_mask_policy_len(p), 6);
    assert_true(dxb_mask_policy_needs_key(p));

    const dxb_mask_rule_t *r = dxb_mask_policy_rule(p, 1);
    assert_string_equal(r->field, "id_no");
    assert_int_equal(r->field_len, 5);
    assert_int_equal(r->action, DXB_MASK_KEEP);
    assert_int_equal(r->keep_first, 6);
    assert_int_equal(r->keep_last, 4);
    r = dxb_mask_policy_find(p, "address", 7);
    assert_non_null(r);
    assert_int_equal(r->action, DXB_MASK_REDACT);
    assert_false(r->has_text);
    assert_int_equal(dxb_mask_policy_find(p, "person_id", 9)->action, DXB_MASK_HASH);
    assert_int_equal(dxb_mask_policy_find(p, "notes", 5)->action, DXB_MASK_DROP);
    assert_null(dxb_mask_policy_find(p, "age", 3));
    assert_null(dxb_mask_policy_find(p, "name2", 5));
    assert_null(dxb_mask_policy_rule(p, 6));

    char *canon = NULL;
    size_t len = 0;
    assert_int_equal(dxb_mask_policy_format(p, &canon, &len), DXB_OK);
    assert_string_equal(canon, text);
    assert_int_equal(len, strlen(text));
    free(canon);
    dxb_mask_policy_destroy(&p);
    assert_null(p);

    /* Spaces are allowed around rules and '='; empty rules are skipped; the
     * default redact text and an empty hash prefix are written short. */
    p = s_policy(" 姓名 = keep:1,0 ;; 身份证号=keep:6,4;\taddr=redact:***; pid = hash:;"
                 "memo=redact:N/A (见原件);pid2=hash:h: ; ");
    assert_int_equal(dxb_mask_policy_len(p), 6);
    assert_non_null(dxb_mask_policy_find(p, "姓名", strlen("姓名")));
    assert_string_equal(dxb_mask_policy_find(p, "memo", 4)->text, "N/A (见原件)");
    assert_int_equal(dxb_mask_policy_format(p, &canon, &len), DXB_OK);
    assert_string_equal(canon, "姓名=keep:1,0;身份证号=keep:6,4;addr=redact;pid=hash;"
                               "memo=redact:N/A (见原件);pid2=hash:h:");
    free(canon);
    dxb_mask_policy_destroy(&p);

    /* The empty policy masks nothing and formats as "". */
    p = s_policy("");
    assert_int_equal(dxb_mask_policy_len(p), 0);
    assert_false(dxb_mask_policy_needs_key(p));
    assert_int_equal(dxb_mask_policy_format(p, &canon, &len), DXB_OK);
    assert_string_equal(canon, "");
    free(canon);
    dxb_mask_policy_destroy(&p);
    dxb_mask_policy_destroy(&p); /* NULL is fine */
}

static void
test_mask_policy_escapes_round_trip(void **state)
{
    (void)state;
    /* field "a;b=c\d " (trailing space), text "x; y " (trailing space),
     * text of spaces only, a name with a leading space. */
    const char *text = "a\\;b\\=c\\\\d\\ =redact:x\\; y\\ ;\\ lead=redact:\\ \\ ;p=hash:\\=";
    dxb_mask_policy_t *p = s_policy(text);
    assert_int_equal(dxb_mask_policy_len(p), 3);
    const dxb_mask_rule_t *r = dxb_mask_policy_rule(p, 0);
    assert_string_equal(r->field, "a;b=c\\d ");
    assert_string_equal(r->text, "x; y ");
    r = dxb_mask_policy_rule(p, 1);
    assert_string_equal(r->field, " lead");
    assert_string_equal(r->text, "  ");
    assert_string_equal(dxb_mask_policy_rule(p, 2)->text, "=");

    char *canon = NULL;
    size_t len = 0;
    assert_int_equal(dxb_mask_policy_format(p, &canon, &len), DXB_OK);
    assert_string_equal(canon, text);
    dxb_mask_policy_t *again = s_policy(canon);
    char *canon2 = NULL;
    assert_int_equal(dxb_mask_policy_format(again, &canon2, &len), DXB_OK);
    assert_string_equal(canon2, canon);
    for (size_t i = 0; i < dxb_mask_policy_len(p); i++) {
        assert_memory_equal(dxb_mask_policy_rule(p, i), dxb_mask_policy_rule(again, i),
                            sizeof(dxb_mask_rule_t));
    }
    free(canon);
    free(canon2);
    dxb_mask_policy_destroy(&p);
    dxb_mask_policy_destroy(&again);
}

static void
s_policy_error(const char *text, size_t len, const char *frag1, const char *frag2)
{
    dxb_mask_policy_t *p = (dxb_mask_policy_t *)1;
    char msg[256] = "";
    dxb_err_t err = dxb_mask_policy_parse(text, len, &p, msg, sizeof(msg));
    if (err != DXB_EINVAL || p != NULL || strstr(msg, frag1) == NULL ||
        (frag2 != NULL && strstr(msg, frag2) == NULL)) {
        print_error("policy \"%.*s\": got %s \"%s\"; want \"%s\" \"%s\"\n", (int)len, text,
                    dxb_err_name(err), msg, frag1, frag2 == NULL ? "" : frag2);
        fail();
    }
}

static void
test_mask_policy_errors_name_the_rule_offset_and_field(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *frag1;
        const char *frag2;
    } cases[] = {
        {"name", "policy rule 1 (offset 4, field \"name\"): missing '='", NULL},
        {"name=keep:1", "policy rule 1 (offset 11, field \"name\"): keep needs F,L", NULL},
        {"name=keep", "field \"name\"): keep needs F,L", NULL},
        {"name=keep:1,1001", "keep needs F,L: two numbers 0..1000", NULL},
        {"name=keep:-1,0", "keep needs F,L", NULL},
        {"name=keep:1,0,", "unexpected text after the action", NULL},
        {"a=drop;b=mask", "policy rule 2 (offset 9, field \"b\"): unknown action", NULL},
        {"a=drop;phone=Hash", "field \"phone\"): unknown action", NULL},
        {"=drop", "policy rule 1 (offset 0): field name: empty", NULL},
        {"a=drop; =hash", "policy rule 2", "field name: empty"},
        {"id_no=drop;name=hash;id_no=keep:6,4", "policy rule 3", "\"id_no\"): field named twice"},
        {"notes=drop:all", "drop takes no argument", NULL},
        {"address=redact please", "field \"address\"): unexpected text after the action", NULL},
        {"a\\x=drop", "field name: bad escape", NULL},
        {"a=redact:x\\", "redact text: backslash at the end of the rule", NULL},
        {"a\tb=drop", "field name: control character", NULL},
        {"a=redact:x\ty", "redact text: control character", NULL},
        {"\xff=drop", "field name: invalid UTF-8", NULL},
        {"a=hash:\xe5\xbc", "hash prefix: invalid UTF-8", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        s_policy_error(cases[i].text, strlen(cases[i].text), cases[i].frag1, cases[i].frag2);
    }
    /* A NUL byte inside the text is a control character, not the end. */
    s_policy_error("a=drop;b\0c=drop", 15, "policy rule 2", "control character");

    /* Limits: names 1..128 bytes, redact text 64, hash prefix 16. */
    char text[40000];
    memset(text, 'n', 128);
    strcpy(text + 128, "=drop");
    dxb_mask_policy_t *p = s_policy(text);
    dxb_mask_policy_destroy(&p);
    memset(text, 'n', 129);
    strcpy(text + 129, "=drop");
    s_policy_error(text, strlen(text), "field name: too long", NULL);
    strcpy(text, "a=redact:");
    memset(text + 9, 'x', 64);
    text[73] = '\0';
    p = s_policy(text);
    dxb_mask_policy_destroy(&p);
    strcpy(text + 73, "x");
    s_policy_error(text, strlen(text), "redact text: too long", NULL);
    strcpy(text, "a=hash:0123456789abcdef");
    p = s_policy(text);
    dxb_mask_policy_destroy(&p);
    strcat(text, "g");
    s_policy_error(text, strlen(text), "hash prefix: too long", NULL);

    /* At most 256 rules. */
    size_t n = 0;
    for (int i = 0; i < DXB_MASK_MAX_RULES; i++) {
        n += (size_t)snprintf(text + n, sizeof(text) - n, "f%d=drop;", i);
    }
    p = s_policy(text);
    assert_int_equal(dxb_mask_policy_len(p), DXB_MASK_MAX_RULES);
    dxb_mask_policy_destroy(&p);
    snprintf(text + n, sizeof(text) - n, "one_more=hash");
    s_policy_error(text, strlen(text), "policy rule 257", "more than 256 rules");
}

/* ---- JSON Lines ------------------------------------------------------------------------ */

static void
test_mask_jsonl_masks_chinese_names_ids_phones_and_addresses(void **state)
{
    (void)state;
    const char *policy = "name=keep:1,0;id_no=keep:6,4;phone=keep:3,4;address=redact;notes=drop";
    const char *in =
        "{\"name\": \"张三\", \"id_no\": \"32130219800101123X\", \"phone\": \"13812345678\", "
        "\"address\": \"江苏省宿迁市宿城区洪泽湖路88号\", \"notes\": \"低保户\", \"age\": 42}\n"
        "{\"name\":\"欧阳娜娜\",\"id_no\":\"321322199912312345\",\"phone\":13912345678,"
        "\"address\":\"江苏省宿迁市沭阳县\",\"notes\":null,\"age\":30,\"tags\":[\"a\",{\"b\":1}]}"
        "\n";
    const char *want =
        "{\"name\":\"张*\",\"id_no\":\"321302********123X\",\"phone\":\"138****5678\","
        "\"address\":\"***\",\"age\":42}\n"
        "{\"name\":\"欧***\",\"id_no\":\"321322********2345\",\"phone\":\"139****5678\","
        "\"address\":\"***\",\"age\":30,\"tags\":[\"a\",{\"b\":1}]}\n";
    run_t r;
    s_run(&r, DXB_MASK_JSONL, policy, in, NULL);
    assert_int_equal(r.err, DXB_OK);
    assert_string_equal(r.out, want);
    assert_int_equal(r.stats.records, 2);
    assert_int_equal(r.stats.fields[DXB_MASK_KEEP], 6);
    assert_int_equal(r.stats.fields[DXB_MASK_REDACT], 2);
    assert_int_equal(r.stats.fields[DXB_MASK_DROP], 2);
    assert_int_equal(r.stats.fields[DXB_MASK_HASH], 0);
    s_done(&r);
}

static void
test_mask_jsonl_values_of_every_type(void **state)
{
    (void)state;
    /* null and "" stay; numbers and bools become masked strings; escapes are
     * decoded before masking (so \u5f20\u4e09 is 张三) and re-escaped after. */
    s_expect(DXB_MASK_JSONL, "a=redact;b=hash;c=keep:0,1;d=hash:h:;e=redact;f=keep:1,1",
             "{\"a\":null,\"b\":\"\",\"c\":true,\"d\":null,\"e\":3.5e2,\"f\":\"x\\ty\\\"z\"}\n",
             "{\"a\":null,\"b\":\"\",\"c\":\"***e\",\"d\":null,\"e\":\"***\","
             "\"f\":\"x***z\"}\n");
    s_expect(DXB_MASK_JSONL, "name=keep:1,0;note=keep:2,0",
             "{\"name\":\"\\u5f20\\u4e09\",\"note\":\"\\\"\\n\\u0001\\ud83d\\ude00\"}",
             "{\"name\":\"张*\",\"note\":\"\\\"\\n**\"}");
    /* Keys match after unescaping; duplicate keys are each masked. */
    s_expect(DXB_MASK_JSONL, "name=redact:X",
             "{\"na\\u006de\":\"张三\",\"name\":\"李四\",\"Name\":\"王五\"}\n",
             "{\"na\\u006de\":\"X\",\"name\":\"X\",\"Name\":\"王五\"}\n");
    /* Nested values: untouched when not named, droppable and redactable;
     * keep and hash on them are refused with the field named. */
    s_expect(DXB_MASK_JSONL, "addr=redact;kids=drop",
             "{\"addr\":{\"city\":\"宿迁\",\"zip\":[2238, 0]},\"kids\":[{\"n\":\"x\"}],"
             "\"meta\":{ \"k\" : [ ] }}\n",
             "{\"addr\":\"***\",\"meta\":{ \"k\" : [ ] }}\n");
    s_expect_error(DXB_MASK_JSONL, "addr=keep:1,1", "{\"a\":1}\n{\"addr\":{\"city\":\"宿迁\"}}\n",
                   DXB_EPROTO, "line 2, offset 16: field \"addr\": keep needs a string", NULL);
    s_expect_error(DXB_MASK_JSONL, "addr=hash", "{\"addr\":[1]}", DXB_EPROTO,
                   "field \"addr\": hash needs", NULL);
    /* Fields the records lack are fine in JSON Lines; {} is a record. */
    s_expect(DXB_MASK_JSONL, "id_no=keep:6,4;phone=drop", "{}\n{\"x\":1}\n", "{}\n{\"x\":1}\n");
    /* Blank lines are copied and are not records. */
    run_t r;
    s_run(&r, DXB_MASK_JSONL, "a=drop", "\n  \n{\"a\":1,\"b\":2}\n\t\n", NULL);
    assert_int_equal(r.err, DXB_OK);
    assert_string_equal(r.out, "\n  \n{\"b\":2}\n\t\n");
    assert_int_equal(r.stats.records, 1);
    s_done(&r);
}

static void
test_mask_short_values_are_masked_whole(void **state)
{
    (void)state;
    /* A value with no character between the kept ends would show whole. */
    s_expect(DXB_MASK_JSONL, "name=keep:1,0;id=keep:6,4;p=keep:3,4;z=keep:0,0",
             "{\"name\":\"李\",\"id\":\"1234567890\",\"p\":\"13812345\",\"z\":\"张三丰\"}\n",
             "{\"name\":\"*\",\"id\":\"**********\",\"p\":\"138*2345\",\"z\":\"***\"}\n");
    s_expect(DXB_MASK_JSONL, "name=keep:1,0;addr=keep:6,0",
             "{\"name\":\"张三丰\",\"addr\":\"江苏省宿迁市宿城区\"}\n",
             "{\"name\":\"张**\",\"addr\":\"江苏省宿迁市***\"}\n");
}

/* ---- CSV ------------------------------------------------------------------------------------ */

static void
test_mask_csv_masks_quoted_fields_with_commas_quotes_and_newlines(void **state)
{
    (void)state;
    const char *policy =
        "姓名=keep:1,0;身份证号=keep:6,4;手机=keep:3,4;住址=keep:3,0;备注=redact:无, 见\"附件\"";
    const char *in =
        "姓名,身份证号,手机,住址,备注,年龄\n"
        "张三,32130219800101123X,13812345678,\"江苏省宿迁市宿城区,洪泽湖路\"\"88号\"\"\","
        "\"多行\n备注\",42\n"
        "\"欧阳娜娜\",\"321322199912312345\",\"139 1234 5678\",江苏省宿迁市沭阳县,,\"3,0\"\n";
    const char *want = "姓名,身份证号,手机,住址,备注,年龄\n"
                       "张*,321302********123X,138****5678,\"江苏省****************\","
                       "\"无, 见\"\"附件\"\"\",42\n"
                       "\"欧***\",\"321322********2345\",\"139******5678\",江苏省******,,\"3,0\"\n";
    run_t r;
    s_run(&r, DXB_MASK_CSV, policy, in, NULL);
    if (r.err != DXB_OK) {
        print_error("%s\n", r.msg);
    }
    assert_int_equal(r.err, DXB_OK);
    assert_string_equal(r.out, want);
    assert_int_equal(r.stats.records, 2);
    assert_int_equal(r.stats.fields[DXB_MASK_KEEP], 8);
    assert_int_equal(r.stats.fields[DXB_MASK_REDACT], 2);
    s_done(&r);
}

static void
test_mask_csv_drops_first_and_last_columns(void **state)
{
    (void)state;
    s_expect(DXB_MASK_CSV, "id_no=drop;notes=drop",
             "id_no,name,phone,notes\n32130219800101123X,张三,13812345678,\"a,b\"\n"
             "321322199912312345,\"李,四\",13912345678,\n",
             "name,phone\n张三,13812345678\n\"李,四\",13912345678\n");
    /* Dropping a quoted header column, with a BOM and CRLF. */
    s_expect(DXB_MASK_CSV, "name=drop", "\xef\xbb\xbf\"name\",phone\r\n张三,138\r\n",
             "\xef\xbb\xbfphone\r\n138\r\n");
    /* The header names a column twice: both are masked. */
    s_expect(DXB_MASK_CSV, "x=drop", "x,y,x\n1,2,3\n", "y\n2\n");
    s_expect_error(DXB_MASK_CSV, "a=drop;b=drop", "a,b\n1,2\n", DXB_EINVAL,
                   "line 1, offset 0: the policy drops every column", NULL);
}

static void
test_mask_csv_missing_policy_field_is_an_error_unless_lenient(void **state)
{
    (void)state;
    const char *in = "姓名,手机\n张三,13812345678\n";
    s_expect_error(DXB_MASK_CSV, "姓名=keep:1,0;身份证号=keep:6,4", in, DXB_ENOTFOUND,
                   "line 1, offset 0: policy field \"身份证号\" is not a column of the CSV header",
                   NULL);
    run_t r;
    dxb_mask_opts_t opts = {.format = DXB_MASK_CSV, .lenient = true};
    s_run_opts(&r, "姓名=keep:1,0;身份证号=keep:6,4", in, strlen(in), &opts);
    assert_int_equal(r.err, DXB_OK);
    assert_string_equal(r.out, "姓名,手机\n张*,13812345678\n");
    s_done(&r);
    /* Header names are compared exactly (no trimming, case matters). */
    s_expect_error(DXB_MASK_CSV, "phone=drop", "name, phone\nx,1\n", DXB_ENOTFOUND,
                   "\"phone\" is not a column", NULL);
}

/* ---- hashing ------------------------------------------------------------------------------- */

static void
test_mask_hash_is_stable_per_key_and_differs_across_keys(void **state)
{
    (void)state;
    const char *in = "{\"person_id\":\"32130219800101123X\",\"n\":1}\n"
                     "{\"person_id\":\"32130219800101123X\",\"n\":2}\n"
                     "{\"person_id\":\"321322199912312345\",\"n\":3}\n";
    char h1[64], h2[64], hb[64], want[512];
    s_hash_of("h:", "32130219800101123X", s_key_a, h1, sizeof(h1));
    s_hash_of("h:", "321322199912312345", s_key_a, h2, sizeof(h2));
    s_hash_of("h:", "32130219800101123X", s_key_b, hb, sizeof(hb));
    assert_int_equal(strlen(h1), 2 + DXB_MASK_HASH_HEX);
    assert_string_not_equal(h1, h2);
    assert_string_not_equal(h1, hb);

    snprintf(want, sizeof(want),
             "{\"person_id\":\"%s\",\"n\":1}\n{\"person_id\":\"%s\",\"n\":2}\n"
             "{\"person_id\":\"%s\",\"n\":3}\n",
             h1, h1, h2);
    run_t r;
    s_run(&r, DXB_MASK_JSONL, "person_id=hash:h:", in, s_key_a);
    assert_int_equal(r.err, DXB_OK);
    assert_string_equal(r.out, want);
    assert_int_equal(r.stats.fields[DXB_MASK_HASH], 3);
    s_done(&r);

    /* Another grant's key gives other values for the same input. */
    s_run(&r, DXB_MASK_JSONL, "person_id=hash:h:", in, s_key_b);
    assert_int_equal(r.err, DXB_OK);
    assert_non_null(strstr(r.out, hb));
    assert_null(strstr(r.out, h1));
    s_done(&r);

    /* The same value hashes the same in CSV (quoted or not) and as a JSON
     * number, so records can be joined across datasets of one grant. */
    char want_csv[512];
    s_hash_of("", "32130219800101123X", s_key_a, h1, sizeof(h1));
    s_hash_of("", "13812345678", s_key_a, h2, sizeof(h2));
    snprintf(want_csv, sizeof(want_csv), "pid,phone\n%s,%s\n\"%s\",%s\n", h1, h2, h1, h2);
    s_expect(DXB_MASK_CSV, "pid=hash;phone=hash",
             "pid,phone\n32130219800101123X,13812345678\n\"32130219800101123X\",13812345678\n",
             want_csv);
    snprintf(want, sizeof(want), "{\"phone\":\"%s\"}\n", h2);
    s_expect(DXB_MASK_JSONL, "phone=hash", "{\"phone\":13812345678}\n", want);

    /* A policy that hashes needs a key. */
    dxb_mask_policy_t *p = s_policy("a=drop;b=hash");
    dxb_mask_t *m = (dxb_mask_t *)1;
    char msg[128];
    dxb_mask_opts_t opts = {.format = DXB_MASK_JSONL};
    assert_int_equal(dxb_mask_new(p, &opts, &m, msg, sizeof(msg)), DXB_EINVAL);
    assert_null(m);
    assert_non_null(strstr(msg, "no hash key"));
    dxb_mask_policy_destroy(&p);
}

/* ---- malformed input, line ends, empty input --------------------------------------------------
 */

static void
test_mask_malformed_inputs_give_errors_that_name_the_line(void **state)
{
    (void)state;
    const char *pol = "name=keep:1,0";
    /* CSV */
    s_expect_error(DXB_MASK_CSV, pol, "name,b\n张三,2\n\"李四,3\n", DXB_EPROTO,
                   "line 3, offset 16: field 1 (\"name\"): unterminated quoted field", NULL);
    s_expect_error(DXB_MASK_CSV, pol, "name,b\n张三,2\n李四,\"3\"x\n", DXB_EPROTO,
                   "line 3, offset 26: field 2 (\"b\"): text after the closing quote", NULL);
    s_expect_error(DXB_MASK_CSV, pol, "name,b\n张\"三,2\n", DXB_EPROTO,
                   "line 2, offset 10: field 1 (\"name\"): quote inside an unquoted field", NULL);
    s_expect_error(DXB_MASK_CSV, pol, "name,b\n1,2\n3\n", DXB_EPROTO,
                   "line 3, offset 11: record has 1 fields, the header 2", NULL);
    s_expect_error(DXB_MASK_CSV, pol, "name,b\n1,2,3\n", DXB_EPROTO, "line 2",
                   "more fields than the header's 2");
    s_expect_error(DXB_MASK_CSV, pol, "name,b\n1,2\r3,4\n", DXB_EPROTO, "line 2",
                   "field 2 (\"b\"): bare CR");
    s_expect_error(DXB_MASK_CSV, pol, "name,b\n\"a\nb\",2\nx\xff,1\n", DXB_EPROTO,
                   "line 4, offset 16: invalid UTF-8", NULL);
    s_expect_error(DXB_MASK_CSV, pol, "na\"me,b\n", DXB_EPROTO,
                   "line 1, offset 2: header field 1: quote inside", NULL);
    /* An error inside a multi-line record names the line it is on. */
    s_expect_error(DXB_MASK_CSV, pol, "name,b\n\"a\nb\nc\"d,2\n", DXB_EPROTO,
                   "line 4, offset 14: field 1", "text after the closing quote");
    /* JSON Lines */
    s_expect_error(DXB_MASK_JSONL, pol, "{\"name\":\"张三\"}\n{\"name\":}\n", DXB_EPROTO,
                   "line 2, offset 26: unexpected character where a value should be", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "{\"a\":1}\r\n{\"a\":1,}\r\n", DXB_EPROTO,
                   "line 2, offset 16: expected a string key", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "{\"a\":1}\n{\"name\":\"\xe5\xbc\xa0\xe4\"}\n", DXB_EPROTO,
                   "line 2, offset 20: invalid UTF-8", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "[1,2]\n", DXB_EPROTO,
                   "line 1, offset 0: a record must be a JSON object", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "{\"a\":1} x\n", DXB_EPROTO,
                   "line 1, offset 8: unexpected text after the object", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "{\"a\":\"\\ud800\"}\n", DXB_EPROTO,
                   "line 1, offset 6: high surrogate", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "{\"a\":\"x\ty\"}\n", DXB_EPROTO,
                   "line 1, offset 7: control character in a string", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "{\"a\":01}\n", DXB_EPROTO,
                   "line 1, offset 6: expected ',' or '}'", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "{\"a\":tru}\n", DXB_EPROTO,
                   "line 1, offset 5: bad literal", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "{\"a\":\"x\\q\"}\n", DXB_EPROTO, "bad escape", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "{\"a\":{\"b\":[1,}}\n", DXB_EPROTO,
                   "unexpected character where a value", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "{\"a\":1\n", DXB_EPROTO, "expected ',' or '}'", NULL);
    s_expect_error(DXB_MASK_JSONL, pol, "{\"a\":\"open", DXB_EPROTO,
                   "line 1, offset 5: unterminated string", NULL);
}

static void
test_mask_json_nesting_is_bounded(void **state)
{
    (void)state;
    char in[512];
    size_t n = 0;
    /* 64 levels including the record itself pass; 65 do not. */
    n += (size_t)snprintf(in, sizeof(in), "{\"a\":");
    for (int i = 0; i < 63; i++) {
        in[n++] = '[';
    }
    for (int i = 0; i < 63; i++) {
        in[n++] = ']';
    }
    memcpy(in + n, "}\n", 3);
    run_t r;
    s_run(&r, DXB_MASK_JSONL, "b=drop", in, NULL);
    assert_int_equal(r.err, DXB_OK);
    assert_string_equal(r.out, in);
    s_done(&r);

    n = (size_t)snprintf(in, sizeof(in), "{\"a\":");
    for (int i = 0; i < 64; i++) {
        in[n++] = '[';
    }
    for (int i = 0; i < 64; i++) {
        in[n++] = ']';
    }
    memcpy(in + n, "}\n", 3);
    s_expect_error(DXB_MASK_JSONL, "b=drop", in, DXB_ETOOBIG,
                   "line 1, offset 68: JSON nested too deep", NULL);
}

static void
test_mask_empty_input_gives_empty_output(void **state)
{
    (void)state;
    run_t r;
    s_run(&r, DXB_MASK_JSONL, "name=keep:1,0", "", NULL);
    assert_int_equal(r.err, DXB_OK);
    assert_string_equal(r.out, "");
    assert_int_equal(r.len, 0);
    assert_int_equal(r.stats.records, 0);
    s_done(&r);
    /* Empty CSV: no header, nothing to check the policy against, no error. */
    s_run(&r, DXB_MASK_CSV, "name=keep:1,0", "", NULL);
    assert_int_equal(r.err, DXB_OK);
    assert_string_equal(r.out, "");
    s_done(&r);
    /* A header only: no records. */
    s_run(&r, DXB_MASK_CSV, "name=drop", "name,phone\r\n", NULL);
    assert_int_equal(r.err, DXB_OK);
    assert_string_equal(r.out, "phone\r\n");
    assert_int_equal(r.stats.records, 0);
    s_done(&r);
}

static void
test_mask_crlf_and_missing_last_line_end_are_kept(void **state)
{
    (void)state;
    s_expect(DXB_MASK_CSV, "phone=keep:3,4",
             "name,phone\r\n张三,13812345678\r\n李四,\"13912345678\"\r\n",
             "name,phone\r\n张三,138****5678\r\n李四,\"139****5678\"\r\n");
    /* Each record keeps its own end; a quoted CRLF is data; the last line
     * may have no end. */
    s_expect(DXB_MASK_CSV, "phone=keep:3,4",
             "name,phone\r\n\"a\r\nb\",13812345678\n\r\n李四,13912345678",
             "name,phone\r\n\"a\r\nb\",138****5678\n\r\n李四,139****5678");
    s_expect(DXB_MASK_JSONL, "phone=keep:3,4",
             "{\"phone\":\"13812345678\"}\r\n{\"phone\":\"13912345678\"}",
             "{\"phone\":\"138****5678\"}\r\n{\"phone\":\"139****5678\"}");
}

/* ---- streaming and bounds -------------------------------------------------------------------- */

static const char s_stream_policy[] =
    "name=keep:1,0;id_no=keep:6,4;phone=keep:3,4;pid=hash:h:;x=drop";
static const char s_stream_csv[] =
    "\xef\xbb\xbfname,id_no,phone,pid,x,addr\r\n"
    "张三,32130219800101123X,13812345678,p1,\"dropped,\"\"x\"\"\",\"江苏省宿迁市\r\n宿城区\"\r\n"
    "\r\n"
    "欧阳娜娜,321322199912312345,\"139,1234,5678\",p2,,沭阳县\n"
    "李,1,2,,\"\",\"\"";
static const char s_stream_jsonl[] =
    "{\"name\":\"张三\",\"id_no\":\"32130219800101123X\",\"pid\":\"p1\",\"x\":[1,{\"y\":2}]}\r\n"
    "\n"
    "{\"phone\":13812345678,\"name\":\"\\u6b27\\u9633\\u5a1c\\u5a1c\",\"addr\":\"宿迁\"}\n"
    "{\"pid\":\"p2\"}";

/* Masks text fed in pieces of the given sizes (cycled), draining after each
 * feed, and returns the concatenated output (caller frees). */
static char *
s_stream(dxb_mask_format_t format, const char *text, const size_t *sizes, size_t nsizes)
{
    dxb_mask_policy_t *p = s_policy(s_stream_policy);
    dxb_mask_opts_t opts = {.format = format, .hash_key = s_key_a};
    dxb_mask_t *m = NULL;
    char msg[256];
    assert_int_equal(dxb_mask_new(p, &opts, &m, msg, sizeof(msg)), DXB_OK);
    size_t len = strlen(text), pos = 0, k = 0, out_len = 0;
    char *all = calloc(1, 1);
    assert_non_null(all);
    for (bool last = false; !last; k++) {
        size_t step = sizes[k % nsizes];
        if (step > len - pos) {
            step = len - pos;
        }
        dxb_err_t err = dxb_mask_feed(m, (const uint8_t *)text + pos, step, msg, sizeof(msg));
        pos += step;
        last = pos == len;
        if (last && err == DXB_OK) {
            err = dxb_mask_finish(m, msg, sizeof(msg));
        }
        if (err != DXB_OK) {
            print_error("stream: %s\n", msg);
        }
        assert_int_equal(err, DXB_OK);
        size_t n = 0;
        const uint8_t *o = dxb_mask_output(m, &n);
        all = realloc(all, out_len + n + 1);
        assert_non_null(all);
        memcpy(all + out_len, o, n);
        out_len += n;
        all[out_len] = '\0';
        dxb_mask_drain(m);
        (void)dxb_mask_output(m, &n);
        assert_int_equal(n, 0);
    }
    dxb_mask_stats_t st;
    dxb_mask_get_stats(m, &st);
    assert_int_equal(st.records, 3); /* both test texts hold three records */
    dxb_mask_destroy(&m);
    assert_null(m);
    dxb_mask_policy_destroy(&p);
    return all;
}

static void
test_mask_streaming_in_any_pieces_matches_the_whole_buffer(void **state)
{
    (void)state;
    static const dxb_mask_format_t formats[] = {DXB_MASK_CSV, DXB_MASK_JSONL};
    static const char *const texts[] = {s_stream_csv, s_stream_jsonl};
    for (size_t f = 0; f < 2; f++) {
        run_t whole;
        dxb_mask_opts_t opts = {.format = formats[f], .hash_key = s_key_a};
        s_run_opts(&whole, s_stream_policy, texts[f], strlen(texts[f]), &opts);
        if (whole.err != DXB_OK) {
            print_error("%s\n", whole.msg);
        }
        assert_int_equal(whole.err, DXB_OK);
        assert_int_equal(whole.stats.records, 3);
        /* Spot checks so that "same as whole" cannot hide a wrong whole. */
        assert_non_null(strstr(whole.out, "张*"));
        assert_non_null(strstr(whole.out, "321302********123X"));
        assert_null(strstr(whole.out, "p1"));
        assert_null(strstr(whole.out, "dropped"));
        for (size_t step = 1; step <= 9; step++) {
            char *got = s_stream(formats[f], texts[f], &step, 1);
            assert_string_equal(got, whole.out);
            free(got);
        }
        size_t len = strlen(texts[f]);
        for (size_t cut = 0; cut <= len; cut++) {
            size_t sizes[2] = {cut, len};
            char *got = s_stream(formats[f], texts[f], sizes, 2);
            assert_string_equal(got, whole.out);
            free(got);
        }
        s_done(&whole);
    }
    assert_non_null(strstr(s_stream_csv, "\xef\xbb\xbf"));
}

static void
test_mask_record_size_is_bounded_while_streaming(void **state)
{
    (void)state;
    dxb_mask_policy_t *p = s_policy("name=keep:1,0");
    dxb_mask_opts_t opts = {.format = DXB_MASK_JSONL, .max_record_bytes = 32};
    dxb_mask_t *m = NULL;
    char msg[256];
    assert_int_equal(dxb_mask_new(p, &opts, &m, msg, sizeof(msg)), DXB_OK);
    /* 32 bytes with the LF: accepted. */
    const char *ok = "{\"name\":\"张三\",\"n\":\"1234567\"}\n";
    assert_int_equal(strlen(ok), 32);
    assert_int_equal(dxb_mask_feed(m, (const uint8_t *)ok, strlen(ok), msg, sizeof(msg)), DXB_OK);
    /* A record that never ends is refused once it passes the limit, before
     * the end of the input: memory stays bounded. */
    const char *piece = "{\"name\":\"0123456789";
    assert_int_equal(dxb_mask_feed(m, (const uint8_t *)piece, strlen(piece), msg, sizeof(msg)),
                     DXB_OK);
    assert_int_equal(dxb_mask_feed(m, (const uint8_t *)piece, strlen(piece), msg, sizeof(msg)),
                     DXB_ETOOBIG);
    assert_non_null(strstr(msg, "line 2, offset 32: record longer than 32 bytes"));
    /* Dead after an error: every later call says the same. */
    msg[0] = '\0';
    assert_int_equal(dxb_mask_feed(m, (const uint8_t *)"\n", 1, msg, sizeof(msg)), DXB_ETOOBIG);
    assert_non_null(strstr(msg, "record longer than 32 bytes"));
    assert_int_equal(dxb_mask_finish(m, msg, sizeof(msg)), DXB_ETOOBIG);
    /* The good record's output is still there, whole. */
    size_t n = 0;
    const uint8_t *o = dxb_mask_output(m, &n);
    assert_string_equal((const char *)o, "{\"name\":\"张*\",\"n\":\"1234567\"}\n");
    dxb_mask_destroy(&m);

    /* Whole-buffer form: a too long CSV record in the middle. */
    run_t r;
    opts.format = DXB_MASK_CSV;
    opts.max_record_bytes = 8;
    s_run_opts(&r, "name=drop", "name,b\n1,2\n1234567,2\n", 21, &opts);
    assert_int_equal(r.err, DXB_ETOOBIG);
    assert_non_null(strstr(r.msg, "line 3, offset 11: record longer than 8 bytes"));
    dxb_mask_policy_destroy(&p);
}

static void
test_mask_failed_record_leaves_no_partial_output(void **state)
{
    (void)state;
    dxb_mask_policy_t *p = s_policy("a=redact;c=keep:1,1");
    dxb_mask_opts_t opts = {.format = DXB_MASK_JSONL};
    dxb_mask_t *m = NULL;
    char msg[256];
    assert_int_equal(dxb_mask_new(p, &opts, &m, msg, sizeof(msg)), DXB_OK);
    const char *in = "{\"a\":\"x\",\"b\":1}\n{\"a\":\"y\",\"c\":{}}\n{\"a\":\"z\"}\n";
    assert_int_equal(dxb_mask_feed(m, (const uint8_t *)in, strlen(in), msg, sizeof(msg)),
                     DXB_EPROTO);
    assert_non_null(strstr(msg, "line 2, offset 29: field \"c\": keep needs"));
    size_t n = 0;
    assert_string_equal((const char *)dxb_mask_output(m, &n), "{\"a\":\"***\",\"b\":1}\n");
    dxb_mask_stats_t st;
    dxb_mask_get_stats(m, &st);
    assert_int_equal(st.records, 1);
    assert_int_equal(st.fields[DXB_MASK_REDACT], 1);
    assert_int_equal(st.fields[DXB_MASK_KEEP], 0);
    dxb_mask_destroy(&m);

    /* finish twice, feed after finish */
    assert_int_equal(dxb_mask_new(p, &opts, &m, msg, sizeof(msg)), DXB_OK);
    assert_int_equal(dxb_mask_finish(m, msg, sizeof(msg)), DXB_OK);
    assert_int_equal(dxb_mask_finish(m, msg, sizeof(msg)), DXB_EINVAL);
    assert_int_equal(dxb_mask_feed(m, (const uint8_t *)"{}", 2, msg, sizeof(msg)), DXB_EINVAL);
    dxb_mask_destroy(&m);
    dxb_mask_destroy(&m);

    /* Bad format */
    opts.format = (dxb_mask_format_t)7;
    assert_int_equal(dxb_mask_new(p, &opts, &m, msg, sizeof(msg)), DXB_EINVAL);
    assert_non_null(strstr(msg, "unknown payload format"));
    dxb_mask_policy_destroy(&p);
}

static void
test_mask_output_is_bounded_by_a_factor_of_the_input(void **state)
{
    (void)state;
    /* Worst case per field: an empty-ish value becomes a 64-byte text of
     * quotes. The output stays within the documented bound. */
    char policy[256] = "a=redact:";
    memset(policy + 9, '"', DXB_MASK_TEXT_MAX);
    policy[9 + DXB_MASK_TEXT_MAX] = '\0';
    const char *in = "a,a,a\n1,2,3\n";
    run_t r;
    s_run(&r, DXB_MASK_CSV, policy, in, NULL);
    assert_int_equal(r.err, DXB_OK);
    assert_true(r.len <= strlen(in) + (size_t)6 * (2 * DXB_MASK_TEXT_MAX + 4));
    assert_int_equal(r.len, strlen("a,a,a\n") + (size_t)3 * (2 * 64 + 2) + 2 + 1);
    s_done(&r);
}

static void
test_mask_format_is_guessed_from_the_file_name(void **state)
{
    (void)state;
    dxb_mask_format_t f = (dxb_mask_format_t)0;
    assert_true(dxb_mask_format_guess("employees.csv", &f));
    assert_int_equal(f, DXB_MASK_CSV);
    assert_true(dxb_mask_format_guess("社保/参保人员.JSONL", &f));
    assert_int_equal(f, DXB_MASK_JSONL);
    assert_true(dxb_mask_format_guess("changes.ndjson", &f));
    assert_int_equal(f, DXB_MASK_JSONL);
    assert_true(dxb_mask_format_guess("x.Csv", &f));
    assert_int_equal(f, DXB_MASK_CSV);
    f = (dxb_mask_format_t)0;
    assert_false(dxb_mask_format_guess("report.xlsx", &f));
    assert_false(dxb_mask_format_guess("csv", &f));
    assert_false(dxb_mask_format_guess("data.json", &f));
    assert_false(dxb_mask_format_guess("data.csv.gz", &f));
    assert_false(dxb_mask_format_guess(NULL, &f));
    assert_int_equal(f, 0);
    assert_string_equal(dxb_mask_action_name(DXB_MASK_KEEP), "keep");
    assert_string_equal(dxb_mask_action_name(DXB_MASK_ACTION_COUNT), "?");
}

/* The "*" rule covers every field without a rule of its own: how a grant
 * narrowed to some fields is applied (everything else dropped). */
static void
test_mask_star_rule_keeps_only_granted_fields(void **state)
{
    (void)state;
    s_expect(DXB_MASK_CSV, "*=drop;name=keep:1,0;phone=keep:3,4",
             "name,id_no,phone,address\n张三丰,32130219800101123X,13812345678,宿迁\n",
             "name,phone\n张**,138****5678\n");
    s_expect(DXB_MASK_JSONL, "*=drop;phone=keep:3,4",
             "{\"name\":\"张三\",\"phone\":\"13812345678\",\"n\":{\"a\":1}}\n",
             "{\"phone\":\"138****5678\"}\n");
    /* pass leaves a field as it is next to "*": a grant of fields a,b. */
    s_expect(DXB_MASK_CSV, "*=drop;dept=pass;phone=keep:3,4",
             "name,dept,phone\n张三,人社局,13812345678\n", "dept,phone\n人社局,138****5678\n");
    s_expect(DXB_MASK_JSONL, "*=drop;dept=pass",
             "{\"name\":\"张三\",\"dept\":\"人社局\"}\n", "{\"dept\":\"人社局\"}\n");
    /* Explicit rules win; "*" alone in a non-lenient CSV is not a missing column. */
    s_expect(DXB_MASK_CSV, "*=redact;dept=redact:ok", "dept,name\nHR,Li\n", "dept,name\nok,***\n");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_policy_parses_every_action_and_formats_canonically),
        cmocka_unit_test(test_mask_policy_escapes_round_trip),
        cmocka_unit_test(test_mask_policy_errors_name_the_rule_offset_and_field),
        cmocka_unit_test(test_mask_jsonl_masks_chinese_names_ids_phones_and_addresses),
        cmocka_unit_test(test_mask_jsonl_values_of_every_type),
        cmocka_unit_test(test_mask_short_values_are_masked_whole),
        cmocka_unit_test(test_mask_csv_masks_quoted_fields_with_commas_quotes_and_newlines),
        cmocka_unit_test(test_mask_csv_drops_first_and_last_columns),
        cmocka_unit_test(test_mask_csv_missing_policy_field_is_an_error_unless_lenient),
        cmocka_unit_test(test_mask_hash_is_stable_per_key_and_differs_across_keys),
        cmocka_unit_test(test_mask_malformed_inputs_give_errors_that_name_the_line),
        cmocka_unit_test(test_mask_json_nesting_is_bounded),
        cmocka_unit_test(test_mask_empty_input_gives_empty_output),
        cmocka_unit_test(test_mask_crlf_and_missing_last_line_end_are_kept),
        cmocka_unit_test(test_mask_streaming_in_any_pieces_matches_the_whole_buffer),
        cmocka_unit_test(test_mask_record_size_is_bounded_while_streaming),
        cmocka_unit_test(test_mask_failed_record_leaves_no_partial_output),
        cmocka_unit_test(test_mask_output_is_bounded_by_a_factor_of_the_input),
        cmocka_unit_test(test_mask_format_is_guessed_from_the_file_name),
        cmocka_unit_test(test_mask_star_rule_keeps_only_granted_fields),
    };
    return cmocka_run_group_tests(tests, s_group_setup, NULL);
}
