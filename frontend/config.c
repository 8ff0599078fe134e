/*
 * config.c - keyless-frontend's configuration: the key tables of [frontend], [signer],
 * [tls], [cert NAME] and [listener NAME] over common/kl_ini (which reads the file,
 * checks types, bounds, duplicates and required keys, and formats every error).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "config.h"
#include "kl_ini.h"
#include "runas.h"
#include "log.h"
#include "sandbox.h"
#include "tls_ids.h"
#include "tls/tls.h" /* TLS_TICKET_KEYS_MAX, TLS_HOST_ID_LEN */

_Static_assert(CONFIG_HOST_ID_LEN == TLS_HOST_ID_LEN, "host_id is the engine's host id");

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

static unsigned ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* [frontend] */

static int set_workers(struct kl_ini *ini, void *obj, const char *value)
{
    struct config *cfg = obj;
    uint64_t u;
    if (strcmp(value, "auto") == 0) {
        cfg->workers = ncpu();
    } else if (kl_ini_parse_uint(&u, value, 1, 256) == 0) {
        cfg->workers = (unsigned)u;
    } else {
        return kl_ini_fail(ini, "'%s' is not 'auto' or 1..256", value);
    }
    return 0;
}

static int set_metrics(struct kl_ini *ini, void *obj, const char *value)
{
    struct config *cfg = obj;
    int loopback;
    if (value[0] == '\0') {
        cfg->metrics.len = 0;
        return 0;
    }
    if (config_parse_addr(&cfg->metrics, value, 0) != 0) {
        return kl_ini_fail(ini, "'%s' is not host:port", value);
    }
    if (cfg->metrics.ss.ss_family == AF_INET) {
        loopback = (ntohl(((struct sockaddr_in *)&cfg->metrics.ss)->sin_addr.s_addr) >> 24) == 127;
    } else {
        loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&cfg->metrics.ss)->sin6_addr);
    }
    if (!loopback) {
        return kl_ini_fail(ini, "'%s' is not a loopback address", value);
    }
    return 0;
}

static int set_ticket_keys(struct kl_ini *ini, void *obj, const char *value)
{
    struct config *cfg = obj;
    free(cfg->ticket_key_file);
    cfg->ticket_key_file = NULL;
    cfg->ticket_keys_line = (int)kl_ini_line(ini);
    if (strcmp(value, "hsm") == 0) {
        cfg->ticket_keys = CONFIG_TICKET_KEYS_HSM;
        return 0;
    }
    if (strcmp(value, "off") == 0) {
        cfg->ticket_keys = CONFIG_TICKET_KEYS_OFF;
        return 0;
    }
    if (strncmp(value, "file:", 5) != 0 || value[5] == '\0') {
        return kl_ini_fail(ini, "'%s' is not hsm, file:PATH or off", value);
    }
    cfg->ticket_keys = CONFIG_TICKET_KEYS_FILE;
    int ret = kl_ini_path(ini, &cfg->ticket_key_file, value + 5);
    if (ret == 0 && access(cfg->ticket_key_file, R_OK) != 0) {
        ret = kl_ini_fail(ini, "cannot read %s: %s", cfg->ticket_key_file, strerror(errno));
    }
    return ret;
}

/* FNV-1a 64 (offset basis and prime from the FNV reference), seeded by a prefix byte. */
static uint64_t fnv1a64(uint8_t seed, const char *label, const char *text)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const char *parts[2] = {label, text};
    h = (h ^ seed) * 0x100000001b3ull;
    for (size_t p = 0; p < 2; p++) {
        for (const unsigned char *c = (const unsigned char *)parts[p]; *c != '\0'; c++) {
            h = (h ^ *c) * 0x100000001b3ull;
        }
        h = (h ^ 0) * 0x100000001b3ull; /* a separator: "ab"+"c" and "a"+"bc" differ */
    }
    return h;
}

