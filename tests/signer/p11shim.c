/*
 * p11shim.c - a PKCS#11 module for the signer tests that sits in front of a real one
 * (SoftHSM2) and lets a test see and steer what the signer does with its token:
 *
 *   KL_SHIM_TARGET     the real module (default SoftHSM2's)
 *   KL_SHIM_DIR        a directory for the files below
 *   $DIR/logins        one line per C_Login, "login 0x<rv>": the test counts login attempts
 *   $DIR/sign_fail     if present when C_Sign is called, it is taken (renamed, so exactly one
 *                      call sees it) and that C_Sign returns the CK_RV written in it (hex)
 *                      without calling the real one: the token's signing operation stays
 *                      active, as after a token that fails a C_Sign half-way
 *   $DIR/corrupt_sign  while present, every C_Sign that returns a signature has one bit of
 *                      it flipped: a token that computes a faulty signature (the signer must
 *                      withhold it, issue 13 section 5)
 *   KL_SHIM_HASH_ONLY  if set: an HSM that offers only hash-and-sign mechanisms and does not
 *                      report CKA_ALLOWED_MECHANISMS. CKM_ECDSA and CKM_RSA_PKCS_PSS are
 *                      not offered (C_GetMechanismList/Info, C_SignInit); CKM_ECDSA_SHA256
 *                      and CKM_ECDSA_SHA384 are (hashed here, signed by the real CKM_ECDSA,
 *                      since SoftHSM2 2.6 lacks them); CKA_ALLOWED_MECHANISMS reads fail.
 *   KL_SHIM_V3         if set: C_GetInfo says PKCS#11 3.0, and C_SignInit(NULL mechanism)
 *                      cancels the session's signing operation as 3.0 says (SoftHSM2 2.6
 *                      cannot: the shim ends it with a throw-away C_Sign), one line
 *                      "cancel" in $DIR/cancels each time; without it that call gets
 *                      CKR_ARGUMENTS_BAD, as from a 2.x module
 *   KL_SHIM_SIGN_DELAY_US  if set: every C_Sign that produces a signature first sleeps this
 *                      long, a token whose signature takes that time (signer_bench --remote
 *                      --token-delay-us: an HSM's latency, not this machine's CPU)
 *
 * Everything else goes to the real module unchanged. Test code only: it never ships.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#define SOFTHSM "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"
#define MAX_OPS 256

static CK_FUNCTION_LIST shim;
static CK_FUNCTION_LIST *real;
static void *real_dl;
static pthread_mutex_t ops_lock = PTHREAD_MUTEX_INITIALIZER;

/* The sessions on which an emulated CKM_ECDSA_SHAxxx operation is active, and its hash. */
static struct {
    CK_SESSION_HANDLE session;
    const EVP_MD *md;
} ops[MAX_OPS];

static int hash_only(void)
{
    return getenv("KL_SHIM_HASH_ONLY") != NULL;
}

static void shim_path(char *out, size_t cap, const char *name)
{
    const char *dir = getenv("KL_SHIM_DIR");
    snprintf(out, cap, "%s/%s", dir != NULL ? dir : "/nonexistent", name);
}

static int hidden(CK_MECHANISM_TYPE m)
{
    return hash_only() && (m == CKM_ECDSA || m == CKM_RSA_PKCS_PSS);
}

static const EVP_MD *emulated(CK_MECHANISM_TYPE m)
{
    if (!hash_only()) {
        return NULL;
    }
    return m == CKM_ECDSA_SHA256 ? EVP_sha256() : m == CKM_ECDSA_SHA384 ? EVP_sha384() : NULL;
}

static void op_set(CK_SESSION_HANDLE s, const EVP_MD *md)
{
    int free_i = -1;
    pthread_mutex_lock(&ops_lock);
    for (int i = 0; i < MAX_OPS; i++) {
        if (ops[i].md != NULL && ops[i].session == s) {
            ops[i].md = md;
            pthread_mutex_unlock(&ops_lock);
            return;
        }
        if (ops[i].md == NULL && free_i < 0) {
            free_i = i;
        }
    }
    if (md != NULL && free_i >= 0) {
        ops[free_i].session = s;
        ops[free_i].md = md;
    }
    pthread_mutex_unlock(&ops_lock);
}

static const EVP_MD *op_get(CK_SESSION_HANDLE s)
{
    const EVP_MD *md = NULL;
    pthread_mutex_lock(&ops_lock);
    for (int i = 0; i < MAX_OPS && md == NULL; i++) {
        if (ops[i].md != NULL && ops[i].session == s) {
            md = ops[i].md;
        }
    }
    pthread_mutex_unlock(&ops_lock);
    return md;
}

static CK_RV shim_login(CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG pin_len)
{
    char path[512];
    CK_RV rv = real->C_Login(s, u, pin, pin_len);
    FILE *f;
    shim_path(path, sizeof(path), "logins");
    f = fopen(path, "a");
    if (f != NULL) {
        fprintf(f, "login 0x%lx\n", (unsigned long)rv);
        fclose(f);
    }
    return rv;
}

static CK_RV shim_get_mechanism_list(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n_p)
{
    CK_MECHANISM_TYPE buf[512];
    CK_ULONG n = sizeof(buf) / sizeof(buf[0]), out = 0;
    CK_RV rv;
    if (!hash_only()) {
        return real->C_GetMechanismList(slot, list, n_p);
    }
    rv = real->C_GetMechanismList(slot, buf, &n);
    if (rv != CKR_OK) {
        return rv;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        if (!hidden(buf[i])) {
            buf[out++] = buf[i];
        }
    }
    buf[out++] = CKM_ECDSA_SHA256;
    buf[out++] = CKM_ECDSA_SHA384;
    if (list != NULL) {
        if (*n_p < out) {
            *n_p = out;
            return CKR_BUFFER_TOO_SMALL;
        }
        memcpy(list, buf, out * sizeof(buf[0]));
    }
    *n_p = out;
    return CKR_OK;
}

