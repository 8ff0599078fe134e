/*
 * test_signer_hsm.c - the token can be neither locked nor abused, and HSMs without the raw
 * mechanisms work (issue 13, items 3 and 4). A real SoftHSM2 token, keys made for each
 * case by p11keygen (attributes pkcs11-tool cannot set), and p11shim, a module in front of
 * SoftHSM2 that counts C_Login calls, makes one C_Sign fail on demand (leaving the token's
 * operation active) or plays an HSM with only hash-and-sign mechanisms:
 *  - start-up key checks: CKA_ALWAYS_AUTHENTICATE refused; extractable or decrypting keys
 *    a warning, an error with strict_keys = yes; a clean key passes both;
 *  - mechanism choice: keys whose CKA_ALLOWED_MECHANISMS hold only hash-and-sign ones sign
 *    with those (and say so in the start-up line), signatures verify with the public key
 *    read from the token by pkcs11-tool; a scheme neither mechanism can do is refused;
 *    with the shim's hash-only HSM (no list, raw mechanisms refused) the test signature
 *    picks the hash-and-sign ones for every fixture key;
 *  - token trouble: CKR_OPERATION_ACTIVE after a failed C_Sign is cleared; a PIN file
 *    changed under a running signer costs at most one login, then HSM_ERROR until SIGHUP;
 *    other recovery failures back off exponentially; a key replaced on the token is
 *    refused after the re-login while the others sign on;
 *  - a faulty signature from the token (the shim flips a bit): Ed25519 and RSA are withheld
 *    (HSM_ERROR, no bytes, one line, audited), ECDSA too with verify_ecdsa = yes and released
 *    with verify_ecdsa = no; with the fault gone the same requests sign and verify.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "harness.h"
#include "kl_test.h"
#include "rpc_client.h"

#define CKR_FUNCTION_FAILED_HEX "6"
#define CKR_DEVICE_ERROR_HEX "30"

static struct harness H;
static char pin_path[400], shim_dir[400];

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000 * 1000};
    nanosleep(&ts, NULL);
}

/* The start-up line ("listening on ...") is written just after listen(), so a connect can
 * succeed (harness_start returns) before it is in the log: wait for it, at most 5 s. */
static void wait_startup_line(void)
{
    for (int i = 0; i < 500 && harness_file_count(H.errlog, "listening on ") == 0; i++) {
        sleep_ms(10);
    }
}

/* Empty the signer's stderr log, so that lines are counted per run. */
static void clear_log(void)
{
    FILE *f = fopen(H.errlog, "w");
    if (f != NULL) {
        fclose(f);
    }
}

static int write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    fputs(text, f);
    return fclose(f) == 0 && chmod(path, mode) == 0 ? 0 : -1;
}

static int keygen(const char *type, const char *label, const char *id, const char *flags)
{
    char cmd[1400], out[1024];
    int st;
    snprintf(cmd, sizeof(cmd), "%s/tests/p11keygen %s keyless %s %s %s %s %s 2>&1", getenv("KL_BUILD_DIR"),
             SOFTHSM_MODULE, pin_path, type, label, id, flags);
    st = harness_run(out, sizeof(out), cmd);
    if (st != 0) {
        diag("%s: %s", cmd, out);
    }
    return st;
}

/* The DER SPKI of the public key object labelled label, read by pkcs11-tool (not by the signer). */
static size_t token_spki(const char *label, uint8_t *out, size_t cap)
{
    char cmd[1400], path[500];
    FILE *f;
    size_t n = 0;
    snprintf(path, sizeof(path), "%s/%s.spki.der", H.dir, label);
    snprintf(cmd, sizeof(cmd),
             "PIN=$(cat %s) pkcs11-tool --module %s --token-label keyless --login --pin env:PIN --read-object "
             "--type pubkey --label %s -o %s >/dev/null 2>&1",
             pin_path, SOFTHSM_MODULE, label, path);
    if (harness_run(NULL, 0, cmd) != 0 || (f = fopen(path, "rb")) == NULL) {
        return 0;
    }
    n = fread(out, 1, cap, f);
    fclose(f);
    return n;
}

/* Verify a CertificateVerify signature with a DER SPKI (libcrypto, independent of the signer). */
static int verify_spki(const uint8_t *spki, size_t spki_len, uint16_t scheme, const uint8_t *content, size_t clen,
                       const uint8_t *sig, size_t sig_len)
{
    const unsigned char *p = spki;
    EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)spki_len);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    const EVP_MD *md = scheme == 0x0403 || scheme == 0x0804   ? EVP_sha256()
                       : scheme == 0x0503 || scheme == 0x0805 ? EVP_sha384()
                       : scheme == 0x0806                     ? EVP_sha512()
                                                              : NULL;
    int ok = 0;
    if (pk == NULL || ctx == NULL || EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pk) != 1) {
        goto exit;
    }
    if (scheme >= 0x0804 && scheme <= 0x0806 &&
        (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1)) {
        goto exit;
    }
    ok = EVP_DigestVerify(ctx, sig, sig_len, content, clen) == 1;
