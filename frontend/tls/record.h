/*
 * record.h - the TLS 1.3 record layer (RFC 8446 section 5), sans-I/O.
 *
 * Reading is two steps so the caller can keep partial input:
 *   rec_next()  finds one complete record at the front of the input (KL_ERR_WANT_READ if
 *               it is not all there yet) and checks the header;
 *   rec_open()  turns it into (content type, content) with the direction's keys,
 *               appending the content to a caller buffer.
 * Writing: rec_seal() appends one or more records (split at 2^14) to a caller buffer;
 * rec_alert() appends an alert. With no keys installed a direction reads and writes
 * TLSPlaintext; after rec_dir_set_secret() it reads and writes TLSCiphertext.
 *
 * The record layer does not reassemble handshake messages and does not know the
 * handshake state: whether a type is acceptable now (CCS in compatibility mode, a
 * handshake record, application data) is decided by hs_server.c. It only refuses what
 * is wrong at its level:
 *   - unknown outer content type, or a type that cannot appear with/without keys
 *     (a plaintext handshake/alert record once keys are on, application data before)
 *                                                          → unexpected_message
 *   - length over 2^14 (plaintext) or 2^14 + 256 (ciphertext), or an inner plaintext
 *     over 2^14 + 1                                         → record_overflow
 *   - zero-length handshake/alert/CCS fragments, a CCS other than the single byte 0x01,
 *     an all-zero inner plaintext (no content type)        → unexpected_message
 *   - AEAD failure (any tampered byte, too short)          → bad_record_mac
 *   - a legacy_record_version that is not 0x03xx in the first record (the ClientHello);
 *     after it the field is ignored for all purposes (5.1)  → decode_error
 *   - sequence number wrap (5.3), or sealing past the key usage limit (5.5) → internal error
 *
 * No allocation per record: output goes to caller kl_bufs, which grow only up to their
 * max; size them once (e.g. max >= REC_MAX_WIRE for reading).
 */
#ifndef KL_RECORD_H
#define KL_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include "crypto.h"
#include "kl_buf.h"
#include "kl_err.h"

#define REC_TYPE_CHANGE_CIPHER_SPEC 20
#define REC_TYPE_ALERT 21
#define REC_TYPE_HANDSHAKE 22
#define REC_TYPE_APPLICATION_DATA 23

#define REC_HEADER_LEN 5
#define REC_MAX_PLAINTEXT 16384                            /* 2^14 */
#define REC_MAX_CIPHERTEXT (REC_MAX_PLAINTEXT + 256)       /* 2^14 + 256 */
#define REC_MAX_WIRE (REC_HEADER_LEN + REC_MAX_CIPHERTEXT) /* the largest record on the wire */

/*
 * 5.5: AES-GCM protects at most 2^24.5 full-size records per key. We refuse to seal past
 * REC_AES_GCM_LIMIT and report rec_dir_needs_update() well before (at 2^23) so the sender
 * does a KeyUpdate first. ChaCha20-Poly1305's bound is above 2^64: only the sequence number
 * wrap (5.3) limits it.
 */
#define REC_AES_GCM_LIMIT 23726566ULL /* floor(2^24.5) */
#define REC_AES_GCM_SOFT_LIMIT (1ULL << 23)

/* One direction (read or write) of a connection. */
struct rec_dir {
    int keyed;
    int encrypt; /* 1: our sending side, 0: the peer's */
    uint16_t suite;
    struct crypto_aead aead;
    uint8_t iv[CRYPTO_IV_LEN];
    uint8_t secret[CRYPTO_MAX_HASH]; /* the traffic secret, kept for KeyUpdate */
    size_t secret_len;
    uint64_t seq;
    uint64_t limit; /* hard limit on seq for this key */
    /* RFC 8449: the peer's record_size_limit, the most TLSInnerPlaintext bytes (content, type,
     * padding) we may put in one protected record; 0 = 2^14 + 1. Survives key changes. */
    size_t plaintext_limit;
};

