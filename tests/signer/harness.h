/*
 * harness.h - shared fixture for the signer tests: a SoftHSM2 token (hsm-setup), a
 * config file, a keyless-signer process, and TLS 1.3 CertificateVerify verification
 * with libcrypto against the certificate's public key.
 */
#ifndef KL_TESTS_SIGNER_HARNESS_H
#define KL_TESTS_SIGNER_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct harness {
    char dir[256];    /* mktemp directory */
    char hsm[300];    /* token dir (hsm-setup layout) */
    char bin[512];    /* keyless-signer */
    char sock[320];   /* socket path */
    char audit[320];  /* audit log */
    char conf[320];   /* config file */
    char errlog[320]; /* signer stderr */
    pid_t pid;
    /* 0: harness_write_config adds allow_same_uid = yes (the tests' client is the
     * signer's own user); 1: it does not (the tests of that rule, issue 13) */
    int strict_peers;
};

#define SOFTHSM_MODULE "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"
#define PROXY_MODULE "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"
#define CLIENT_MODULE "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"

/* Make the temp dir and the token; fills paths. 0 on success. */
int harness_init(struct harness *h);
/* Remove the temp dir (unless KL_KEEP_TMP is set). */
void harness_cleanup(struct harness *h);

/*
 * Write the config: [signer] with the harness socket and audit log plus extra_signer
 * lines, [hsm] with hsm_lines (module=... etc.; pin_file and softhsm2_conf are added),
 * then keys_text verbatim.
 */
int harness_write_config(struct harness *h, const char *path, const char *extra_signer, const char *hsm_lines,
                         const char *keys_text);

/* The standard key sections: the four token keys with every scheme they can do. */
extern const char harness_std_keys[];

/* Start keyless-signer --config conf, wait (<= 15 s) until its socket accepts. */
int harness_start(struct harness *h, const char *conf);
/* SIGTERM and wait; returns the exit status (or -1 if it had to be killed). */
int harness_stop(struct harness *h);

/* How many '\n' s holds: "one line" checks on captured error output. */
int harness_count_lines(const char *s);

/* Run a command line with sh -c, capturing stdout+stderr into out (NUL-terminated); returns exit status. */
int harness_run(char *out, size_t out_cap, const char *cmd);

/* The RFC 8446 section 4.4.3 content, built here independently of signer/policy.c. */
size_t harness_content(uint8_t *out, int context, const uint8_t *hash, size_t hash_len);

/* Verify sig (as in CertificateVerify) for scheme over content with the public key of pki/<key>.crt.pem. */
int harness_verify(const struct harness *h, const char *key, uint16_t scheme, const uint8_t *content,
                   size_t content_len, const uint8_t *sig, size_t sig_len);

struct rpc_client;
/*
 * One sign request (server context, a 32-byte hash derived from id) on c. Returns the
 * answer's status (KEYLESS__V1__STATUS__*), -1 if there was no answer for id, and with
 * verify, -2 if an OK signature does not verify against pki/<key>.crt.pem.
 */
int harness_sign_status(const struct harness *h, struct rpc_client *c, uint64_t id, const char *key, uint16_t scheme,
                        int verify);

/* DER SPKI of pki/<key>.crt.pem into out; returns its length or 0. */
size_t harness_cert_spki(const struct harness *h, const char *key, uint8_t *out, size_t cap);

/* How many lines of the file at path contain needle (0 when it cannot be read): counts of log lines. */
int harness_file_count(const char *path, const char *needle);

/* 1 if the audit log contains a line with this request id and status. */
int harness_audit_has(const struct harness *h, uint64_t request_id, const char *status);
/* 1 if the audit log contains the substring. */
int harness_audit_grep(const struct harness *h, const char *needle);

/*
 * Export the test token with `p11-kit server` on the Unix socket sock (for the remote
 * p11-kit-client.so module). allow_nobody: only uid nobody may connect; else only our own
 * uid. Returns the server's pid (its own process group), or -1.
 */
pid_t harness_p11_server_start(const char *sock, int allow_nobody);
/* <h->dir>/p11-kit.sock into sock, and P11_KIT_SERVER_ADDRESS pointing at it (for the client module). */
void harness_p11_socket(const struct harness *h, char *sock, size_t cap);
/* Kill the server and every per-connection child it forked: the token "goes away". */
void harness_p11_server_stop(pid_t pid);

#endif
