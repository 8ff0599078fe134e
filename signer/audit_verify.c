/*
 * audit_verify.c - the audit log's offline verifier and `keyless-signer audit-verify`
 * (audit_verify.h). One line at a time through audit_line_check(), then the chain.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include "audit_verify.h"
#include "crypto.h"

static const uint8_t genesis[AUDIT_HASH_LEN];

/* Check line number ln of file index fi (len bytes, newline included) against the chain
 * so far in r. 0 if it extends the chain, KL_ERR_AUDIT with r->what filled if not. */
static int verify_line(struct audit_verify_result *r, uint64_t ln, char *line, size_t len)
{
    struct audit_line_info p;
    char *what = r->what;
    size_t what_len = sizeof(r->what);
    int ret;

    if (line[len - 1] != '\n') {
        snprintf(what, what_len, "incomplete line (no newline at end of file: truncated or torn write)");
        return KL_ERR_AUDIT;
    }
    if ((ret = audit_line_check(&p, what, what_len, line, len - 1)) != 0)
        return ret;
    if (p.has_rotated_from && ln != 1) {
        snprintf(what, what_len, "rotated_from on a line that is not the first of its file (line inserted)");
        return KL_ERR_AUDIT;
    }
    if (r->records == 0) {
        if (p.has_rotated_from) {
            r->anchored = 0;
        } else if (!crypto_equal(p.prev, genesis, AUDIT_HASH_LEN) || p.seq != 1) {
            snprintf(what, what_len,
                     "first record (seq %" PRIu64 ") does not start a fresh log (prev is not the genesis "
                     "hash, or seq is not 1) and is not a rotation record: records deleted before it",
                     p.seq);
            return KL_ERR_AUDIT;
        }
    } else {
        if (ln == 1 && !p.has_rotated_from) {
            snprintf(what, what_len, "file does not begin with a rotation record continuing the previous file");
            return KL_ERR_AUDIT;
        }
        if (!crypto_equal(p.prev, r->head, AUDIT_HASH_LEN)) {
            snprintf(what, what_len,
                     "prev does not match the hash of the previous record (seq %" PRIu64
                     "): a record was deleted, inserted, reordered or edited",
                     r->last_seq);
            return KL_ERR_AUDIT;
        }
        if (p.seq != r->last_seq + 1) {
            snprintf(what, what_len, "seq %" PRIu64 " where %" PRIu64 " was expected", p.seq, r->last_seq + 1);
            return KL_ERR_AUDIT;
        }
    }
    if (r->records == 0)
        r->first_seq = p.seq;
    r->records++;
    r->last_seq = p.seq;
    memcpy(r->head, p.hash, AUDIT_HASH_LEN);
    return 0;
}

int audit_verify_files(FILE *report, struct audit_verify_result *res, const char *const *paths, size_t n_paths,
                       const uint8_t *expect_head)
{
    struct audit_verify_result local, *r = res != NULL ? res : &local;
    char *line = NULL;
    size_t line_cap = 0;
    int ret = 0;
    const char *bad_path = NULL;
    char hex[2 * AUDIT_HASH_LEN + 1], hex2[2 * AUDIT_HASH_LEN + 1];

    memset(r, 0, sizeof(*r));
    r->anchored = 1;
    for (size_t fi = 0; fi < n_paths && ret == 0; fi++) {
        FILE *f = fopen(paths[fi], "rb");
        uint64_t ln = 0;
        ssize_t got;
        if (f == NULL) {
            r->bad_file = fi;
            snprintf(r->what, sizeof(r->what), "cannot open: %s", strerror(errno));
            bad_path = paths[fi];
            ret = KL_ERR_IO;
            break;
        }
        while ((got = getline(&line, &line_cap, f)) > 0) {
            ln++;
            if ((ret = verify_line(r, ln, line, (size_t)got)) != 0) {
                r->bad_file = fi;
                r->bad_line = ln;
                bad_path = paths[fi];
                break;
            }
        }
        if (ret == 0 && ferror(f)) {
            r->bad_file = fi;
            snprintf(r->what, sizeof(r->what), "read error: %s", strerror(errno));
            bad_path = paths[fi];
            ret = KL_ERR_IO;
        }
        fclose(f);
    }
    free(line);
    if (ret == 0 && expect_head != NULL && !crypto_equal(expect_head, r->head, AUDIT_HASH_LEN)) {
        audit_hex_hash(hex, r->head);
        audit_hex_hash(hex2, expect_head);
        r->bad_file = n_paths > 0 ? n_paths - 1 : 0;
        r->bad_line = 0;
        snprintf(r->what, sizeof(r->what), "head %s is not the expected %s: records at the end were removed", hex,
                 hex2);
        bad_path = n_paths > 0 ? paths[n_paths - 1] : "(no file)";
        ret = KL_ERR_AUDIT;
    }
    if (report != NULL) {
        if (ret == 0) {
            audit_hex_hash(hex, r->head);
            fprintf(report, "OK: %" PRIu64 " records, seq %" PRIu64 "..%" PRIu64 ", head %s%s\n", r->records,
                    r->first_seq, r->last_seq, hex,
                    r->anchored ? "" : ", unanchored start (first file continues a rotated file)");
        } else if (r->bad_line != 0) {
            fprintf(report, "FAIL: %s:%" PRIu64 ": %s\n", bad_path, r->bad_line, r->what);
        } else {
            fprintf(report, "FAIL: %s:end: %s\n", bad_path, r->what);
        }
    }
    return ret;
}

int audit_verify_file(FILE *report, const char *path, const uint8_t *expect_head)
{
    const char *paths[1] = {path};
    return audit_verify_files(report, NULL, paths, 1, expect_head);
}

int audit_verify_main(int argc, char **argv)
{
    uint8_t head[AUDIT_HASH_LEN];
    const uint8_t *expect = NULL;
    int i = 1;

    if (crypto_init() != 0) {
        fprintf(stderr, "audit-verify: cannot initialise libsodium\n");
        return 2;
    }
    if (i < argc && strcmp(argv[i], "--expect-head") == 0) {
        if (i + 1 >= argc || audit_hex_decode_hash(head, argv[i + 1], strlen(argv[i + 1])) != 0) {
            fprintf(stderr, "audit-verify: --expect-head needs 64 lowercase hex digits\n");
            return 2;
        }
        expect = head;
        i += 2;
    }
    if (i < argc && strcmp(argv[i], "--") == 0)
        i++;
    if (i >= argc) {
        fprintf(stderr, "usage: keyless-signer audit-verify [--expect-head HEX] FILE... (oldest file first)\n");
        return 2;
    }
    int ret = audit_verify_files(stdout, NULL, (const char *const *)(argv + i), (size_t)(argc - i), expect);
    return ret == 0 ? 0 : ret == KL_ERR_AUDIT ? 1 : 2;
}