void config_host_id_fold(uint8_t out[CONFIG_HOST_ID_LEN], const char *text)
{
    static const char label[] = "keyless-frontend host id v1";
    for (unsigned half = 0; half < 2; half++) {
        uint64_t h = fnv1a64((uint8_t)(half + 1), label, text);
        for (unsigned i = 0; i < 8; i++) {
            out[half * 8 + i] = (uint8_t)(h >> (56 - 8 * i));
        }
    }
}

void config_host_id_default(uint8_t out[CONFIG_HOST_ID_LEN])
{
    char text[256] = "";
    FILE *f = fopen("/etc/machine-id", "re");
    if (f != NULL) {
        if (fgets(text, sizeof(text), f) == NULL) {
            text[0] = '\0';
        }
        fclose(f);
        text[strcspn(text, "\r\n")] = '\0';
    }
    if (text[0] == '\0' && gethostname(text, sizeof(text) - 1) != 0) {
        text[0] = '\0';
    }
    text[sizeof(text) - 1] = '\0';
    config_host_id_fold(out, text);
}

static int set_host_id(struct kl_ini *ini, void *obj, const char *value)
{
    struct config *cfg = obj;
    if (strlen(value) > 128) {
        return kl_ini_fail(ini, "at most 128 bytes (any text naming this host; it is folded into %d bytes)",
                           CONFIG_HOST_ID_LEN);
    }
    config_host_id_fold(cfg->host_id, value);
    return 0;
}

/* user = NAME or uid, group = NAME or gid: common/runas.h (the same as the signer's). */
static int set_user(struct kl_ini *ini, void *obj, const char *value)
{
    struct config *cfg = obj;
    int ret = kl_runas_user(ini, value, &cfg->user_name, &cfg->run_uid, &cfg->run_gid, cfg->has_group);
    cfg->has_user |= ret == 0;
    return ret;
}

static int set_group(struct kl_ini *ini, void *obj, const char *value)
{
    struct config *cfg = obj;
    int ret = kl_runas_group(ini, value, &cfg->run_gid);
    cfg->has_group |= ret == 0;
    return ret;
}

static int add_sandbox_syscall(struct kl_ini *ini, void *obj, const char *tok)
{
    struct config *cfg = obj;
    if (!sandbox_syscall_known(tok)) {
        return kl_ini_fail(ini, "'%s' is not a system call name on this machine", tok);
    }
    if (cfg->n_sandbox_allow == CONFIG_MAX_SANDBOX_ALLOW) {
        return kl_ini_fail(ini, "at most %d names", CONFIG_MAX_SANDBOX_ALLOW);
    }
    if ((cfg->sandbox_allow[cfg->n_sandbox_allow] = strdup(tok)) == NULL) {
        return kl_ini_fail(ini, "out of memory");
    }
    cfg->n_sandbox_allow++;
    return 0;
}

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const int log_level_values[] = {LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG};
static const char *const log_formats[] = {"text", "json", NULL};
static const int log_format_values[] = {LOG_FORMAT_TEXT, LOG_FORMAT_JSON};

