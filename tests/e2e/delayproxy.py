#!/usr/bin/env python3
"""A Unix-socket proxy that delays every signer answer (python3 standard library only).

  delayproxy.py LISTEN_SOCKET UPSTREAM_SOCKET DELAY_MS

Requests go through at once; each length-prefixed answer frame from the upstream
signer is held for DELAY_MS before it is passed on (answers keep their order, and
many can be delayed at once). When the upstream goes away the client side is closed.
"""
import asyncio
import os
import struct
import sys


async def pipe_requests(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def pipe_answers(reader, writer, delay):
    loop = asyncio.get_running_loop()
    last = 0.0
    try:
        while True:
            hdr = await reader.readexactly(4)
            body = await reader.readexactly(struct.unpack(">I", hdr)[0])
            when = max(loop.time() + delay, last)
            last = when
            loop.call_at(when, writer.write, hdr + body)
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    await asyncio.sleep(max(0.0, last - loop.time()) + 0.01)
    writer.close()


async def main():
    listen, upstream, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]) / 1000.0

    async def handle(cr, cw):
        try:
            ur, uw = await asyncio.open_unix_connection(upstream)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe_requests(cr, uw), pipe_answers(ur, cw, delay))

    try:
        os.unlink(listen)
    except FileNotFoundError:
        pass
    srv = await asyncio.start_unix_server(handle, listen)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
