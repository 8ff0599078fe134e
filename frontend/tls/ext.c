/*
 * ext.c - the extension table and the ClientHello extension decoders (RFC 8446 4.2).
 */
#include <string.h>
#include "ext.h"

typedef int (*ext_decode_fn)(struct ext_client_hello *e, struct wire_reader *body);

struct ext_entry {
    uint16_t type;
    unsigned allowed_in;  /* EXT_IN_* mask (RFC 8446 4.2) */
    int bit;              /* enum ext_bit, or -1 for known-but-not-stored */
    ext_decode_fn decode; /* ClientHello decoder, NULL = ignore the body */
};

static int decode_u16_list(struct wire_reader *body, struct kl_span *out)
{
    int ret;
    if ((ret = wire_read_vec_span(body, out, 2, 2, 0xfffe)) != 0)
        return ret;
    if (out->len % 2 != 0)
        return KL_ERR_DECODE;
    return 0;
}

static int decode_server_name(struct ext_client_hello *e, struct wire_reader *body)
{
    struct wire_reader list;
    uint8_t name_type;
    struct kl_span name;
    int ret;
    /* RFC 6066 3: ServerNameList server_name_list<1..2^16-1>; we take exactly one host_name. */
    if ((ret = wire_read_vec(body, &list, 2)) != 0 || (ret = wire_read_u8(&list, &name_type)) != 0)
        return ret;
    if (name_type != 0)
        return KL_ERR_ILLEGAL_PARAMETER;
    if ((ret = wire_read_vec_span(&list, &name, 2, 1, 0xffff)) != 0)
        return ret;
    if (wire_remaining(&list) != 0)
        return KL_ERR_ILLEGAL_PARAMETER; /* "MUST NOT contain more than one name of the same name_type" */
    if (name.len > 255 || memchr(name.base, 0, name.len) != NULL)
        return KL_ERR_ILLEGAL_PARAMETER;
    e->server_name = name;
    return 0;
}

static int decode_groups(struct ext_client_hello *e, struct wire_reader *body)
{
    return decode_u16_list(body, &e->groups);
}

static int decode_sig_algs(struct ext_client_hello *e, struct wire_reader *body)
{
    return decode_u16_list(body, &e->sig_algs);
}

static int decode_sig_algs_cert(struct ext_client_hello *e, struct wire_reader *body)
{
    return decode_u16_list(body, &e->sig_algs_cert);
}

/* A set of 16-bit code points, one bit each (8 KiB, on the caller's stack): membership
   checks stay linear in the message size whatever the number of entries. */
#define U16_SET_WORDS (65536 / 64)

/* Add v; 1 if it was already there. */
static int u16_set_add(uint64_t *set, uint16_t v)
{
    uint64_t bit = (uint64_t)1 << (v % 64);
    int had = (set[v / 64] & bit) != 0;
    set[v / 64] |= bit;
    return had;
}

static int u16_set_has(const uint64_t *set, uint16_t v)
{
    return (set[v / 64] & ((uint64_t)1 << (v % 64))) != 0;
}

static int decode_key_share(struct ext_client_hello *e, struct wire_reader *body)
{
    /* One bit per group: duplicates are found in linear time whatever the number of entries. */
    uint64_t seen[U16_SET_WORDS];
    struct wire_reader list;
    int ret;
    memset(seen, 0, sizeof(seen));
    /* KeyShareClientHello: KeyShareEntry client_shares<0..2^16-1>; */
    if ((ret = wire_read_vec_span(body, &e->key_shares, 2, 0, 0xffff)) != 0)
        return ret;
    wire_reader_init(&list, e->key_shares.base, e->key_shares.len);
    while (wire_remaining(&list) != 0) {
        struct ext_key_share ks;
        if ((ret = wire_read_u16(&list, &ks.group)) != 0 ||
            (ret = wire_read_vec_span(&list, &ks.key, 2, 1, 0xffff)) != 0)
            return ret;
        /* RFC 8446 4.2.8: "Clients MUST NOT offer multiple KeyShareEntry values for the same group. [...]
         * Servers MAY check for violations of these rules and abort the handshake with an
         * "illegal_parameter" alert if one is violated." */
        if (u16_set_add(seen, ks.group))
            return KL_ERR_ILLEGAL_PARAMETER;
        if (e->n_shares == 0)
            e->first_share = ks;
        e->n_shares++;
    }
    return 0;
}