static const struct kl_ini_key frontend_keys[] = {
    {"workers", KL_INI_CUSTOM, .set = set_workers},
    {"log_level", KL_INI_ENUM, KL_INI_FIELD(struct config, log_level), .names = log_levels, .values = log_level_values},
    {"log_format", KL_INI_ENUM, KL_INI_FIELD(struct config, log_format), .names = log_formats,
     .values = log_format_values},
    {"max_connections", KL_INI_UINT, KL_INI_FIELD(struct config, max_connections), .min = 1, .max = 1000000},
    {"handshake_timeout", KL_INI_DURATION, KL_INI_FIELD(struct config, handshake_timeout_ms), .min = 10, .max = 3600000,
     .unit_ms = 1000},
    {"idle_timeout", KL_INI_DURATION, KL_INI_FIELD(struct config, idle_timeout_ms), .min = 10, .max = 86400000,
     .unit_ms = 1000},
    {"drain_timeout", KL_INI_DURATION, KL_INI_FIELD(struct config, drain_timeout_ms), .min = 0, .max = 3600000,
     .unit_ms = 1000},
    {"metrics", KL_INI_CUSTOM, KL_INI_EMPTY_OK, .set = set_metrics},
    {"keylog_file", KL_INI_PATH, KL_INI_EMPTY_OK, KL_INI_FIELD(struct config, keylog_file)},
    /* Session tickets: where the keys come from, how long an epoch lasts, which host this is. */
    {"ticket_keys", KL_INI_CUSTOM, .set = set_ticket_keys},
    {"ticket_rotation", KL_INI_DURATION, KL_INI_LINE, KL_INI_FIELD(struct config, ticket_rotation_ms), .min = 60000,
     .max = 604800000, .unit_ms = 1000, .line_offset = offsetof(struct config, ticket_rotation_line)},
    {"host_id", KL_INI_CUSTOM, .set = set_host_id},
    /* Privilege drop and sandbox (issue 13 §2, §5). */
    {"user", KL_INI_CUSTOM, KL_INI_LINE, .set = set_user, .line_offset = offsetof(struct config, user_line)},
    {"group", KL_INI_CUSTOM, KL_INI_LINE, .set = set_group, .line_offset = offsetof(struct config, group_line)},
    {"sandbox", KL_INI_BOOL, KL_INI_FIELD(struct config, sandbox)},
    {"sandbox_allow", KL_INI_LIST, KL_INI_MULTI | KL_INI_EMPTY_OK, .set = add_sandbox_syscall},
};

/* [signer] */

static int add_signer_socket(struct kl_ini *ini, void *obj, const char *value)
{
    struct config *cfg = obj;
    if (cfg->n_signer_sockets == CONFIG_MAX_SIGNERS) {
        return kl_ini_fail(ini, "at most %d signer sockets", CONFIG_MAX_SIGNERS);
    }
    if (strlen(value) >= 100) {
        return kl_ini_fail(ini, "a socket path of 1 to 99 bytes is needed");
    }
    int ret = kl_ini_path(ini, &cfg->signer_sockets[cfg->n_signer_sockets], value);
    if (ret == 0) {
        cfg->n_signer_sockets++;
    }
    return ret;
}

static const struct kl_ini_key signer_keys[] = {
    /* Several sockets: the client fails over between them in order. */
    {"socket", KL_INI_CUSTOM, KL_INI_REQUIRED | KL_INI_MULTI | KL_INI_LINE, .set = add_signer_socket,
     .line_offset = offsetof(struct config, signer_line), .missing = "at least one signer socket is needed"},
    {"timeout", KL_INI_DURATION, KL_INI_FIELD(struct config, signer_timeout_ms), .min = 1, .max = 60000,
     .unit_ms = 1000},
    {"max_pending", KL_INI_UINT, KL_INI_FIELD(struct config, max_pending_sign), .min = 1, .max = 1u << 20},
    {"startup_wait", KL_INI_DURATION, KL_INI_FIELD(struct config, signer_startup_wait_ms), .min = 0, .max = 600000,
     .unit_ms = 1000},
};

/* [tls] */

static int reset_suites(struct kl_ini *ini, void *obj)
{
    (void)ini;
    ((struct config *)obj)->n_suites = 0; /* the list replaces the defaults */
    return 0;
}

static int add_suite(struct kl_ini *ini, void *obj, const char *item)
{
    struct config *cfg = obj;
    const struct tls_suite_info *s = tls_suite_by_name(item);
    char names[200] = "";
    if (s == NULL) {
        for (size_t i = 0; i < tls_n_suites; i++) {
            snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? ", " : "", tls_suites[i].name);
        }
        return kl_ini_fail(ini, "unknown cipher suite '%s' (%s)", item, names);
    }
    for (size_t j = 0; j < cfg->n_suites; j++) {
        if (cfg->suites[j] == s->id) {
            return kl_ini_fail(ini, "%s listed twice", item);
        }
    }
    /* Every suite is in tls_suites once, so a list without repeats fits. */
    cfg->suites[cfg->n_suites++] = s->id;
    return 0;
}

static int reset_groups(struct kl_ini *ini, void *obj)
{
    (void)ini;
    ((struct config *)obj)->n_groups = 0;
    return 0;
}

