"""``restiming``: the command line.

``restiming URL [URL ...]`` fetches and prints a waterfall per URL;
``restiming bench URL ...`` is the load generator; ``restiming demo`` runs a bench
against a built-in local server. ``main(argv=None, stdout=None) -> int`` never calls
``sys.exit``, so tests run it in-process with an injected output stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import TextIO

import restiming
from restiming._exceptions import FetchError, InvalidHeader, InvalidURL, RestimingError
from restiming._fields import EXTENSIONS

from ._waterfall import render_error, render_fetch

__all__ = ["main", "parse_headers", "client_options"]

EXIT_OK, EXIT_FETCH_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # no sys.exit from inside main()
        raise _UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None):
        if message:
            raise _UsageError(message)
        raise _Help(status)


class _Help(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def parse_headers(values: list[str]) -> list[tuple[str, str]]:
    headers = []
    for item in values or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise _UsageError(f"header {item!r} must look like 'Name: value'")
        headers.append((name.strip(), value.strip()))
    return headers


def _read_body(value: str | None) -> bytes | None:
    if value is None:
        return None
    if value.startswith("@"):
        try:
            with open(value[1:], "rb") as f:
                return f.read()
        except OSError as exc:
            raise _UsageError(f"cannot read body file {value[1:]!r}: {exc.strerror}") from exc
    return value.encode("utf-8")


def add_request_options(p: argparse.ArgumentParser, data_flags=("-d", "--data")) -> None:
    p.add_argument("-X", "--method", default="GET", help="request method (default GET)")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="request header, repeatable")
    p.add_argument(*data_flags, dest="data", metavar="DATA", help="request body; @FILE reads a file")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for every deadline (default 30)")
    p.add_argument("-k", "--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--cacert", metavar="FILE", help="CA bundle to verify TLS certificates with")
    p.add_argument("--origin", help="document origin for the Timing-Allow-Origin check (scheme://host[:port])")
    p.add_argument("--max-redirects", type=int, default=20, help="redirects to follow (default 20)")
    p.add_argument("--no-redirects", action="store_true", help="do not follow redirects")
    p.add_argument("--http2", action="store_true", help="offer HTTP/2 (ALPN h2, then http/1.1); needs restiming[http2]")
    p.add_argument("-x", "--proxy", metavar="URL", help="HTTP proxy, http://[user:pass@]host:port")


def client_options(args) -> dict:
    verify: object = True
    if args.insecure:
        verify = False
    elif args.cacert:
        verify = args.cacert
    return {"origin": args.origin, "timeout": args.timeout, "verify": verify,
            "follow_redirects": not args.no_redirects, "max_redirects": args.max_redirects,
            "http2": args.http2, "proxy": args.proxy}


def _fetch_parser() -> _Parser:
    p = _Parser(prog="restiming", description=(
        "Fetch URLs and print the Resource Timing waterfall of each. "
        "Subcommands: 'restiming bench URL...' (load generator), 'restiming demo'."))
    p.add_argument("urls", nargs="+", metavar="URL")
    add_request_options(p)
    p.add_argument("--json", action="store_true", help="print the entries as JSON (to_json() plus extensions)")
    p.add_argument("--har", metavar="FILE", help="write the fetches as a HAR 1.2 file")
    p.add_argument("--version", action="version", version=f"restiming {restiming.__version__}")
    return p


def entry_json(entry) -> dict:
    """The spec's toJSON() plus the snake_case extensions."""
    data = entry.to_json()
    full = entry.to_dict()
    for name in EXTENSIONS:
        data[name] = full[name]
    return data


async def _fetch_all(args, out: TextIO) -> int:
    perf = restiming.Performance(buffer_size=max(250, len(args.urls)))
    headers = parse_headers(args.header)
    body = _read_body(args.data)
    status = EXIT_OK
    records = []
    async with restiming.Client(perf, **client_options(args)) as client:
        for url in args.urls:
            try:
                response = await client.fetch(url, method=args.method, headers=headers, body=body)
            except (InvalidURL, InvalidHeader) as exc:
                out.write(f"{args.method} {url}\n  error [invalid] {exc}\n\n")
                status = EXIT_FETCH_ERROR
                continue
            except FetchError as exc:
                if not args.json:
                    out.write(render_error(url, exc, method=args.method) + "\n")
                if exc.entry is not None:
                    records.append((exc.entry, {"method": args.method}))
                status = EXIT_FETCH_ERROR
                continue
            records.append((response.entry, {
                "method": args.method, "status_text": response.reason, "http_version": response.http_version,
                "response_headers": response.headers.items(),
                "request_headers": headers}))
            if not args.json:
                out.write(render_fetch(response.entry, method=args.method, status_text=response.reason,
                                       http_version=response.http_version, history=response.history) + "\n")
    if args.json:
        out.write(json.dumps([entry_json(e) for e, _ in records], indent=2) + "\n")
    if args.har:
        from ._har import har_document

        doc = har_document([dict(e.to_dict(), time_origin=perf.time_origin, **extra) for e, extra in records])
        with open(args.har, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        if not args.json:
            out.write(f"HAR written to {args.har}\n")
    return status


def main(argv: list[str] | None = None, stdout: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code."""
    out = stdout if stdout is not None else sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "bench":
            from ._bench import run_bench_cli

            return run_bench_cli(argv[1:], out)
        if argv and argv[0] == "demo":
            from ._demo import run_demo_cli

            return run_demo_cli(argv[1:], out)
        args = _fetch_parser().parse_args(argv)
        return _run(_fetch_all(args, out))
    except _Help as h:
        return h.status
    except _UsageError as exc:
        out.write(f"{exc}\n")
        return EXIT_USAGE
    except (ValueError, TypeError, RestimingError) as exc:
        out.write(f"restiming: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        out.write("interrupted\n")
        return EXIT_INTERRUPTED


def _run(coro) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it exists
        return asyncio.run(coro)
    if os.environ.get("RESTIMING_LOOP") == "asyncio":
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
