/*
 * audit.h - the signer's append-only, hash-chained decision log: the writer.
 *
 * Every decision (signed or refused, with its reason) is one line of JSON, written with
 * pwrite(2) right after the previous line before audit_append() returns. Each line carries
 * the hash of the line before it ("prev") and its own hash ("hash"), so that editing,
 * deleting, inserting, reordering or truncating any line is detected offline. The line
 * format is audit_line.h's (docs/AUDIT.md has the whole of it); the offline verifier is
 * audit_verify.h's. This module owns the file: append, group commit, the flusher thread,
 * rotation, and the check (and optional repair) of the last line when a log is reopened.
 *
 * Zero tail (issue 15): the live file keeps zeros after its last line (written ahead in
 * 1 MiB steps), so that a record overwrites blocks already in the file and its fdatasync
 * writes one data block and no metadata. So a live log, or one a crash of the machine left,
 * ends in zero bytes after its last newline; a rotated or closed file is cut to its last
 * line; the open finds the end of the records before the zeros (a torn line is the bytes
 * between the last newline and them); both verifiers skip zeros after the last newline.
 *
 * Ownership: struct audit_log is opened and closed here and owns its file descriptor,
 * path copy, flusher thread and line buffer; records are borrowed for one call.
 * Errors: 0 or a negative kl_err, listed at each function; audit_open_ex() also gives the
 * reason of a failure as an enum audit_open_fail, so callers never match on its message.
 * Invariants: one writer per file (flock); sequence numbers increase by one per line with
 * no gap; a record is in the file (write(2) returned) before audit_append() returns 0.
 *
 * Durability (enum audit_sync): the caller sends a signature only after
 * audit_wait_durable() returned 0 for its record, and that happens only once an fdatasync()
 * that started after the record was written has returned 0: the record is on disk.
 *   AUDIT_SYNC_ALWAYS  every waited record is fdatasync()ed before its wait returns; records
 *                      nobody waits for ride the next sync;
 *   AUDIT_SYNC_GROUP   group commit without a timer, the default: a waited record written
 *                      while no fdatasync runs is synced at once by its first waiter (no
 *                      hand-off to another thread); records written while one runs wait for
 *                      it to end, then one of their waiters syncs them all (one fdatasync
 *                      per batch). Records nobody waits for are durable within group_ms:
 *                      they ride a waiter's sync, else a flusher thread syncs them at that
 *                      deadline. group_ms bounds that delay only; a waiter never waits on it;
 *   AUDIT_SYNC_NONE    write(2) only; a crash of the machine (not of the process) may lose
 *                      records whose signatures were sent.
 * A failed write(2) (a full disk) is rolled back: the file is cut back to its last complete
 * line, the append fails with KL_ERR_AUDIT, audit_stats() counts it in write_errors, and the next
 * append tries again, so the log recovers by itself once space returns. Any other I/O
 * error (a failed fdatasync, a rollback that fails) is sticky: every later append and wait
 * fails with KL_ERR_AUDIT, so the signer fails closed.
 */
#ifndef SIGNER_AUDIT_H
#define SIGNER_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "audit_line.h"
#include "kl_err.h"

#define AUDIT_DEFAULT_GROUP_MS 1

struct audit_log;

enum audit_sync { AUDIT_SYNC_ALWAYS, AUDIT_SYNC_GROUP, AUDIT_SYNC_NONE };

/* Flags for audit_open_ex(). */
#define AUDIT_OPEN_REPAIR_TORN 0x1 /* see audit_open_ex */
/*
 * No zero tail: every record is appended to the end of the file, which grows with each
 * fdatasync (a metadata write too). For readers that follow the live file by its size (tail -f,
 * log shippers); costs about 1.6x the latency of a lone durable record (docs/PERFORMANCE.md).
 */
#define AUDIT_OPEN_NO_ZERO_TAIL 0x2

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
 * it and takes the next sequence number. group_ms bounds how long, in GROUP mode, a record
 * nobody waits for may stay not durable (0 means AUDIT_DEFAULT_GROUP_MS; at most 60000;
 * ignored in the other modes); waited records never wait for it.
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
 * promises to wait for it (its wait runs the sync); with NULL the record is durable within
 * about group_ms (a waiter's sync, or the flusher thread's). Errors: KL_ERR_AUDIT (the log failed earlier or
 * now; sticky), KL_ERR_OVERFLOW (line over AUDIT_MAX_LINE), KL_ERR_NO_MEMORY, KL_ERR_INVALID.
 */
KL_MUST_CHECK int audit_append(struct audit_log *log, const struct audit_record *rec, uint64_t *seq_p);

/*
 * Block until record seq is durable per the sync mode: 0 once an fdatasync that started
 * after it was written returned (run here if none is running; else after the running one
 * ends, by this caller or another waiter), at once in NONE mode. KL_ERR_AUDIT if the log
 * failed (now or earlier; sticky), KL_ERR_INVALID for a seq not yet written.
 */
KL_MUST_CHECK int audit_wait_durable(struct audit_log *log, uint64_t seq);

