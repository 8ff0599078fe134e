/*
 * ech_tool.c - keyless-ech: make and inspect ECH key files (issue 16).
 *
 *   keyless-ech generate --public-name NAME [--config-id N] [--max-name-length N] --out FILE
 *   keyless-ech list FILE...
 *   keyless-ech show FILE
 *   keyless-ech --version | --help
 *
 * generate writes a new key file (mode 0600, never over an existing file) and prints its
 * ECHConfigList in base64; list prints the ECHConfigList of the files in order, what a DNS
 * HTTPS record's ech= carries (the first file is the key the frontend publishes in
 * retry_configs); show prints what a file holds, never the private key. Errors are one line
 * naming the file; exit 1 for those, 2 for a bad command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "cli.h"
#include "config.h"
#include "kl_buf.h"
#include "tls/tls.h"

#define PROG "keyless-ech"

static void usage(FILE *f)
{
    fprintf(f, "usage: " PROG " generate --public-name NAME [--config-id N] [--max-name-length N] --out FILE\n"
               "       " PROG " list FILE...\n"
               "       " PROG " show FILE\n"
               "       " PROG " --version | --help\n"
               "\n"
               "generate  a new ECH key file (X25519, HKDF-SHA256 with AES-128-GCM, ChaCha20-Poly1305,\n"
               "          AES-256-GCM) written with mode 0600, never over an existing file; prints its\n"
               "          ECHConfigList in base64. NAME is the public name: one of the listener's\n"
               "          certificates must be for it. --config-id defaults to a random byte.\n"
               "list      the ECHConfigList (base64) of the files' configs in order: the value of\n"
               "          ech= in the DNS HTTPS record.\n"
               "show      config_id, public name, suites of a key file (never the key).\n");
}

/* Base64 (RFC 4648 4, with padding) of in into out (4 * ceil(len / 3) + 1 bytes). */
static void base64(char *out, const uint8_t *in, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= in[i + 2];
        }
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

/* Print the ECHConfigList of keys[0..n) in base64 on one line. */
static int print_list(const struct tls_ech_key *keys, size_t n)
{
    static uint8_t list[TLS_ECH_MAX_LIST_LEN];
    static char text[(TLS_ECH_MAX_LIST_LEN + 2) / 3 * 4 + 1];
    size_t len;
    if (tls_ech_config_list(list, sizeof(list), &len, keys, n) != 0) {
        fprintf(stderr, PROG ": the ECHConfigList does not fit\n");
        return 1;
    }
    base64(text, list, len);
    if (printf("%s\n", text) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, PROG ": cannot write to stdout: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}

static int load(struct tls_ech_key *k, const char *path)
{
    enum tls_ech_key_error why;
    if (tls_ech_key_load(k, &why, path) != 0) {
        fprintf(stderr, PROG ": %s: %s\n", path, config_ech_key_why(why));
        return 1;
    }
    return 0;
}

/* A whole decimal number in 0..max, or -1. */
static long parse_u8(const char *s, long max)
{
    char *end;
    if (s == NULL || s[0] < '0' || s[0] > '9') {
        return -1;
    }
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno != 0 || *end != '\0' || v > max ? -1 : v;
}

static int cmd_generate(int argc, char **argv)
{
    const char *name = NULL, *out = NULL;
    long config_id = -1, max_name = 0;
    static char pem[8192];
    size_t pem_len = 0;
    struct tls_ech_key k;
    int ret = 1, fd = -1;

    memset(&k, 0, sizeof(k));
    /* Every option takes a value: step over pairs. */
    for (int i = 2; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--public-name") == 0 && v != NULL && name == NULL) {
            name = v;
        } else if (strcmp(a, "--out") == 0 && v != NULL && out == NULL) {
            out = v;
        } else if (strcmp(a, "--config-id") == 0 && v != NULL) {
            if ((config_id = parse_u8(v, 255)) < 0) {
                fprintf(stderr, PROG ": --config-id '%s': not a number from 0 to 255\n", v);
                return 2;
            }
        } else if (strcmp(a, "--max-name-length") == 0 && v != NULL) {
            if ((max_name = parse_u8(v, 255)) < 0) {
                fprintf(stderr, PROG ": --max-name-length '%s': not a number from 0 to 255\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, PROG ": generate: unexpected argument '%s'%s\n", a,
                    v == NULL && strncmp(a, "--", 2) == 0 ? " (or its value is missing)" : "");
            usage(stderr);
            return 2;
        }
    }
    if (name == NULL || out == NULL) {
        fprintf(stderr, PROG ": generate needs --public-name NAME and --out FILE\n");
        usage(stderr);
        return 2;
    }
    if (config_id < 0) {
        uint8_t b;
        tls_random(&b, 1);
        config_id = b;
    }
    if (tls_ech_key_generate(&k, (uint8_t)config_id, name, (uint8_t)max_name) != 0) {
        fprintf(stderr,
                PROG ": --public-name '%s': not a DNS name (dot-separated letters, digits and hyphens, at most 253 "
                     "bytes, not an IP address)\n",
                name);
        return 2;
    }
    if (tls_ech_key_write_pem(&k, pem, sizeof(pem), &pem_len) != 0) {
        fprintf(stderr, PROG ": %s: the key file does not fit in memory\n", out);
        goto exit;
    }
    /* O_EXCL: never replace a key (a live one, or a link planted in its place); the mode is
       0600 whatever the umask, set again with fchmod since the umask may have cleared bits. */
    fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, PROG ": %s: %s%s\n", out, strerror(errno),
                errno == EEXIST ? " (refusing to overwrite it)" : "");
        goto exit;
    }
    if (fchmod(fd, 0600) != 0) {
        fprintf(stderr, PROG ": %s: chmod 600: %s\n", out, strerror(errno));
        goto unlink;
    }
    for (size_t done = 0; done < pem_len;) {
        ssize_t w = write(fd, pem + done, pem_len - done);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            fprintf(stderr, PROG ": %s: write: %s\n", out, strerror(errno));
            goto unlink;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        fprintf(stderr, PROG ": %s: %s\n", out, strerror(errno));
        goto unlink;
    }
    fd = -1;
    ret = print_list(&k, 1);
    goto exit;
unlink:
    unlink(out);
exit:
    if (fd >= 0) {
        close(fd);
    }
    kl_wipe(pem, sizeof(pem));
    tls_ech_key_dispose(&k);
    return ret;
}

