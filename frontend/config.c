#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <ini.h>
#include "config.h"
#include "log.h"
#include "tls/tls.h"

struct parse_state {
    struct config *cfg;
    FILE *f;
    int line;
    char *dir; /* directory of the config file, for relative paths */
    char *err;
    int failed;
    char section[128];
    int section_line;
};

static void set_err(struct parse_state *st, int line, const char *section, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void set_err(struct parse_state *st, int line, const char *section, const char *key, const char *fmt, ...)
{
    if (st->failed) {
        return; /* keep the first error: later ones are often consequences of it */
    }
    st->failed = 1;
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (key != NULL && key[0] != '\0') {
        snprintf(st->err, CONFIG_ERR_LEN, "keyless-frontend: %s:%d: [%s] %s: %s", st->cfg->path, line, section, key,
                 reason);
    } else {
        snprintf(st->err, CONFIG_ERR_LEN, "keyless-frontend: %s:%d: [%s]: %s", st->cfg->path, line, section, reason);
    }
}

/* fgets that counts lines, so the handler knows where it is whatever inih was built with. */
static char *reader(char *str, int num, void *stream)
{
    struct parse_state *st = stream;
    char *r = fgets(str, num, st->f);
    if (r != NULL) {
        st->line++;
    }
    return r;
}

int config_parse_addr(struct config_addr *a, const char *s, int allow_unix)
{
    memset(a, 0, sizeof(*a));
    if (strlen(s) >= sizeof(a->text)) {
        return KL_ERR_CONFIG;
    }
    snprintf(a->text, sizeof(a->text), "%s", s);
    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
        const char *p = s + 5;
        if (!allow_unix || p[0] == '\0' || strlen(p) >= sizeof(un->sun_path)) {
            return KL_ERR_CONFIG;
        }
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, p, strlen(p) + 1);
        a->len = sizeof(*un);
        return 0;
    }
    char host[128];
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host)) {
            return KL_ERR_CONFIG;
        }
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
            return KL_ERR_CONFIG;
        }
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port == 0 || port > 65535) {
        return KL_ERR_CONFIG;
    }
    if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof(host), "127.0.0.1");
    }
    struct sockaddr_in *in4 = (struct sockaddr_in *)&a->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        a->len = sizeof(*in4);
        return 0;
    }
    memset(&a->ss, 0, sizeof(a->ss));
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        a->len = sizeof(*in6);
        return 0;
    }
    return KL_ERR_CONFIG;
}

static int parse_uint(const char *v, unsigned long long min, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (v[0] == '-' || v[0] == '\0') {
        return -1;
    }
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || x < min || x > max) {
        return -1;
    }
    *out = x;
    return 0;
}

/* Seconds, decimals allowed ("0.5"), or with an "ms" suffix ("500ms"). */
static int parse_duration_ms(const char *v, uint32_t min_ms, uint32_t max_ms, uint32_t *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno != 0 || end == v || !isfinite(x) || x < 0) {
        return -1;
    }
    double ms;
    if (strcmp(end, "ms") == 0) {
        ms = x;
    } else if (*end == '\0' || strcmp(end, "s") == 0) {
        ms = x * 1000.0;
    } else {
        return -1;
    }
    if (ms < min_ms || ms > max_ms) {
        return -1;
    }
    *out = (uint32_t)ms;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "on") == 0) {
        *out = 1;
        return 0;
    }
    if (strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcasecmp(v, "off") == 0) {
        *out = 0;
        return 0;
    }
    return -1;
}

static char *resolve_path(struct parse_state *st, const char *v)
{
    if (v[0] == '/' || st->dir == NULL) {
        return strdup(v);
    }
    size_t n = strlen(st->dir) + 1 + strlen(v) + 1;
    char *p = malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s/%s", st->dir, v);
    }
    return p;
}

/* Split a comma-separated list in place; calls fn on each trimmed, non-empty item. */
static int for_each_item(char *list, int (*fn)(struct parse_state *st, const char *item, char *why, size_t why_len),
                         struct parse_state *st, char *why, size_t why_len)
{
    char *save = NULL;
    for (char *tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t') {
            tok++;
        }
        size_t l = strlen(tok);
        while (l > 0 && (tok[l - 1] == ' ' || tok[l - 1] == '\t')) {
            tok[--l] = '\0';
        }
        if (l == 0) {
            continue;
        }
        if (fn(st, tok, why, why_len) != 0) {
            return -1;
        }
    }
    return 0;
}

