/*
 * Unit tests for frontend/config.c (the frontend's key table over common/kl_ini): a full
 * valid config, the defaults, and for every key a bad value whose message names the
 * file, the line, the section and the key:
 *   FILE:LINE: [section] key: why   (main prints it after "keyless-frontend: ")
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "kl_test.h"
#include "config.h"
#include "crypto.h" /* crypto_pem_write_*: key files with one thing wrong */
#include "gen.h"
#include "log.h"
#include "tls_ids.h"

static char dir[64], path[128], chain[128];
static struct config *cfg;

static int write_file(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    if (f == NULL) {
        return -1;
    }
    fputs(text, f);
    return fclose(f);
}

static int load(const char *text, char *err)
{
    config_free(cfg);
    cfg = NULL;
    if (write_file(path, text) != 0) {
        snprintf(err, CONFIG_ERR_LEN, "cannot write %s", path);
        return -1;
    }
    return config_load(&cfg, err, path);
}

/* The smallest valid config: 8 lines. */
static const char base[] = "[signer]\n"
                           "socket = signer.sock\n"
                           "[cert a]\n"
                           "chain = c.pem\n"
                           "key = ecdsa-p256\n"
                           "[listener main]\n"
                           "listen = 127.0.0.1:1\n"
                           "backend = 127.0.0.1:2\n";
#define BASE_LINES 8

/* base + extra; expect KL_ERR_CONFIG and exactly PATH + want. */
static void expect_err(const char *extra, const char *want, const char *name)
{
    char text[4096], err[CONFIG_ERR_LEN], full[CONFIG_ERR_LEN + 200];
    snprintf(text, sizeof(text), "%s%s", base, extra);
    int ret = load(text, err);
    snprintf(full, sizeof(full), "%s%s", path, want);
    if (!ok(ret == KL_ERR_CONFIG && cfg == NULL && strcmp(err, full) == 0, name)) {
        diag("ret %d, got  '%s'", ret, err);
        diag("want '%s'", full);
    }
}

/* The same with a whole text of its own. */
static void expect_err_text(const char *text, const char *want, const char *name)
{
    char err[CONFIG_ERR_LEN], full[CONFIG_ERR_LEN + 200];
    int ret = load(text, err);
    snprintf(full, sizeof(full), "%s%s", path, want);
    if (!ok(ret == KL_ERR_CONFIG && cfg == NULL && strcmp(err, full) == 0, name)) {
        diag("ret %d, got  '%s'", ret, err);
        diag("want '%s'", full);
    }
}

static void test_defaults(void)
{
    char err[CONFIG_ERR_LEN], want[200];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (!ok(load(base, err) == 0 && cfg != NULL, "the smallest config loads")) {
        diag("%s", err);
        return;
    }
    is_int(cfg->workers, ncpu > 0 ? ncpu : 1, "workers: one per CPU");
    is_int(cfg->log_level, LOG_LEVEL_INFO, "log_level: info");
    is_int(cfg->log_format, LOG_FORMAT_TEXT, "log_format: text");
    is_int(cfg->max_connections, 10000, "max_connections: 10000");
    is_int(cfg->handshake_timeout_ms, 10000, "handshake_timeout: 10s");
    is_int(cfg->idle_timeout_ms, 300000, "idle_timeout: 300s");
    is_int(cfg->drain_timeout_ms, 30000, "drain_timeout: 30s");
    is_int(cfg->metrics.len, 0, "metrics: none");
    ok(cfg->keylog_file == NULL, "keylog_file: none");
    is_int(cfg->signer_timeout_ms, 1000, "[signer] timeout: 1s");
    is_int(cfg->max_pending_sign, 4096, "[signer] max_pending: 4096");
    is_int(cfg->signer_startup_wait_ms, 10000, "[signer] startup_wait: 10s");
    is_int(cfg->n_suites, 3, "three suites");
    ok(cfg->suites[0] == TLS_AES_128_GCM_SHA256 && cfg->suites[1] == TLS_AES_256_GCM_SHA384 &&
           cfg->suites[2] == TLS_CHACHA20_POLY1305_SHA256,
       "suites in preference order");
    is_int(cfg->n_groups, 8, "eight groups (not ffdhe6144/8192)");
    ok(cfg->groups[0] == TLS_GROUP_X25519 && cfg->groups[1] == TLS_GROUP_SECP256R1 &&
           cfg->groups[2] == TLS_GROUP_SECP384R1 && cfg->groups[3] == TLS_GROUP_X448 &&
           cfg->groups[4] == TLS_GROUP_SECP521R1 && cfg->groups[5] == TLS_GROUP_FFDHE2048 &&
           cfg->groups[6] == TLS_GROUP_FFDHE3072 && cfg->groups[7] == TLS_GROUP_FFDHE4096,
       "groups in preference order");
    is_int(cfg->n_alpn, 0, "no ALPN");
    is_int(cfg->n_signer_sockets, 1, "one signer socket");
    snprintf(want, sizeof(want), "%s/signer.sock", dir);
    ok(strcmp(cfg->signer_sockets[0], want) == 0, "the socket path is resolved against the config's directory");
    is_int(cfg->signer_line, 2, "signer_line: the socket's line");
    is_int(cfg->n_certs, 1, "one certificate");
    ok(strcmp(cfg->certs[0].name, "a") == 0 && strcmp(cfg->certs[0].chain_path, chain) == 0 &&
           strcmp(cfg->certs[0].key_name, "ecdsa-p256") == 0,
       "[cert a]: name, resolved chain, key");
    ok(cfg->certs[0].line == 3 && cfg->certs[0].chain_line == 4 && cfg->certs[0].key_line == 5, "[cert a]: lines");
    is_int(cfg->n_listeners, 1, "one listener");
    ok(strcmp(cfg->listeners[0].name, "main") == 0 && cfg->listeners[0].line == 6, "[listener main]: name, line");
    is_int(cfg->listeners[0].backend_connect_timeout_ms, 5000, "backend_connect_timeout: 5s");
    is_int(cfg->listeners[0].proxy_protocol, 0, "proxy_protocol: off");
    ok(strcmp(cfg->path, path) == 0, "the path is kept for reloads");
}

