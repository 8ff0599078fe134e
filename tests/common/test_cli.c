/* Unit tests for common/cli.c: the command line both daemons share. */
#include <string.h>
#include "cli.h"
#include "kl_test.h"

static int parse(struct kl_cli *o, unsigned allow, char *err, size_t err_len, const char *const *args)
{
    char *argv[16];
    int argc = 0;
    argv[argc++] = "prog";
    for (size_t i = 0; args[i] != NULL && argc < 15; i++) {
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    err[0] = '\0';
    return kl_cli_parse(o, argc, argv, allow, err, err_len);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_good(void)
{
    struct kl_cli o;
    char err[128];
    is_int(parse(&o, 0, err, sizeof(err), ARGS("--config", "a.conf")), 0, "--config FILE");
    ok(o.config != NULL && strcmp(o.config, "a.conf") == 0 && !o.check_config && !o.trace, "... sets config only");
    is_int(parse(&o, 0, err, sizeof(err), ARGS("--config=b.conf", "--check-config")), 0, "--config=FILE");
    ok(strcmp(o.config, "b.conf") == 0 && o.check_config, "... and --check-config");
    is_int(parse(&o, KL_CLI_TRACE, err, sizeof(err), ARGS("--trace", "--config", "c.conf")), 0,
           "--trace where allowed, in any order");
    ok(o.trace && strcmp(o.config, "c.conf") == 0, "... sets trace");
    is_int(parse(&o, 0, err, sizeof(err), ARGS("--version")), 0, "--version needs no config");
    ok(o.version && o.config == NULL, "... sets version");
    is_int(parse(&o, 0, err, sizeof(err), ARGS("-h")), 0, "-h needs no config");
    ok(o.help, "... sets help");
    is_int(parse(&o, 0, err, sizeof(err), ARGS("--help")), 0, "--help");

    char buf[128];
    const char *v = kl_cli_version("keyless-x", buf, sizeof(buf));
    ok(v == buf && strncmp(v, "keyless-x " KL_VERSION " (git ", strlen("keyless-x " KL_VERSION " (git ")) == 0 &&
           v[strlen(v) - 1] == ')',
       "version line: program, version, git commit");
    ok(strstr(v, "(git )") == NULL, "... the commit is not empty");
}

static void test_bad(void)
{
    struct kl_cli o;
    char err[128];
    is_int(parse(&o, 0, err, sizeof(err), ARGS("--trace", "--config", "a")), KL_ERR_INVALID,
           "--trace refused where not allowed (the signer)");
    ok(strcmp(err, "unknown argument '--trace'") == 0, "... named");
    is_int(parse(&o, 0, err, sizeof(err), ARGS("--config")), KL_ERR_INVALID, "--config without a file");
    ok(strcmp(err, "--config needs a file") == 0, "... says so");
    is_int(parse(&o, 0, err, sizeof(err), ARGS("--config=")), KL_ERR_INVALID, "--config= empty");
    ok(strcmp(err, "--config needs a file") == 0, "... says so");
    is_int(parse(&o, 0, err, sizeof(err), ARGS("--config", "a", "--config=b")), KL_ERR_INVALID, "--config twice");
    ok(strcmp(err, "--config given twice") == 0, "... says so");
    is_int(parse(&o, 0, err, sizeof(err), ARGS("--check-config")), KL_ERR_INVALID, "no --config at all");
    ok(strcmp(err, "no --config FILE") == 0, "... says so");
    is_int(parse(&o, 0, err, sizeof(err), ARGS("--config", "a", "extra")), KL_ERR_INVALID, "a stray argument");
    ok(strcmp(err, "unknown argument 'extra'") == 0, "... named");
    is_int(parse(&o, 0, err, sizeof(err), ARGS("-config", "a")), KL_ERR_INVALID, "a single-dash long flag");
    is_int(parse(&o, 0, err, sizeof(err), ARGS("--configx=a")), KL_ERR_INVALID, "a flag that only starts alike");
}

int main(void)
{
    test_good();
    test_bad();
    return kl_test_done();
}
