/*
 * ext.h - TLS 1.3 extensions codec (RFC 8446 4.2): the extension table and plain structs.
 *
 * The codec never touches connection state (docs/HACKING.md: parsing and deciding are apart): ext_client_hello_decode()
 * turns the extensions block of a ClientHello into struct ext_client_hello, checking every length, refusing duplicates
 * and extensions we know but that may not appear in a ClientHello; the encoders write the server's extensions.
 * hs_server.c decides with these structs only.
 *
 * Spans in the decoded struct borrow from the input message and are valid as long as it is.
 */
#ifndef KL_EXT_H
#define KL_EXT_H

#include <stddef.h>
#include <stdint.h>
#include "kl_buf.h"
#include "kl_err.h"
#include "wire.h"

/* Extension types (IANA TLS ExtensionType values). */
#define EXT_SERVER_NAME 0
#define EXT_MAX_FRAGMENT_LENGTH 1
#define EXT_STATUS_REQUEST 5
#define EXT_SUPPORTED_GROUPS 10
#define EXT_SIGNATURE_ALGORITHMS 13
#define EXT_USE_SRTP 14
#define EXT_HEARTBEAT 15
#define EXT_ALPN 16
#define EXT_SIGNED_CERTIFICATE_TIMESTAMP 18
#define EXT_CLIENT_CERTIFICATE_TYPE 19
#define EXT_SERVER_CERTIFICATE_TYPE 20
#define EXT_PADDING 21
#define EXT_RECORD_SIZE_LIMIT 28
#define EXT_PRE_SHARED_KEY 41
#define EXT_EARLY_DATA 42
#define EXT_SUPPORTED_VERSIONS 43
#define EXT_COOKIE 44
#define EXT_PSK_KEY_EXCHANGE_MODES 45
#define EXT_CERTIFICATE_AUTHORITIES 47
#define EXT_OID_FILTERS 48
#define EXT_POST_HANDSHAKE_AUTH 49
#define EXT_SIGNATURE_ALGORITHMS_CERT 50
#define EXT_KEY_SHARE 51
/* Encrypted Client Hello (draft-ietf-tls-esni-22): the extension and, only inside an
 * EncodedClientHelloInner, the references to outer extensions (ech.c expands them). */
#define EXT_ECH_OUTER_EXTENSIONS 0xfd00
#define EXT_ENCRYPTED_CLIENT_HELLO 0xfe0d

/* The messages an extension may appear in (RFC 8446 4.2 table), as a bit mask. */
#define EXT_IN_CH (1u << 0)  /* ClientHello */
#define EXT_IN_SH (1u << 1)  /* ServerHello */
#define EXT_IN_HRR (1u << 2) /* HelloRetryRequest */
#define EXT_IN_EE (1u << 3)  /* EncryptedExtensions */
#define EXT_IN_CT (1u << 4)  /* Certificate */
#define EXT_IN_CR (1u << 5)  /* CertificateRequest */
#define EXT_IN_NST (1u << 6) /* NewSessionTicket */

#define TLS_VERSION_13 0x0304

struct ext_key_share {
    uint16_t group;
    struct kl_span key; /* key_exchange, 1..2^16-1 bytes */
};

/* The ClientHello extensions we act on. A span with base == NULL means "absent". */
struct ext_client_hello {
    uint32_t present;           /* bit EXT_BIT(x) for every known extension seen */
    struct kl_span server_name; /* the host_name, 1..255 bytes, no NUL */
    struct kl_span groups;      /* supported_groups: raw u16 list, even, >= 2 bytes */
    struct kl_span sig_algs;    /* signature_algorithms: raw u16 list */
    struct kl_span sig_algs_cert;
    struct kl_span versions;  /* supported_versions: raw u16 list */
    struct kl_span psk_modes; /* psk_key_exchange_modes: raw u8 list */
    struct kl_span alpn;      /* ProtocolNameList content, each name validated non-empty */
    struct kl_span cookie;    /* cookie content, 1..2^16-1 bytes */
    /*
     * key_share: the raw client_shares content (walk it with ext_key_share_next()), how many
     * entries it holds and the first one. No cap on the count: RFC 8446 9.3 has unknown groups
     * ignored however many the message size allows.
     */
    struct kl_span key_shares;
    size_t n_shares;
    struct ext_key_share first_share;
    uint16_t record_size_limit; /* 0 when absent */
    /*
     * pre_shared_key (4.2.11): the identities and binders vectors' contents (walk them with
     * ext_psk_next()) and their common count. The binders vector, with its u16 length, is the
     * tail of the ClientHello, so the truncated ClientHello the binders cover is the message
     * without its last 2 + psk_binders.len bytes.
     */
    struct kl_span psk_identities;
    struct kl_span psk_binders;
    size_t n_psk;
    uint16_t last_type; /* type of the last extension (pre_shared_key must be last) */
    struct kl_span ech; /* encrypted_client_hello body (ech_ext_decode() reads it) */
    struct kl_span raw; /* the whole extension list content, for ech_outer_extensions (ech.c) */
};