static void test_full(void)
{
    char err[CONFIG_ERR_LEN], want[200];
    const char *text = "; every key\n"
                       "[frontend]\n"
                       "workers = 3\n"
                       "log_level = debug\n"
                       "max_connections = 50\n"
                       "handshake_timeout = 500ms\n"
                       "idle_timeout = 2m\n"
                       "drain_timeout = 0\n"
                       "metrics = [::1]:9100\n"
                       "keylog_file = keys.log\n"
                       "[signer]\n"
                       "socket = /run/a.sock\n"
                       "socket = b.sock\n"
                       "timeout = 1.5\n"
                       "max_pending = 7\n"
                       "startup_wait = 0.3\n"
                       "[tls]\n"
                       "suites = TLS_CHACHA20_POLY1305_SHA256, tls_aes_128_gcm_sha256\n"
                       "groups = P-256 x25519\n"
                       "alpn = h2, http/1.1\n"
                       "[cert a]\n"
                       "key = ecdsa-p256\n"
                       "chain = c.pem\n"
                       "[cert \"b\"]\n"
                       "chain = c.pem\n"
                       "key = rsa-2048\n"
                       "[listener main]\n"
                       "listen = 127.0.0.1:8443\n"
                       "backend = unix:backend.sock\n"
                       "proxy_protocol = on\n"
                       "backend_connect_timeout = 250ms\n"
                       "backend_connect = data\n"
                       "[listener v6]\n"
                       "listen = [::1]:8443\n"
                       "backend = localhost:80\n"
                       "proxy_protocol = false\n"
                       "[frontend]\n"
                       "; the section again: its keys are still set once each\n";
    if (!ok(load(text, err) == 0 && cfg != NULL, "a config with every key loads")) {
        diag("%s", err);
        return;
    }
    is_int(cfg->workers, 3, "workers = 3");
    is_int(cfg->log_level, LOG_LEVEL_DEBUG, "log_level = debug");
    is_int(cfg->max_connections, 50, "max_connections = 50");
    is_int(cfg->handshake_timeout_ms, 500, "handshake_timeout = 500ms");
    is_int(cfg->idle_timeout_ms, 120000, "idle_timeout = 2m");
    is_int(cfg->drain_timeout_ms, 0, "drain_timeout = 0");
    ok(cfg->metrics.len == sizeof(struct sockaddr_in6) && cfg->metrics.ss.ss_family == AF_INET6 &&
           ntohs(((struct sockaddr_in6 *)&cfg->metrics.ss)->sin6_port) == 9100,
       "metrics = [::1]:9100");
    snprintf(want, sizeof(want), "%s/keys.log", dir);
    ok(cfg->keylog_file != NULL && strcmp(cfg->keylog_file, want) == 0, "keylog_file resolved");
    is_int(cfg->n_signer_sockets, 2, "two signer sockets");
    snprintf(want, sizeof(want), "%s/b.sock", dir);
    ok(strcmp(cfg->signer_sockets[0], "/run/a.sock") == 0 && strcmp(cfg->signer_sockets[1], want) == 0,
       "absolute socket kept, relative resolved, in order");
    is_int(cfg->signer_line, 12, "signer_line: the first socket");
    is_int(cfg->signer_timeout_ms, 1500, "timeout = 1.5 (bare: seconds)");
    is_int(cfg->max_pending_sign, 7, "max_pending = 7");
    is_int(cfg->signer_startup_wait_ms, 300, "startup_wait = 0.3");
    ok(cfg->n_suites == 2 && cfg->suites[0] == TLS_CHACHA20_POLY1305_SHA256 && cfg->suites[1] == TLS_AES_128_GCM_SHA256,
       "suites: the list replaces the defaults, names in any case");
    ok(cfg->n_groups == 2 && cfg->groups[0] == TLS_GROUP_SECP256R1 && cfg->groups[1] == TLS_GROUP_X25519,
       "groups: aliases, blank-separated");
    ok(cfg->n_alpn == 2 && strcmp(cfg->alpn[0], "h2") == 0 && strcmp(cfg->alpn[1], "http/1.1") == 0, "alpn");
    ok(cfg->n_certs == 2 && strcmp(cfg->certs[1].name, "b") == 0 && strcmp(cfg->certs[1].key_name, "rsa-2048") == 0,
       "[cert \"b\"]");
    ok(cfg->certs[0].key_line == 22 && cfg->certs[0].chain_line == 23, "key and chain lines in any order");
    is_int(cfg->n_listeners, 2, "two listeners");
    struct config_listener *l = &cfg->listeners[0];
    snprintf(want, sizeof(want), "%s/backend.sock", dir);
    ok(l->backend.ss.ss_family == AF_UNIX && strcmp(((struct sockaddr_un *)&l->backend.ss)->sun_path, want) == 0,
       "a relative unix: backend is resolved");
    is_int(l->proxy_protocol, 1, "proxy_protocol = on");
    is_int(l->backend_connect_timeout_ms, 250, "backend_connect_timeout = 250ms");
    is_int(l->backend_connect, CONFIG_BACKEND_CONNECT_DATA, "backend_connect = data");
    l = &cfg->listeners[1];
    ok(l->listen.ss.ss_family == AF_INET6 && l->backend.ss.ss_family == AF_INET &&
           ((struct sockaddr_in *)&l->backend.ss)->sin_addr.s_addr == htonl(INADDR_LOOPBACK),
       "[::1] listen, localhost backend is 127.0.0.1");
    is_int(l->proxy_protocol, 0, "proxy_protocol = false");
    is_int(l->backend_connect_timeout_ms, 5000, "backend_connect_timeout default in the second listener");
    is_int(l->backend_connect, CONFIG_BACKEND_CONNECT_HANDSHAKE, "backend_connect default: handshake");

    ok(load("[signer]\nsocket = s\n[tls]\nalpn =\n[cert a]\nchain = c.pem\nkey = k\n[listener m]\nlisten = "
            "127.0.0.1:1\nbackend = 127.0.0.1:2\n[frontend]\nworkers = auto\nmetrics =\nkeylog_file =\n",
            err) == 0 &&
           cfg->n_alpn == 0 && cfg->metrics.len == 0 && cfg->keylog_file == NULL,
       "empty alpn, metrics and keylog_file; workers = auto");
}

