#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "log.h"

int log_level = LOG_LEVEL_INFO;
static const char *g_prog = "keyless";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(const char *prog)
{
    g_prog = prog;
}

const char *log_prog(void)
{
    return g_prog;
}

int log_level_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

__attribute__((format(printf, 2, 0))) static void vlog(const char *level, const char *fmt, va_list ap, const char *err)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d]: %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000), g_prog,
                     (int)getpid(), level);
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
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2; /* a cut message still ends its line */
    }
    line[len++] = '\n';
    /* One write per line so that lines from several workers or threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void log_diag(const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof(line), "%s: ", g_prog);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0) {
        return;
    }
    size_t len = strnlen(line, sizeof(line) - 1);
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

#define LOG_BODY(minlevel, err)                                                                                        \
    do {                                                                                                               \
        if (log_level < (minlevel)) {                                                                                  \
            return;                                                                                                    \
        }                                                                                                              \
        va_list ap;                                                                                                    \
        va_start(ap, fmt);                                                                                             \
        vlog(level_names[(minlevel)], fmt, ap, (err));                                                                 \
        va_end(ap);                                                                                                    \
    } while (0)

void log_err(const char *fmt, ...)
{
    const char *e = strerror(errno);
    LOG_BODY(LOG_LEVEL_ERROR, e);
}

void log_errx(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_ERROR, NULL);
}

void log_warn(const char *fmt, ...)
{
    const char *e = strerror(errno);
    LOG_BODY(LOG_LEVEL_WARN, e);
}

void log_warnx(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_WARN, NULL);
}

void log_info(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_INFO, NULL);
}

void log_debug(const char *fmt, ...)
{
    LOG_BODY(LOG_LEVEL_DEBUG, NULL);
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
