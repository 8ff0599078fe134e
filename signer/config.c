/*
 * config.c - keyless-signer's configuration: the key tables of [signer], [hsm] and
 * [key NAME] over common/kl_ini (which reads the file, checks types, bounds, duplicates
 * and required keys, and formats every error).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "kl_ini.h"
#include "runas.h"
#include "log.h"
#include "p11_backend.h"
#include "sandbox.h"
#include "tls_ids.h"

/* A number, else a name from the user or group database. */
static int parse_id(uint32_t *out, const char *tok, int is_group)
{
    uint64_t v;
    if (kl_ini_parse_uint(&v, tok, 0, UINT32_MAX - 1) == 0) {
        *out = (uint32_t)v;
        return 0;
    }
    if (is_group) {
        struct group *g = getgrnam(tok);
        if (g == NULL) {
            return KL_ERR_NOT_FOUND;
        }
        *out = g->gr_gid;
    } else {
        struct passwd *p = getpwnam(tok);
        if (p == NULL) {
            return KL_ERR_NOT_FOUND;
        }
        *out = p->pw_uid;
    }
    return 0;
}

/* [signer] */

static int set_socket_group(struct kl_ini *ini, void *obj, const char *value)
{
    struct signer_config *cfg = obj;
    uint32_t gid;
    if (value[0] == '\0') {
        return 0; /* socket_group = (empty): the default group */
    }
    if (parse_id(&gid, value, 1) != 0) {
        return kl_ini_fail(ini, "no such group '%s'", value);
    }
    cfg->socket_gid = gid;
    cfg->has_socket_gid = 1;
    return 0;
}

/* user = NAME or uid, group = NAME or gid: common/runas.h (the same as the frontend's). */
static int set_user(struct kl_ini *ini, void *obj, const char *value)
{
    struct signer_config *cfg = obj;
    int ret = kl_runas_user(ini, value, &cfg->user_name, &cfg->run_uid, &cfg->run_gid, cfg->has_group);
    cfg->has_user |= ret == 0;
    return ret;
}

static int set_group(struct kl_ini *ini, void *obj, const char *value)
{
    struct signer_config *cfg = obj;
    int ret = kl_runas_group(ini, value, &cfg->run_gid);
    cfg->has_group |= ret == 0;
    return ret;
}

static int set_rotate_bytes(struct kl_ini *ini, void *obj, const char *value)
{
    struct signer_config *cfg = obj;
    uint64_t v;
    if (kl_ini_parse_uint(&v, value, 0, 1ull << 50) != 0 || (v != 0 && v < CFG_MIN_ROTATE_BYTES)) {
        return kl_ini_fail(ini, "'%s' is not 0 (off) or %u..2^50 (bytes)", value, CFG_MIN_ROTATE_BYTES);
    }
    cfg->audit_rotate_bytes = v;
    return 0;
}

/* sandbox_allow = NAME, ...: syscalls a vendor PKCS#11 module needs beyond the built-in list. */
static int add_sandbox_syscall(struct kl_ini *ini, void *obj, const char *tok)
{
    struct signer_config *cfg = obj;
    if (!sandbox_syscall_known(tok)) {
        return kl_ini_fail(ini, "'%s' is not a system call name on this machine", tok);
    }
    if (cfg->n_sandbox_allow == CFG_MAX_SANDBOX_ALLOW) {
        return kl_ini_fail(ini, "at most %d names", CFG_MAX_SANDBOX_ALLOW);
    }
    if ((cfg->sandbox_allow[cfg->n_sandbox_allow] = strdup(tok)) == NULL) {
        return kl_ini_fail(ini, "out of memory");
    }
    cfg->n_sandbox_allow++;
    return 0;
}

static const char *const audit_syncs[] = {"always", "group", "none", NULL};
static const int audit_sync_values[] = {AUDIT_SYNC_ALWAYS, AUDIT_SYNC_GROUP, AUDIT_SYNC_NONE};

#define RATE_MAX 1000000000

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const int log_level_values[] = {LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG};
static const char *const log_formats[] = {"text", "json", NULL};
static const int log_format_values[] = {LOG_FORMAT_TEXT, LOG_FORMAT_JSON};
/* Audit checkpoints (issue 13): where they are anchored besides the log. */
static const char *const audit_facilities[] = {"authpriv", "auth",   "daemon", "user",   "local0", "local1", "local2",
                                               "local3",   "local4", "local5", "local6", "local7", "none",   NULL};
