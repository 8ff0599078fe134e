/* Unit tests for common/log.c: stderr is redirected to a pipe and every line is checked
 * against "YYYY-MM-DDTHH:MM:SS.mmmZ prog[pid]: level: msg", with the time close to now;
 * level filtering (error included), log_warn/log_err appending strerror(errno) and the
 * x variants not; fatal/fatalx in a forked child (exit 1, printed at any level). */
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include "kl_test.h"
#include "log.h"

#define PROG "test-log"

static int saved_stderr = -1, cap_fd = -1;
static char cap[8192];

static void capture_start(void)
{
    int p[2];
    fflush(stderr);
    if (pipe(p) != 0 || (saved_stderr = dup(STDERR_FILENO)) < 0 || dup2(p[1], STDERR_FILENO) < 0) {
        perror("capture");
        exit(2);
    }
    close(p[1]);
    cap_fd = p[0];
}

/* Restore stderr and return what was written meanwhile (NUL-terminated, in cap). */
static const char *capture_end(void)
{
    size_t len = 0;
    ssize_t n;
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    while (len < sizeof(cap) - 1 && (n = read(cap_fd, cap + len, sizeof(cap) - 1 - len)) > 0)
        len += (size_t)n;
    close(cap_fd);
    cap[len] = '\0';
    return cap;
}

/* True if text is exactly one line "TIME PROG[pid]: level_msg\n" with TIME within 5 s of now. */
static int is_line(const char *text, int pid, const char *level_msg)
{
    char pat[512];
    regex_t re;
    snprintf(pat, sizeof(pat),
             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z " PROG "\\[%d\\]: ", pid);
    if (regcomp(&re, pat, REG_EXTENDED | REG_NOSUB) != 0)
        return 0;
    int match = regexec(&re, text, 0, NULL, 0) == 0;
    regfree(&re);
    if (!match) {
        diag("no match for %s in '%s'", pat, text);
        return 0;
    }
    const char *rest = strchr(text, ' ');
    rest = strstr(rest, "]: ") + 3;
    size_t want = strlen(level_msg);
    if (strncmp(rest, level_msg, want) != 0 || strcmp(rest + want, "\n") != 0) {
        diag("got '%s', want '...: %s\\n'", text, level_msg);
        return 0;
    }
    struct tm tm = {0};
    int ms;
    if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    long skew = (long)(timegm(&tm) - time(NULL));
    if (skew < -5 || skew > 5) {
        diag("time in '%s' is %ld s from now (UTC)", text, skew);
        return 0;
    }
    return 1;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_format(void)
{
    int pid = (int)getpid();
    log_level = LOG_LEVEL_INFO;

    capture_start();
    log_warnx("hello %d", 42);
    ok(is_line(capture_end(), pid, "warn: hello 42"), "log_warnx: one line, time, prog[pid], level, message");

    capture_start();
    log_info("x=%s", "y");
    ok(is_line(capture_end(), pid, "info: x=y"), "log_info");

    capture_start();
    errno = ENOENT;
    log_warn("open %s", "/nowhere");
    ok(is_line(capture_end(), pid, "warn: open /nowhere: No such file or directory"),
       "log_warn appends strerror(errno)");

    capture_start();
    errno = EACCES;
    log_err("bind");
    ok(is_line(capture_end(), pid, "error: bind: Permission denied"), "log_err appends strerror(errno), level error");

    capture_start();
    errno = ENOENT;
    log_warnx("no errno here");
    ok(is_line(capture_end(), pid, "warn: no errno here"), "log_warnx does not append strerror");

    capture_start();
    errno = ENOENT;
    log_errx("nor here");
    ok(is_line(capture_end(), pid, "error: nor here"), "log_errx does not append strerror, level error");

    capture_start();
    log_info("%s", "");
    ok(is_line(capture_end(), pid, "info: "), "an empty message is still one line");
}

static void test_levels(void)
{
    const char *got;

    log_level = LOG_LEVEL_ERROR;
    capture_start();
    log_debug("d");
    log_info("i");
    log_warnx("w");
    errno = EIO;
    log_warn("w2");
    log_errx("e1");
    log_err("e2");
    got = capture_end();
    is_int(count_lines(got), 2, "level error: only the two error lines");
    ok(strstr(got, ": error: e1\n") != NULL && strstr(got, ": error: e2: Input/output error\n") != NULL,
       "level error: log_errx and log_err print");
    ok(strstr(got, ": warn: ") == NULL && strstr(got, ": info: ") == NULL, "level error: no warn, no info");

    log_level = LOG_LEVEL_WARN;
    capture_start();
    log_debug("d");
    log_info("i");
    log_warnx("w");
    log_errx("e");
    got = capture_end();
    is_int(count_lines(got), 2, "level warn: warn and error");
    ok(strstr(got, ": warn: w\n") != NULL && strstr(got, ": error: e\n") != NULL, "level warn: the right two");

    log_level = LOG_LEVEL_INFO;
    capture_start();
    log_debug("d");
    log_info("i");
    got = capture_end();
    is_int(count_lines(got), 1, "level info: no debug");
    ok(strstr(got, ": info: i\n") != NULL, "level info: info prints");

    log_level = LOG_LEVEL_DEBUG;
    capture_start();
    log_debug("d %d", 1);
    log_info("i");
    log_warnx("w");
    log_errx("e");
    got = capture_end();
    is_int(count_lines(got), 4, "level debug: everything");
    ok(strstr(got, ": debug: d 1\n") != NULL, "level debug: debug prints");
    log_level = LOG_LEVEL_INFO;

    /* log_diag: the operator's one-liner, no time or level, printed at every level. */
    log_level = LOG_LEVEL_ERROR;
    capture_start();
    log_diag("%s:%d: [signer] workers: not a number", "x.conf", 3);
    got = capture_end();
    ok(strcmp(got, PROG ": x.conf:3: [signer] workers: not a number\n") == 0, "log_diag: prog: message, nothing else");
    log_level = LOG_LEVEL_INFO;

    /* A message longer than the line buffer is cut but still ends its line. */
    {
        char big[2000];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        capture_start();
        log_warnx("%s", big);
        log_warnx("next");
        got = capture_end();
        is_int(count_lines(got), 2, "an over-long message is cut and the next line stays its own");
        ok(strstr(got, ": warn: next\n") != NULL, "... the next line is intact");
    }

    is_int(log_level_parse("error"), LOG_LEVEL_ERROR, "parse error");
    is_int(log_level_parse("warn"), LOG_LEVEL_WARN, "parse warn");
    is_int(log_level_parse("info"), LOG_LEVEL_INFO, "parse info");
    is_int(log_level_parse("debug"), LOG_LEVEL_DEBUG, "parse debug");
    is_int(log_level_parse("fatal"), -1, "parse fatal: not a level to set");
    is_int(log_level_parse("warning"), -1, "parse warning: unknown");
    is_int(log_level_parse(""), -1, "parse empty: unknown");
    is_int(log_level_parse("info "), -1, "parse with a trailing space: unknown");
}

/* Run fatal (with_errno) or fatalx in a child at level error; its stderr and exit status. */
static const char *run_fatal(int with_errno, int *status)
{
    int p[2];
    size_t len = 0;
    ssize_t n;
    fflush(stdout);
    fflush(stderr);
    if (pipe(p) != 0)
        return "";
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], STDERR_FILENO);
        close(p[0]);
        close(p[1]);
        log_level = LOG_LEVEL_ERROR;
        errno = ENOSPC;
        if (with_errno)
            fatal("cannot %s", "write");
        fatalx("boom %d", 7);
    }
    close(p[1]);
    while (len < sizeof(cap) - 1 && (n = read(p[0], cap + len, sizeof(cap) - 1 - len)) > 0)
        len += (size_t)n;
    close(p[0]);
    cap[len] = '\0';
    *status = -1;
    if (pid > 0)
        waitpid(pid, status, 0);
    return cap;
}

