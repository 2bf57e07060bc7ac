/* libFuzzer target: the admin protocol (PROTOCOL.md section 8) as dxbctl and
 * the broker decode it. On DXB_OK the admin result is walked with dxb_rd the
 * way dxbctl prints it; the decoder promised a nil or a table of scalar rows,
 * so any failure of that walk aborts and the fuzzer reports it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/dxb_msg.h"
#include "proto/dxb_rd.h"

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
f_walk_value(dxb_rd_t *rd)
{
    size_t len = 0;
    switch (dxb_rd_peek(rd)) {
    case DXB_RD_NIL:
        dxb_rd_nil(rd);
        break;
    case DXB_RD_BOOL:
        (void)dxb_rd_bool(rd);
        break;
    case DXB_RD_UINT:
        (void)dxb_rd_uint(rd, UINT64_MAX);
        break;
    case DXB_RD_INT:
        (void)dxb_rd_int(rd);
        break;
    case DXB_RD_FLOAT:
        (void)dxb_rd_float(rd);
        break;
    case DXB_RD_STR:
        (void)dxb_rd_str(rd, 4096, &len);
        break;
    default:
        f_check(false);
    }
}

static void
f_walk_result(dxb_bytes_t result)
{
    dxb_rd_t rd;
    size_t len = 0;
    dxb_rd_init(&rd, result.ptr, result.len);
    if (dxb_rd_peek(&rd) == DXB_RD_NIL) {
        dxb_rd_nil(&rd);
    } else {
        uint32_t rows = dxb_rd_array(&rd);
        for (uint32_t r = 0; r < rows && dxb_rd_ok(&rd); r++) {
            uint32_t cols = dxb_rd_map(&rd);
            for (uint32_t c = 0; c < cols && dxb_rd_ok(&rd); c++) {
                (void)dxb_rd_str(&rd, 64, &len);
                f_walk_value(&rd);
            }
        }
    }
    f_check(dxb_rd_ok(&rd) && dxb_rd_left(&rd) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dxb_frame_t f;
    if (dxb_msg_decode(data, size, F_MAX_FRAME, &f, NULL, 0) != DXB_OK) {
        return 0;
    }
    if (f.type == DXB_T_ADMIN_REQ) {
        f_check(f.u.admin_req.n_args <= DXB_MAX_ADMIN_ARGS);
        f_check(strlen(f.u.admin_req.command) >= 1);
        for (uint16_t i = 0; i < f.u.admin_req.n_args; i++) {
            f_check(strlen(f.u.admin_req.args[i]) <= DXB_MAX_ADMIN_ARG);
        }
    } else if (f.type == DXB_T_ADMIN_REP) {
        f_walk_result(f.u.admin_rep.result);
    }
    return 0;
}
