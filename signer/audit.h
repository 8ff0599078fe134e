/*
 * audit.h - the signer's append-only, hash-chained decision log.
 *
 * Every decision (signed or refused, with its reason) is one line of JSON, written with
 * write(2) to a file opened O_APPEND before audit_append() returns. Each line carries the
 * hash of the line before it ("prev") and its own hash ("hash"), so that editing,
 * deleting, inserting, reordering or truncating any line is detected offline. The exact
 * format and chain construction are in docs/AUDIT.md; in short, a line is
 *
 *   B + ",\"hash\":\"" + hex(SHA-256(B)) + "\"}\n"
 *
 * where B is the line's JSON object up to and including its "prev" member (the hex hash
 * of the previous line, or 64 zeros for the first record of a fresh log). Lines are
 * printable ASCII only: every string byte outside 0x20..0x7e, '"' and '\\' is escaped, so
 * untrusted strings (SNI, client address) can never split or forge a line.
 *
 * Durability (enum audit_sync): the caller sends a signature only after
 * audit_wait_durable() returned 0 for its record.
 *   AUDIT_SYNC_ALWAYS  every record is fdatasync()ed before its wait returns (concurrent
 *                      waiters share one fdatasync);
 *   AUDIT_SYNC_GROUP   group commit, the default: one fdatasync covers every record written
 *                      so far, and at most one starts per group_ms. The first waiter runs
 *                      it (no hand-off); records nobody waits for go to a flusher thread;
 *   AUDIT_SYNC_NONE    write(2) only; a crash of the machine (not of the process) may lose
 *                      records whose signatures were sent.
 * An I/O error is sticky: after a failed write or fdatasync every later append and wait
 * fails with KL_ERR_AUDIT, so the signer fails closed.
 */
#ifndef SIGNER_AUDIT_H
#define SIGNER_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>
#include "kl_err.h"

#define AUDIT_HASH_LEN 32
#define AUDIT_DEFAULT_GROUP_MS 1
/* Upper bound on one line; a record that would be longer is refused (KL_ERR_OVERFLOW). */
#define AUDIT_MAX_LINE (1024 * 1024)

struct audit_log;

enum audit_sync { AUDIT_SYNC_ALWAYS, AUDIT_SYNC_GROUP, AUDIT_SYNC_NONE };

/*
 * One decision. Borrowed by audit_append() for the duration of the call only.
 * NULL strings are written as JSON null. A zero time means "now" (CLOCK_REALTIME).
 * context is the RPC Context value (0 unspecified, 1 server, 2 client); scheme 0 with an
 * unknown name is written as a code only.
 */
struct audit_record {
    struct timespec time;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    const char *op; /* "sign", "list_keys", "rotate", ... */
    const char *key;
    uint16_t scheme;
    int context;
    const uint8_t *hash; /* transcript hash, written in hex */
    size_t hash_len;
    const char *server_name;    /* untrusted: as reported by the frontend */
    const char *client_address; /* untrusted: as reported by the frontend */
    uint64_t connection_id;
    uint64_t request_id;
    const char *status; /* "OK", "UNKNOWN_KEY", ... */
    const char *reason; /* why refused, or NULL */
    uint64_t latency_us;
};

/* Flags for audit_open_ex(). */
#define AUDIT_OPEN_REPAIR_TORN 0x1 /* see audit_open_ex */

/*
 * Open (creating it 0600 if needed) the log at path and continue its chain.
 * An existing file's last line is parsed and its hash checked; the next record chains to
 * it and takes the next sequence number. group_ms is the GROUP flush interval (0 means
 * AUDIT_DEFAULT_GROUP_MS; ignored in the other modes).
 * A file whose last line has no newline (a torn write from a crash) is refused with
 * KL_ERR_AUDIT, see audit_open_ex() to repair it. Other errors: KL_ERR_IO, KL_ERR_NO_MEMORY,
 * KL_ERR_INVALID. On failure one line saying why is written to stderr.
 */
KL_MUST_CHECK int audit_open(struct audit_log **log_p, const char *path, enum audit_sync sync, unsigned group_ms);

/*
 * audit_open() with flags and an error message buffer (err may be NULL: then the message
 * goes to stderr). With AUDIT_OPEN_REPAIR_TORN a torn last line is copied to
 * "<path>.torn.<seconds>" and cut off the log before the chain continues. That is safe
 * in the ALWAYS and GROUP modes: a torn line was never fdatasync()ed in full, so the
 * signature it recorded was never sent.
 */
