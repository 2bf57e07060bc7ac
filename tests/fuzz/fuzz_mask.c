/* libFuzzer target: the masking policy parser and the JSONL / CSV maskers on
 * arbitrary bytes. Input layout:
 *   byte 0          options: bit 0 format (0 JSONL, 1 CSV), bit 1 lenient,
 *                   bit 2 hash key A/B, bits 3-6 streaming piece size,
 *                   bit 7 a small record limit (64 bytes)
 *   bytes 1..NUL    policy text (no NUL: all of it, empty payload)
 *   after the NUL   payload
 * Checks beyond "no crash, no leak": the canonical policy text parses back to
 * the same canonical text; every rule is found by its name; masking in pieces
 * (drained after each feed) gives exactly the whole-buffer result, error and
 * message included; output stays within the documented bound. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/dxb_mask.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
s_check_policy(const dxb_mask_policy_t *p)
{
    char *canon = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    dxb_mask_policy_t *back = NULL;
    char msg[256];
    for (size_t i = 0; i < dxb_mask_policy_len(p); i++) {
        const dxb_mask_rule_t *r = dxb_mask_policy_rule(p, i);
        if (dxb_mask_policy_find(p, r->field, r->field_len) != r || r->field_len == 0 ||
            r->field_len > DXB_MASK_FIELD_MAX || r->action >= DXB_MASK_ACTION_COUNT) {
            __builtin_trap();
        }
    }
    if (dxb_mask_policy_format(p, &canon, &len) != DXB_OK) {
        return;
    }
    if (dxb_mask_policy_parse(canon, len, &back, msg, sizeof(msg)) != DXB_OK) {
        __builtin_trap(); /* the canonical form must parse */
    }
    if (dxb_mask_policy_len(back) != dxb_mask_policy_len(p) ||
        dxb_mask_policy_format(back, &again, &len2) != DXB_OK || len2 != len ||
        memcmp(again, canon, len) != 0) {
        __builtin_trap();
    }
    free(again);
    free(canon);
    dxb_mask_policy_destroy(&back);
}

/* Masks payload fed in pieces of step bytes; compares with the whole run. */
static void
s_stream_compare(const dxb_mask_policy_t *p, const dxb_mask_opts_t *opts, const uint8_t *in,
                 size_t len, size_t step, dxb_err_t whole_err, const char *whole_msg,
                 const uint8_t *whole_out, size_t whole_len)
{
    dxb_mask_t *m = NULL;
    char msg[256] = "";
    if (dxb_mask_new(p, opts, &m, msg, sizeof(msg)) != DXB_OK) {
        if (whole_err == DXB_OK) {
            __builtin_trap();
        }
        return;
    }
    size_t pos = 0, got = 0;
    bool same = true;
    dxb_err_t err = DXB_OK;
    while (err == DXB_OK) {
        size_t n = len - pos < step ? len - pos : step;
        err = dxb_mask_feed(m, in + pos, n, msg, sizeof(msg));
        pos += n;
        if (err == DXB_OK && pos == len) {
            err = dxb_mask_finish(m, msg, sizeof(msg));
        }
        size_t out_len = 0;
        const uint8_t *out = dxb_mask_output(m, &out_len);
        if (whole_err == DXB_OK) {
            same = same && got + out_len <= whole_len && memcmp(whole_out + got, out, out_len) == 0;
        }
        got += out_len;
        dxb_mask_drain(m);
        if (pos == len) {
            break;
        }
    }
    if (err != whole_err || (err != DXB_OK && strcmp(msg, whole_msg) != 0) ||
        (err == DXB_OK && (!same || got != whole_len))) {
        __builtin_trap();
    }
    dxb_mask_destroy(&m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool s_ready = false;
    if (!s_ready) {
        if (sodium_init() < 0) {
            return 0;
        }
        s_ready = true;
    }
    if (size == 0) {
        return 0;
    }
    uint8_t flags = data[0];
    const uint8_t *rest = data + 1;
    size_t rest_len = size - 1;
    const uint8_t *nul = memchr(rest, '\0', rest_len);
    size_t policy_len = nul != NULL ? (size_t)(nul - rest) : rest_len;
    const uint8_t *payload = nul != NULL ? nul + 1 : rest + rest_len;
    size_t payload_len = rest_len - policy_len - (nul != NULL);

    dxb_mask_policy_t *p = NULL;
    char msg[256] = "";
    if (dxb_mask_policy_parse((const char *)rest, policy_len, &p, msg, sizeof(msg)) != DXB_OK) {
        if (p != NULL || msg[0] == '\0') {
            __builtin_trap(); /* a failure must say why and return nothing */
        }
        return 0;
    }
    s_check_policy(p);

    static const uint8_t key_a[DXB_MASK_KEY_BYTES] = {1, 2, 3};
    static const uint8_t key_b[DXB_MASK_KEY_BYTES] = {9, 8, 7};
    dxb_mask_opts_t opts = {
        .format = (flags & 1) ? DXB_MASK_CSV : DXB_MASK_JSONL,
        .lenient = (flags & 2) != 0,
        .hash_key = (flags & 4) ? key_b : key_a,
        .max_record_bytes = (flags & 0x80) ? 64 : 0,
    };
    uint8_t *out = NULL;
    size_t out_len = 0;
    dxb_mask_stats_t st;
    dxb_err_t err =
        dxb_mask_apply(p, &opts, payload, payload_len, &out, &out_len, &st, msg, sizeof(msg));
    if (err == DXB_OK) {
        /* Documented bound: each field grows by at most 2 * 64 + 4 bytes and
         * takes at least one input byte. */
        if (out == NULL || out[out_len] != '\0' ||
            out_len > payload_len + (payload_len + 1) * (2 * DXB_MASK_TEXT_MAX + 4)) {
            __builtin_trap();
        }
    } else if (out != NULL || msg[0] == '\0') {
        __builtin_trap();
    }
    size_t step = 1 + (size_t)((flags >> 3) & 15) * 5;
    s_stream_compare(p, &opts, payload, payload_len, step, err, msg, out, out_len);
    free(out);
    dxb_mask_policy_destroy(&p);
    return 0;
}
