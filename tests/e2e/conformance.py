#!/usr/bin/env python3
"""tests/e2e/conformance.py - raw TLS 1.3 ClientHellos for test_conformance.sh.

usage: conformance.py PORT CASE
Sends one hand-built ClientHello (split into records of at most 2^14 bytes) and prints
what the server answered first: "alert N" for an alert record, "handshake" for a
handshake record (the ServerHello), "closed" if the connection closed with nothing.
"""
import os
import socket
import struct
import sys


def ext(t, body):
    return struct.pack(">HH", t, len(body)) + body


def u16list(vals, width=2):
    data = b"".join(struct.pack(">H", v) for v in vals)
    return struct.pack(">H", len(data)) + data


def shares(entries):
    data = b"".join(struct.pack(">HH", g, len(k)) + k for g, k in entries)
    return struct.pack(">H", len(data)) + data


def client_hello(legacy=0x0303, groups=(0x001D,), key_shares=None, sig_algs=(0x0403, 0x0804, 0x0805), extra=b""):
    if key_shares is None:
        key_shares = [(0x001D, os.urandom(32))]
    exts = ext(43, b"\x02\x03\x04")
    exts += ext(10, u16list(groups))
    exts += ext(13, u16list(sig_algs))
    exts += ext(51, shares(key_shares))
    exts += extra
    body = struct.pack(">H", legacy) + os.urandom(32) + b"\x00" + u16list([0x1301, 0x1302, 0x1303]) + b"\x01\x00"
    body += struct.pack(">H", len(exts)) + exts
    return b"\x01" + len(body).to_bytes(3, "big") + body


def records(msg):
    out = b""
    for i in range(0, len(msg), 16384):
        frag = msg[i : i + 16384]
        out += b"\x16\x03\x01" + struct.pack(">H", len(frag)) + frag
    return out


def case(name):
    if name == "baseline":
        return client_hello()
    if name == "legacy-0300":
        return client_hello(legacy=0x0300)
    if name == "psk-no-modes":
        identity = struct.pack(">H", 8) + b"ticket!!" + struct.pack(">I", 0)
        binder = b"\x20" + bytes(32)
        psk = struct.pack(">H", len(identity)) + identity + struct.pack(">H", len(binder)) + binder
        return client_hello(extra=ext(41, psk))
    if name == "share-not-in-groups":
        return client_hello(groups=(0x0017,))
    if name == "many-shares":
        unknown = [(0x6000 + i, b"\x42") for i in range(2000)]
        return client_hello(groups=[g for g, _ in unknown] + [0x001D], key_shares=unknown + [(0x001D, os.urandom(32))])
    if name == "big-sig-algs":
        algs = [0x0A0A + i for i in range(32714)] + [0x0403]
        return client_hello(sig_algs=algs)
    raise SystemExit("unknown case " + name)


def main():
    port, name = int(sys.argv[1]), sys.argv[2]
    msg = case(name)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(records(msg))
    hdr = b""
    while len(hdr) < 5:
        chunk = s.recv(5 - len(hdr))
        if not chunk:
            print("closed")
            return
        hdr += chunk
    if hdr[0] == 21:
        body = s.recv(2)
        print("alert %d" % body[1])
    elif hdr[0] == 22:
        print("handshake %d" % len(msg))
    else:
        print("record %d" % hdr[0])


if __name__ == "__main__":
    main()