static void test_errors(void)
{
    char long_sock[200], text[1200], want[400];
    /* [frontend] */
    expect_err("[frontend]\nworkers = 0\n", ":10: [frontend] workers: '0' is not 'auto' or 1..256", "workers = 0");
    expect_err("[frontend]\nworkers = lots\n", ":10: [frontend] workers: 'lots' is not 'auto' or 1..256",
               "workers = lots");
    expect_err("[frontend]\nlog_level = loud\n", ":10: [frontend] log_level: 'loud' is not error, warn, info or debug",
               "log_level");
    expect_err("[frontend]\nlog_format = xml\n", ":10: [frontend] log_format: 'xml' is not text or json", "log_format");
    {
        char json_text[4096], err[CONFIG_ERR_LEN];
        snprintf(json_text, sizeof(json_text), "%s[frontend]\nlog_format = json\n", base);
        ok(load(json_text, err) == 0 && cfg != NULL && cfg->log_format == LOG_FORMAT_JSON, "log_format = json");
    }
    expect_err("[frontend]\nmax_connections = 1000001\n",
               ":10: [frontend] max_connections: '1000001' is not 1..1000000", "max_connections");
    expect_err("[frontend]\nhandshake_timeout = 5ms\n",
               ":10: [frontend] handshake_timeout: '5ms' is not a duration from 10ms to 3600s (500ms, 5s, 2m; a bare "
               "number is seconds)",
               "handshake_timeout below 10ms");
    expect_err("[frontend]\nidle_timeout = 2d\n",
               ":10: [frontend] idle_timeout: '2d' is not a duration from 10ms to 86400s (500ms, 5s, 2m; a bare "
               "number is seconds)",
               "idle_timeout with an unknown unit");
    expect_err("[frontend]\ndrain_timeout = 3601\n",
               ":10: [frontend] drain_timeout: '3601' is not a duration from 0 to 3600s (500ms, 5s, 2m; a bare "
               "number is seconds)",
               "drain_timeout above 3600s");
    expect_err("[frontend]\nmetrics = 10.1.2.3:9100\n",
               ":10: [frontend] metrics: '10.1.2.3:9100' is not a loopback address", "metrics not loopback");
    expect_err("[frontend]\nmetrics = nowhere\n", ":10: [frontend] metrics: 'nowhere' is not host:port",
               "metrics not an address");
    expect_err("[frontend]\nworkers = 1\nworkers = 2\n", ":11: [frontend] workers: set twice (first at line 10)",
               "workers set twice");
    expect_err("[frontend]\ncolour = blue\n", ":10: [frontend] colour: unknown key", "unknown key");
    /* [signer] */
    memset(long_sock, 'x', 100);
    long_sock[100] = '\0';
    snprintf(text, sizeof(text), "[signer]\nsocket = %s\n", long_sock);
    expect_err(text, ":10: [signer] socket: a socket path of 1 to 99 bytes is needed", "socket path too long");
    expect_err("[signer]\nsocket = 2\nsocket = 3\nsocket = 4\nsocket = 5\nsocket = 6\nsocket = 7\nsocket = 8\n"
               "socket = 9\n",
               ":17: [signer] socket: at most 8 signer sockets", "nine signer sockets");
    expect_err("[signer]\ntimeout = 0\n",
               ":10: [signer] timeout: '0' is not a duration from 1ms to 60s (500ms, 5s, 2m; a bare number is "
               "seconds)",
               "signer timeout 0");
    expect_err("[signer]\nmax_pending = 1048577\n", ":10: [signer] max_pending: '1048577' is not 1..1048576",
               "max_pending");
    expect_err("[signer]\nstartup_wait = 11m\n",
               ":10: [signer] startup_wait: '11m' is not a duration from 0 to 600s (500ms, 5s, 2m; a bare number is "
               "seconds)",
               "startup_wait");
    expect_err("[signer]\nsocket =\n", ":10: [signer] socket: empty value", "empty socket");
    /* [tls] */
    expect_err("[tls]\nsuites = TLS_AES_128_CCM_SHA256\n",
               ":10: [tls] suites: unknown cipher suite 'TLS_AES_128_CCM_SHA256' (TLS_AES_128_GCM_SHA256, "
               "TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256)",
               "unknown suite");
    expect_err("[tls]\nsuites = TLS_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256\n",
               ":10: [tls] suites: TLS_AES_128_GCM_SHA256 listed twice", "a suite listed twice");
    expect_err("[tls]\nsuites = ,\n", ":10: [tls] suites: empty list", "no suite");
    expect_err("[tls]\ngroups = brainpoolP256r1\n",
               ":10: [tls] groups: unknown group 'brainpoolP256r1' (x25519, secp256r1/P-256/prime256v1, "
               "secp384r1/P-384, x448, secp521r1/P-521, ffdhe2048, ffdhe3072, ffdhe4096, ffdhe6144, ffdhe8192)",
               "unknown group");
    expect_err("[tls]\ngroups = x448, ffdhe8192, X448\n", ":10: [tls] groups: X448 listed twice",
               "a new group listed twice");
    expect_err("[tls]\ngroups = P-256, prime256v1\n", ":10: [tls] groups: prime256v1 listed twice",
               "a group under two names");
    expect_err("[tls]\nalpn = a b c d e f g h i\n", ":10: [tls] alpn: at most 8 protocols", "nine protocols");
    expect_err("[tls]\nalpn = h2\nalpn = http/1.1\n", ":11: [tls] alpn: set twice (first at line 10)",
               "alpn set twice");
    /* [cert NAME] */
    snprintf(want, sizeof(want), ":4: [cert a] chain: cannot read %s/missing.pem: No such file or directory", dir);
    expect_err_text("[signer]\nsocket = s\n[cert a]\nchain = missing.pem\nkey = k\n", want, "chain not readable");
    expect_err_text("[signer]\nsocket = s\n[cert a]\nchain = c.pem\nkey =\n", ":5: [cert a] key: empty value",
                    "empty key name");
    expect_err("[cert b]\nchain = c.pem\n", ":9: [cert b] key: missing", "cert without key");
    expect_err("[cert b]\nkey = k\n", ":9: [cert b] chain: missing", "cert without chain");
    expect_err("[cert a]\nkey = k\n", ":9: [cert a]: defined twice (first at line 3)", "cert defined twice");
    expect_err("[cert a/b]\nfile = x\n", ":10: [cert a/b] file: unknown key", "unknown key in [cert]");
    {
        size_t off = 0;
        for (int i = 0; i < 16; i++) {
            off += (size_t)snprintf(text + off, sizeof(text) - off, "[cert c%d]\nchain = c.pem\nkey = k\n", i);
        }
        expect_err(text, ":54: [cert c15]: at most 16 certificates", "seventeen certificates");
    }
    /* [listener NAME] */
    expect_err_text("[signer]\nsocket = s\n[cert a]\nchain = c.pem\nkey = k\n[listener main]\nlisten = nowhere\n",
                    ":7: [listener main] listen: 'nowhere' is not host:port", "listen not an address");
    expect_err_text("[signer]\nsocket = s\n[cert a]\nchain = c.pem\nkey = k\n[listener main]\nlisten = unix:/x\n",
                    ":7: [listener main] listen: 'unix:/x' is not host:port", "listen on a unix socket");
    expect_err_text("[signer]\nsocket = s\n[cert a]\nchain = c.pem\nkey = k\n[listener main]\nlisten = 127.0.0.1:0\n",
                    ":7: [listener main] listen: '127.0.0.1:0' is not host:port", "port 0");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = unix:\n",
               ":11: [listener b] backend: 'unix:' is not host:port or unix:/path", "backend unix: without a path");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nproxy_protocol = maybe\n",
               ":12: [listener b] proxy_protocol: 'maybe' is not yes or no (true/false, on/off and 1/0 work too)",
               "proxy_protocol");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nbackend_connect_timeout = 1h\n",
               ":12: [listener b] backend_connect_timeout: '1h' is not a duration from 10ms to 600s (500ms, 5s, 2m; "
               "a bare number is seconds)",
               "backend_connect_timeout");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\n", ":9: [listener b] backend: missing", "listener without backend");
    expect_err("[listener b]\nbackend = 127.0.0.1:3\n", ":9: [listener b] listen: missing", "listener without listen");
    expect_err("[listener b]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:3\n",
               ":9: [listener b] listen: 127.0.0.1:1 is already used by listener 'main'",
               "two listeners on one address");
    /* The file as a whole. */
    expect_err_text("[cert a]\nchain = c.pem\nkey = k\n[listener m]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n",
                    ": [signer] socket: missing (at least one signer socket is needed)", "no signer socket");
    expect_err_text("[signer]\nsocket = s\n[listener m]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n",
                    ": [cert NAME]: missing (at least one [cert NAME] section is needed)", "no certificate");
    expect_err_text("[signer]\nsocket = s\n[cert a]\nchain = c.pem\nkey = k\n",
                    ": [listener NAME]: missing (at least one [listener NAME] section is needed)", "no listener");
    expect_err("[signers]\nsocket = s\n",
               ":9: [signers]: unknown section (expected [frontend], [signer], [tls], [cert NAME] or [listener NAME])",
               "unknown section");
    expect_err("this is not ini\n", ":9: syntax error (expected [section] or key = value)", "syntax error");
    {
        char err[CONFIG_ERR_LEN], nopath[200];
        snprintf(nopath, sizeof(nopath), "%s/none.conf", dir);
        config_free(cfg);
        cfg = NULL;
        int ret = config_load(&cfg, err, nopath);
        snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", nopath);
        ok(ret == KL_ERR_CONFIG && cfg == NULL && strcmp(err, want) == 0, "a missing file");
    }
}

