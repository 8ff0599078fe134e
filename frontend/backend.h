/*
 * backend.h - the backend side of a connection: non-blocking connect to a TCP or
 * Unix-socket backend, and the PROXY protocol v2 header (haproxy's proxy-protocol.txt
 * section 2.2) that tells the backend who the client was, its SNI and ALPN.
 */
#ifndef KL_PROXY_H
#define KL_PROXY_H

#include <stddef.h>
#include <sys/socket.h>
#include "kl_buf.h"
#include "kl_err.h"

#define PP2_TYPE_ALPN 0x01
#define PP2_TYPE_AUTHORITY 0x02

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

#endif