exit:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pk);
    return ok;
}

/* One sign request; 1 if it is OK and verifies with spki over the content, and does not
 * verify over other content; 0 otherwise. */
static int sign_verifies(struct rpc_client *c, uint64_t id, const char *key, uint16_t scheme, const uint8_t *spki,
                         size_t spki_len)
{
    uint8_t hash[32], content[160];
    Keyless__V1__Response *r = NULL;
    int good = 0;
    for (size_t i = 0; i < sizeof(hash); i++) {
        hash[i] = (uint8_t)(id * 13 + i);
    }
    if (rpc_client_sign(c, &r, id, key, scheme, 1, hash, sizeof(hash)) != 0) {
        return 0;
    }
    if (r->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN && r->sign->status == KEYLESS__V1__STATUS__OK) {
        size_t clen = harness_content(content, 1, hash, sizeof(hash));
        good = verify_spki(spki, spki_len, scheme, content, clen, r->sign->signature.data, r->sign->signature.len);
        content[clen - 1] ^= 1;
        good = good &&
               !verify_spki(spki, spki_len, scheme, content, clen, r->sign->signature.data, r->sign->signature.len);
    } else if (r->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN) {
        diag("%s 0x%04x: status %d", key, scheme, (int)r->sign->status);
    }
    keyless__v1__response__free_unpacked(r, NULL);
    return good;
}

/* --check-config on [hsm] extra lines and keys; the output in out, the exit status returned. */
static int check_config(char *out, size_t cap, const char *hsm_extra, const char *keys)
{
    char conf[400], hsm[600], cmd[1000];
    snprintf(conf, sizeof(conf), "%s/check.conf", H.dir);
    snprintf(hsm, sizeof(hsm), "module = %s\n%s", SOFTHSM_MODULE, hsm_extra);
    if (harness_write_config(&H, conf, NULL, hsm, keys) != 0) {
        return -1;
    }
    snprintf(cmd, sizeof(cmd), "%s --config %s --check-config 2>&1", H.bin, conf);
    return harness_run(out, cap, cmd);
}

static void test_key_checks(void)
{
    char out[4096];
    int st;
    static const char clean[] = "[key clean]\nuri = pkcs11:token=keyless;object=clean-p256;type=private\n"
                                "schemes = ecdsa_secp256r1_sha256\n";
    static const char extr[] = "[key extr]\nuri = pkcs11:token=keyless;object=extr-p256;type=private\n"
                               "schemes = ecdsa_secp256r1_sha256\n";
    static const char rsa[] = "[key rsa]\nuri = pkcs11:token=keyless;object=rsa-2048;type=private\n"
                              "schemes = rsa_pss_rsae_sha256\n";
    static const char auth[] = "[key auth]\nuri = pkcs11:token=keyless;object=auth-p256;type=private\n"
                               "schemes = ecdsa_secp256r1_sha256\n";
    char both[1024];

    st = check_config(out, sizeof(out), "strict_keys = yes\n", clean);
    ok(st == 0 && strstr(out, "OK (1 key(s)") != NULL && strstr(out, "warning") == NULL,
       "strict_keys = yes: a key that may only sign passes, without a warning");
    diag("%s", out);
    st = check_config(out, sizeof(out), "", clean);
    ok(st == 0 && harness_count_lines(out) == 1, "strict_keys unset: a key that may only sign, no warning");
    st = check_config(out, sizeof(out), "strict_keys = yes\n", extr);
    ok(st == 1 && strstr(out, "[key extr] uri: the key allows more than signing (CKA_EXTRACTABLE)") != NULL &&
           harness_count_lines(out) == 1,
       "strict_keys = yes: an extractable key is refused, one line");
    diag("%s", out);
    st = check_config(out, sizeof(out), "strict_keys = yes\n", rsa);
    ok(st == 1 && strstr(out, "[key rsa] uri: the key allows more than signing (CKA_DECRYPT, CKA_UNWRAP)") != NULL &&
           harness_count_lines(out) == 1,
       "strict_keys = yes: a key that can decrypt (SoftHSM2's default) is refused, one line");
    snprintf(both, sizeof(both), "%s%s", clean, extr);
    st = check_config(out, sizeof(out), "strict_keys = no\n", both);
    ok(st == 0 && strstr(out, "[key extr] uri: warning") != NULL && strstr(out, "CKA_EXTRACTABLE") != NULL &&
           strstr(out, "[key clean] uri: warning") == NULL && harness_count_lines(out) == 2,
       "strict_keys = no: the extractable key is a warning (and only that key), the start goes on");
    diag("%s", out);
    st = check_config(out, sizeof(out), "strict_keys = maybe\n", clean);
    ok(st == 2 && strstr(out, "[hsm] strict_keys") != NULL && harness_count_lines(out) == 1,
       "strict_keys = maybe: a config error, one line");
    st = check_config(out, sizeof(out), "", auth);
    ok(st == 1 && strstr(out, "[key auth] uri:") != NULL && strstr(out, "CKA_ALWAYS_AUTHENTICATE") != NULL &&
           harness_count_lines(out) == 1,
       "a CKA_ALWAYS_AUTHENTICATE key is refused at start, one line");
    diag("%s", out);
}

