/*
 * keyless-signer: the only process that can use the certificate keys.
 *
 *   keyless-signer --config FILE [--check-config] [--new-audit-chain]
 *   keyless-signer audit-verify [--expect-head HEX] [--pubkey PEM] [--head HEX] [--last-seq N] FILE...
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
#include "crypto.h"
#include "metrics.h"
#include "p11_backend.h"
#include "policy.h"
#include "privsep.h"
#include "sd_notify.h"
#include "server.h"

static struct server *volatile g_server;
static struct p11_backend *volatile g_backend;
static volatile sig_atomic_t g_stop_requested;

static void on_signal(int sig)
{
    if (sig == SIGHUP) {
        if (g_server != NULL) {
            /* READY=1 follows when the loop has done it (server.c rotate_cb). */
            (void)kl_sd_notify("RELOADING=1");
            server_rotate(g_server);
        }
        if (g_backend != NULL) {
            p11_backend_rearm(g_backend); /* the operator's answer to a refused PIN (docs/HSM.md) */
        }
        return;
    }
    (void)kl_sd_notify("STOPPING=1");
    g_stop_requested = 1;
    if (g_server != NULL) {
        server_stop(g_server);
    }
}

static void usage(FILE *out)
{
    fprintf(out, "usage: keyless-signer --config FILE [--check-config] [--new-audit-chain]\n"
                 "       keyless-signer audit-verify [--pubkey PEM] [--head HEX] [--last-seq N]\n"
                 "                                   [--expect-head HEX] FILE...\n"
                 "       keyless-signer --help | --version\n"
                 "\n"
                 "Signs TLS 1.3 CertificateVerify content with keys held in a PKCS#11 token, for\n"
                 "keyless frontends on a Unix socket. See docs/SIGNER.md.\n"
                 "  --config FILE     the INI configuration (also --config=FILE; examples/signer.conf)\n"
                 "  --check-config    validate it, open the token, find the keys, probe the\n"
                 "                    schemes, then exit 0 (or 1/2 with the reason)\n"
                 "  --new-audit-chain start even though the audit log does not match its state\n"
                 "                    file (missing, emptied, truncated or replaced): says so on the record\n"
                 "  audit-verify      check the hash chain of audit log files (oldest first) and,\n"
                 "                    with the audit public key, their signed checkpoints\n");
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

/* The metrics' rows: one per configured key with its schemes (copied). init 0: a reload. */
static int metrics_keys(const struct signer_config *cfg, int init)
{
    int ret = KL_ERR_NO_MEMORY;
    const char **names = calloc(cfg->n_keys, sizeof(*names));
    const uint16_t **schemes = calloc(cfg->n_keys, sizeof(*schemes));
    size_t *n = calloc(cfg->n_keys, sizeof(*n));
    if (names != NULL && schemes != NULL && n != NULL) {
        for (size_t i = 0; i < cfg->n_keys; i++) {
            names[i] = cfg->keys[i].name;
            schemes[i] = cfg->keys[i].schemes;
            n[i] = cfg->keys[i].n_schemes;
        }
        ret = init ? signer_metrics_init(names, schemes, n, cfg->n_keys)
                   : signer_metrics_set_keys(names, schemes, n, cfg->n_keys);
    }
    free(names);
    free(schemes);
    free(n);
    return ret;
}

static int find_keys(struct p11_backend *be, struct server_key *keys, const struct signer_config *cfg);

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
    /* workers = 0: the I/O thread's one session; the audit key has one more of its own. */
    ret = p11_backend_new(be_p, &fail, err, sizeof(err), cfg->module, cfg->module_name, cfg->keys[0].uri, cfg->pin_file,
                          (cfg->workers > 0 ? cfg->workers : 1) + (cfg->audit_key != NULL ? 1 : 0),
                          cfg->module_instances);
    if (ret != 0) {
        /* Name the config key the failure is about: the PIN file, the instances, or the module/token. */
        const char *what = fail == P11_FAIL_PIN         ? "pin_file"
                           : fail == P11_FAIL_INSTANCES ? "module_instances"
                           : cfg->module != NULL        ? "module"
                                                        : "module_name";
        log_diag("%s:%u: [hsm] %s: %s", cfg->path, cfg->hsm_line, what, err[0] != '\0' ? err : kl_err_str(ret));
        return 1;
    }
    return find_keys(*be_p, keys, cfg);
}

