/*
 * msg.h - TLS 1.3 handshake message codec (RFC 8446 4): plain structs, no connection state.
 *
 * Decoders borrow from their input (spans stay valid as long as the input does) and check
 * every length; a message with trailing bytes is a decode_error (docs/HACKING.md: parsing and deciding are apart).
 * Encoders append one whole handshake message (type, u24 length, body) to a bounded kl_buf.
 */
#ifndef KL_MSG_H
#define KL_MSG_H

#include <stddef.h>
#include <stdint.h>
#include "ext.h"
#include "kl_buf.h"
#include "kl_err.h"

/* HandshakeType (RFC 8446 4). */
#define MSG_CLIENT_HELLO 1
#define MSG_SERVER_HELLO 2
#define MSG_NEW_SESSION_TICKET 4
#define MSG_END_OF_EARLY_DATA 5
#define MSG_ENCRYPTED_EXTENSIONS 8
#define MSG_CERTIFICATE 11
#define MSG_CERTIFICATE_REQUEST 13
#define MSG_CERTIFICATE_VERIFY 15
#define MSG_FINISHED 20
#define MSG_KEY_UPDATE 24
#define MSG_MESSAGE_HASH 254

#define MSG_HEADER_LEN 4
#define MSG_DEFAULT_MAX (64 * 1024)
/*
 * The syntactic maximum of a ClientHello body (RFC 8446 4.1.2): legacy_version 2, random 32,
 * legacy_session_id 1 + 32, cipher_suites 2 + 65534, legacy_compression_methods 1 + 255,
 * extensions 2 + 65535. Anything up to this is a valid ClientHello (e.g. a 32,715-entry
 * signature_algorithms list), so the server must be able to take it.
 */
#define MSG_CLIENT_HELLO_MAX (2 + 32 + 1 + 32 + 2 + 65534 + 1 + 255 + 2 + 65535)
/* CertificateVerify (4.4.3): SignatureScheme 2, opaque signature<0..2^16-1>. */
#define MSG_CERTIFICATE_VERIFY_MAX (2 + 2 + 65535)
/* KeyUpdate (4.6.3): one KeyUpdateRequest byte. */
#define MSG_KEY_UPDATE_LEN 1

/* The random of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 4.1.3). */
extern const uint8_t msg_hrr_random[32];

/*
 * Look at the start of a handshake byte stream. On 0, *type_p and *body_len_p describe a
 * complete message of MSG_HEADER_LEN + *body_len_p bytes at the start of buf.
 * KL_ERR_WANT_READ if buf holds less than that. A body longer than max fails at once,
 * before anything is buffered: RFC 8446 has no alert for "too big for us", so it is a
 * decode_error, as in other stacks.
 */
KL_MUST_CHECK int msg_header_peek(const uint8_t *buf, size_t len, size_t max, uint8_t *type_p, size_t *body_len_p);

struct msg_client_hello {
    uint16_t legacy_version;
    uint8_t random[32];
    uint8_t session_id[32];
    size_t session_id_len;
    struct kl_span cipher_suites; /* raw u16 list, even, >= 2 bytes */
    struct ext_client_hello ext;
};

/*
 * Decode a ClientHello body (without the 4-byte header). decode_error for lengths that do
 * not add up; illegal_parameter for legacy_compression_methods other than exactly [0]
 * (RFC 8446 4.1.2) and for the extension errors ext_client_hello_decode() lists.
 */
KL_MUST_CHECK int msg_client_hello_decode(struct msg_client_hello *ch, const uint8_t *body, size_t len);

/* ServerHello or (hrr != 0) HelloRetryRequest: fixed fields; ext is the already-encoded extension list. */
struct msg_server_hello {
    const uint8_t *random; /* 32 bytes; ignored for HRR (msg_hrr_random is used) */
    const uint8_t *session_id;
    size_t session_id_len;
    uint16_t cipher_suite;
    struct kl_span ext; /* extension bytes (without the u16 list length) */
};

