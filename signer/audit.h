/*
 * audit.h - the signer's append-only, hash-chained decision log: the writer.
 *
 * Every decision (signed or refused, with its reason) is one line of JSON, written with
 * write(2) to a file opened O_APPEND before audit_append() returns. Each line carries the
 * hash of the line before it ("prev") and its own hash ("hash"), so that editing,
 * deleting, inserting, reordering or truncating any line is detected offline. The line
 * format is audit_line.h's (docs/AUDIT.md has the whole of it); the offline verifier is
 * audit_verify.h's. This module owns the file: append, group commit, the flusher thread,
 * rotation, and the check (and optional repair) of the last line when a log is reopened.
 *
 * Ownership: struct audit_log is opened and closed here and owns its file descriptor,
 * path copy, flusher thread and line buffer; records are borrowed for one call.
 * Errors: 0 or a negative kl_err, listed at each function; audit_open_ex() also gives the
 * reason of a failure as an enum audit_open_fail, so callers never match on its message.
 * Invariants: one writer per file (flock); sequence numbers increase by one per line with
 * no gap; a record is in the file (write(2) returned) before audit_append() returns 0.
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
#include "audit_line.h"
#include "kl_err.h"

#define AUDIT_DEFAULT_GROUP_MS 1

struct audit_log;

enum audit_sync { AUDIT_SYNC_ALWAYS, AUDIT_SYNC_GROUP, AUDIT_SYNC_NONE };

/* Flags for audit_open_ex(). */
#define AUDIT_OPEN_REPAIR_TORN 0x1 /* see audit_open_ex */

/* Why audit_open_ex() failed, for callers that act on the reason (never parse err). */
enum audit_open_fail {
    AUDIT_OPEN_FAIL_NONE = 0,  /* it did not fail */
    AUDIT_OPEN_FAIL_ARGS,      /* invalid arguments (KL_ERR_INVALID) */
    AUDIT_OPEN_FAIL_IO,        /* open, read, fstat or fsync failed (KL_ERR_IO) */
    AUDIT_OPEN_FAIL_LOCKED,    /* another process holds the log (flock; KL_ERR_IO) */
    AUDIT_OPEN_FAIL_TORN,      /* the last line has no newline and no repair was asked (KL_ERR_AUDIT) */
    AUDIT_OPEN_FAIL_REPAIR,    /* saving or cutting off a torn last line failed (KL_ERR_IO) */
    AUDIT_OPEN_FAIL_LONG_LINE, /* the last line is longer than AUDIT_MAX_LINE (KL_ERR_AUDIT) */
    AUDIT_OPEN_FAIL_BAD_TAIL,  /* the last line does not verify (KL_ERR_AUDIT) */
    AUDIT_OPEN_FAIL_RESOURCE,  /* no memory, no flusher thread, no libsodium (KL_ERR_NO_MEMORY, KL_ERR_CRYPTO) */
};

/*
 * Open (creating it 0600 if needed) the log at path and continue its chain.
 * An existing file's last line is parsed and its hash checked; the next record chains to
 * it and takes the next sequence number. group_ms is the GROUP flush interval (0 means
 * AUDIT_DEFAULT_GROUP_MS; ignored in the other modes).
 * A file whose last line has no newline (a torn write from a crash) is refused with
 * KL_ERR_AUDIT, see audit_open_ex() to repair it. Other errors: KL_ERR_IO, KL_ERR_NO_MEMORY,
 * KL_ERR_INVALID, KL_ERR_CRYPTO. On failure one line saying why is logged (log_errx).
 */
KL_MUST_CHECK int audit_open(struct audit_log **log_p, const char *path, enum audit_sync sync, unsigned group_ms);

/*
 * audit_open() with flags, the typed reason of a failure in *fail_p (may be NULL; set to
 * AUDIT_OPEN_FAIL_NONE on success) and an error message buffer (err may be NULL: then the
 * message is logged). With AUDIT_OPEN_REPAIR_TORN a torn last line is copied to
 * "<path>.torn.<seconds>" and cut off the log before the chain continues. That is safe
 * in the ALWAYS and GROUP modes: a torn line was never fdatasync()ed in full, so the
 * signature it recorded was never sent.
 */
KL_MUST_CHECK int audit_open_ex(struct audit_log **log_p, const char *path, enum audit_sync sync, unsigned group_ms,
                                unsigned flags, enum audit_open_fail *fail_p, char *err, size_t err_len);

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

#endif