static const int audit_facility_values[] = {LOG_AUTHPRIV, LOG_AUTH,   LOG_DAEMON, LOG_USER,   LOG_LOCAL0,
                                            LOG_LOCAL1,   LOG_LOCAL2, LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5,
                                            LOG_LOCAL6,   LOG_LOCAL7, -1};

static const struct kl_ini_key signer_keys[] = {
    {"socket", KL_INI_PATH, KL_INI_REQUIRED, KL_INI_FIELD(struct signer_config, socket_path),
     .missing = "the Unix socket path is required"},
    {"socket_group", KL_INI_CUSTOM, KL_INI_EMPTY_OK, .set = set_socket_group},
    {"workers", KL_INI_UINT, KL_INI_FIELD(struct signer_config, workers), .min = 0, .max = 256},
    {"queue_max", KL_INI_UINT, KL_INI_FIELD(struct signer_config, queue_max), .min = 1, .max = 1u << 20},
    {"max_connections", KL_INI_UINT, KL_INI_FIELD(struct signer_config, max_connections), .min = 1, .max = 65536},
    {"audit_log", KL_INI_PATH, KL_INI_REQUIRED, KL_INI_FIELD(struct signer_config, audit_log),
     .missing = "the audit log path is required"},
    {"audit_sync", KL_INI_ENUM, KL_INI_FIELD(struct signer_config, audit_sync), .names = audit_syncs,
     .values = audit_sync_values},
    {"audit_group_ms", KL_INI_DURATION, KL_INI_FIELD(struct signer_config, audit_group_ms), .min = 1, .max = 1000,
     .unit_ms = 1},
    {"audit_repair_torn", KL_INI_BOOL, KL_INI_FIELD(struct signer_config, audit_repair_torn)},
    {"audit_zero_tail", KL_INI_BOOL, KL_INI_FIELD(struct signer_config, audit_zero_tail)},
    {"audit_rotate_bytes", KL_INI_CUSTOM, .set = set_rotate_bytes},
    /* Audit checkpoints (issue 13). */
    {"audit_key", KL_INI_STRING, KL_INI_FIELD(struct signer_config, audit_key)},
    {"audit_checkpoint_records", KL_INI_UINT, KL_INI_FIELD(struct signer_config, audit_cp_records), .min = 1,
     .max = 1000000},
    {"audit_checkpoint_interval", KL_INI_DURATION, KL_INI_FIELD(struct signer_config, audit_cp_ms), .min = 10,
     .max = 60000, .unit_ms = 1},
    {"audit_heartbeat", KL_INI_DURATION, KL_INI_FIELD(struct signer_config, audit_heartbeat_ms), .min = 100,
     .max = 3600000, .unit_ms = 1000},
    {"audit_syslog_facility", KL_INI_ENUM, KL_INI_FIELD(struct signer_config, audit_syslog_facility),
     .names = audit_facilities, .values = audit_facility_values},
    {"audit_anchor_file", KL_INI_PATH, KL_INI_FIELD(struct signer_config, audit_anchor_file)},
    {"audit_anchor_command", KL_INI_STRING, KL_INI_FIELD(struct signer_config, audit_anchor_command)},
    {"audit_host", KL_INI_STRING, KL_INI_FIELD(struct signer_config, audit_host)},
    {"audit_refusal_rate", KL_INI_NUMBER, KL_INI_FIELD(struct signer_config, audit_refusal_rate), .max = RATE_MAX,
     .hint = "per second"},
    {"audit_refusal_burst", KL_INI_NUMBER, KL_INI_FIELD(struct signer_config, audit_refusal_burst), .max = RATE_MAX},
    {"rate_per_peer", KL_INI_NUMBER, KL_INI_FIELD(struct signer_config, rate_per_peer), .max = RATE_MAX,
     .hint = "per second"},
    {"burst_per_peer", KL_INI_NUMBER, KL_INI_FIELD(struct signer_config, burst_per_peer), .max = RATE_MAX},
    {"user", KL_INI_CUSTOM, KL_INI_LINE, .set = set_user, .line_offset = offsetof(struct signer_config, user_line)},
    {"group", KL_INI_CUSTOM, KL_INI_LINE, .set = set_group, .line_offset = offsetof(struct signer_config, group_line)},
    {"log_level", KL_INI_ENUM, KL_INI_FIELD(struct signer_config, log_level), .names = log_levels,
     .values = log_level_values},
    {"log_format", KL_INI_ENUM, KL_INI_FIELD(struct signer_config, log_format), .names = log_formats,
     .values = log_format_values},
    {"metrics_file", KL_INI_PATH, KL_INI_EMPTY_OK, KL_INI_FIELD(struct signer_config, metrics_file)},
    {"metrics_interval", KL_INI_DURATION, KL_INI_FIELD(struct signer_config, metrics_interval_ms), .min = 100,
     .max = 3600000, .unit_ms = 1000},
    /* Peers and the sandbox (issue 13 §2, §5). */
    {"allow_same_uid", KL_INI_BOOL, KL_INI_FIELD(struct signer_config, allow_same_uid)},
    {"idle_timeout", KL_INI_DURATION, KL_INI_FIELD(struct signer_config, idle_timeout_ms), .min = 100, .max = 86400000,
     .unit_ms = 1000},
    {"frame_timeout", KL_INI_DURATION, KL_INI_FIELD(struct signer_config, frame_timeout_ms), .min = 10, .max = 600000,
     .unit_ms = 1000},
    {"max_connections_per_uid", KL_INI_UINT, KL_INI_FIELD(struct signer_config, max_connections_per_uid), .min = 1,
     .max = 65536},
    {"verify_ecdsa", KL_INI_BOOL, KL_INI_FIELD(struct signer_config, verify_ecdsa)},
    {"sandbox", KL_INI_BOOL, KL_INI_FIELD(struct signer_config, sandbox)},
    {"sandbox_allow", KL_INI_LIST, KL_INI_MULTI | KL_INI_EMPTY_OK, .set = add_sandbox_syscall},
};

