/* dxb_util: clocks, hex, identifier validation and durable file steps. */
#include "common/dxb_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/dxb_log.h"

uint64_t
dxb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t
dxb_mono_ms(void)
{
    return dxb_mono_ns() / 1000000u;
}

uint64_t
dxb_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void
dxb_hex_encode(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static int
s_hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

bool
dxb_hex_decode(const char *in, uint8_t *out, size_t out_len)
{
    if (strlen(in) != 2 * out_len) {
        return false;
    }
    for (size_t i = 0; i < out_len; i++) {
        int hi = s_hex_value(in[2 * i]);
        int lo = s_hex_value(in[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

bool
dxb_id_valid(const char *text, size_t len)
{
    if (len == 0 || len > DXB_ID_MAX) {
        return false;
    }
    /* Labels are non-empty: no leading, trailing or double dots. */
    bool label_start = true;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '.') {
            if (label_start) {
                return false;
            }
            label_start = true;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!ok) {
            return false;
        }
        label_start = false;
    }
    return !label_start;
}

bool
dxb_region_valid(const char *text, size_t len)
{
    if (len != 6) {
        return false;
    }
    for (size_t i = 0; i < 6; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
    }
    return true;
}

bool
dxb_filename_safe(const char *name, size_t len)
{
    if (len == 0 || len > 200 || name[0] == '.') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '/' || name[i] == '\0' || (unsigned char)name[i] < 0x20) {
            return false;
        }
    }
    return true;
}

dxb_err_t
dxb_mkdir_p(const char *path, unsigned mode)
{
    char buf[4096];
    if (!dxb_strlcpy(buf, path, sizeof(buf))) {
        return DXB_EINVAL;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST) {
                dxb_log_error("DXB-MKDIR", "cannot create directory path=%s errno=%s", buf,
                              strerror(errno));
                return DXB_EIO;
            }
            *p = '/';
        }
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST) {
        dxb_log_error("DXB-MKDIR", "cannot create directory path=%s errno=%s", buf,
                      strerror(errno));
        return DXB_EIO;
    }
    return DXB_OK;
}

dxb_err_t
dxb_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        dxb_log_error("DXB-FSYNC", "cannot open directory path=%s errno=%s", path,
                      strerror(errno));
        return DXB_EIO;
    }
    dxb_err_t err = DXB_OK;
    if (fsync(fd) != 0) {
        dxb_log_error("DXB-FSYNC", "directory fsync failed path=%s errno=%s", path,
                      strerror(errno));
        err = DXB_EIO;
    }
    close(fd);
    return err;
}

static dxb_err_t
s_write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == ENOSPC || errno == EDQUOT ? DXB_EFULL : DXB_EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return DXB_OK;
}

dxb_err_t
dxb_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
    char tmp[4200];
    char dir[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp) || !dxb_strlcpy(dir, path, sizeof(dir))) {
        return DXB_EINVAL;
    }
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        dxb_strlcpy(dir, ".", sizeof(dir));
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    dxb_err_t err = DXB_OK;
    /* A stale or planted tmp file must not lend us its permissions or, as a
     * symlink, redirect the write: remove it and create ours exclusively. */
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        dxb_log_error("DXB-WRITE", "cannot create file path=%s errno=%s", tmp, strerror(errno));
        return errno == ENOSPC ? DXB_EFULL : DXB_EIO;
    }
    err = s_write_all(fd, data, len);
    if (err == DXB_OK && fsync(fd) != 0) {
        err = DXB_EIO;
    }
    close(fd);
    if (err != DXB_OK) {
        dxb_log_error("DXB-WRITE", "write failed path=%s err=%s", tmp, dxb_strerror(err));
        goto out_unlink;
    }
    if (rename(tmp, path) != 0) {
        dxb_log_error("DXB-WRITE", "rename failed path=%s errno=%s", path, strerror(errno));
        err = DXB_EIO;
        goto out_unlink;
    }
    return dxb_fsync_dir(dir);
out_unlink:
    unlink(tmp);
    return err;
}

dxb_err_t
dxb_read_file(const char *path, size_t max_bytes, uint8_t **out_p, size_t *len_out)
{
    dxb_err_t err = DXB_OK;
    uint8_t *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return errno == ENOENT ? DXB_ENOTFOUND : DXB_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err = DXB_EIO;
        goto out_close;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        err = DXB_ETOOBIG;
        goto out_close;
    }
    size_t size = (size_t)st.st_size;
    buf = malloc(size + 1);
    if (buf == NULL) {
        err = DXB_ENOMEM;
        goto out_close;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            err = DXB_EIO;
            goto out_free;
        }
        got += (size_t)n;
    }
    buf[size] = '\0';
    *out_p = buf;
    *len_out = size;
    buf = NULL;
out_free:
    free(buf);
out_close:
    close(fd);
    return err;
}

bool
dxb_strlcpy(char *dst, const char *src, size_t cap)
{
    size_t len = strlen(src);
    if (len >= cap) {
        if (cap > 0) {
            memcpy(dst, src, cap - 1);
            dst[cap - 1] = '\0';
        }
        return false;
    }
    memcpy(dst, src, len + 1);
    return true;
}

void
dxb_path_resolve(const char *base_dir, char *path, size_t cap)
{
    if (path[0] == '\0' || path[0] == '/') {
        return;
    }
    char tmp[8192];
    snprintf(tmp, sizeof(tmp), "%s/%s", base_dir, path);
    dxb_strlcpy(path, tmp, cap);
}
