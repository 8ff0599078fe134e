/*
 * p11_backend.c - PKCS#11 through p11-kit: module, token, login, session pool, keys, C_Sign.
 * Hashing, public keys and signature encodings around the token are crypto.c's.
 *
 * Locking: each module instance (struct p11_inst) has a rwlock. Signing holds its
 * instance's shared (each worker uses only its own session, and PKCS#11 with
 * CKF_OS_LOCKING_OK allows concurrent calls on distinct sessions; a worker may even replace
 * its own session under the shared lock, to clear a CKR_OPERATION_ACTIVE); the recovery of
 * an instance holds its lock exclusive, so no C_Sign runs against a session that is being
 * torn down while the other instances sign on. Key and secret look-up and release hold every
 * instance's lock exclusive (in index order), the start-up mechanism probe the first one's.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "p11_backend.h"
#include "clock.h"
#include "crypto.h"
#include "kl_buf.h"
#include "log.h"
#include "tls_ids.h"

#define PIN_MAX 256
/* Do not hammer a token that is away: the wait between failed recoveries doubles from
 * the first to the last value, and a success resets it. */
#define RECOVER_FIRST_INTERVAL_NS (100 * 1000 * 1000ull)
#define RECOVER_MAX_INTERVAL_NS (10 * 1000 * 1000 * 1000ull)
#define KEY_MAX_SCHEMES 16

/* The mechanism chosen for one scheme of a key (p11_key_check_scheme). */
struct key_mech {
    uint16_t scheme;
    CK_MECHANISM_TYPE mech;
    int hashed; /* a hash-and-sign mechanism: the token gets the whole content */
};

struct p11_key {
    struct p11_key *next;
    char *uri_str;
    P11KitUri *uri;
    CK_OBJECT_HANDLE priv[P11_INSTANCES_MAX]; /* per instance, valid for its current module generation */
    CK_KEY_TYPE ck_type;
    enum p11_key_type type;
    enum crypto_curve curve; /* EC only */
    size_t ec_field_len;
    int can_sign;
    CK_MECHANISM_TYPE allowed[32];
    size_t allowed_n; /* 0: the token gave no list (treated as "any") */
    struct crypto_pubkey *pub;
    uint8_t spki[P11_SPKI_MAX];
    size_t spki_len;
    uint8_t spki_sha256[CRYPTO_SHA256_LEN]; /* of spki: named in every sign record */
    int extractable, decrypt, unwrap;       /* what it allows beyond signing (p11_key_hygiene) */
    struct key_mech mechs[KEY_MAX_SCHEMES];
    size_t n_mechs;
    /* per instance, after a re-login there: gone, or another public key; under that instance's lock */
    unsigned char refused[P11_INSTANCES_MAX];
};

/*
 * One instance of the module: its own function list (p11-kit-client.so: its own connection,
 * so its own server process), initialisation, slot, sessions, lock and recovery state. A
 * module loaded once has one instance; [hsm] module_instances = N loads N of a remoting
 * module, so that a broken connection breaks, and recovers, only the sessions on it.
 */
struct p11_inst {
    CK_FUNCTION_LIST *f;
    unsigned idx; /* for log lines */
    int initialized;
    CK_SLOT_ID slot;
    unsigned n_sessions;
    CK_SESSION_HANDLE *sessions; /* its sessions; sessions[0] is the one for logins and look-ups */
    pthread_rwlock_t lock;
    atomic_int broken;
    uint64_t last_recover_ns;
    uint64_t recover_interval_ns; /* the back-off; under the write lock */
    atomic_uint rearm_seen;       /* the be->rearm generation this instance has acted on */
    CK_RV login_rv;               /* what its last C_Login returned; under the write lock */
    int cancel_with_null;         /* PKCS#11 3.0: C_SignInit(NULL mechanism) cancels an operation */
};

struct p11_backend {
    CK_FUNCTION_LIST **p11kit_modules; /* when loaded by name */
    void *dl;                          /* when dlopen()ed (p11-kit-proxy.so, or several instances) */
    int p11kit_loaded;                 /* inst[0].f came from p11_kit_module_load */
    P11KitUri *token_uri;
    char *pin_file;
    unsigned n_sessions; /* over all instances: session s is inst[s % n_inst].sessions[s / n_inst] */
    unsigned n_inst;
    struct p11_inst *inst;
    struct p11_key *keys;       /* the lists change under every instance's write lock */
    struct p11_secret *secrets; /* issue 11: the ticket root */
    /* Logins on all instances go one at a time: the token counts refused PINs, so one
     * refusal stops every instance until the operator re-arms (a new rearm generation). */
    pthread_mutex_t login_lock;
    int pin_refused;          /* under login_lock */
    unsigned pin_refused_gen; /* the rearm generation it was refused in; under login_lock */
    atomic_uint rearm;        /* generation: p11_backend_rearm() adds one */
    atomic_uint recoveries;
    atomic_uint logins;
};

static const char *rv_str(CK_RV rv)
{
    switch (rv) {
    case CKR_OK:
        return "CKR_OK";
    case CKR_HOST_MEMORY:
        return "CKR_HOST_MEMORY";
    case CKR_SLOT_ID_INVALID:
        return "CKR_SLOT_ID_INVALID";
    case CKR_GENERAL_ERROR:
        return "CKR_GENERAL_ERROR";
    case CKR_FUNCTION_FAILED:
        return "CKR_FUNCTION_FAILED";
    case CKR_ARGUMENTS_BAD:
        return "CKR_ARGUMENTS_BAD";
    case CKR_ATTRIBUTE_TYPE_INVALID:
        return "CKR_ATTRIBUTE_TYPE_INVALID";
    case CKR_DEVICE_ERROR:
        return "CKR_DEVICE_ERROR";
    case CKR_DEVICE_REMOVED:
        return "CKR_DEVICE_REMOVED";
    case CKR_KEY_HANDLE_INVALID:
        return "CKR_KEY_HANDLE_INVALID";
    case CKR_KEY_TYPE_INCONSISTENT:
        return "CKR_KEY_TYPE_INCONSISTENT";
    case CKR_MECHANISM_INVALID:
        return "CKR_MECHANISM_INVALID";
    case CKR_MECHANISM_PARAM_INVALID:
        return "CKR_MECHANISM_PARAM_INVALID";
    case CKR_OBJECT_HANDLE_INVALID:
        return "CKR_OBJECT_HANDLE_INVALID";
    case CKR_OPERATION_ACTIVE:
        return "CKR_OPERATION_ACTIVE";
    case CKR_PIN_INCORRECT:
        return "CKR_PIN_INCORRECT";
    case CKR_PIN_LOCKED:
        return "CKR_PIN_LOCKED";
    case CKR_PIN_EXPIRED:
        return "CKR_PIN_EXPIRED";
    case CKR_PIN_INVALID:
        return "CKR_PIN_INVALID";
    case CKR_PIN_LEN_RANGE:
        return "CKR_PIN_LEN_RANGE";
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
        return "CKR_KEY_FUNCTION_NOT_PERMITTED";
    case CKR_FUNCTION_NOT_SUPPORTED:
        return "CKR_FUNCTION_NOT_SUPPORTED";
    case CKR_OPERATION_NOT_INITIALIZED:
        return "CKR_OPERATION_NOT_INITIALIZED";
    case CKR_SESSION_CLOSED:
        return "CKR_SESSION_CLOSED";
    case CKR_SESSION_HANDLE_INVALID:
        return "CKR_SESSION_HANDLE_INVALID";
    case CKR_TOKEN_NOT_PRESENT:
        return "CKR_TOKEN_NOT_PRESENT";
    case CKR_USER_NOT_LOGGED_IN:
        return "CKR_USER_NOT_LOGGED_IN";
    case CKR_BUFFER_TOO_SMALL:
        return "CKR_BUFFER_TOO_SMALL";
    case CKR_CRYPTOKI_NOT_INITIALIZED:
        return "CKR_CRYPTOKI_NOT_INITIALIZED";
    case CKR_CRYPTOKI_ALREADY_INITIALIZED:
        return "CKR_CRYPTOKI_ALREADY_INITIALIZED";
    default:
        return "CKR_(other)";
    }
}

/* The return values after which sessions, login or object handles cannot be trusted. */
static int rv_needs_recovery(CK_RV rv)
{
    switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_DEVICE_REMOVED:
    case CKR_DEVICE_ERROR:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_GENERAL_ERROR:
        return 1;
    default:
        return 0;
    }
}

/* The login failures that are the PIN's: asking again with the same PIN only counts
 * another failed attempt towards the token's lock. */
static int rv_pin_refused(CK_RV rv)
{
    return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED || rv == CKR_PIN_INVALID ||
           rv == CKR_PIN_LEN_RANGE;
}

