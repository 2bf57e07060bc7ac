/* dxb_log: one-line log records on stderr.
 *
 * Format: `<N>LEVEL MSGID sentence key=value ...` where <N> is the syslog
 * priority prefix that journald understands (only when DXB_LOG_PREFIX is on,
 * i.e. stderr is not a terminal or JOURNAL_STREAM is set). Never log payloads
 * or secrets. Thread-safe for whole lines (one write(2) per record).
 */
#ifndef DXB_LOG_H
#define DXB_LOG_H

typedef enum {
    DXB_LOG_ERR = 3,
    DXB_LOG_WARN = 4,
    DXB_LOG_NOTICE = 5,
    DXB_LOG_INFO = 6,
    DXB_LOG_DEBUG = 7,
} dxb_log_level_t;

/* Sets the program name printed in each line and the most verbose level shown. */
void dxb_log_init(const char *progname, dxb_log_level_t max_level);

/* Parses "error|warn|notice|info|debug"; returns -1 when unknown. */
int dxb_log_level_parse(const char *text);

void dxb_log_write(dxb_log_level_t level, const char *msgid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define dxb_log_error(id, ...) dxb_log_write(DXB_LOG_ERR, id, __VA_ARGS__)
#define dxb_log_warn(id, ...) dxb_log_write(DXB_LOG_WARN, id, __VA_ARGS__)
#define dxb_log_notice(id, ...) dxb_log_write(DXB_LOG_NOTICE, id, __VA_ARGS__)
#define dxb_log_info(id, ...) dxb_log_write(DXB_LOG_INFO, id, __VA_ARGS__)
#define dxb_log_debug(id, ...) dxb_log_write(DXB_LOG_DEBUG, id, __VA_ARGS__)

#endif