static int add_suite(struct parse_state *st, const char *item, char *why, size_t why_len)
{
    static const struct {
        const char *name;
        uint16_t id;
    } t[] = {{"TLS_AES_128_GCM_SHA256", TLS_AES_128_GCM_SHA256},
             {"TLS_AES_256_GCM_SHA384", TLS_AES_256_GCM_SHA384},
             {"TLS_CHACHA20_POLY1305_SHA256", TLS_CHACHA20_POLY1305_SHA256}};
    struct config *cfg = st->cfg;
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(item, t[i].name) == 0) {
            for (size_t j = 0; j < cfg->n_suites; j++) {
                if (cfg->suites[j] == t[i].id) {
                    snprintf(why, why_len, "%s listed twice", item);
                    return -1;
                }
            }
            cfg->suites[cfg->n_suites++] = t[i].id;
            return 0;
        }
    }
    snprintf(why, why_len,
             "unknown cipher suite '%s' (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256)",
             item);
    return -1;
}

static int add_group(struct parse_state *st, const char *item, char *why, size_t why_len)
{
    static const struct {
        const char *name;
        uint16_t id;
    } t[] = {{"x25519", TLS_GROUP_X25519},       {"X25519", TLS_GROUP_X25519},        {"P-256", TLS_GROUP_SECP256R1},
             {"secp256r1", TLS_GROUP_SECP256R1}, {"prime256v1", TLS_GROUP_SECP256R1}, {"P-384", TLS_GROUP_SECP384R1},
             {"secp384r1", TLS_GROUP_SECP384R1}};
    struct config *cfg = st->cfg;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (strcmp(item, t[i].name) == 0) {
            for (size_t j = 0; j < cfg->n_groups; j++) {
                if (cfg->groups[j] == t[i].id) {
                    snprintf(why, why_len, "%s listed twice", item);
                    return -1;
                }
            }
            cfg->groups[cfg->n_groups++] = t[i].id;
            return 0;
        }
    }
    snprintf(why, why_len, "unknown group '%s' (x25519, P-256, P-384)", item);
    return -1;
}

static int add_alpn(struct parse_state *st, const char *item, char *why, size_t why_len)
{
    struct config *cfg = st->cfg;
    if (cfg->n_alpn == CONFIG_MAX_ALPN) {
        snprintf(why, why_len, "at most %d protocols", CONFIG_MAX_ALPN);
        return -1;
    }
    if (strlen(item) > 255) {
        snprintf(why, why_len, "protocol name longer than 255 bytes");
        return -1;
    }
    cfg->alpn[cfg->n_alpn] = strdup(item);
    if (cfg->alpn[cfg->n_alpn] == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    cfg->n_alpn++;
    return 0;
}

static int handle_frontend(struct parse_state *st, const char *key, const char *value)
{
    struct config *cfg = st->cfg;
    unsigned long long u;
    if (strcmp(key, "workers") == 0) {
        if (strcmp(value, "auto") == 0) {
            long n = sysconf(_SC_NPROCESSORS_ONLN);
            cfg->workers = n > 0 ? (unsigned)n : 1;
        } else if (parse_uint(value, 1, 256, &u) == 0) {
            cfg->workers = (unsigned)u;
        } else {
            set_err(st, st->line, st->section, key, "'%s' is not 'auto' or a number from 1 to 256", value);
        }
    } else if (strcmp(key, "log_level") == 0) {
        int l = log_level_parse(value);
        if (l < 0) {
            set_err(st, st->line, st->section, key, "'%s' is not error, warn, info or debug", value);
        }
        cfg->log_level = l;
    } else if (strcmp(key, "max_connections") == 0) {
        if (parse_uint(value, 1, 1000000, &u) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not a number from 1 to 1000000", value);
        }
        cfg->max_connections = (size_t)u;
    } else if (strcmp(key, "handshake_timeout") == 0) {
        if (parse_duration_ms(value, 10, 3600000, &cfg->handshake_timeout_ms) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not a duration from 10ms to 3600s", value);
        }
    } else if (strcmp(key, "idle_timeout") == 0) {
        if (parse_duration_ms(value, 10, 86400000, &cfg->idle_timeout_ms) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not a duration from 10ms to 86400s", value);
        }
    } else if (strcmp(key, "drain_timeout") == 0) {
        if (parse_duration_ms(value, 0, 3600000, &cfg->drain_timeout_ms) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not a duration up to 3600s", value);
        }
    } else if (strcmp(key, "metrics") == 0) {
        if (value[0] == '\0') {
            cfg->metrics.len = 0;
        } else if (config_parse_addr(&cfg->metrics, value, 0) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not host:port", value);
        } else {
            int loopback = 0;
            if (cfg->metrics.ss.ss_family == AF_INET) {
                loopback = (ntohl(((struct sockaddr_in *)&cfg->metrics.ss)->sin_addr.s_addr) >> 24) == 127;
            } else {
                loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&cfg->metrics.ss)->sin6_addr);
            }
            if (!loopback) {
                set_err(st, st->line, st->section, key, "'%s' is not a loopback address", value);
            }
        }
    } else if (strcmp(key, "keylog_file") == 0) {
        free(cfg->keylog_file);
        cfg->keylog_file = value[0] != '\0' ? resolve_path(st, value) : NULL;
    } else {
        return -1;
    }
    return 0;
}