static const char *mech_str(CK_MECHANISM_TYPE m)
{
    switch (m) {
    case CKM_ECDSA:
        return "CKM_ECDSA";
    case CKM_ECDSA_SHA256:
        return "CKM_ECDSA_SHA256";
    case CKM_ECDSA_SHA384:
        return "CKM_ECDSA_SHA384";
    case CKM_RSA_PKCS_PSS:
        return "CKM_RSA_PKCS_PSS";
    case CKM_SHA256_RSA_PKCS_PSS:
        return "CKM_SHA256_RSA_PKCS_PSS";
    case CKM_SHA384_RSA_PKCS_PSS:
        return "CKM_SHA384_RSA_PKCS_PSS";
    case CKM_SHA512_RSA_PKCS_PSS:
        return "CKM_SHA512_RSA_PKCS_PSS";
    case CKM_EDDSA:
        return "CKM_EDDSA";
    default:
        return "CKM_(other)";
    }
}

/* ---- the scheme table: what each TLS SignatureScheme needs from the key and token ---- */

/* The key type, curve and hash of a scheme come from common/tls_ids; this table adds what
 * PKCS#11 needs for it. A scheme missing here is one the signer cannot sign with. */
struct scheme_info {
    uint16_t scheme;
    enum p11_key_type type;
    enum crypto_curve curve; /* EC only */
    enum tls_hash hash;      /* TLS_HASH_NONE: Ed25519 signs the content itself */
    size_t hash_len;
    CK_MECHANISM_TYPE mech;    /* raw: signs the digest (Ed25519: the content) */
    CK_MECHANISM_TYPE hs_mech; /* hash-and-sign: signs the content; 0 if there is none */
    CK_MECHANISM_TYPE ck_hash; /* RSA-PSS hashAlg */
    CK_RSA_PKCS_MGF_TYPE mgf;
};

static const struct {
    uint16_t scheme;
    CK_MECHANISM_TYPE mech;
    CK_MECHANISM_TYPE hs_mech;
    CK_MECHANISM_TYPE ck_hash;
    CK_RSA_PKCS_MGF_TYPE mgf;
} mechanisms[] = {
    {TLS_SIG_ECDSA_SECP256R1_SHA256, CKM_ECDSA, CKM_ECDSA_SHA256, 0, 0},
    {TLS_SIG_ECDSA_SECP384R1_SHA384, CKM_ECDSA, CKM_ECDSA_SHA384, 0, 0},
    {TLS_SIG_RSA_PSS_RSAE_SHA256, CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA256},
    {TLS_SIG_RSA_PSS_RSAE_SHA384, CKM_RSA_PKCS_PSS, CKM_SHA384_RSA_PKCS_PSS, CKM_SHA384, CKG_MGF1_SHA384},
    {TLS_SIG_RSA_PSS_RSAE_SHA512, CKM_RSA_PKCS_PSS, CKM_SHA512_RSA_PKCS_PSS, CKM_SHA512, CKG_MGF1_SHA512},
    {TLS_SIG_ED25519, CKM_EDDSA, 0, 0, 0}, /* PureEdDSA already signs the whole content */
};

/* Everything about scheme in *si; 0, or -1 if the signer cannot sign with it. */
static int scheme_lookup(struct scheme_info *si, uint16_t scheme)
{
    const struct tls_scheme_info *t = tls_scheme_by_id(scheme);

    for (size_t i = 0; t != NULL && i < sizeof(mechanisms) / sizeof(mechanisms[0]); i++) {
        if (mechanisms[i].scheme != scheme) {
            continue;
        }
        memset(si, 0, sizeof(*si));
        si->scheme = scheme;
        si->mech = mechanisms[i].mech;
        si->hs_mech = mechanisms[i].hs_mech;
        si->ck_hash = mechanisms[i].ck_hash;
        si->mgf = mechanisms[i].mgf;
        si->hash = t->hash;
        si->hash_len = tls_hash_len(t->hash);
        switch (t->key) {
        case TLS_KEY_EC_P256:
            si->type = P11_KEY_EC;
            si->curve = CRYPTO_CURVE_P256;
            return 0;
        case TLS_KEY_EC_P384:
            si->type = P11_KEY_EC;
            si->curve = CRYPTO_CURVE_P384;
            return 0;
        case TLS_KEY_RSA:
            si->type = P11_KEY_RSA;
            return 0;
        case TLS_KEY_ED25519:
            si->type = P11_KEY_ED25519;
            return 0;
        case TLS_KEY_NONE:
        default:
            return -1;
        }
    }
    return -1;
}

/* ---- PIN ---- */

/* Read the first line of pin_file into pin (NUL-terminated). The caller wipes pin. */
static int pin_read(char *pin, size_t pin_cap, size_t *pin_len_p, char *err, size_t err_len, const char *pin_file)
{
    int ret = 0, fd = -1;
    struct stat st;
    ssize_t n;

    fd = open(pin_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(err, err_len, "cannot read PIN file %s: %s", pin_file, strerror(errno));
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "PIN file %s is not a regular file", pin_file);
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0) {
        snprintf(err, err_len, "PIN file %s is accessible by others (mode %03o); chmod o-rw it", pin_file,
                 (unsigned)(st.st_mode & 0777));
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    n = read(fd, pin, pin_cap - 1);
    if (n < 0) {
        snprintf(err, err_len, "cannot read PIN file %s: %s", pin_file, strerror(errno));
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    pin[n] = '\0';
    pin[strcspn(pin, "\r\n")] = '\0';
    *pin_len_p = strlen(pin);
    if (*pin_len_p == 0) {
        snprintf(err, err_len, "PIN file %s is empty", pin_file);
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
exit:
    if (fd >= 0) {
        close(fd);
    }
    return ret;
}

/*
 * Log instance in with the PIN file's PIN. *fail_p says whether a failure is the PIN's (the
 * file, or a PIN the token refuses) or the token's. After a refusal on any instance no
 * instance asks again until the operator re-arms (a new rearm generation).
 */
static int login(struct p11_backend *be, struct p11_inst *in, enum p11_fail *fail_p, char *err, size_t err_len)
{
    int ret = 0;
    char pin[PIN_MAX];
    size_t pin_len = 0;
    unsigned gen;
    CK_RV rv;

    *fail_p = P11_FAIL_PIN;
    in->login_rv = CKR_OK;
    pthread_mutex_lock(&be->login_lock);
    gen = atomic_load(&be->rearm);
    if (be->pin_refused && be->pin_refused_gen == gen) {
        snprintf(err, err_len, "the token refused the PIN in %s; not asked again until SIGHUP or a restart",
                 be->pin_file);
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    if (be->pin_refused) {
        log_info("hsm: re-armed: logging in again with PIN file %s", be->pin_file);
    }
    KL_TRY(pin_read(pin, sizeof(pin), &pin_len, err, err_len, be->pin_file));
    atomic_fetch_add(&be->logins, 1);
    rv = in->f->C_Login(in->sessions[0], CKU_USER, (CK_UTF8CHAR_PTR)pin, pin_len);
    in->login_rv = rv;
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        int pin_refused = rv_pin_refused(rv);
        snprintf(err, err_len, "C_Login failed: %s (0x%lx)", rv_str(rv), (unsigned long)rv);
        *fail_p = pin_refused ? P11_FAIL_PIN : P11_FAIL_TOKEN;
        if (pin_refused) {
            be->pin_refused = 1;
            be->pin_refused_gen = gen;
        }
        KL_ENSURE(0, pin_refused ? KL_ERR_CONFIG : KL_ERR_HSM);
    }
    be->pin_refused = 0;
exit:
    pthread_mutex_unlock(&be->login_lock);
    kl_wipe(pin, sizeof(pin));
    return ret;
}

/* ---- module, slot, sessions ---- */

static int is_proxy_path(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    return strncmp(base, "p11-kit-proxy", 13) == 0;
}

/*
 * Load module_path with dlopen and take be->n_inst function lists from it, one
 * C_GetFunctionList call each. Several instances need a module that makes a new one per
 * call (p11-kit-client.so: a new connection each); one that returns the same list again
 * has one state per process (SoftHSM, most vendor modules) and is refused (P11_FAIL_INSTANCES).
 */
static int module_dlopen(struct p11_backend *be, enum p11_fail *fail_p, char *err, size_t err_len,
                         const char *module_path)
{
    CK_C_GetFunctionList get;

    be->dl = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
    if (be->dl == NULL) {
        snprintf(err, err_len, "cannot load %s: %s", module_path, dlerror());
        return KL_ERR_CONFIG;
    }
    *(void **)&get = dlsym(be->dl, "C_GetFunctionList");
    for (unsigned i = 0; i < be->n_inst; i++) {
        if (get == NULL || get(&be->inst[i].f) != CKR_OK || be->inst[i].f == NULL) {
            snprintf(err, err_len, "%s has no usable C_GetFunctionList", module_path);
            return KL_ERR_CONFIG;
        }
        for (unsigned k = 0; k < i; k++) {
            if (be->inst[k].f == be->inst[i].f) {
                *fail_p = P11_FAIL_INSTANCES;
                snprintf(err, err_len,
                         "%s gives the same function list to every C_GetFunctionList call (one instance per "
                         "process, as SoftHSM and most vendor modules), so %u instances would share one; set "
                         "module_instances = 1, or use a module that makes one per call (p11-kit-client.so)",
                         module_path, be->n_inst);
                return KL_ERR_CONFIG;
            }
        }
    }
    return 0;
}

static int module_load(struct p11_backend *be, enum p11_fail *fail_p, char *err, size_t err_len,
                       const char *module_path, const char *module_name)
{
    if (module_name != NULL) {
        if (be->n_inst > 1) {
            /* p11-kit hands out one function list per registered module. */
            *fail_p = P11_FAIL_INSTANCES;
            snprintf(err, err_len, "several instances need module = PATH (a module file), not module_name");
            return KL_ERR_CONFIG;
        }
        /* Registered modules (p11-kit list-modules); we initialise only the one we use. */
        be->p11kit_modules = p11_kit_modules_load(NULL, 0);
        if (be->p11kit_modules == NULL) {
            snprintf(err, err_len, "p11-kit could not load the registered modules: %s", p11_kit_message());
            return KL_ERR_CONFIG;
        }
        be->inst[0].f = p11_kit_module_for_name(be->p11kit_modules, module_name);
        if (be->inst[0].f == NULL) {
            snprintf(err, err_len, "no PKCS#11 module named '%s' is registered with p11-kit", module_name);
            return KL_ERR_CONFIG;
        }
        return 0;
    }
    if (be->n_inst > 1 || is_proxy_path(module_path)) {
        /* p11_kit_module_load() refuses the proxy, and it would hand out one list per
         * module: a plain PKCS#11 module is loaded as one. */
        return module_dlopen(be, fail_p, err, err_len, module_path);
    }
    be->inst[0].f = p11_kit_module_load(module_path, 0);
    if (be->inst[0].f == NULL) {
        snprintf(err, err_len, "cannot load PKCS#11 module %s: %s", module_path, p11_kit_message());
        return KL_ERR_CONFIG;
    }
    be->p11kit_loaded = 1;
    return 0;
}

static int module_initialize(struct p11_inst *in, char *err, size_t err_len)
{
    CK_C_INITIALIZE_ARGS args;
    CK_RV rv;

    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    rv = in->f->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        snprintf(err, err_len, "C_Initialize failed: %s (0x%lx)", rv_str(rv), (unsigned long)rv);
        return KL_ERR_HSM;
    }
    in->initialized = 1;
    {
        /* Cancelling an operation with C_SignInit(NULL) is PKCS#11 3.0; a 2.x module may
         * take the NULL for a bad argument at best, so it gets a fresh session instead. */
        CK_INFO info;
        in->cancel_with_null = in->f->C_GetInfo(&info) == CKR_OK && info.cryptokiVersion.major >= 3;
    }
    return 0;
}

static void token_label(char *out, const CK_TOKEN_INFO *ti)
{
    size_t n = sizeof(ti->label);
    memcpy(out, ti->label, n);
    while (n > 0 && out[n - 1] == ' ') {
        n--;
    }
    out[n] = '\0';
}

static int slot_find(const struct p11_backend *be, struct p11_inst *in, char *err, size_t err_len)
{
    int ret = 0;
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_RV rv;
    int found = 0;

    rv = in->f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK) {
        snprintf(err, err_len, "C_GetSlotList failed: %s (0x%lx)", rv_str(rv), (unsigned long)rv);
        KL_ENSURE(0, KL_ERR_HSM);
    }
    KL_ENSURE(n <= 4096, KL_ERR_HSM);
    slots = calloc(n + 1, sizeof(*slots));
    KL_ENSURE(slots != NULL, KL_ERR_NO_MEMORY);
    rv = in->f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        snprintf(err, err_len, "C_GetSlotList failed: %s (0x%lx)", rv_str(rv), (unsigned long)rv);
        KL_ENSURE(0, KL_ERR_HSM);
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (in->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK) {
            continue;
        }
        if (p11_kit_uri_match_token_info(be->token_uri, &ti)) {
            if (found) {
                char label[33];
                token_label(label, &ti);
                snprintf(err, err_len, "several tokens match the key URI (label '%s'); add serial= to it", label);
                KL_ENSURE(0, KL_ERR_CONFIG);
            }
            in->slot = slots[i];
            found = 1;
        }
    }
    if (!found) {
        snprintf(err, err_len, "no token matching the key URI is present (%lu token(s) seen)", (unsigned long)n);
        KL_ENSURE(0, KL_ERR_NOT_FOUND);
    }
