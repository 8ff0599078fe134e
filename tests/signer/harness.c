#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "harness.h"
#include "rpc_client.h"

const char harness_std_keys[] = "[key ecdsa-p256]\n"
                                "uri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                                "schemes = ecdsa_secp256r1_sha256\n"
                                "contexts = server, client\n"
                                "[key ecdsa-p384]\n"
                                "uri = pkcs11:token=keyless;object=ecdsa-p384;type=private\n"
                                "schemes = 0x0503\n"
                                "contexts = server, client\n"
                                "[key rsa-2048]\n"
                                "uri = pkcs11:token=keyless;object=rsa-2048;type=private\n"
                                "schemes = rsa_pss_rsae_sha256, rsa_pss_rsae_sha384, rsa_pss_rsae_sha512\n"
                                "contexts = server, client\n"
                                "[key ed25519]\n"
                                "uri = pkcs11:token=keyless;id=%04;type=private\n"
                                "schemes = ed25519\n"
                                "contexts = server, client\n";

int harness_run(char *out, size_t out_cap, const char *cmd)
{
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    int st;
    if (p == NULL) {
        return -1;
    }
    if (out != NULL && out_cap > 0) {
        n = fread(out, 1, out_cap - 1, p);
        out[n] = '\0';
    } else {
        char sink[4096];
        while (fread(sink, 1, sizeof(sink), p) > 0) {
        }
    }
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int harness_init(struct harness *h)
{
    const char *src = getenv("KL_SOURCE_DIR"), *build = getenv("KL_BUILD_DIR");
    char cmd[1024], out[8192];
    memset(h, 0, sizeof(*h));
    snprintf(h->dir, sizeof(h->dir), "/tmp/kl-signer-test.XXXXXX");
    if (src == NULL || build == NULL || mkdtemp(h->dir) == NULL) {
        fprintf(stderr, "# KL_SOURCE_DIR/KL_BUILD_DIR unset or mkdtemp failed\n");
        return -1;
    }
    snprintf(h->hsm, sizeof(h->hsm), "%s/hsm", h->dir);
    snprintf(h->bin, sizeof(h->bin), "%s/bin/keyless-signer", build);
    snprintf(h->sock, sizeof(h->sock), "%s/run/signer.sock", h->dir);
    snprintf(h->audit, sizeof(h->audit), "%s/audit.jsonl", h->dir);
    snprintf(h->conf, sizeof(h->conf), "%s/signer.conf", h->dir);
    snprintf(h->errlog, sizeof(h->errlog), "%s/signer.err", h->dir);
    snprintf(cmd, sizeof(cmd), "KL_SOURCE_DIR=%s bash %s/tests/signer/mktoken.sh %s 2>&1", src, src, h->hsm);
    if (harness_run(out, sizeof(out), cmd) != 0) {
        fprintf(stderr, "# token setup failed:\n%s\n", out);
        return -1;
    }
    /* Keep the library loaded by the test itself (p11-kit-proxy) pointed at this token too. */
    snprintf(cmd, sizeof(cmd), "%s/softhsm2.conf", h->hsm);
    setenv("SOFTHSM2_CONF", cmd, 1);
    return 0;
}

void harness_cleanup(struct harness *h)
{
    char cmd[512];
    if (h->pid > 0) {
        (void)harness_stop(h);
    }
    if (getenv("KL_KEEP_TMP") == NULL && h->dir[0] != '\0') {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
        (void)harness_run(NULL, 0, cmd);
    }
}

int harness_write_config(struct harness *h, const char *path, const char *extra_signer, const char *hsm_lines,
                         const char *keys_text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    fprintf(f,
            "; written by the signer tests\n[signer]\nsocket = %s\naudit_log = %s\n%s%s\n"
            "[hsm]\n%s\npin_file = %s/user.pin\nsofthsm2_conf = %s/softhsm2.conf\n\n%s",
            h->sock, h->audit, h->strict_peers ? "" : "allow_same_uid = yes\n",
            extra_signer != NULL ? extra_signer : "", hsm_lines != NULL ? hsm_lines : "module = " SOFTHSM_MODULE,
            h->hsm, h->hsm, keys_text);
    return fclose(f) == 0 ? 0 : -1;
}

static int sock_ready(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa.sun_path)) {
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    }
    memcpy(sa.sun_path, path, strlen(path));
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

int harness_start(struct harness *h, const char *conf)
{
    pid_t pid;
    (void)unlink(h->sock);
    pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        FILE *e = freopen(h->errlog, "a", stderr);
        (void)e;
        execl(h->bin, h->bin, "--config", conf, (char *)NULL);
        _exit(127);
    }
    h->pid = pid;
    for (int i = 0; i < 300; i++) {
        int st;
        struct timespec ts = {0, 50 * 1000 * 1000};
        if (sock_ready(h->sock)) {
            return 0;
        }
        if (waitpid(pid, &st, WNOHANG) == pid) {
            h->pid = 0;
            fprintf(stderr, "# keyless-signer exited early (status %d)\n", st);
            return -1;
        }
        nanosleep(&ts, NULL);
    }
    return -1;
}

