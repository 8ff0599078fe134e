#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include "backend.h"

/* The 12-byte signature every v2 header starts with. */
static const uint8_t pp2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

int proxy_connect_start(int *fd_p, const struct sockaddr *addr, socklen_t addr_len)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return KL_ERR_IO;
    }
    if (addr->sa_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (connect(fd, addr, addr_len) == 0) {
        *fd_p = fd;
        return 0;
    }
    if (errno == EINPROGRESS || errno == EAGAIN) {
        *fd_p = fd;
        return KL_ERR_WANT_WRITE;
    }
    int e = errno;
    close(fd);
    errno = e;
    return KL_ERR_IO;
}

int proxy_connect_finish(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        return KL_ERR_IO;
    }
    if (err != 0) {
        errno = err;
        return KL_ERR_IO;
    }
    return 0;
}

static int put_tlv_bytes(uint8_t *p, size_t *off, size_t cap, uint8_t type, const void *v, size_t len)
{
    if (len > 0xffff || *off + 3 + len > cap) {
        return KL_ERR_OVERFLOW;
    }
    p[(*off)++] = type;
    p[(*off)++] = (uint8_t)(len >> 8);
    p[(*off)++] = (uint8_t)len;
    memcpy(p + *off, v, len);
    *off += len;
    return 0;
}

/* The PP2_TYPE_SSL TLV and our identity TLVs (proxy_v2_header_cert). */
static int put_cert_tlvs(uint8_t *p, size_t *off, size_t cap, const struct proxy_client_cert *cert)
{
    uint8_t ssl[1 + 4 + (3 + 7) + (3 + 255)];
    size_t n = 0;
    int r;
    ssl[n++] = PP2_CLIENT_SSL | (cert->verified ? PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS : 0);
    /* verify: "zero if the client presented a certificate and it was successfully verified, and non-zero otherwise" */
    ssl[n++] = 0;
    ssl[n++] = 0;
    ssl[n++] = 0;
    ssl[n++] = cert->verified ? 0 : 1;
    if ((r = put_tlv_bytes(ssl, &n, sizeof(ssl), PP2_SUBTYPE_SSL_VERSION, "TLSv1.3", 7)) != 0) {
        return r;
    }
    if (cert->verified && cert->cn[0] != '\0' &&
        (r = put_tlv_bytes(ssl, &n, sizeof(ssl), PP2_SUBTYPE_SSL_CN, cert->cn, strlen(cert->cn))) != 0) {
        return r;
    }
    if ((r = put_tlv_bytes(p, off, cap, PP2_TYPE_SSL, ssl, n)) != 0 || !cert->verified) {
        return r;
    }
    if ((r = put_tlv_bytes(p, off, cap, PP2_TYPE_KL_CLIENT_SHA256, cert->sha256, 32)) != 0 ||
        (cert->subject[0] != '\0' &&
         (r = put_tlv_bytes(p, off, cap, PP2_TYPE_KL_CLIENT_SUBJECT, cert->subject, strlen(cert->subject))) != 0) ||
        (cert->san[0] != '\0' &&
         (r = put_tlv_bytes(p, off, cap, PP2_TYPE_KL_CLIENT_SAN, cert->san, strlen(cert->san))) != 0)) {
        return r;
    }
    return 0;
}

/* A string TLV; an empty string is left out. */
static int put_tlv(uint8_t *p, size_t *off, size_t cap, uint8_t type, const char *v)
{
    size_t len = strlen(v);
    return len == 0 ? 0 : put_tlv_bytes(p, off, cap, type, v, len);
}

int proxy_v2_header(struct kl_buf *out, const struct sockaddr *src, const struct sockaddr *dst, const char *sni,
                    const char *alpn)
{
    return proxy_v2_header_cert(out, src, dst, sni, alpn, NULL);
}

int proxy_v2_header_cert(struct kl_buf *out, const struct sockaddr *src, const struct sockaddr *dst, const char *sni,
                         const char *alpn, const struct proxy_client_cert *cert)
{
    return proxy_v2_header_early(out, src, dst, sni, alpn, cert, NULL);
}

int proxy_v2_header_early(struct kl_buf *out, const struct sockaddr *src, const struct sockaddr *dst, const char *sni,
                          const char *alpn, const struct proxy_client_cert *cert, const uint64_t *early)
{
    /* 16 fixed + 36 addresses (IPv6) + two TLVs of at most 255 + 3 bytes each (SNI <= 255, ALPN <= 255),
     * then the TLS TLV (3 + 5 + 10 + 258), the identity TLVs (3 + 32, 2 * (3 + 255)) and the early data count (3 + 4).
     */
    uint8_t h[16 + 36 + 2 * (3 + 255) + (3 + 5 + 10 + 258) + (3 + 32) + 2 * (3 + 255) + (3 + 4)];
    uint8_t count[4];
    if (early != NULL) {
        if (*early > UINT32_MAX) {
            return KL_ERR_INVALID;
        }
        for (int i = 0; i < 4; i++) {
            count[i] = (uint8_t)(*early >> (24 - 8 * i));
        }
    }
    size_t off = 16;
    uint8_t fam = 0x00; /* AF_UNSPEC: the backend uses the real connection's addresses */
    if (strlen(sni) > 255 || strlen(alpn) > 255) {
        return KL_ERR_INVALID;
    }
    if (cert != NULL && (strlen(cert->cn) > 255 || strlen(cert->subject) > 255 || strlen(cert->san) > 255 ||
                         (cert->verified && cert->sha256 == NULL))) {
        return KL_ERR_INVALID;
    }
    if (src != NULL && dst != NULL && src->sa_family == AF_INET && dst->sa_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)src, *d = (const struct sockaddr_in *)dst;
        fam = 0x11; /* TCP over IPv4 */
        memcpy(h + off, &s->sin_addr, 4);
        memcpy(h + off + 4, &d->sin_addr, 4);
        memcpy(h + off + 8, &s->sin_port, 2);
        memcpy(h + off + 10, &d->sin_port, 2);
        off += 12;
    } else if (src != NULL && dst != NULL && src->sa_family == AF_INET6 && dst->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)src, *d = (const struct sockaddr_in6 *)dst;
        fam = 0x21; /* TCP over IPv6 */
        memcpy(h + off, &s->sin6_addr, 16);
        memcpy(h + off + 16, &d->sin6_addr, 16);
        memcpy(h + off + 32, &s->sin6_port, 2);
        memcpy(h + off + 34, &d->sin6_port, 2);
        off += 36;
    }
    int r;
    if ((r = put_tlv(h, &off, sizeof(h), PP2_TYPE_ALPN, alpn)) != 0 ||
        (r = put_tlv(h, &off, sizeof(h), PP2_TYPE_AUTHORITY, sni)) != 0 ||
        (cert != NULL && (r = put_cert_tlvs(h, &off, sizeof(h), cert)) != 0) ||
        (early != NULL && (r = put_tlv_bytes(h, &off, sizeof(h), PP2_TYPE_KL_EARLY_DATA, count, 4)) != 0)) {
        return r;
    }
    memcpy(h, pp2_sig, sizeof(pp2_sig));
    h[12] = 0x21; /* version 2, command PROXY */
    h[13] = fam;
    h[14] = (uint8_t)((off - 16) >> 8);
    h[15] = (uint8_t)(off - 16);
    return kl_buf_append(out, h, off);
}
