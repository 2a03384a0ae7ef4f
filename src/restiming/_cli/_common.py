"""What every ``restiming`` command shares: exit codes, the argument parser that
never calls ``sys.exit``, request options, the default request headers and the loop.

The commands (``_fetch``, ``_bench``, ``_demo``, ``_compare``) import this module and
nothing of each other's, except that ``demo`` runs the bench; ``_main`` dispatches.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re

import restiming

__all__ = [
    "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERNAL", "EXIT_THRESHOLDS", "EXIT_INTERRUPTED",
    "UsageError", "Help", "Parser", "parse_headers", "read_body", "add_request_options",
    "client_options", "request_headers", "sent_headers", "user_agent", "run_loop",
]

#: Exit codes. 0: success (every threshold passed); 1: a fetch failed, no request of
#: a bench succeeded, or entries went missing; 2: usage errors only; 70: an internal
#: error (with a traceback; EX_SOFTWARE); 99: a threshold failed (k6's code);
#: 130: interrupted (Ctrl-C).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_THRESHOLDS, EXIT_INTERRUPTED = 0, 1, 2, 70, 99, 130


class UsageError(Exception):
    """A mistake on the command line: exit 2 with the message, no traceback."""


class Help(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # no sys.exit from inside main()
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None):
        if message:
            raise UsageError(message)
        raise Help(status)


def parse_headers(values: list[str]) -> list[tuple[str, str]]:
    headers = []
    for item in values or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"header {item!r} must look like 'Name: value'")
        headers.append((name.strip(), value.strip()))
    return headers


def read_body(value: str | None) -> bytes | None:
    if value is None:
        return None
    if value.startswith("@"):
        try:
            with open(value[1:], "rb") as f:
                return f.read()
        except OSError as exc:
            raise UsageError(f"cannot read body file {value[1:]!r}: {exc.strerror}") from exc
    return value.encode("utf-8")


def add_request_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-X", "--method", default=None, help="request method (default GET, POST with -d)")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="request header, repeatable")
    p.add_argument("-d", "--data", dest="data", metavar="DATA",
                   help="request body, as curl's -d (form content type unless -H sets one); @FILE reads a file")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for every deadline (default 30)")
    p.add_argument("-k", "--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--cacert", metavar="FILE", help="CA bundle to verify TLS certificates with")
    p.add_argument("--origin", help="document origin for the Timing-Allow-Origin check (scheme://host[:port])")
    p.add_argument("--max-redirects", type=int, default=20, help="redirects to follow (default 20)")
    p.add_argument("--no-redirects", action="store_true", help="do not follow redirects")
    p.add_argument("--http2", action="store_true", help="offer HTTP/2 (ALPN h2, then http/1.1); needs restiming[http2]")
    p.add_argument("-x", "--proxy", metavar="URL", help="HTTP proxy, http://[user:pass@]host:port")


def client_options(args) -> dict:
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    if args.max_redirects < 0:
        raise UsageError("--max-redirects must be >= 0")
    verify: object = True
    if args.insecure:
        verify = False
    elif args.cacert:
        verify = args.cacert
    options = {"origin": args.origin, "timeout": args.timeout, "verify": verify,
               "follow_redirects": not args.no_redirects, "max_redirects": args.max_redirects,
               "http2": args.http2, "proxy": args.proxy}
    # A client built and dropped here turns a bad --origin or --cacert into a usage
    # error before anything runs (bench workers would otherwise each fail alone).
    try:
        with restiming.Performance() as perf:
            restiming.Client(perf, **options)
    except (ValueError, TypeError, OSError) as exc:
        raise UsageError(f"restiming: {exc}") from None
    return options


def user_agent() -> str:
    return f"restiming/{restiming.__version__}"


def _accept_encoding() -> str:
    try:  # what the engine can decode (br and zstd only when installed)
        from restiming._engine._decoding import supported_encodings

        return ", ".join(supported_encodings())
    except Exception:  # pragma: no cover - engine internals moved
        return "gzip, deflate"


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def request_headers(args) -> tuple[str, list[tuple[str, str]], bytes | None]:
    """(method, headers, body) as the CLI sends them: the user's headers plus the
    defaults a client sends (User-Agent with the version, Accept, Accept-Encoding) and,
    for a body without a Content-Type, curl's ``application/x-www-form-urlencoded``.
    Listing them here (not leaving them to the engine) is what lets the HAR show the
    request headers that were really sent; Host and Content-Length are the engine's."""
    headers = parse_headers(args.header)
    body = read_body(args.data)
    if args.method is not None and not _TOKEN.fullmatch(args.method):
        raise UsageError(f"restiming: -X/--method must be an HTTP method token, got {args.method!r}")
    method = (args.method or ("POST" if body is not None else "GET")).upper()
    names = {n.lower() for n, _ in headers}
    if "user-agent" not in names:
        headers.append(("User-Agent", user_agent()))
    if "accept" not in names:
        headers.append(("Accept", "*/*"))
    if "accept-encoding" not in names:
        headers.append(("Accept-Encoding", _accept_encoding()))
    if body is not None and "content-type" not in names:
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    return method, headers, body


def sent_headers(url: str, headers: list[tuple[str, str]], body: bytes | None) -> list[tuple[str, str]]:
    """The full header list on the wire: Host first, as the engine writes it."""
    from restiming._url import parse_url

    out = [("Host", parse_url(url).authority)] + list(headers)
    if body is not None and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in headers):
        out.append(("Content-Length", str(len(body))))
    return out


def run_loop(coro):
    """Run ``coro`` on uvloop (``RESTIMING_LOOP=asyncio`` picks the stock loop)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it exists
        return asyncio.run(coro)
    if os.environ.get("RESTIMING_LOOP") == "asyncio":
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