static int add_group(struct kl_ini *ini, void *obj, const char *item)
{
    struct config *cfg = obj;
    const struct tls_group_info *g = tls_group_by_name(item);
    char names[200] = "";
    if (g == NULL) {
        for (size_t i = 0; i < tls_n_groups; i++) {
            snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? ", " : "", tls_groups[i].name);
            for (size_t a = 0; a < 2 && tls_groups[i].alias[a] != NULL; a++) {
                snprintf(names + strlen(names), sizeof(names) - strlen(names), "/%s", tls_groups[i].alias[a]);
            }
        }
        return kl_ini_fail(ini, "unknown group '%s' (%s)", item, names);
    }
    for (size_t j = 0; j < cfg->n_groups; j++) {
        if (cfg->groups[j] == g->id) {
            return kl_ini_fail(ini, "%s listed twice", item);
        }
    }
    cfg->groups[cfg->n_groups++] = g->id;
    return 0;
}

static int reset_alpn(struct kl_ini *ini, void *obj)
{
    struct config *cfg = obj;
    (void)ini;
    for (size_t i = 0; i < cfg->n_alpn; i++) {
        free(cfg->alpn[i]);
    }
    cfg->n_alpn = 0;
    return 0;
}

static int add_alpn(struct kl_ini *ini, void *obj, const char *item)
{
    struct config *cfg = obj;
    if (cfg->n_alpn == CONFIG_MAX_ALPN) {
        return kl_ini_fail(ini, "at most %d protocols", CONFIG_MAX_ALPN);
    }
    if (strlen(item) > 255) {
        return kl_ini_fail(ini, "protocol name longer than 255 bytes");
    }
    if ((cfg->alpn[cfg->n_alpn] = strdup(item)) == NULL) {
        return kl_ini_fail(ini, "out of memory");
    }
    cfg->n_alpn++;
    return 0;
}

static const struct kl_ini_key tls_keys[] = {
    {"suites", KL_INI_LIST, .set = add_suite, .reset = reset_suites},
    {"groups", KL_INI_LIST, .set = add_group, .reset = reset_groups},
    {"alpn", KL_INI_LIST, KL_INI_EMPTY_OK, .set = add_alpn, .reset = reset_alpn},
};

/* [cert NAME] */

static void *open_cert(struct kl_ini *ini, void *user, const char *name)
{
    struct config *cfg = user;
    if (cfg->n_certs == CONFIG_MAX_CERTS) {
        kl_ini_fail(ini, "at most %d certificates", CONFIG_MAX_CERTS);
        return NULL;
    }
    struct config_cert *c = &cfg->certs[cfg->n_certs];
    if ((c->name = strdup(name)) == NULL) {
        kl_ini_fail(ini, "out of memory");
        return NULL;
    }
    cfg->n_certs++;
    return c;
}

static int set_chain(struct kl_ini *ini, void *obj, const char *value)
{
    struct config_cert *c = obj;
    int ret = kl_ini_path(ini, &c->chain_path, value);
    if (ret == 0 && access(c->chain_path, R_OK) != 0) {
        ret = kl_ini_fail(ini, "cannot read %s: %s", c->chain_path, strerror(errno));
    }
    return ret;
}

static const struct kl_ini_key cert_keys[] = {
    {"chain", KL_INI_CUSTOM, KL_INI_REQUIRED | KL_INI_LINE, .set = set_chain,
     .line_offset = offsetof(struct config_cert, chain_line)},
    {"key", KL_INI_STRING, KL_INI_REQUIRED | KL_INI_LINE, KL_INI_FIELD(struct config_cert, key_name),
     .line_offset = offsetof(struct config_cert, key_line)},
};

/* [listener NAME] */

static void *open_listener(struct kl_ini *ini, void *user, const char *name)
{
    struct config *cfg = user;
    if (cfg->n_listeners == CONFIG_MAX_LISTENERS) {
        kl_ini_fail(ini, "at most %d listeners", CONFIG_MAX_LISTENERS);
        return NULL;
    }
    struct config_listener *l = &cfg->listeners[cfg->n_listeners];
    if ((l->name = strdup(name)) == NULL) {
        kl_ini_fail(ini, "out of memory");
        return NULL;
    }
    l->backend_connect_timeout_ms = 5000;
    l->client_verify_depth = 4;
    l->tickets = 2;
    l->ticket_lifetime_ms = 2 * 3600 * 1000;
    cfg->n_listeners++;
    return l;
}

