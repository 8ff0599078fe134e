#!/usr/bin/env python3
"""Helpers for tests/e2e/test_resumption.sh and test_fleet.sh (issue 11).

  backend PORT LOG        a PROXY v2 backend that reads keyless's 0-RTT TLV (0xE3): every
                          connection is one JSON line in LOG ({"early": N or null, "request":
                          first line}); a request that arrived inside the early bytes and is
                          not a GET is answered 425 Too Early (RFC 8470 5.2), others 200 with
                          "early=N" in the body.
  py-resume PORT CA       Python ssl: a full handshake, then one with session=: prints
                          "first reused=False" and "second reused=True|False".
  capture LISTEN UPSTREAM FILE
                          a one-connection TCP relay that saves what the client sent before
                          the server's first byte (its first flight: ClientHello, early data);
                          FILE.ready appears once it listens.
  replay PORT FILE        send a saved first flight again, raw: prints "alert" when the server
                          answered with an alert record, "handshake" when it went on with its
                          handshake (the replayed early data is then skipped, RFC 8446 4.2.10).
"""
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        d = sock.recv(n - len(buf))
        if not d:
            raise EOFError
        buf += d
    return buf


def parse_pp2(sock):
    head = read_exact(sock, 16)
    if head[:12] != SIG:
        raise ValueError("no PROXY v2 header")
    body = read_exact(sock, struct.unpack(">H", head[14:16])[0])
    off = {0x11: 12, 0x21: 36}.get(head[13], 0)
    early = None
    while off + 3 <= len(body):
        t, ln = body[off], struct.unpack(">H", body[off + 1:off + 3])[0]
        if t == 0xE3:
            if ln != 4:
                raise ValueError("TLV 0xE3 of %d bytes" % ln)
            early = struct.unpack(">I", body[off + 3:off + 7])[0]
        off += 3 + ln
    return early


class Backend(socketserver.StreamRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(10)
        try:
            early = parse_pp2(sock)
            data = b""
            while b"\r\n\r\n" not in data:
                d = sock.recv(65536)
                if not d:
                    break
                data += d
        except (EOFError, ValueError, OSError) as e:
            self.server.log({"error": str(e)})
            return
        head = data.split(b"\r\n\r\n", 1)[0]
        line = head.split(b"\r\n", 1)[0].decode(errors="replace")
        in_early = early is not None and len(head) + 4 <= early
        self.server.log({"early": early, "request": line, "in_early": in_early})
        if in_early and not line.startswith("GET "):
            status, body = "425 Too Early", b"too early\n"
        else:
            status, body = "200 OK", ("early=%s\n" % early).encode()
        sock.sendall(("HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (status, len(body))).encode()
                     + body)


class BackendServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, port, logpath):
        super().__init__(("127.0.0.1", port), Backend)
        self.lock = threading.Lock()
        self.logpath = logpath

    def log(self, rec):
        with self.lock, open(self.logpath, "a") as f:
            f.write(json.dumps(rec) + "\n")


def py_resume(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    sess = None
    for name in ("first", "second"):
        raw = socket.create_connection(("127.0.0.1", port), 10)
        s = ctx.wrap_socket(raw, server_hostname="localhost", session=sess)
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        while s.recv(65536):
            pass
        # TLS 1.3: the session (its ticket) exists once NewSessionTicket was read, after the handshake.
        print("%s reused=%s" % (name, s.session_reused))
        sess = s.session
        s.close()


def capture(listen, upstream, path):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen))
    ls.listen(1)
    open(path + ".ready", "w").close()  # listening: the one connection it relays is the client's
    ls.settimeout(20)
    c, _ = ls.accept()
    u = socket.create_connection(("127.0.0.1", upstream), 10)
    first, answered = b"", False
    c.settimeout(0.05)
    u.settimeout(0.05)
    deadline = time.time() + 15
    while time.time() < deadline:
        progress = False
        try:
            d = c.recv(65536)
            if not d:
                break
            if not answered:
                first += d
            u.sendall(d)
            progress = True
        except socket.timeout:
            pass
        try:
            d = u.recv(65536)
            if not d:
                break
            answered = True
            c.sendall(d)
            progress = True
        except socket.timeout:
            pass
        if not progress and answered and not first:
            break
    open(path, "wb").write(first)
    c.close()
    u.close()


def replay(port, path):
    data = open(path, "rb").read()
    s = socket.create_connection(("127.0.0.1", port), 10)
    s.sendall(data)
    s.settimeout(5)
    try:
        first = s.recv(5)
    except socket.timeout:
        first = b""
    print("alert" if first[:1] == b"\x15" else "handshake" if first[:1] == b"\x16" else "nothing")
    s.close()


def main():
    cmd = sys.argv[1]
    if cmd == "backend":
        BackendServer(int(sys.argv[2]), sys.argv[3]).serve_forever()
    elif cmd == "py-resume":
        py_resume(int(sys.argv[2]), sys.argv[3])
    elif cmd == "capture":
        capture(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif cmd == "replay":
        replay(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
