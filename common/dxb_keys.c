/* dxb_keys: node identity keys and their files (see dxb_keys.h).
 *
 * Owns: generating Ed25519 identities, deriving their X25519 halves, and the
 * two small text file formats. Invariants: a dxb_keypair_t that left this
 * module successfully always has box keys derived from its sign keys; every
 * stack buffer that held a secret seed or a secret file is wiped before
 * return, on every path. Thread context: none (libsodium is thread-safe after
 * sodium_init()).
 */
#include "common/dxb_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/dxb_log.h"
#include "common/dxb_util.h"

/* Key files are three short lines; anything bigger is not a key file. */
#define KEYS_FILE_MAX 4096
#define KEYS_PATH_MAX 4096

static const char s_z85_alphabet[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

static void s_set_err(char *errbuf, size_t errcap, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
s_set_err(char *errbuf, size_t errcap, const char *path, const char *fmt, ...)
{
    if (errbuf == NULL || errcap == 0) {
        return;
    }
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    snprintf(errbuf, errcap, "%s: %s", path, reason);
}

/* Decodes exactly 40 Z85 characters into 32 bytes. zmq_z85_decode alone is
 * not enough: it accepts groups above 2^32 (which wrap), so the result is
 * re-encoded and must give back the same text. */
static bool
s_z85_decode_key(const char *text, size_t len, uint8_t out[32])
{
    if (len != DXB_Z85_KEY_LEN || strspn(text, s_z85_alphabet) < len) {
        return false;
    }
    char copy[DXB_Z85_KEY_LEN + 1];
    char again[DXB_Z85_KEY_LEN + 1];
    memcpy(copy, text, len);
    copy[len] = '\0';
    bool ok = zmq_z85_decode(out, copy) != NULL;
    ok = ok && zmq_z85_encode(again, out, 32) != NULL && memcmp(again, copy, len) == 0;
    sodium_memzero(copy, sizeof(copy));
    sodium_memzero(again, sizeof(again));
    if (!ok) {
        sodium_memzero(out, 32);
    }
    return ok;
}

void
dxb_keys_z85(const uint8_t key[32], char out[DXB_Z85_KEY_LEN + 1])
{
    zmq_z85_encode(out, key, 32);
}

dxb_err_t
dxb_keys_box_from_sign(const uint8_t sign_pk[32], uint8_t box_pk[32])
{
    /* Fails for small-order and non-canonical points: not a usable identity. */
    if (crypto_sign_ed25519_pk_to_curve25519(box_pk, sign_pk) != 0) {
        return DXB_EINVAL;
    }
    return DXB_OK;
}

dxb_err_t
dxb_keys_parse_public(const char *z85, uint8_t sign_pk[32])
{
    uint8_t pk[32];
    uint8_t box_pk[32];
    if (z85 == NULL || !s_z85_decode_key(z85, strlen(z85), pk) ||
        dxb_keys_box_from_sign(pk, box_pk) != DXB_OK) {
        return DXB_EINVAL;
    }
    memcpy(sign_pk, pk, 32);
    return DXB_OK;
}

/* Fills the derived X25519 pair from the Ed25519 pair already in kp. */
static dxb_err_t
s_derive_box(dxb_keypair_t *kp)
{
    if (crypto_sign_ed25519_pk_to_curve25519(kp->box_pk, kp->sign_pk) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(kp->box_sk, kp->sign_sk) != 0) {
        return DXB_ECRYPTO;
    }
    return DXB_OK;
}

/* Builds a key pair from node and seed. Wipes kp on failure. */
static dxb_err_t
s_keypair_from_seed(const char *node, const uint8_t seed[32], dxb_keypair_t *kp)
{
    memset(kp, 0, sizeof(*kp));
    if (!dxb_strlcpy(kp->node, node, sizeof(kp->node)) || !dxb_id_valid(node, strlen(node))) {
        return DXB_EINVAL;
    }
    if (crypto_sign_seed_keypair(kp->sign_pk, kp->sign_sk, seed) != 0) {
        dxb_keys_wipe(kp);
        return DXB_ECRYPTO;
    }
    dxb_err_t err = s_derive_box(kp);
    if (err != DXB_OK) {
        dxb_keys_wipe(kp);
    }
    return err;
}

dxb_err_t
dxb_keys_generate(const char *node, dxb_keypair_t *out)
{
    uint8_t seed[32];
    randombytes_buf(seed, sizeof(seed));
    dxb_err_t err = s_keypair_from_seed(node, seed, out);
    sodium_memzero(seed, sizeof(seed));
    return err;
}

void
dxb_keys_wipe(dxb_keypair_t *kp)
{
    sodium_memzero(kp->sign_sk, sizeof(kp->sign_sk));
    sodium_memzero(kp->box_sk, sizeof(kp->box_sk));
}

/* ---- saving ------------------------------------------------------------ */

/* DXB_EEXIST when path (or its .tmp twin) exists, following no symlinks. The
 * .tmp check matters: dxb_write_file_atomic opens it without O_EXCL, so a
 * stale or planted .tmp would keep its own mode (or redirect through a
 * symlink) and the secret could land world-readable. */
static dxb_err_t
s_refuse_existing(const char *path)
{
    char tmp[KEYS_PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    struct stat st;
    if (lstat(path, &st) == 0 || lstat(tmp, &st) == 0) {
        dxb_log_error("DXB-KEYEXISTS", "key file exists, not overwriting path=%s", path);
        return DXB_EEXIST;
    }
    return DXB_OK;
}

dxb_err_t
dxb_keys_save(const dxb_keypair_t *kp, const char *dir)
{
    char pub_path[KEYS_PATH_MAX];
    char sec_path[KEYS_PATH_MAX];
    char pub_text[128];
    char sec_text[128];
    char z85[DXB_Z85_KEY_LEN + 1];
    uint8_t seed[32];
    dxb_err_t err = DXB_OK;

    /* The node id is used as a file name: only a valid id cannot escape dir. */
    if (!dxb_id_valid(kp->node, strnlen(kp->node, sizeof(kp->node)))) {
        return DXB_EINVAL;
    }
    int n1 = snprintf(pub_path, sizeof(pub_path), "%s/%s.pub", dir, kp->node);
    int n2 = snprintf(sec_path, sizeof(sec_path), "%s/%s.secret", dir, kp->node);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(pub_path) || (size_t)n2 >= sizeof(sec_path)) {
        return DXB_EINVAL;
    }
    err = dxb_mkdir_p(dir, 0700);
    if (err != DXB_OK) {
        return err;
    }
    err = s_refuse_existing(pub_path);
    if (err == DXB_OK) {
        err = s_refuse_existing(sec_path);
    }
    if (err != DXB_OK) {
        return err;
    }

    dxb_keys_z85(kp->sign_pk, z85);
    snprintf(pub_text, sizeof(pub_text), "node: %s\nsuite: 1\npublic_key: %s\n", kp->node, z85);
    crypto_sign_ed25519_sk_to_seed(seed, kp->sign_sk);
    dxb_keys_z85(seed, z85);
    int sec_len = snprintf(sec_text, sizeof(sec_text), "node: %s\nsuite: 1\nsecret_seed: %s\n",
                           kp->node, z85);

    /* Secret first: a crash in between leaves a key that can be re-exported,
     * never a public key whose secret is lost. */
    err = dxb_write_file_atomic(sec_path, sec_text, (size_t)sec_len, 0600);
    if (err != DXB_OK) {
        goto out_wipe;
    }
    err = dxb_write_file_atomic(pub_path, pub_text, strlen(pub_text), 0644);
    if (err != DXB_OK) {
        /* Leave nothing half-made behind: a retry must not hit EEXIST. */
        unlink(sec_path);
        goto out_wipe;
    }
out_wipe:
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(z85, sizeof(z85));
    sodium_memzero(sec_text, sizeof(sec_text));
    return err;
}

/* ---- loading ----------------------------------------------------------- */

/* Reads a whole key file into buf (NUL-terminated). For secret files the open
 * refuses symlinks and the mode must give group and others nothing. */
static dxb_err_t
s_read_key_file(const char *path, bool secret, char buf[KEYS_FILE_MAX + 1], size_t *len_out,
                char *errbuf, size_t errcap)
{
    dxb_err_t err = DXB_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC | (secret ? O_NOFOLLOW : 0));
    if (fd < 0) {
        int e = errno;
        s_set_err(errbuf, errcap, path, "%s",
                  e == ELOOP ? "is a symbolic link (refused for secret keys)" : strerror(e));
        if (e == ENOENT) {
            return DXB_ENOTFOUND;
        }
        return e == ELOOP || e == EACCES || e == EPERM ? DXB_EDENIED : DXB_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        s_set_err(errbuf, errcap, path, "%s", strerror(errno));
        err = DXB_EIO;
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        s_set_err(errbuf, errcap, path, "not a regular file");
        err = DXB_ECONFIG;
        goto out_close;
    }
    if (secret && (st.st_mode & 077) != 0) {
        s_set_err(errbuf, errcap, path, "mode %04o gives group or others access; run chmod 600",
                  (unsigned)(st.st_mode & 07777));
        err = DXB_EDENIED;
        goto out_close;
    }
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, KEYS_FILE_MAX + 1 - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            s_set_err(errbuf, errcap, path, "%s", strerror(errno));
            err = DXB_EIO;
            goto out_close;
        }
        got += (size_t)n;
        if (n == 0 || got > KEYS_FILE_MAX) {
            break;
        }
    }
    if (got > KEYS_FILE_MAX) {
        s_set_err(errbuf, errcap, path, "too large for a key file");
        err = DXB_ECONFIG;
        goto out_close;
    }
    buf[got] = '\0';
    *len_out = got;
