"""``restiming URL [URL ...]``: fetch each URL and print its Resource Timing waterfall
(``-i`` adds the response headers, ``--json`` prints the entries, ``--har`` writes
them as HAR 1.2 with the request headers that were really sent). Failures go to
stderr with the phase they happened in; the exit code is 1 when any fetch failed.
"""

from __future__ import annotations

import json
from typing import TextIO

import restiming
from restiming._exceptions import FetchError, InvalidHeader, InvalidRequest, InvalidURL
from restiming._fields import EXTENSIONS

from ._common import EXIT_FAILED, EXIT_OK, Parser, add_request_options, client_options, request_headers, \
    sent_headers
from ._waterfall import render_error, render_fetch

__all__ = ["fetch_parser", "run_fetch_cli", "entry_json"]


def fetch_parser() -> Parser:
    p = Parser(prog="restiming", description=(
        "Fetch URLs and print the Resource Timing waterfall of each. "
        "Subcommands: 'restiming bench URL...' (load generator), 'restiming compare BASE.json NEW.json', "
        "'restiming demo'."))
    p.add_argument("urls", nargs="+", metavar="URL")
    add_request_options(p)
    p.add_argument("-i", "--include", action="store_true", help="show the response headers")
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


def _response_head(response) -> str:
    lines = [f"  {response.http_version or 'HTTP/1.1'} {response.status} {response.reason}".rstrip()]
    lines += [f"  {name}: {value}" for name, value in response.headers.items()]
    return "\n".join(lines) + "\n"


async def _fetch_all(args, out: TextIO, err: TextIO) -> int:
    perf = restiming.Performance(buffer_size=max(250, len(args.urls)))
    method, headers, body = request_headers(args)
    status = EXIT_OK
    records = []
    async with restiming.Client(perf, **client_options(args)) as client:
        for url in args.urls:
            try:
                response = await client.fetch(url, method=method, headers=headers, body=body)
            except (InvalidURL, InvalidHeader, InvalidRequest) as exc:
                err.write(f"{method} {url}\n  error [invalid] {exc}\n\n")
                status = EXIT_FAILED
                continue
            except FetchError as exc:
                err.write(render_error(url, exc, method=method) + "\n")
                err.flush()
                if exc.entry is not None:
                    records.append((exc.entry, {"method": method,
                                                "request_headers": sent_headers(url, headers, body)}))
                status = EXIT_FAILED
                continue
            records.append((response.entry, {
                "method": method, "status_text": response.reason, "http_version": response.http_version,
                "response_headers": response.headers.items(),
                "request_headers": sent_headers(url, headers, body),
                "request_body_size": len(body) if body is not None else None}))
            if not args.json:
                text = render_fetch(response.entry, method=method, status_text=response.reason,
                                    http_version=response.http_version, history=response.history)
                if args.include:
                    first, _, rest = text.partition("\n")
                    text = first + "\n" + _response_head(response) + rest
                out.write(text + "\n")
                out.flush()
    if args.json:
        out.write(json.dumps([entry_json(e) for e, _ in records], indent=2) + "\n")
    if args.har:
        from ._har import har_document

        doc = har_document([dict(e.to_dict(), time_origin=perf.time_origin, **extra) for e, extra in records])
        with open(args.har, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        err.write(f"HAR written to {args.har}\n")
    return status


def run_fetch_cli(argv: list[str], out: TextIO, err: TextIO) -> int:
    from ._common import run_loop

    args = fetch_parser().parse_args(argv)
    return run_loop(_fetch_all(args, out, err))
