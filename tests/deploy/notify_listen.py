#!/usr/bin/env python3
"""Stand in for systemd's $NOTIFY_SOCKET in tests: bind an abstract datagram socket and
append every message received to a file, one per line, until killed or --timeout.

usage: notify_listen.py NAME FILE [--timeout S]    (NAME without the leading '@')
"""
import socket
import sys
import time

name, path = sys.argv[1], sys.argv[2]
limit = float(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--timeout" else 600.0
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + name)
open(path, "a").close()
end = time.monotonic() + limit
while time.monotonic() < end:
    s.settimeout(max(0.1, end - time.monotonic()))
    try:
        msg = s.recv(4096)
    except socket.timeout:
        break
    with open(path, "a") as f:
        f.write(msg.decode("utf-8", "replace").replace("\n", " ") + "\n")
