#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "log.h"

int log_level = LOG_LEVEL_INFO;
int log_format = LOG_FORMAT_TEXT;
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

int log_format_parse(const char *s)
{
    if (strcmp(s, "text") == 0) {
        return LOG_FORMAT_TEXT;
    }
    if (strcmp(s, "json") == 0) {
        return LOG_FORMAT_JSON;
    }
    return -1;
}

/*
 * Append s to out[*len..cap) as JSON string content. Stops before a character whose
 * escape would not fit, leaving room (reserve bytes) for the closing of the object, so
 * that a cut line stays valid JSON. Bytes >= 0x80 are copied: messages are UTF-8 or ASCII.
 * 0, or -1 when s was cut (the caller appends nothing more).
 */
static int json_escape(char *out, size_t *len, size_t cap, size_t reserve, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[7];
        size_t n = 0;
        if (c == '"' || c == '\\') {
            esc[n++] = '\\';
            esc[n++] = (char)c;
        } else if (c == '\n') {
            esc[n++] = '\\';
            esc[n++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            esc[n++] = '\\';
            esc[n++] = 'u';
            esc[n++] = '0';
            esc[n++] = '0';
            esc[n++] = hex[c >> 4];
            esc[n++] = hex[c & 0xf];
        } else {
            esc[n++] = (char)c;
        }
        if (*len + n + reserve > cap) {
            return -1;
        }
        memcpy(out + *len, esc, n);
        *len += n;
    }
    return 0;
}

/* The JSON form of one event: the same fields as the text line, one object per line. */
static void vlog_json(const char *stamp, const char *level, const char *msg, const char *err)
{
    char line[2048];
    size_t len = 0;
    const size_t reserve = 3; /* "}\n and the NUL of snprintf's last call */
    int n = snprintf(line, sizeof(line), "{\"time\":\"%s\",\"prog\":\"", stamp);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        return;
    }
    len = (size_t)n;
    (void)json_escape(line, &len, sizeof(line), reserve, g_prog);
    n = snprintf(line + len, sizeof(line) - len, "\",\"pid\":%d,\"level\":\"%s\",\"msg\":\"", (int)getpid(), level);
    if (n < 0 || (size_t)n >= sizeof(line) - len) {
        return;
    }
    len += (size_t)n;
    if (json_escape(line, &len, sizeof(line), reserve, msg) == 0 && err != NULL &&
        json_escape(line, &len, sizeof(line), reserve, ": ") == 0) {
        (void)json_escape(line, &len, sizeof(line), reserve, err);
    }
    memcpy(line + len, "\"}\n", 3);
    len += 3;
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

__attribute__((format(printf, 2, 0))) static void vlog(const char *level, const char *fmt, va_list ap, const char *err)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    if (log_format == LOG_FORMAT_JSON) {
        char stamp[64], msg[1024];
        snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
        if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0) {
            return;
        }
        vlog_json(stamp, level, msg, err);
        return;
    }
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
