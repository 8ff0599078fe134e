/*
 * keyless-signer: the only process that can use the certificate keys.
 *
 *   keyless-signer --config FILE [--check-config]
 *   keyless-signer audit-verify [--expect-head HEX] FILE...
 *
 * Start-up order matters: harden the process (no core dumps, not ptrace-able, umask)
 * before the PIN file is read or the token is touched; load the module only in the
 * process that uses it (PKCS#11 sessions do not survive fork()). With [signer] user =,
 * root is dropped only once the PIN has been used for C_Login and wiped, the socket is
 * bound and the audit log is open: nothing after that needs root.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"
#include "audit.h"
#include "audit_verify.h"
#include "config.h"
#include "p11_backend.h"
#include "policy.h"
#include "privsep.h"
#include "server.h"

static struct server *volatile g_server;
static volatile sig_atomic_t g_stop_requested;

static void on_signal(int sig)
{
    if (sig == SIGHUP) {
        if (g_server != NULL) {
            server_rotate(g_server);
        }
        return;
    }
    g_stop_requested = 1;
    if (g_server != NULL) {
        server_stop(g_server);
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: keyless-signer --config FILE [--check-config]\n"
                 "       keyless-signer audit-verify [--expect-head HEX] FILE...\n"
                 "       keyless-signer --help | --version\n"
                 "\n"
                 "Signs TLS 1.3 CertificateVerify content with keys held in a PKCS#11 token, for\n"
                 "keyless frontends on a Unix socket. See docs/SIGNER.md.\n"
                 "  --config FILE     the INI configuration (also --config=FILE; examples/signer.conf)\n"
                 "  --check-config    validate it, open the token, find the keys, probe the\n"
                 "                    schemes, then exit 0 (or 1/2 with the reason)\n"
                 "  audit-verify      check the hash chain of audit log files (oldest first)\n");
}

static int install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGHUP, &sa, NULL) != 0) {
        return -1;
    }
    /* A remote token (p11-kit-client.so) whose server went away raises SIGPIPE in us. */
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL);
}

/* Open the token and find every key; check each scheme. Exit status on failure. */
static int open_keys(struct p11_backend **be_p, struct server_key *keys, const struct signer_config *cfg)
{
    char err[512] = "";
    enum p11_fail fail = P11_FAIL_NONE;
    int ret;

    if (cfg->softhsm2_conf != NULL) {
        if (access(cfg->softhsm2_conf, R_OK) != 0) {
            log_errx("%s: [hsm] softhsm2_conf: cannot read %s: %s", cfg->path, cfg->softhsm2_conf, strerror(errno));
            return 1;
        }
        setenv("SOFTHSM2_CONF", cfg->softhsm2_conf, 1);
    }
    ret = p11_backend_new(be_p, &fail, err, sizeof(err), cfg->module, cfg->module_name, cfg->keys[0].uri, cfg->pin_file,
                          cfg->workers > 0 ? cfg->workers : 1); /* workers = 0: the I/O thread's one session */
    if (ret != 0) {
        /* Name the config key the failure is about: the PIN file, or the module/token. */
        const char *what = fail == P11_FAIL_PIN ? "pin_file" : cfg->module != NULL ? "module" : "module_name";
        log_diag("%s:%u: [hsm] %s: %s", cfg->path, cfg->hsm_line, what, err[0] != '\0' ? err : kl_err_str(ret));
        return 1;
    }
    for (size_t i = 0; i < cfg->n_keys; i++) {
        const struct cfg_key *k = &cfg->keys[i];
        keys[i].cfg = k;
        if ((ret = p11_key_find(*be_p, &keys[i].p11, err, sizeof(err), k->uri)) != 0) {
            log_errx("%s:%u: [key %s] uri: %s", cfg->path, k->line, k->name, err[0] != '\0' ? err : kl_err_str(ret));
            return 1;
        }
        for (size_t s = 0; s < k->n_schemes; s++) {
            if (p11_key_check_scheme(*be_p, keys[i].p11, err, sizeof(err), k->schemes[s]) != 0) {
                const char *name = policy_scheme_name(k->schemes[s]);
                log_errx("%s:%u: [key %s] schemes: %s: %s", cfg->path, k->line, k->name, name != NULL ? name : "?",
                         err);
                return 1;
            }
        }
    }
    return 0;
}