int ext_key_share_next(struct wire_reader *r, struct ext_key_share *ks)
{
    if (wire_remaining(r) == 0 || wire_read_u16(r, &ks->group) != 0 ||
        wire_read_vec_span(r, &ks->key, 2, 1, 0xffff) != 0)
        return 0;
    return 1;
}

static int decode_versions(struct ext_client_hello *e, struct wire_reader *body)
{
    int ret;
    /* ProtocolVersion versions<2..254>; */
    if ((ret = wire_read_vec_span(body, &e->versions, 1, 2, 254)) != 0)
        return ret;
    return e->versions.len % 2 == 0 ? 0 : KL_ERR_DECODE;
}

static int decode_psk_modes(struct ext_client_hello *e, struct wire_reader *body)
{
    /* PskKeyExchangeMode ke_modes<1..255>; */
    return wire_read_vec_span(body, &e->psk_modes, 1, 1, 255);
}

static int decode_pre_shared_key(struct ext_client_hello *e, struct wire_reader *body)
{
    struct wire_reader ids, binders;
    size_t n_ids = 0, n_binders = 0;
    int ret;
    /* OfferedPsks: PskIdentity identities<7..2^16-1>; PskBinderEntry binders<33..2^16-1>; (RFC 8446 4.2.11) */
    if ((ret = wire_read_vec_span(body, &e->psk_identities, 2, 7, 0xffff)) != 0)
        return ret;
    wire_reader_init(&ids, e->psk_identities.base, e->psk_identities.len);
    while (wire_remaining(&ids) != 0) {
        struct kl_span id;
        uint32_t age;
        if ((ret = wire_read_vec_span(&ids, &id, 2, 1, 0xffff)) != 0 || (ret = wire_read_u32(&ids, &age)) != 0)
            return ret;
        n_ids++;
    }
    if ((ret = wire_read_vec_span(body, &e->psk_binders, 2, 33, 0xffff)) != 0)
        return ret;
    wire_reader_init(&binders, e->psk_binders.base, e->psk_binders.len);
    while (wire_remaining(&binders) != 0) {
        struct kl_span binder;
        if ((ret = wire_read_vec_span(&binders, &binder, 1, 32, 255)) != 0)
            return ret;
        n_binders++;
    }
    if (n_ids == 0 || n_binders == 0)
        return KL_ERR_DECODE;
    /* "The number of binders MUST match the number of identities": illegal_parameter otherwise. */
    if (n_ids != n_binders)
        return KL_ERR_ILLEGAL_PARAMETER;
    e->n_psk = n_ids;
    return 0;
}

int ext_psk_next(struct wire_reader *ids, struct wire_reader *binders, struct ext_psk *psk)
{
    if (wire_remaining(ids) == 0 || wire_read_vec_span(ids, &psk->identity, 2, 1, 0xffff) != 0 ||
        wire_read_u32(ids, &psk->obfuscated_age) != 0 || wire_read_vec_span(binders, &psk->binder, 1, 32, 255) != 0)
        return 0;
    return 1;
}

static int decode_early_data(struct ext_client_hello *e, struct wire_reader *body)
{
    (void)e;
    (void)body;
    return 0; /* the ClientHello form is empty; exact consumption is checked by the caller */
}

static int decode_cookie(struct ext_client_hello *e, struct wire_reader *body)
{
    /* opaque cookie<1..2^16-1>; */
    return wire_read_vec_span(body, &e->cookie, 2, 1, 0xffff);
}

static int decode_alpn(struct ext_client_hello *e, struct wire_reader *body)
{
    struct wire_reader list;
    int ret;
    /* RFC 7301 3.1: ProtocolName protocol_name_list<2..2^16-1>; ProtocolName opaque<1..2^8-1>. */
    if ((ret = wire_read_vec_span(body, &e->alpn, 2, 2, 0xffff)) != 0)
        return ret;
    wire_reader_init(&list, e->alpn.base, e->alpn.len);
    while (wire_remaining(&list) != 0) {
        struct kl_span name;
        if ((ret = wire_read_vec_span(&list, &name, 1, 1, 255)) != 0)
            return ret;
    }
    return 0;
}

static int decode_record_size_limit(struct ext_client_hello *e, struct wire_reader *body)
{
    int ret;
    if ((ret = wire_read_u16(body, &e->record_size_limit)) != 0)
        return ret;
    /* RFC 8449 4: "Endpoints MUST NOT send a "record_size_limit" extension with a value smaller than 64.
     * An endpoint MUST treat receipt of a smaller value as a fatal error and generate an
     * "illegal_parameter" alert." */
    return e->record_size_limit < 64 ? KL_ERR_ILLEGAL_PARAMETER : 0;
}

