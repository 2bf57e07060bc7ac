/* dxb_err: the one status enum of the project.
 *
 * Every action that can fail returns dxb_err_t; DXB_OK is zero so that
 * `if (err)` reads naturally. Foreign errors (errno, MDB_*, zmq) are mapped
 * where they happen, logged once there, and passed up as one of these codes.
 * The wire has its own error enum (proto/dxb_msg.h, PROTOCOL.md section 6);
 * dxb_err_to_wire()/dxb_err_from_wire() map between them explicitly.
 */
#ifndef DXB_ERR_H
#define DXB_ERR_H

#define DXB_MUST_CHECK __attribute__((warn_unused_result))

typedef enum {
    DXB_OK = 0,
    DXB_EPROTO,    /* malformed frame or field */
    DXB_EVERSION,  /* unknown protocol version */
    DXB_ETYPE,     /* unknown message type */
    DXB_ETOOBIG,   /* over a size limit */
    DXB_EAUTH,     /* authentication failed: unknown or revoked key */
    DXB_EDENIED,   /* authenticated but not allowed */
    DXB_ENOROUTE,  /* unknown recipient or no route */
    DXB_EFULL,     /* store map or disk full: back-pressure, retry later */
    DXB_EIO,       /* I/O error: the process stops taking writes */
    DXB_EEXPIRED,  /* TTL passed */
    DXB_EINTEGRITY,/* hash or MAC mismatch */
    DXB_ESPOOF,    /* claimed sender differs from authenticated identity */
    DXB_ECRYPTO,   /* decryption or signature failure */
    DXB_ECONFIG,   /* bad configuration */
    DXB_ENOTFOUND, /* looked-up object does not exist */
    DXB_EEXIST,    /* object already exists (e.g. duplicate message id) */
    DXB_ENOMEM,    /* allocation failed */
    DXB_EINVAL,    /* bad argument from a caller */
    DXB_ETIMEOUT,  /* deadline passed */
    DXB_EAGAIN,    /* try again later (no credit, socket busy) */
    DXB_ESUITE,    /* unknown or refused crypto suite */
    DXB_EINTERNAL, /* programming or unexpected library error */
    DXB_ERR_COUNT
} dxb_err_t;

/* Returns a static, lower-case, one-line description. Never NULL. */
const char *dxb_strerror(dxb_err_t err);

/* Returns the stable symbolic name ("EFULL"), used in JSON output. */
const char *dxb_err_name(dxb_err_t err);

#endif