/* Plaintext direction (no keys yet). */
void rec_dir_init(struct rec_dir *d, int encrypt);
/* Install keys from a traffic secret ([sender]_write_key/iv, 7.3); seq restarts at 0. */
KL_MUST_CHECK int rec_dir_set_secret(struct rec_dir *d, uint16_t suite, const uint8_t *secret, size_t secret_len);
/* Install raw key/iv (tests, or keys derived elsewhere); seq restarts at 0; no KeyUpdate possible. */
KL_MUST_CHECK int rec_dir_set_keys(struct rec_dir *d, uint16_t suite, const uint8_t *key, size_t key_len,
                                   const uint8_t iv[CRYPTO_IV_LEN]);
/* KeyUpdate (4.6.3): next secret = HKDF-Expand-Label(secret, "traffic upd", ""), new key/iv, seq 0. */
KL_MUST_CHECK int rec_dir_update(struct rec_dir *d);
/* 1 when the write key is close to its usage limit and a KeyUpdate should be sent now. */
int rec_dir_needs_update(const struct rec_dir *d);
/*
 * RFC 8449 4: protected records sealed from now on carry at most limit bytes of TLSInnerPlaintext
 * (so limit - 1 bytes of content). Values over 2^14 + 1 mean 2^14 + 1 ("A server MUST NOT enforce
 * this restriction" on the value); values under 64 are refused by the decoder (ext.c), and are
 * raised to 64 here. Plaintext records (ServerHello, CCS) are not subject to it.
 */
void rec_dir_set_plaintext_limit(struct rec_dir *d, size_t limit);
/* Wipe keys and free the AEAD context; back to plaintext. */
void rec_dir_dispose(struct rec_dir *d);

/* A record found at the front of the input; fragment borrows the input. */
struct rec_record {
    uint8_t type;          /* outer content type */
    uint16_t version;      /* legacy_record_version */
    const uint8_t *header; /* the 5 header bytes (the AAD) */
    struct kl_span fragment;
    size_t wire_len; /* REC_HEADER_LEN + fragment.len: bytes to consume */
};

#define REC_FLAG_FIRST 1 /* the first record of the connection (ClientHello): any 0x03xx version */

/*
 * Find one record at the front of in. KL_ERR_WANT_READ if fewer than 5 bytes, or the whole
 * record has not arrived yet (the header is still checked first, so a bad length fails
 * early instead of waiting for 2^16 bytes). Checks the outer type, version and length
 * limits (ciphertext limit for application_data, plaintext limit otherwise); the version
 * only with REC_FLAG_FIRST.
 */
KL_MUST_CHECK int rec_next(struct rec_record *r, const uint8_t *in, size_t in_len, unsigned flags);

/*
 * Turn r into content using d. Appends the content (without inner type and padding) to
 * content and sets *type_p to the real content type. With keys: application_data records
 * are decrypted (seq++), CCS passes through unprotected (hs decides whether it is allowed),
 * anything else is unexpected_message. Without keys, application_data is unexpected_message.
 * Needs room for r->fragment.len bytes in content (KL_ERR_OVERFLOW past its max).
 * On error nothing is appended.
 */
KL_MUST_CHECK int rec_open(struct rec_dir *d, struct kl_buf *content, uint8_t *type_p, const struct rec_record *r);

/*
 * Append records of content type type carrying data (split at 2^14, or at the peer's
 * record_size_limit minus one once keyed: rec_dir_set_plaintext_limit; one empty record if
 * len == 0 and type is application_data, refused for other types). Plaintext records use
 * legacy_record_version 0x0303. pad adds that many zero padding bytes to each protected
 * record (5.4), bounded so the inner plaintext stays within 2^14 + 1.
 * On error out is left as it was.
 */
KL_MUST_CHECK int rec_seal(struct rec_dir *d, struct kl_buf *out, uint8_t type, const uint8_t *data, size_t len,
                           size_t pad);
/* Append an alert: close_notify/user_canceled as warning (1), everything else fatal (2) (6). */
KL_MUST_CHECK int rec_alert(struct rec_dir *d, struct kl_buf *out, uint8_t description);

#endif