static int run(const char *config_path, int check_only)
{
    struct signer_config *cfg = NULL;
    struct p11_backend *be = NULL;
    struct server_key *keys = NULL;
    struct audit_log *audit = NULL;
    struct server *srv = NULL;
    int status = 1;

    if (privsep_harden() != 0 || install_signals() != 0) {
        return 1;
    }
    if (cfg_load(&cfg, stderr, config_path) != 0) {
        return 2;
    }
    if ((status = privsep_check_user(cfg)) != 0) {
        goto exit;
    }
    status = 1;
    keys = calloc(cfg->n_keys, sizeof(*keys));
    if (keys == NULL) {
        goto exit;
    }
    if (open_keys(&be, keys, cfg) != 0) {
        goto exit;
    }
    if (cfg_mkdir_parents(cfg->audit_log, 0750) != 0) {
        log_errx("%s: [signer] audit_log: cannot create the directory of %s: %s", cfg->path, cfg->audit_log,
                 strerror(errno));
        goto exit;
    }
    if (check_only) {
        char *dir = strdup(cfg->audit_log);
        char *slash = dir != NULL ? strrchr(dir, '/') : NULL;
        if (slash != NULL) {
            *slash = '\0';
        }
        if (dir == NULL || access(slash != NULL ? dir : ".", W_OK) != 0) {
            log_errx("%s: [signer] audit_log: directory of %s is not writable", cfg->path, cfg->audit_log);
            free(dir);
            goto exit;
        }
        free(dir);
        if (privsep_check_user_access(cfg) != 0) {
            goto exit;
        }
        log_diag("%s: OK (%zu key(s) found on the token, every scheme probed)", cfg->path, cfg->n_keys);
        status = 0;
        goto exit;
    }
    {
        char err[512] = "";
        enum audit_open_fail why = AUDIT_OPEN_FAIL_NONE;
        struct stat st;
        /* The size before: a smaller log after the open means a torn last line was cut off. */
        off_t before = stat(cfg->audit_log, &st) == 0 ? st.st_size : 0;
        if (audit_open_ex(&audit, cfg->audit_log, cfg->audit_sync, cfg->audit_group_ms,
                          cfg->audit_repair_torn ? AUDIT_OPEN_REPAIR_TORN : 0, &why, err, sizeof(err)) != 0) {
            /* One line: audit_open_ex() leaves the message to us (err is not NULL). */
            log_diag("%s: [signer] audit_log: %s%s", cfg->path, err[0] != '\0' ? err : "cannot open the audit log",
                     why == AUDIT_OPEN_FAIL_TORN ? " (audit_repair_torn = yes)" : "");
            goto exit;
        }
        if ((uint64_t)before > audit_size(audit)) {
            log_warnx("audit: %s: cut a torn last line (%llu bytes) off the log, kept in %s.torn.*; "
                      "the chain continues from the last complete line",
                      cfg->audit_log, (unsigned long long)((uint64_t)before - audit_size(audit)), cfg->audit_log);
        }
    }
    if (server_new(&srv, cfg, be, keys, cfg->n_keys, audit) != 0) {
        goto exit;
    }
    if (privsep_drop(cfg) != 0 || privsep_confine(cfg) != 0) {
        goto exit;
    }
    g_server = srv;
    if (g_stop_requested) {
        server_stop(srv); /* a signal that came during start-up */
    }
    log_info("listening on %s (%zu key(s), %u worker(s), audit %s)", cfg->socket_path, cfg->n_keys, cfg->workers,
             cfg->audit_log);
    if (server_run(srv) == 0) {
        status = 0;
    }
    log_info("shutting down (%u HSM recoveries during this run)", p11_backend_recoveries(be));
exit:
    g_server = NULL;
    server_free(srv);
    audit_close(audit);
    p11_backend_free(be);
    free(keys);
    cfg_free(cfg);
    return status;
}

int main(int argc, char **argv)
{
    log_init("keyless-signer");
    struct kl_cli cli;
    char err[256];

    if (argc >= 2 && strcmp(argv[1], "audit-verify") == 0) {
        return audit_verify_main(argc - 1, argv + 1);
    }
    if (kl_cli_parse(&cli, argc, argv, 0, err, sizeof(err)) != 0) {
        log_diag("%s", err);
        usage(stderr);
        return 2;
    }
    if (cli.help) {
        usage(stdout);
        return 0;
    }
    if (cli.version) {
        puts(kl_cli_version("keyless-signer", err, sizeof(err)));
        return 0;
    }
    return run(cli.config, cli.check_config);
}