exit:
    free(slots);
    return ret;
}

static int sessions_open(struct p11_inst *in, char *err, size_t err_len)
{
    for (unsigned i = 0; i < in->n_sessions; i++) {
        CK_RV rv = in->f->C_OpenSession(in->slot, CKF_SERIAL_SESSION, NULL, NULL, &in->sessions[i]);
        if (rv != CKR_OK) {
            in->sessions[i] = CK_INVALID_HANDLE;
            snprintf(err, err_len, "C_OpenSession failed: %s (0x%lx)", rv_str(rv), (unsigned long)rv);
            return KL_ERR_HSM;
        }
    }
    return 0;
}

static void sessions_close(struct p11_inst *in)
{
    for (unsigned i = 0; i < in->n_sessions; i++) {
        if (in->sessions[i] != CK_INVALID_HANDLE) {
            (void)in->f->C_CloseSession(in->sessions[i]);
            in->sessions[i] = CK_INVALID_HANDLE;
        }
    }
}

/* ---- keys ---- */

/* Read one attribute of variable size into a fresh allocation (*val_p, *len_p). */
static int attr_get(struct p11_inst *in, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, uint8_t **val_p, size_t *len_p)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv = in->f->C_GetAttributeValue(in->sessions[0], obj, &a, 1);
    if (rv != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > 65536) {
        return KL_ERR_HSM;
    }
    *val_p = malloc(a.ulValueLen + 1);
    if (*val_p == NULL) {
        return KL_ERR_NO_MEMORY;
    }
    a.pValue = *val_p;
    rv = in->f->C_GetAttributeValue(in->sessions[0], obj, &a, 1);
    if (rv != CKR_OK) {
        free(*val_p);
        *val_p = NULL;
        return KL_ERR_HSM;
    }
    *len_p = a.ulValueLen;
    return 0;
}

/* Find objects matching tmpl; *n_p in: capacity of out, out: found count (capped). */
static int objects_find(struct p11_inst *in, CK_OBJECT_HANDLE *out, CK_ULONG *n_p, CK_ATTRIBUTE *tmpl, CK_ULONG tmpl_n)
{
    CK_SESSION_HANDLE s = in->sessions[0];
    CK_ULONG cap = *n_p, got = 0;
    CK_RV rv = in->f->C_FindObjectsInit(s, tmpl, tmpl_n);
    if (rv != CKR_OK) {
        return KL_ERR_HSM;
    }
    rv = in->f->C_FindObjects(s, out, cap, &got);
    (void)in->f->C_FindObjectsFinal(s);
    if (rv != CKR_OK) {
        return KL_ERR_HSM;
    }
    *n_p = got;
    return 0;
}

/* The private key handle for key->uri: exactly one private key must match. */
static int key_find_private(struct p11_inst *in, CK_OBJECT_HANDLE *priv_p, char *err, size_t err_len,
                            struct p11_key *key)
{
    CK_ATTRIBUTE tmpl[8];
    CK_ULONG n_attrs = 0, tn = 0, found = 2;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_OBJECT_HANDLE h[2];
    CK_ATTRIBUTE *attrs = p11_kit_uri_get_attributes(key->uri, &n_attrs);

    for (CK_ULONG i = 0; i < n_attrs && tn < 7; i++) {
        if (attrs[i].type == CKA_CLASS) {
            continue;
        }
        tmpl[tn++] = attrs[i];
    }
    tmpl[tn].type = CKA_CLASS;
    tmpl[tn].pValue = &cls;
    tmpl[tn].ulValueLen = sizeof(cls);
    tn++;
    if (objects_find(in, h, &found, tmpl, tn) != 0) {
        snprintf(err, err_len, "C_FindObjects failed");
        return KL_ERR_HSM;
    }
    if (found == 0) {
        snprintf(err, err_len, "no private key on the token matches %s (or it needs a login)", key->uri_str);
        return KL_ERR_NOT_FOUND;
    }
    if (found > 1) {
        snprintf(err, err_len, "several private keys match %s; make the URI precise (id=)", key->uri_str);
        return KL_ERR_CONFIG;
    }
    *priv_p = h[0];
    return 0;
}

/* The public key object paired with priv: same CKA_ID if it has one, else same label. */
static int key_find_public(struct p11_inst *in, CK_OBJECT_HANDLE *pub_p, CK_OBJECT_HANDLE priv)
{
    int ret = 0;
    uint8_t *id = NULL, *label = NULL;
    size_t id_len = 0, label_len = 0;
    CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
    CK_ATTRIBUTE tmpl[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, NULL, 0}};
    CK_OBJECT_HANDLE h[2];
    CK_ULONG found = 2;

    if (attr_get(in, priv, CKA_ID, &id, &id_len) == 0 && id_len > 0) {
        tmpl[1].pValue = id;
        tmpl[1].ulValueLen = id_len;
    } else if (attr_get(in, priv, CKA_LABEL, &label, &label_len) == 0 && label_len > 0) {
        tmpl[1].type = CKA_LABEL;
        tmpl[1].pValue = label;
        tmpl[1].ulValueLen = label_len;
    } else {
        KL_ENSURE(0, KL_ERR_NOT_FOUND);
    }
    KL_TRY(objects_find(in, h, &found, tmpl, 2));
    KL_ENSURE(found == 1, KL_ERR_NOT_FOUND);
    *pub_p = h[0];
