/*
 * backend.h - the backend side of a connection: non-blocking connect to a TCP or
 * Unix-socket backend, and the PROXY protocol v2 header (haproxy's proxy-protocol.txt
 * section 2.2) that tells the backend who the client was, its SNI and ALPN.
 */
#ifndef KL_PROXY_H
#define KL_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "kl_buf.h"
#include "kl_err.h"

#define PP2_TYPE_ALPN 0x01
#define PP2_TYPE_AUTHORITY 0x02
/* proxy-protocol.txt 2.2.5: the TLS TLV, its client bits and sub-TLVs. */
#define PP2_TYPE_SSL 0x20
#define PP2_CLIENT_SSL 0x01
#define PP2_CLIENT_CERT_CONN 0x02
#define PP2_CLIENT_CERT_SESS 0x04
#define PP2_SUBTYPE_SSL_VERSION 0x21
#define PP2_SUBTYPE_SSL_CN 0x22
/*
 * Our own TLVs, in the range proxy-protocol.txt 2.2.8 leaves to applications
 * (PP2_TYPE_MIN_CUSTOM 0xE0 .. 0xEF): the verified client certificate's identity.
 */
#define PP2_TYPE_KL_CLIENT_SHA256 0xE0  /* 32 bytes: SHA-256 of the client's leaf certificate (DER) */
#define PP2_TYPE_KL_CLIENT_SUBJECT 0xE1 /* text: its subject, RFC 2253 form */
#define PP2_TYPE_KL_CLIENT_SAN 0xE2     /* text: its subjectAltName entries, "DNS:a,email:b,URI:c" */
/*
 * 4 bytes, big-endian: how many of the first plaintext bytes after the header came as TLS
 * 1.3 early data (0-RTT, RFC 8446 2.3). Present only when the frontend accepted 0-RTT on the
 * connection. Those bytes may be a replay (RFC 8446 8): a backend must act on them only if
 * the request is safe to replay, and otherwise answer 425 Too Early (RFC 8470 5.2), which
 * makes the client retry after the handshake. Bytes past the count were sent after the
 * handshake completed and cannot be replayed.
 */
#define PP2_TYPE_KL_EARLY_DATA 0xE3

/*
 * Start a non-blocking connect to addr. *fd_p gets the socket.
 * Returns 0 when connected at once, KL_ERR_WANT_WRITE when in progress (wait for
 * writability, then proxy_connect_finish), KL_ERR_IO on failure (errno set, no fd).
 */
KL_MUST_CHECK int proxy_connect_start(int *fd_p, const struct sockaddr *addr, socklen_t addr_len);
/* After writability: 0 when connected, KL_ERR_IO (errno set) when the connect failed. */
KL_MUST_CHECK int proxy_connect_finish(int fd);

/*
 * Append a PROXY v2 header (command PROXY, STREAM) for a client at src talking to dst,
 * with PP2_TYPE_AUTHORITY = sni and PP2_TYPE_ALPN = alpn when non-empty. When src is
 * not IPv4/IPv6 (or the families differ) the address family is UNSPEC and only the TLVs follow.
 */
KL_MUST_CHECK int proxy_v2_header(struct kl_buf *out, const struct sockaddr *src, const struct sockaddr *dst,
                                  const char *sni, const char *alpn);

/* What a listener with client authentication tells the backend about the client's certificate. */
struct proxy_client_cert {
    int verified;          /* the client presented a certificate and it verified (else none was given) */
    const uint8_t *sha256; /* 32 bytes when verified */
    const char *cn;        /* subject commonName, "" if none; at most 255 bytes, like subject and san */
    const char *subject;
    const char *san;
};

/*
 * proxy_v2_header plus, when cert is not NULL, a PP2_TYPE_SSL TLV (client = PP2_CLIENT_SSL, with
 * PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS when verified; verify = 0 when verified, 1 when no
 * certificate was given; sub-TLVs PP2_SUBTYPE_SSL_VERSION "TLSv1.3" and, when verified and non-empty,
 * PP2_SUBTYPE_SSL_CN) followed, when verified, by PP2_TYPE_KL_CLIENT_SHA256 and the non-empty
 * PP2_TYPE_KL_CLIENT_SUBJECT and PP2_TYPE_KL_CLIENT_SAN. KL_ERR_INVALID for a text over 255 bytes.
 */
KL_MUST_CHECK int proxy_v2_header_cert(struct kl_buf *out, const struct sockaddr *src, const struct sockaddr *dst,
                                       const char *sni, const char *alpn, const struct proxy_client_cert *cert);

/*
 * proxy_v2_header_cert plus, when early is not NULL, PP2_TYPE_KL_EARLY_DATA = *early (the
 * number of early-data bytes that follow the header first). KL_ERR_INVALID for a count that
 * does not fit 32 bits.
 */
KL_MUST_CHECK int proxy_v2_header_early(struct kl_buf *out, const struct sockaddr *src, const struct sockaddr *dst,
                                        const char *sni, const char *alpn, const struct proxy_client_cert *cert,
                                        const uint64_t *early);

#endif