/* [hsm] */

static const struct kl_ini_key hsm_keys[] = {
    {"module", KL_INI_PATH, KL_INI_FIELD(struct signer_config, module)},
    {"module_name", KL_INI_STRING, KL_INI_FIELD(struct signer_config, module_name)},
    {"softhsm2_conf", KL_INI_PATH, KL_INI_FIELD(struct signer_config, softhsm2_conf)},
    {"pin_file", KL_INI_PATH, KL_INI_REQUIRED, KL_INI_FIELD(struct signer_config, pin_file),
     .missing = "the PIN is read from a file only"},
    /* issue 13: a key that is extractable or can decrypt stops the start instead of a warning */
    {"strict_keys", KL_INI_BOOL, KL_INI_FIELD(struct signer_config, strict_keys)},
    /* issue 15: instances of a remoting module (one connection each), see check() */
    {"module_instances", KL_INI_UINT, KL_INI_FIELD(struct signer_config, module_instances), .min = 1,
     .max = P11_INSTANCES_MAX},
};

/* [key NAME] */

static int key_name_ok(const char *s)
{
    if (*s == '\0' || strlen(s) > 64) {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.')) {
            return 0;
        }
    }
    return 1;
}

static void *open_key(struct kl_ini *ini, void *user, const char *name)
{
    struct signer_config *cfg = user;
    if (!key_name_ok(name)) {
        kl_ini_fail(ini, "key name '%s' must be 1..64 of [A-Za-z0-9._-]", name);
        return NULL;
    }
    if (cfg->n_keys == CFG_MAX_KEYS) {
        kl_ini_fail(ini, "at most %d keys", CFG_MAX_KEYS);
        return NULL;
    }
    struct cfg_key *k = &cfg->keys[cfg->n_keys];
    if ((k->name = strdup(name)) == NULL) {
        kl_ini_fail(ini, "out of memory");
        return NULL;
    }
    k->contexts = CFG_CONTEXT_SERVER; /* the client context only when listed */
    cfg->n_keys++;
    return k;
}

static int set_uri(struct kl_ini *ini, void *obj, const char *value)
{
    struct cfg_key *k = obj;
    if (strncmp(value, "pkcs11:", 7) != 0) {
        return kl_ini_fail(ini, "'%s' is not an RFC 7512 pkcs11: URI", value);
    }
    if ((k->uri = strdup(value)) == NULL) {
        return kl_ini_fail(ini, "out of memory");
    }
    return 0;
}

static int add_scheme(struct kl_ini *ini, void *obj, const char *tok)
{
    struct cfg_key *k = obj;
    const struct tls_scheme_info *s = tls_scheme_parse(tok);
    char names[300] = "";
    if (s == NULL) {
        for (size_t i = 0; i < tls_n_schemes; i++) {
            snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s, ", tls_schemes[i].name);
        }
        return kl_ini_fail(ini, "unknown signature scheme '%s' (%sor a code point like 0x0403)", tok, names);
    }
    for (size_t i = 0; i < k->n_schemes; i++) {
        if (k->schemes[i] == s->id) {
            return kl_ini_fail(ini, "scheme '%s' listed twice", tok);
        }
    }
    if (k->n_schemes == CFG_MAX_SCHEMES) {
        return kl_ini_fail(ini, "at most %d schemes", CFG_MAX_SCHEMES);
    }
    k->schemes[k->n_schemes++] = s->id;
    return 0;
}