exit:
    free(id);
    free(label);
    return ret;
}

static int key_public_rsa(struct p11_inst *in, struct p11_key *key, CK_OBJECT_HANDLE obj)
{
    int ret = 0;
    uint8_t *mod = NULL, *exp = NULL;
    size_t mod_len = 0, exp_len = 0;

    KL_TRY(attr_get(in, obj, CKA_MODULUS, &mod, &mod_len));
    KL_TRY(attr_get(in, obj, CKA_PUBLIC_EXPONENT, &exp, &exp_len));
    KL_TRY(crypto_pubkey_rsa(&key->pub, mod, mod_len, exp, exp_len));
exit:
    free(mod);
    free(exp);
    return ret;
}

/* CKA_EC_POINT is a DER OCTET STRING per the standard; some tokens give the raw point. */
static int ec_point_unwrap(const uint8_t **pt_p, size_t *pt_len_p, const uint8_t *der, size_t der_len)
{
    if (der_len >= 2 && der[0] == 0x04) {
        size_t hdr = 2, len = der[1];
        if (der[1] == 0x81 && der_len >= 3) {
            hdr = 3;
            len = der[2];
        } else if (der[1] > 0x81) {
            len = SIZE_MAX;
        }
        if (len != SIZE_MAX && hdr + len == der_len) {
            *pt_p = der + hdr;
            *pt_len_p = len;
            return 0;
        }
    }
    *pt_p = der;
    *pt_len_p = der_len;
    return 0;
}

static int key_public_ec(struct p11_inst *in, struct p11_key *key, CK_OBJECT_HANDLE obj, char *err, size_t err_len)
{
    static const uint8_t oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
    static const uint8_t str_ed25519[] = {0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9'};
    int ret = 0;
    uint8_t *params = NULL, *point = NULL;
    size_t params_len = 0, point_len = 0, pt_len = 0;
    const uint8_t *pt = NULL;

    KL_TRY(attr_get(in, obj, CKA_EC_PARAMS, &params, &params_len));
    KL_TRY(attr_get(in, obj, CKA_EC_POINT, &point, &point_len));
    KL_TRY(ec_point_unwrap(&pt, &pt_len, point, point_len));
    if (key->ck_type == CKK_EC_EDWARDS) {
        /* RFC 8410 OID 1.3.101.112, or the printable string "edwards25519" (PKCS#11 3.0 allows both). */
        int is_ed25519 = (params_len == sizeof(oid_ed25519) && memcmp(params, oid_ed25519, params_len) == 0) ||
                         (params_len == sizeof(str_ed25519) && memcmp(params, str_ed25519, params_len) == 0);
        if (!is_ed25519 || pt_len != 32) {
            snprintf(err, err_len, "Edwards key is not Ed25519 (only Ed25519 is supported)");
            KL_ENSURE(0, KL_ERR_CONFIG);
        }
        key->type = P11_KEY_ED25519;
        KL_TRY(crypto_pubkey_ed25519(&key->pub, pt, pt_len));
    } else {
        key->curve = crypto_curve_from_params(params, params_len);
        if (key->curve == CRYPTO_CURVE_UNKNOWN) {
            snprintf(err, err_len, "EC key on an unsupported curve (CKA_EC_PARAMS is not P-256/P-384/P-521)");
            KL_ENSURE(0, KL_ERR_CONFIG);
        }
        key->type = P11_KEY_EC;
        key->ec_field_len = crypto_curve_field_len(key->curve);
        if ((ret = crypto_pubkey_ec(&key->pub, key->curve, pt, pt_len)) != 0) {
            snprintf(err, err_len, "the token's EC public key does not parse");
            goto exit;
        }
    }
exit:
    free(params);
    free(point);
    return ret;
}

/* A CK_BBOOL attribute of obj; *val_p stays false when the token does not report it. */
static void attr_bool(struct p11_inst *in, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, int *val_p)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};
    *val_p =
        in->f->C_GetAttributeValue(in->sessions[0], obj, &a, 1) == CKR_OK && a.ulValueLen == sizeof(v) && v == CK_TRUE;
}

/* Find key's private object and read everything the signer needs into key: handle, type,
 * public key and SPKI, allowed mechanisms, what it allows beyond signing. */
static int key_read(struct p11_inst *in, struct p11_key *key, char *err, size_t err_len)
{
    int ret = 0, always_auth = 0;
    CK_OBJECT_HANDLE priv, pub = CK_INVALID_HANDLE;
    CK_KEY_TYPE kt = 0;
    CK_BBOOL can_sign = CK_FALSE;
    CK_ATTRIBUTE a[2] = {{CKA_KEY_TYPE, &kt, sizeof(kt)}, {CKA_SIGN, &can_sign, sizeof(can_sign)}};
    uint8_t *mechs = NULL;
    size_t mechs_len = 0;

    KL_TRY(key_find_private(in, &priv, err, err_len, key));
    if (in->f->C_GetAttributeValue(in->sessions[0], priv, a, 2) != CKR_OK) {
        snprintf(err, err_len, "cannot read CKA_KEY_TYPE/CKA_SIGN of %s", key->uri_str);
        KL_ENSURE(0, KL_ERR_HSM);
    }
    key->priv[in->idx] = priv;
    key->ck_type = kt;
    key->can_sign = can_sign == CK_TRUE;
    attr_bool(in, priv, CKA_ALWAYS_AUTHENTICATE, &always_auth);
    if (always_auth) {
        /* Each C_Sign would need a context-specific C_Login with the PIN: a PIN use per
         * handshake, and a locked token after a burst of failures. */
        snprintf(err, err_len,
                 "%s has CKA_ALWAYS_AUTHENTICATE (the token wants the PIN again for every signature), which the "
                 "signer does not do; use a key without it",
                 key->uri_str);
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    attr_bool(in, priv, CKA_EXTRACTABLE, &key->extractable);
    attr_bool(in, priv, CKA_DECRYPT, &key->decrypt);
    attr_bool(in, priv, CKA_UNWRAP, &key->unwrap);
    /* CKA_ALLOWED_MECHANISMS is optional: SoftHSM2 reports it empty, p11-kit remoting and
     * some tokens fail it. Only a non-empty list restricts the key. */
    key->allowed_n = 0;
    if (attr_get(in, priv, CKA_ALLOWED_MECHANISMS, &mechs, &mechs_len) == 0 && mechs_len > 0) {
        key->allowed_n = mechs_len / sizeof(CK_MECHANISM_TYPE);
        if (key->allowed_n > sizeof(key->allowed) / sizeof(key->allowed[0])) {
            key->allowed_n = sizeof(key->allowed) / sizeof(key->allowed[0]);
        }
        memcpy(key->allowed, mechs, key->allowed_n * sizeof(CK_MECHANISM_TYPE));
    }
    if (key_find_public(in, &pub, priv) != 0) {
        pub = CK_INVALID_HANDLE;
    }
    if (kt == CKK_RSA) {
        key->type = P11_KEY_RSA;
        /* A private RSA key exposes its public half too; the public object is not needed. */
        if ((ret = key_public_rsa(in, key, pub != CK_INVALID_HANDLE ? pub : priv)) != 0) {
            snprintf(err, err_len, "cannot read the RSA public key of %s", key->uri_str);
            goto exit;
        }
    } else if (kt == CKK_EC || kt == CKK_EC_EDWARDS) {
        if (pub == CK_INVALID_HANDLE) {
            snprintf(err, err_len, "no public key object pairs with %s (same CKA_ID or label)", key->uri_str);
            KL_ENSURE(0, KL_ERR_NOT_FOUND);
        }
        KL_TRY(key_public_ec(in, key, pub, err, err_len));
    } else {
        snprintf(err, err_len, "%s has unsupported key type 0x%lx", key->uri_str, (unsigned long)kt);
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    key->spki_len = sizeof(key->spki);
    if ((ret = crypto_pubkey_spki(key->pub, key->spki, &key->spki_len)) != 0) {
        ret = KL_ERR_CRYPTO; /* an SPKI over P11_SPKI_MAX included */
        goto exit;
    }
    crypto_sha256(key->spki_sha256, key->spki, key->spki_len);
exit:
    free(mechs);
    return ret;
}

/* ---- secret keys: the ticket root (issue 11) ---- */

struct p11_secret {
    struct p11_secret *next;
    char *label;
    CK_OBJECT_HANDLE h[P11_INSTANCES_MAX]; /* per instance, valid for its current module generation */
};

static void recover(struct p11_backend *be, struct p11_inst *in);

/* The handle of the one secret key labelled s->label, checked fit for an HMAC root. */
static int secret_load(struct p11_inst *in, struct p11_secret *s, char *err, size_t err_len)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_LABEL, s->label, strlen(s->label)}};
    CK_OBJECT_HANDLE h[2];
    CK_ULONG found = 2;
    CK_KEY_TYPE kt = 0;
    CK_BBOOL can_sign = CK_FALSE, sensitive = CK_FALSE, extractable = CK_TRUE;
    CK_ATTRIBUTE a[4] = {{CKA_KEY_TYPE, &kt, sizeof(kt)},
                         {CKA_SIGN, &can_sign, sizeof(can_sign)},
                         {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
                         {CKA_EXTRACTABLE, &extractable, sizeof(extractable)}};
    CK_MECHANISM_INFO mi;
    CK_RV rv;

    if (objects_find(in, h, &found, tmpl, 2) != 0) {
        snprintf(err, err_len, "C_FindObjects failed");
        return KL_ERR_HSM;
    }
    if (found != 1) {
        snprintf(err, err_len, "%s secret key labelled '%s' on the token (run hsm-setup, or see docs/HSM.md)",
                 found == 0 ? "no" : "more than one", s->label);
        return KL_ERR_NOT_FOUND;
    }
    rv = in->f->C_GetAttributeValue(in->sessions[0], h[0], a, 4);
    if (rv != CKR_OK) {
        snprintf(err, err_len, "cannot read the attributes of secret key '%s': %s", s->label, rv_str(rv));
        return KL_ERR_HSM;
    }
    if (kt != CKK_GENERIC_SECRET && kt != CKK_SHA256_HMAC) {
        snprintf(err, err_len, "secret key '%s' has type 0x%lx, not a generic secret or SHA256-HMAC key", s->label,
                 (unsigned long)kt);
        return KL_ERR_CONFIG;
    }
    if (can_sign != CK_TRUE || sensitive != CK_TRUE || extractable != CK_FALSE) {
        snprintf(err, err_len, "secret key '%s' must have CKA_SIGN and CKA_SENSITIVE true, CKA_EXTRACTABLE false",
                 s->label);
        return KL_ERR_CONFIG;
    }
    rv = in->f->C_GetMechanismInfo(in->slot, CKM_SHA256_HMAC, &mi);
    if (rv != CKR_OK || (mi.flags & CKF_SIGN) == 0) {
        snprintf(err, err_len, "the token cannot sign with CKM_SHA256_HMAC (%s)",
                 rv != CKR_OK ? rv_str(rv) : "no CKF_SIGN");
        return KL_ERR_CONFIG;
    }
    s->h[in->idx] = h[0];
    return 0;
}