static void test_mechanism_choice(void)
{
    char out[4096], conf[400];
    static const char only_hs_ec[] = "[key hs-p256]\nuri = pkcs11:token=keyless;object=hs-p256;type=private\n"
                                     "schemes = ecdsa_secp256r1_sha256\n";
    static const char keys[] =
        "[key hs-rsa]\nuri = pkcs11:token=keyless;object=hs-rsa;type=private\n"
        "schemes = rsa_pss_rsae_sha256, rsa_pss_rsae_sha384, rsa_pss_rsae_sha512\n"
        "[key raw-p256]\nuri = pkcs11:token=keyless;object=raw-p256;type=private\nschemes = ecdsa_secp256r1_sha256\n"
        "[key ecdsa-p256]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
        "schemes = ecdsa_secp256r1_sha256\n";
    uint8_t spki_rsa[2048], spki_p256[512];
    size_t rsa_len = token_spki("hs-rsa", spki_rsa, sizeof(spki_rsa));
    size_t p256_len = token_spki("raw-p256", spki_p256, sizeof(spki_p256));
    struct rpc_client c;
    int st;

    ok(rsa_len > 0 && p256_len > 0, "pkcs11-tool reads the test keys' public keys");
    /* SoftHSM2 2.6 has no CKM_ECDSA_SHA256: a P-256 key limited to it can do neither. */
    st = check_config(out, sizeof(out), "", only_hs_ec);
    ok(st == 1 && strstr(out, "[key hs-p256] schemes: ecdsa_secp256r1_sha256: neither raw nor hash-and-sign") &&
           strstr(out, "CKM_ECDSA is not in the key's CKA_ALLOWED_MECHANISMS") != NULL &&
           strstr(out, "CKM_ECDSA_SHA256") != NULL && harness_count_lines(out) == 1,
       "a scheme neither the raw nor the hash-and-sign mechanism can do is refused, one line naming both");
    diag("%s", out);

    snprintf(conf, sizeof(conf), "%s/mech.conf", H.dir);
    clear_log();
    if (!ok(harness_write_config(&H, conf, "workers = 2", NULL, keys) == 0 && harness_start(&H, conf) == 0,
            "signer starts with keys limited to hash-and-sign mechanisms")) {
        return;
    }
    wait_startup_line();
    ok(harness_file_count(H.errlog, "hs-rsa rsa_pss_rsae_sha256/CKM_SHA256_RSA_PKCS_PSS rsa_pss_rsae_sha384/"
                                    "CKM_SHA384_RSA_PKCS_PSS rsa_pss_rsae_sha512/CKM_SHA512_RSA_PKCS_PSS") == 1,
       "the start-up line says hs-rsa signs with the hash-and-sign mechanisms");
    ok(harness_file_count(H.errlog, "raw-p256 ecdsa_secp256r1_sha256/CKM_ECDSA;") == 1 &&
           harness_file_count(H.errlog, "ecdsa-p256 ecdsa_secp256r1_sha256/CKM_ECDSA)") == 1,
       "... and the raw mechanism where the key allows it (listed, and probed without a list)");
    if (!ok(rpc_client_connect(&c, H.sock) == 0, "connect")) {
        return;
    }
    ok(sign_verifies(&c, 11, "hs-rsa", 0x0804, spki_rsa, rsa_len),
       "CKM_SHA256_RSA_PKCS_PSS over the whole content: rsa_pss_rsae_sha256 verifies with the token's public key");
    ok(sign_verifies(&c, 12, "hs-rsa", 0x0805, spki_rsa, rsa_len), "... rsa_pss_rsae_sha384 verifies");
    ok(sign_verifies(&c, 13, "hs-rsa", 0x0806, spki_rsa, rsa_len), "... rsa_pss_rsae_sha512 verifies");
    ok(sign_verifies(&c, 14, "raw-p256", 0x0403, spki_p256, p256_len), "a key listing CKM_ECDSA signs with it");
    ok(!sign_verifies(&c, 15, "raw-p256", 0x0403, spki_rsa, rsa_len), "(a signature does not verify with another key)");
    rpc_client_close(&c);
    is_int(harness_stop(&H), 0, "graceful stop");
}

