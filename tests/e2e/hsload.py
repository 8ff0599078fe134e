#!/usr/bin/env python3
"""Concurrent TLS 1.3 clients for the e2e tests (python3 standard library only).

  hsload.py --port P --ca ROOT [-n N] [--concurrency C] [--timeout S] [--path /]

Opens N connections (C at a time), each does a full handshake verifying the chain
and the name 'localhost', sends one HTTP/1.1 GET, reads the answer. Prints one JSON
line: {"ok": .., "failed": .., "errors": {reason: count}, "seconds": .., "p50_ms": ..,
"p99_ms": .., "max_ms": .., "fail_max_ms": ..} where the latencies are handshake times
(fail_max_ms: the longest time until a failure was seen).
"""
import argparse
import asyncio
import json
import ssl
import sys
import time


async def one(args, ctx, sem, lat, errors, fail_lat):
    async with sem:
        t0 = time.monotonic()
        w = None
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", args.port, ssl=ctx, server_hostname="localhost"),
                args.timeout)
            lat.append((time.monotonic() - t0) * 1000.0)
            w.write(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % args.path).encode())
            data = await asyncio.wait_for(r.read(), args.timeout)
            if not data.startswith(b"HTTP/1.") or b" 200 " not in data.split(b"\r\n", 1)[0]:
                raise RuntimeError("bad HTTP answer")
            return True
        except Exception as e:  # noqa: BLE001 - every failure is counted by kind
            name = type(e).__name__
            if isinstance(e, ssl.SSLError):
                name = "SSLError:" + (e.reason or str(e))
            errors[name] = errors.get(name, 0) + 1
            fail_lat.append((time.monotonic() - t0) * 1000.0)
            return False
        finally:
            if w is not None:
                w.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--path", default="/")
    args = ap.parse_args()
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    sem = asyncio.Semaphore(args.concurrency)
    lat, errors, fail_lat = [], {}, []
    t0 = time.monotonic()
    res = await asyncio.gather(*(one(args, ctx, sem, lat, errors, fail_lat) for _ in range(args.n)))
    secs = time.monotonic() - t0
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(len(lat) * p))], 1) if lat else None

    print(json.dumps({"ok": sum(res), "failed": len(res) - sum(res), "errors": errors, "seconds": round(secs, 2),
                      "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": round(lat[-1], 1) if lat else None,
                      "fail_max_ms": round(max(fail_lat), 1) if fail_lat else None}))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