/* Bit for a known extension in ext_client_hello.present. */
enum ext_bit {
    EXT_B_SERVER_NAME,
    EXT_B_SUPPORTED_GROUPS,
    EXT_B_SIGNATURE_ALGORITHMS,
    EXT_B_SIGNATURE_ALGORITHMS_CERT,
    EXT_B_KEY_SHARE,
    EXT_B_SUPPORTED_VERSIONS,
    EXT_B_PSK_KEY_EXCHANGE_MODES,
    EXT_B_PRE_SHARED_KEY,
    EXT_B_EARLY_DATA,
    EXT_B_COOKIE,
    EXT_B_ALPN,
    EXT_B_RECORD_SIZE_LIMIT,
    EXT_B_PADDING,
    EXT_B_ENCRYPTED_CLIENT_HELLO,
};
#define EXT_BIT(b) (1u << (b))

static inline int ext_has(const struct ext_client_hello *e, enum ext_bit b)
{
    return (e->present & EXT_BIT(b)) != 0;
}

/*
 * Decode the extensions vector of a ClientHello (r is positioned at its u16 length prefix
 * and must end right after it). Errors (RFC 8446 4.2): decode_error for any length that
 * does not add up; illegal_parameter for a duplicate extension of any type, for a known
 * extension not allowed in a ClientHello, for pre_shared_key not last, for duplicate
 * key_share groups (found with a bitmap over all 2^16 groups: no cap on their number), for a
 * key_share entry whose group is not in supported_groups (when both are present), and for a
 * server_name that is not a host_name of 1..255 bytes.
 */
KL_MUST_CHECK int ext_client_hello_decode(struct ext_client_hello *out, struct wire_reader *r);

/*
 * Walk the key shares of a decoded ClientHello: start with
 * wire_reader_init(r, e->key_shares.base, e->key_shares.len), then each call fills *ks and
 * returns 1, or returns 0 at the end. The list was validated by ext_client_hello_decode().
 */
int ext_key_share_next(struct wire_reader *r, struct ext_key_share *ks);

/* One offered PSK: its identity, obfuscated_ticket_age and binder. */
struct ext_psk {
    struct kl_span identity; /* 1..2^16-1 bytes */
    uint32_t obfuscated_age;
    struct kl_span binder; /* 32..255 bytes */
};
/*
 * Walk the PSKs of a decoded ClientHello: start with ids over e->psk_identities and binders over
 * e->psk_binders (wire_reader_init); each call fills *psk and returns 1, or returns 0 at the end.
 * The vectors were validated by ext_client_hello_decode().
 */
int ext_psk_next(struct wire_reader *ids, struct wire_reader *binders, struct ext_psk *psk);

/* True if the u16 list span contains v. */
int ext_u16_list_has(struct kl_span list, uint16_t v);

/* The allowed-in mask for a known extension type, or 0 if unknown to us. */
unsigned ext_allowed_in(uint16_t type);

/*
 * Encoders: each appends one whole extension (type, u16 length, body) to b.
 * KL_ERR_OVERFLOW when b is full.
 */
KL_MUST_CHECK int ext_supported_versions_sh_encode(struct kl_buf *b, uint16_t version);
KL_MUST_CHECK int ext_key_share_sh_encode(struct kl_buf *b, uint16_t group, const uint8_t *key, size_t key_len);
KL_MUST_CHECK int ext_key_share_hrr_encode(struct kl_buf *b, uint16_t group);
KL_MUST_CHECK int ext_cookie_encode(struct kl_buf *b, const uint8_t *cookie, size_t cookie_len);
KL_MUST_CHECK int ext_server_name_ack_encode(struct kl_buf *b);
KL_MUST_CHECK int ext_alpn_encode(struct kl_buf *b, const char *proto);
KL_MUST_CHECK int ext_record_size_limit_encode(struct kl_buf *b, uint16_t limit);
KL_MUST_CHECK int ext_supported_groups_encode(struct kl_buf *b, const uint16_t *groups, size_t n);
/* ServerHello pre_shared_key: the selected identity's index (4.2.11). */
KL_MUST_CHECK int ext_pre_shared_key_sh_encode(struct kl_buf *b, uint16_t selected);
/* early_data: empty in EncryptedExtensions (with_max 0), max_early_data_size in NewSessionTicket. */
KL_MUST_CHECK int ext_early_data_encode(struct kl_buf *b, int with_max, uint32_t max_early_data);
/* encrypted_client_hello in EncryptedExtensions: retry_configs is a whole ECHConfigList (its u16 length included). */
KL_MUST_CHECK int ext_ech_retry_configs_encode(struct kl_buf *b, const uint8_t *retry_configs, size_t len);
/* encrypted_client_hello in HelloRetryRequest: the 8-byte confirmation (draft-ietf-tls-esni-22 7.2.1). */
KL_MUST_CHECK int ext_ech_hrr_encode(struct kl_buf *b, const uint8_t confirmation[8]);

#endif