/* The shim as the module; hash_only: the hash-and-sign-only HSM. */
static int start_shim(const char *conf, const char *extra, const char *keys, int hash_only)
{
    char hsm[600], logins_path[500];
    if (hash_only) {
        setenv("KL_SHIM_HASH_ONLY", "1", 1);
    } else {
        unsetenv("KL_SHIM_HASH_ONLY");
    }
    snprintf(hsm, sizeof(hsm), "module = %s", KL_P11SHIM);
    clear_log();
    snprintf(logins_path, sizeof(logins_path), "%s/logins", shim_dir);
    (void)unlink(logins_path); /* count this run's logins only */
    if (harness_write_config(&H, conf, extra, hsm, keys) != 0 || harness_start(&H, conf) != 0) {
        return -1;
    }
    /* The key warnings and the start-up line come after the socket accepts: let them all be in
     * the log before a test counts the lines its requests add (a race seen under load). */
    wait_startup_line();
    return 0;
}

static void test_hash_only_hsm(void)
{
    char conf[400];
    struct rpc_client c;
    snprintf(conf, sizeof(conf), "%s/hashonly.conf", H.dir);
    if (!ok(start_shim(conf, "workers = 1", harness_std_keys, 1) == 0,
            "signer starts on an HSM without CKM_ECDSA and CKM_RSA_PKCS_PSS (and no CKA_ALLOWED_MECHANISMS)")) {
        return;
    }
    wait_startup_line();
    ok(harness_file_count(H.errlog, "ecdsa-p256 ecdsa_secp256r1_sha256/CKM_ECDSA_SHA256; ecdsa-p384 "
                                    "ecdsa_secp384r1_sha384/CKM_ECDSA_SHA384; rsa-2048 rsa_pss_rsae_sha256/"
                                    "CKM_SHA256_RSA_PKCS_PSS") == 1,
       "the test signatures chose the hash-and-sign mechanisms, and the start-up line says so");
    ok(harness_file_count(H.errlog, "ed25519 ed25519/CKM_EDDSA") == 1, "Ed25519 keeps CKM_EDDSA");
    if (!ok(rpc_client_connect(&c, H.sock) == 0, "connect")) {
        return;
    }
    is_int(harness_sign_status(&H, &c, 21, "ecdsa-p256", 0x0403, 1), KEYLESS__V1__STATUS__OK,
           "hash-only HSM: ecdsa_secp256r1_sha256 verifies against the certificate");
    is_int(harness_sign_status(&H, &c, 22, "ecdsa-p384", 0x0503, 1), KEYLESS__V1__STATUS__OK,
           "hash-only HSM: ecdsa_secp384r1_sha384 verifies");
    is_int(harness_sign_status(&H, &c, 23, "rsa-2048", 0x0804, 1), KEYLESS__V1__STATUS__OK,
           "hash-only HSM: rsa_pss_rsae_sha256 verifies");
    is_int(harness_sign_status(&H, &c, 24, "rsa-2048", 0x0806, 1), KEYLESS__V1__STATUS__OK,
           "hash-only HSM: rsa_pss_rsae_sha512 verifies");
    is_int(harness_sign_status(&H, &c, 25, "ed25519", 0x0807, 1), KEYLESS__V1__STATUS__OK,
           "hash-only HSM: ed25519 verifies");
    rpc_client_close(&c);
    is_int(harness_stop(&H), 0, "graceful stop");
    unsetenv("KL_SHIM_HASH_ONLY");
}

static int inject(const char *rv_hex)
{
    char path[500];
    snprintf(path, sizeof(path), "%s/sign_fail", shim_dir);
    return write_file(path, rv_hex, 0600);
}

static int logins(void)
{
    char path[500];
    snprintf(path, sizeof(path), "%s/logins", shim_dir);
    return harness_file_count(path, "login ");
}

