/* dxb_err: descriptions of the project status codes. */
#include "common/dxb_err.h"

static const struct {
    const char *name;
    const char *text;
} s_errs[DXB_ERR_COUNT] = {
    [DXB_OK] = {"OK", "success"},
    [DXB_EPROTO] = {"EPROTO", "malformed frame or field"},
    [DXB_EVERSION] = {"EVERSION", "unsupported protocol version"},
    [DXB_ETYPE] = {"ETYPE", "unknown message type"},
    [DXB_ETOOBIG] = {"ETOOBIG", "size limit exceeded"},
    [DXB_EAUTH] = {"EAUTH", "authentication failed"},
    [DXB_EDENIED] = {"EDENIED", "not allowed"},
    [DXB_ENOROUTE] = {"ENOROUTE", "unknown recipient"},
    [DXB_EFULL] = {"EFULL", "store full (map or disk); retry later"},
    [DXB_EIO] = {"EIO", "input/output error"},
    [DXB_EEXPIRED] = {"EEXPIRED", "time to live expired"},
    [DXB_EINTEGRITY] = {"EINTEGRITY", "integrity check failed"},
    [DXB_ESPOOF] = {"ESPOOF", "sender does not match authenticated identity"},
    [DXB_ECRYPTO] = {"ECRYPTO", "decryption or signature check failed"},
    [DXB_ECONFIG] = {"ECONFIG", "invalid configuration"},
    [DXB_ENOTFOUND] = {"ENOTFOUND", "not found"},
    [DXB_EEXIST] = {"EEXIST", "already exists"},
    [DXB_ENOMEM] = {"ENOMEM", "out of memory"},
    [DXB_EINVAL] = {"EINVAL", "invalid argument"},
    [DXB_ETIMEOUT] = {"ETIMEOUT", "timed out"},
    [DXB_EAGAIN] = {"EAGAIN", "resource temporarily unavailable"},
    [DXB_ESUITE] = {"ESUITE", "unknown or refused crypto suite"},
    [DXB_EINTERNAL] = {"EINTERNAL", "internal error"},
};

const char *
dxb_strerror(dxb_err_t err)
{
    if ((unsigned)err >= DXB_ERR_COUNT) {
        return "unknown error";
    }
    return s_errs[err].text;
}

const char *
dxb_err_name(dxb_err_t err)
{
    if ((unsigned)err >= DXB_ERR_COUNT) {
        return "EUNKNOWN";
    }
    return s_errs[err].name;
}
