/*
 * audit_verify.h - the offline verifier of the audit log's hash chain, and its command
 * `keyless-signer audit-verify`.
 *
 * Purpose: read log files (oldest first, as rotation left them) and say whether the chain
 * is whole: every line checks on its own (audit_line_check), each chains to the one before
 * ("prev" = the previous "hash", seq + 1), the first file starts at the genesis or with a
 * rotation record, each later file begins with the rotation record continuing the one
 * before. Zero bytes after the last newline of a file, to its end, are the writer's
 * preallocated tail (audit.h), not a record, and are skipped; zeros anywhere else are
 * damage. Editing, deleting, inserting or reordering lines is found; with the audit public
 * key, the signed checkpoints are checked too (forged, missing, or counting other records);
 * cutting lines off the end is found against a checkpoint anchored elsewhere (anchor_seq,
 * anchor_head, expect_head; docs/AUDIT.md).
 *
 * Ownership: paths and expect_head are borrowed for the call; report is written to, never
 * closed. Errors: 0 good, KL_ERR_AUDIT tampering or damage (where: in the result),
 * KL_ERR_IO a file cannot be read. Invariants: the verifier never writes to a log file,
 * and its one-line report is the same as signer/audit-verify.py's for the same files.
 */
#ifndef SIGNER_AUDIT_VERIFY_H
#define SIGNER_AUDIT_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "audit_line.h"
#include "kl_err.h"

struct crypto_pubkey;

/*
 * What else to hold the chain to (all optional: zero it for none).
 * expect_head: the last record's hash must be this (the old --expect-head).
 * pubkey: the audit public key; with it the verifier also checks the checkpoints: every
 *   op "checkpoint" record is signed by this key over its statement, its count equals the
 *   records since the previous checkpoint, no more than its interval records go by without
 *   a checkpoint, a chain that starts at the genesis starts with an op "start" record, and
 *   there is at least one checkpoint.
 * anchor_head / anchor_seq: a checkpoint exported elsewhere (syslog, the anchor file): the
 *   record with seq anchor_seq must be in the files (else the log ends before it: the end
 *   was cut) and, with anchor_head, have that hash; anchor_head alone must be the hash of
 *   some record.
 */
struct audit_verify_opts {
    const uint8_t *expect_head;
    const struct crypto_pubkey *pubkey;
    const uint8_t *anchor_head;
    uint64_t anchor_seq; /* 0: none */
};

/* The result of a verification. */
struct audit_verify_result {
    uint64_t records;             /* good records checked */
    uint64_t first_seq, last_seq; /* seq range of the good records (0 if none) */
    uint8_t head[AUDIT_HASH_LEN]; /* hash of the last good record (the genesis if none) */
    int anchored;                 /* 1 if the chain starts at the genesis, 0 if at a rotated_from */
    size_t bad_file;              /* index into paths of the first bad file (if failed) */
    uint64_t bad_line;            /* 1-based line number of the first bad line, 0 if none */
    char what[256];               /* what is wrong, empty if nothing */
    /* With opts->pubkey: */
    uint64_t checkpoints;    /* signed checkpoints verified */
    uint64_t signed_through; /* seq of the last verified checkpoint (0 if none) */
    uint64_t tail;           /* records after it */
    /* Internal state of the walk. */
    uint64_t since_cp;    /* non-checkpoint records since the last checkpoint */
    uint64_t cp_interval; /* the last checkpoint's interval */
    int counts_known;     /* since_cp counts from a checkpoint or the genesis */
    int anchor_found;     /* the anchored record was seen */
};

/*
 * Verify the chain across paths[0..n_paths-1], in order (oldest first; each later file
 * must begin with the rotate record continuing the previous file). If expect_head is not
 * NULL the last hash must equal it: this is the only way to detect that lines were cut
 * off the end, so anchor the head externally (see docs/AUDIT.md).
 * Prints to report (may be NULL) either
 *   "OK: N records, seq A..B, head HEX\n"  or  "FAIL: FILE:LINE: what\n".
 * Returns 0 if the chain is good, KL_ERR_AUDIT if tampering or damage was found (res says
 * where), KL_ERR_IO if a file cannot be read. res may be NULL.
 */
KL_MUST_CHECK int audit_verify_files(FILE *report, struct audit_verify_result *res, const char *const *paths,
                                     size_t n_paths, const uint8_t *expect_head);

/*
 * audit_verify_files() with the checks of opts (may be NULL). An empty log (no records) is
 * refused in every mode: it has no start record. With opts->pubkey the OK line goes on
 *   "; K signed checkpoints, verified through seq C, T records after the last checkpoint".
 */
KL_MUST_CHECK int audit_verify_files_ex(FILE *report, struct audit_verify_result *res, const char *const *paths,
                                        size_t n_paths, const struct audit_verify_opts *opts);

/* audit_verify_files() on one file. */
KL_MUST_CHECK int audit_verify_file(FILE *report, const char *path, const uint8_t *expect_head);

/*
 * The `keyless-signer audit-verify [--expect-head HEX] [--pubkey PEM] [--head HEX]
 * [--last-seq N] FILE...` command: argv[0] is "audit-verify". The report goes to stdout, usage errors to stderr.
 * Returns the process exit status: 0 good, 1 bad chain, 2 usage or I/O.
 */
int audit_verify_main(int argc, char **argv);

#endif
