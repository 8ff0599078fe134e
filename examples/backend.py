#!/usr/bin/env python3
"""keyless demo and test backend: a small HTTP/1.1 server (python3 standard library only).

  GET  /             a short HTML page (what the demo's curl shows)
  GET  /bytes/N      N deterministic bytes (SHA-256 counter stream); header X-Sha256
  POST /echo         the request body back; header X-Sha256 = SHA-256 of what arrived
  POST /sha256       only the SHA-256 (hex) of the request body
  GET  /slow/MS      answers after MS milliseconds
  GET  /proxy        what the PROXY protocol v2 header said (JSON), with --proxy-protocol:
                     addresses, ALPN, SNI and, from an mTLS listener, the client certificate
                     (PP2_TYPE_SSL client/verify/CN, keyless's 0xE0 SHA-256, 0xE1 subject, 0xE2 SAN)

Listens on 127.0.0.1:PORT (--port) or a Unix socket (--unix PATH). With
--proxy-protocol every connection must start with a PROXY v2 header (as
keyless-frontend sends with proxy_protocol = yes).
"""
import argparse
import hashlib
import ipaddress
import json
import os
import socket
import socketserver
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def stream_bytes(n):
    """n deterministic bytes, produced in 32-byte SHA-256 blocks (counter mode)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(i.to_bytes(8, "big")).digest()
        i += 1
    return bytes(out[:n])


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        d = sock.recv(n - len(buf))
        if not d:
            raise ConnectionError("short PROXY header")
        buf += d
    return buf


def parse_pp2(sock):
    hdr = recv_exact(sock, 16)
    if hdr[:12] != PP2_SIG or hdr[12] != 0x21:
        raise ConnectionError("not a PROXY v2 header")
    fam = hdr[13]
    body = recv_exact(sock, struct.unpack(">H", hdr[14:16])[0])
    info = {"family": fam}
    off = 0
    if fam == 0x11:
        info["src"] = "%s:%d" % (ipaddress.IPv4Address(body[0:4]), struct.unpack(">H", body[8:10])[0])
        info["dst"] = "%s:%d" % (ipaddress.IPv4Address(body[4:8]), struct.unpack(">H", body[10:12])[0])
        off = 12
    elif fam == 0x21:
        info["src"] = "[%s]:%d" % (ipaddress.IPv6Address(body[0:16]), struct.unpack(">H", body[32:34])[0])
        info["dst"] = "[%s]:%d" % (ipaddress.IPv6Address(body[16:32]), struct.unpack(">H", body[34:36])[0])
        off = 36
    while off + 3 <= len(body):
        t, ln = body[off], struct.unpack(">H", body[off + 1:off + 3])[0]
        v = body[off + 3:off + 3 + ln]
        if t == 0x01:
            info["alpn"] = v.decode()
        elif t == 0x02:
            info["authority"] = v.decode()
        elif t == 0x20 and ln >= 5:
            # PP2_TYPE_SSL: client bits, verify (0 = a client certificate verified), sub-TLVs.
            info["ssl_client"] = v[0]
            info["ssl_verify"] = struct.unpack(">I", v[1:5])[0]
            sub = 5
            while sub + 3 <= len(v):
                st, sl = v[sub], struct.unpack(">H", v[sub + 1:sub + 3])[0]
                sv = v[sub + 3:sub + 3 + sl]
                if st == 0x21:
                    info["ssl_version"] = sv.decode(errors="replace")
                elif st == 0x22:
                    info["ssl_cn"] = sv.decode(errors="replace")
                sub += 3 + sl
        elif t == 0xE0:
            info["client_sha256"] = v.hex()  # keyless: SHA-256 of the client's leaf certificate
        elif t == 0xE1:
            info["client_subject"] = v.decode(errors="replace")
        elif t == 0xE2:
            info["client_san"] = v.decode(errors="replace")
        off += 3 + ln
    return info


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "keyless-demo-backend"

    def setup(self):
        self.pp2 = None
        if self.server.proxy_protocol:
            self.pp2 = parse_pp2(self.request)
        super().setup()

    def log_message(self, fmt, *args):
        if not self.server.quiet:
            sys.stderr.write("backend: " + (fmt % args) + "\n")

    def send_body(self, body, ctype="application/octet-stream", extra=None):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length", "0"))
        h = hashlib.sha256()
        chunks = []
        while n > 0:
            d = self.rfile.read(min(n, 65536))
            if not d:
                break
            h.update(d)
            chunks.append(d)
            n -= len(d)
        return b"".join(chunks), h.hexdigest()

    def do_GET(self):
        parts = self.path.split("/")
        if self.path == "/":
            page = (
                "<!doctype html><title>keyless demo</title>\n"
                "<h1>Hello from the keyless demo backend</h1>\n"
                "<p>This page came through keyless-frontend over TLS 1.3. The certificate's private\n"
                "key never left the HSM: keyless-signer signed the handshake.</p>\n"
            ).encode()
            self.send_body(page, "text/html; charset=utf-8")
        elif len(parts) == 3 and parts[1] == "bytes" and parts[2].isdigit():
            body = stream_bytes(int(parts[2]))
            self.send_body(body, extra={"X-Sha256": hashlib.sha256(body).hexdigest()})
        elif len(parts) == 3 and parts[1] == "slow" and parts[2].isdigit():
            time.sleep(int(parts[2]) / 1000.0)
            self.send_body(b"slow\n", "text/plain")
        elif self.path == "/proxy":
            self.send_body(json.dumps(self.pp2 or {}).encode() + b"\n", "application/json")
        else:
            self.send_error(404)

    def do_POST(self):
        body, digest = self.read_body()
        if self.path == "/echo":
            self.send_body(body, extra={"X-Sha256": digest})
        elif self.path == "/sha256":
            self.send_body((digest + "\n").encode(), "text/plain")
        else:
            self.send_error(404)


class TCPServer(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 1024

    def get_request(self):
        sock, _ = self.socket.accept()
        return sock, ("unix", 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--unix", help="listen on this Unix socket instead of TCP")
    ap.add_argument("--proxy-protocol", action="store_true", help="expect a PROXY v2 header on each connection")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    if a.unix:
        try:
            os.unlink(a.unix)
        except FileNotFoundError:
            pass
        srv = UnixServer(a.unix, Handler)
    else:
        srv = TCPServer(("127.0.0.1", a.port), Handler)
    srv.proxy_protocol = a.proxy_protocol
    srv.quiet = a.quiet
    srv.serve_forever()


if __name__ == "__main__":
    main()