static int handle_signer(struct parse_state *st, const char *key, const char *value)
{
    struct config *cfg = st->cfg;
    unsigned long long u;
    if (strcmp(key, "socket") == 0) {
        if (cfg->n_signer_sockets == CONFIG_MAX_SIGNERS) {
            set_err(st, st->line, st->section, key, "at most %d signer sockets", CONFIG_MAX_SIGNERS);
            return 0;
        }
        if (value[0] == '\0' || strlen(value) >= 100) {
            set_err(st, st->line, st->section, key, "a socket path of 1 to 99 bytes is needed");
            return 0;
        }
        cfg->signer_sockets[cfg->n_signer_sockets++] = resolve_path(st, value);
        if (cfg->signer_line == 0) {
            cfg->signer_line = st->line;
        }
    } else if (strcmp(key, "timeout") == 0) {
        if (parse_duration_ms(value, 1, 60000, &cfg->signer_timeout_ms) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not a duration from 1ms to 60s", value);
        }
    } else if (strcmp(key, "max_pending") == 0) {
        if (parse_uint(value, 1, 1u << 20, &u) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not a number from 1 to 1048576", value);
        }
        cfg->max_pending_sign = (size_t)u;
    } else if (strcmp(key, "startup_wait") == 0) {
        if (parse_duration_ms(value, 0, 600000, &cfg->signer_startup_wait_ms) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not a duration up to 600s", value);
        }
    } else {
        return -1;
    }
    return 0;
}

static int handle_tls(struct parse_state *st, const char *key, const char *value)
{
    struct config *cfg = st->cfg;
    char why[256] = "";
    char *copy = strdup(value);
    if (copy == NULL) {
        set_err(st, st->line, st->section, key, "out of memory");
        return 0;
    }
    if (strcmp(key, "suites") == 0) {
        cfg->n_suites = 0;
        if (for_each_item(copy, add_suite, st, why, sizeof(why)) != 0 || cfg->n_suites == 0) {
            set_err(st, st->line, st->section, key, "%s", why[0] ? why : "empty list");
        }
    } else if (strcmp(key, "groups") == 0) {
        cfg->n_groups = 0;
        if (for_each_item(copy, add_group, st, why, sizeof(why)) != 0 || cfg->n_groups == 0) {
            set_err(st, st->line, st->section, key, "%s", why[0] ? why : "empty list");
        }
    } else if (strcmp(key, "alpn") == 0) {
        for (size_t i = 0; i < cfg->n_alpn; i++) {
            free(cfg->alpn[i]);
        }
        cfg->n_alpn = 0;
        if (for_each_item(copy, add_alpn, st, why, sizeof(why)) != 0) {
            set_err(st, st->line, st->section, key, "%s", why);
        }
    } else {
        free(copy);
        return -1;
    }
    free(copy);
    return 0;
}

static int handle_cert(struct parse_state *st, struct config_cert *c, const char *key, const char *value)
{
    if (strcmp(key, "chain") == 0) {
        free(c->chain_path);
        c->chain_path = resolve_path(st, value);
        c->chain_line = st->line;
        if (access(c->chain_path, R_OK) != 0) {
            set_err(st, st->line, st->section, key, "cannot read %s: %s", c->chain_path, strerror(errno));
        }
    } else if (strcmp(key, "key") == 0) {
        free(c->key_name);
        c->key_name = strdup(value);
        c->key_line = st->line;
        if (value[0] == '\0') {
            set_err(st, st->line, st->section, key, "the signer's key name is empty");
        }
    } else {
        return -1;
    }
    return 0;
}