int harness_stop(struct harness *h)
{
    int st = 0;
    if (h->pid <= 0) {
        return -1;
    }
    kill(h->pid, SIGTERM);
    for (int i = 0; i < 400; i++) {
        struct timespec ts = {0, 25 * 1000 * 1000};
        if (waitpid(h->pid, &st, WNOHANG) == h->pid) {
            h->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        nanosleep(&ts, NULL);
    }
    kill(h->pid, SIGKILL);
    waitpid(h->pid, &st, 0);
    h->pid = 0;
    return -1;
}

size_t harness_content(uint8_t *out, int context, const uint8_t *hash, size_t hash_len)
{
    const char *label = context == 1 ? "TLS 1.3, server CertificateVerify" : "TLS 1.3, client CertificateVerify";
    size_t n = 0;
    memset(out, 0x20, 64);
    n = 64;
    memcpy(out + n, label, strlen(label));
    n += strlen(label);
    out[n++] = 0;
    memcpy(out + n, hash, hash_len);
    return n + hash_len;
}

static EVP_PKEY *cert_key(const struct harness *h, const char *key)
{
    char path[512];
    FILE *f;
    X509 *x;
    EVP_PKEY *pk = NULL;
    snprintf(path, sizeof(path), "%s/pki/%s.crt.pem", h->hsm, key);
    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "# no certificate %s\n", path);
        return NULL;
    }
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x != NULL) {
        pk = X509_get_pubkey(x);
        X509_free(x);
    }
    return pk;
}

size_t harness_cert_spki(const struct harness *h, const char *key, uint8_t *out, size_t cap)
{
    EVP_PKEY *pk = cert_key(h, key);
    unsigned char *der = NULL;
    int n = pk != NULL ? i2d_PUBKEY(pk, &der) : -1;
    size_t r = 0;
    if (n > 0 && (size_t)n <= cap) {
        memcpy(out, der, (size_t)n);
        r = (size_t)n;
    }
    OPENSSL_free(der);
    EVP_PKEY_free(pk);
    return r;
}

int harness_verify(const struct harness *h, const char *key, uint16_t scheme, const uint8_t *content,
                   size_t content_len, const uint8_t *sig, size_t sig_len)
{
    EVP_PKEY *pk = cert_key(h, key);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *md = NULL;
    int ok = 0;
    switch (scheme) {
    case 0x0403:
    case 0x0804:
        md = EVP_sha256();
        break;
    case 0x0503:
    case 0x0805:
        md = EVP_sha384();
        break;
    case 0x0806:
        md = EVP_sha512();
        break;
    default:
        md = NULL;
    }
    if (pk == NULL || ctx == NULL || EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pk) != 1) {
        goto exit;
    }
    if (scheme >= 0x0804 && scheme <= 0x0806) {
        /* RFC 8446 4.2.3: RSASSA-PSS with MGF1 on the same hash and salt = hash length. */
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1) {
            goto exit;
        }
    }
    ok = EVP_DigestVerify(ctx, sig, sig_len, content, content_len) == 1;
exit:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pk);
    return ok;
}

int harness_file_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    if (f == NULL) {
        return 0;
    }
    while (getline(&line, &cap, f) > 0) {
        n += strstr(line, needle) != NULL;
    }
    free(line);
    fclose(f);
    return n;
}

int harness_audit_grep(const struct harness *h, const char *needle)
{
    return harness_file_count(h->audit, needle) > 0;
}

int harness_audit_has(const struct harness *h, uint64_t request_id, const char *status)
{
    char needle[160];
    snprintf(needle, sizeof(needle), "\"request_id\":%llu,\"status\":\"%s\"", (unsigned long long)request_id, status);
    return harness_audit_grep(h, needle);
}

pid_t harness_p11_server_start(const char *sock, int allow_nobody)
{
    /* A server stopped before (SIGKILL) leaves its socket file: without this the wait below
     * would return at once and the signer could meet no server (0 tokens) under load. */
    (void)unlink(sock);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        FILE *e = freopen("/dev/null", "w", stdout);
        (void)e;
        setpgid(0, 0);
        /* -u/-g: p11-kit server lets only this user/group connect (it checks the peer's uid). */
        if (allow_nobody) {
            execlp("p11-kit", "p11-kit", "server", "-f", "-u", "nobody", "-g", "nogroup", "-n", sock, "--provider",
                   SOFTHSM_MODULE, "pkcs11:token=keyless", (char *)NULL);
        } else {
            execlp("p11-kit", "p11-kit", "server", "-f", "-n", sock, "--provider", SOFTHSM_MODULE,
                   "pkcs11:token=keyless", (char *)NULL);
        }
        _exit(127);
    }
    for (int i = 0; i < 500 && access(sock, F_OK) != 0; i++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return pid;
}

void harness_p11_server_stop(pid_t pid)
{
    int st;
    if (pid <= 0)
        return;
    kill(-pid, SIGKILL); /* the whole group: p11-kit server forks per connection */
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

int harness_sign_status(const struct harness *h, struct rpc_client *c, uint64_t id, const char *key, uint16_t scheme,
                        int verify)
{
    uint8_t hash[32], content[160];
    Keyless__V1__Response *r = NULL;
    int st = -1;
    for (size_t i = 0; i < sizeof(hash); i++) {
        hash[i] = (uint8_t)(id * 7 + i);
    }
    if (rpc_client_sign(c, &r, id, key, scheme, 1, hash, sizeof(hash)) != 0) {
        return -1;
    }
    if (r->id == id && r->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN) {
        st = (int)r->sign->status;
        if (st == KEYLESS__V1__STATUS__OK && verify) {
            size_t clen = harness_content(content, 1, hash, sizeof(hash));
            if (!harness_verify(h, key, scheme, content, clen, r->sign->signature.data, r->sign->signature.len)) {
                st = -2;
            }
        }
    }
    keyless__v1__response__free_unpacked(r, NULL);
    return st;
}

int harness_count_lines(const char *s)
{
    int n = 0;
    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

void harness_p11_socket(const struct harness *h, char *sock, size_t cap)
{
    char addr[600];
    snprintf(sock, cap, "%s/p11-kit.sock", h->dir);
    snprintf(addr, sizeof(addr), "unix:path=%s", sock);
    setenv("P11_KIT_SERVER_ADDRESS", addr, 1);
}