/* The same CKR_OPERATION_ACTIVE on a module that says PKCS#11 3.0: cancelled in place. */
static void test_cancel_v3(void)
{
    static const char keys[] = "[key ecdsa-p256]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                               "schemes = ecdsa_secp256r1_sha256\n";
    char conf[400], cancels[500];
    struct rpc_client c;
    snprintf(conf, sizeof(conf), "%s/v3.conf", H.dir);
    snprintf(cancels, sizeof(cancels), "%s/cancels", shim_dir);
    setenv("KL_SHIM_V3", "1", 1);
    if (!ok(start_shim(conf, "workers = 1", keys, 0) == 0 && rpc_client_connect(&c, H.sock) == 0,
            "signer starts on a module that says PKCS#11 3.0")) {
        unsetenv("KL_SHIM_V3");
        return;
    }
    inject(CKR_FUNCTION_FAILED_HEX);
    is_int(harness_sign_status(&H, &c, 31, "ecdsa-p256", 0x0403, 0), KEYLESS__V1__STATUS__HSM_ERROR,
           "3.0: a failed C_Sign: HSM_ERROR");
    is_int(harness_sign_status(&H, &c, 32, "ecdsa-p256", 0x0403, 1), KEYLESS__V1__STATUS__OK,
           "3.0: the next request signs");
    is_int(harness_file_count(cancels, "cancel"), 1, "3.0: the operation was cancelled with C_SignInit(NULL), once");
    is_int(harness_file_count(H.errlog, "(CKR_OPERATION_ACTIVE): cancelled"), 1, "3.0: one line");
    rpc_client_close(&c);
    is_int(harness_stop(&H), 0, "graceful stop");
    unsetenv("KL_SHIM_V3");
}

/* One sign request; its status (-1 on an RPC failure), the signature's length in *sig_len, and
 * in *verifies whether the released signature verifies with the key's certificate. */
static int sign_raw(struct rpc_client *c, uint64_t id, const char *key, uint16_t scheme, size_t *sig_len, int *verifies)
{
    uint8_t hash[32], content[160];
    Keyless__V1__Response *r = NULL;
    int st = -1;
    for (size_t i = 0; i < sizeof(hash); i++) {
        hash[i] = (uint8_t)(id * 11 + i);
    }
    *sig_len = 0;
    *verifies = 0;
    if (rpc_client_sign(c, &r, id, key, scheme, 1, hash, sizeof(hash)) != 0) {
        return -1;
    }
    if (r->id == id && r->body_case == KEYLESS__V1__RESPONSE__BODY_SIGN) {
        size_t clen = harness_content(content, 1, hash, sizeof(hash));
        st = (int)r->sign->status;
        *sig_len = r->sign->signature.len;
        *verifies = *sig_len > 0 &&
                    harness_verify(&H, key, scheme, content, clen, r->sign->signature.data, r->sign->signature.len);
    }
    keyless__v1__response__free_unpacked(r, NULL);
    return st;
}

/* With the shim corrupting C_Sign's output: the request gets HSM_ERROR, no signature bytes,
 * exactly one log line (containing needle) and an HSM_ERROR audit record. */
static void expect_withheld(struct rpc_client *c, uint64_t id, const char *key, uint16_t scheme, const char *needle,
                            const char *what)
{
    char name[300];
    int lines = harness_file_count(H.errlog, ""), hits = harness_file_count(H.errlog, needle), verifies = 0;
    size_t sig_len = 1;
    int st = sign_raw(c, id, key, scheme, &sig_len, &verifies);
    snprintf(name, sizeof(name), "%s: a faulty signature is withheld: HSM_ERROR", what);
    is_int(st, KEYLESS__V1__STATUS__HSM_ERROR, name);
    snprintf(name, sizeof(name), "%s: no signature bytes", what);
    is_int((int)sig_len, 0, name);
    snprintf(name, sizeof(name), "%s: one log line says so", what);
    if (!ok(harness_file_count(H.errlog, "") - lines == 1 && harness_file_count(H.errlog, needle) - hits == 1, name)) {
        diag("want one new line with '%s' in %s", needle, H.errlog);
    }
    snprintf(name, sizeof(name), "%s: audited as HSM_ERROR, not OK", what);
    ok(harness_audit_has(&H, id, "HSM_ERROR") && !harness_audit_has(&H, id, "OK"), name);
}

/* With corruption off: OK, and the signature verifies. */
static void expect_released(struct rpc_client *c, uint64_t id, const char *key, uint16_t scheme, const char *what)
{
    char name[300];
    int verifies = 0;
    size_t sig_len = 0;
    snprintf(name, sizeof(name), "%s: OK", what);
    is_int(sign_raw(c, id, key, scheme, &sig_len, &verifies), KEYLESS__V1__STATUS__OK, name);
    snprintf(name, sizeof(name), "%s: the signature verifies", what);
    ok(sig_len > 0 && verifies, name);
    snprintf(name, sizeof(name), "%s: audited as OK", what);
    ok(harness_audit_has(&H, id, "OK"), name);
}

