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

/* A chunk that is all zero bytes. */
static int is_zero_tail(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != '\0')
            return 0;
    }
    return 1;
}

/* Check line number ln of file index fi (len bytes, newline included) against the chain
 * so far in r. 0 if it extends the chain, KL_ERR_AUDIT with r->what filled if not. */
static int verify_checkpoints(struct audit_verify_result *r, const struct audit_verify_opts *o,
                              const struct audit_line_info *p);

static int verify_line(struct audit_verify_result *r, const struct audit_verify_opts *o, uint64_t ln, char *line,
                       size_t len)
{
    static __thread struct audit_line_info p; /* 1.3 KiB: not on the stack of every caller */
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
    if (o != NULL && o->pubkey != NULL && (ret = verify_checkpoints(r, o, &p)) != 0)
        return ret;
    if (o != NULL && o->anchor_seq != 0 && p.seq == o->anchor_seq) {
        if (o->anchor_head != NULL && !crypto_equal(o->anchor_head, p.hash, AUDIT_HASH_LEN)) {
            snprintf(what, what_len,
                     "record seq %" PRIu64 " is not the anchored checkpoint (its hash differs from the anchored "
                     "head): the log was rewritten from here on",
                     p.seq);
            return KL_ERR_AUDIT;
        }
        r->anchor_found = 1;
    } else if (o != NULL && o->anchor_seq == 0 && o->anchor_head != NULL &&
               crypto_equal(o->anchor_head, p.hash, AUDIT_HASH_LEN)) {
        r->anchor_found = 1;
    }
    if (r->records == 0)
        r->first_seq = p.seq;
    r->records++;
    r->last_seq = p.seq;
    memcpy(r->head, p.hash, AUDIT_HASH_LEN);
    return 0;
}

/* The checkpoint rules (opts->pubkey): start record, signatures, counts, gaps. */
static int verify_checkpoints(struct audit_verify_result *r, const struct audit_verify_opts *o,
                              const struct audit_line_info *p)
{
    char *what = r->what;
    size_t what_len = sizeof(r->what);

    if (r->records == 0 && !p->has_rotated_from) {
        /* A chain from the genesis: this version always opens it with a start record. */
        if (!p->is_start) {
            snprintf(what, what_len, "the chain does not begin with a start record");
            return KL_ERR_AUDIT;
        }
        r->counts_known = 1;
    }
    if (!p->is_checkpoint) {
        r->since_cp++;
        r->tail++;
        if (r->checkpoints > 0 && r->since_cp > r->cp_interval) {
            snprintf(what, what_len,
                     "%" PRIu64 " records after the checkpoint at seq %" PRIu64
                     " without a checkpoint (at most %" PRIu64 "): a checkpoint is missing",
                     r->since_cp, r->signed_through, r->cp_interval);
            return KL_ERR_AUDIT;
        }
        return 0;
    }
    if (!p->cp_signed) {
        snprintf(what, what_len, "checkpoint seq %" PRIu64 " is not signed", p->seq);
        return KL_ERR_AUDIT;
    }
    if (crypto_ecdsa_sha256_verify(o->pubkey, p->cp_sig, p->cp_sig_len, p->cp_statement, p->cp_statement_len) != 0) {
        snprintf(what, what_len,
                 "checkpoint seq %" PRIu64 ": the signature does not verify with the audit key (forged or altered)",
                 p->seq);
        return KL_ERR_AUDIT;
    }
    if (r->counts_known && p->cp_count != r->since_cp) {
        snprintf(what, what_len,
                 "checkpoint seq %" PRIu64 " counts %" PRIu64 " records since the previous one, the log has %" PRIu64
                 ": records were removed or added",
                 p->seq, p->cp_count, r->since_cp);
        return KL_ERR_AUDIT;
    }
    if (p->cp_count > p->cp_interval) {
        snprintf(what, what_len, "checkpoint seq %" PRIu64 " comes after %" PRIu64 " records, more than its interval",
                 p->seq, p->cp_count);
        return KL_ERR_AUDIT;
    }
    r->counts_known = 1;
    r->since_cp = 0;
    r->tail = 0;
    r->cp_interval = p->cp_interval;
    r->checkpoints++;
    r->signed_through = p->seq;
    return 0;
}

int audit_verify_files(FILE *report, struct audit_verify_result *res, const char *const *paths, size_t n_paths,
                       const uint8_t *expect_head)
{
    struct audit_verify_opts o = {.expect_head = expect_head};
    return audit_verify_files_ex(report, res, paths, n_paths, &o);
}

