/* dxb_log: stderr logging with journald priority prefixes. */
#include "common/dxb_log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *s_progname = "dxb";
static dxb_log_level_t s_max_level = DXB_LOG_INFO;
static bool s_journal = false;

void
dxb_log_init(const char *progname, dxb_log_level_t max_level)
{
    s_progname = progname;
    s_max_level = max_level;
    s_journal = getenv("JOURNAL_STREAM") != NULL;
}

int
dxb_log_level_parse(const char *text)
{
    static const struct {
        const char *name;
        dxb_log_level_t level;
    } names[] = {{"error", DXB_LOG_ERR},   {"warn", DXB_LOG_WARN}, {"notice", DXB_LOG_NOTICE},
                 {"info", DXB_LOG_INFO},   {"debug", DXB_LOG_DEBUG}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(text, names[i].name) == 0) {
            return (int)names[i].level;
        }
    }
    return -1;
}

static const char *
s_level_name(dxb_log_level_t level)
{
    switch (level) {
    case DXB_LOG_ERR:
        return "ERROR";
    case DXB_LOG_WARN:
        return "WARN";
    case DXB_LOG_NOTICE:
        return "NOTICE";
    case DXB_LOG_INFO:
        return "INFO";
    default:
        return "DEBUG";
    }
}

void
dxb_log_write(dxb_log_level_t level, const char *msgid, const char *fmt, ...)
{
    if (level > s_max_level) {
        return;
    }
    char line[2048];
    size_t len = 0;
    int n;
    if (s_journal) {
        n = snprintf(line, sizeof(line), "<%d>%s %s ", (int)level, s_level_name(level), msgid);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, s_progname, (int)getpid(),
                     s_level_name(level), msgid);
    }
    if (n > 0) {
        len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
    }
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
    va_end(ap);
    if (n > 0) {
        len += (size_t)n < sizeof(line) - len - 1 ? (size_t)n : sizeof(line) - len - 2;
    }
    line[len++] = '\n';
    /* One write per record so concurrent processes do not interleave lines. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
