/*
 * fuzz_audit_line.c - libFuzzer target for the audit line checker, audit_line_check(): the
 * function the verifier (audit_verify.c) and the writer's reopen run on every line they
 * read, here on arbitrary bytes.
 *
 * Input: byte 0 picks the mode, the rest is the payload.
 *   0 raw:      the payload is checked as one line, as read from a file;
 *   1 resealed: the payload's last 64 hex digits before `"}` are replaced by the true hash
 *               of what precedes `,"hash":"`, so the fuzzer gets past the hash check and
 *               reaches the success path with lines it made up;
 *   2 written:  the payload, split at NUL bytes, gives the record's untrusted strings
 *               (SNI, client address, key, reason); the formatted line must check.
 * Invariants checked (abort on violation): a refusal always says why; an accepted line's
 * hash is the SHA-256 of its body and its seq is positive; every line the formatter writes
 * checks and gives back its seq, prev and hash.
 */
#include <stdlib.h>
#include <string.h>
#include "audit_line.h"
#include "crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* `,"hash":"` + 64 hex digits + `"}` */
#define TAIL_LEN (9 + 2 * AUDIT_HASH_LEN + 2)

static void check_accepted(const struct audit_line_info *info, const char *s, size_t len)
{
    uint8_t h[AUDIT_HASH_LEN];
    if (len < TAIL_LEN || info->seq == 0)
        abort();
    crypto_sha256(h, s, len - TAIL_LEN);
    if (memcmp(h, info->hash, AUDIT_HASH_LEN) != 0)
        abort();
}

static void check_one(const char *s, size_t len)
{
    struct audit_line_info info;
    char what[256];
    what[0] = '\0';
    if (audit_line_check(&info, what, sizeof(what), s, len) == 0)
        check_accepted(&info, s, len);
    else if (what[0] == '\0' || memchr(what, '\0', sizeof(what)) == NULL)
        abort(); /* a refusal must say why, in a terminated string */
}

static void resealed(const uint8_t *p, size_t n)
{
    char hex[2 * AUDIT_HASH_LEN + 1];
    uint8_t h[AUDIT_HASH_LEN];
    char *s;
    if (n < TAIL_LEN) {
        check_one((const char *)p, n);
        return;
    }
    if ((s = malloc(n)) == NULL)
        return;
    memcpy(s, p, n);
    crypto_sha256(h, s, n - TAIL_LEN);
    audit_hex_hash(hex, h);
    memcpy(s + n - 2 - 2 * AUDIT_HASH_LEN, hex, 2 * AUDIT_HASH_LEN);
    check_one(s, n);
    free(s);
}

static void written(const uint8_t *p, size_t n)
{
    /* Four NUL-terminated strings out of the payload (the last one may run to the end). */
    char *copy = malloc(n + 1), *str[4] = {NULL, NULL, NULL, NULL};
    struct kl_buf b;
    struct audit_line_info info;
    uint8_t prev[AUDIT_HASH_LEN], hash[AUDIT_HASH_LEN];
    char what[256];
    size_t k = 0, start = 0;

    if (copy == NULL)
        return;
    memcpy(copy, p, n);
    copy[n] = '\0';
    for (size_t i = 0; i <= n && k < 4; i++) {
        if (copy[i] == '\0') {
            str[k++] = copy + start;
            start = i + 1;
        }
    }
    for (size_t i = 0; i < AUDIT_HASH_LEN; i++)
        prev[i] = (uint8_t)(n + i);
    struct audit_record r = {.time = {(time_t)n * 1000003, (long)(n % 1000000000)},
                             .pid = (pid_t)n,
                             .op = "sign",
                             .key = str[2],
                             .scheme = (uint16_t)(n * 257),
                             .context = (int)(n % 3),
                             .hash = p,
                             .hash_len = n < 48 ? n : 48,
                             .server_name = str[0],
                             .client_address = str[1],
                             .connection_id = n,
                             .request_id = ~(uint64_t)n,
                             .status = "OK",
                             .reason = str[3],
                             .latency_us = n};
    kl_buf_init(&b, AUDIT_MAX_LINE);
    if (audit_line_format(&b, hash, &r, n + 1, prev, n % 2 ? str[0] : NULL) == 0) {
        if (b.len == 0 || b.base[b.len - 1] != '\n')
            abort();
        if (audit_line_check(&info, what, sizeof(what), (const char *)b.base, b.len - 1) != 0)
            abort(); /* the writer wrote a line the verifier refuses */
        if (info.seq != n + 1 || memcmp(info.prev, prev, AUDIT_HASH_LEN) != 0 ||
            memcmp(info.hash, hash, AUDIT_HASH_LEN) != 0 || info.has_rotated_from != (n % 2 && str[0] != NULL))
            abort();
    }
    kl_buf_dispose_nowipe(&b);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0:
        check_one((const char *)data + 1, size - 1);
        break;
    case 1:
        resealed(data + 1, size - 1);
        break;
    default:
        written(data + 1, size - 1);
        break;
    }
    return 0;
}