static int decode_ech(struct ext_client_hello *e, struct wire_reader *body)
{
    /* Outer or inner, decoded by ech.c when ECH is on: an unused extension must not fail a handshake. */
    return wire_read_span(body, &e->ech, wire_remaining(body));
}

static int decode_skip(struct ext_client_hello *e, struct wire_reader *body)
{
    struct kl_span rest;
    (void)e;
    return wire_read_span(body, &rest, wire_remaining(body));
}

#define IN_CH_SH_HRR (EXT_IN_CH | EXT_IN_SH | EXT_IN_HRR)

static const struct ext_entry ext_table[] = {
    {EXT_SERVER_NAME, EXT_IN_CH | EXT_IN_EE, EXT_B_SERVER_NAME, decode_server_name},
    {EXT_MAX_FRAGMENT_LENGTH, EXT_IN_CH | EXT_IN_EE, -1, decode_skip},
    {EXT_STATUS_REQUEST, EXT_IN_CH | EXT_IN_CR | EXT_IN_CT, -1, decode_skip},
    {EXT_SUPPORTED_GROUPS, EXT_IN_CH | EXT_IN_EE, EXT_B_SUPPORTED_GROUPS, decode_groups},
    {EXT_SIGNATURE_ALGORITHMS, EXT_IN_CH | EXT_IN_CR, EXT_B_SIGNATURE_ALGORITHMS, decode_sig_algs},
    {EXT_USE_SRTP, EXT_IN_CH | EXT_IN_EE, -1, decode_skip},
    {EXT_HEARTBEAT, EXT_IN_CH | EXT_IN_EE, -1, decode_skip},
    {EXT_ALPN, EXT_IN_CH | EXT_IN_EE, EXT_B_ALPN, decode_alpn},
    {EXT_SIGNED_CERTIFICATE_TIMESTAMP, EXT_IN_CH | EXT_IN_CR | EXT_IN_CT, -1, decode_skip},
    {EXT_CLIENT_CERTIFICATE_TYPE, EXT_IN_CH | EXT_IN_EE, -1, decode_skip},
    {EXT_SERVER_CERTIFICATE_TYPE, EXT_IN_CH | EXT_IN_EE, -1, decode_skip},
    {EXT_PADDING, EXT_IN_CH, EXT_B_PADDING, decode_skip},
    {EXT_RECORD_SIZE_LIMIT, EXT_IN_CH | EXT_IN_EE, EXT_B_RECORD_SIZE_LIMIT, decode_record_size_limit},
    {EXT_PRE_SHARED_KEY, EXT_IN_CH | EXT_IN_SH, EXT_B_PRE_SHARED_KEY, decode_pre_shared_key},
    {EXT_EARLY_DATA, EXT_IN_CH | EXT_IN_EE | EXT_IN_NST, EXT_B_EARLY_DATA, decode_early_data},
    {EXT_SUPPORTED_VERSIONS, IN_CH_SH_HRR, EXT_B_SUPPORTED_VERSIONS, decode_versions},
    {EXT_COOKIE, EXT_IN_CH | EXT_IN_HRR, EXT_B_COOKIE, decode_cookie},
    {EXT_PSK_KEY_EXCHANGE_MODES, EXT_IN_CH, EXT_B_PSK_KEY_EXCHANGE_MODES, decode_psk_modes},
    {EXT_CERTIFICATE_AUTHORITIES, EXT_IN_CH | EXT_IN_CR, -1, decode_skip},
    {EXT_OID_FILTERS, EXT_IN_CR, -1, NULL},
    {EXT_POST_HANDSHAKE_AUTH, EXT_IN_CH, -1, decode_skip},
    {EXT_SIGNATURE_ALGORITHMS_CERT, EXT_IN_CH | EXT_IN_CR, EXT_B_SIGNATURE_ALGORITHMS_CERT, decode_sig_algs_cert},
    {EXT_KEY_SHARE, IN_CH_SH_HRR, EXT_B_KEY_SHARE, decode_key_share},
    {EXT_ENCRYPTED_CLIENT_HELLO, EXT_IN_CH | EXT_IN_HRR | EXT_IN_EE, EXT_B_ENCRYPTED_CLIENT_HELLO, decode_ech},
};

static const struct ext_entry *ext_find(uint16_t type)
{
    for (size_t i = 0; i < sizeof(ext_table) / sizeof(ext_table[0]); i++) {
        if (ext_table[i].type == type)
            return &ext_table[i];
    }
    return NULL;
}