/* One item of allow_uids/allow_gids, n of them already listed. */
static int parse_allowed_id(struct kl_ini *ini, uint32_t *id, size_t n, const char *tok, int is_group)
{
    if (parse_id(id, tok, is_group) != 0) {
        return kl_ini_fail(ini, "no such %s '%s'", is_group ? "group" : "user", tok);
    }
    if (n == CFG_MAX_IDS) {
        return kl_ini_fail(ini, "at most %d %s", CFG_MAX_IDS, is_group ? "gids" : "uids");
    }
    return 0;
}

static int add_uid(struct kl_ini *ini, void *obj, const char *tok)
{
    struct cfg_key *k = obj;
    uint32_t id = 0;
    int ret = parse_allowed_id(ini, &id, k->n_uids, tok, 0);
    if (ret == 0) {
        k->uids[k->n_uids++] = id;
    }
    return ret;
}

static int add_gid(struct kl_ini *ini, void *obj, const char *tok)
{
    struct cfg_key *k = obj;
    uint32_t id = 0;
    int ret = parse_allowed_id(ini, &id, k->n_gids, tok, 1);
    if (ret == 0) {
        k->gids[k->n_gids++] = id;
    }
    return ret;
}

/* contexts = server[, client]: the first item replaces the default (server only). */
static int reset_contexts(struct kl_ini *ini, void *obj)
{
    struct cfg_key *k = obj;
    (void)ini;
    k->contexts = 0;
    return 0;
}

static int add_context(struct kl_ini *ini, void *obj, const char *tok)
{
    struct cfg_key *k = obj;
    unsigned bit = strcmp(tok, "server") == 0   ? CFG_CONTEXT_SERVER
                   : strcmp(tok, "client") == 0 ? CFG_CONTEXT_CLIENT
                                                : 0;
    if (bit == 0) {
        return kl_ini_fail(ini, "unknown context '%s' (server, client)", tok);
    }
    if (k->contexts & bit) {
        return kl_ini_fail(ini, "context '%s' listed twice", tok);
    }
    k->contexts |= bit;
    return 0;
}

/* The lists may be split over several lines: each line adds to them. */
static const struct kl_ini_key key_keys[] = {
    {"uri", KL_INI_CUSTOM, KL_INI_REQUIRED, .set = set_uri},
    {"schemes", KL_INI_LIST, KL_INI_REQUIRED | KL_INI_MULTI, .set = add_scheme,
     .missing = "list the schemes this key may sign"},
    {"allow_uids", KL_INI_LIST, KL_INI_MULTI | KL_INI_EMPTY_OK, .set = add_uid},
    {"allow_gids", KL_INI_LIST, KL_INI_MULTI | KL_INI_EMPTY_OK, .set = add_gid},
    {"rate", KL_INI_NUMBER, KL_INI_FIELD(struct cfg_key, rate), .max = RATE_MAX, .hint = "per second"},
    {"burst", KL_INI_NUMBER, KL_INI_FIELD(struct cfg_key, burst), .max = RATE_MAX},
    {"contexts", KL_INI_LIST, KL_INI_LINE, .set = add_context, .reset = reset_contexts,
     .line_offset = offsetof(struct cfg_key, contexts_line)},
};

/* [tickets] (issue 11) */

static int set_ticket_key(struct kl_ini *ini, void *obj, const char *value)
{
    struct signer_config *cfg = obj;
    if (strlen(value) > 64) {
        return kl_ini_fail(ini, "label longer than 64 bytes");
    }
    free(cfg->tickets.key);
    if ((cfg->tickets.key = strdup(value)) == NULL) {
        return kl_ini_fail(ini, "out of memory");
    }
    return 0;
}

/* The scope goes into every derivation and the audit log: a short name, like a key's. */
static int set_ticket_scope(struct kl_ini *ini, void *obj, const char *value)
{
    struct signer_config *cfg = obj;
    if (!key_name_ok(value)) {
        return kl_ini_fail(ini, "'%s' must be 1..64 of [A-Za-z0-9._-] (a site name)", value);
    }
    if ((cfg->tickets.scope = strdup(value)) == NULL) {
        return kl_ini_fail(ini, "out of memory");
    }
    return 0;
}

