/* Unit tests for frontend/backend.c: the PROXY protocol v2 header, byte for byte. */
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
    kl_buf_dispose(&small);
    return kl_test_done();
}