static int set_listen(struct kl_ini *ini, void *obj, const char *value)
{
    struct config_listener *l = obj;
    if (config_parse_addr(&l->listen, value, 0) != 0) {
        return kl_ini_fail(ini, "'%s' is not host:port", value);
    }
    return 0;
}

static int set_backend(struct kl_ini *ini, void *obj, const char *value)
{
    struct config_listener *l = obj;
    char *p = NULL, buf[160];
    int ret = 0;
    if (config_parse_addr(&l->backend, value, 1) != 0) {
        return kl_ini_fail(ini, "'%s' is not host:port or unix:/path", value);
    }
    if (l->backend.ss.ss_family != AF_UNIX || value[5] == '/') {
        return 0;
    }
    /* A relative unix: path is relative to the config file's directory, like every path. */
    KL_TRY(kl_ini_path(ini, &p, value + 5));
    if (snprintf(buf, sizeof(buf), "unix:%s", p) >= (int)sizeof(buf) || config_parse_addr(&l->backend, buf, 1) != 0) {
        ret = kl_ini_fail(ini, "unix socket path too long");
    }
exit:
    free(p);
    return ret;
}

const char *config_ech_key_why(enum tls_ech_key_error why)
{
    switch (why) {
    case TLS_ECH_KEY_OK:
        return "no error";
    case TLS_ECH_KEY_CANNOT_OPEN:
        return "cannot open the file";
    case TLS_ECH_KEY_NO_KEY:
        return "no X25519 PRIVATE KEY (PKCS#8 PEM) block in the file";
    case TLS_ECH_KEY_NO_CONFIG:
        return "no ECHCONFIG PEM block in the file (or its base64 does not decode)";
    case TLS_ECH_KEY_BAD_CONFIG:
        return "the ECHCONFIG block is not an ECHConfigList holding exactly one well-formed version 0xfe0d ECHConfig";
    case TLS_ECH_KEY_UNSUPPORTED:
        return "the ECHConfig is not usable here (its KEM is not X25519, none of its HPKE suites is supported, or "
               "it has an unknown mandatory extension)";
    case TLS_ECH_KEY_MISMATCH:
        return "the ECHConfig's public key is not the file's private key";
    case TLS_ECH_KEY_NO_MEMORY:
        return "out of memory";
    }
    return "unknown error";
}

/*
 * ech_keys = FILE[, FILE...]: each file is an ECH key (keyless-ech generate). Loaded here so
 * that every error names the key file; the first key's ECHConfigList becomes retry_configs.
 */
static int add_ech_key(struct kl_ini *ini, void *obj, const char *item)
{
    struct config_listener *l = obj;
    struct stat st;
    enum tls_ech_key_error why;
    char **pathp;
    int ret;

    if (l->n_ech_keys == TLS_ECH_KEYS_MAX) {
        return kl_ini_fail(ini, "at most %d key files", TLS_ECH_KEYS_MAX);
    }
    if (l->ech_keys == NULL && (l->ech_keys = calloc(TLS_ECH_KEYS_MAX, sizeof(*l->ech_keys))) == NULL) {
        return kl_ini_fail(ini, "out of memory");
    }
    pathp = &l->ech_key_paths[l->n_ech_keys];
    if ((ret = kl_ini_path(ini, pathp, item)) != 0) {
        return ret;
    }
    if (stat(*pathp, &st) != 0) {
        return kl_ini_fail(ini, "%s: %s", *pathp, strerror(errno));
    }
    /* The rule of the ticket key file (tickets.c): a secret others can read is refused; the
       group may read it (the frontend's group, when root owns the file). */
    if (st.st_mode & (S_IROTH | S_IWOTH)) {
        return kl_ini_fail(ini, "%s: accessible by others (mode %04o): chmod 600 or 640", *pathp,
                           (unsigned)(st.st_mode & 07777));
    }
    if (tls_ech_key_load(&l->ech_keys[l->n_ech_keys], &why, *pathp) != 0) {
        return kl_ini_fail(ini, "%s: %s", *pathp, config_ech_key_why(why));
    }
    l->n_ech_keys++;
    if (l->n_ech_keys == 1 && tls_ech_config_list(l->ech_retry_configs, sizeof(l->ech_retry_configs),
                                                  &l->ech_retry_configs_len, l->ech_keys, 1) != 0) {
        return kl_ini_fail(ini, "%s: the ECHConfigList does not fit", *pathp);
    }
    return 0;
}