unsigned ext_allowed_in(uint16_t type)
{
    const struct ext_entry *x = ext_find(type);
    return x != NULL ? x->allowed_in : 0;
}

int ext_client_hello_decode(struct ext_client_hello *out, struct wire_reader *r)
{
    /* One bit per possible extension type, so that duplicates of unknown types are found in linear time. */
    uint64_t seen[U16_SET_WORDS];
    struct wire_reader list;
    int ret;

    memset(out, 0, sizeof(*out));
    memset(seen, 0, sizeof(seen));
    /* Extension extensions<8..2^16-1> in a TLS 1.3 ClientHello: at least supported_versions. */
    if ((ret = wire_read_vec(r, &list, 2)) != 0)
        return ret;
    out->raw = kl_span_of(list.p, wire_remaining(&list));
    while (wire_remaining(&list) != 0) {
        uint16_t type;
        struct wire_reader body;
        if ((ret = wire_read_u16(&list, &type)) != 0 || (ret = wire_read_vec(&list, &body, 2)) != 0)
            return ret;
        /* RFC 8446 4.2: "There MUST NOT be more than one extension of the same type in a given extension block." */
        if (u16_set_add(seen, type))
            return KL_ERR_ILLEGAL_PARAMETER;
        /* RFC 8446 4.2.11: "The "pre_shared_key" extension MUST be the last extension in the ClientHello
         * [...] Servers MUST check that it is the last extension and otherwise fail the handshake with an
         * "illegal_parameter" alert." */
        if (out->present & EXT_BIT(EXT_B_PRE_SHARED_KEY))
            return KL_ERR_ILLEGAL_PARAMETER;
        out->last_type = type;
        const struct ext_entry *x = ext_find(type);
        if (x == NULL)
            continue; /* unknown extensions are ignored (RFC 8446 4.1.2) */
        /* RFC 8446 4.2: a recognised extension "not specified for the message in which it appears [...] MUST
         * abort the handshake with an "illegal_parameter" alert." */
        if (!(x->allowed_in & EXT_IN_CH))
            return KL_ERR_ILLEGAL_PARAMETER;
        if ((ret = x->decode(out, &body)) != 0)
            return ret;
        if ((ret = wire_reader_end(&body)) != 0)
            return ret;
        if (x->bit >= 0)
            out->present |= EXT_BIT(x->bit);
    }
    if ((ret = wire_reader_end(&list)) != 0)
        return ret;
    if (ext_has(out, EXT_B_KEY_SHARE) && ext_has(out, EXT_B_SUPPORTED_GROUPS)) {
        /* RFC 8446 4.2.8: "Each KeyShareEntry value MUST correspond to a group offered in the
         * "supported_groups" extension". Servers MAY check (illegal_parameter), as OpenSSL does.
         * A bitmap of the offered groups keeps this linear in the message size. */
        struct wire_reader g, ks_r;
        uint16_t grp;
        struct ext_key_share ks;
        memset(seen, 0, sizeof(seen));
        wire_reader_init(&g, out->groups.base, out->groups.len);
        while (wire_read_u16(&g, &grp) == 0)
            (void)u16_set_add(seen, grp);
        wire_reader_init(&ks_r, out->key_shares.base, out->key_shares.len);
        while (ext_key_share_next(&ks_r, &ks)) {
            if (!u16_set_has(seen, ks.group))
                return KL_ERR_ILLEGAL_PARAMETER;
        }
    }
    return 0;
}

int ext_u16_list_has(struct kl_span list, uint16_t v)
{
    struct wire_reader r;
    uint16_t x;
    wire_reader_init(&r, list.base, list.len);
    while (wire_read_u16(&r, &x) == 0) {
        if (x == v)
            return 1;
    }
    return 0;
}

/* Open an extension: type and a reserved u16 length. */
static int ext_open(struct kl_buf *b, size_t *mark_p, uint16_t type)
{
    int ret;
    if ((ret = wire_put_u16(b, type)) != 0)
        return ret;
    return wire_block_open(b, mark_p, 2);
}