/* Find every key of cfg on the token and check each scheme (at start and on a reload). Exit
 * status on failure; keys[i].p11 found so far are left for the caller to release. */
static int find_keys(struct p11_backend *be, struct server_key *keys, const struct signer_config *cfg)
{
    char err[512] = "";
    int ret;

    for (size_t i = 0; i < cfg->n_keys; i++) {
        const struct cfg_key *k = &cfg->keys[i];
        keys[i].cfg = k;
        if ((ret = p11_key_find(be, &keys[i].p11, err, sizeof(err), k->uri)) != 0) {
            log_errx("%s:%u: [key %s] uri: %s", cfg->path, k->line, k->name, err[0] != '\0' ? err : kl_err_str(ret));
            return 1;
        }
        for (size_t s = 0; s < k->n_schemes; s++) {
            if (p11_key_check_scheme(be, keys[i].p11, err, sizeof(err), k->schemes[s]) != 0) {
                const char *name = policy_scheme_name(k->schemes[s]);
                log_errx("%s:%u: [key %s] schemes: %s: %s", cfg->path, k->line, k->name, name != NULL ? name : "?",
                         err);
                return 1;
            }
        }
        if (cfg->strict_keys && p11_key_hygiene(keys[i].p11, err, sizeof(err)) != 0) {
            log_errx("%s:%u: [key %s] uri: the key allows more than signing (%s), which strict_keys = yes refuses",
                     cfg->path, k->line, k->name, err);
            return 1;
        }
    }
    return 0;
}

/* [tickets] (issue 11): the ticket root must be on the token at start. Exit status on failure. */
static int open_ticket_root(struct p11_backend *be, struct p11_secret **root_p, const struct signer_config *cfg,
                            int reload)
{
    char err[512] = "";
    int ret;

    *root_p = NULL;
    if (!cfg->tickets.present) {
        return 0;
    }
    if ((ret = p11_secret_find(be, root_p, err, sizeof(err), cfg->tickets.key)) != 0) {
        /* At start a person reads it at the terminal; on a reload it goes to the log. */
        (reload ? log_errx : log_diag)("%s:%u: [tickets] key: %s", cfg->path, cfg->tickets.line,
                                       err[0] != '\0' ? err : kl_err_str(ret));
        return 1;
    }
    return 0;
}

/* Warn about keys that allow more than signing (strict_keys = no). Said once every check
 * has passed, so that a failing start still ends with its one line. */
static void warn_keys(const struct server_key *keys, const struct signer_config *cfg, int diag)
{
    char err[256];
    for (size_t i = 0; i < cfg->n_keys; i++) {
        if (p11_key_hygiene(keys[i].p11, err, sizeof(err)) == 0) {
            continue;
        }
        if (diag) {
            log_diag("%s:%u: [key %s] uri: warning: the key allows more than signing (%s); strict_keys = yes would "
                     "refuse it",
                     cfg->path, cfg->keys[i].line, cfg->keys[i].name, err);
        } else {
            log_warnx("%s:%u: [key %s] the key allows more than signing (%s); strict_keys = yes would refuse it",
                      cfg->path, cfg->keys[i].line, cfg->keys[i].name, err);
        }
    }
}