static void test_parse_addr(void)
{
    struct config_addr a;
    ok(config_parse_addr(&a, "127.0.0.1:443", 0) == 0 && a.ss.ss_family == AF_INET &&
           strcmp(a.text, "127.0.0.1:443") == 0,
       "v4");
    ok(config_parse_addr(&a, "[2001:db8::1]:443", 0) == 0 && a.ss.ss_family == AF_INET6, "v6 in brackets");
    ok(config_parse_addr(&a, "unix:/run/b.sock", 1) == 0 && a.ss.ss_family == AF_UNIX, "unix when allowed");
    is_int(config_parse_addr(&a, "unix:/run/b.sock", 0), KL_ERR_CONFIG, "unix when not allowed");
    is_int(config_parse_addr(&a, "127.0.0.1:65536", 0), KL_ERR_CONFIG, "port above 65535");
    is_int(config_parse_addr(&a, "127.0.0.1", 0), KL_ERR_CONFIG, "no port");
    is_int(config_parse_addr(&a, "[::1:443", 0), KL_ERR_CONFIG, "unclosed bracket");
    is_int(config_parse_addr(&a, "example.com:443", 0), KL_ERR_CONFIG, "names other than localhost");
}

/* [listener NAME] client_auth, client_ca, client_crl, client_verify_depth (mTLS). */
static void test_client_auth(void)
{
    char text[4096], err[CONFIG_ERR_LEN], want[600];
    snprintf(text, sizeof(text),
             "%s[listener m]\nlisten = 127.0.0.1:5\nbackend = 127.0.0.1:6\nclient_auth = required\n"
             "client_ca = ca.pem\nclient_crl = /etc/crl.pem\nclient_verify_depth = 2\n"
             "[listener o]\nlisten = 127.0.0.1:7\nbackend = 127.0.0.1:8\nclient_auth = optional\n"
             "client_ca = /x/ca.pem\n",
             base);
    if (!ok(load(text, err) == 0 && cfg != NULL && cfg->n_listeners == 3, "client_auth keys load")) {
        diag("%s", err);
        return;
    }
    const struct config_listener *d = &cfg->listeners[0], *m = &cfg->listeners[1], *o = &cfg->listeners[2];
    ok(d->client_auth == 0 && d->client_ca == NULL && d->client_crl == NULL && d->client_verify_depth == 4,
       "defaults: client_auth none, no CA, no CRL, depth 4");
    snprintf(want, sizeof(want), "%s/ca.pem", dir);
    ok(m->client_auth == 2 && strcmp(m->client_ca, want) == 0 && m->client_ca_line == BASE_LINES + 5,
       "client_auth required; client_ca resolved against the config's directory, with its line");
    ok(strcmp(m->client_crl, "/etc/crl.pem") == 0 && m->client_crl_line == BASE_LINES + 6 &&
           m->client_verify_depth == 2,
       "client_crl (absolute) and client_verify_depth");
    ok(o->client_auth == 1 && strcmp(o->client_ca, "/x/ca.pem") == 0 && o->client_crl == NULL,
       "client_auth optional in another listener");

    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nbackend_connect = later\n",
               ":12: [listener b] backend_connect: 'later' is not handshake or data", "backend_connect: bad value");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nbackend_connect = data\nbackend_connect = "
               "handshake\n",
               ":13: [listener b] backend_connect: set twice (first at line 12)", "backend_connect: set twice");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nclient_auth = maybe\n",
               ":12: [listener b] client_auth: 'maybe' is not none, optional or required", "client_auth: bad value");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nclient_auth = required\n",
               ":9: [listener b] client_ca: needed when client_auth is required (the CAs client certificates are "
               "checked against)",
               "client_auth required without client_ca");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nclient_auth = optional\n",
               ":9: [listener b] client_ca: needed when client_auth is optional (the CAs client certificates are "
               "checked against)",
               "client_auth optional without client_ca");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nclient_ca = ca.pem\n",
               ":12: [listener b] client_ca: set, but client_auth is none (set client_auth = optional or required)",
               "client_ca without client_auth");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nclient_auth = none\nclient_crl = c\n",
               ":13: [listener b] client_crl: set, but client_auth is none (set client_auth = optional or required)",
               "client_crl without client_auth");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nclient_verify_depth = 17\n",
               ":12: [listener b] client_verify_depth: '17' is not 0..16 (intermediate CAs)",
               "client_verify_depth over 16");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nclient_verify_depth = -1\n",
               ":12: [listener b] client_verify_depth: '-1' is not 0..16 (intermediate CAs)",
               "client_verify_depth negative");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nclient_auth = required\n"
               "client_auth = none\n",
               ":13: [listener b] client_auth: set twice (first at line 12)", "client_auth set twice");
}

