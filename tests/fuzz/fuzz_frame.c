/* libFuzzer target: dxb_msg_decode on arbitrary bytes (PROTO-R5, R6).
 *
 * On DXB_OK it checks the promise of proto/dxb_msg.h that the iterators cannot
 * fail on a decoded frame: every list yields exactly its count, every ENVELOPE
 * span decodes again on its own, and the envelopes re-encode. Each body is
 * also fed to the suite-1 BODY and PLAINTEXT decoders, which take untrusted
 * bytes too. A broken promise aborts, so the fuzzer reports it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/dxb_msg.h"

#define F_MAX_FRAME (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
f_check(bool cond)
{
    if (!cond) {
        abort();
    }
}

static void
f_walk_recipients(dxb_bytes_t raw, uint16_t n)
{
    dxb_iter_t it;
    char id[DXB_ID_CAP];
    uint16_t seen = 0;
    dxb_msg_recipients_begin(raw, n, &it);
    while (dxb_msg_next_recipient(&it, id)) {
        f_check(id[0] != '\0' && strlen(id) < DXB_ID_CAP);
        seen++;
    }
    f_check(seen == n);
}

static void
f_check_plain(dxb_bytes_t bytes)
{
    dxb_plain_t p;
    if (dxb_msg_decode_plain(bytes.ptr, bytes.len, &p) == DXB_OK) {
        f_check(p.name.len >= 1 && p.content_type.len <= 128);
    }
}

static void
f_try_body(dxb_bytes_t body)
{
    dxb_body1_t b;
    if (dxb_msg_decode_body1(body.ptr, body.len, &b) == DXB_OK) {
        uint8_t wrap[80];
        f_check(b.n_wraps >= 1);
        (void)dxb_msg_body1_find_wrap(&b, "sq.hrss", wrap);
        f_check_plain(b.ciphertext);
    }
    f_check_plain(body);
}

static void
f_walk_envs(dxb_iter_t it, uint8_t type)
{
    static dxb_bytes_t raws[DXB_MAX_BATCH];
    uint32_t n = it.left;
    uint32_t seen = 0;
    dxb_env_t env;
    while (dxb_msg_next_env(&it, &env)) {
        dxb_env_t again;
        f_check(env.hdr.body_len == env.body.len);
        f_check(dxb_msg_decode_env(env.raw.ptr, env.raw.len, &again, NULL, 0) == DXB_OK);
        f_check(again.header_raw.len == env.header_raw.len);
        f_walk_recipients(env.hdr.recipients, env.hdr.n_recipients);
        f_try_body(env.body);
        raws[seen++] = env.raw;
    }
    f_check(seen == n && it.pos == it.end);

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dxb_err_t err = dxb_msg_enc_envs(&sb, type, raws, n);
    f_check(err == DXB_OK || err == DXB_ENOMEM);
    msgpack_sbuffer_destroy(&sb);
}

static void
f_walk_results(dxb_iter_t it)
{
    uint32_t n = it.left;
    uint32_t seen = 0;
    dxb_result_t r;
    while (dxb_msg_next_result(&it, &r)) {
        seen++;
    }
    f_check(seen == n && it.pos == it.end);
}

static void
f_walk_nodes(dxb_iter_t it)
{
    uint32_t n = it.left;
    uint32_t seen = 0;
    dxb_nodeinfo_t ni;
    while (dxb_msg_next_nodeinfo(&it, &ni)) {
        f_check(strlen(ni.region) == 6 && ni.level >= 1 && ni.level <= 4);
        seen++;
    }
    f_check(seen == n && it.pos == it.end);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dxb_frame_t f;
    char detail[128];
    if (dxb_msg_decode(data, size, F_MAX_FRAME, &f, detail, sizeof(detail)) != DXB_OK) {
        f_check(memchr(detail, '\0', sizeof(detail)) != NULL);
        return 0;
    }
    switch (f.type) {
    case DXB_T_PUBLISH:
    case DXB_T_DELIVER:
        f_walk_envs(f.u.envs.envs, f.type);
        break;
    case DXB_T_PUBACK:
    case DXB_T_DACK:
        f_walk_results(f.u.results.results);
        break;
    case DXB_T_DIRECTORY:
        f_walk_nodes(f.u.directory.nodes);
        break;
    case DXB_T_API_PUBLISH:
        f_walk_recipients(f.u.api_publish.recipients, f.u.api_publish.n_recipients);
        break;
    default:
        break;
    }
    return 0;
}
