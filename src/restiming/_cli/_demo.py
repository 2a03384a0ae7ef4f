"""``restiming demo``: a built-in local HTTP server and a short bench against it.

The server runs in its own process (so it does not share a GIL with the bench) on
127.0.0.1 and serves a realistic mix: a small JSON API with Server-Timing and a
little delay jitter, a large body, a gzip-encoded page, and a redirect. The bench
runs with 2 workers for a few seconds, prints the table and writes the HTML report.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing
import os
import random
import signal
import tempfile
import time
from typing import TextIO

from ._common import Parser

__all__ = ["run_demo_cli", "DemoServer", "DEMO_PATHS"]

DEMO_PATHS = ("/api/items", "/static/large.bin", "/page.html", "/old-page", "/api/items?page=2")
_PAGE = ("<!doctype html><title>demo</title>" + "<p>restiming demo paragraph, compressible text. " * 2000).encode()
_PAGE_GZ = gzip.compress(_PAGE, 6)
_LARGE = os.urandom(256 * 1024)
_HEAD_END = b"\r\n\r\n"


def _response(status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _route(path: str, accept_gzip: bool, rng: random.Random) -> bytes:
    if path.startswith("/api/items"):
        delay = rng.uniform(0.0005, 0.004)  # a little server-side jitter
        await asyncio.sleep(delay)
        body = json.dumps({"items": list(range(20)), "path": path}).encode()
        st = f'db;dur={delay * 1000 * 0.7:.2f};desc="query", app;dur={delay * 1000:.2f}, cache;desc=miss'
        return _response(200, "OK", [("Content-Type", "application/json"), ("Server-Timing", st),
                                     ("Timing-Allow-Origin", "*")], body)
    if path == "/static/large.bin":
        return _response(200, "OK", [("Content-Type", "application/octet-stream"),
                                     ("Server-Timing", "cdn;desc=hit")], _LARGE)
    if path == "/page.html":
        if accept_gzip:
            return _response(200, "OK", [("Content-Type", "text/html; charset=utf-8"),
                                         ("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")], _PAGE_GZ)
        return _response(200, "OK", [("Content-Type", "text/html; charset=utf-8")], _PAGE)
    if path == "/old-page":
        return _response(301, "Moved Permanently", [("Location", "/page.html")], b"")
    return _response(404, "Not Found", [("Content-Type", "text/plain")], b"not found\n")


class _DemoProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.transport = None
        self.rng = random.Random()
        self.busy = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        try:
            while _HEAD_END in self.buf:
                head, _, rest = self.buf.partition(_HEAD_END)
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                length = int(headers.get("content-length") or 0)
                if len(rest) < length:
                    return
                self.buf = rest[length:]
                path = parts[1] if len(parts) > 1 else "/"
                data = await _route(path, "gzip" in headers.get("accept-encoding", ""), self.rng)
                if self.transport.is_closing():
                    return
                self.transport.write(data)
                if headers.get("connection", "").lower() == "close":
                    self.transport.close()
                    return
        finally:
            self.busy = False


def _serve_forever(port_queue, stop_event) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_DemoProtocol, "127.0.0.1", 0, backlog=1024)
        port_queue.put(server.sockets[0].getsockname()[1])
        while not stop_event.is_set():
            await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()

    try:
        import uvloop
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())


class DemoServer:
    """The demo server in a child process; a context manager."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(target=_serve_forever, args=(self._queue, self._stop), daemon=True,
                                 name="restiming-demo-server")
        self.port = 0

    def start(self) -> "DemoServer":
        self._proc.start()
        self.port = self._queue.get(timeout=60)
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self._stop.set()
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)

    def __enter__(self) -> "DemoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_demo_cli(argv: list[str], out: TextIO, err: TextIO) -> int:
    from ._bench import BenchConfig, format_summary, run_bench, write_reports

    p = Parser(prog="restiming demo", description="Bench a built-in local server and write an HTML report.")
    p.add_argument("-z", "--duration", type=float, default=5.0, help="seconds of load (default 5)")
    p.add_argument("-c", "--concurrency", type=int, default=16, help="concurrent requests (default 16)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--html", metavar="FILE", help="report path (default: a file in the temp directory)")
    args = p.parse_args(argv)
    html = args.html or os.path.join(tempfile.gettempdir(), f"restiming-demo-{int(time.time())}.html")
    with DemoServer() as server:
        urls = [server.url(path) for path in DEMO_PATHS]
        err.write(f"demo server on http://127.0.0.1:{server.port} serving {', '.join(DEMO_PATHS)}\n")
        err.write(f"running a {args.duration:g} s closed-loop bench, {args.concurrency} concurrent, "
                  f"{args.workers} workers...\n")
        cfg = BenchConfig(urls, concurrency=args.concurrency, duration=args.duration, workers=args.workers,
                          client={"timeout": 10.0})
        ns = argparse.Namespace(out=None, csv=None, har=None, summary=None, html=html, hlog=None,
                                argv=["--workers", str(args.workers), "-c", str(args.concurrency),
                                      "-z", f"{args.duration:g}"] + urls)
        tty = hasattr(err, "isatty") and err.isatty()
        summary, code, agg = run_bench(cfg, err, ns, progress=tty)
    out.write(format_summary(summary))
    write_reports(summary, agg, ns, err)
    return code
