/*
 * config.c - keyless-signer's INI configuration, read with inih.
 *
 * inih does not report line numbers to the handler in Debian's build, so the file is
 * fed through ini_parse_stream() with a reader that counts lines: when the handler runs,
 * the counter is the line of the name = value pair it is looking at.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <ini.h>

#include "config.h"
#include "policy.h"

struct parse_state {
    struct signer_config *cfg;
    FILE *in;
    unsigned line;
    char last_section[128];
    struct cfg_key *cur_key;
    unsigned seen_signer; /* bitmask of keys seen, to refuse duplicates */
    char err[512];        /* the first error */
    unsigned err_line;
};

static char *reader(char *str, int num, void *stream)
{
    struct parse_state *ps = stream;
    char *r = fgets(str, num, ps->in);
    if (r != NULL) {
        ps->line++;
    }
    return r;
}

__attribute__((format(printf, 4, 5))) static int fail(struct parse_state *ps, const char *section, const char *name,
                                                      const char *fmt, ...)
{
    if (ps->err[0] == '\0') {
        char reason[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        snprintf(ps->err, sizeof(ps->err), "%s:%u: [%s] %s: %s", ps->cfg->path, ps->line, section, name, reason);
    }
    return 0;
}

/* Resolve a relative path against the config file's directory. */
static char *path_resolve(const struct signer_config *cfg, const char *value)
{
    const char *slash = strrchr(cfg->path, '/');
    char *out;
    if (value[0] == '/' || slash == NULL) {
        return strdup(value);
    }
    size_t dir_len = (size_t)(slash - cfg->path);
    size_t n = dir_len + 1 + strlen(value) + 1;
    out = malloc(n);
    if (out != NULL) {
        snprintf(out, n, "%.*s/%s", (int)dir_len, cfg->path, value);
    }
    return out;
}

static int parse_uint(unsigned *out, const char *value, unsigned min, unsigned max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || v < min || v > max) {
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int parse_rate(double *out, const char *value)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno != 0 || end == value || *end != '\0' || !isfinite(v) || v < 0 || v > 1e9) {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_id(uint32_t *out, const char *tok, int is_group)
{
    char *end;
    unsigned long v;
    errno = 0;
    v = strtoul(tok, &end, 10);
    if (errno == 0 && end != tok && *end == '\0' && tok[0] != '-' && v < UINT32_MAX) {
        *out = (uint32_t)v;
        return 0;
    }
    if (is_group) {
        struct group *g = getgrnam(tok);
        if (g == NULL) {
            return -1;
        }
        *out = g->gr_gid;
    } else {
        struct passwd *p = getpwnam(tok);
        if (p == NULL) {
            return -1;
        }
        *out = p->pw_uid;
    }
    return 0;
}

/* Split a comma/space separated list; calls each(tok) for every item. */
static int list_each(struct parse_state *ps, const char *section, const char *name, const char *value,
                     int (*each)(struct parse_state *, const char *, const char *, const char *))
{
    char buf[1024];
    char *save = NULL;
    if (strlen(value) >= sizeof(buf)) {
        return fail(ps, section, name, "%s", "value too long");
    }
    strcpy(buf, value);
    for (char *tok = strtok_r(buf, ", \t", &save); tok != NULL; tok = strtok_r(NULL, ", \t", &save)) {
        if (!each(ps, section, name, tok)) {
            return 0;
        }
    }
    return 1;
}

static int add_scheme(struct parse_state *ps, const char *section, const char *name, const char *tok)
{
    struct cfg_key *k = ps->cur_key;
    uint16_t s;
    if (policy_scheme_from_name(&s, tok) != 0) {
        return fail(ps, section, name,
                    "unknown signature scheme '%s' (use e.g. ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, "
                    "ed25519 or a code point like 0x0403)",
                    tok);
    }
    for (size_t i = 0; i < k->n_schemes; i++) {
        if (k->schemes[i] == s) {
            return fail(ps, section, name, "scheme '%s' listed twice", tok);
        }
    }
    if (k->n_schemes == CFG_MAX_SCHEMES) {
        return fail(ps, section, name, "%s", "too many schemes");
    }
    k->schemes[k->n_schemes++] = s;
    return 1;
}

static int add_uid(struct parse_state *ps, const char *section, const char *name, const char *tok)
{
    struct cfg_key *k = ps->cur_key;
    uint32_t id;
    if (parse_id(&id, tok, 0) != 0) {
        return fail(ps, section, name, "no such user '%s'", tok);
    }
    if (k->n_uids == CFG_MAX_IDS) {
        return fail(ps, section, name, "%s", "too many uids");
    }
    k->uids[k->n_uids++] = id;
    return 1;
}

static int add_gid(struct parse_state *ps, const char *section, const char *name, const char *tok)
{
    struct cfg_key *k = ps->cur_key;
    uint32_t id;
    if (parse_id(&id, tok, 1) != 0) {
        return fail(ps, section, name, "no such group '%s'", tok);
    }
    if (k->n_gids == CFG_MAX_IDS) {
        return fail(ps, section, name, "%s", "too many gids");
    }
    k->gids[k->n_gids++] = id;
    return 1;
}

static int set_string(struct parse_state *ps, char **dst, const char *section, const char *name, const char *value,
                      int is_path)
{
    if (*dst != NULL) {
        return fail(ps, section, name, "%s", "set twice");
    }
    if (value[0] == '\0') {
        return fail(ps, section, name, "%s", "empty value");
    }
    *dst = is_path ? path_resolve(ps->cfg, value) : strdup(value);
    return *dst != NULL ? 1 : fail(ps, section, name, "%s", "out of memory");
}

/* user = NAME or uid: its passwd entry gives the name and the primary group. */
static int set_user(struct parse_state *ps, const char *section, const char *name, const char *value)
{
    struct signer_config *cfg = ps->cfg;
    struct passwd *pw = getpwnam(value);
    char *end;
    unsigned long v;
    if (pw == NULL && value[0] >= '0' && value[0] <= '9') {
        errno = 0;
        v = strtoul(value, &end, 10);
        if (errno == 0 && *end == '\0' && v < UINT32_MAX) {
            pw = getpwuid((uid_t)v);
        }
    }
    if (pw == NULL) {
        return fail(ps, section, name, "no such user '%s'", value);
    }
    if (pw->pw_uid == 0) {
        return fail(ps, section, name, "'%s' is root: name the unprivileged user to run as", value);
    }
    cfg->user_name = strdup(pw->pw_name);
    if (cfg->user_name == NULL) {
        return fail(ps, section, name, "%s", "out of memory");
    }
    cfg->run_uid = pw->pw_uid;
    if (!cfg->has_group) {
        cfg->run_gid = pw->pw_gid; /* the user's primary group unless group = is given */
    }
    cfg->has_user = 1;
    cfg->user_line = ps->line;
    return 1;
}

static int handle_signer(struct parse_state *ps, const char *section, const char *name, const char *value)
{
    struct signer_config *cfg = ps->cfg;
    static const char *const names[] = {
        "socket",    "socket_group", "workers",           "queue_max",         "max_connections",
        "audit_log", "audit_sync",   "audit_group_ms",    "rate_per_peer",     "burst_per_peer",
        "user",      "group",        "audit_repair_torn", "audit_rotate_bytes"};
    unsigned idx = 0;
    for (; idx < sizeof(names) / sizeof(names[0]); idx++) {
        if (strcmp(names[idx], name) == 0) {
            break;
        }
    }
    if (idx == sizeof(names) / sizeof(names[0])) {
        return fail(ps, section, name, "%s", "unknown key");
    }
    if (ps->seen_signer & (1u << idx)) {
        return fail(ps, section, name, "%s", "set twice");
    }
    ps->seen_signer |= 1u << idx;
    switch (idx) {
    case 0:
        return set_string(ps, &cfg->socket_path, section, name, value, 1);
    case 1: {
        uint32_t gid;
        if (value[0] == '\0') {
            return 1;
        }
        if (parse_id(&gid, value, 1) != 0) {
            return fail(ps, section, name, "no such group '%s'", value);
        }
        cfg->socket_gid = gid;
        cfg->has_socket_gid = 1;
        return 1;
    }
    case 2:
        return parse_uint(&cfg->workers, value, 0, 256) == 0 ? 1 : fail(ps, section, name, "'%s' is not 0..256", value);
    case 3:
        return parse_uint(&cfg->queue_max, value, 1, 1u << 20) == 0
                   ? 1
                   : fail(ps, section, name, "'%s' is not 1..1048576", value);
    case 4:
        return parse_uint(&cfg->max_connections, value, 1, 65536) == 0
                   ? 1
                   : fail(ps, section, name, "'%s' is not 1..65536", value);
    case 5:
        return set_string(ps, &cfg->audit_log, section, name, value, 1);
    case 6:
        if (strcmp(value, "always") == 0) {
            cfg->audit_sync = AUDIT_SYNC_ALWAYS;
        } else if (strcmp(value, "group") == 0) {
            cfg->audit_sync = AUDIT_SYNC_GROUP;
        } else if (strcmp(value, "none") == 0) {
            cfg->audit_sync = AUDIT_SYNC_NONE;
        } else {
            return fail(ps, section, name, "'%s' is not always, group or none", value);
        }
        return 1;
    case 7:
        return parse_uint(&cfg->audit_group_ms, value, 1, 1000) == 0
                   ? 1
                   : fail(ps, section, name, "'%s' is not 1..1000 (ms)", value);
    case 8:
        return parse_rate(&cfg->rate_per_peer, value) == 0
                   ? 1
                   : fail(ps, section, name, "'%s' is not a rate >= 0 (per second)", value);
    case 9:
        return parse_rate(&cfg->burst_per_peer, value) == 0
                   ? 1
                   : fail(ps, section, name, "'%s' is not a number >= 0", value);
    case 10:
        return set_user(ps, section, name, value);
    case 12:
        if (strcmp(value, "yes") == 0) {
            cfg->audit_repair_torn = 1;
        } else if (strcmp(value, "no") == 0) {
            cfg->audit_repair_torn = 0;
        } else {
            return fail(ps, section, name, "'%s' is not yes or no", value);
        }
        return 1;
    case 13: {
        char *end;
        unsigned long long v;
        errno = 0;
        v = strtoull(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || value[0] == '-' ||
            (v != 0 && (v < CFG_MIN_ROTATE_BYTES || v > (1ull << 50)))) {
            return fail(ps, section, name, "'%s' is not 0 (off) or %u..2^50 (bytes)", value, CFG_MIN_ROTATE_BYTES);
        }
        cfg->audit_rotate_bytes = v;
        return 1;
    }
    default: {
        uint32_t gid;
        if (parse_id(&gid, value, 1) != 0) {
            return fail(ps, section, name, "no such group '%s'", value);
        }
        cfg->run_gid = gid;
        cfg->has_group = 1;
        cfg->group_line = ps->line;
        return 1;
    }
    }
}

static int handle_hsm(struct parse_state *ps, const char *section, const char *name, const char *value)
{
    struct signer_config *cfg = ps->cfg;
    if (cfg->hsm_line == 0) {
        cfg->hsm_line = ps->line;
    }
    if (strcmp(name, "module") == 0) {
        return set_string(ps, &cfg->module, section, name, value, 1);
    }
    if (strcmp(name, "module_name") == 0) {
        return set_string(ps, &cfg->module_name, section, name, value, 0);
    }
    if (strcmp(name, "softhsm2_conf") == 0) {
        return set_string(ps, &cfg->softhsm2_conf, section, name, value, 1);
    }
    if (strcmp(name, "pin_file") == 0) {
        return set_string(ps, &cfg->pin_file, section, name, value, 1);
    }
    return fail(ps, section, name, "%s", "unknown key");
}

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

static int handle_key(struct parse_state *ps, const char *section, const char *name, const char *value)
{
    struct cfg_key *k = ps->cur_key;
    if (strcmp(name, "uri") == 0) {
        if (strncmp(value, "pkcs11:", 7) != 0) {
            return fail(ps, section, name, "'%s' is not an RFC 7512 pkcs11: URI", value);
        }
        return set_string(ps, &k->uri, section, name, value, 0);
    }
    if (strcmp(name, "schemes") == 0) {
        return list_each(ps, section, name, value, add_scheme);
    }
    if (strcmp(name, "allow_uids") == 0) {
        return list_each(ps, section, name, value, add_uid);
    }
    if (strcmp(name, "allow_gids") == 0) {
        return list_each(ps, section, name, value, add_gid);
    }
    if (strcmp(name, "rate") == 0) {
        return parse_rate(&k->rate, value) == 0
                   ? 1
                   : fail(ps, section, name, "'%s' is not a rate >= 0 (per second)", value);
    }
    if (strcmp(name, "burst") == 0) {
        return parse_rate(&k->burst, value) == 0 ? 1 : fail(ps, section, name, "'%s' is not a number >= 0", value);
    }
    return fail(ps, section, name, "%s", "unknown key");
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct parse_state *ps = user;
    struct signer_config *cfg = ps->cfg;
    int new_section = strcmp(section, ps->last_section) != 0;

    if (ps->err[0] != '\0') {
        return 0; /* report the first error only */
    }
    if (new_section) {
        snprintf(ps->last_section, sizeof(ps->last_section), "%s", section);
        ps->cur_key = NULL;
    }
    if (strcmp(section, "signer") == 0) {
        return handle_signer(ps, section, name, value);
    }
    if (strcmp(section, "hsm") == 0) {
        return handle_hsm(ps, section, name, value);
    }
    if (strncmp(section, "key ", 4) == 0 || strncmp(section, "key:", 4) == 0) {
        const char *kname = section + 4;
        while (*kname == ' ' || *kname == '"') {
            kname++;
        }
        char nbuf[128];
        snprintf(nbuf, sizeof(nbuf), "%s", kname);
        size_t nl = strlen(nbuf);
        while (nl > 0 && (nbuf[nl - 1] == '"' || nbuf[nl - 1] == ' ')) {
            nbuf[--nl] = '\0';
        }
        if (ps->cur_key == NULL) {
            if (!key_name_ok(nbuf)) {
                return fail(ps, section, name, "key name '%s' must be 1..64 of [A-Za-z0-9._-]", nbuf);
            }
            if (cfg_key_find(cfg, nbuf) != NULL) {
                return fail(ps, section, name, "key '%s' is defined twice", nbuf);
            }
            if (cfg->n_keys == CFG_MAX_KEYS) {
                return fail(ps, section, name, "%s", "too many keys");
            }
            ps->cur_key = &cfg->keys[cfg->n_keys++];
            ps->cur_key->line = ps->line;
            ps->cur_key->name = strdup(nbuf);
            if (ps->cur_key->name == NULL) {
                return fail(ps, section, name, "%s", "out of memory");
            }
        }
        return handle_key(ps, section, name, value);
    }
    return fail(ps, section, name, "%s", "unknown section (expected [signer], [hsm] or [key NAME])");
}

const struct cfg_key *cfg_key_find(const struct signer_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_keys; i++) {
        if (cfg->keys[i].name != NULL && strcmp(cfg->keys[i].name, name) == 0) {
            return &cfg->keys[i];
        }
    }
    return NULL;
}

/* Whole-file checks once every line has been read. */
static int check_complete(struct parse_state *ps)
{
    struct signer_config *cfg = ps->cfg;
    const char *p = cfg->path;
    char *e = ps->err;
    size_t n = sizeof(ps->err);

    if (cfg->socket_path == NULL) {
        snprintf(e, n, "%s: [signer] socket: missing (the Unix socket path is required)", p);
    } else if (cfg->audit_log == NULL) {
        snprintf(e, n, "%s: [signer] audit_log: missing (the audit log path is required)", p);
    } else if (cfg->module == NULL && cfg->module_name == NULL) {
        snprintf(e, n, "%s: [hsm] module: missing (set module = PATH or module_name = NAME)", p);
    } else if (cfg->module != NULL && cfg->module_name != NULL) {
        snprintf(e, n, "%s:%u: [hsm] module_name: set only one of module and module_name", p, cfg->hsm_line);
    } else if (cfg->pin_file == NULL) {
        snprintf(e, n, "%s: [hsm] pin_file: missing (the PIN is read from a file only)", p);
    } else if (cfg->has_group && !cfg->has_user) {
        snprintf(e, n, "%s:%u: [signer] group: set without user (only a drop to both is supported)", p,
                 cfg->group_line);
    } else if (cfg->n_keys == 0) {
        snprintf(e, n, "%s: [key NAME]: no key configured", p);
    } else {
        for (size_t i = 0; i < cfg->n_keys; i++) {
            const struct cfg_key *k = &cfg->keys[i];
            if (k->uri == NULL) {
                snprintf(e, n, "%s:%u: [key %s] uri: missing", p, k->line, k->name);
                break;
            }
            if (k->n_schemes == 0) {
                snprintf(e, n, "%s:%u: [key %s] schemes: missing (list the schemes this key may sign)", p, k->line,
                         k->name);
                break;
            }
        }
    }
    return e[0] == '\0' ? 0 : KL_ERR_CONFIG;
}

int cfg_load(struct signer_config **cfg_p, FILE *err_out, const char *path)
{
    int ret = 0, r;
    struct parse_state ps;
    struct signer_config *cfg = calloc(1, sizeof(*cfg));

    memset(&ps, 0, sizeof(ps));
    *cfg_p = NULL;
    KL_ENSURE(cfg != NULL, KL_ERR_NO_MEMORY);
    cfg->path = strdup(path);
    KL_ENSURE(cfg->path != NULL, KL_ERR_NO_MEMORY);
    cfg->workers = 2;
    cfg->queue_max = 4096;
    cfg->max_connections = 256;
    cfg->audit_sync = AUDIT_SYNC_GROUP;
    cfg->audit_group_ms = AUDIT_DEFAULT_GROUP_MS;
    ps.cfg = cfg;
    ps.in = fopen(path, "re");
    if (ps.in == NULL) {
        fprintf(err_out, "keyless-signer: %s: cannot open config file: %s\n", path, strerror(errno));
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    r = ini_parse_stream(reader, &ps, handler, &ps);
    if (ps.err[0] == '\0' && r != 0) {
        snprintf(ps.err, sizeof(ps.err), "%s:%d: syntax error (expected [section] or name = value)", path, r);
    }
    if (ps.err[0] == '\0') {
        (void)check_complete(&ps);
    }
    if (ps.err[0] != '\0') {
        fprintf(err_out, "keyless-signer: %s\n", ps.err);
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    *cfg_p = cfg;
    cfg = NULL;
exit:
    if (ps.in != NULL) {
        fclose(ps.in);
    }
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
    free(cfg->path);
    free(cfg->socket_path);
    free(cfg->user_name);
    free(cfg->audit_log);
    free(cfg->module);
    free(cfg->module_name);
    free(cfg->softhsm2_conf);
    free(cfg->pin_file);
    free(cfg);
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
