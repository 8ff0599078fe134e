/* Unit tests for frontend/backend.c: the PROXY protocol v2 header, byte for byte (with the mTLS TLVs). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include "kl_test.h"
#include "backend.h"

int main(void)
{
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(40000)};
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(443)};
    inet_pton(AF_INET, "192.0.2.1", &src.sin_addr);
    inet_pton(AF_INET, "198.51.100.2", &dst.sin_addr);
    struct kl_buf b;
    kl_buf_init(&b, 4096);
    ok(proxy_v2_header(&b, (struct sockaddr *)&src, (struct sockaddr *)&dst, "example.com", "h2") == 0, "v4 header");
    static const uint8_t want4[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
        0x21, 0x11, 0x00, 0x1f,                                                 /* v2 PROXY, TCP4, 31 bytes */
        192,  0,    2,    1,    198,  51,   100,  2,    0x9c, 0x40, 0x01, 0xbb, /* addresses, ports */
        0x01, 0x00, 0x02, 'h',  '2',                                            /* ALPN */
        0x02, 0x00, 0x0b, 'e',  'x',  'a',  'm',  'p',  'l',  'e',  '.',  'c',  'o', 'm'}; /* AUTHORITY */
    is_mem(b.base, b.len, want4, sizeof(want4), "IPv4 header with ALPN and SNI TLVs");
    kl_buf_dispose(&b);

    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
    struct sockaddr_in6 d6 = {.sin6_family = AF_INET6, .sin6_port = htons(2)};
    inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
    inet_pton(AF_INET6, "2001:db8::2", &d6.sin6_addr);
    ok(proxy_v2_header(&b, (struct sockaddr *)&s6, (struct sockaddr *)&d6, "", "") == 0, "v6 header");
    is_int(b.len, 16 + 36, "IPv6: 36 address bytes, no TLV for empty SNI/ALPN");
    is_int(b.base[13], 0x21, "IPv6: TCP6 family");
    is_int(b.base[15], 36, "IPv6: length");
    kl_buf_dispose(&b);

    ok(proxy_v2_header(&b, (struct sockaddr *)&src, (struct sockaddr *)&d6, "a", "") == 0, "mixed families");
    is_int(b.base[13], 0x00, "mixed families: UNSPEC");
    is_int(b.len, 16 + 4, "UNSPEC: only the TLV follows");
    kl_buf_dispose(&b);

    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    is_int(proxy_v2_header(&b, (struct sockaddr *)&src, (struct sockaddr *)&dst, longname, ""), KL_ERR_INVALID,
           "SNI over 255 bytes refused");
    is_int(b.len, 0, "nothing appended on error");
    struct kl_buf small;
    kl_buf_init(&small, 20);
    is_int(proxy_v2_header(&small, (struct sockaddr *)&src, (struct sockaddr *)&dst, "example.com", ""),
           KL_ERR_OVERFLOW, "bounded output buffer respected");
    /* Client certificates (mTLS): PP2_TYPE_SSL with the client bits, verify and sub-TLVs, then our TLVs. */
    uint8_t fp[32];
    for (size_t i = 0; i < 32; i++) {
        fp[i] = (uint8_t)i;
    }
    struct proxy_client_cert cc = {1, fp, "bob", "CN=bob", "DNS:b"};
    kl_buf_init(&b, 4096);
    ok(proxy_v2_header_cert(&b, (struct sockaddr *)&src, (struct sockaddr *)&dst, "", "h2", &cc) == 0,
       "header with a verified client certificate");
    static const uint8_t want_cert[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
        0x21, 0x11, 0x00, 0x5d,                                                 /* 12 + 5 + 24 + 35 + 9 + 8 = 93 */
        192,  0,    2,    1,    198,  51,   100,  2,    0x9c, 0x40, 0x01, 0xbb, /* addresses, ports */
        0x01, 0x00, 0x02, 'h',  '2',                                            /* ALPN */
        0x20, 0x00, 0x15,                                                       /* SSL, 21 bytes */
        0x07,                                                                   /* SSL | CERT_CONN | CERT_SESS */
        0x00, 0x00, 0x00, 0x00,                                                 /* verify: ok */
        0x21, 0x00, 0x07, 'T',  'L',  'S',  'v',  '1',  '.',  '3',              /* SSL_VERSION */
        0x22, 0x00, 0x03, 'b',  'o',  'b',                                      /* SSL_CN */
        0xe0, 0x00, 0x20,                                                       /* SHA-256 of the leaf */
        0,    1,    2,    3,    4,    5,    6,    7,    8,    9,    10,   11,   12,  13,
        14,   15,   16,   17,   18,   19,   20,   21,   22,   23,   24,   25,   26,  27,
        28,   29,   30,   31,   0xe1, 0x00, 0x06, 'C',  'N',  '=',  'b',  'o',  'b', /* subject */
        0xe2, 0x00, 0x05, 'D',  'N',  'S',  ':',  'b'};                              /* SAN */
    is_mem(b.base, b.len, want_cert, sizeof(want_cert), "PP2_TYPE_SSL, SSL_CN and the identity TLVs, byte for byte");
    kl_buf_dispose(&b);

    struct proxy_client_cert none = {0, NULL, "", "", ""};
    kl_buf_init(&b, 4096);
    ok(proxy_v2_header_cert(&b, (struct sockaddr *)&src, (struct sockaddr *)&dst, "", "", &none) == 0,
       "header without a client certificate");
    static const uint8_t want_none[] = {0x20, 0x00, 0x0f, 0x01, 0x00, 0x00, 0x00, 0x01, 0x21,
                                        0x00, 0x07, 'T',  'L',  'S',  'v',  '1',  '.',  '3'};
    is_int(b.len, 16 + 12 + sizeof(want_none), "no certificate: only the SSL TLV after the addresses");
    is_mem(b.base + 28, b.len - 28, want_none, sizeof(want_none),
           "no certificate: client SSL only, verify non-zero, no CN, no identity TLVs");
    kl_buf_dispose(&b);

    struct proxy_client_cert bad = {1, NULL, "x", "", ""};
    kl_buf_init(&b, 4096);
    is_int(proxy_v2_header_cert(&b, (struct sockaddr *)&src, (struct sockaddr *)&dst, "", "", &bad), KL_ERR_INVALID,
           "verified without a fingerprint refused");
    struct proxy_client_cert longcn = {1, fp, longname, "", ""};
    is_int(proxy_v2_header_cert(&b, (struct sockaddr *)&src, (struct sockaddr *)&dst, "", "", &longcn), KL_ERR_INVALID,
           "CN over 255 bytes refused");
    is_int(b.len, 0, "nothing appended on error");
    kl_buf_dispose(&b);
    kl_buf_init(&small, 60);
    is_int(proxy_v2_header_cert(&small, (struct sockaddr *)&src, (struct sockaddr *)&dst, "", "", &cc), KL_ERR_OVERFLOW,
           "bounded output buffer respected with the identity TLVs");
    kl_buf_dispose(&small);

    /* 0-RTT (issue 11): PP2_TYPE_KL_EARLY_DATA, 4 bytes big-endian, after the other TLVs. */
    uint64_t early = 0x12345;
    kl_buf_init(&b, 4096);
    ok(proxy_v2_header_early(&b, (struct sockaddr *)&src, (struct sockaddr *)&dst, "", "h2", NULL, &early) == 0,
       "header with the early data count");
    static const uint8_t want_early[] = {
        0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
        0x21, 0x11, 0x00, 0x18,                                                 /* v2 PROXY, TCP4, 24 bytes */
        192,  0,    2,    1,    198,  51,   100,  2,    0x9c, 0x40, 0x01, 0xbb, /* addresses, ports */
        0x01, 0x00, 0x02, 'h',  '2',                                            /* ALPN */
        0xe3, 0x00, 0x04, 0x00, 0x01, 0x23, 0x45};                              /* early data: 0x12345 bytes */
    is_mem(b.base, b.len, want_early, sizeof(want_early), "the early data TLV byte for byte");
    kl_buf_dispose(&b);
    early = 0;
    kl_buf_init(&b, 4096);
    ok(proxy_v2_header_early(&b, (struct sockaddr *)&src, (struct sockaddr *)&dst, "", "", NULL, &early) == 0 &&
           b.len == 16 + 12 + 7 && b.base[28] == 0xe3 && b.base[34] == 0,
       "0-RTT accepted with no bytes: the TLV says 0");
    kl_buf_dispose(&b);
    ok(proxy_v2_header_early(&b, (struct sockaddr *)&src, (struct sockaddr *)&dst, "", "", NULL, NULL) == 0 &&
           b.len == 16 + 12,
       "no 0-RTT: no TLV");
    kl_buf_dispose(&b);
    early = (uint64_t)UINT32_MAX + 1;
    is_int(proxy_v2_header_early(&b, (struct sockaddr *)&src, (struct sockaddr *)&dst, "", "", NULL, &early),
           KL_ERR_INVALID, "a count over 32 bits refused");
    is_int(b.len, 0, "nothing appended on error");
    kl_buf_init(&small, 16 + 12 + 6);
    early = 1;
    is_int(proxy_v2_header_early(&small, (struct sockaddr *)&src, (struct sockaddr *)&dst, "", "", NULL, &early),
           KL_ERR_OVERFLOW, "bounded output buffer respected with the early data TLV");
    kl_buf_dispose(&small);
    return kl_test_done();
}