KL_MUST_CHECK int audit_open_ex(struct audit_log **log_p, const char *path, enum audit_sync sync, unsigned group_ms,
                                unsigned flags, char *err, size_t err_len);

/*
 * Append rec as the next line and return its sequence number in *seq_p (may be NULL).
 * Thread-safe. The line is written to the file when this returns 0; it is durable only
 * once audit_wait_durable(seq) returned 0. In GROUP mode a caller that passes seq_p
 * promises to wait for it (its wait runs the sync); with NULL the flusher thread makes
 * the record durable within about group_ms. Errors: KL_ERR_AUDIT (the log failed earlier or
 * now; sticky), KL_ERR_OVERFLOW (line over AUDIT_MAX_LINE), KL_ERR_NO_MEMORY, KL_ERR_INVALID.
 */
KL_MUST_CHECK int audit_append(struct audit_log *log, const struct audit_record *rec, uint64_t *seq_p);

/* Block until record seq is durable per the sync mode. KL_ERR_AUDIT if the log failed. */
KL_MUST_CHECK int audit_wait_durable(struct audit_log *log, uint64_t seq);

/*
 * Make record seq durable now if that needs no waiting: 0 if it is durable when this
 * returns (already, or after an fdatasync run here), KL_ERR_WANT_READ if it would have to
 * wait (a sync is running, or GROUP pacing has not let the next one start yet) - then
 * call audit_wait_durable() elsewhere. KL_ERR_AUDIT if the log failed.
 */
KL_MUST_CHECK int audit_sync_if_idle(struct audit_log *log, uint64_t seq);

/*
 * Rotate: make everything written durable, rename the file to "<path>.<UTC timestamp>"
 * (never replacing a file), create a fresh file at path and write its first line, an
 * op "rotate" record with "rotated_from" (the old file's base name) that chains to the
 * old file's last hash. If rotated_name is not NULL the new name of the old file is
 * copied there (NUL-terminated, truncated to rotated_name_len).
 */
KL_MUST_CHECK int audit_rotate(struct audit_log *log);
KL_MUST_CHECK int audit_rotate_ex(struct audit_log *log, char *rotated_name, size_t rotated_name_len);

/* The hash of the last line written (the head, to anchor externally) and its seq. */
void audit_head(struct audit_log *log, uint8_t head[AUDIT_HASH_LEN], uint64_t *seq_p);

/* Bytes in the current file (for size-based rotation). */
uint64_t audit_size(struct audit_log *log);

/* The last record known durable, and the number of fdatasync calls made so far (tests,
 * metrics). */
uint64_t audit_durable_seq(struct audit_log *log);
uint64_t audit_sync_count(struct audit_log *log);

/* Make everything written durable (all modes), stop the flusher, close. NULL is a no-op. */
void audit_close(struct audit_log *log);

/*
 * Escape len bytes of s as the inside of a JSON string into out (capacity out_cap; the
 * output is NUL-terminated when it fits). Returns the escaped length, which may exceed
 * out_cap - 1: then the output is incomplete. Bytes 0x20..0x7e other than '"' and '\\'
 * are copied; '"' and '\\' become \" and \\; every other byte (controls, NUL, DEL, all
 * bytes >= 0x80, valid UTF-8 or not) becomes \u00XX, so a JSON string decodes to code
 * points U+0000..U+00FF that stand one-to-one for the original bytes.
 */
size_t audit_json_escape(char *out, size_t out_cap, const void *s, size_t len);

/* The result of a verification. */
struct audit_verify_result {
    uint64_t records;             /* good records checked */
    uint64_t first_seq, last_seq; /* seq range of the good records (0 if none) */
    uint8_t head[AUDIT_HASH_LEN]; /* hash of the last good record (the genesis if none) */
    int anchored;                 /* 1 if the chain starts at the genesis, 0 if at a rotated_from */
    size_t bad_file;              /* index into paths of the first bad file (if failed) */
    uint64_t bad_line;            /* 1-based line number of the first bad line, 0 if none */
    char what[256];               /* what is wrong, empty if nothing */
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

/* audit_verify_files() on one file. */
KL_MUST_CHECK int audit_verify_file(FILE *report, const char *path, const uint8_t *expect_head);

/*
 * The `keyless-signer audit-verify [--expect-head HEX] FILE...` command: argv[0] is
 * "audit-verify". Returns the process exit status: 0 good, 1 bad chain, 2 usage or I/O.
 */
int audit_verify_main(int argc, char **argv);

#endif
