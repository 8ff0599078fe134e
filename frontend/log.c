#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "log.h"

int log_level = LOG_LEVEL_INFO;

int log_level_parse(const char *s)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

__attribute__((format(printf, 2, 0))) static void vlog(const char *level, const char *fmt, va_list ap, const char *err)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), "keyless-frontend[%d]: %s ", (int)getpid(), level);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        return;
    }
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    if (m < 0) {
        return;
    }
    size_t len = strnlen(line, sizeof(line) - 1);
    if (err != NULL) {
        snprintf(line + len, sizeof(line) - len, ": %s", err);
        len = strnlen(line, sizeof(line) - 1);
    }
    if (len < sizeof(line) - 1) {
        line[len++] = '\n';
    }
    /* One write per line so that lines from several workers never interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

#define LOG_BODY(minlevel, name, err)                                                                                  \
    do {                                                                                                               \
        if (log_level < (minlevel)) {                                                                                  \
            return;                                                                                                    \
        }                                                                                                              \
        va_list ap;                                                                                                    \
        va_start(ap, fmt);                                                                                             \
        vlog((name), fmt, ap, (err));                                                                                  \
        va_end(ap);                                                                                                    \
    } while (0)

void log_warn(const char *fmt, ...)
{
    const char *e = strerror(errno);
    LOG_BODY(LOG_LEVEL_WARN, "warn", e);
}

void log_warnx(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_WARN, "warn", NULL);
}

void log_info(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_INFO, "info", NULL);
}

void log_debug(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_DEBUG, "debug", NULL);
}

void fatal(const char *fmt, ...)
{
    const char *e = strerror(errno);
    va_list ap;
    va_start(ap, fmt);
    vlog("fatal", fmt, ap, e);
    va_end(ap);
    exit(1);
}

void fatalx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("fatal", fmt, ap, NULL);
    va_end(ap);
    exit(1);
}