static int add_ticket_uid(struct kl_ini *ini, void *obj, const char *tok)
{
    struct cfg_tickets *t = &((struct signer_config *)obj)->tickets;
    uint32_t id = 0;
    int ret = parse_allowed_id(ini, &id, t->n_uids, tok, 0);
    if (ret == 0) {
        t->uids[t->n_uids++] = id;
    }
    return ret;
}

static int add_ticket_gid(struct kl_ini *ini, void *obj, const char *tok)
{
    struct cfg_tickets *t = &((struct signer_config *)obj)->tickets;
    uint32_t id = 0;
    int ret = parse_allowed_id(ini, &id, t->n_gids, tok, 1);
    if (ret == 0) {
        t->gids[t->n_gids++] = id;
    }
    return ret;
}

static const struct kl_ini_key ticket_keys[] = {
    {"key", KL_INI_CUSTOM, .set = set_ticket_key},
    {"scope", KL_INI_CUSTOM, .set = set_ticket_scope},
    {"accept_epochs", KL_INI_UINT, KL_INI_FIELD(struct signer_config, tickets.accept_epochs), .min = 0,
     .max = CFG_TICKETS_MAX_ACCEPT},
    {"allow_uids", KL_INI_LIST, KL_INI_MULTI | KL_INI_EMPTY_OK, .set = add_ticket_uid},
    {"allow_gids", KL_INI_LIST, KL_INI_MULTI | KL_INI_EMPTY_OK, .set = add_ticket_gid},
    {"rate", KL_INI_NUMBER, KL_INI_FIELD(struct signer_config, tickets.rate), .max = RATE_MAX, .hint = "per second"},
    {"burst", KL_INI_NUMBER, KL_INI_FIELD(struct signer_config, tickets.burst), .max = RATE_MAX},
};

#define KEYS(t) .keys = (t), .n_keys = sizeof(t) / sizeof((t)[0])

static const struct kl_ini_section sections[] = {
    {"signer", 0, KEYS(signer_keys)},
    {"hsm", KL_INI_LINE, KEYS(hsm_keys), .line_offset = offsetof(struct signer_config, hsm_line)},
    {"key", KL_INI_NAMED | KL_INI_REQUIRED | KL_INI_LINE, KEYS(key_keys), .open = open_key,
     .line_offset = offsetof(struct cfg_key, line), .missing = "no key configured"},
    {"tickets", KL_INI_LINE, KEYS(ticket_keys), .line_offset = offsetof(struct signer_config, tickets.line)},
};