/* Session tickets and 0-RTT: defaults, every key, and each refusal in one line. */
static void test_tickets(void)
{
    char err[CONFIG_ERR_LEN], want[300], keyfile[160];
    uint8_t a[CONFIG_HOST_ID_LEN], b[CONFIG_HOST_ID_LEN], def[CONFIG_HOST_ID_LEN];
    if (!ok(load(base, err) == 0 && cfg != NULL, "tickets: base loads")) {
        diag("%s", err);
        return;
    }
    is_int(cfg->ticket_keys, CONFIG_TICKET_KEYS_HSM, "ticket_keys: hsm by default");
    ok(cfg->ticket_key_file == NULL, "no key file by default");
    is_int(cfg->ticket_rotation_ms, 3600000, "ticket_rotation: 1h");
    is_int(cfg->listeners[0].tickets, 2, "tickets: 2");
    is_int(cfg->listeners[0].ticket_lifetime_ms, 7200000, "ticket_lifetime: 2h");
    is_int(cfg->listeners[0].psk_ke, 0, "psk_ke: no");
    is_int(cfg->listeners[0].max_early_data, 0, "max_early_data: 0 (no 0-RTT)");
    is_int(config_ticket_past_epochs(cfg), 2, "2h tickets over 1h epochs: two past epochs held");
    config_host_id_default(def);
    ok(memcmp(cfg->host_id, def, sizeof(def)) == 0, "host_id: the machine's by default");
    config_host_id_fold(a, "host-a");
    config_host_id_fold(b, "host-b");
    ok(memcmp(a, b, sizeof(a)) != 0, "two names fold to two host ids");
    config_host_id_fold(b, "host-a");
    ok(memcmp(a, b, sizeof(a)) == 0, "the fold is stable");

    snprintf(keyfile, sizeof(keyfile), "%s/ticket.key", dir);
    if (!ok(write_file(keyfile, "0123456789abcdef0123456789abcdef0123456789abcdef") == 0, "key file")) {
        return;
    }
    const char *good = "[frontend]\n"
                       "ticket_keys = file:ticket.key\n"
                       "ticket_rotation = 30m\n"
                       "host_id = host-a\n"
                       "[signer]\n"
                       "socket = signer.sock\n"
                       "[cert a]\n"
                       "chain = c.pem\n"
                       "key = ecdsa-p256\n"
                       "[listener main]\n"
                       "listen = 127.0.0.1:1\n"
                       "backend = 127.0.0.1:2\n"
                       "proxy_protocol = yes\n"
                       "tickets = 4\n"
                       "ticket_lifetime = 168h\n"
                       "psk_ke = yes\n"
                       "max_early_data = 16384\n";
    if (ok(load(good, err) == 0 && cfg != NULL, "every ticket key set")) {
        is_int(cfg->ticket_keys, CONFIG_TICKET_KEYS_FILE, "ticket_keys = file:");
        ok(cfg->ticket_key_file != NULL && strcmp(cfg->ticket_key_file, keyfile) == 0,
           "the key file is resolved against the config's directory");
        is_int(cfg->ticket_rotation_ms, 1800000, "ticket_rotation = 30m");
        ok(memcmp(cfg->host_id, a, sizeof(a)) == 0, "host_id = host-a");
        is_int(cfg->listeners[0].tickets, 4, "tickets = 4");
        is_int(cfg->listeners[0].ticket_lifetime_ms, 604800000,
               "ticket_lifetime = 168h (a file's keys have no epochs)");
        is_int(cfg->listeners[0].psk_ke, 1, "psk_ke = yes");
        is_int(cfg->listeners[0].max_early_data, 16384, "max_early_data = 16384");
    } else {
        diag("%s", err);
    }
    ok(load("[frontend]\nticket_keys = off\n[signer]\nsocket = s\n[cert a]\nchain = c.pem\nkey = k\n"
            "[listener m]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\n",
            err) == 0 &&
           cfg->ticket_keys == CONFIG_TICKET_KEYS_OFF,
       "ticket_keys = off");

    expect_err("[frontend]\nticket_keys = yes\n", ":10: [frontend] ticket_keys: 'yes' is not hsm, file:PATH or off",
               "ticket_keys: an unknown source");
    expect_err("[frontend]\nticket_keys = file:\n", ":10: [frontend] ticket_keys: 'file:' is not hsm, file:PATH or off",
               "ticket_keys: file: without a path");
    snprintf(want, sizeof(want), ":10: [frontend] ticket_keys: cannot read %s/missing.key: No such file or directory",
             dir);
    expect_err("[frontend]\nticket_keys = file:missing.key\n", want, "ticket_keys: a key file that is not there");
    expect_err("[frontend]\nticket_rotation = 59s\n",
               ":10: [frontend] ticket_rotation: '59s' is not a duration from 60s to 604800s (500ms, 5s, 2m; a bare "
               "number is seconds)",
               "ticket_rotation under a minute");
    expect_err("[frontend]\nticket_rotation = 8d\n",
               ":10: [frontend] ticket_rotation: '8d' is not a duration from 60s to 604800s (500ms, 5s, 2m; a bare "
               "number is seconds)",
               "ticket_rotation: an unknown unit");
    char longname[300];
    memset(longname, 'h', 129);
    longname[129] = '\0';
    char text[600];
    snprintf(text, sizeof(text), "[frontend]\nhost_id = %s\n", longname);
    expect_err(text,
               ":10: [frontend] host_id: at most 128 bytes (any text naming this host; it is folded into 16 bytes)",
               "host_id too long");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\ntickets = 9\n",
               ":12: [listener b] tickets: '9' is not 0..8 (NewSessionTickets per handshake)", "tickets = 9");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nticket_lifetime = 8d\n",
               ":12: [listener b] ticket_lifetime: '8d' is not a duration from 1s to 604800s (500ms, 5s, 2m; a bare "
               "number is seconds)",
               "ticket_lifetime: an unknown unit");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nticket_lifetime = 604801\n",
               ":12: [listener b] ticket_lifetime: '604801' is not a duration from 1s to 604800s (500ms, 5s, 2m; a "
               "bare number is seconds)",
               "ticket_lifetime over 7 days");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nticket_lifetime = 7h\n",
               ":12: [listener b] ticket_lifetime: 25200 s spans more than 6 ticket key epochs of 3600 s (raise "
               "[frontend] ticket_rotation to at least 4200 s, or shorten the lifetime)",
               "ticket_lifetime longer than the keys held (hsm)");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\npsk_ke = maybe\n",
               ":12: [listener b] psk_ke: 'maybe' is not yes or no (true/false, on/off and 1/0 work too)", "psk_ke");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nproxy_protocol = yes\n"
               "max_early_data = 49153\n",
               ":13: [listener b] max_early_data: '49153' is not 0..49152 (bytes)", "max_early_data over 48 KiB");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nmax_early_data = 1024\n",
               ":12: [listener b] max_early_data: 0-RTT needs proxy_protocol = yes (the backend learns which bytes "
               "came as early data from the PROXY v2 header)",
               "max_early_data without PROXY v2");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nproxy_protocol = yes\ntickets = 0\n"
               "max_early_data = 1024\n",
               ":14: [listener b] max_early_data: 0-RTT needs session tickets (tickets > 0 and [frontend] ticket_keys "
               "not off)",
               "max_early_data without tickets");
    expect_err_text("[frontend]\nticket_keys = off\n[signer]\nsocket = s\n[cert a]\nchain = c.pem\nkey = k\n"
                    "[listener m]\nlisten = 127.0.0.1:1\nbackend = 127.0.0.1:2\nproxy_protocol = yes\n"
                    "max_early_data = 1\n",
                    ":12: [listener m] max_early_data: 0-RTT needs session tickets (tickets > 0 and [frontend] "
                    "ticket_keys not off)",
                    "max_early_data with ticket_keys = off");
    unlink(keyfile);
}