static const char *const client_auth_names[] = {"none", "optional", "required", NULL};
/* In enum config_backend_connect's order. */
static const char *const backend_connect_names[] = {"handshake", "data", NULL};

static const struct kl_ini_key listener_keys[] = {
    {"listen", KL_INI_CUSTOM, KL_INI_REQUIRED, .set = set_listen},
    {"backend", KL_INI_CUSTOM, KL_INI_REQUIRED, .set = set_backend},
    {"proxy_protocol", KL_INI_BOOL, KL_INI_FIELD(struct config_listener, proxy_protocol)},
    {"backend_connect_timeout", KL_INI_DURATION, KL_INI_FIELD(struct config_listener, backend_connect_timeout_ms),
     .min = 10, .max = 600000, .unit_ms = 1000},
    {"backend_connect", KL_INI_ENUM, KL_INI_FIELD(struct config_listener, backend_connect),
     .names = backend_connect_names},
    {"client_auth", KL_INI_ENUM, KL_INI_FIELD(struct config_listener, client_auth), .names = client_auth_names},
    {"client_ca", KL_INI_PATH, KL_INI_LINE, KL_INI_FIELD(struct config_listener, client_ca),
     .line_offset = offsetof(struct config_listener, client_ca_line)},
    {"client_crl", KL_INI_PATH, KL_INI_LINE, KL_INI_FIELD(struct config_listener, client_crl),
     .line_offset = offsetof(struct config_listener, client_crl_line)},
    {"client_verify_depth", KL_INI_UINT, KL_INI_FIELD(struct config_listener, client_verify_depth), .min = 0, .max = 16,
     .hint = "intermediate CAs"},
    {"tickets", KL_INI_UINT, KL_INI_FIELD(struct config_listener, tickets), .min = 0, .max = 8,
     .hint = "NewSessionTickets per handshake"},
    {"ticket_lifetime", KL_INI_DURATION, KL_INI_LINE, KL_INI_FIELD(struct config_listener, ticket_lifetime_ms),
     .min = 1000, .max = (uint64_t)TLS_TICKET_LIFETIME_MAX * 1000, .unit_ms = 1000,
     .line_offset = offsetof(struct config_listener, ticket_lifetime_line)},
    {"psk_ke", KL_INI_BOOL, KL_INI_FIELD(struct config_listener, psk_ke)},
    /* The early bytes wait in the connection's backend buffer until the handshake ends
       (conn.c): bounded well under CONN_BUF_HIGH so that they never stall the handshake. */
    {"max_early_data", KL_INI_UINT, KL_INI_LINE, KL_INI_FIELD(struct config_listener, max_early_data), .min = 0,
     .max = CONFIG_MAX_EARLY_DATA, .hint = "bytes",
     .line_offset = offsetof(struct config_listener, max_early_data_line)},
    /* Encrypted Client Hello (issue 16): the key files, the first one published. */
    {"ech_keys", KL_INI_LIST, KL_INI_LINE, .set = add_ech_key,
     .line_offset = offsetof(struct config_listener, ech_keys_line)},
};

#define KEYS(t) .keys = (t), .n_keys = sizeof(t) / sizeof((t)[0])