/* Issue 13 section 5: a token that returns a faulty signature (the shim flips a bit of C_Sign's
 * output while $shim/corrupt_sign exists). Ed25519 and RSA are always checked before release,
 * ECDSA only with verify_ecdsa = yes. */
static void test_corrupt_sign(void)
{
    static const char ed_line[] = "hsm: a ed25519 signature from the token for key ed25519 does not verify";
    static const char rsa_line[] = "hsm: an RSA signature from the token does not verify; withheld";
    static const char ec_line[] =
        "ecdsa_secp256r1_sha256 signature from the token for key ecdsa-p256 does not verify with its public key";
    char conf[400], corrupt_path[500];
    struct rpc_client c;
    size_t sig_len = 0;
    int verifies = 1, lines;
    snprintf(conf, sizeof(conf), "%s/corrupt.conf", H.dir);
    snprintf(corrupt_path, sizeof(corrupt_path), "%s/corrupt_sign", shim_dir);
    (void)unlink(corrupt_path);

    if (!ok(start_shim(conf, "workers = 1\nverify_ecdsa = yes", harness_std_keys, 0) == 0 &&
                rpc_client_connect(&c, H.sock) == 0,
            "verify_ecdsa = yes: signer starts on the shim")) {
        return;
    }
    expect_released(&c, 200, "ed25519", 0x0807, "ed25519, before any fault");
    ok(write_file(corrupt_path, "1\n", 0600) == 0, "the shim corrupts every signature");
    expect_withheld(&c, 201, "ed25519", 0x0807, ed_line, "ed25519");
    expect_withheld(&c, 202, "rsa-2048", 0x0804, rsa_line, "rsa-2048 rsa_pss_rsae_sha256");
    expect_withheld(&c, 203, "ecdsa-p256", 0x0403, ec_line, "ecdsa-p256 with verify_ecdsa = yes");
    ok(unlink(corrupt_path) == 0, "the shim stops corrupting");
    expect_released(&c, 204, "ed25519", 0x0807, "ed25519, corruption off");
    expect_released(&c, 205, "rsa-2048", 0x0804, "rsa-2048, corruption off");
    expect_released(&c, 206, "ecdsa-p256", 0x0403, "ecdsa-p256, corruption off");
    rpc_client_close(&c);
    is_int(harness_stop(&H), 0, "graceful stop");

    if (!ok(start_shim(conf, "workers = 1\nverify_ecdsa = no", harness_std_keys, 0) == 0 &&
                rpc_client_connect(&c, H.sock) == 0,
            "verify_ecdsa = no: signer starts on the shim")) {
        return;
    }
    ok(write_file(corrupt_path, "1\n", 0600) == 0, "the shim corrupts every signature");
    lines = harness_file_count(H.errlog, "");
    is_int(sign_raw(&c, 207, "ecdsa-p256", 0x0403, &sig_len, &verifies), KEYLESS__V1__STATUS__OK,
           "verify_ecdsa = no: the faulty ECDSA signature is released (OK)");
    ok(sig_len > 0 && !verifies, "... and it is the faulty one: it does not verify with the certificate");
    is_int(harness_file_count(H.errlog, "") - lines, 0, "... with no log line");
    expect_withheld(&c, 208, "ed25519", 0x0807, ed_line, "ed25519 with verify_ecdsa = no");
    ok(unlink(corrupt_path) == 0, "the shim stops corrupting");
    expect_released(&c, 209, "ecdsa-p256", 0x0403, "verify_ecdsa = no, corruption off: ecdsa-p256");
    rpc_client_close(&c);
    is_int(harness_stop(&H), 0, "graceful stop");
}