/*
 * Make record seq durable now if that needs no waiting: 0 if it is durable when this
 * returns (already, or after an fdatasync run here), KL_ERR_WANT_READ if it would have to
 * wait (another fdatasync is running) - then call audit_wait_durable() elsewhere.
 * KL_ERR_AUDIT if the log failed.
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

/* One consistent snapshot of the log's state, for metrics, rotation and tests. */
struct audit_stats {
    uint8_t head[AUDIT_HASH_LEN]; /* the hash of the last line written (to anchor externally) */
    uint64_t seq;                 /* ... and its sequence number */
    uint64_t durable_seq;         /* the last record known durable */
    uint64_t size;                /* bytes of records in the current file, without its zero tail */
    uint64_t sync_count;          /* fdatasync calls made since the open */
    uint64_t write_errors;        /* write errors rolled back (a full disk) since the open */
    uint64_t checkpoints;         /* checkpoints written since audit_start() */
    int64_t last_checkpoint_time; /* Unix time of the last signed checkpoint since the open (0: none) */
};

/* Fill *st under the log's lock, once: every field comes from the same instant. */
void audit_stats(struct audit_log *log, struct audit_stats *st);

/* ------------------------------------------------------------------ checkpoints
 *
 * audit_start() turns a log opened above into one that proves its own completeness
 * (docs/AUDIT.md, "Checkpoints"): it checks the log against the state file beside it,
 * writes an op "start" record (with the configuration's SHA-256) and a checkpoint, and
 * from then on writes an op "checkpoint" record
 *   - after every `every_records` records (in the appending thread, so that there are never
 *     more than that many records between two checkpoints),
 *   - within `every_ms` after any record (a checkpointer thread),
 *   - every `heartbeat_ms` when idle (the same thread), so that a cut tail shows,
 *   - before and after a rotation, and at audit_close() after an op "stop" record.
 * A checkpoint carries the host id, the number of records since the previous checkpoint,
 * every_records, and a signature by the audit key (sign, the HSM) over the statement of
 * audit_checkpoint_statement(). After it is durable, the state file is rewritten (seq, head, * file size) and the
 * checkpoint is sent to the anchors: syslog, and optionally a file and a command (one at a time: a checkpoint that
 * finds the last one still running is not sent to it, and says so once). The checkpointer also notices a live log that
 * was unlinked (st_nlink == 0): it makes a new file at the path, chained to the old one by an op "reopen" record, and
 * says so.
 */

/*
 * Sign statement (SHA-256 then ECDSA P-256 with the audit key) into sig: *sig_len_p is the
 * capacity in, the DER length out. 0 or a negative kl_err. Called with the log's lock held,
 * one call at a time.
 */
typedef int (*audit_sign_fn)(void *ctx, uint8_t *sig, size_t *sig_len_p, const uint8_t *statement, size_t len);

#define AUDIT_DEFAULT_CP_RECORDS 1000
#define AUDIT_DEFAULT_CP_MS 1000
#define AUDIT_DEFAULT_HEARTBEAT_MS 30000

struct audit_checkpoint_config {
    const char *host;             /* host id; NULL: gethostname() */
    audit_sign_fn sign;           /* NULL: unsigned checkpoints (the start-up line says so) */
    void *sign_ctx;               /* for sign */
    uint64_t every_records;       /* 0: AUDIT_DEFAULT_CP_RECORDS */
    unsigned every_ms;            /* 0: AUDIT_DEFAULT_CP_MS */
    unsigned heartbeat_ms;        /* 0: AUDIT_DEFAULT_HEARTBEAT_MS */
    int syslog_facility;          /* LOG_AUTHPRIV etc.; -1: no syslog anchor */
    const char *anchor_file;      /* NULL: none; else one line per checkpoint appended */
    const char *anchor_command;   /* NULL: none; else run by /bin/sh -c with the line as $1 */
    const char *state_path;       /* NULL: "<log path>.state" */
    const uint8_t *config_sha256; /* 32 bytes for the start record, or NULL */
    int new_chain;                /* the operator said --new-audit-chain */
};

/* Why audit_start() refused. */
enum audit_start_fail {
    AUDIT_START_FAIL_NONE = 0,
    AUDIT_START_FAIL_MISMATCH, /* missing, empty, truncated or replaced log: the state file disagrees */
    AUDIT_START_FAIL_STATE,    /* the state file cannot be read, written or parsed */
    AUDIT_START_FAIL_WRITE,    /* the start record or checkpoint could not be written or signed */
    AUDIT_START_FAIL_RESOURCE, /* no thread, no memory, bad arguments */
};

/*
 * Start checkpointing log (once, before any other record of this run). The state file
 * (cfg->state_path) holds the seq, head and file size after the last checkpoint; if it
 * exists and the log does not end at or continue from that line (the log is missing,
 * empty, shorter, or another file), the start is refused with KL_ERR_AUDIT and one
 * sentence in err, unless cfg->new_chain: then the start record says that the operator
 * began a new chain and what the state said. A log that has records but no state file is
 * refused the same way (it cannot be checked). A missing state file and an empty log is a
 * first start. cfg is copied (its strings too). Errors: KL_ERR_AUDIT, KL_ERR_IO,
 * KL_ERR_NO_MEMORY, KL_ERR_INVALID; *fail_p (may be NULL) says which.
 */
KL_MUST_CHECK int audit_start(struct audit_log *log, const struct audit_checkpoint_config *cfg,
                              enum audit_start_fail *fail_p, char *err, size_t err_len);

/* Write a checkpoint now with this reason (tests, SIGHUP). 0 or KL_ERR_AUDIT / KL_ERR_INVALID. */
KL_MUST_CHECK int audit_checkpoint_now(struct audit_log *log, const char *reason);

/* After audit_start(): write the op "stop" record and its checkpoint, make everything
 * durable, stop the threads and close. Without: make everything durable, stop the
 * flusher, close. NULL is a no-op. */
void audit_close(struct audit_log *log);

#endif
