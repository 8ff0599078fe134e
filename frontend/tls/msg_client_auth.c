/*
 * msg_client_auth.c - the codecs of client authentication (RFC 8446 4.3.2, 4.4.2, 4.4.3):
 * CertificateRequest out, the client's Certificate and CertificateVerify in. Plain
 * structs, no connection state (docs/HACKING.md: parsing and deciding are apart);
 * hs_server.c decides. Contracts are in msg.h.
 */
#include <string.h>
#include "ext.h"
#include "msg.h"
#include "wire.h"

int msg_certificate_request_encode(struct kl_buf *b, const uint16_t *schemes, size_t n_schemes, struct kl_span ca_names)
{
    size_t m_msg, m_exts, m_ext, m_list;
    int ret;
    KL_ENSURE(n_schemes > 0, KL_ERR_INVALID);
    KL_TRY(wire_put_u8(b, MSG_CERTIFICATE_REQUEST));
    KL_TRY(wire_block_open(b, &m_msg, 3));
    /* 4.3.2: "certificate_request_context ... SHALL be zero length unless used for post-handshake authentication". */
    KL_TRY(wire_put_u8(b, 0));
    KL_TRY(wire_block_open(b, &m_exts, 2));
    /* 4.3.2: "The "signature_algorithms" extension MUST be specified". */
    for (int ext = 0; ext < 2; ext++) {
        KL_TRY(wire_put_u16(b, ext == 0 ? EXT_SIGNATURE_ALGORITHMS : EXT_SIGNATURE_ALGORITHMS_CERT));
        KL_TRY(wire_block_open(b, &m_ext, 2));
        KL_TRY(wire_block_open(b, &m_list, 2));
        for (size_t i = 0; i < n_schemes; i++)
            KL_TRY(wire_put_u16(b, schemes[i]));
        KL_TRY(wire_block_close(b, m_list, 2));
        KL_TRY(wire_block_close(b, m_ext, 2));
    }
    if (ca_names.len > 2) {
        KL_TRY(wire_put_u16(b, EXT_CERTIFICATE_AUTHORITIES));
        KL_TRY(wire_block_open(b, &m_ext, 2));
        KL_TRY(wire_put_bytes(b, ca_names.base, ca_names.len));
        KL_TRY(wire_block_close(b, m_ext, 2));
    }
    KL_TRY(wire_block_close(b, m_exts, 2));
    KL_TRY(wire_block_close(b, m_msg, 3));
exit:
    return ret;
}

int msg_certificate_decode(struct msg_certificate *m, const uint8_t *body, size_t len)
{
    struct wire_reader r, list;
    struct kl_span cert, exts;
    int ret;
    memset(m, 0, sizeof(*m));
    wire_reader_init(&r, body, len);
    KL_TRY(wire_read_vec_span(&r, &m->context, 1, 0, 255));
    KL_TRY(wire_read_vec(&r, &list, 3));
    KL_TRY(wire_reader_end(&r));
    while (wire_remaining(&list) != 0) {
        /* opaque cert_data<1..2^24-1>; Extension extensions<0..2^16-1> */
        KL_TRY(wire_read_vec_span(&list, &cert, 3, 1, 0xffffff));
        KL_TRY(wire_read_vec_span(&list, &exts, 2, 0, 0xffff));
        KL_ENSURE(m->n_certs < MSG_MAX_PEER_CHAIN, KL_ERR_ALERT(KL_ALERT_BAD_CERTIFICATE));
        m->certs[m->n_certs++] = cert;
        if (exts.len != 0)
            m->has_extensions = 1;
    }
exit:
    return ret;
}

int msg_certificate_verify_decode(uint16_t *scheme_p, struct kl_span *sig, const uint8_t *body, size_t len)
{
    struct wire_reader r;
    int ret;
    wire_reader_init(&r, body, len);
    KL_TRY(wire_read_u16(&r, scheme_p));
    KL_TRY(wire_read_vec_span(&r, sig, 2, 1, 0xffff));
    KL_TRY(wire_reader_end(&r));
exit:
    return ret;
}
