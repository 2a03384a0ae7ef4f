"""A property test of the caller-side validation (SPEC.md §2 "Errors", issue 8 finding 10).

Strategy: hypothesis draws every argument of ``Client.fetch`` (URL, method, headers,
body, initiator type, intended start, timeout) from mixes of valid values, near misses
(CR/LF, NUL, lone surrogates, conflicting framing headers, negative or non-finite
numbers) and wrong types. Each call either fetches from the local scripted server, or
fails as a network error with its one entry (a URL whose host is not the test server's
is refused by the resolver: nothing leaves the machine), or is the caller's mistake:
``InvalidURL`` / ``InvalidHeader`` / ``InvalidRequest`` (all ``ValueError``) or
``TypeError``, raised before any socket, recording nothing and leaving the warm pool
as it was. The client, its loop and the server live for the whole run, one per loop
kind, so every example meets a pool that holds an idle keep-alive connection.
"""

from __future__ import annotations

import asyncio
import builtins
import socket

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import restiming
from tests.engine_support import open_fds, uvloop, wait_fds
from tests.peers.scripted import Send, response

#: No fetch against the local server may take longer than this (seconds).
HANG = 2.5
CALLER_ERRORS = (restiming.InvalidURL, restiming.InvalidHeader, restiming.InvalidRequest, TypeError)


