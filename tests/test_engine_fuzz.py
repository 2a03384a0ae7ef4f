"""A bounded mutational fuzz of the engine's response side (SPEC.md §4, issue 8).

Strategy: a small corpus of well-formed responses (Content-Length, chunked, gzip,
deflate, interim + Server-Timing, redirect, 204, 404, close-delimited, HTTP/1.0) is
mutated with deterministic seeds (bit flips, truncations, duplicated or removed CRLFs,
huge, negative, garbage or conflicting Content-Length, chunk-size garbage, injected
header lines, inserted bytes) and delivered by the scripted server in one to three
writes, ending in a close, a reset mid-response, or nothing at all (the client must
time out). Each case runs through ``fetch()`` or ``stream()`` on asyncio and uvloop,
16 at a time, and may only succeed or raise a ``RestimingError``; every fetch records
exactly one entry (exposed and in order for a response, opaque with its error kind
for a network error); no case outlives its total deadline by more than a margin; the
``arun`` fixture fails the test on a leaked fd, task or loop exception.

``RESTIMING_FUZZ_CASES`` sets the cases per (loop, mode) run (default 1,000: 4,000 fetches
in all, under 10 s on 2 cores); a failure names the seed that reproduces it, and
``make_case(seed)`` rebuilds that case.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import socket

import pytest

import restiming
from tests.engine_checks import assert_opaque, assert_order
from tests.peers.scripted import Close, Reset, Send, Sleep, interim, response

CASES = int(os.environ.get("RESTIMING_FUZZ_CASES", "1000"))
PARALLEL = 16
TIMEOUT = restiming.Timeout(connect=2.0, read=0.4, write=2.0, pool=5.0, total=1.5)
#: How long past its total deadline a case may run before it counts as a hang.
HANG_MARGIN = 3.0

_BODY = b"The quick brown fox jumps over the lazy dog.\n" * 12


def _corpus() -> list[tuple[str, bytes, bool]]:
    """(name, well-formed response, whether the server must close to end the body)."""
    st = [("server-timing", 'db;dur=12.5;desc="query", cache;dur=0.3'), ("timing-allow-origin", "*")]
    return [
        ("length", response(200, [("content-type", "text/plain")], _BODY), False),
        ("chunked", response(200, [("content-type", "application/json")], _BODY, chunked=True,
                             chunk_size=97), False),
        ("gzip", response(200, [("content-type", "text/html; charset=utf-8")], _BODY, gzip=True), False),
        ("deflate-chunked", response(200, [], _BODY, deflate=True, chunked=True, chunk_size=31), False),
        ("interim", interim(103, [("link", "</a.css>; rel=preload")]) + response(200, st, _BODY), False),
        ("redirect", response(302, [("location", "/ok")], b"moved"), False),
        ("no-content", response(204), False),
        ("not-found", response(404, [("content-type", "text/html")], b"<p>nope</p>"), False),
        ("close-delimited", response(200, [], _BODY, content_length=False), True),
        ("http10", response(200, [], _BODY, http_version="1.0"), True),
    ]


CORPUS = _corpus()

_GARBAGE_LENGTHS = [b"99999999999999999999999", b"-1", b"-0", b"abc", b"1e3", b" 5", b"5, 6", b"0x10",
                    b"18446744073709551616", b"", b"4\x00", b"\xff"]
_GARBAGE_CHUNKS = [b"zz", b"-1", b"ffffffffffffffffffff", b"1;ext=\x00", b"", b" 10", b"0x10", b"7fffffffffffffff",
                   b"1\r\nx\r\n" * 3 + b"q"]


def _flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data))]


def _crlf_positions(data: bytes) -> list[int]:
    return [m.start() for m in re.finditer(rb"\r\n", data)]


def _dup_crlf(rng: random.Random, data: bytes) -> bytes:
    spots = _crlf_positions(data)
    if not spots:
        return data + b"\r\n"
    i = rng.choice(spots)
    return data[:i] + b"\r\n" * rng.randint(2, 3) + data[i + 2:]


def _drop_crlf(rng: random.Random, data: bytes) -> bytes:
    spots = _crlf_positions(data)
    if not spots:
        return data
    i = rng.choice(spots)
    return data[:i] + data[i + 2:]


def _content_length(rng: random.Random, data: bytes) -> bytes:
    value = rng.choice(_GARBAGE_LENGTHS + [str(rng.randint(0, 4000)).encode()])
    head, sep, body = data.partition(b"\r\n\r\n")
    if re.search(rb"(?im)^content-length:", head) and rng.random() < 0.6:
        head = re.sub(rb"(?im)^(content-length:)[^\r\n]*", lambda m: m.group(1) + b" " + value, head, count=1)
    else:  # a second (conflicting) or a first Content-Length, wherever the head allows
        lines = head.split(b"\r\n")
        lines.insert(rng.randint(1, len(lines)), b"Content-Length: " + value)
        head = b"\r\n".join(lines)
    return head + sep + body


def _chunk_size(rng: random.Random, data: bytes) -> bytes:
    head, sep, body = data.partition(b"\r\n\r\n")
    if b"chunked" not in head.lower():
        head = re.sub(rb"(?im)^content-length:[^\r\n]*\r\n?", b"", head) + b"\r\nTransfer-Encoding: chunked"
        body = b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    lines = body.split(b"\r\n")
    sizes = [i for i, line in enumerate(lines) if re.fullmatch(rb"[0-9a-f]+", line)]
    i = rng.choice(sizes) if sizes else 0
    lines[i] = rng.choice(_GARBAGE_CHUNKS)
    return head + sep + b"\r\n".join(lines)


def _inject_header(rng: random.Random, data: bytes) -> bytes:
    head, sep, body = data.partition(b"\r\n\r\n")
    alphabet = b"abcXYZ-_:; \t\"=,\x00\x01\x7f\x80\xff\r\n0123456789"
    name = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
    value = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
    known = [b"Transfer-Encoding", b"Content-Encoding", b"Connection", b"Location", b"Server-Timing",
             b"Content-Type", b"Timing-Allow-Origin"]
    if rng.random() < 0.5:
        name = rng.choice(known)
    if rng.random() < 0.2:
        value = b"x" * rng.choice([8192, 70_000])
    lines = head.split(b"\r\n")
    lines.insert(rng.randint(0, len(lines)), name + b":" + value)
    return b"\r\n".join(lines) + sep + body


def _insert_bytes(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return data[:i] + junk + data[i:]


MUTATORS = [_flip, _truncate, _dup_crlf, _drop_crlf, _content_length, _chunk_size, _inject_header,
            _insert_bytes]


def make_case(seed: str) -> tuple[str, list]:
    """(description, the server's actions) for one seed: pure, so a seed reproduces it."""
    rng = random.Random(seed)
    name, data, close_ends_body = rng.choice(CORPUS)
    used = []
    for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3])):
        mutate = rng.choice(MUTATORS)
        used.append(mutate.__name__.lstrip("_"))
        data = mutate(rng, data) or data
    cuts = sorted(rng.sample(range(1, len(data)), min(rng.randint(0, 2), len(data) - 1))) if len(data) > 1 else []
    pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    actions: list = []
    for piece in pieces:
        actions.append(Send(piece))
        if rng.random() < 0.3:
            actions.append(Sleep(rng.choice([0.0, 0.005, 0.02])))
    ending = rng.random()
    if ending < 0.15:  # a reset somewhere in the middle
        actions.insert(rng.randint(0, len(actions)), Reset())
        end = "reset"
    elif ending < 0.25 and not close_ends_body:  # nothing: a complete response keeps the connection
        end = "open"
    else:
        actions.append(Close())
        end = "close"
    return f"{seed}: {name} +{'+'.join(used) or 'none'} in {len(pieces)} write(s), then {end}", actions


