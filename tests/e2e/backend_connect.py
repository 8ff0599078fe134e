#!/usr/bin/env python3
"""Helpers for tests/e2e/test_backend_connect.sh (issue 15: backend_connect = handshake | data).

  backend PORT LOG MODE   a plain TCP backend that appends "accept" to LOG for every connection
                          it accepts; MODE http answers one request ("HTTP/1.0 200 OK", body
                          "hello"), MODE banner speaks first ("220 banner") and then answers
                          every line with "250 " + the line, as an SMTP server would.
  hs PORT CA N            N TLS 1.3 clients that handshake and leave without a byte of data
                          (even ones with close_notify, odd ones with a bare FIN); prints "hs N".
  get PORT CA             one client, one GET: prints the response.
  banner PORT CA WAIT     handshake, wait WAIT s for the server to speak first: prints "first:"
                          and what came (or "none"); then sends "HELO x" and prints "reply:" and
                          what came back.
"""
import socket
import socketserver
import ssl
import sys
import threading


def backend(port, log, mode):
    lock = threading.Lock()

    class H(socketserver.BaseRequestHandler):
        def handle(self):
            with lock, open(log, "a") as f:
                f.write("accept\n")
            s = self.request
            s.settimeout(10)
            try:
                if mode == "banner":
                    s.sendall(b"220 banner\r\n")
                    buf = b""
                    while True:
                        d = s.recv(4096)
                        if not d:
                            return
                        buf += d
                        while b"\r\n" in buf:
                            line, buf = buf.split(b"\r\n", 1)
                            s.sendall(b"250 " + line + b"\r\n")
                else:
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        d = s.recv(4096)
                        if not d:
                            return
                        buf += d
                    s.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            except OSError:
                pass

    class S(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    S(("127.0.0.1", port), H).serve_forever()


def ctx(ca):
    c = ssl.create_default_context(cafile=ca)
    c.minimum_version = ssl.TLSVersion.TLSv1_3
    return c


def connect(port, ca):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx(ca).wrap_socket(raw, server_hostname="localhost")


def hs(port, ca, n):
    done = 0
    for i in range(n):
        s = connect(port, ca)
        if i % 2 == 0:
            try:
                s = s.unwrap()  # close_notify, then wait for the server's
            except (OSError, ssl.SSLError):
                pass
        s.close()
        done += 1
    print("hs %d" % done)


def recv_all(s):
    out = b""
    while True:
        try:
            d = s.recv(4096)
        except (OSError, ssl.SSLError):
            break
        if not d:
            break
        out += d
    return out


def get(port, ca):
    s = connect(port, ca)
    s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
    print(recv_all(s).decode(errors="replace"))
    s.close()


def banner(port, ca, wait):
    s = connect(port, ca)
    s.settimeout(wait)
    try:
        first = s.recv(4096)
    except (socket.timeout, TimeoutError):
        first = b""
    print("first: %s" % (first.decode(errors="replace").strip() or "none"))
    s.settimeout(10)
    s.sendall(b"HELO x\r\n")
    got = b""
    while b"250 HELO x" not in got:
        d = s.recv(4096)
        if not d:
            break
        got += d
    print("reply: %s" % got.decode(errors="replace").strip().replace("\r\n", " | "))
    s.close()


def main():
    cmd = sys.argv[1]
    if cmd == "backend":
        backend(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif cmd == "hs":
        hs(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    elif cmd == "get":
        get(int(sys.argv[2]), sys.argv[3])
    elif cmd == "banner":
        banner(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
