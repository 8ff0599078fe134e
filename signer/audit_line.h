/*
 * audit_line.h - one line of the audit log: format a record, and parse and check a line.
 *
 * Purpose: the byte format of the log, in one place, shared by the writer (audit.c) and
 * the verifier (audit_verify.c). A line is one canonical JSON object, printable ASCII only,
 *
 *   B + ",\"hash\":\"" + hex(SHA-256(B)) + "\"}\n"
 *
 * where B is the object up to and including its "prev" member (the hex hash of the line
 * before, or 64 zeros for the first record of a fresh log). The full description is in
 * docs/AUDIT.md. Every string byte outside 0x20..0x7e, '"' and '\\' is escaped, so
 * untrusted strings (SNI, client address) can never split or forge a line. The checker
 * accepts exactly the canonical form the formatter produces: one byte string per record.
 *
 * Ownership: the formatter writes into a kl_buf the caller owns (reused from line to line);
 * the checker only reads the line it is given and keeps no pointer into it.
 * Errors: 0 or a negative kl_err (see each function). Nothing here does I/O or locks.
 * Invariants: audit_line_check() accepts every line audit_line_format() produces (without
 * its newline) and recovers its seq, prev and hash; a line is never longer than
 * AUDIT_MAX_LINE bytes, newline included.
 */
#ifndef SIGNER_AUDIT_LINE_H
#define SIGNER_AUDIT_LINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include "kl_buf.h"
#include "kl_err.h"

#define AUDIT_HASH_LEN 32
/* Upper bound on one line; a record that would be longer is refused (KL_ERR_OVERFLOW). */
#define AUDIT_MAX_LINE (1024 * 1024)
/* The "v" member of every line. */
#define AUDIT_FORMAT_VERSION 1

/* Ticket key ids are this long (the TicketKey.key_id of keyless.proto). */
#define AUDIT_TICKET_KEY_ID_LEN 8

/*
 * Op "ticket_keys" (issue 11): what a TicketKeys request asked for and, when answered,
 * the ids of the keys handed out. Never the secrets. Written as the members
 * "ticket_scope", "ticket_rotation" (seconds), "ticket_epochs" (decimal epochs, comma
 * separated) and "ticket_key_ids" (hex ids in the same order, or null when refused).
 */
struct audit_ticket_keys {
    const char *scope;
    uint32_t rotation;
    const uint64_t *epochs; /* n of them; NULL: not recorded (too many asked) */
    size_t n;
    const uint8_t (*key_ids)[AUDIT_TICKET_KEY_ID_LEN]; /* n of them, or NULL */
};

/*
 * One decision. Borrowed for the duration of a call only.
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
    const struct audit_ticket_keys *tickets; /* op "ticket_keys" only; NULL: no ticket members */
};

/* What audit_line_check() reads from a good line. */
struct audit_line_info {
    uint64_t seq;
    uint8_t prev[AUDIT_HASH_LEN];
    uint8_t hash[AUDIT_HASH_LEN];
    int has_rotated_from; /* the line is a rotation record: it continues a rotated file */
};

/*
 * Format rec as record number seq chained to prev into out (its contents replaced; grow it
 * from kl_buf_init(out, AUDIT_MAX_LINE)), newline included; hash_out receives the line's
 * hash. rotated_from, if not NULL, adds the "rotated_from" member of a rotation record.
 * Errors: KL_ERR_OVERFLOW if the line would exceed AUDIT_MAX_LINE or out's max,
 * KL_ERR_NO_MEMORY, KL_ERR_INVALID for NULL arguments. On error out holds no usable line.
 */
KL_MUST_CHECK int audit_line_format(struct kl_buf *out, uint8_t hash_out[AUDIT_HASH_LEN],
                                    const struct audit_record *rec, uint64_t seq, const uint8_t prev[AUDIT_HASH_LEN],
                                    const char *rotated_from);

/*
 * Check one line s[0..len) (without its newline) on its own: printable ASCII, a canonical
 * flat JSON object with unique members, "v" = AUDIT_FORMAT_VERSION, a positive "seq", the
 * last two members "prev" and "hash" (64 lowercase hex digits each), and "hash" equal to
 * the SHA-256 of the line up to the ,"hash": member. Chaining to other lines is the
 * verifier's job. Fills *info on success. On failure returns KL_ERR_AUDIT and puts one
 * sentence saying what is wrong into what (NUL-terminated, truncated to what_len).
 */
KL_MUST_CHECK int audit_line_check(struct audit_line_info *info, char *what, size_t what_len, const char *s,
                                   size_t len);

/*
 * Escape len bytes of s as the inside of a JSON string into out (capacity out_cap; the
 * output is NUL-terminated when it fits). Returns the escaped length, which may exceed
 * out_cap - 1: then the output is incomplete. Bytes 0x20..0x7e other than '"' and '\\'
 * are copied; '"' and '\\' become \" and \\; every other byte (controls, NUL, DEL, all
 * bytes >= 0x80, valid UTF-8 or not) becomes \u00XX, so a JSON string decodes to code
 * points U+0000..U+00FF that stand one-to-one for the original bytes.
 */
size_t audit_json_escape(char *out, size_t out_cap, const void *s, size_t len);

/* Exactly 64 lowercase hex digits in s[0..len) to 32 bytes. 0, or KL_ERR_DECODE (out untouched
 * in part or whole: do not use it). */
KL_MUST_CHECK int audit_hex_decode_hash(uint8_t out[AUDIT_HASH_LEN], const char *s, size_t len);

/* A hash as 64 lowercase hex digits and a NUL. */
void audit_hex_hash(char out[2 * AUDIT_HASH_LEN + 1], const uint8_t hash[AUDIT_HASH_LEN]);

#endif