static int handle_listener(struct parse_state *st, struct config_listener *l, const char *key, const char *value)
{
    int b = 0;
    if (strcmp(key, "listen") == 0) {
        if (config_parse_addr(&l->listen, value, 0) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not host:port", value);
        }
    } else if (strcmp(key, "backend") == 0) {
        if (config_parse_addr(&l->backend, value, 1) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not host:port or unix:/path", value);
        } else if (l->backend.ss.ss_family == AF_UNIX && value[5] != '/') {
            /* A relative unix: path is relative to the config file's directory, like every path. */
            char *p = resolve_path(st, value + 5);
            char buf[160];
            if (p != NULL && snprintf(buf, sizeof(buf), "unix:%s", p) < (int)sizeof(buf) &&
                config_parse_addr(&l->backend, buf, 1) == 0) {
                free(p);
            } else {
                free(p);
                set_err(st, st->line, st->section, key, "unix socket path too long");
            }
        }
    } else if (strcmp(key, "proxy_protocol") == 0) {
        if (parse_bool(value, &b) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not yes or no", value);
        }
        l->proxy_protocol = b;
    } else if (strcmp(key, "backend_connect_timeout") == 0) {
        if (parse_duration_ms(value, 10, 600000, &l->backend_connect_timeout_ms) != 0) {
            set_err(st, st->line, st->section, key, "'%s' is not a duration from 10ms to 600s", value);
        }
    } else {
        return -1;
    }
    return 0;
}

static int on_section(struct parse_state *st, const char *section)
{
    struct config *cfg = st->cfg;
    snprintf(st->section, sizeof(st->section), "%s", section);
    st->section_line = st->line;
    const char *name = NULL;
    if (strncmp(section, "cert ", 5) == 0) {
        name = section + 5;
        if (cfg->n_certs == CONFIG_MAX_CERTS) {
            set_err(st, st->line, section, NULL, "at most %d certificates", CONFIG_MAX_CERTS);
            return 0;
        }
        for (size_t i = 0; i < cfg->n_certs; i++) {
            if (strcmp(cfg->certs[i].name, name) == 0) {
                set_err(st, st->line, section, NULL, "certificate '%s' defined twice", name);
                return 0;
            }
        }
        struct config_cert *c = &cfg->certs[cfg->n_certs++];
        c->name = strdup(name);
        c->line = st->line;
    } else if (strncmp(section, "listener ", 9) == 0) {
        name = section + 9;
        if (cfg->n_listeners == CONFIG_MAX_LISTENERS) {
            set_err(st, st->line, section, NULL, "at most %d listeners", CONFIG_MAX_LISTENERS);
            return 0;
        }
        for (size_t i = 0; i < cfg->n_listeners; i++) {
            if (strcmp(cfg->listeners[i].name, name) == 0) {
                set_err(st, st->line, section, NULL, "listener '%s' defined twice", name);
                return 0;
            }
        }
        struct config_listener *l = &cfg->listeners[cfg->n_listeners++];
        l->name = strdup(name);
        l->line = st->line;
        l->backend_connect_timeout_ms = 5000;
    } else if (strcmp(section, "frontend") != 0 && strcmp(section, "signer") != 0 && strcmp(section, "tls") != 0) {
        set_err(st, st->line, section, NULL, "unknown section (frontend, signer, tls, cert NAME, listener NAME)");
    }
    return 0;
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
    struct parse_state *st = user;
    struct config *cfg = st->cfg;
    if (st->failed) {
        return 1;
    }
    if (key == NULL) {
        /* inih >= 51 reports a new section with key == NULL. */
        return on_section(st, section) == 0;
    }
    if (strcmp(section, st->section) != 0 || st->section_line == 0) {
        on_section(st, section);
        if (st->failed) {
            return 1;
        }
    }
    int unknown = 0;
    if (strcmp(section, "frontend") == 0) {
        unknown = handle_frontend(st, key, value) != 0;
    } else if (strcmp(section, "signer") == 0) {
        unknown = handle_signer(st, key, value) != 0;
    } else if (strcmp(section, "tls") == 0) {
        unknown = handle_tls(st, key, value) != 0;
    } else if (strncmp(section, "cert ", 5) == 0 && cfg->n_certs > 0) {
        unknown = handle_cert(st, &cfg->certs[cfg->n_certs - 1], key, value) != 0;
    } else if (strncmp(section, "listener ", 9) == 0 && cfg->n_listeners > 0) {
        unknown = handle_listener(st, &cfg->listeners[cfg->n_listeners - 1], key, value) != 0;
    }
    if (unknown) {
        set_err(st, st->line, section, key, "unknown key");
    }
    return 1;
}