/* Issue 13: [frontend] user/group, sandbox, sandbox_allow. */
static void test_user_sandbox(void)
{
    char text[4096], err[CONFIG_ERR_LEN];
    snprintf(text, sizeof(text), "%s[frontend]\nuser = nobody\nsandbox_allow = ioprio_get, getcpu\n", base);
    if (ok(load(text, err) == 0, "user = nobody, sandbox_allow with two names")) {
        ok(cfg->has_user && cfg->run_uid == 65534 && strcmp(cfg->user_name, "nobody") == 0,
           "... the user's uid and name");
        ok(cfg->sandbox == 1 && cfg->n_sandbox_allow == 2 && strcmp(cfg->sandbox_allow[1], "getcpu") == 0,
           "... the sandbox on by default, the two names kept");
    } else {
        diag("%s", err);
    }
    snprintf(text, sizeof(text), "%s[frontend]\nuser = 65534\ngroup = nogroup\nsandbox = no\n", base);
    ok(load(text, err) == 0 && cfg->run_uid == 65534 && cfg->has_group && cfg->sandbox == 0,
       "user by number, group by name, sandbox = no");
    snprintf(text, sizeof(text), "%s", base);
    ok(load(text, err) == 0 && !cfg->has_user && cfg->sandbox == 1, "default: no user, sandbox on");
    expect_err("[frontend]\nuser = no_such_user_kl\n", ":10: [frontend] user: no such user 'no_such_user_kl'",
               "user = an unknown user");
    expect_err("[frontend]\nuser = root\n",
               ":10: [frontend] user: 'root' is root: name the unprivileged user to run as", "user = root");
    expect_err("[frontend]\nuser = nobody\ngroup = no_such_group_kl\n",
               ":11: [frontend] group: no such group 'no_such_group_kl'", "group = an unknown group");
    expect_err("[frontend]\ngroup = nogroup\n",
               ":10: [frontend] group: set without user (only a drop to both is supported)", "group without user");
    expect_err("[frontend]\nsandbox_allow = frobnicate\n",
               ":10: [frontend] sandbox_allow: 'frobnicate' is not a system call name on this machine",
               "sandbox_allow: an unknown name");
    expect_err("[frontend]\nsandbox = maybe\n",
               ":10: [frontend] sandbox: 'maybe' is not yes or no (true/false, on/off and 1/0 work too)",
               "sandbox = maybe");
}

/* ---- Issue 16: [listener] ech_keys ---- */

