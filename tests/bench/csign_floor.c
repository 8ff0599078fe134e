/*
 * csign_floor: the physical floor of a keyless handshake, raw C_Sign on the token.
 *
 * Loads a PKCS#11 module through p11-kit, logs in with the PIN from a file, finds
 * the private key by label and signs a fixed-size digest in a loop for a bounded
 * time with the same raw mechanisms the signer uses (CKM_ECDSA over a SHA-256 or
 * SHA-384 digest, CKM_RSA_PKCS_PSS with SHA-256/MGF1, CKM_EDDSA over the whole
 * 130-byte CertificateVerify content). Prints the process CPU and the wall time
 * per signature: that CPU is what SoftHSM costs, whoever calls it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static int read_pin(const char *path, char *pin, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;
    if (f == NULL)
        return -1;
    n = fread(pin, 1, cap - 1, f);
    fclose(f);
    while (n > 0 && (pin[n - 1] == '\n' || pin[n - 1] == '\r'))
        n--;
    pin[n] = '\0';
    return n > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *module_path, *token, *label, *pin_file;
    double duration;
    CK_FUNCTION_LIST *m = NULL;
    CK_SLOT_ID slots[64];
    CK_ULONG nslots = 64, found = 0, i;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE kt = 0;
    CK_ATTRIBUTE tmpl[2];
    CK_ATTRIBUTE kt_attr = {CKA_KEY_TYPE, &kt, sizeof(kt)};
    CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
    CK_MECHANISM mech = {0, NULL, 0};
    unsigned char data[130], sig[1024];
    CK_ULONG data_len = 32, sig_len;
    char pin[256];
    uint64_t n = 0;
    double t0, c0, wall, cpu;
    int ret = 1;

    if (argc != 6) {
        fprintf(stderr, "usage: csign_floor MODULE.so TOKEN_LABEL KEY_LABEL PIN_FILE SECONDS\n");
        return 2;
    }
    module_path = argv[1];
    token = argv[2];
    label = argv[3];
    pin_file = argv[4];
    duration = strtod(argv[5], NULL);
    if (!(duration > 0) || duration > 600) {
        fprintf(stderr, "csign_floor: SECONDS must be in (0, 600]\n");
        return 2;
    }
    if (read_pin(pin_file, pin, sizeof(pin)) != 0) {
        fprintf(stderr, "csign_floor: cannot read PIN file %s\n", pin_file);
        return 2;
    }
    m = p11_kit_module_load(module_path, 0);
    if (m == NULL || p11_kit_module_initialize(m) != CKR_OK) {
        fprintf(stderr, "csign_floor: cannot load %s: %s\n", module_path, p11_kit_message());
        goto exit;
    }
    if (m->C_GetSlotList(CK_TRUE, slots, &nslots) != CKR_OK)
        goto exit;
    for (i = 0; i < nslots && s == CK_INVALID_HANDLE; i++) {
        CK_TOKEN_INFO ti;
        char lbl[33];
        size_t l = 32;
        if (m->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        memcpy(lbl, ti.label, 32);
        while (l > 0 && lbl[l - 1] == ' ')
            l--;
        lbl[l] = '\0';
        if (strcmp(lbl, token) != 0)
            continue;
        if (m->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
            goto exit;
    }
    if (s == CK_INVALID_HANDLE) {
        fprintf(stderr, "csign_floor: no token labelled %s\n", token);
        goto exit;
    }
    if (m->C_Login(s, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin)) != CKR_OK) {
        fprintf(stderr, "csign_floor: login failed\n");
        goto exit;
    }
    tmpl[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    tmpl[1] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, strlen(label)};
    if (m->C_FindObjectsInit(s, tmpl, 2) != CKR_OK || m->C_FindObjects(s, &key, 1, &found) != CKR_OK ||
        m->C_FindObjectsFinal(s) != CKR_OK || found != 1) {
        fprintf(stderr, "csign_floor: no private key labelled %s\n", label);
        goto exit;
    }
    if (m->C_GetAttributeValue(s, key, &kt_attr, 1) != CKR_OK)
        goto exit;
    memset(data, 0x5a, sizeof(data));
    switch (kt) {
    case CKK_EC:
        mech.mechanism = CKM_ECDSA;
        data_len = strstr(label, "384") != NULL ? 48 : 32;
        break;
    case CKK_RSA:
        mech.mechanism = CKM_RSA_PKCS_PSS;
        mech.pParameter = &pss;
        mech.ulParameterLen = sizeof(pss);
        break;
    case CKK_EC_EDWARDS:
        mech.mechanism = CKM_EDDSA;
        data_len = sizeof(data);
        break;
    default:
        fprintf(stderr, "csign_floor: unsupported key type %lu\n", (unsigned long)kt);
        goto exit;
    }
    t0 = now_s();
    c0 = cpu_s();
    while (now_s() - t0 < duration) {
        sig_len = sizeof(sig);
        data[0] = (unsigned char)n;
        if (m->C_SignInit(s, &mech, key) != CKR_OK || m->C_Sign(s, data, data_len, sig, &sig_len) != CKR_OK) {
            fprintf(stderr, "csign_floor: C_Sign failed after %" PRIu64 " signatures\n", n);
            goto exit;
        }
        n++;
    }
    wall = now_s() - t0;
    cpu = cpu_s() - c0;
    printf("result key=%s signatures=%" PRIu64 " sigs_per_s=%.1f cpu_us_per_sig=%.1f wall_us_per_sig=%.1f\n", label, n,
           (double)n / wall, cpu * 1e6 / (double)n, wall * 1e6 / (double)n);
    fflush(stdout);
    ret = 0;
exit:
    memset(pin, 0, sizeof(pin));
    if (m != NULL) {
        if (s != CK_INVALID_HANDLE)
            m->C_CloseSession(s);
        p11_kit_module_finalize(m);
        p11_kit_module_release(m);
    }
    return ret;
}