static void test_fatal(void)
{
    int status;
    const char *got = run_fatal(0, &status);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 1, "fatalx exits 1");
    ok(strstr(got, "Z " PROG "[") != NULL && strstr(got, "]: fatal: boom 7\n") != NULL && count_lines(got) == 1,
       "fatalx prints one fatal line at level error");
    got = run_fatal(1, &status);
    ok(WIFEXITED(status) && WEXITSTATUS(status) == 1, "fatal exits 1");
    ok(strstr(got, "]: fatal: cannot write: No space left on device\n") != NULL, "fatal appends strerror(errno)");
}

/* log_format = json: one object per line, the same fields, the message escaped. */
static void test_json(void)
{
    char want[256];
    const char *got;
    int pid = (int)getpid();
    log_level = LOG_LEVEL_INFO;
    is_int(log_format_parse("json"), LOG_FORMAT_JSON, "log_format_parse json");
    is_int(log_format_parse("text"), LOG_FORMAT_TEXT, "log_format_parse text");
    is_int(log_format_parse("JSON"), -1, "log_format_parse is exact (JSON refused)");
    is_int(log_format_parse(""), -1, "log_format_parse refuses empty");
    log_format = LOG_FORMAT_JSON;

    capture_start();
    log_warnx("a \"quoted\" \\ back\tslash\nnewline");
    got = capture_end();
    snprintf(want, sizeof(want),
             "\",\"prog\":\"" PROG "\",\"pid\":%d,\"level\":\"warn\",\"msg\":\"a \\\"quoted\\\" \\\\ "
             "back\\u0009slash\\nnewline\"}\n",
             pid);
    ok(strncmp(got, "{\"time\":\"", 9) == 0 && strlen(got) > 33 && got[9 + 4] == '-' && got[9 + 23] == 'Z' &&
           strcmp(got + 9 + 24, want) == 0,
       "json: time, prog, pid, level, escaped message, one line");
    if (strcmp(got + (strlen(got) > 33 ? 33 : 0), want) != 0) {
        diag("got %s", got);
    }
    is_int(count_lines(got), 1, "json: exactly one line (the message's newline is escaped)");

    capture_start();
    errno = ENOENT;
    log_err("open");
    got = capture_end();
    ok(strstr(got, "\"level\":\"error\",\"msg\":\"open: No such file or directory\"}\n") != NULL,
       "json: log_err appends strerror inside msg");

    char big[3000];
    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    capture_start();
    log_warnx("%s", big);
    got = capture_end();
    size_t n = strlen(got);
    ok(n > 100 && n <= 2048 && strcmp(got + n - 3, "\"}\n") == 0 && got[n - 4] == '"' && got[n - 5] == '\\',
       "json: a message cut at the buffer still closes the object after a whole escape");
    is_int(count_lines(got), 1, "json: the cut message is one line");

    log_level = LOG_LEVEL_WARN;
    capture_start();
    log_info("dropped");
    is_int((int)strlen(capture_end()), 0, "json: the level filter still applies");
    log_level = LOG_LEVEL_INFO;

    capture_start();
    log_diag("diag stays text");
    ok(strcmp(capture_end(), PROG ": diag stays text\n") == 0, "json: log_diag stays a text line for a person");
    log_format = LOG_FORMAT_TEXT;
}

int main(void)
{
    log_init(PROG);
    ok(strcmp(log_prog(), PROG) == 0, "log_prog returns the name given to log_init");
    test_format();
    test_levels();
    test_fatal();
    test_json();
    return kl_test_done();
}
