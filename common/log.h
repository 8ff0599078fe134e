/*
 * log.h - the one logger of both processes: one line per event on stderr,
 *
 *   2026-12-03T08:30:00.123Z keyless-signer[4242]: warn: message[: strerror(errno)]
 *
 * UTC time with milliseconds, the program name given to log_init(), the pid, the level.
 * Each line is written with one write(2), so lines from several workers or threads never
 * interleave. Messages never hold secrets (PINs, keys, plaintext).
 *
 * log_warn/log_err append strerror(errno), log_warnx/log_errx do not (OpenBSD log.c
 * convention). fatal/fatalx log at error level and exit(1): only for what cannot be
 * recovered. log_level filters: error < warn < info < debug; fatal always prints.
 *
 * log_format = json (both processes' `log_format` key) writes the same event as one
 * JSON object per line, for log shippers that should not parse text:
 *
 *   {"time":"2026-12-03T08:30:00.123Z","prog":"keyless-signer","pid":4242,"level":"warn","msg":"message: errno text"}
 *
 * The message is escaped (quote, backslash, control bytes as \uXXXX); a line cut at the
 * buffer size is still valid JSON. log_diag() stays text: a person reads it at a terminal.
 */
#ifndef KL_LOG_H
#define KL_LOG_H

enum log_level { LOG_LEVEL_ERROR = 0, LOG_LEVEL_WARN = 1, LOG_LEVEL_INFO = 2, LOG_LEVEL_DEBUG = 3 };

/* The current level (default info). Lines above it are dropped. */
extern int log_level;

enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };
/* The current format (default text). */
extern int log_format;

/* Set the program name printed on every line (a static string; default "keyless"). */
void log_init(const char *prog);
/* The program name given to log_init(). */
const char *log_prog(void);
/* Parse "error", "warn", "info" or "debug". -1 if unknown. */
int log_level_parse(const char *s);
/* Parse "text" or "json". -1 if unknown. */
int log_format_parse(const char *s);

/*
 * One operator-facing line without time or level, "prog: message", for what a person
 * reads at the terminal when a start fails or a check ends: configuration errors in the
 * one format "FILE:LINE: [section] key: why", --check-config results. Always printed.
 */
void log_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_errx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
