#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "cli.h"

#ifndef KL_VERSION
#define KL_VERSION "unknown"
#endif
#ifndef KL_GIT_COMMIT
#define KL_GIT_COMMIT "unknown"
#endif

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return KL_ERR_INVALID;
}

static int set_config(struct kl_cli *o, const char *value, char *err, size_t err_len)
{
    if (o->config != NULL) {
        return fail(err, err_len, "%s given twice", "--config");
    }
    if (value == NULL || value[0] == '\0') {
        return fail(err, err_len, "%s needs a file", "--config");
    }
    o->config = value;
    return 0;
}

int kl_cli_parse(struct kl_cli *o, int argc, char *const *argv, unsigned allow, char *err, size_t err_len)
{
    int ret;
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0) {
            if ((ret = set_config(o, i + 1 < argc ? argv[++i] : NULL, err, err_len)) != 0) {
                return ret;
            }
        } else if (strncmp(a, "--config=", 9) == 0) {
            if ((ret = set_config(o, a + 9, err, err_len)) != 0) {
                return ret;
            }
        } else if (strcmp(a, "--check-config") == 0) {
            o->check_config = 1;
        } else if (strcmp(a, "--trace") == 0 && (allow & KL_CLI_TRACE)) {
            o->trace = 1;
        } else if (strcmp(a, "--version") == 0) {
            o->version = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = 1;
        } else {
            return fail(err, err_len, "unknown argument '%s'", a);
        }
    }
    if (o->config == NULL && !o->version && !o->help) {
        return fail(err, err_len, "%s", "no --config FILE");
    }
    return 0;
}

const char *kl_cli_version(const char *prog, char *buf, size_t buf_len)
{
    snprintf(buf, buf_len, "%s %s (git %s)", prog, KL_VERSION, KL_GIT_COMMIT);
    return buf;
}