/* After a recovery of instance in: every secret key's new handle there. */
static int secrets_load(struct p11_backend *be, struct p11_inst *in, char *err, size_t err_len)
{
    for (struct p11_secret *s = be->secrets; s != NULL; s = s->next) {
        int ret = secret_load(in, s, err, err_len);
        if (ret != 0) {
            return ret;
        }
    }
    return 0;
}

static void secrets_free(struct p11_backend *be)
{
    while (be->secrets != NULL) {
        struct p11_secret *s = be->secrets;
        be->secrets = s->next;
        free(s->label);
        free(s);
    }
}

/* Every instance's write lock, in order (one order everywhere: no deadlock): the key and
 * secret lists and their handles on every instance change under all of them. */
static void lock_all(struct p11_backend *be)
{
    for (unsigned i = 0; i < be->n_inst; i++) {
        pthread_rwlock_wrlock(&be->inst[i].lock);
    }
}

static void unlock_all(struct p11_backend *be)
{
    for (unsigned i = be->n_inst; i > 0; i--) {
        pthread_rwlock_unlock(&be->inst[i - 1].lock);
    }
}

int p11_secret_find(struct p11_backend *be, struct p11_secret **key_p, char *err, size_t err_len, const char *label)
{
    int ret = 0;
    struct p11_secret *s = calloc(1, sizeof(*s));

    *key_p = NULL;
    KL_ENSURE(s != NULL, KL_ERR_NO_MEMORY);
    s->label = strdup(label);
    KL_ENSURE(s->label != NULL, KL_ERR_NO_MEMORY);
    lock_all(be);
    /* Object handles are per instance: found on each. */
    for (unsigned i = 0; ret == 0 && i < be->n_inst; i++) {
        ret = secret_load(&be->inst[i], s, err, err_len);
    }
    if (ret == 0) {
        s->next = be->secrets;
        be->secrets = s;
        *key_p = s;
        s = NULL;
    }
    unlock_all(be);
exit:
    if (s != NULL) {
        free(s->label);
        free(s);
    }
    return ret;
}

/*
 * Find key's handle on instance in; used at start (first) and after a re-login, and on
 * every instance after the first. Except on the first, the key is read afresh and must
 * have the public key seen at start: a token whose key was replaced under the same URI
 * must not sign with a key the certificates do not match. KL_ERR_DENIED (with err) for
 * another public key.
 */
static int key_load(struct p11_inst *in, struct p11_key *key, char *err, size_t err_len, int first)
{
    int ret = 0;
    struct p11_key *now = NULL;

    if (first) {
        return key_read(in, key, err, err_len);
    }
    now = calloc(1, sizeof(*now));
    KL_ENSURE(now != NULL, KL_ERR_NO_MEMORY);
    now->uri = key->uri;
    now->uri_str = key->uri_str;
    KL_TRY(key_read(in, now, err, err_len));
    if (now->spki_len != key->spki_len || memcmp(now->spki, key->spki, key->spki_len) != 0) {
        snprintf(err, err_len, "%s has another public key than at start", key->uri_str);
        KL_ENSURE(0, KL_ERR_DENIED);
    }
    key->priv[in->idx] = now->priv[in->idx];
exit:
    if (now != NULL) {
        crypto_pubkey_free(now->pub);
        free(now);
    }
    return ret;
}

/*
 * The instance and its session for the pool's session index, read-locked and healthy
 * (recovered first if it broke, or SIGHUP re-armed it). NULL with *ret_p: KL_ERR_INVALID
 * for a bad index, KL_ERR_HSM while it stays broken.
 */
static struct p11_inst *inst_acquire(struct p11_backend *be, unsigned session_index, unsigned *local_p, int *ret_p)
{
    struct p11_inst *in;
    unsigned local;

    if (session_index >= be->n_sessions) {
        *ret_p = KL_ERR_INVALID;
        return NULL;
    }
    in = &be->inst[session_index % be->n_inst];
    local = session_index / be->n_inst;
    if (atomic_load(&in->broken) || atomic_load(&be->rearm) != atomic_load(&in->rearm_seen)) {
        recover(be, in);
    }
    pthread_rwlock_rdlock(&in->lock);
    if (atomic_load(&in->broken) || in->sessions[local] == CK_INVALID_HANDLE) {
        pthread_rwlock_unlock(&in->lock);
        atomic_store(&in->broken, 1);
        *ret_p = KL_ERR_HSM;
        return NULL;
    }
    *local_p = local;
    return in;
}

int p11_hmac_sha256(struct p11_backend *be, uint8_t out[P11_HMAC_SHA256_LEN], unsigned session_index,
                    const struct p11_secret *key, const uint8_t *data, size_t data_len)
{
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    CK_ULONG out_len = P11_HMAC_SHA256_LEN;
    struct p11_inst *in;
    unsigned idx = 0;
    int ret = 0;
    CK_RV rv;

    if (key == NULL) {
        return KL_ERR_INVALID;
    }
    if ((in = inst_acquire(be, session_index, &idx, &ret)) == NULL) {
        return ret;
    }
    /* The handle is read under the lock: a recovery re-finds it. */
    rv = in->f->C_SignInit(in->sessions[idx], &mech, key->h[in->idx]);
    if (rv == CKR_OK) {
        rv = in->f->C_Sign(in->sessions[idx], (CK_BYTE_PTR)data, data_len, out, &out_len);
    }
    pthread_rwlock_unlock(&in->lock);
    if (rv != CKR_OK || out_len != P11_HMAC_SHA256_LEN) {
        kl_wipe(out, P11_HMAC_SHA256_LEN);
        if (rv_needs_recovery(rv)) {
            atomic_store(&in->broken, 1);
        }
        log_warnx("hsm: C_Sign (CKM_SHA256_HMAC) failed: %s (0x%lx)%s", rv_str(rv), (unsigned long)rv,
                  rv_needs_recovery(rv) ? "; will reopen sessions and log in again" : "");
        return KL_ERR_HSM;
    }
    return 0;
}

/* ---- start, recovery, stop ---- */

/*
 * Bring up slot, sessions, login and key handles on an initialised instance. A key that is
 * gone or changed is refused alone on it (one line when that starts); token trouble while
 * reading keys fails the whole recovery.
 */
static int token_open(struct p11_backend *be, struct p11_inst *in, enum p11_fail *fail_p, char *err, size_t err_len)
{
    int ret = 0;
    *fail_p = P11_FAIL_TOKEN;
    KL_TRY(slot_find(be, in, err, err_len));
    KL_TRY(sessions_open(in, err, err_len));
    KL_TRY(login(be, in, fail_p, err, err_len));
    *fail_p = P11_FAIL_TOKEN;
    for (struct p11_key *k = be->keys; k != NULL; k = k->next) {
        char why[384] = "";
        int r = key_load(in, k, why, sizeof(why), 0);
        if (r == KL_ERR_HSM || r == KL_ERR_NO_MEMORY) {
            snprintf(err, err_len, "%s", why[0] != '\0' ? why : kl_err_str(r));
            KL_FAIL(r);
        }
        if (r != 0 && !k->refused[in->idx]) {
            log_errx("hsm: after logging in again: %s; its sign requests are refused (HSM_ERROR) until the "
                     "start-up key is back or the signer is restarted",
                     why[0] != '\0' ? why : kl_err_str(r));
        } else if (r == 0 && k->refused[in->idx]) {
            log_info("hsm: %s is back with the public key seen at start", k->uri_str);
        }
        k->refused[in->idx] = r != 0;
    }
    KL_TRY(secrets_load(be, in, err, err_len));
exit:
    return ret;
}