/* A key file at dir/name with mode 0600 from a generated key (PEM as keyless-ech writes it). */
static int write_ech_key(const char *name, const struct tls_ech_key *k)
{
    char p[256], pem[4096];
    size_t len;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    if (tls_ech_key_write_pem(k, pem, sizeof(pem), &len) != 0 || write_file(p, pem) != 0) {
        return -1;
    }
    return chmod(p, 0600);
}

/* A key file from raw parts: the PKCS#8 of sk (or none) and an ECHConfigList (or none). */
static int write_ech_parts(const char *name, const uint8_t *sk, const uint8_t *list, size_t list_len)
{
    char p[256], pem[4096] = "";
    size_t len = 0;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    if ((sk != NULL && crypto_pem_write_x25519(pem, sizeof(pem), &len, sk) != 0) ||
        (list != NULL && crypto_pem_write_block(pem, sizeof(pem), &len, "ECHCONFIG", list, list_len) != 0) ||
        write_file(p, pem) != 0) {
        return -1;
    }
    return chmod(p, 0600);
}

static const char ech_listener[] = "[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\n";

/* base + listener b with ech_keys = value (line 12); expect the key error for file. */
static void expect_ech_err(const char *value, const char *file, const char *why, const char *name)
{
    char extra[1024], want[CONFIG_ERR_LEN];
    snprintf(extra, sizeof(extra), "%sech_keys = %s\n", ech_listener, value);
    snprintf(want, sizeof(want), ":12: [listener b] ech_keys: %s/%s: %s", dir, file, why);
    expect_err(extra, want, name);
}

/* A generation (certificates loaded) from base + extra, with chain = cert as [cert a]. */
static int load_gen(struct fe_gen **gen_p, const char *cert, const char *extra, char *err)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "[signer]\nsocket = signer.sock\n[cert a]\nchain = %s\nkey = ecdsa-p256\n[listener main]\n"
             "listen = 127.0.0.1:1\nbackend = 127.0.0.1:2\n%s",
             cert, extra);
    *gen_p = NULL;
    int ret = load(text, err);
    if (ret != 0) {
        return ret;
    }
    struct config *c = cfg;
    cfg = NULL; /* gen_new owns it now */
    return gen_new(gen_p, err, CONFIG_ERR_LEN, c);
}