/* "name scheme/MECHANISM ..." for the start-up line: which mechanism signs each scheme. */
static void describe_mechanisms(char *out, size_t cap, const struct server_key *keys, const struct signer_config *cfg)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < cfg->n_keys && n < cap; i++) {
        const struct cfg_key *k = &cfg->keys[i];
        n += (size_t)snprintf(out + n, cap - n, "%s%s", i > 0 ? "; " : "", k->name);
        for (size_t s = 0; s < k->n_schemes && n < cap; s++) {
            const char *name = policy_scheme_name(k->schemes[s]), *mech = p11_key_mechanism(keys[i].p11, k->schemes[s]);
            n += (size_t)snprintf(out + n, cap - n, " %s/%s", name != NULL ? name : "?", mech != NULL ? mech : "?");
        }
    }
}

/* ---- the audit key (issue 13): signs checkpoints, never TLS ---- */

struct audit_signer {
    struct p11_backend *be;
    struct p11_key *key;
    unsigned session; /* a session of its own: the workers' are 0..workers-1 */
};

static int audit_sign_checkpoint(void *ctx, uint8_t *sig, size_t *sig_len_p, const uint8_t *statement, size_t len)
{
    struct audit_signer *a = ctx;
    /* ECDSA P-256 over SHA-256 of the statement; DER out, as the verifier expects. */
    return p11_sign(a->be, sig, sig_len_p, a->session, a->key, TLS_SIG_ECDSA_SECP256R1_SHA256, statement, len);
}

/* 1 (with the line) if a [key] is the audit key: it must never sign TLS. */
static int audit_key_clash(const struct audit_signer *a, const struct server_key *keys, const struct signer_config *cfg,
                           int reload)
{
    const uint8_t *spki;
    size_t spki_len, len;

    if (a->key == NULL) {
        return 0;
    }
    spki = p11_key_spki(a->key, &spki_len);
    for (size_t i = 0; i < cfg->n_keys; i++) {
        const uint8_t *k = p11_key_spki(keys[i].p11, &len);
        if (len == spki_len && memcmp(k, spki, len) == 0) {
            (reload ? log_errx : log_diag)("%s:%u: [key %s] uri: this is the audit key (audit_key); it signs audit "
                                           "checkpoints only, never TLS",
                                           cfg->path, cfg->keys[i].line, cfg->keys[i].name);
            return 1;
        }
    }
    return 0;
}

/* Find the audit key; refuse a [key] that is the same key (it must never sign TLS). */
static int open_audit_key(struct audit_signer *a, struct p11_backend *be, const struct server_key *keys,
                          const struct signer_config *cfg)
{
    char err[512] = "";
    int ret;

    a->be = be;
    a->session = cfg->workers > 0 ? cfg->workers : 1;
    if ((ret = p11_key_find(be, &a->key, err, sizeof(err), cfg->audit_key)) != 0 ||
        (ret = p11_key_check_scheme(be, a->key, err, sizeof(err), TLS_SIG_ECDSA_SECP256R1_SHA256)) != 0) {
        log_diag("%s: [signer] audit_key: %s", cfg->path, err[0] != '\0' ? err : kl_err_str(ret));
        return 1;
    }
    return audit_key_clash(a, keys, cfg, 0);
}

/* SHA-256 of the configuration file, for the start record. */
static int config_digest(uint8_t out[CRYPTO_SHA256_LEN], const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int ret = 0;

    KL_ENSURE(f != NULL, KL_ERR_IO);
    for (;;) {
        if (n == cap) {
            KL_ENSURE(cap < (64u << 20), KL_ERR_OVERFLOW);
            char *nb = realloc(buf, cap == 0 ? 65536 : cap * 2);
            KL_ENSURE(nb != NULL, KL_ERR_NO_MEMORY);
            buf = nb;
            cap = cap == 0 ? 65536 : cap * 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            KL_ENSURE(!ferror(f), KL_ERR_IO);
            break;
        }
    }
    crypto_sha256(out, buf, n);
exit:
    free(buf);
    if (f != NULL) {
        fclose(f);
    }
    return ret;
}

