/*
 * msg.c - TLS 1.3 handshake message codec (RFC 8446 4).
 */
#include <string.h>
#include "msg.h"
#include "wire.h"

const uint8_t msg_hrr_random[32] = {0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c,
                                    0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb,
                                    0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c};

int msg_header_peek(const uint8_t *buf, size_t len, size_t max, uint8_t *type_p, size_t *body_len_p)
{
    struct wire_reader r;
    uint32_t body_len;
    int ret;
    if (len < MSG_HEADER_LEN)
        return KL_ERR_WANT_READ;
    wire_reader_init(&r, buf, len);
    if ((ret = wire_read_u8(&r, type_p)) != 0 || (ret = wire_read_u24(&r, &body_len)) != 0)
        return ret;
    if (max == 0)
        max = MSG_DEFAULT_MAX;
    if (body_len > max)
        return KL_ERR_DECODE;
    *body_len_p = body_len;
    return wire_remaining(&r) < body_len ? KL_ERR_WANT_READ : 0;
}

int msg_client_hello_decode(struct msg_client_hello *ch, const uint8_t *body, size_t len)
{
    struct wire_reader r;
    struct wire_reader sid;
    struct kl_span comp;
    int ret;

    memset(ch, 0, sizeof(*ch));
    wire_reader_init(&r, body, len);
    if ((ret = wire_read_u16(&r, &ch->legacy_version)) != 0 || (ret = wire_read_copy(&r, ch->random, 32)) != 0)
        return ret;
    /* opaque legacy_session_id<0..32>; */
    if ((ret = wire_read_vec(&r, &sid, 1)) != 0)
        return ret;
    ch->session_id_len = wire_remaining(&sid);
    if (ch->session_id_len > 32)
        return KL_ERR_DECODE;
    if ((ret = wire_read_copy(&sid, ch->session_id, ch->session_id_len)) != 0)
        return ret;
    /* CipherSuite cipher_suites<2..2^16-2>; */
    if ((ret = wire_read_vec_span(&r, &ch->cipher_suites, 2, 2, 0xfffe)) != 0)
        return ret;
    if (ch->cipher_suites.len % 2 != 0)
        return KL_ERR_DECODE;
    /* opaque legacy_compression_methods<1..2^8-1>; */
    if ((ret = wire_read_vec_span(&r, &comp, 1, 1, 255)) != 0)
        return ret;
    /* RFC 8446 4.1.2: "For every TLS 1.3 ClientHello, this vector MUST contain exactly one byte, set to zero
     * [...] If a TLS 1.3 ClientHello is received with any other value in this field, the server MUST abort the
     * handshake with an "illegal_parameter" alert." */
    if (comp.len != 1 || comp.base[0] != 0)
        return KL_ERR_ILLEGAL_PARAMETER;
    /* A ClientHello without extensions is a TLS 1.2-or-older client: leave ext empty, hs_ answers
     * protocol_version because supported_versions is missing. */
    if (wire_remaining(&r) == 0)
        return 0;
    if ((ret = ext_client_hello_decode(&ch->ext, &r)) != 0)
        return ret;
    return wire_reader_end(&r);
}

/* Open a handshake message: type and a reserved u24 length. */
static int msg_open(struct kl_buf *b, size_t *mark_p, uint8_t type)
{
    int ret;
    if ((ret = wire_put_u8(b, type)) != 0)
        return ret;
    return wire_block_open(b, mark_p, 3);
}

int msg_server_hello_encode(struct kl_buf *b, const struct msg_server_hello *sh, int hrr)
{
    size_t m, me, ms;
    int ret;
    if (sh->session_id_len > 32)
        return KL_ERR_INVALID;
    /* legacy_version = 0x0303 (RFC 8446 4.1.3); the real version is in supported_versions. */
    if ((ret = msg_open(b, &m, MSG_SERVER_HELLO)) != 0 || (ret = wire_put_u16(b, 0x0303)) != 0 ||
        (ret = wire_put_bytes(b, hrr ? msg_hrr_random : sh->random, 32)) != 0 ||
        (ret = wire_block_open(b, &ms, 1)) != 0 || (ret = wire_put_bytes(b, sh->session_id, sh->session_id_len)) != 0 ||
        (ret = wire_block_close(b, ms, 1)) != 0 || (ret = wire_put_u16(b, sh->cipher_suite)) != 0 ||
        (ret = wire_put_u8(b, 0)) != 0 || (ret = wire_block_open(b, &me, 2)) != 0 ||
        (ret = wire_put_bytes(b, sh->ext.base, sh->ext.len)) != 0 || (ret = wire_block_close(b, me, 2)) != 0)
        return ret;
    return wire_block_close(b, m, 3);
}

int msg_encrypted_extensions_encode(struct kl_buf *b, struct kl_span ext)
{
    size_t m, me;
    int ret;
    if ((ret = msg_open(b, &m, MSG_ENCRYPTED_EXTENSIONS)) != 0 || (ret = wire_block_open(b, &me, 2)) != 0 ||
        (ret = wire_put_bytes(b, ext.base, ext.len)) != 0 || (ret = wire_block_close(b, me, 2)) != 0)
        return ret;
    return wire_block_close(b, m, 3);
}

