#!/usr/bin/env python3
"""Misbehaving, idle and long-lived clients for the e2e tests (python3 standard library only).

  clients.py idle PORT N [--tls CA]   hold N connections (TCP only, or TLS handshaken) open;
                                      prints "ready K" when K are open, then waits for stdin EOF
  clients.py noread PORT CA PATH      handshake, ask for PATH, never read; waits for stdin EOF
  clients.py dribble PORT SECONDS     send a ClientHello one byte per second; prints how long
                                      until the frontend closed the connection (or "open")
  clients.py abandon PORT MS          send a whole ClientHello, close the connection MS later
  clients.py live PORT CA GO BYTES    handshake (prints "connected"), wait (<= 60 s) until the
                                      file GO exists, then GET /bytes/BYTES on the same connection
                                      and print "live STATUS SHA256-MATCHES"
"""
import os
import socket
import ssl
import sys
import time


def tls_ctx(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def idle(port, n, ca=None):
    socks = []
    ctx = tls_ctx(ca) if ca else None
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), 10)
            if ctx:
                s = ctx.wrap_socket(s, server_hostname="localhost")
            socks.append(s)
        except OSError as e:
            print("# stopped at %d: %s" % (i, e), flush=True)
            break
    print("ready %d" % len(socks), flush=True)
    sys.stdin.read()
    # Count how many the frontend kept open all along (recv would return b"" if closed).
    alive = 0
    for s in socks:
        try:
            s.setblocking(False)
            if s.recv(1) != b"":
                alive += 1
        except (BlockingIOError, ssl.SSLWantReadError):
            alive += 1
        except OSError:
            pass
    print("alive %d" % alive, flush=True)


def noread(port, ca, path):
    s = tls_ctx(ca).wrap_socket(socket.create_connection(("127.0.0.1", port), 10), server_hostname="localhost")
    s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())
    print("ready", flush=True)
    sys.stdin.read()


def client_hello():
    """A real ClientHello from Python's ssl, captured through a memory BIO."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def abandon(port, ms):
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(client_hello())
    time.sleep(ms / 1000.0)
    s.close()
    print("abandoned", flush=True)


def dribble(port, seconds):
    hello = client_hello()
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.settimeout(1.0)
    t0 = time.monotonic()
    for i in range(int(seconds)):
        try:
            s.sendall(hello[i:i + 1])
        except OSError:
            print("closed %.1f" % (time.monotonic() - t0), flush=True)
            return
        try:
            if s.recv(100) == b"":
                print("closed %.1f" % (time.monotonic() - t0), flush=True)
                return
        except socket.timeout:
            pass
        except OSError:
            print("closed %.1f" % (time.monotonic() - t0), flush=True)
            return
    print("open", flush=True)


def live(port, ca, go, nbytes):
    import hashlib
    import http.client
    c = http.client.HTTPSConnection("localhost", port, context=tls_ctx(ca), timeout=60)
    c.connect()
    print("connected", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.05)
    c.request("GET", "/bytes/%d" % nbytes)
    r = c.getresponse()
    body = r.read()
    print("live", r.status, hashlib.sha256(body).hexdigest() == r.getheader("X-Sha256"), flush=True)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "idle":
        ca = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--tls" else None
        idle(int(sys.argv[2]), int(sys.argv[3]), ca)
    elif cmd == "noread":
        noread(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif cmd == "abandon":
        abandon(int(sys.argv[2]), int(sys.argv[3]))
    elif cmd == "dribble":
        dribble(int(sys.argv[2]), float(sys.argv[3]))
    elif cmd == "live":
        live(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit(__doc__)