/* ---- SIGHUP: reload the configuration (issue 14) ---- */

/* What a reload needs, and what the start-up configuration is (the server releases it). */
static struct {
    struct p11_backend *be;
    const struct audit_signer *asig;
    struct signer_config *cfg0;
    struct server_key *keys0;
    struct p11_secret *root0;
} g_reload;

/* A reloaded configuration: the server's view and what it owns. */
struct mconf {
    struct server_conf sc;
    struct signer_config *cfg;
    struct server_key *keys;
    struct p11_secret *root;
};

static void release_parts(struct signer_config *cfg, struct server_key *keys, struct p11_secret *root)
{
    for (size_t i = 0; keys != NULL && cfg != NULL && i < cfg->n_keys; i++) {
        p11_key_release(g_reload.be, keys[i].p11);
    }
    p11_secret_release(g_reload.be, root);
    free(keys);
    cfg_free(cfg);
}

static void mconf_release(struct server_conf *sc)
{
    struct mconf *mc = (struct mconf *)sc;
    release_parts(mc->cfg, mc->keys, mc->root);
    free(mc);
}

/* The start-up conf (inside the server): its parts are this file's. */
static void conf0_release(struct server_conf *sc)
{
    (void)sc;
    release_parts(g_reload.cfg0, g_reload.keys0, g_reload.root0);
    g_reload.cfg0 = NULL;
    g_reload.keys0 = NULL;
    g_reload.root0 = NULL;
}

/* cfg_load()'s one error line, from a memory stream into the log (without its prefix). */
static int load_logged(struct signer_config **cfg_p, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    int ret = cfg_load(cfg_p, f != NULL ? f : stderr, path);
    if (f != NULL) {
        fclose(f);
    }
    if (ret != 0 && text != NULL) {
        const char *prefix = "keyless-signer: ";
        const char *msg = strncmp(text, prefix, strlen(prefix)) == 0 ? text + strlen(prefix) : text;
        size_t n = strcspn(msg, "\n");
        log_errx("%.*s", (int)n, msg);
    }
    free(text);
    return ret;
}

/*
 * server_reload_fn: everything the start checks, against the running token: the file, the
 * keys and their schemes (strict_keys), the ticket root, the audit key not among the keys;
 * the restart-only settings kept (cfg_keep_restart_only); then the metrics settings and
 * the log level and format, which apply at once.
 */
static int reload_config(void *arg, struct server_conf **next_p, const struct server_conf *cur)
{
    struct mconf *mc = calloc(1, sizeof(*mc));
    const char *path = arg;
    int ret = KL_ERR_CONFIG;

    *next_p = NULL;
    if (mc == NULL) {
        log_errx("%s: out of memory", path);
        return KL_ERR_NO_MEMORY;
    }
    if (load_logged(&mc->cfg, path) != 0) {
        goto exit;
    }
    if (cfg_keep_restart_only(mc->cfg, cur->cfg) != 0) {
        log_errx("%s: out of memory", path);
        goto exit;
    }
    if ((mc->keys = calloc(mc->cfg->n_keys, sizeof(*mc->keys))) == NULL) {
        log_errx("%s: out of memory", path);
        goto exit;
    }
    /* SIGHUP also re-armed the login (after a PIN fix): log in before probing the keys, or the
     * probe meets a logged-out token and the reload fails. */
    p11_backend_recover_if_needed(g_reload.be);
    if (find_keys(g_reload.be, mc->keys, mc->cfg) != 0 || open_ticket_root(g_reload.be, &mc->root, mc->cfg, 1) != 0 ||
        audit_key_clash(g_reload.asig, mc->keys, mc->cfg, 1) != 0) {
        goto exit;
    }
    if (config_digest(mc->sc.config_sha256, path) != 0) {
        log_errx("%s: cannot read it again for its digest", path);
        goto exit;
    }
    /* Last, as it changes a file: a path that cannot be written fails the reload. */
    if (signer_metrics_reconfigure(mc->cfg->metrics_file, mc->cfg->metrics_interval_ms) != 0) {
        log_errx("%s: [signer] metrics_file: cannot write %s: %s", path, mc->cfg->metrics_file, strerror(errno));
        goto exit;
    }
    if (metrics_keys(mc->cfg, 0) != 0) {
        log_warnx("metrics: too many key names over this run; the new ones count under key=\"(none)\"");
    }
    warn_keys(mc->keys, mc->cfg, 0);
    log_level = mc->cfg->log_level;
    log_format = mc->cfg->log_format;
    mc->sc.cfg = mc->cfg;
    mc->sc.keys = mc->keys;
    mc->sc.n_keys = mc->cfg->n_keys;
    mc->sc.ticket_root = mc->root;
    mc->sc.release = mconf_release;
    *next_p = &mc->sc;
    mc = NULL;
    ret = 0;
exit:
    if (mc != NULL) {
        mconf_release(&mc->sc);
    }
    return ret;
}

