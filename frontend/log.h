/*
 * log.h - one line per event on stderr: "keyless-frontend[pid]: LEVEL message".
 *
 * log_warn appends strerror(errno), log_warnx does not (OpenBSD log.c convention).
 * fatal/fatalx log and exit(1): only for what cannot be recovered.
 */
#ifndef KL_FE_LOG_H
#define KL_FE_LOG_H

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN = 1, LOG_LEVEL_INFO = 2, LOG_LEVEL_DEBUG = 3 };

extern int log_level;

/* Parse "error", "warn", "info" or "debug". -1 if unknown. */
int log_level_parse(const char *s);
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