class OnlyTheServer:
    """Resolves the test server's own host and port; anything else is a DNS error."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(self, host: str, port: int):
        if (host, port) != ("127.0.0.1", self.port):
            raise LookupError(f"only 127.0.0.1:{self.port} resolves here, not {host!r}:{port}")
        return [(socket.AF_INET, ("127.0.0.1", port))]


_TRICKY_TEXT = ["", " ", "a\r\nb", "a\nb", "a\rb", "a\x00b", "\ud800", "caf\u00e9", "\x7f", "a b", "\t", "x" * 300]


def _urls(base: str):
    path = st.text(max_size=20) | st.sampled_from(_TRICKY_TEXT)
    return st.one_of(
        path.map(lambda p: base + p),
        st.builds(lambda p, f: f"{base}{p}#{f}", path, path),
        st.text(max_size=30),
        st.sampled_from(["http://", "https://", "ftp://127.0.0.1/", "http://[::1", "http://127.0.0.1:99999/",
                         "http://user:pw@127.0.0.1/", "http://a b/", "http://\ud800/", "//127.0.0.1/",
                         "http://127.0.0.1:0/", "http://%zz/", "http://xn--/", "HTTP://127.0.0.1/x"]),
        st.none(), st.integers(), st.binary(max_size=10),
    )


_methods = st.one_of(
    st.sampled_from(["GET", "get", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "X-CUSTOM"]),
    st.text(max_size=8), st.sampled_from(["GET ", "G ET", "GET\r\n", "GÉT", "\ud800", ""]),
    st.binary(max_size=5), st.none(), st.integers(),
)
_name = st.one_of(st.sampled_from(["X-Test", "Accept", "Content-Type", "Host", "Content-Length",
                                   "Transfer-Encoding", "Connection", "X\x00", "X Y", "", "Ü"]),
                  st.text(max_size=8), st.binary(max_size=8), st.integers())
_value = st.one_of(st.sampled_from(["1", "abc", "-1", "gzip", "chunked", "close", "a\r\nb", "a\x00", "\ud800",
                                    " padded ", "é", "5, 6"]),
                   st.text(max_size=12), st.binary(max_size=12), st.integers(), st.none())
_headers = st.one_of(
    st.none(),
    st.lists(st.tuples(_name, _value), max_size=4),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    st.sampled_from([
        [("Content-Length", "abc")], [("Content-Length", "1"), ("Content-Length", "2")],
        [("Host", "a"), ("Host", "b")], [("Transfer-Encoding", "gzip")], [("Content-Length", "-1")],
        [("Transfer-Encoding", "chunked"), ("Content-Length", "3")], [("X", "a\r\nInjected: 1")],
        [("Content-Length", "999")],
    ]),
    st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
)
_bodies = st.one_of(st.none(), st.binary(max_size=64), st.text(max_size=32), st.sampled_from(["\ud800"]),
                    st.integers(), st.lists(st.integers(), max_size=2), st.builds(bytearray, st.binary(max_size=8)))
_initiators = st.one_of(st.just("fetch"), st.sampled_from(["xmlhttprequest", "other", "", "\ud800", "a\x00"]),
                        st.text(max_size=8), st.none(), st.integers())
_intended = st.one_of(st.none(), st.integers(min_value=-10, max_value=2**70), st.booleans(),
                      st.floats(allow_nan=True), st.text(max_size=3))
_timeouts = st.one_of(
    st.none(), st.floats(min_value=1.0, max_value=2.0),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-3, max_value=5),
    st.sampled_from([restiming.Timeout(connect=1.0, read=1.0, write=1.0, pool=1.0, total=1.5)]),
    st.text(max_size=3), st.booleans(), st.lists(st.floats(), max_size=1),
)


_SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
_valid = {
    "method": st.sampled_from(["GET", "get", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "X-CUSTOM"]),
    "headers": st.one_of(st.none(), st.lists(st.tuples(st.sampled_from(["X-Test", "Accept", "X-Trace-Id"]),
                                                       st.text(alphabet=_SAFE, max_size=10)), max_size=3)),
    "body": st.one_of(st.none(), st.binary(max_size=64), st.text(alphabet=_SAFE, max_size=16)),
    "initiator_type": st.one_of(st.just("fetch"), st.text(alphabet=_SAFE, min_size=1, max_size=8)),
    "intended_start": st.one_of(st.none(), st.integers(min_value=0, max_value=2**62)),
    "timeout": st.one_of(st.none(), st.floats(min_value=1.0, max_value=2.0),
                         st.just(restiming.Timeout(connect=1.0, read=1.0, write=1.0, pool=1.0, total=1.5))),
}
_wild = {"method": _methods, "headers": _headers, "body": _bodies, "initiator_type": _initiators,
         "intended_start": _intended, "timeout": _timeouts}


_PLAIN = {"method": "GET", "headers": None, "body": None, "initiator_type": "fetch", "intended_start": None,
          "timeout": None}


@st.composite
def _calls(draw, base: str):
    """The arguments of one fetch: a few of them (usually one) drawn wild, the rest valid,
    so that every check is reached and not only the first one that runs."""
    wild = draw(st.sets(st.sampled_from(["url", *_valid]), min_size=0, max_size=2))
    kwargs = {name: draw(_wild[name] if name in wild else strategy) for name, strategy in _valid.items()}
    if "url" in wild:
        url = draw(_urls(base) | st.sampled_from(["http://example.invalid/", "http://127.0.0.1:1/"]))
    else:
        url = base + draw(st.text(alphabet=_SAFE + "/?=&", max_size=12))
    return url, kwargs


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_fetch_arguments_succeed_or_fail_as_a_caller_error_before_any_socket(scripted_server, kind):
    if kind == "uvloop" and uvloop is None:
        pytest.skip("uvloop is not installed")
    server = scripted_server(lambda request: [Send(response(200, body=b"fine"))])
    base = server.url("/")
    perf = restiming.Performance(buffer_size=100_000)
    factory = uvloop.new_event_loop if kind == "uvloop" else asyncio.new_event_loop
    seen: dict[str, int] = {}
    loop_errors: list = []
    with asyncio.Runner(loop_factory=factory) as runner:
        client = restiming.Client(perf, timeout=1.0, resolver=OnlyTheServer(server.port))
        runner.get_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
        runner.run(client.fetch(base))  # warm: the pool holds one idle connection
        fds_before = open_fds()

        @settings(max_examples=500, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(_calls(base))
        @example(("http://example.invalid/", dict(_PLAIN)))  # a network error, whatever was drawn
        @example((base, dict(_PLAIN)))
        def one(call):
            url, kwargs = call
            connections, entries, pooled = server.connections, len(perf.get_entries()), client.open_connections
            try:
                r = runner.run(asyncio.wait_for(client.fetch(url, **kwargs), HANG))
            except CALLER_ERRORS as exc:
                assert isinstance(exc, (ValueError, TypeError))
                assert server.connections == connections, f"{exc!r} came after a connection was opened"
                assert len(perf.get_entries()) == entries, f"{exc!r} recorded an entry"
                assert client.open_connections == pooled, f"{exc!r} changed the pool"
                seen[type(exc).__name__] = seen.get(type(exc).__name__, 0) + 1
            except restiming.FetchError as exc:
                # The server answers every well-formed request at once, so the only network
                # errors are a host the resolver refuses and a deadline shorter than a turn.
                t = kwargs["timeout"]
                tiny = type(t) in (int, float) and 0 < t < 0.5
                assert exc.kind == "dns" or (exc.kind == "timeout" and tiny), \
                    f"a request the client accepted failed against a server that answers at once: {exc!r}"
                assert len(perf.get_entries()) == entries + 1 and exc.entry is not None
                seen["network"] = seen.get("network", 0) + 1
            except builtins.TimeoutError as exc:  # the hang guard (restiming's own are FetchErrors)
                raise AssertionError(f"the fetch hung for {HANG} s") from exc
            else:
                assert r.entry is not None and r.entry.error is None
                assert len(perf.get_entries()) == entries + 1
                assert r.status == 200
                seen["ok"] = seen.get("ok", 0) + 1

        one()
        runner.run(client.close())
        assert not loop_errors, loop_errors
        assert wait_fds(fds_before) <= fds_before
    # The strategies reach every outcome.
    assert {"ok", "network", "InvalidURL", "InvalidHeader", "InvalidRequest", "TypeError"} <= set(seen), seen