static int cmd_list(int argc, char **argv)
{
    static struct tls_ech_key keys[TLS_ECH_KEYS_MAX];
    size_t n = 0;
    int ret = 1;

    if (argc < 3) {
        fprintf(stderr, PROG ": list needs at least one FILE\n");
        usage(stderr);
        return 2;
    }
    if (argc - 2 > TLS_ECH_KEYS_MAX) {
        fprintf(stderr, PROG ": list: at most %d files (the keys one listener tries)\n", TLS_ECH_KEYS_MAX);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (load(&keys[n], argv[i]) != 0) {
            goto exit;
        }
        n++;
    }
    ret = print_list(keys, n);
exit:
    for (size_t i = 0; i < n; i++) {
        tls_ech_key_dispose(&keys[i]);
    }
    return ret;
}

static const char *aead_name(uint16_t aead)
{
    switch (aead) {
    case 0x0001:
        return "AES-128-GCM";
    case 0x0002:
        return "AES-256-GCM";
    case 0x0003:
        return "ChaCha20-Poly1305";
    default:
        return "?";
    }
}

static int cmd_show(int argc, char **argv)
{
    struct tls_ech_key k;
    if (argc != 3) {
        fprintf(stderr, PROG ": show needs exactly one FILE\n");
        usage(stderr);
        return 2;
    }
    if (load(&k, argv[2]) != 0) {
        return 1;
    }
    printf("file: %s\nversion: 0x%04x\nconfig_id: %u\npublic_name: %s\nkem: 0x%04x DHKEM(X25519, HKDF-SHA256)\n"
           "maximum_name_length: %u\nsuites:",
           argv[2], TLS_ECH_VERSION, k.config_id, k.public_name, k.kem_id, k.maximum_name_length);
    for (size_t i = 0; i < k.n_suites; i++) {
        printf("%s HKDF-SHA256/%s", i ? "," : "", aead_name(k.suites[i].aead_id));
    }
    printf("\nechconfiglist: ");
    int ret = print_list(&k, 1);
    tls_ech_key_dispose(&k);
    return ret;
}

int main(int argc, char **argv)
{
    char buf[256];
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        puts(kl_cli_version(PROG, buf, sizeof(buf)));
        return 0;
    }
    if (strcmp(cmd, "generate") == 0) {
        return cmd_generate(argc, argv);
    }
    if (strcmp(cmd, "list") == 0) {
        return cmd_list(argc, argv);
    }
    if (strcmp(cmd, "show") == 0) {
        return cmd_show(argc, argv);
    }
    fprintf(stderr, PROG ": unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