/* Whole-file checks: one module, and group only with user. */
static int check(struct kl_ini *ini, void *user)
{
    struct signer_config *cfg = user;
    if (cfg->module == NULL && cfg->module_name == NULL) {
        return kl_ini_fail_at(ini, 0, "hsm", "module", "missing (set module = PATH or module_name = NAME)");
    }
    if (cfg->module != NULL && cfg->module_name != NULL) {
        return kl_ini_fail_at(ini, cfg->hsm_line, "hsm", "module_name", "set only one of module and module_name");
    }
    if (cfg->module_instances > 1) {
        /* The signer's sessions (one per worker, one more for audit_key) are spread over the
         * instances: an instance without a session would be a connection never used. */
        unsigned sessions = (cfg->workers > 0 ? cfg->workers : 1) + (cfg->audit_key != NULL ? 1 : 0);
        if (cfg->module_name != NULL) {
            return kl_ini_fail_at(ini, cfg->hsm_line, "hsm", "module_instances",
                                  "more than one needs module = PATH (p11-kit hands out one instance per "
                                  "registered module)");
        }
        if (cfg->module_instances > sessions) {
            return kl_ini_fail_at(ini, cfg->hsm_line, "hsm", "module_instances",
                                  "%u is more than the signer's %u PKCS#11 sessions (workers, plus one for "
                                  "audit_key): an instance without a session is never used",
                                  cfg->module_instances, sessions);
        }
    }
    if (cfg->has_group && !cfg->has_user) {
        return kl_ini_fail_at(ini, cfg->group_line, "signer", "group",
                              "set without user (only a drop to both is supported)");
    }
    if (cfg->audit_anchor_command != NULL && cfg->sandbox) {
        /* The seccomp filter allows no new process (common/sandbox.c): refuse at start, not
         * kill the signer at its first checkpoint. */
        return kl_ini_fail_at(ini, 0, "signer", "audit_anchor_command",
                              "runs a program, which the sandbox forbids: use audit_anchor_file or syslog, or set "
                              "sandbox = no");
    }
    if (cfg->tickets.line != 0) {
        cfg->tickets.present = 1;
        cfg->tickets.allow_same_uid = cfg->allow_same_uid;
        if (cfg->tickets.n_uids == 0 && cfg->tickets.n_gids == 0 && !cfg->allow_same_uid) {
            return kl_ini_fail_at(ini, cfg->tickets.line, "tickets", "allow_uids",
                                  "no allow list: name the frontend's user (allow_uids) or group (allow_gids); "
                                  "the signer's own user needs [signer] allow_same_uid = yes");
        }
        if (cfg->tickets.scope == NULL) {
            return kl_ini_fail_at(ini, cfg->tickets.line, "tickets", "scope",
                                  "missing (name the site: a leaked ticket key then opens this site's tickets only)");
        }
        if (cfg->tickets.key == NULL && (cfg->tickets.key = strdup(CFG_TICKETS_DEFAULT_KEY)) == NULL) {
            return kl_ini_fail_at(ini, cfg->tickets.line, "tickets", "key", "out of memory");
        }
    }
    /* Privilege separation by default (issue 13 §2): a key without an allow list used to
     * be for the signer's own uid, which let a frontend run as the user that reads the PIN
     * file. Now the frontend's user or group is named, or the old rule is asked for. */
    for (size_t i = 0; i < cfg->n_keys; i++) {
        const struct cfg_key *k = &cfg->keys[i];
        if (k->n_uids == 0 && k->n_gids == 0 && !cfg->allow_same_uid) {
            char sect[80];
            snprintf(sect, sizeof(sect), "key %s", k->name);
            return kl_ini_fail_at(ini, k->line, sect, "allow_uids",
                                  "no allow list: name the frontend's user (allow_uids) or group (allow_gids); "
                                  "a key for the signer's own user needs [signer] allow_same_uid = yes");
        }
    }
    return 0;
}

static const struct kl_ini_spec spec = {sections, sizeof(sections) / sizeof(sections[0]), check};

const struct cfg_key *cfg_key_find(const struct signer_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_keys; i++) {
        if (cfg->keys[i].name != NULL && strcmp(cfg->keys[i].name, name) == 0) {
            return &cfg->keys[i];
        }
    }
    return NULL;
}

int cfg_load(struct signer_config **cfg_p, FILE *err_out, const char *path)
{
    int ret = 0;
    char err[KL_INI_ERR_LEN];
    struct signer_config *cfg = calloc(1, sizeof(*cfg));

    *cfg_p = NULL;
    if (cfg == NULL || (cfg->path = strdup(path)) == NULL) {
        fprintf(err_out, "keyless-signer: %s: out of memory\n", path);
        KL_ENSURE(0, KL_ERR_NO_MEMORY);
    }
    cfg->workers = 2;
    cfg->module_instances = 1;
    cfg->queue_max = 4096;
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->log_format = LOG_FORMAT_TEXT;
    cfg->metrics_interval_ms = 5000;
    cfg->max_connections = 256;
    cfg->audit_sync = AUDIT_SYNC_GROUP;
    cfg->audit_group_ms = AUDIT_DEFAULT_GROUP_MS;
    cfg->audit_zero_tail = 1;
    cfg->tickets.accept_epochs = CFG_TICKETS_DEFAULT_ACCEPT;
    cfg->audit_cp_records = AUDIT_DEFAULT_CP_RECORDS;
    cfg->audit_cp_ms = AUDIT_DEFAULT_CP_MS;
    cfg->audit_heartbeat_ms = AUDIT_DEFAULT_HEARTBEAT_MS;
    cfg->audit_syslog_facility = LOG_AUTHPRIV;
    cfg->audit_refusal_rate = 50;
    cfg->audit_refusal_burst = 200;
    cfg->idle_timeout_ms = 300000;
    cfg->frame_timeout_ms = 10000;
    cfg->max_connections_per_uid = 64;
    cfg->sandbox = 1;
    ret = kl_ini_load(&spec, cfg, path, err, sizeof(err));
    if (ret != 0) {
        fprintf(err_out, "keyless-signer: %s\n", err);
        goto exit;
    }
    *cfg_p = cfg;
    cfg = NULL;
exit:
    cfg_free(cfg);
    return ret;
}