static const struct kl_ini_section sections[] = {
    {"frontend", 0, KEYS(frontend_keys)},
    {"signer", 0, KEYS(signer_keys)},
    {"tls", 0, KEYS(tls_keys)},
    {"cert", KL_INI_NAMED | KL_INI_REQUIRED | KL_INI_LINE, KEYS(cert_keys), .open = open_cert,
     .line_offset = offsetof(struct config_cert, line), .missing = "at least one [cert NAME] section is needed"},
    {"listener", KL_INI_NAMED | KL_INI_REQUIRED | KL_INI_LINE, KEYS(listener_keys), .open = open_listener,
     .line_offset = offsetof(struct config_listener, line),
     .missing = "at least one [listener NAME] section is needed"},
};

unsigned config_ticket_past_epochs(const struct config *cfg)
{
    uint64_t longest = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].tickets > 0 && cfg->listeners[i].ticket_lifetime_ms > longest) {
            longest = cfg->listeners[i].ticket_lifetime_ms;
        }
    }
    uint64_t r = cfg->ticket_rotation_ms > 0 ? cfg->ticket_rotation_ms : 1;
    return (unsigned)((longest + r - 1) / r);
}

/* The ticket keys a listener's settings need, and 0-RTT's condition (RFC 8470 at the backend). */
static int check_tickets(struct kl_ini *ini, const struct config *cfg, const struct config_listener *l,
                         const char *sect)
{
    if (l->max_early_data > 0 && !l->proxy_protocol) {
        /* The backend must learn which bytes may be a replay: only PROXY v2 can tell it (TLV 0xE3). */
        return kl_ini_fail_at(ini, (unsigned)l->max_early_data_line, sect, "max_early_data",
                              "0-RTT needs proxy_protocol = yes (the backend learns which bytes came as early "
                              "data from the PROXY v2 header)");
    }
    if (l->max_early_data > 0 && (l->tickets == 0 || cfg->ticket_keys == CONFIG_TICKET_KEYS_OFF)) {
        return kl_ini_fail_at(ini, (unsigned)l->max_early_data_line, sect, "max_early_data",
                              "0-RTT needs session tickets (tickets > 0 and [frontend] ticket_keys not off)");
    }
    if (cfg->ticket_keys == CONFIG_TICKET_KEYS_HSM && l->tickets > 0) {
        /* Held at once: the past epochs a ticket can still be valid in, the current and the next. */
        uint64_t r = cfg->ticket_rotation_ms;
        uint64_t past = (l->ticket_lifetime_ms + r - 1) / r;
        if (past + 2 > TLS_TICKET_KEYS_MAX) {
            return kl_ini_fail_at(ini, (unsigned)l->ticket_lifetime_line, sect, "ticket_lifetime",
                                  "%u s spans more than %d ticket key epochs of %u s (raise [frontend] "
                                  "ticket_rotation to at least %u s, or shorten the lifetime)",
                                  l->ticket_lifetime_ms / 1000, TLS_TICKET_KEYS_MAX - 2, (unsigned)(r / 1000),
                                  (unsigned)((l->ticket_lifetime_ms + (TLS_TICKET_KEYS_MAX - 2) * 1000 - 1) /
                                             ((TLS_TICKET_KEYS_MAX - 2) * 1000)));
        }
    }
    return 0;
}

/* Whole-file checks: two listeners on one address; client_auth and client_ca go together. */
static int check(struct kl_ini *ini, void *user)
{
    struct config *cfg = user;
    char sect[160];
    if (cfg->has_group && !cfg->has_user) {
        return kl_ini_fail_at(ini, cfg->group_line, "frontend", "group",
                              "set without user (only a drop to both is supported)");
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        snprintf(sect, sizeof(sect), "listener %s", l->name);
        int r = check_tickets(ini, cfg, l, sect);
        if (r != 0) {
            return r;
        }
        if (l->client_auth != 0 && l->client_ca == NULL) {
            return kl_ini_fail_at(ini, (unsigned)l->line, sect, "client_ca",
                                  "needed when client_auth is %s (the CAs client certificates are checked against)",
                                  client_auth_names[l->client_auth]);
        }
        if (l->client_auth == 0 && (l->client_ca != NULL || l->client_crl != NULL)) {
            /* Without client_auth nothing would be checked: say so rather than run without mTLS. */
            int line = l->client_ca != NULL ? l->client_ca_line : l->client_crl_line;
            return kl_ini_fail_at(ini, (unsigned)line, sect, l->client_ca != NULL ? "client_ca" : "client_crl",
                                  "set, but client_auth is none (set client_auth = optional or required)");
        }
        for (size_t j = 0; j < i; j++) {
            if (cfg->listeners[j].listen.len == l->listen.len &&
                memcmp(&cfg->listeners[j].listen.ss, &l->listen.ss, l->listen.len) == 0) {
                snprintf(sect, sizeof(sect), "listener %s", l->name);
                return kl_ini_fail_at(ini, (unsigned)l->line, sect, "listen", "%s is already used by listener '%s'",
                                      l->listen.text, cfg->listeners[j].name);
            }
        }
    }
    return 0;
}

