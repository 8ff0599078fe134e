/*
 * ticket.h - stateless session tickets (RFC 8446 4.6.1): what a ticket carries and how it is sealed.
 *
 * A ticket on the wire is
 *     version(1) ‖ key_id(8) ‖ epoch(8, big-endian) ‖ nonce(12) ‖ AEAD ciphertext ‖ tag(16)
 * sealed with AES-256-GCM under a key derived (HKDF-SHA256, a label of ours, the key id and the
 * epoch) from the epoch's ticket secret; the clear header (version to nonce) is the AAD. The
 * plaintext is struct ticket_state in a fixed, bounded encoding. Nothing else is kept anywhere,
 * so any frontend holding the epoch's secret opens any ticket sealed with it.
 *
 * Secrets: struct ticket_state holds the resumption PSK; wipe it (crypto_wipe) after use.
 */
#ifndef KL_TICKET_H
#define KL_TICKET_H

#include <stddef.h>
#include <stdint.h>
#include "crypto.h"
#include "kl_buf.h"
#include "kl_err.h"
#include "tls.h"

#define TICKET_VERSION 1
#define TICKET_NONCE_LEN 12
#define TICKET_HEADER_LEN (1 + TLS_TICKET_KEY_ID_LEN + 8 + TICKET_NONCE_LEN)
/* The largest plaintext: fixed fields, PSK, SNI, ALPN and the client identity (three texts). */
#define TICKET_PLAIN_MAX (2 + 1 + CRYPTO_MAX_HASH + 8 + 4 + 4 + 4 + TLS_HOST_ID_LEN + 32 + 2 * 256 + 1 + 32 + 3 * 256)
#define TICKET_MAX (TICKET_HEADER_LEN + TICKET_PLAIN_MAX + CRYPTO_TAG_LEN)

/* What a ticket remembers of the handshake that issued it. */
struct ticket_state {
    uint16_t suite;
    uint8_t psk[CRYPTO_MAX_HASH]; /* the resumption PSK (4.6.1), hash-length bytes */
    size_t psk_len;
    uint64_t created_ms; /* CLOCK_REALTIME, ms */
    uint32_t lifetime;   /* seconds, as sent in the NewSessionTicket */
    uint32_t age_add;
    uint32_t max_early_data;
    uint8_t host_id[TLS_HOST_ID_LEN];
    uint8_t cert_sha256[32]; /* SHA-256 of the leaf certificate the full handshake presented */
    char sni[256];           /* "" without SNI */
    char alpn[256];          /* "" without ALPN */
    struct tls_peer_cert peer;
};

/*
 * Seal st with key into out (appended). KL_ERR_OVERFLOW when out has no room for it,
 * KL_ERR_CRYPTO on a library failure. The derived AEAD key is wiped before returning.
 */
KL_MUST_CHECK int ticket_seal(struct kl_buf *out, const struct tls_ticket_key *key, const struct ticket_state *st);

/*
 * Open a ticket with the key of keys whose key_id and epoch match its header. 0 with *st filled,
 * or KL_ERR_INVALID for anything unusable (unknown key or epoch, bad version, wrong tag,
 * plaintext that does not decode): the caller then ignores the identity, never an alert.
 * st is wiped on failure.
 */
KL_MUST_CHECK int ticket_open(struct ticket_state *st, const struct tls_ticket_keys *keys, const uint8_t *ticket,
                              size_t len);

/* CLOCK_REALTIME in ms (ticket creation and age; tickets outlive the process that issued them). */
uint64_t ticket_now_ms(void);

#endif