void cfg_free(struct signer_config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < cfg->n_keys; i++) {
        free(cfg->keys[i].name);
        free(cfg->keys[i].uri);
    }
    for (size_t i = 0; i < cfg->n_sandbox_allow; i++) {
        free(cfg->sandbox_allow[i]);
    }
    free(cfg->path);
    free(cfg->socket_path);
    free(cfg->user_name);
    free(cfg->metrics_file);
    free(cfg->audit_log);
    free(cfg->audit_key);
    free(cfg->audit_anchor_file);
    free(cfg->audit_anchor_command);
    free(cfg->audit_host);
    free(cfg->module);
    free(cfg->module_name);
    free(cfg->softhsm2_conf);
    free(cfg->pin_file);
    free(cfg->tickets.key);
    free(cfg->tickets.scope);
    free(cfg);
}

/* ---- reload (issue 14): the settings that need a restart ---- */

static const char *name_of(const char *const *names, const int *values, int v)
{
    for (size_t i = 0; names[i] != NULL; i++) {
        if (values[i] == v) {
            return names[i];
        }
    }
    return "?";
}

static void say_kept(const struct signer_config *next, const char *section, const char *key, const char *old)
{
    log_warnx("%s: [%s] %s changed; needs a restart (kept %s)", next->path, section, key, old);
}

/* A string setting: the running value back into next (strings may be NULL: unset). */
static int keep_str(struct signer_config *next, char **nv, const char *ov, const char *section, const char *key)
{
    if ((*nv == NULL) == (ov == NULL) && (ov == NULL || strcmp(*nv, ov) == 0)) {
        return 0;
    }
    say_kept(next, section, key, ov != NULL ? ov : "(unset)");
    free(*nv);
    *nv = NULL;
    if (ov != NULL && (*nv = strdup(ov)) == NULL) {
        return KL_ERR_NO_MEMORY;
    }
    return 0;
}

static void keep_uint(struct signer_config *next, unsigned *nv, unsigned ov, const char *key)
{
    char buf[32];
    if (*nv != ov) {
        snprintf(buf, sizeof(buf), "%u", ov);
        say_kept(next, "signer", key, buf);
        *nv = ov;
    }
}

static void keep_double(struct signer_config *next, double *nv, double ov, const char *key)
{
    char buf[32];
    if (*nv != ov) {
        snprintf(buf, sizeof(buf), "%g", ov);
        say_kept(next, "signer", key, buf);
        *nv = ov;
    }
}

static void keep_bool(struct signer_config *next, int *nv, int ov, const char *key)
{
    if (!*nv != !ov) {
        say_kept(next, "signer", key, ov ? "yes" : "no");
        *nv = ov;
    }
}

static void keep_enum(struct signer_config *next, int *nv, int ov, const char *key, const char *const *names,
                      const int *values)
{
    if (*nv != ov) {
        say_kept(next, "signer", key, name_of(names, values, ov));
        *nv = ov;
    }
}