int p11_backend_new(struct p11_backend **be_p, enum p11_fail *fail_p, char *err, size_t err_len,
                    const char *module_path, const char *module_name, const char *token_uri, const char *pin_file,
                    unsigned sessions, unsigned instances)
{
    int ret = 0;
    struct p11_backend *be = NULL;
    enum p11_fail fail = P11_FAIL_INVALID;

    *be_p = NULL;
    KL_ENSURE((module_path == NULL) != (module_name == NULL) && sessions > 0 && sessions <= 1024 && pin_file != NULL &&
                  token_uri != NULL && instances > 0 && instances <= P11_INSTANCES_MAX && instances <= sessions,
              KL_ERR_INVALID);
    fail = P11_FAIL_NO_MEMORY;
    be = calloc(1, sizeof(*be));
    KL_ENSURE(be != NULL, KL_ERR_NO_MEMORY);
    pthread_mutex_init(&be->login_lock, NULL);
    be->n_sessions = sessions;
    be->n_inst = instances;
    be->inst = calloc(instances, sizeof(*be->inst));
    KL_ENSURE(be->inst != NULL, KL_ERR_NO_MEMORY);
    for (unsigned i = 0; i < instances; i++) {
        struct p11_inst *in = &be->inst[i];
        in->idx = i;
        pthread_rwlock_init(&in->lock, NULL);
        in->recover_interval_ns = RECOVER_FIRST_INTERVAL_NS;
        /* Session s is on instance s % instances: each gets a share, at least one. */
        in->n_sessions = (sessions - i + instances - 1) / instances;
        in->sessions = calloc(in->n_sessions, sizeof(*in->sessions));
        KL_ENSURE(in->sessions != NULL, KL_ERR_NO_MEMORY);
        for (unsigned k = 0; k < in->n_sessions; k++) {
            in->sessions[k] = CK_INVALID_HANDLE;
        }
    }
    be->pin_file = strdup(pin_file);
    be->token_uri = p11_kit_uri_new();
    KL_ENSURE(be->pin_file != NULL && be->token_uri != NULL, KL_ERR_NO_MEMORY);
    fail = P11_FAIL_INVALID;
    if (p11_kit_uri_parse(token_uri, P11_KIT_URI_FOR_ANY, be->token_uri) != P11_KIT_URI_OK) {
        snprintf(err, err_len, "not a valid RFC 7512 pkcs11: URI: %s", token_uri);
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    fail = P11_FAIL_MODULE;
    KL_TRY(module_load(be, &fail, err, err_len, module_path, module_name));
    for (unsigned i = 0; i < instances; i++) {
        KL_TRY(module_initialize(&be->inst[i], err, err_len));
        KL_TRY(token_open(be, &be->inst[i], &fail, err, err_len));
    }
    fail = P11_FAIL_NONE;
    *be_p = be;
    be = NULL;
exit:
    p11_backend_free(be);
    if (fail_p != NULL) {
        *fail_p = ret != 0 ? fail : P11_FAIL_NONE;
    }
    return ret;
}

static void module_finalize(struct p11_inst *in)
{
    if (in->f != NULL && in->initialized) {
        sessions_close(in);
        (void)in->f->C_Finalize(NULL);
        in->initialized = 0;
    }
}

void p11_backend_free(struct p11_backend *be)
{
    if (be == NULL) {
        return;
    }
    for (unsigned i = 0; be->inst != NULL && i < be->n_inst; i++) {
        struct p11_inst *in = &be->inst[i];
        if (in->f != NULL && in->initialized && in->sessions[0] != CK_INVALID_HANDLE) {
            (void)in->f->C_Logout(in->sessions[0]);
        }
        module_finalize(in);
    }
    while (be->keys != NULL) {
        struct p11_key *k = be->keys;
        be->keys = k->next;
        crypto_pubkey_free(k->pub);
        p11_kit_uri_free(k->uri);
        free(k->uri_str);
        free(k);
    }
    secrets_free(be);
    if (be->p11kit_modules != NULL) {
        p11_kit_modules_release(be->p11kit_modules);
    } else if (be->p11kit_loaded) {
        p11_kit_module_release(be->inst[0].f);
    }
    if (be->dl != NULL) {
        dlclose(be->dl);
    }
    if (be->token_uri != NULL) {
        p11_kit_uri_free(be->token_uri);
    }
    for (unsigned i = 0; be->inst != NULL && i < be->n_inst; i++) {
        free(be->inst[i].sessions);
        pthread_rwlock_destroy(&be->inst[i].lock);
    }
    free(be->inst);
    free(be->pin_file);
    pthread_mutex_destroy(&be->login_lock);
    free(be);
}

/*
 * Re-initialise instance in after token trouble; the other instances sign on. A light
 * reopen of the sessions is not enough in general: a remote module (p11-kit-client.so)
 * that lost its server stays in CKR_DEVICE_ERROR until it is finalised and initialised again.
 */
static void recover(struct p11_backend *be, struct p11_inst *in)
{
    char err[512] = "", which[32] = "";
    enum p11_fail fail = P11_FAIL_TOKEN;
    uint64_t t = kl_clock_ns();
    unsigned gen;
    int blocked;

    if (be->n_inst > 1) {
        snprintf(which, sizeof(which), " (instance %u of %u)", in->idx + 1, be->n_inst);
    }
    pthread_rwlock_wrlock(&in->lock);
    gen = atomic_load(&be->rearm);
    if (atomic_exchange(&in->rearm_seen, gen) != gen) {
        /* The operator acted (SIGHUP): one more login (login() lets it through), and no
         * waiting for the back-off. */
        in->recover_interval_ns = 0;
    }
    pthread_mutex_lock(&be->login_lock);
    blocked = be->pin_refused && be->pin_refused_gen == gen;
    pthread_mutex_unlock(&be->login_lock);
    if (!atomic_load(&in->broken) || blocked || t - in->last_recover_ns < in->recover_interval_ns) {
        goto exit;
    }
    in->last_recover_ns = t;
    module_finalize(in);
    if (module_initialize(in, err, sizeof(err)) != 0 || token_open(be, in, &fail, err, sizeof(err)) != 0) {
        sessions_close(in);
        if (fail == P11_FAIL_PIN && rv_pin_refused(in->login_rv)) {
            log_errx("hsm: the token refused the PIN in %s (%s): no more login attempts (the token may lock); "
                     "sign requests answer HSM_ERROR until the PIN file is fixed and the signer gets SIGHUP "
                     "or is restarted",
                     be->pin_file, rv_str(in->login_rv));
            goto exit;
        }
        in->recover_interval_ns = in->recover_interval_ns < RECOVER_FIRST_INTERVAL_NS     ? RECOVER_FIRST_INTERVAL_NS
                                  : 2 * in->recover_interval_ns > RECOVER_MAX_INTERVAL_NS ? RECOVER_MAX_INTERVAL_NS
                                                                                          : 2 * in->recover_interval_ns;
        log_warnx("hsm: recovery failed%s: %s; next attempt in %llu ms at the earliest", which, err,
                  (unsigned long long)(in->recover_interval_ns / 1000000));
        goto exit;
    }
    atomic_store(&in->broken, 0);
    in->recover_interval_ns = RECOVER_FIRST_INTERVAL_NS;
    atomic_fetch_add(&be->recoveries, 1);
    log_info("hsm: recovered%s (sessions reopened, logged in, keys re-found; %u logins so far)", which,
             atomic_load(&be->logins));
exit:
    pthread_rwlock_unlock(&in->lock);
}

void p11_backend_recover_if_needed(struct p11_backend *be)
{
    for (unsigned i = 0; i < be->n_inst; i++) {
        struct p11_inst *in = &be->inst[i];
        if (atomic_load(&in->broken) || atomic_load(&be->rearm) != atomic_load(&in->rearm_seen)) {
            recover(be, in);
        }
    }
}

unsigned p11_backend_recoveries(struct p11_backend *be)
{
    return atomic_load(&be->recoveries);
}

unsigned p11_backend_logins(struct p11_backend *be)
{
    return atomic_load(&be->logins);
}

unsigned p11_backend_instances(const struct p11_backend *be)
{
    return be->n_inst;
}

void p11_backend_rearm(struct p11_backend *be)
{
    atomic_fetch_add(&be->rearm, 1);
}

static void key_free(struct p11_key *k)
{
    crypto_pubkey_free(k->pub);
    if (k->uri != NULL) {
        p11_kit_uri_free(k->uri);
    }
    free(k->uri_str);
    free(k);
}

int p11_key_find(struct p11_backend *be, struct p11_key **key_p, char *err, size_t err_len, const char *uri)
{
    int ret = 0;
    struct p11_key *key = calloc(1, sizeof(*key));
    CK_TOKEN_INFO ti;

    KL_ENSURE(key != NULL, KL_ERR_NO_MEMORY);
    key->uri_str = strdup(uri);
    key->uri = p11_kit_uri_new();
    KL_ENSURE(key->uri_str != NULL && key->uri != NULL, KL_ERR_NO_MEMORY);
    if (p11_kit_uri_parse(uri, P11_KIT_URI_FOR_ANY, key->uri) != P11_KIT_URI_OK) {
        snprintf(err, err_len, "not a valid RFC 7512 pkcs11: URI: %s", uri);
        KL_ENSURE(0, KL_ERR_CONFIG);
    }
    {
        CK_ATTRIBUTE *cls = p11_kit_uri_get_attribute(key->uri, CKA_CLASS);
        if (cls != NULL && cls->ulValueLen == sizeof(CK_OBJECT_CLASS) &&
            *(CK_OBJECT_CLASS *)cls->pValue != CKO_PRIVATE_KEY) {
            snprintf(err, err_len, "URI %s names an object that is not a private key (use type=private)", uri);
            KL_ENSURE(0, KL_ERR_CONFIG);
        }
    }
    lock_all(be);
    if (be->inst[0].f->C_GetTokenInfo(be->inst[0].slot, &ti) != CKR_OK ||
        !p11_kit_uri_match_token_info(key->uri, &ti)) {
        snprintf(err, err_len, "%s is not on the signer's token (all keys must be on one token)", uri);
        ret = KL_ERR_CONFIG;
    }
    /* Object handles are per instance: the key is found on each, with the same public key. */
    for (unsigned i = 0; ret == 0 && i < be->n_inst; i++) {
        ret = key_load(&be->inst[i], key, err, err_len, i == 0);
    }
    if (ret == 0) {
        key->next = be->keys;
        be->keys = key;
        *key_p = key;
        key = NULL;
    }
    unlock_all(be);
exit:
    if (key != NULL) {
        key_free(key);
    }
    return ret;
}

void p11_key_release(struct p11_backend *be, struct p11_key *key)
{
    if (key == NULL) {
        return;
    }
    /* Exclusive: a recovery walks the list under its instance's lock. */
    lock_all(be);
    for (struct p11_key **pp = &be->keys; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == key) {
            *pp = key->next;
            break;
        }
    }
    unlock_all(be);
    key_free(key);
}