class LoopbackResolver:
    """Resolves 127.0.0.1 only: a mutated Location never sends traffic off the machine."""

    async def resolve(self, host: str, port: int):
        if host != "127.0.0.1":
            raise LookupError(f"the fuzz test resolves 127.0.0.1 only, not {host!r}")
        return [(socket.AF_INET, ("127.0.0.1", port))]


# -- what the fuzz found -----------------------------------------------------------------

@pytest.mark.parametrize("mode", ["fetch", "stream"])
def test_oversized_head_then_close_leaves_no_loop_exception(arun, scripted_server, mode):
    # Seed "asyncio/stream/88": a head over max_header_bytes fails the fetch with
    # HeaderTooLarge; when the server then closes, connection_lost parsed the buffered
    # bytes again and appended to a body buffer that was never set up (AttributeError
    # in the loop's callback, on asyncio and uvloop, fetch() and stream()).
    server = scripted_server({"/big": [Send(response(200, [("x-big", "x" * 70_000)], b"body" * 10)),
                                       Sleep(0.02), Close()],
                              "/ok": [Send(response(200, body=b"fine"))]})

    async def main():
        perf = restiming.Performance()
        async with restiming.Client(perf, timeout=5.0) as client:
            status, body, entry, exc = await _one(client, server.url("/big"), mode)
            assert isinstance(exc, restiming.HeaderTooLarge)
            assert_opaque(entry, error="limit")
            await asyncio.sleep(0.1)  # the close arrives
            assert (await client.fetch(server.url("/ok"))).body == b"fine"

    arun(main)