static void test_token_trouble(void)
{
    static const char keys[] = "[key ecdsa-p256]\nuri = pkcs11:token=keyless;object=ecdsa-p256;type=private\n"
                               "schemes = ecdsa_secp256r1_sha256\n"
                               "[key swap]\nuri = pkcs11:token=keyless;object=swap-p256;type=private\n"
                               "schemes = ecdsa_secp256r1_sha256\n";
    char conf[400], good_pin[300] = "", bad_pin[64], path[500];
    struct rpc_client c;
    uint64_t id = 100;
    int st, n, all_hsm = 1, recovered = 0;
    FILE *f = fopen(pin_path, "r");
    uint8_t swap_spki[512];
    size_t swap_len = token_spki("swap-p256", swap_spki, sizeof(swap_spki));

    if (f != NULL) {
        if (fgets(good_pin, sizeof(good_pin), f) == NULL) {
            good_pin[0] = '\0';
        }
        fclose(f);
    }
    snprintf(bad_pin, sizeof(bad_pin), "0000%s", "deadbeef\n");
    snprintf(conf, sizeof(conf), "%s/shim.conf", H.dir);
    if (!ok(good_pin[0] != '\0' && swap_len > 0 && start_shim(conf, "workers = 1", keys, 0) == 0,
            "signer starts on the shim module")) {
        return;
    }
    is_int(logins(), 1, "one login at start");
    if (!ok(rpc_client_connect(&c, H.sock) == 0, "connect")) {
        return;
    }
    is_int(harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 1), KEYLESS__V1__STATUS__OK, "signs");

    /* A C_Sign that fails and leaves the token's operation active on the session. */
    inject(CKR_FUNCTION_FAILED_HEX);
    is_int(harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 0), KEYLESS__V1__STATUS__HSM_ERROR,
           "a failed C_Sign: HSM_ERROR");
    is_int(harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 1), KEYLESS__V1__STATUS__OK,
           "the next request on the same session signs (the active operation was cleared)");
    ok(harness_file_count(H.errlog, "still had a signing operation active (CKR_OPERATION_ACTIVE): cancelled") == 1,
       "... and SoftHSM2 had really answered CKR_OPERATION_ACTIVE (one line)");
    snprintf(path, sizeof(path), "%s/cancels", shim_dir);
    is_int(harness_file_count(path, "cancel"), 0,
           "... a 2.40 module: cleared with a fresh session, not C_SignInit(NULL)");
    is_int(harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 1), KEYLESS__V1__STATUS__OK, "and it keeps signing");
    is_int(logins(), 1, "no login for that");

    /* The PIN file changes under the running signer, then the token breaks. */
    ok(write_file(pin_path, bad_pin, 0600) == 0, "PIN file changed to a wrong PIN");
    inject(CKR_DEVICE_ERROR_HEX);
    is_int(harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 0), KEYLESS__V1__STATUS__HSM_ERROR,
           "token trouble (CKR_DEVICE_ERROR): HSM_ERROR");
    for (int i = 0; i < 12; i++) {
        sleep_ms(120);
        all_hsm &= harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 0) == KEYLESS__V1__STATUS__HSM_ERROR;
    }
    ok(all_hsm, "with the token refusing the PIN every request answers HSM_ERROR");
    n = logins();
    is_int(n, 2, "1.5 s of requests after the PIN change: exactly one more login attempt");
    snprintf(path, sizeof(path), "%s/logins", shim_dir);
    ok(harness_file_count(path, "login 0xa0") == 1, "... which the token refused (CKR_PIN_INCORRECT)");
    ok(harness_file_count(H.errlog, "refused the PIN in") == 1 && harness_file_count(H.errlog, pin_path) >= 1 &&
           harness_file_count(H.errlog, "SIGHUP") == 1,
       "one line names the PIN file and says that SIGHUP or a restart is needed");

    /* The operator fixes the file and sends SIGHUP. */
    ok(write_file(pin_path, good_pin, 0600) == 0, "PIN file fixed");
    sleep_ms(300);
    is_int(harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 0), KEYLESS__V1__STATUS__HSM_ERROR,
           "a fixed PIN file alone does not make the signer try again");
    is_int(logins(), 2, "... no login attempt");
    kill(H.pid, SIGHUP);
    /* A request that overtakes the signal is refused without a login: retry a little. */
    for (int i = 0; i < 30 && !recovered; i++) {
        recovered = harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 1) == KEYLESS__V1__STATUS__OK;
        if (!recovered) {
            sleep_ms(100);
        }
    }
    ok(recovered, "after SIGHUP the signer logs in again and signs");
    recovered = 0;
    is_int(logins(), 3, "... with one login");
    /* The SIGHUP also reloads the configuration, which logs in first (re-armed) and then probes
     * every key on the token: let it end before the next fault is injected (else the probe takes
     * the fault). With the login done first, the reload after a PIN fix succeeds. */
    for (int i = 0;
         i < 1000 && harness_file_count(H.errlog, "reloaded ") + harness_file_count(H.errlog, "reload failed") == 0;
         i++) {
        sleep_ms(10);
    }
    is_int(harness_file_count(H.errlog, "reloaded "), 1,
           "... and the same SIGHUP reloaded the configuration (logged in first)");

    /* Recovery failing for another reason (PIN file missing): exponential back-off. */
    {
        char moved[500];
        snprintf(moved, sizeof(moved), "%s.away", pin_path);
        ok(rename(pin_path, moved) == 0, "PIN file moved away");
        double ms, most = 2;
        struct timespec t0, t1;
        inject(CKR_DEVICE_ERROR_HEX);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 40; i++) {
            (void)harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 0);
            sleep_ms(40);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        /* Waits of 100, 200, 400, ... ms: at most 2 + log2(ms / 100) attempts in ms (a fixed
         * 100 ms wait would make about ms / 100 of them). */
        for (double w = 200; w <= ms; w *= 2) {
            most += 1;
        }
        n = harness_file_count(H.errlog, "hsm: recovery failed");
        ok(n >= 2 && n <= (int)most, "requests while recovery fails: a few attempts, not one per request");
        diag("%d recovery attempts in %.0f ms (at most %.0f allowed)", n, ms, most);
        ok(harness_file_count(H.errlog, "next attempt in 200 ms") == 1 &&
               harness_file_count(H.errlog, "next attempt in 400 ms") == 1,
           "... the wait doubles (200 ms, 400 ms, ...)");
        is_int(logins(), 3, "... and no login is attempted without a PIN");
        ok(rename(moved, pin_path) == 0, "PIN file back");
        for (int i = 0; i < 100 && !recovered; i++) {
            recovered = harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 1) == KEYLESS__V1__STATUS__OK;
            if (!recovered) {
                sleep_ms(100);
            }
        }
        ok(recovered, "the signer recovers by itself once the PIN file is back");
    }

    /* The swap key is replaced on the token under the same label and id, then trouble. */
    is_int(harness_sign_status(&H, &c, ++id, "swap", 0x0403, 0), KEYLESS__V1__STATUS__OK, "swap key signs");
    ok(keygen("delete", "swap-p256", "18", "") == 0 && keygen("ec256", "swap-p256", "18", "") == 0,
       "the swap key is replaced on the token");
    ok(token_spki("swap-p256", swap_spki + 256, 256) != swap_len || memcmp(swap_spki, swap_spki + 256, swap_len) != 0,
       "... by another public key");
    sleep_ms(200);
    inject(CKR_DEVICE_ERROR_HEX);
    is_int(harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 0), KEYLESS__V1__STATUS__HSM_ERROR,
           "token trouble: HSM_ERROR");
    recovered = 0;
    for (int i = 0; i < 50 && !recovered; i++) {
        recovered = harness_sign_status(&H, &c, ++id, "ecdsa-p256", 0x0403, 1) == KEYLESS__V1__STATUS__OK;
        if (!recovered) {
            sleep_ms(100);
        }
    }
    ok(recovered, "after the re-login the unchanged key signs");
    st = harness_sign_status(&H, &c, ++id, "swap", 0x0403, 0);
    is_int(st, KEYLESS__V1__STATUS__HSM_ERROR, "the replaced key is refused: HSM_ERROR");
    is_int(harness_sign_status(&H, &c, ++id, "swap", 0x0403, 0), KEYLESS__V1__STATUS__HSM_ERROR, "... every time");
    ok(harness_file_count(H.errlog, "swap-p256;type=private has another public key than at start") == 1,
       "one line says the key changed");
    rpc_client_close(&c);
    is_int(harness_stop(&H), 0, "graceful stop");
    ok(harness_file_count(H.errlog, "SIGHUP") == 1, "(the refusal line was not repeated)");
}

int main(void)
{
    if (harness_init(&H) != 0) {
        ok(0, "token fixture");
        return kl_test_done();
    }
    snprintf(pin_path, sizeof(pin_path), "%s/user.pin", H.hsm);
    snprintf(shim_dir, sizeof(shim_dir), "%s/shim", H.dir);
    mkdir(shim_dir, 0700);
    setenv("KL_SHIM_DIR", shim_dir, 1);
    ok(keygen("ec256", "clean-p256", "11", "") == 0 && keygen("ec256", "extr-p256", "12", "extractable") == 0 &&
           keygen("ec256", "auth-p256", "14", "always_auth") == 0 &&
           keygen("rsa2048", "hs-rsa", "15", "allowed=0x43,0x44,0x45") == 0 &&
           keygen("ec256", "hs-p256", "16", "allowed=0x1044") == 0 &&
           keygen("ec256", "raw-p256", "17", "allowed=0x1041") == 0 && keygen("ec256", "swap-p256", "18", "") == 0,
       "test keys made in the token");
    test_key_checks();
    test_mechanism_choice();
    test_hash_only_hsm();
    test_token_trouble();
    test_cancel_v3();
    test_corrupt_sign();
    harness_cleanup(&H);
    return kl_test_done();
}