int msg_certificate_encode(struct kl_buf *b, const uint8_t *const *chain, const size_t *chain_len, size_t n)
{
    size_t m, ml;
    int ret;
    /* certificate_request_context<0..2^8-1> is empty in the server's Certificate (RFC 8446 4.4.2). */
    if ((ret = msg_open(b, &m, MSG_CERTIFICATE)) != 0 || (ret = wire_put_u8(b, 0)) != 0 ||
        (ret = wire_block_open(b, &ml, 3)) != 0)
        return ret;
    for (size_t i = 0; i < n; i++) {
        size_t mc;
        if (chain_len[i] == 0)
            return KL_ERR_INVALID;
        if ((ret = wire_block_open(b, &mc, 3)) != 0 || (ret = wire_put_bytes(b, chain[i], chain_len[i])) != 0 ||
            (ret = wire_block_close(b, mc, 3)) != 0 || (ret = wire_put_u16(b, 0)) != 0)
            return ret;
    }
    if ((ret = wire_block_close(b, ml, 3)) != 0)
        return ret;
    return wire_block_close(b, m, 3);
}

int msg_certificate_verify_encode(struct kl_buf *b, uint16_t scheme, const uint8_t *sig, size_t sig_len)
{
    size_t m, ms;
    int ret;
    if (sig_len == 0)
        return KL_ERR_INVALID;
    if ((ret = msg_open(b, &m, MSG_CERTIFICATE_VERIFY)) != 0 || (ret = wire_put_u16(b, scheme)) != 0 ||
        (ret = wire_block_open(b, &ms, 2)) != 0 || (ret = wire_put_bytes(b, sig, sig_len)) != 0 ||
        (ret = wire_block_close(b, ms, 2)) != 0)
        return ret;
    return wire_block_close(b, m, 3);
}

int msg_finished_encode(struct kl_buf *b, const uint8_t *verify_data, size_t len)
{
    size_t m;
    int ret;
    if ((ret = msg_open(b, &m, MSG_FINISHED)) != 0 || (ret = wire_put_bytes(b, verify_data, len)) != 0)
        return ret;
    return wire_block_close(b, m, 3);
}

int msg_finished_decode(struct kl_span *verify_data, const uint8_t *body, size_t len, size_t hash_len)
{
    struct wire_reader r;
    int ret;
    wire_reader_init(&r, body, len);
    if ((ret = wire_read_span(&r, verify_data, hash_len)) != 0)
        return ret;
    return wire_reader_end(&r);
}

int msg_key_update_decode(int *request_update_p, const uint8_t *body, size_t len)
{
    struct wire_reader r;
    uint8_t v;
    int ret;
    wire_reader_init(&r, body, len);
    if ((ret = wire_read_u8(&r, &v)) != 0 || (ret = wire_reader_end(&r)) != 0)
        return ret;
    /* RFC 8446 4.6.3: "If an implementation receives any other value, it MUST terminate the connection
     * with an "illegal_parameter" alert." */
    if (v > 1)
        return KL_ERR_ILLEGAL_PARAMETER;
    *request_update_p = v;
    return 0;
}

int msg_key_update_encode(struct kl_buf *b, int request_update)
{
    size_t m;
    int ret;
    if ((ret = msg_open(b, &m, MSG_KEY_UPDATE)) != 0 || (ret = wire_put_u8(b, request_update ? 1 : 0)) != 0)
        return ret;
    return wire_block_close(b, m, 3);
}

int msg_message_hash_encode(struct kl_buf *b, const uint8_t *hash, size_t hash_len)
{
    size_t m;
    int ret;
    if ((ret = msg_open(b, &m, MSG_MESSAGE_HASH)) != 0 || (ret = wire_put_bytes(b, hash, hash_len)) != 0)
        return ret;
    return wire_block_close(b, m, 3);
}

int msg_new_session_ticket_encode(struct kl_buf *b, uint32_t lifetime, uint32_t age_add, const uint8_t *nonce,
                                  size_t nonce_len, const uint8_t *ticket, size_t ticket_len, uint32_t max_early_data)
{
    size_t m, v;
    int ret;
    if (nonce_len > 255 || ticket_len == 0 || ticket_len > 0xffff)
        return KL_ERR_INVALID;
    if ((ret = msg_open(b, &m, MSG_NEW_SESSION_TICKET)) != 0 || (ret = wire_put_u32(b, lifetime)) != 0 ||
        (ret = wire_put_u32(b, age_add)) != 0 || (ret = wire_block_open(b, &v, 1)) != 0 ||
        (ret = wire_put_bytes(b, nonce, nonce_len)) != 0 || (ret = wire_block_close(b, v, 1)) != 0 ||
        (ret = wire_block_open(b, &v, 2)) != 0 || (ret = wire_put_bytes(b, ticket, ticket_len)) != 0 ||
        (ret = wire_block_close(b, v, 2)) != 0 || (ret = wire_block_open(b, &v, 2)) != 0)
        return ret;
    if (max_early_data != 0 && (ret = ext_early_data_encode(b, 1, max_early_data)) != 0)
        return ret;
    if ((ret = wire_block_close(b, v, 2)) != 0)
        return ret;
    return wire_block_close(b, m, 3);
}

int msg_end_of_early_data_decode(const uint8_t *body, size_t len)
{
    (void)body;
    /* struct {} EndOfEarlyData; */
    return len == 0 ? 0 : KL_ERR_DECODE;
}