static int run(const char *config_path, int check_only, int new_chain)
{
    struct signer_config *cfg = NULL;
    struct p11_backend *be = NULL;
    struct p11_secret *ticket_root = NULL;
    struct server_key *keys = NULL;
    struct audit_log *audit = NULL;
    struct server *srv = NULL;
    struct audit_signer asig = {0};
    int status = 1, handed = 0;

    if (privsep_harden() != 0 || install_signals() != 0) {
        return 1;
    }
    if (cfg_load(&cfg, stderr, config_path) != 0) {
        return 2;
    }
    log_level = cfg->log_level;
    log_format = cfg->log_format;
    if ((status = privsep_check_user(cfg)) != 0) {
        goto exit;
    }
    status = 1;
    keys = calloc(cfg->n_keys, sizeof(*keys));
    if (keys == NULL) {
        goto exit;
    }
    if (open_keys(&be, keys, cfg) != 0 || open_ticket_root(be, &ticket_root, cfg, 0) != 0) {
        goto exit;
    }
    if (cfg->audit_key != NULL && open_audit_key(&asig, be, keys, cfg) != 0) {
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
        warn_keys(keys, cfg, 1);
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
                          (cfg->audit_repair_torn ? AUDIT_OPEN_REPAIR_TORN : 0) |
                              (cfg->audit_zero_tail ? 0 : AUDIT_OPEN_NO_ZERO_TAIL),
                          &why, err, sizeof(err)) != 0) {
            /* One line: audit_open_ex() leaves the message to us (err is not NULL). */
            log_diag("%s: [signer] audit_log: %s%s", cfg->path, err[0] != '\0' ? err : "cannot open the audit log",
                     why == AUDIT_OPEN_FAIL_TORN ? " (audit_repair_torn = yes)" : "");
            goto exit;
        }
        struct audit_checkpoint_config cp = {
            .host = cfg->audit_host,
            .sign = cfg->audit_key != NULL ? audit_sign_checkpoint : NULL,
            .sign_ctx = &asig,
            .every_records = cfg->audit_cp_records,
            .every_ms = cfg->audit_cp_ms,
            .heartbeat_ms = cfg->audit_heartbeat_ms,
            .syslog_facility = cfg->audit_syslog_facility,
            .anchor_file = cfg->audit_anchor_file,
            .anchor_command = cfg->audit_anchor_command,
            .new_chain = new_chain,
        };
        uint8_t digest[CRYPTO_SHA256_LEN];
        if (config_digest(digest, cfg->path) == 0) {
            cp.config_sha256 = digest;
        }
        struct audit_stats ast;
        audit_stats(audit, &ast);
        if ((uint64_t)before > ast.size) {
            log_warnx("audit: %s: cut a torn last line (%llu bytes) off the log, kept in %s.torn.*; "
                      "the chain continues from the last complete line",
                      cfg->audit_log, (unsigned long long)((uint64_t)before - ast.size), cfg->audit_log);
        }
        if (audit_start(audit, &cp, NULL, err, sizeof(err)) != 0) {
            log_diag("%s: [signer] audit_log: %s", cfg->path, err[0] != '\0' ? err : "cannot start the audit log");
            goto exit;
        }
    }
    if (metrics_keys(cfg, 1) != 0) {
        log_errx("metrics: out of memory");
        goto exit;
    }
    if (server_new(&srv, cfg, be, keys, cfg->n_keys, audit) != 0) {
        goto exit;
    }
    server_set_ticket_root(srv, ticket_root);
    /* From here the server owns the start-up configuration (conf0_release). */
    g_reload.be = be;
    g_reload.asig = &asig;
    g_reload.cfg0 = cfg;
    g_reload.keys0 = keys;
    g_reload.root0 = ticket_root;
    server_set_reload(srv, reload_config, (void *)config_path, conf0_release);
    signer_metrics_set_backend(be);
    signer_metrics_set_audit(audit, cfg->audit_key != NULL);
    handed = 1;
    if (privsep_drop(cfg) != 0) {
        goto exit;
    }
    /* After the drop: the file belongs to the user the signer runs as. */
    if (cfg->metrics_file != NULL && signer_metrics_start(cfg->metrics_file, cfg->metrics_interval_ms, be) != 0) {
        log_diag("%s: [signer] metrics_file: cannot write %s: %s", cfg->path, cfg->metrics_file, strerror(errno));
        goto exit;
    }
    /* Last: the seccomp filter covers every thread started above (workers, audit, metrics). */
    if (privsep_confine(cfg) != 0) {
        goto exit;
    }
    g_server = srv;
    g_backend = be;
    if (g_stop_requested) {
        server_stop(srv); /* a signal that came during start-up */
    }
    warn_keys(keys, cfg, 0);
    {
        char mechs[2048];
        describe_mechanisms(mechs, sizeof(mechs), keys, cfg);
        log_info("listening on %s (%zu key(s), %u worker(s), audit %s, %s; mechanisms: %s)", cfg->socket_path,
                 cfg->n_keys, cfg->workers, cfg->audit_log,
                 cfg->audit_key != NULL ? "checkpoints signed by audit_key"
                                        : "checkpoints UNSIGNED: set [signer] audit_key for audit-verify --pubkey",
                 mechs);
    }
    (void)kl_sd_notify("READY=1");
    if (server_run(srv) == 0) {
        status = 0;
    }
    log_info("shutting down (%u HSM recoveries, %u logins during this run)", p11_backend_recoveries(be),
             p11_backend_logins(be));
exit:
    g_server = NULL;
    g_backend = NULL;
    server_free(srv);      /* with it the configurations it held (handed) */
    signer_metrics_stop(); /* after the server: no thread updates the counters any more */
    audit_close(audit);
    p11_backend_free(be);
    if (!handed) {
        free(keys);
        cfg_free(cfg);
    }
    return status;
}

int main(int argc, char **argv)
{
    log_init("keyless-signer");
    if (kl_sd_notify_init() != 0) {
        log_warnx("NOTIFY_SOCKET is not a usable socket address; not notifying the service manager");
    }
    struct kl_cli cli;
    char err[256];

    if (argc >= 2 && strcmp(argv[1], "audit-verify") == 0) {
        return audit_verify_main(argc - 1, argv + 1);
    }
    /* --new-audit-chain is the signer's own: take it out before the shared parser. */
    int new_chain = 0, n = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--new-audit-chain") == 0) {
            new_chain = 1;
        } else {
            argv[n++] = argv[i];
        }
    }
    argv[n] = NULL;
    argc = n;
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
    return run(cli.config, cli.check_config, new_chain);
}