out_close:
    close(fd);
    return err;
}

/* The three fields of a key file; values point into the file buffer. */
typedef struct {
    const char *node; /* borrowed, NUL-terminated; NULL until seen */
    const char *suite;
    const char *key; /* public_key or secret_seed */
} keys_fields_t;

/* Splits "name: value" lines in place. key_name is "public_key" or
 * "secret_seed". Every field must appear exactly once; anything else is a
 * format error described in reason. */
static bool
s_parse_fields(char *text, const char *key_name, keys_fields_t *f, char *reason, size_t cap)
{
    memset(f, 0, sizeof(*f));
    int line_no = 0;
    for (char *line = text, *next = NULL; line != NULL && *line != '\0'; line = next) {
        line_no++;
        next = strchr(line, '\n');
        if (next != NULL) {
            *next++ = '\0';
        }
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ')) {
            line[--len] = '\0';
        }
        if (len == 0 || line[0] == '#') {
            continue;
        }
        char *colon = strstr(line, ": ");
        if (colon == NULL) {
            snprintf(reason, cap, "line %d: expected 'name: value'", line_no);
            return false;
        }
        *colon = '\0';
        const char *value = colon + 2;
        const char **slot = NULL;
        if (strcmp(line, "node") == 0) {
            slot = &f->node;
        } else if (strcmp(line, "suite") == 0) {
            slot = &f->suite;
        } else if (strcmp(line, key_name) == 0) {
            slot = &f->key;
        } else {
            snprintf(reason, cap, "line %d: unknown field '%.32s'", line_no, line);
            return false;
        }
        if (*slot != NULL) {
            snprintf(reason, cap, "line %d: duplicate field '%s'", line_no, line);
            return false;
        }
        *slot = value;
    }
    const char *missing = !f->node ? "node" : !f->suite ? "suite" : !f->key ? key_name : NULL;
    if (missing != NULL) {
        snprintf(reason, cap, "missing field '%s'", missing);
        return false;
    }
    return true;
}