int cfg_keep_restart_only(struct signer_config *next, const struct signer_config *cur)
{
    int ret = 0;
    char buf[64];

    KL_TRY(keep_str(next, &next->socket_path, cur->socket_path, "signer", "socket"));
    if (next->has_socket_gid != cur->has_socket_gid || next->socket_gid != cur->socket_gid) {
        snprintf(buf, sizeof(buf), "%s%u", cur->has_socket_gid ? "gid " : "(unset), gid ",
                 cur->has_socket_gid ? (unsigned)cur->socket_gid : (unsigned)getgid());
        say_kept(next, "signer", "socket_group", buf);
        next->has_socket_gid = cur->has_socket_gid;
        next->socket_gid = cur->socket_gid;
    }
    keep_uint(next, &next->workers, cur->workers, "workers");
    if (next->has_user != cur->has_user || next->run_uid != cur->run_uid) {
        say_kept(next, "signer", "user", cur->user_name != NULL ? cur->user_name : "(unset)");
    }
    if (next->has_group != cur->has_group || next->run_gid != cur->run_gid) {
        snprintf(buf, sizeof(buf), "gid %u", (unsigned)cur->run_gid);
        say_kept(next, "signer", "group", cur->has_user ? buf : "(unset)");
    }
    free(next->user_name);
    next->user_name = NULL;
    if (cur->user_name != NULL && (next->user_name = strdup(cur->user_name)) == NULL) {
        KL_FAIL(KL_ERR_NO_MEMORY);
    }
    next->has_user = cur->has_user;
    next->has_group = cur->has_group;
    next->run_uid = cur->run_uid;
    next->run_gid = cur->run_gid;
    /* The audit log: opened, chained and checkpointed at start (audit.h takes these once). */
    KL_TRY(keep_str(next, &next->audit_log, cur->audit_log, "signer", "audit_log"));
    {
        int v = (int)next->audit_sync;
        keep_enum(next, &v, (int)cur->audit_sync, "audit_sync", audit_syncs, audit_sync_values);
        next->audit_sync = (enum audit_sync)v;
    }
    keep_uint(next, &next->audit_group_ms, cur->audit_group_ms, "audit_group_ms");
    keep_bool(next, &next->audit_repair_torn, cur->audit_repair_torn, "audit_repair_torn");
    keep_bool(next, &next->audit_zero_tail, cur->audit_zero_tail, "audit_zero_tail");
    KL_TRY(keep_str(next, &next->audit_key, cur->audit_key, "signer", "audit_key"));
    keep_uint(next, &next->audit_cp_records, cur->audit_cp_records, "audit_checkpoint_records");
    keep_uint(next, &next->audit_cp_ms, cur->audit_cp_ms, "audit_checkpoint_interval");
    keep_uint(next, &next->audit_heartbeat_ms, cur->audit_heartbeat_ms, "audit_heartbeat");
    keep_enum(next, &next->audit_syslog_facility, cur->audit_syslog_facility, "audit_syslog_facility", audit_facilities,
              audit_facility_values);
    KL_TRY(keep_str(next, &next->audit_anchor_file, cur->audit_anchor_file, "signer", "audit_anchor_file"));
    KL_TRY(keep_str(next, &next->audit_anchor_command, cur->audit_anchor_command, "signer", "audit_anchor_command"));
    KL_TRY(keep_str(next, &next->audit_host, cur->audit_host, "signer", "audit_host"));
    keep_double(next, &next->audit_refusal_rate, cur->audit_refusal_rate, "audit_refusal_rate");
    keep_double(next, &next->audit_refusal_burst, cur->audit_refusal_burst, "audit_refusal_burst");
    /* The signing threads took it at start (jobs.h). */
    keep_bool(next, &next->verify_ecdsa, cur->verify_ecdsa, "verify_ecdsa");
    /* The seccomp filter cannot be loosened once loaded. */
    keep_bool(next, &next->sandbox, cur->sandbox, "sandbox");
    {
        int same = next->n_sandbox_allow == cur->n_sandbox_allow;
        for (size_t i = 0; same && i < cur->n_sandbox_allow; i++) {
            same = strcmp(next->sandbox_allow[i], cur->sandbox_allow[i]) == 0;
        }
        if (!same) {
            say_kept(next, "signer", "sandbox_allow", cur->n_sandbox_allow > 0 ? cur->sandbox_allow[0] : "(empty)");
            for (size_t i = 0; i < next->n_sandbox_allow; i++) {
                free(next->sandbox_allow[i]);
            }
            next->n_sandbox_allow = 0;
            for (size_t i = 0; i < cur->n_sandbox_allow; i++) {
                KL_ENSURE((next->sandbox_allow[i] = strdup(cur->sandbox_allow[i])) != NULL, KL_ERR_NO_MEMORY);
                next->n_sandbox_allow++;
            }
        }
    }
    /* The module, the token session and the login. The PIN file's path too: a reload never
     * logs in again (a wrong PIN counts towards the token's lock); the file is re-read at
     * the next re-login, which SIGHUP re-arms after a refused PIN (p11_backend_rearm). */
    KL_TRY(keep_str(next, &next->module, cur->module, "hsm", "module"));
    KL_TRY(keep_str(next, &next->module_name, cur->module_name, "hsm", "module_name"));
    KL_TRY(keep_str(next, &next->softhsm2_conf, cur->softhsm2_conf, "hsm", "softhsm2_conf"));
    KL_TRY(keep_str(next, &next->pin_file, cur->pin_file, "hsm", "pin_file"));
    /* The instances are loaded, connected and logged in at start. */
    if (next->module_instances != cur->module_instances) {
        snprintf(buf, sizeof(buf), "%u", cur->module_instances);
        say_kept(next, "hsm", "module_instances", buf);
        next->module_instances = cur->module_instances;
    }
exit:
    return ret;
}

int cfg_mkdir_parents(const char *path, mode_t mode)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof(buf)) {
        errno = ENAMETOOLONG;
        return KL_ERR_IO;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        /* Only the next-to-last components: the last one (after the final '/') is the file. */
        if (mkdir(buf, mode) != 0 && errno != EEXIST) {
            return KL_ERR_IO;
        }
        *p = '/';
    }
    return 0;
}