static void test_ech(void)
{
    struct tls_ech_key k1, k2, kw, many[17];
    char err[CONFIG_ERR_LEN], text[4096], want[CONFIG_ERR_LEN], p[256];
    uint8_t list[TLS_ECH_MAX_LIST_LEN];
    size_t list_len;

    if (!ok(tls_ech_key_generate(&k1, 1, "public.example", 0) == 0 &&
                tls_ech_key_generate(&k2, 2, "rotate.example", 0) == 0 &&
                tls_ech_key_generate(&kw, 3, "a.wild.example", 0) == 0 && write_ech_key("k1.pem", &k1) == 0 &&
                write_ech_key("k2.pem", &k2) == 0 && write_ech_key("kw.pem", &kw) == 0,
            "ech: three key files")) {
        return;
    }

    /* The good case: two files, relative to the config's directory, the first published. */
    snprintf(text, sizeof(text), "%s%sech_keys = k1.pem, k2.pem\n", base, ech_listener);
    if (ok(load(text, err) == 0, "ech_keys = k1.pem, k2.pem")) {
        const struct config_listener *l = &cfg->listeners[1];
        is_int(cfg->listeners[0].n_ech_keys, 0, "... the other listener has none");
        is_int(l->n_ech_keys, 2, "... two keys");
        is_int(l->ech_keys_line, 12, "... the line of ech_keys");
        snprintf(p, sizeof(p), "%s/k2.pem", dir);
        ok(strcmp(l->ech_key_paths[1], p) == 0, "... paths resolved against the config's directory");
        ok(l->ech_keys[0].config_id == 1 && l->ech_keys[1].config_id == 2 &&
               memcmp(l->ech_keys[0].private_key, k1.private_key, 32) == 0 &&
               memcmp(l->ech_keys[1].private_key, k2.private_key, 32) == 0,
           "... the keys in order");
        ok(tls_ech_config_list(list, sizeof(list), &list_len, &k1, 1) == 0 && l->ech_retry_configs_len == list_len &&
               memcmp(l->ech_retry_configs, list, list_len) == 0,
           "... retry_configs is the first key's ECHConfigList");
    } else {
        diag("%s", err);
    }
    snprintf(p, sizeof(p), "%s/k2.pem", dir);
    chmod(p, 0640);
    snprintf(text, sizeof(text), "%s%sech_keys = k2.pem k1.pem\n", base, ech_listener);
    ok(load(text, err) == 0 && cfg->listeners[1].ech_keys[0].config_id == 2,
       "mode 0640 is accepted; blanks separate too");

    /* Each bad case names the config file, line, listener, key file and the reason. */
    chmod(p, 0644);
    expect_ech_err("k2.pem", "k2.pem", "accessible by others (mode 0644): chmod 600 or 640", "a world-readable key");
    chmod(p, 0604);
    expect_ech_err("k1.pem, k2.pem", "k2.pem", "accessible by others (mode 0604): chmod 600 or 640",
                   "the second file world-readable");
    chmod(p, 0600);
    expect_ech_err("missing.pem", "missing.pem", "No such file or directory", "a missing key file");
    snprintf(p, sizeof(p), "%s/junk.pem", dir);
    write_file(p, "not a key\n");
    chmod(p, 0600);
    expect_ech_err("junk.pem", "junk.pem", config_ech_key_why(TLS_ECH_KEY_NO_KEY), "a file without a key");
    ok(write_ech_parts("nocfg.pem", k1.private_key, NULL, 0) == 0, "a key without a config");
    expect_ech_err("nocfg.pem", "nocfg.pem", config_ech_key_why(TLS_ECH_KEY_NO_CONFIG), "no ECHCONFIG");
    ok(tls_ech_config_list(list, sizeof(list), &list_len, &k1, 1) == 0, "k1's list");
    list[list_len] = 0; /* one byte after the list */
    ok(write_ech_parts("badcfg.pem", k1.private_key, list, list_len + 1) == 0, "a config with a trailing byte");
    expect_ech_err("badcfg.pem", "badcfg.pem", config_ech_key_why(TLS_ECH_KEY_BAD_CONFIG), "a malformed config");
    list[2 + 5] = 0x00; /* kem_id 0x0020 -> 0x0010 (P-256): byte 5 of the config is the KEM's low byte */
    list[2 + 6] = 0x10;
    ok(write_ech_parts("unsup.pem", k1.private_key, list, list_len) == 0, "a config with the P-256 KEM");
    expect_ech_err("unsup.pem", "unsup.pem", config_ech_key_why(TLS_ECH_KEY_UNSUPPORTED), "an unsupported KEM");
    ok(tls_ech_config_list(list, sizeof(list), &list_len, &k2, 1) == 0 &&
           write_ech_parts("mismatch.pem", k1.private_key, list, list_len) == 0,
       "k1's key with k2's config");
    expect_ech_err("k1.pem, mismatch.pem", "mismatch.pem", config_ech_key_why(TLS_ECH_KEY_MISMATCH),
                   "a config that is not the key's");
    int written = 0;
    for (int i = 0; i < 17; i++) {
        char name[32];
        snprintf(name, sizeof(name), "m%d.pem", i);
        written +=
            tls_ech_key_generate(&many[i], (uint8_t)i, "public.example", 0) == 0 && write_ech_key(name, &many[i]) == 0;
        tls_ech_key_dispose(&many[i]);
    }
    is_int(written, 17, "seventeen key files");
    snprintf(text, sizeof(text),
             "%s%sech_keys = m0.pem m1.pem m2.pem m3.pem m4.pem m5.pem m6.pem m7.pem m8.pem m9.pem "
             "m10.pem m11.pem m12.pem m13.pem m14.pem m15.pem m16.pem\n",
             base, ech_listener);
    snprintf(want, sizeof(want), "%s:12: [listener b] ech_keys: at most 16 key files", path);
    ok(load(text, err) == KL_ERR_CONFIG && strcmp(err, want) == 0, "seventeen key files refused");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nech_keys =\n",
               ":12: [listener b] ech_keys: empty value", "ech_keys without a file");
    expect_err("[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nech_keys = k1.pem\nech_keys = k2.pem\n",
               ":13: [listener b] ech_keys: set twice (first at line 12)", "ech_keys twice");

    /* With the certificates (gen.c): each public name must be a name of a [cert]. */
    char cert[256], cmd[1024];
    snprintf(cert, sizeof(cert), "%s/ech-cert.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s/ech-cert.key -out %s "
             "-subj /CN=public.example -addext 'subjectAltName=DNS:Public.Example,DNS:*.wild.example' -days 2 "
             ">/dev/null 2>&1",
             dir, cert);
    if (system(cmd) != 0) {
        skip("ech: public name checks", "openssl cannot make a certificate here");
        goto exit;
    }
    struct fe_gen *g = NULL;
    if (ok(load_gen(&g, cert, "[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nech_keys = k1.pem, kw.pem\n",
                    err) == 0,
           "generation: public.example (case-insensitive) and a.wild.example (wildcard) are served")) {
        const struct tls_config *t = gen_tls(g, 1);
        ok(t->ech.n_keys == 2 && t->ech.keys == g->cfg->listeners[1].ech_keys && t->ech.retry_configs != NULL &&
               t->ech.retry_configs_len == g->cfg->listeners[1].ech_retry_configs_len,
           "... the listener's tls_config carries the keys and retry_configs");
        t = gen_tls(g, 1);
        ok(t->ech.n_keys == 2, "... and keeps them when gen_tls refreshes the copy");
        ok(gen_tls(g, 0)->ech.n_keys == 0 && gen_tls(g, 0)->ech.retry_configs == NULL,
           "... the listener without ech_keys has ECH off");
    } else {
        diag("%s", err);
    }
    gen_unref(g);
    g = NULL;
    int ret = load_gen(&g, cert,
                       "[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nech_keys = k1.pem, k2.pem\n", err);
    snprintf(want, sizeof(want),
             "%s:12: [listener b] ech_keys: %s/k2.pem: public name 'rotate.example' is not a name of any [cert] (add a "
             "certificate for it: clients whose ECH is rejected are answered with it)",
             path, dir);
    if (!ok(ret == KL_ERR_CONFIG && g == NULL && strcmp(err, want) == 0, "a public name no certificate serves")) {
        diag("got  '%s'", err);
        diag("want '%s'", want);
    }
    gen_unref(g);
    g = NULL;
    /* A wildcard covers one label only. */
    tls_ech_key_dispose(&kw);
    ok(tls_ech_key_generate(&kw, 3, "a.b.wild.example", 0) == 0 && write_ech_key("kw2.pem", &kw) == 0, "kw2");
    ret = load_gen(&g, cert, "[listener b]\nlisten = 127.0.0.1:3\nbackend = 127.0.0.1:4\nech_keys = kw2.pem\n", err);
    ok(ret == KL_ERR_CONFIG && strstr(err, "public name 'a.b.wild.example' is not a name of any [cert]") != NULL,
       "*.wild.example does not serve a.b.wild.example");
    gen_unref(g);
exit:
    tls_ech_key_dispose(&k1);
    tls_ech_key_dispose(&k2);
    tls_ech_key_dispose(&kw);
    snprintf(cmd, sizeof(cmd), "cd %s && rm -f k*.pem m*.pem junk.pem nocfg.pem badcfg.pem unsup.pem ech-cert.*", dir);
    if (system(cmd) != 0) {
        diag("cleanup failed");
    }
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/kl-fe-config.XXXXXX");
    if (mkdtemp(dir) == NULL) {
        ok(0, "mkdtemp");
        return kl_test_done();
    }
    snprintf(path, sizeof(path), "%s/frontend.conf", dir);
    snprintf(chain, sizeof(chain), "%s/c.pem", dir);
    if (!ok(write_file(chain, "not parsed here: gen.c loads the chain\n") == 0, "chain file")) {
        return kl_test_done();
    }
    test_defaults();
    test_full();
    test_errors();
    test_client_auth();
    test_tickets();
    test_parse_addr();
    test_user_sandbox();
    test_ech();
    config_free(cfg);
    unlink(chain);
    unlink(path);
    rmdir(dir);
    return kl_test_done();
}