int audit_verify_files_ex(FILE *report, struct audit_verify_result *res, const char *const *paths, size_t n_paths,
                          const struct audit_verify_opts *opts)
{
    const uint8_t *expect_head = opts != NULL ? opts->expect_head : NULL;
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
            /* Zeros after the last newline, to the end of the file: the space the writer
             * keeps ahead of its records (signer/audit.c, extend_locked), not a record. A
             * torn line before them is still reported (its chunk does not start with zero). */
            if (line[got - 1] != '\n' && is_zero_tail(line, (size_t)got))
                break;
            ln++;
            if ((ret = verify_line(r, opts, ln, line, (size_t)got)) != 0) {
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
    if (ret == 0) {
        /* Every end-of-log rule blames the end of the last file. */
        r->bad_file = n_paths > 0 ? n_paths - 1 : 0;
        r->bad_line = 0;
        bad_path = n_paths > 0 ? paths[n_paths - 1] : "(no file)";
        if (r->records == 0) {
            snprintf(r->what, sizeof(r->what), "no records: an empty log has no start record");
            ret = KL_ERR_AUDIT;
        } else if (opts != NULL && opts->anchor_seq != 0 && !r->anchor_found) {
            snprintf(r->what, sizeof(r->what),
                     "the log ends at seq %" PRIu64 ", before the anchored checkpoint seq %" PRIu64
                     " (or does not hold it): records at the end were removed",
                     r->last_seq, opts->anchor_seq);
            ret = KL_ERR_AUDIT;
        } else if (opts != NULL && opts->anchor_seq == 0 && opts->anchor_head != NULL && !r->anchor_found) {
            snprintf(r->what, sizeof(r->what), "no record has the anchored head: records were removed or rewritten");
            ret = KL_ERR_AUDIT;
        } else if (opts != NULL && opts->pubkey != NULL && r->checkpoints == 0) {
            snprintf(r->what, sizeof(r->what), "no signed checkpoint in the log");
            ret = KL_ERR_AUDIT;
        }
    }
    if (report != NULL) {
        if (ret == 0) {
            audit_hex_hash(hex, r->head);
            fprintf(report, "OK: %" PRIu64 " records, seq %" PRIu64 "..%" PRIu64 ", head %s%s", r->records,
                    r->first_seq, r->last_seq, hex,
                    r->anchored ? "" : ", unanchored start (first file continues a rotated file)");
            if (opts != NULL && opts->pubkey != NULL)
                fprintf(report,
                        "; %" PRIu64 " signed checkpoints, verified through seq %" PRIu64 ", %" PRIu64
                        " records after the last checkpoint",
                        r->checkpoints, r->signed_through, r->tail);
            fprintf(report, "\n");
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

/* A decimal seq >= 1 from the whole of s. */
static int parse_seq(uint64_t *out, const char *s)
{
    char *end = NULL;
    if (s == NULL || s[0] < '1' || s[0] > '9')
        return KL_ERR_DECODE;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return KL_ERR_DECODE;
    *out = v;
    return 0;
}

int audit_verify_main(int argc, char **argv)
{
    uint8_t head[AUDIT_HASH_LEN], anchor[AUDIT_HASH_LEN];
    struct audit_verify_opts o = {0};
    struct crypto_pubkey *pk = NULL;
    int i = 1, status = 2;
    static const char usage[] = "usage: keyless-signer audit-verify [--expect-head HEX] [--pubkey PEM] [--head HEX] "
                                "[--last-seq N] FILE... (oldest file first)\n";

    if (crypto_init() != 0) {
        fprintf(stderr, "audit-verify: cannot initialise libsodium\n");
        return 2;
    }
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--") == 0) {
            i++;
            break;
        }
        if (val == NULL) {
            fprintf(stderr, "audit-verify: %s needs a value\n%s", opt, usage);
            goto exit;
        }
        if (strcmp(opt, "--expect-head") == 0 || strcmp(opt, "--head") == 0) {
            uint8_t *dst = opt[2] == 'e' ? head : anchor;
            if (audit_hex_decode_hash(dst, val, strlen(val)) != 0) {
                fprintf(stderr, "audit-verify: %s needs 64 lowercase hex digits\n", opt);
                goto exit;
            }
            if (opt[2] == 'e')
                o.expect_head = head;
            else
                o.anchor_head = anchor;
        } else if (strcmp(opt, "--last-seq") == 0) {
            if (parse_seq(&o.anchor_seq, val) != 0) {
                fprintf(stderr, "audit-verify: --last-seq needs a sequence number >= 1\n");
                goto exit;
            }
        } else if (strcmp(opt, "--pubkey") == 0) {
            if (pk != NULL || crypto_pubkey_from_pem_file(&pk, val) != 0) {
                fprintf(stderr, "audit-verify: --pubkey %s: not a readable PEM EC public key\n", val);
                goto exit;
            }
            o.pubkey = pk;
        } else {
            fprintf(stderr, "audit-verify: unknown option %s\n%s", opt, usage);
            goto exit;
        }
    }
    if (i >= argc) {
        fputs(usage, stderr);
        goto exit;
    }
    int ret = audit_verify_files_ex(stdout, NULL, (const char *const *)(argv + i), (size_t)(argc - i), &o);
    status = ret == 0 ? 0 : ret == KL_ERR_AUDIT ? 1 : 2;
exit:
    crypto_pubkey_free(pk);
    return status;
}