static CK_RV shim_get_mechanism_info(CK_SLOT_ID slot, CK_MECHANISM_TYPE m, CK_MECHANISM_INFO_PTR info)
{
    if (hidden(m)) {
        return CKR_MECHANISM_INVALID;
    }
    return real->C_GetMechanismInfo(slot, emulated(m) != NULL ? CKM_ECDSA : m, info);
}

static CK_RV shim_get_attribute_value(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    for (CK_ULONG i = 0; hash_only() && i < n; i++) {
        if (t[i].type == CKA_ALLOWED_MECHANISMS) {
            return CKR_ATTRIBUTE_TYPE_INVALID; /* as p11-kit's remoting answers a size query */
        }
    }
    return real->C_GetAttributeValue(s, o, t, n);
}

static CK_RV shim_get_info(CK_INFO_PTR info)
{
    CK_RV rv = real->C_GetInfo(info);
    if (rv == CKR_OK && getenv("KL_SHIM_V3") != NULL) {
        info->cryptokiVersion.major = 3;
        info->cryptokiVersion.minor = 0;
    }
    return rv;
}

/* PKCS#11 3.0 section 5.12: C_SignInit with a NULL mechanism ends the active operation. */
static CK_RV cancel(CK_SESSION_HANDLE s)
{
    char path[512];
    CK_BYTE dummy[64] = {0}, sig[2048];
    CK_ULONG sig_len = sizeof(sig);
    FILE *f;
    if (getenv("KL_SHIM_V3") == NULL) {
        return CKR_ARGUMENTS_BAD;
    }
    (void)real->C_Sign(s, dummy, sizeof(dummy), sig, &sig_len); /* success or not, the operation ends */
    op_set(s, NULL);
    shim_path(path, sizeof(path), "cancels");
    f = fopen(path, "a");
    if (f != NULL) {
        fputs("cancel\n", f);
        fclose(f);
    }
    return CKR_OK;
}

static CK_RV shim_sign_init(CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key)
{
    const EVP_MD *md = mech != NULL ? emulated(mech->mechanism) : NULL;
    CK_RV rv;
    if (mech == NULL) {
        return cancel(s);
    }
    if (mech != NULL && hidden(mech->mechanism)) {
        return CKR_MECHANISM_INVALID;
    }
    if (md != NULL) {
        CK_MECHANISM raw = {CKM_ECDSA, NULL, 0};
        rv = real->C_SignInit(s, &raw, key);
        if (rv == CKR_OK) {
            op_set(s, md);
        }
        return rv;
    }
    return real->C_SignInit(s, mech, key);
}

/* A faulty token: flip one bit of a signature C_Sign returned, while $DIR/corrupt_sign exists. */
static CK_RV corrupt(CK_RV rv, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
    char path[512];
    shim_path(path, sizeof(path), "corrupt_sign");
    if (rv == CKR_OK && sig != NULL && *sig_len > 0 && access(path, F_OK) == 0) {
        sig[*sig_len / 2] ^= 0x01;
    }
    return rv;
}

static CK_RV shim_sign_real(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
    char path[512], taken[520];
    const EVP_MD *md = op_get(s);
    FILE *f;
    shim_path(path, sizeof(path), "sign_fail");
    snprintf(taken, sizeof(taken), "%s.taken", path);
    if (rename(path, taken) == 0 && (f = fopen(taken, "r")) != NULL) {
        unsigned long rv = CKR_FUNCTION_FAILED;
        if (fscanf(f, "%lx", &rv) != 1) {
            rv = CKR_FUNCTION_FAILED;
        }
        fclose(f);
        return (CK_RV)rv; /* the real operation is left active */
    }
    if (md != NULL) {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int dl = 0;
        CK_RV rv;
        if (sig != NULL) {
            op_set(s, NULL);
        }
        if (EVP_Digest(data, len, digest, &dl, md, NULL) != 1) {
            return CKR_FUNCTION_FAILED;
        }
        rv = real->C_Sign(s, digest, dl, sig, sig_len);
        if (rv != CKR_OK && sig != NULL) {
            op_set(s, NULL);
        }
        return rv;
    }
    return real->C_Sign(s, data, len, sig, sig_len);
}

static CK_RV shim_sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len)
{
    const char *delay = getenv("KL_SHIM_SIGN_DELAY_US");
    if (delay != NULL && sig != NULL) {
        usleep((useconds_t)strtoul(delay, NULL, 10));
    }
    return corrupt(shim_sign_real(s, data, len, sig, sig_len), sig, sig_len);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list_p);

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list_p)
{
    if (real == NULL) {
        const char *target = getenv("KL_SHIM_TARGET");
        CK_C_GetFunctionList get;
        real_dl = dlopen(target != NULL ? target : SOFTHSM, RTLD_NOW | RTLD_LOCAL);
        if (real_dl == NULL) {
            return CKR_GENERAL_ERROR;
        }
        *(void **)&get = dlsym(real_dl, "C_GetFunctionList");
        if (get == NULL || get(&real) != CKR_OK || real == NULL) {
            return CKR_GENERAL_ERROR;
        }
        shim = *real;
        shim.C_Login = shim_login;
        shim.C_GetInfo = shim_get_info;
        shim.C_GetMechanismList = shim_get_mechanism_list;
        shim.C_GetMechanismInfo = shim_get_mechanism_info;
        shim.C_GetAttributeValue = shim_get_attribute_value;
        shim.C_SignInit = shim_sign_init;
        shim.C_Sign = shim_sign;
    }
    *list_p = &shim;
    return CKR_OK;
}
