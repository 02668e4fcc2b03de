"""Which server stack for `luciddream serve`: aiohttp or uvicorn+starlette, measured on what serve needs.

Each stack serves the same two routes (a 2 kB "hello" and a 4 MiB streamed reply, in 64 kB chunks) on loopback, in
a process of its own, with a keep-alive timeout of 5 s and of aiohttp's default 3630 s. Measured: import time, RSS
idle and holding 200 idle connections, 2000 hellos from 8 client threads, the time to stream 4 MiB, and what happens
to a client that sends its headers one byte a second (is it dropped by the stack itself, and when). Needs both
stacks installed (pip install aiohttp uvicorn starlette).

    python benchmarks/server_stacks.py
"""
from __future__ import annotations

import http.client
import select
import socket
import subprocess
import sys
import textwrap
import threading
import time

AIOHTTP = textwrap.dedent("""
    import sys, time; t = time.perf_counter()
    from aiohttp import web
    imported = time.perf_counter() - t
    HELLO = b"h" * 2048
    async def hello(request):
        return web.Response(body=HELLO)
    async def stream(request):
        r = web.StreamResponse(); r.enable_chunked_encoding(); await r.prepare(request)
        for _ in range(64):
            await r.write(b"x" * 65536)
        await r.write_eof(); return r
    app = web.Application(); app.router.add_get("/hello", hello); app.router.add_get("/stream", stream)
    import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1024)
    print(s.getsockname()[1], imported, flush=True)
    web.run_app(app, sock=s, print=None, access_log=None, keepalive_timeout=float(sys.argv[1]))
""")
UVICORN = textwrap.dedent("""
    import sys, time; t = time.perf_counter()
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route
    imported = time.perf_counter() - t
    HELLO = b"h" * 2048
    async def hello(request):
        return Response(HELLO)
    async def chunks():
        for _ in range(64):
            yield b"x" * 65536
    async def stream(request):
        return StreamingResponse(chunks())
    app = Starlette(routes=[Route("/hello", hello), Route("/stream", stream)])
    import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1024)
    print(s.getsockname()[1], imported, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, http="h11",
                                  timeout_keep_alive=int(sys.argv[1]))).run(sockets=[s])
""")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(name: str, code: str, keep_alive: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", code, str(keep_alive)], stdout=subprocess.PIPE, text=True)
    try:
        port_text, imported = proc.stdout.readline().split()
        port = int(port_text)
        time.sleep(0.5)
        idle_rss = rss_mb(proc.pid)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        time.sleep(1.0)
        held_rss = rss_mb(proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)   # a new client among 200 idle ones
        conn.request("GET", "/hello")
        ok_among_idle = conn.getresponse().read() == b"h" * 2048
        for s in idle:
            s.close()

        def hellos(n: int) -> None:
            for _ in range(n):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                c.request("GET", "/hello")
                assert len(c.getresponse().read()) == 2048
                c.close()

        start = time.perf_counter()
        threads = [threading.Thread(target=hellos, args=(250,)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rate = 2000 / (time.perf_counter() - start)
        start = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/stream")
        assert len(c.getresponse().read()) == 64 * 65536
        stream_s = time.perf_counter() - start
        slow = socket.create_connection(("127.0.0.1", port), timeout=1)
        start = time.monotonic()
        dropped = None
        for byte in b"GET /hello HTTP/1.1\r\nHost: a-very-long-host-name.example\r\n" * 2:
            try:
                slow.send(bytes([byte]))
                readable, _, _ = select.select([slow], [], [], 0)
                if readable and slow.recv(1, socket.MSG_PEEK) == b"":
                    dropped = time.monotonic() - start
                    break
            except OSError:
                dropped = time.monotonic() - start
                break
            time.sleep(1.0)
            if time.monotonic() - start > 30:
                break
        slow.close()
        print(f"{name:18s} (keep-alive timeout {keep_alive} s) import {float(imported):.2f} s, RSS idle "
              f"{idle_rss:.0f} MB, with 200 idle connections {held_rss:.0f} MB (a new client answered: "
              f"{ok_among_idle}), 2000 hellos from 8 threads "
              f"{rate:.0f}/s, 4 MiB stream {stream_s * 1000:.0f} ms, a 1 byte/s header client "
              + (f"dropped after {dropped:.0f} s" if dropped is not None else "still open after 30 s"), flush=True)
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    for keep_alive in (5, 3630):
        measure("aiohttp", AIOHTTP, keep_alive)
        measure("uvicorn+starlette", UVICORN, keep_alive)