static void check_complete(struct parse_state *st)
{
    struct config *cfg = st->cfg;
    if (cfg->n_signer_sockets == 0) {
        set_err(st, st->line, "signer", "socket", "missing: at least one signer socket is needed");
    }
    if (cfg->n_certs == 0) {
        set_err(st, st->line, "cert NAME", NULL, "missing: at least one [cert NAME] section is needed");
    }
    if (cfg->n_listeners == 0) {
        set_err(st, st->line, "listener NAME", NULL, "missing: at least one [listener NAME] section is needed");
    }
    char sect[160];
    for (size_t i = 0; i < cfg->n_certs; i++) {
        struct config_cert *c = &cfg->certs[i];
        snprintf(sect, sizeof(sect), "cert %s", c->name);
        if (c->chain_path == NULL) {
            set_err(st, c->line, sect, "chain", "missing");
        } else if (c->key_name == NULL) {
            set_err(st, c->line, sect, "key", "missing");
        }
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        struct config_listener *l = &cfg->listeners[i];
        snprintf(sect, sizeof(sect), "listener %s", l->name);
        if (l->listen.len == 0) {
            set_err(st, l->line, sect, "listen", "missing");
        } else if (l->backend.len == 0) {
            set_err(st, l->line, sect, "backend", "missing");
        }
        for (size_t j = 0; j < i; j++) {
            if (cfg->listeners[j].listen.len == l->listen.len &&
                memcmp(&cfg->listeners[j].listen.ss, &l->listen.ss, l->listen.len) == 0) {
                set_err(st, l->line, sect, "listen", "%s is already used by listener '%s'", l->listen.text,
                        cfg->listeners[j].name);
            }
        }
    }
}

int config_load(struct config **cfg_p, char *err, const char *path)
{
    int ret = 0;
    struct parse_state st = {.err = err};
    struct config *cfg = calloc(1, sizeof(*cfg));
    err[0] = '\0';
    KL_ENSURE(cfg != NULL, KL_ERR_NO_MEMORY);
    st.cfg = cfg;
    cfg->path = strdup(path);
    KL_ENSURE(cfg->path != NULL, KL_ERR_NO_MEMORY);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = ncpu > 0 ? (unsigned)ncpu : 1;
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->max_connections = 10000;
    cfg->handshake_timeout_ms = 10000;
    cfg->idle_timeout_ms = 300000;
    cfg->drain_timeout_ms = 30000;
    cfg->signer_timeout_ms = 1000;
    cfg->max_pending_sign = 4096;
    cfg->signer_startup_wait_ms = 10000;
    cfg->suites[0] = TLS_AES_128_GCM_SHA256;
    cfg->suites[1] = TLS_AES_256_GCM_SHA384;
    cfg->suites[2] = TLS_CHACHA20_POLY1305_SHA256;
    cfg->n_suites = 3;
    cfg->groups[0] = TLS_GROUP_X25519;
    cfg->groups[1] = TLS_GROUP_SECP256R1;
    cfg->groups[2] = TLS_GROUP_SECP384R1;
    cfg->n_groups = 3;
    const char *slash = strrchr(path, '/');
    if (slash != NULL) {
        st.dir = strndup(path, (size_t)(slash - path) == 0 ? 1 : (size_t)(slash - path));
    } else {
        st.dir = strdup(".");
    }
    st.f = fopen(path, "r");
    if (st.f == NULL) {
        snprintf(err, CONFIG_ERR_LEN, "keyless-frontend: %s: cannot open: %s", path, strerror(errno));
        ret = KL_ERR_CONFIG;
        goto exit;
    }
    int r = ini_parse_stream(reader, &st, handler, &st);
    if (r > 0 && !st.failed) {
        set_err(&st, r, st.section[0] ? st.section : "-", NULL, "syntax error (expected [section] or key = value)");
    } else if (r < 0 && !st.failed) {
        snprintf(err, CONFIG_ERR_LEN, "keyless-frontend: %s: cannot parse (error %d)", path, r);
        ret = KL_ERR_CONFIG;
        goto exit;
    }
    if (!st.failed) {
        check_complete(&st);
    }
    KL_ENSURE(!st.failed, KL_ERR_CONFIG);
    *cfg_p = cfg;
    cfg = NULL;
exit:
    if (st.f != NULL) {
        fclose(st.f);
    }
    free(st.dir);
    config_free(cfg);
    return ret;
}

void config_free(struct config *cfg)
{
    if (cfg == NULL) {
        return;
    }
    free(cfg->path);
    free(cfg->keylog_file);
    for (size_t i = 0; i < cfg->n_signer_sockets; i++) {
        free(cfg->signer_sockets[i]);
    }
    for (size_t i = 0; i < cfg->n_alpn; i++) {
        free(cfg->alpn[i]);
    }
    for (size_t i = 0; i < cfg->n_certs; i++) {
        free(cfg->certs[i].name);
        free(cfg->certs[i].chain_path);
        free(cfg->certs[i].key_name);
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        free(cfg->listeners[i].name);
    }
    free(cfg);
}