int ext_supported_versions_sh_encode(struct kl_buf *b, uint16_t version)
{
    size_t m;
    int ret;
    if ((ret = ext_open(b, &m, EXT_SUPPORTED_VERSIONS)) != 0 || (ret = wire_put_u16(b, version)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}

int ext_key_share_sh_encode(struct kl_buf *b, uint16_t group, const uint8_t *key, size_t key_len)
{
    size_t m, mk;
    int ret;
    if ((ret = ext_open(b, &m, EXT_KEY_SHARE)) != 0 || (ret = wire_put_u16(b, group)) != 0 ||
        (ret = wire_block_open(b, &mk, 2)) != 0 || (ret = wire_put_bytes(b, key, key_len)) != 0 ||
        (ret = wire_block_close(b, mk, 2)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}

int ext_key_share_hrr_encode(struct kl_buf *b, uint16_t group)
{
    size_t m;
    int ret;
    if ((ret = ext_open(b, &m, EXT_KEY_SHARE)) != 0 || (ret = wire_put_u16(b, group)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}

int ext_cookie_encode(struct kl_buf *b, const uint8_t *cookie, size_t cookie_len)
{
    size_t m, mc;
    int ret;
    if ((ret = ext_open(b, &m, EXT_COOKIE)) != 0 || (ret = wire_block_open(b, &mc, 2)) != 0 ||
        (ret = wire_put_bytes(b, cookie, cookie_len)) != 0 || (ret = wire_block_close(b, mc, 2)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}

int ext_server_name_ack_encode(struct kl_buf *b)
{
    size_t m;
    int ret;
    /* RFC 6066 3: the server's extension_data "SHALL be empty". */
    if ((ret = ext_open(b, &m, EXT_SERVER_NAME)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}

int ext_alpn_encode(struct kl_buf *b, const char *proto)
{
    size_t m, ml, mn, n = strlen(proto);
    int ret;
    if (n == 0 || n > 255)
        return KL_ERR_INVALID;
    if ((ret = ext_open(b, &m, EXT_ALPN)) != 0 || (ret = wire_block_open(b, &ml, 2)) != 0 ||
        (ret = wire_block_open(b, &mn, 1)) != 0 || (ret = wire_put_bytes(b, proto, n)) != 0 ||
        (ret = wire_block_close(b, mn, 1)) != 0 || (ret = wire_block_close(b, ml, 2)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}

int ext_supported_groups_encode(struct kl_buf *b, const uint16_t *groups, size_t n)
{
    size_t m, ml;
    int ret;
    if ((ret = ext_open(b, &m, EXT_SUPPORTED_GROUPS)) != 0 || (ret = wire_block_open(b, &ml, 2)) != 0)
        return ret;
    for (size_t i = 0; i < n; i++) {
        if ((ret = wire_put_u16(b, groups[i])) != 0)
            return ret;
    }
    if ((ret = wire_block_close(b, ml, 2)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}

int ext_record_size_limit_encode(struct kl_buf *b, uint16_t limit)
{
    size_t m;
    int ret;
    if ((ret = ext_open(b, &m, EXT_RECORD_SIZE_LIMIT)) != 0 || (ret = wire_put_u16(b, limit)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}

int ext_pre_shared_key_sh_encode(struct kl_buf *b, uint16_t selected)
{
    size_t m;
    int ret;
    if ((ret = ext_open(b, &m, EXT_PRE_SHARED_KEY)) != 0 || (ret = wire_put_u16(b, selected)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}

int ext_early_data_encode(struct kl_buf *b, int with_max, uint32_t max_early_data)
{
    size_t m;
    int ret;
    if ((ret = ext_open(b, &m, EXT_EARLY_DATA)) != 0 || (with_max && (ret = wire_put_u32(b, max_early_data)) != 0))
        return ret;
    return wire_block_close(b, m, 2);
}

int ext_ech_retry_configs_encode(struct kl_buf *b, const uint8_t *retry_configs, size_t len)
{
    size_t m;
    int ret;
    /* draft-ietf-tls-esni-22 5: in EncryptedExtensions, "struct { ECHConfigList retry_configs; }". */
    if ((ret = ext_open(b, &m, EXT_ENCRYPTED_CLIENT_HELLO)) != 0 || (ret = wire_put_bytes(b, retry_configs, len)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}

int ext_ech_hrr_encode(struct kl_buf *b, const uint8_t confirmation[8])
{
    size_t m;
    int ret;
    /* draft-ietf-tls-esni-22 5: in HelloRetryRequest, "opaque confirmation[8];". */
    if ((ret = ext_open(b, &m, EXT_ENCRYPTED_CLIENT_HELLO)) != 0 || (ret = wire_put_bytes(b, confirmation, 8)) != 0)
        return ret;
    return wire_block_close(b, m, 2);
}