def test_cases_are_deterministic_and_mutated():
    first = [make_case(f"asyncio/fetch/{i}") for i in range(200)]
    again = [make_case(f"asyncio/fetch/{i}") for i in range(200)]
    assert first == again
    mutated = sum("+none" not in desc for desc, _ in first)
    assert mutated > 150
    for kind in ("flip", "truncate", "dup_crlf", "drop_crlf", "content_length", "chunk_size",
                 "inject_header", "insert_bytes", "reset", "open"):
        assert any(kind in desc for desc, _ in first), kind


async def _one(client, url: str, mode: str):
    """(response status or None, body or None, entry, exception or None)."""
    response = None
    try:
        if mode == "fetch":
            response = await client.fetch(url, timeout=TIMEOUT)
            return response.status, response.body, response.entry, None
        async with client.stream(url, timeout=TIMEOUT) as response:
            body = await response.aread()
        return response.status, body, response.entry, None
    except restiming.RestimingError as exc:
        entry = getattr(exc, "entry", None)
        if entry is None and response is not None:
            entry = response.entry
        return None, None, entry, exc


@pytest.mark.parametrize("mode", ["fetch", "stream"])
def test_mutated_responses(arun, scripted_server, mode):
    seeds = [f"{arun.kind}/{mode}/{i}" for i in range(CASES)]
    cases = {f"/c/{i}": make_case(seed) for i, seed in enumerate(seeds)}
    server = scripted_server({"/ok": [Send(response(200, body=b"fine"))],
                              **{path: actions for path, (_, actions) in cases.items()}})
    failures: list[str] = []
    outcomes: dict[str, int] = {}

    async def main():
        perf = restiming.Performance(buffer_size=CASES * 2 + 10)
        sem = asyncio.Semaphore(PARALLEL)
        loop = asyncio.get_running_loop()

        async def run(path: str) -> None:
            desc, _ = cases[path]
            url = server.url(path)
            async with sem:
                started = loop.time()
                try:
                    status, body, entry, exc = await asyncio.wait_for(
                        _one(client, url, mode), TIMEOUT.total + HANG_MARGIN)
                except BaseException as other:  # an untyped exception, or the hang guard
                    failures.append(f"{desc}: {type(other).__name__}: {other!r}"
                                    f" after {loop.time() - started:.2f} s")
                    return
            try:
                if exc is None:
                    assert entry is not None and entry.name == url
                    assert entry.error is None and entry.response_status == status
                    assert_order(entry)
                    assert entry.decoded_body_size == len(body)
                    outcomes[str(status)] = outcomes.get(str(status), 0) + 1
                else:
                    kind = getattr(exc, "kind", None) or type(exc).__name__
                    outcomes[kind] = outcomes.get(kind, 0) + 1
                    assert isinstance(exc, restiming.FetchError), f"not a network error: {exc!r}"
                    assert entry is not None and entry.name == url
                    assert_opaque(entry, error=exc.kind)
            except AssertionError as failed:
                failures.append(f"{desc}: {failed}")

        async with restiming.Client(perf, timeout=5.0, resolver=LoopbackResolver(), max_redirects=3) as client:
            await asyncio.gather(*(run(path) for path in cases))
        names = [e.name for e in perf.get_entries()]
        extra = {n for n in names if names.count(n) != 1}
        if len(names) != len(cases) or extra:
            failures.append(f"{len(names)} entries for {len(cases)} fetches; recorded twice: {sorted(extra)[:5]}")

    arun(main)
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:20])
    # The corpus reaches both sides: responses and several kinds of network error.
    assert sum(v for k, v in outcomes.items() if k.isdigit()) > CASES // 10, outcomes
    assert {"protocol", "timeout"} <= set(outcomes), outcomes