void p11_secret_release(struct p11_backend *be, struct p11_secret *key)
{
    if (key == NULL) {
        return;
    }
    lock_all(be);
    for (struct p11_secret **pp = &be->secrets; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == key) {
            *pp = key->next;
            break;
        }
    }
    unlock_all(be);
    free(key->label);
    free(key);
}

const uint8_t *p11_key_spki(const struct p11_key *key, size_t *len_p)
{
    *len_p = key->spki_len;
    return key->spki;
}

const uint8_t *p11_key_spki_sha256(const struct p11_key *key)
{
    return key->spki_len > 0 ? key->spki_sha256 : NULL;
}

enum p11_key_type p11_key_type(const struct p11_key *key)
{
    return key->type;
}

/* Is mech in the key's CKA_ALLOWED_MECHANISMS? A key without a list allows every mechanism. */
static int key_allows(const struct p11_key *key, CK_MECHANISM_TYPE mech)
{
    int ok = key->allowed_n == 0;
    for (size_t i = 0; i < key->allowed_n; i++) {
        ok |= key->allowed[i] == mech;
    }
    return ok;
}

static const struct key_mech *key_mech_find(const struct p11_key *key, uint16_t scheme)
{
    for (size_t i = 0; i < key->n_mechs; i++) {
        if (key->mechs[i].scheme == scheme) {
            return &key->mechs[i];
        }
    }
    return NULL;
}

/*
 * Replace session idx by a fresh one. The login belongs to the application, not to a
 * session, so the new one is logged in too; it is opened before the old one is closed
 * because closing the last session logs out. The caller holds in->lock (shared is
 * enough: only the worker that owns idx uses that session while it is held shared).
 */
static int session_replace(struct p11_inst *in, unsigned idx)
{
    CK_SESSION_HANDLE fresh = CK_INVALID_HANDLE;
    CK_RV rv = in->f->C_OpenSession(in->slot, CKF_SERIAL_SESSION, NULL, NULL, &fresh);
    if (rv != CKR_OK) {
        log_warnx("hsm: cannot open a session to replace session %u: %s (0x%lx)", idx, rv_str(rv), (unsigned long)rv);
        return KL_ERR_HSM;
    }
    (void)in->f->C_CloseSession(in->sessions[idx]);
    in->sessions[idx] = fresh;
    return 0;
}

/* End a signing operation left active on session idx: C_SignInit(NULL) cancels it on a
 * PKCS#11 3.0 module, anything else gets a fresh session. */
static int session_cancel(struct p11_inst *in, unsigned idx)
{
    if (in->cancel_with_null && in->f->C_SignInit(in->sessions[idx], NULL, CK_INVALID_HANDLE) == CKR_OK) {
        return 0;
    }
    return session_replace(in, idx);
}

/*
 * C_SignInit + C_Sign of data with mechanism mtype on session idx; the caller holds
 * in->lock. *out_len_p in: capacity of sig, out: length. Returns the token's CK_RV.
 */
static CK_RV sign_once(struct p11_inst *in, uint8_t *sig, CK_ULONG *out_len_p, unsigned idx, const struct p11_key *key,
                       const struct scheme_info *si, CK_MECHANISM_TYPE mtype, const uint8_t *data, size_t data_len)
{
    CK_RSA_PKCS_PSS_PARAMS pss = {si->ck_hash, si->mgf, si->hash_len};
    CK_MECHANISM mech = {mtype, NULL, 0};
    CK_ULONG cap = *out_len_p;
    CK_RV rv;

    if (si->type == P11_KEY_RSA) {
        /* The hash-and-sign PSS mechanisms take the same parameters as the raw one. */
        mech.pParameter = &pss;
        mech.ulParameterLen = sizeof(pss);
    }
    rv = in->f->C_SignInit(in->sessions[idx], &mech, key->priv[in->idx]);
    if (rv == CKR_OPERATION_ACTIVE) {
        /* An earlier C_Sign failed without ending its operation (the standard keeps it
         * only after CKR_BUFFER_TOO_SMALL; some tokens do on other errors too). Without
         * this the session would refuse every signature from now on. */
        int ok = session_cancel(in, idx) == 0;
        log_warnx("hsm: session %u still had a signing operation active (CKR_OPERATION_ACTIVE): %s", idx,
                  ok ? "cancelled, signing again" : "cannot cancel it");
        if (ok) {
            rv = in->f->C_SignInit(in->sessions[idx], &mech, key->priv[in->idx]);
        }
    }
    if (rv == CKR_OK) {
        *out_len_p = cap;
        rv = in->f->C_Sign(in->sessions[idx], (CK_BYTE_PTR)data, data_len, sig, out_len_p);
        if (rv == CKR_BUFFER_TOO_SMALL) {
            (void)session_cancel(in, idx); /* the operation is still active after this one */
        }
    }
    return rv;
}

/* The RFC 8446 section 4.4.3 content over a hash that no transcript has: what the signer
 * signs, so that a token's restriction on the shape of the data shows in the probe too. */
static size_t probe_content(uint8_t *out, size_t hash_len)
{
    static const char ctx[] = "TLS 1.3, server CertificateVerify";
    memset(out, 0x20, 64);
    memcpy(out + 64, ctx, sizeof(ctx)); /* with its 0 separator */
    memset(out + 64 + sizeof(ctx), 0x6b, hash_len);
    return 64 + sizeof(ctx) + hash_len;
}

/* A test signature with mtype (hashed: over the content, else over its digest); RSA ones
 * are verified. 0, or KL_ERR_HSM with *rv_p, or KL_ERR_CRYPTO if it does not verify. */
static int probe_sign(struct p11_inst *in, CK_RV *rv_p, const struct p11_key *key, const struct scheme_info *si,
                      CK_MECHANISM_TYPE mtype, int hashed)
{
    int ret = 0;
    uint8_t content[64 + 34 + CRYPTO_MAX_DIGEST], digest[CRYPTO_MAX_DIGEST], sig[P11_SIG_MAX];
    size_t content_len = probe_content(content, si->hash_len > 0 ? si->hash_len : 32), digest_len = 0;
    CK_ULONG sig_len = sizeof(sig);

    *rv_p = CKR_OK;
    if (si->hash != TLS_HASH_NONE) {
        KL_TRY(crypto_digest(digest, &digest_len, si->hash, content, content_len));
    }
    *rv_p = sign_once(in, sig, &sig_len, 0, key, si, mtype, hashed || si->hash == TLS_HASH_NONE ? content : digest,
                      hashed || si->hash == TLS_HASH_NONE ? content_len : digest_len);
    KL_ENSURE(*rv_p == CKR_OK, KL_ERR_HSM);
    if (si->type == P11_KEY_RSA) {
        KL_TRY(crypto_rsa_pss_verify(key->pub, si->hash, sig, sig_len, digest, digest_len));
    }
exit:
    kl_wipe(sig, sizeof(sig));
    return ret;
}