static const struct kl_ini_spec spec = {sections, sizeof(sections) / sizeof(sections[0]), check};

int config_load(struct config **cfg_p, char *err, const char *path)
{
    int ret = 0;
    /* The line with the program name in front fits CONFIG_ERR_LEN. */
    char why[CONFIG_ERR_LEN];
    struct config *cfg = calloc(1, sizeof(*cfg));
    err[0] = '\0';
    if (cfg == NULL || (cfg->path = strdup(path)) == NULL) {
        snprintf(err, CONFIG_ERR_LEN, "%s: out of memory", path);
        KL_ENSURE(0, KL_ERR_NO_MEMORY);
    }
    cfg->workers = ncpu();
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->max_connections = 10000;
    cfg->handshake_timeout_ms = 10000;
    cfg->idle_timeout_ms = 300000;
    cfg->drain_timeout_ms = 30000;
    cfg->signer_timeout_ms = 1000;
    cfg->max_pending_sign = 4096;
    cfg->signer_startup_wait_ms = 10000;
    cfg->ticket_keys = CONFIG_TICKET_KEYS_HSM;
    cfg->ticket_rotation_ms = 3600 * 1000;
    config_host_id_default(cfg->host_id);
    cfg->sandbox = 1;
    /* Preference order: the order of the table in common/tls_ids.c. */
    for (size_t i = 0; i < tls_n_suites && i < sizeof(cfg->suites) / sizeof(cfg->suites[0]); i++) {
        cfg->suites[cfg->n_suites++] = tls_suites[i].id;
    }
    for (size_t i = 0; i < tls_n_groups && i < sizeof(cfg->groups) / sizeof(cfg->groups[0]); i++) {
        if (tls_groups[i].by_default) {
            cfg->groups[cfg->n_groups++] = tls_groups[i].id;
        }
    }
    ret = kl_ini_load(&spec, cfg, path, why, sizeof(why));
    if (ret != 0) {
        snprintf(err, CONFIG_ERR_LEN, "%s", why);
        goto exit;
    }
    *cfg_p = cfg;
    cfg = NULL;
exit:
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
    free(cfg->ticket_key_file);
    free(cfg->user_name);
    for (size_t i = 0; i < cfg->n_sandbox_allow; i++) {
        free(cfg->sandbox_allow[i]);
    }
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
        free(cfg->listeners[i].client_ca);
        free(cfg->listeners[i].client_crl);
        for (size_t k = 0; k < cfg->listeners[i].n_ech_keys; k++) {
            tls_ech_key_dispose(&cfg->listeners[i].ech_keys[k]);
        }
        for (size_t k = 0; k < TLS_ECH_KEYS_MAX; k++) {
            free(cfg->listeners[i].ech_key_paths[k]);
        }
        free(cfg->listeners[i].ech_keys);
    }
    free(cfg);
}

int config_same_listeners(const struct config *a, const struct config *b)
{
    if (a->n_listeners != b->n_listeners) {
        return 0;
    }
    for (size_t i = 0; i < a->n_listeners; i++) {
        if (a->listeners[i].listen.len != b->listeners[i].listen.len ||
            memcmp(&a->listeners[i].listen.ss, &b->listeners[i].listen.ss, a->listeners[i].listen.len) != 0) {
            return 0;
        }
    }
    return 1;
}
