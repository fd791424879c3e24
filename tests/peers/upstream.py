#!/usr/bin/env python3
"""Dummy upstream for Lyre's integration tests (aiohttp).

Listens on 127.0.0.1:0 and prints `PORT <n>` as its first stdout line. Any leading
`/exapps/<name>` is stripped before dispatch, so `/exapps/up/page` and `/page` are the same
endpoint (Lyre forwards paths unchanged).

Endpoints:
  /page                small HTML page
  /echo-headers        JSON {method, path, raw_path, query, version, headers: [[name, value], ...],
                       body_size}; raw_path is the request target exactly as received
  /bytes/<n>           n bytes of the deterministic pattern (see PATTERN below), chunked;
                       `?cl=1` sends a Content-Length instead
  /upload              streams the request body; JSON {size, sha256}
  /ws                  WebSocket echo (text and binary)
  /slow?delay=s        sleeps s seconds, then answers
  /silent              never answers
  /status/<code>       answers with that status
  /sse?gap=s&n=k       k server-sent events, s seconds apart
  /count               number of TCP connections that carried a non-stats request
  /stats               JSON {accepted, connections, requests, paths}: paths are the last 1000
                       request targets exactly as received (raw path + query)

PATTERN: the stream is cut into 64 KiB blocks; block i is BASE with its first 8 bytes
replaced by i as u64 little-endian. BASE is 8192 outputs of xorshift64 (13, 7, 17) from
seed 0x9E3779B97F4A7C15, each written little-endian. tests/common/mod.rs computes the same.
"""
import asyncio
import hashlib
import json
import logging
import re
import struct
import sys

from aiohttp import web, WSMsgType

BLOCK = 64 * 1024
MASK = (1 << 64) - 1
MAX_PATHS = 1000  # cap of the request-path log


def base_block() -> bytes:
    x = 0x9E3779B97F4A7C15
    out = bytearray()
    for _ in range(BLOCK // 8):
        x ^= (x << 13) & MASK
        x ^= x >> 7
        x ^= (x << 17) & MASK
        out += struct.pack("<Q", x)
    return bytes(out)


BASE = base_block()
STATS_PATHS = {"/count", "/stats"}
stats = {"accepted": 0, "serving": set(), "requests": 0, "paths": []}
# id(protocol) -> connection serial. RequestHandler has __slots__ (no attribute, no weakref),
# so the protocols are kept alive in `protocols` to keep their ids unique. Test runs open at
# most a few thousand connections.
serials = {}
protocols = []


def pattern_block(i: int) -> bytes:
    return struct.pack("<Q", i) + BASE[8:]


def endpoint(path: str) -> str:
    m = re.match(r"^/exapps/[^/]+(/.*)$", path)
    return m.group(1) if m else path


@web.middleware
async def record(request, handler):
    ep = endpoint(request.path)
    if ep not in STATS_PATHS:
        stats["serving"].add(serials.get(id(request.protocol), -1))
        stats["requests"] += 1
        stats["paths"].append(request.raw_path)
        del stats["paths"][:-MAX_PATHS]
    return await handler(request)


async def page(request):
    html = "<!doctype html><html><head><title>lyre upstream</title></head><body><p>hello from upstream</p></body></html>"
    return web.Response(text=html, content_type="text/html")


async def echo_headers(request):
    body = await request.read()
    doc = {
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path,
        "query": request.query_string,
        "version": "%d.%d" % (request.version.major, request.version.minor),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
        "body_size": len(body),
    }
    return web.json_response(doc)


async def send_bytes(request, n: int):
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    if request.query.get("cl") == "1" or request.method == "HEAD":
        resp.content_length = n
    else:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    i, left = 0, n
    while left > 0:
        blk = pattern_block(i)
        take = min(left, BLOCK)
        await resp.write(blk[:take] if take < BLOCK else blk)
        left -= take
        i += 1
    await resp.write_eof()
    return resp


async def upload(request):
    h = hashlib.sha256()
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        h.update(chunk)
    return web.json_response({"size": size, "sha256": h.hexdigest()})


async def ws(request):
    sock = web.WebSocketResponse(autoping=True)
    await sock.prepare(request)
    async for msg in sock:
        if msg.type == WSMsgType.TEXT:
            await sock.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await sock.send_bytes(msg.data)
        else:
            break
    return sock


async def slow(request):
    delay = float(request.query.get("delay", "1"))
    await asyncio.sleep(delay)
    return web.Response(text="slow done after %s\n" % delay)


async def silent(request):
    await asyncio.Event().wait()


async def status(request, code: int):
    if code < 200 or code in (204, 304):
        return web.Response(status=code)
    return web.Response(status=code, text="status %d\n" % code)


async def sse(request):
    gap = float(request.query.get("gap", "0.5"))
    n = int(request.query.get("n", "3"))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    for i in range(n):
        if i:
            await asyncio.sleep(gap)
        await resp.write(b"id: %d\ndata: event %d\n\n" % (i, i))
    await resp.write_eof()
    return resp


async def count(request):
    return web.Response(text="%d\n" % len(stats["serving"]))


async def stats_handler(request):
    doc = {
        "accepted": stats["accepted"],
        "connections": len(stats["serving"]),
        "requests": stats["requests"],
        "paths": stats["paths"],
    }
    return web.json_response(doc)


async def dispatch(request):
    ep = endpoint(request.path)
    simple = {
        "/page": page,
        "/echo-headers": echo_headers,
        "/upload": upload,
        "/ws": ws,
        "/slow": slow,
        "/silent": silent,
        "/sse": sse,
        "/count": count,
        "/stats": stats_handler,
    }
    if ep in simple:
        return await simple[ep](request)
    m = re.match(r"^/bytes/(\d+)$", ep)
    if m:
        return await send_bytes(request, int(m.group(1)))
    m = re.match(r"^/status/(\d{3})$", ep)
    if m:
        return await status(request, int(m.group(1)))
    return web.Response(status=404, text="no such endpoint: %s\n" % ep)


async def main():
    for name in ("aiohttp", "aiohttp.access", "aiohttp.server", "aiohttp.web", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    app = web.Application(middlewares=[record], client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()

    def factory():
        proto = runner.server()
        protocols.append(proto)
        stats["accepted"] += 1
        serials[id(proto)] = stats["accepted"]
        return proto

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("PORT %d\n" % port)
    sys.stdout.flush()
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