/* May key sign with mtype? 0, or KL_ERR_DENIED with the reason in why. The caller holds
 * in->lock exclusively (the probe signs on its session 0). */
static int mech_usable(struct p11_inst *in, char *why, size_t why_len, const struct p11_key *key,
                       const struct scheme_info *si, CK_MECHANISM_TYPE mtype, int hashed)
{
    CK_MECHANISM_INFO mi;
    CK_RV rv;
    int r;

    if (!key_allows(key, mtype)) {
        snprintf(why, why_len, "%s is not in the key's CKA_ALLOWED_MECHANISMS", mech_str(mtype));
        return KL_ERR_DENIED;
    }
    rv = in->f->C_GetMechanismInfo(in->slot, mtype, &mi);
    if (rv != CKR_OK || (mi.flags & CKF_SIGN) == 0) {
        snprintf(why, why_len, "the token cannot sign with mechanism 0x%lx (%s: %s)", (unsigned long)mtype,
                 mech_str(mtype), rv != CKR_OK ? rv_str(rv) : "no CKF_SIGN");
        return KL_ERR_DENIED;
    }
    if (key->allowed_n > 0 || si->hs_mech == 0) {
        /* The token said which mechanisms the key may use, or there is nothing to choose
         * between (Ed25519): no need to try. */
        return 0;
    }
    if ((r = probe_sign(in, &rv, key, si, mtype, hashed)) != 0) {
        snprintf(why, why_len, "a test signature with %s failed (%s)", mech_str(mtype),
                 r == KL_ERR_HSM ? rv_str(rv) : "it does not verify");
        return KL_ERR_DENIED;
    }
    return 0;
}

int p11_key_check_scheme(struct p11_backend *be, struct p11_key *key, char *err, size_t err_len, uint16_t scheme)
{
    struct scheme_info sinfo, *si = &sinfo;
    char why_raw[256] = "", why_hs[256] = "";
    CK_MECHANISM_TYPE chosen = 0;
    int hashed = 0;

    if (scheme_lookup(si, scheme) != 0) {
        snprintf(err, err_len, "scheme 0x%04x is not a TLS 1.3 signature scheme the signer supports", scheme);
        return KL_ERR_DENIED;
    }
    if (si->type != key->type || (si->type == P11_KEY_EC && si->curve != key->curve)) {
        snprintf(err, err_len, "the key's type/curve cannot do scheme 0x%04x", scheme);
        return KL_ERR_DENIED;
    }
    if (!key->can_sign) {
        snprintf(err, err_len, "the key has CKA_SIGN false");
        return KL_ERR_DENIED;
    }
    if (si->type == P11_KEY_RSA) {
        /* PSS with salt = hash length needs emLen >= 2 * hLen + 2 (RFC 8017 section 9.1.1). */
        if (crypto_pubkey_size(key->pub) < 2 * si->hash_len + 2) {
            snprintf(err, err_len, "the RSA key is too small for scheme 0x%04x", scheme);
            return KL_ERR_DENIED;
        }
    }
    /* The raw mechanism first (the token sees only a digest), else the hash-and-sign one.
     * Every instance is the same token: probing on the first is enough. */
    pthread_rwlock_wrlock(&be->inst[0].lock);
    if (mech_usable(&be->inst[0], why_raw, sizeof(why_raw), key, si, si->mech, 0) == 0) {
        chosen = si->mech;
    } else if (si->hs_mech != 0 && mech_usable(&be->inst[0], why_hs, sizeof(why_hs), key, si, si->hs_mech, 1) == 0) {
        chosen = si->hs_mech;
        hashed = 1;
    }
    if (chosen != 0) {
        struct key_mech *km = (struct key_mech *)key_mech_find(key, scheme);
        if (km == NULL && key->n_mechs < KEY_MAX_SCHEMES) {
            km = &key->mechs[key->n_mechs++];
        }
        if (km != NULL) {
            km->scheme = scheme;
            km->mech = chosen;
            km->hashed = hashed;
        }
    }
    pthread_rwlock_unlock(&be->inst[0].lock);
    if (chosen == 0) {
        if (si->hs_mech == 0) {
            snprintf(err, err_len, "%s", why_raw);
        } else {
            snprintf(err, err_len, "neither raw nor hash-and-sign: %s; %s", why_raw, why_hs);
        }
        return KL_ERR_DENIED;
    }
    return 0;
}

const char *p11_key_mechanism(const struct p11_key *key, uint16_t scheme)
{
    const struct key_mech *km = key_mech_find(key, scheme);
    return km != NULL ? mech_str(km->mech) : NULL;
}

int p11_key_hygiene(const struct p11_key *key, char *err, size_t err_len)
{
    if (!key->extractable && !key->decrypt && !key->unwrap) {
        return 0;
    }
    snprintf(err, err_len, "%s%s%s%s%s", key->extractable ? "CKA_EXTRACTABLE" : "",
             key->extractable && (key->decrypt || key->unwrap) ? ", " : "", key->decrypt ? "CKA_DECRYPT" : "",
             key->decrypt && key->unwrap ? ", " : "", key->unwrap ? "CKA_UNWRAP" : "");
    return KL_ERR_DENIED;
}

/* One signature on the worker's session, recovering its instance first if it broke. */
static int sign_token(struct p11_backend *be, uint8_t *sig, size_t *sig_len_p, unsigned session_index,
                      const struct p11_key *key, const struct scheme_info *si, CK_MECHANISM_TYPE mtype,
                      const uint8_t *data, size_t data_len)
{
    CK_ULONG out_len = *sig_len_p;
    struct p11_inst *in;
    unsigned idx = 0;
    int ret = 0;
    CK_RV rv;

    if ((in = inst_acquire(be, session_index, &idx, &ret)) == NULL) {
        return ret;
    }
    if (key->refused[in->idx]) {
        pthread_rwlock_unlock(&in->lock); /* said once, when the re-login found it changed */
        return KL_ERR_HSM;
    }
    rv = sign_once(in, sig, &out_len, idx, key, si, mtype, data, data_len);
    pthread_rwlock_unlock(&in->lock);
    if (rv != CKR_OK) {
        if (rv_needs_recovery(rv)) {
            atomic_store(&in->broken, 1);
        }
        log_warnx("hsm: C_Sign failed: %s (0x%lx)%s", rv_str(rv), (unsigned long)rv,
                  rv_needs_recovery(rv) ? "; will reopen sessions and log in again" : "");
        return KL_ERR_HSM;
    }
    *sig_len_p = out_len;
    return 0;
}

int p11_sign_raw(struct p11_backend *be, uint8_t *sig, size_t *sig_len_p, unsigned session_index,
                 const struct p11_key *key, uint16_t scheme, const uint8_t *digest, size_t digest_len)
{
    struct scheme_info si;
    if (scheme_lookup(&si, scheme) != 0) {
        return KL_ERR_INVALID;
    }
    return sign_token(be, sig, sig_len_p, session_index, key, &si, si.mech, digest, digest_len);
}

int p11_sign(struct p11_backend *be, uint8_t *sig, size_t *sig_len_p, unsigned session_index, const struct p11_key *key,
             uint16_t scheme, const uint8_t *content, size_t content_len)
{
    int ret = 0;
    struct scheme_info sinfo, *si = &sinfo;
    const struct key_mech *km = key_mech_find(key, scheme);
    uint8_t digest[CRYPTO_MAX_DIGEST], raw[P11_SIG_MAX];
    size_t digest_len = 0, raw_len = sizeof(raw);

    KL_ENSURE(scheme_lookup(si, scheme) == 0 && si->type == key->type, KL_ERR_INVALID);
    if (si->type == P11_KEY_ED25519) {
        /* RFC 8032 PureEdDSA signs the message itself; there is no pre-hash variant in TLS. */
        KL_TRY(sign_token(be, sig, sig_len_p, session_index, key, si, si->mech, content, content_len));
        goto exit;
    }
    KL_TRY(crypto_digest(digest, &digest_len, si->hash, content, content_len));
    if (km != NULL && km->hashed) {
        /* A hash-and-sign mechanism hashes the content itself (the digest is kept to verify RSA). */
        KL_TRY(sign_token(be, raw, &raw_len, session_index, key, si, km->mech, content, content_len));
    } else {
        KL_TRY(sign_token(be, raw, &raw_len, session_index, key, si, si->mech, digest, digest_len));
    }
    if (si->type == P11_KEY_EC) {
        KL_ENSURE(raw_len == 2 * key->ec_field_len, KL_ERR_HSM);
        KL_TRY(crypto_ecdsa_raw_to_der(sig, sig_len_p, raw, raw_len));
    } else {
        KL_ENSURE(raw_len <= *sig_len_p, KL_ERR_OVERFLOW);
        /* A faulty RSA-CRT signature would leak the key: check it before it leaves. */
        if ((ret = crypto_rsa_pss_verify(key->pub, si->hash, raw, raw_len, digest, digest_len)) != 0) {
            log_errx("hsm: an RSA signature from the token does not verify; withheld");
            goto exit;
        }
        memcpy(sig, raw, raw_len);
        *sig_len_p = raw_len;
    }
exit:
    kl_wipe(raw, sizeof(raw));
    return ret;
}