KL_MUST_CHECK int msg_server_hello_encode(struct kl_buf *b, const struct msg_server_hello *sh, int hrr);
/* EncryptedExtensions with the given extension bytes (without the u16 list length). */
KL_MUST_CHECK int msg_encrypted_extensions_encode(struct kl_buf *b, struct kl_span ext);
/* Certificate with an empty request context and no per-entry extensions. */
KL_MUST_CHECK int msg_certificate_encode(struct kl_buf *b, const uint8_t *const *chain, const size_t *chain_len,
                                         size_t n);
KL_MUST_CHECK int msg_certificate_verify_encode(struct kl_buf *b, uint16_t scheme, const uint8_t *sig, size_t sig_len);
KL_MUST_CHECK int msg_finished_encode(struct kl_buf *b, const uint8_t *verify_data, size_t len);
/* Finished body must be exactly hash_len bytes (decode_error otherwise). */
KL_MUST_CHECK int msg_finished_decode(struct kl_span *verify_data, const uint8_t *body, size_t len, size_t hash_len);
/* KeyUpdate: request_update is 0 or 1; anything else is illegal_parameter (RFC 8446 4.6.3). */
KL_MUST_CHECK int msg_key_update_decode(int *request_update_p, const uint8_t *body, size_t len);
KL_MUST_CHECK int msg_key_update_encode(struct kl_buf *b, int request_update);
/*
 * NewSessionTicket (4.6.1): lifetime (s), age_add, nonce<0..255>, ticket<1..2^16-1>, and the
 * early_data extension with max_early_data when it is not 0.
 */
KL_MUST_CHECK int msg_new_session_ticket_encode(struct kl_buf *b, uint32_t lifetime, uint32_t age_add,
                                                const uint8_t *nonce, size_t nonce_len, const uint8_t *ticket,
                                                size_t ticket_len, uint32_t max_early_data);
/* EndOfEarlyData (4.5): the body must be empty (decode_error otherwise). */
KL_MUST_CHECK int msg_end_of_early_data_decode(const uint8_t *body, size_t len);
/* message_hash (RFC 8446 4.4.1): 254, 00 00 hash_len, hash. */
KL_MUST_CHECK int msg_message_hash_encode(struct kl_buf *b, const uint8_t *hash, size_t hash_len);

/* ---- client authentication (RFC 8446 4.3.2, 4.4.2, 4.4.3): msg_client_auth.c ---- */

/*
 * CertificateRequest with an empty certificate_request_context and the extensions
 * signature_algorithms (schemes), signature_algorithms_cert (the same list) and, when
 * ca_names is not empty, certificate_authorities (ca_names is that extension's whole body,
 * with its u16 length).
 */
KL_MUST_CHECK int msg_certificate_request_encode(struct kl_buf *b, const uint16_t *schemes, size_t n_schemes,
                                                 struct kl_span ca_names);

#define MSG_MAX_PEER_CHAIN 10
/* A peer's Certificate message: spans into the message body. */
struct msg_certificate {
    struct kl_span context;
    struct kl_span certs[MSG_MAX_PEER_CHAIN]; /* cert_data, leaf first */
    size_t n_certs;
    int has_extensions; /* some CertificateEntry carried extensions */
};
/*
 * Decode a Certificate body. decode_error for lengths that do not add up or an empty
 * cert_data; bad_certificate for more than MSG_MAX_PEER_CHAIN entries (4.4.2.4: a chain
 * we will not process). n_certs may be 0 (the client has no certificate).
 */
KL_MUST_CHECK int msg_certificate_decode(struct msg_certificate *m, const uint8_t *body, size_t len);
/* CertificateVerify body: scheme and a non-empty signature<1..2^16-1> (decode_error otherwise). */
KL_MUST_CHECK int msg_certificate_verify_decode(uint16_t *scheme_p, struct kl_span *sig, const uint8_t *body,
                                                size_t len);

#endif