/* Reads and parses a key file; on DXB_OK fields point into buf. */
static dxb_err_t
s_load_fields(const char *path, bool secret, char buf[KEYS_FILE_MAX + 1], keys_fields_t *f,
              char *errbuf, size_t errcap)
{
    size_t len = 0;
    dxb_err_t err = s_read_key_file(path, secret, buf, &len, errbuf, errcap);
    if (err != DXB_OK) {
        return err;
    }
    char reason[128];
    if (strlen(buf) != len) {
        s_set_err(errbuf, errcap, path, "contains a NUL byte");
        return DXB_ECONFIG;
    }
    if (!s_parse_fields(buf, secret ? "secret_seed" : "public_key", f, reason, sizeof(reason))) {
        s_set_err(errbuf, errcap, path, "%s", reason);
        return DXB_ECONFIG;
    }
    if (!dxb_id_valid(f->node, strlen(f->node))) {
        s_set_err(errbuf, errcap, path, "invalid node id");
        return DXB_ECONFIG;
    }
    if (strcmp(f->suite, "1") != 0) {
        s_set_err(errbuf, errcap, path, "unsupported suite '%.16s' (expected 1)", f->suite);
        return DXB_ECONFIG;
    }
    return DXB_OK;
}

dxb_err_t
dxb_keys_load_secret(const char *path, dxb_keypair_t *out, char *errbuf, size_t errcap)
{
    char buf[KEYS_FILE_MAX + 1];
    uint8_t seed[32];
    keys_fields_t f;
    dxb_err_t err = s_load_fields(path, true, buf, &f, errbuf, errcap);
    if (err != DXB_OK) {
        goto out_wipe;
    }
    if (!s_z85_decode_key(f.key, strlen(f.key), seed)) {
        s_set_err(errbuf, errcap, path, "secret_seed is not 40 Z85 characters");
        err = DXB_ECONFIG;
        goto out_wipe;
    }
    err = s_keypair_from_seed(f.node, seed, out);
    if (err != DXB_OK) {
        s_set_err(errbuf, errcap, path, "cannot derive keys: %s", dxb_strerror(err));
        err = DXB_ECONFIG;
    }
out_wipe:
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(buf, sizeof(buf));
    return err;
}

dxb_err_t
dxb_keys_load_public(const char *path, char node_out[65], uint8_t sign_pk[32], char *errbuf,
                     size_t errcap)
{
    char buf[KEYS_FILE_MAX + 1];
    keys_fields_t f;
    dxb_err_t err = s_load_fields(path, false, buf, &f, errbuf, errcap);
    if (err != DXB_OK) {
        return err;
    }
    uint8_t pk[32];
    if (dxb_keys_parse_public(f.key, pk) != DXB_OK) {
        s_set_err(errbuf, errcap, path, "public_key is not a valid Z85 Ed25519 key");
        return DXB_ECONFIG;
    }
    dxb_strlcpy(node_out, f.node, 65);
    memcpy(sign_pk, pk, 32);
    return DXB_OK;
}
