/*
 * p11keygen.c - make (or destroy) a key pair in a test token with exactly the attributes
 * a signer test needs, which pkcs11-tool cannot all set (it never sets CKA_DECRYPT or
 * CKA_UNWRAP false, and SoftHSM2's default is true):
 *
 *   p11keygen MODULE TOKEN_LABEL PIN_FILE TYPE LABEL ID_HEX [FLAG...]
 *     TYPE   ec256 | ec384 | rsa2048 | delete (destroy every object with LABEL)
 *     FLAG   extractable | decrypt | always_auth | allowed=0xM,0xM,...
 *
 * Without flags the private key is sensitive, not extractable, and may only sign.
 * Exit 0, or 1 with one line on stderr. Test code only.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST *f;

static int die(const char *what, CK_RV rv)
{
    fprintf(stderr, "p11keygen: %s: 0x%lx\n", what, (unsigned long)rv);
    return 1;
}

static int open_token(CK_SESSION_HANDLE *s_p, const char *module, const char *label, const char *pin_file)
{
    CK_C_GetFunctionList get;
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    char pin[256] = "";
    FILE *pf;
    void *dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    CK_RV rv;

    if (dl == NULL || (*(void **)&get = dlsym(dl, "C_GetFunctionList")) == NULL || get(&f) != CKR_OK) {
        return die("cannot load the module", 0);
    }
    if ((rv = f->C_Initialize(NULL)) != CKR_OK || (rv = f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK) {
        return die("C_Initialize/C_GetSlotList", rv);
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        char tl[33];
        size_t l = sizeof(ti.label);
        if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK) {
            continue;
        }
        memcpy(tl, ti.label, l);
        while (l > 0 && tl[l - 1] == ' ') {
            l--;
        }
        tl[l] = '\0';
        if (strcmp(tl, label) != 0) {
            continue;
        }
        if ((rv = f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, s_p)) != CKR_OK) {
            return die("C_OpenSession", rv);
        }
        pf = fopen(pin_file, "r");
        if (pf == NULL || fgets(pin, sizeof(pin), pf) == NULL) {
            return die("cannot read the PIN file", 0);
        }
        fclose(pf);
        pin[strcspn(pin, "\r\n")] = '\0';
        if ((rv = f->C_Login(*s_p, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin))) != CKR_OK) {
            return die("C_Login", rv);
        }
        return 0;
    }
    return die("no such token", 0);
}

static int destroy(CK_SESSION_HANDLE s, const char *label)
{
    CK_ATTRIBUTE t = {CKA_LABEL, (void *)label, strlen(label)};
    CK_OBJECT_HANDLE h[16];
    CK_ULONG n = 0;
    CK_RV rv;
    if ((rv = f->C_FindObjectsInit(s, &t, 1)) != CKR_OK || (rv = f->C_FindObjects(s, h, 16, &n)) != CKR_OK) {
        return die("C_FindObjects", rv);
    }
    (void)f->C_FindObjectsFinal(s);
    for (CK_ULONG i = 0; i < n; i++) {
        if ((rv = f->C_DestroyObject(s, h[i])) != CKR_OK) {
            return die("C_DestroyObject", rv);
        }
    }
    return n > 0 ? 0 : die("no object has that label", 0);
}

int main(int argc, char **argv)
{
    static const CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    static const CK_BYTE p384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
    static const CK_BYTE e65537[] = {0x01, 0x00, 0x01};
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE, extractable = CK_FALSE, decrypt = CK_FALSE, always = CK_FALSE;
    CK_ULONG bits = 2048;
    CK_MECHANISM_TYPE allowed[16];
    CK_ULONG n_allowed = 0;
    CK_BYTE id[64];
    CK_ULONG id_len = 0;
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_ATTRIBUTE pub[8], priv[16];
    CK_ULONG np = 0, nk = 0;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE hpub, hpriv;
    CK_RV rv;

    if (argc < 7) {
        fprintf(stderr, "usage: p11keygen MODULE TOKEN_LABEL PIN_FILE TYPE LABEL ID_HEX [FLAG...]\n");
        return 2;
    }
    if (open_token(&s, argv[1], argv[2], argv[3]) != 0) {
        return 1;
    }
    if (strcmp(argv[4], "delete") == 0) {
        return destroy(s, argv[5]);
    }
    for (const char *h = argv[6]; h[0] != '\0' && h[1] != '\0' && id_len < sizeof(id); h += 2) {
        unsigned v = 0;
        sscanf(h, "%2x", &v);
        id[id_len++] = (CK_BYTE)v;
    }
    for (int i = 7; i < argc; i++) {
        if (strcmp(argv[i], "extractable") == 0) {
            extractable = CK_TRUE;
        } else if (strcmp(argv[i], "decrypt") == 0) {
            decrypt = CK_TRUE;
        } else if (strcmp(argv[i], "always_auth") == 0) {
            always = CK_TRUE;
        } else if (strncmp(argv[i], "allowed=", 8) == 0) {
            for (char *p = argv[i] + 8; *p != '\0' && n_allowed < 16;) {
                allowed[n_allowed++] = strtoul(p, &p, 16);
                p += *p == ',';
            }
        } else {
            fprintf(stderr, "p11keygen: unknown flag %s\n", argv[i]);
            return 2;
        }
    }
#define ATTR(a, n, t, v, l) ((a)[(n)++] = (CK_ATTRIBUTE){(t), (void *)(v), (l)})
    ATTR(pub, np, CKA_TOKEN, &yes, sizeof(yes));
    ATTR(pub, np, CKA_VERIFY, &yes, sizeof(yes));
    ATTR(pub, np, CKA_LABEL, argv[5], strlen(argv[5]));
    ATTR(pub, np, CKA_ID, id, id_len);
    ATTR(priv, nk, CKA_TOKEN, &yes, sizeof(yes));
    ATTR(priv, nk, CKA_PRIVATE, &yes, sizeof(yes));
    ATTR(priv, nk, CKA_SENSITIVE, &yes, sizeof(yes));
    ATTR(priv, nk, CKA_SIGN, &yes, sizeof(yes));
    ATTR(priv, nk, CKA_EXTRACTABLE, &extractable, sizeof(extractable));
    ATTR(priv, nk, CKA_DECRYPT, &decrypt, sizeof(decrypt));
    ATTR(priv, nk, CKA_UNWRAP, &no, sizeof(no));
    ATTR(priv, nk, CKA_DERIVE, &no, sizeof(no));
    ATTR(priv, nk, CKA_ALWAYS_AUTHENTICATE, &always, sizeof(always));
    ATTR(priv, nk, CKA_LABEL, argv[5], strlen(argv[5]));
    ATTR(priv, nk, CKA_ID, id, id_len);
    if (n_allowed > 0) {
        ATTR(priv, nk, CKA_ALLOWED_MECHANISMS, allowed, n_allowed * sizeof(allowed[0]));
    }
    if (strcmp(argv[4], "ec256") == 0) {
        ATTR(pub, np, CKA_EC_PARAMS, p256, sizeof(p256));
    } else if (strcmp(argv[4], "ec384") == 0) {
        ATTR(pub, np, CKA_EC_PARAMS, p384, sizeof(p384));
    } else if (strcmp(argv[4], "rsa2048") == 0) {
        mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
        ATTR(pub, np, CKA_MODULUS_BITS, &bits, sizeof(bits));
        ATTR(pub, np, CKA_PUBLIC_EXPONENT, e65537, sizeof(e65537));
    } else {
        fprintf(stderr, "p11keygen: unknown type %s\n", argv[4]);
        return 2;
    }
    if ((rv = f->C_GenerateKeyPair(s, &mech, pub, np, priv, nk, &hpub, &hpriv)) != CKR_OK) {
        return die("C_GenerateKeyPair", rv);
    }
    (void)f->C_Logout(s);
    (void)f->C_Finalize(NULL);
    return 0;
}
