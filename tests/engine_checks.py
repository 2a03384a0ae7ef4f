"""Assertions shared by the engine tests, derived from the tables in ``restiming._fields``.

The legal order of a fetch's stamps is data (``PHASE_ORDER``, ``PARTIAL_ORDER``); the
opaque shape of a failed Timing-Allow-Origin check or a network error is data too
(``OPAQUE_ZEROED_STAMPS``). These helpers check entries against those tables so every
engine test asserts the same contract (SPEC.md §3, "Semantics decided here").
"""

from __future__ import annotations

import socket

import pytest

import restiming
from restiming._fields import OPAQUE_ZEROED_STAMPS, PARTIAL_ORDER, PHASE_ORDER, TRANSFER_SIZE_OVERHEAD

__all__ = [
    "CLIENT_TIMEOUT", "make_client", "assert_order", "assert_fresh", "assert_reused",
    "assert_exposed", "assert_opaque", "expect_error", "assert_usable", "StaticResolver",
    "TRANSFER_SIZE_OVERHEAD", "quick", "routes",
]

#: Every client a test makes gives up within this many seconds, whatever goes wrong.
CLIENT_TIMEOUT = 5.0


def quick(**overrides) -> restiming.Timeout:
    """Short per-fetch deadlines; the client's own (5 s) stay for the usability check."""
    values = {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0, "total": 4.0}
    values.update(overrides)
    return restiming.Timeout(**values)


def routes(**extra) -> dict:
    """A ScriptedServer route table: ``/ok`` answers 200 "fine", ``/NAME`` runs ``extra[NAME]``."""
    from tests.peers.scripted import Send, response

    table = {"/ok": [Send(response(200, body=b"fine"))]}
    table.update({"/" + name: actions for name, actions in extra.items()})
    return table


def make_client(perf: restiming.Performance, **kwargs) -> restiming.Client:
    kwargs.setdefault("timeout", CLIENT_TIMEOUT)
    return restiming.Client(perf, **kwargs)


def assert_order(e) -> None:
    """Non-zero stamps follow PHASE_ORDER and PARTIAL_ORDER; responseStart and duration
    are consistent with the stamps they derive from."""
    present = [(p, getattr(e, p)) for p in PHASE_ORDER if getattr(e, p)]
    for (a, x), (b, y) in zip(present, present[1:]):
        assert x <= y, f"{a}={x!r} comes after {b}={y!r} in {e.to_dict()!r}"
    for a, b in PARTIAL_ORDER:
        x, y = getattr(e, a), getattr(e, b)
        if x and y:
            assert x <= y, f"{a}={x!r} comes after {b}={y!r} in {e.to_dict()!r}"
    expected_start = e.first_interim_response_start or e.final_response_headers_start
    assert e.response_start == expected_start
    if e.response_start:
        assert e.request_start <= e.response_start <= e.response_end
    assert e.start_time > 0 and e.response_end >= e.start_time
    assert e.duration == pytest.approx(e.response_end - e.start_time, abs=1e-6)
    assert e.entry_type == "resource" and e.worker_start == 0
    assert e.render_blocking_status == "non-blocking"


def assert_fresh(e, *, tls: bool, redirected: bool = False) -> None:
    """A response on a new connection: every phase stamped, in order."""
    assert_order(e)
    for phase in ("fetch_start", "domain_lookup_start", "domain_lookup_end", "connect_start",
                  "connect_end", "request_start", "request_end", "response_start", "response_end"):
        assert getattr(e, phase) > 0, f"{phase} not stamped: {e.to_dict()!r}"
    if not redirected:
        assert e.fetch_start == e.start_time
        assert e.redirect_start == e.redirect_end == 0
    assert e.connection_reused is False
    if tls:
        assert e.connect_start <= e.secure_connection_start <= e.connect_end
        assert e.secure_connection_start > 0
        assert e.tls_version.startswith("TLSv1")
    else:
        assert e.secure_connection_start == 0
        assert e.tls_version == ""


def assert_reused(e, *, tls: bool) -> None:
    """SPEC §3: on a reused connection DNS and connect stamps all equal fetchStart."""
    assert_order(e)
    f = e.fetch_start
    assert e.domain_lookup_start == e.domain_lookup_end == e.connect_start == e.connect_end == f
    assert e.secure_connection_start == (f if tls else 0)
    assert e.connection_reused is True
    assert e.request_start >= f and e.response_start > 0


def assert_exposed(e) -> None:
    assert_order(e)
    assert e.request_start > 0 and e.response_start > 0 and e.domain_lookup_start > 0
    assert e.next_hop_protocol == "http/1.1"
    assert e.transfer_size == e.encoded_body_size + TRANSFER_SIZE_OVERHEAD


def assert_opaque(e, *, error: str | None = None, status: int | None = None) -> None:
    """The shape of a failed TAO check (``error=None``) or a network error."""
    for phase in OPAQUE_ZEROED_STAMPS:
        assert getattr(e, phase) == 0, f"{phase} exposed in an opaque entry: {e.to_dict()!r}"
    assert e.response_start == 0
    assert e.transfer_size == e.encoded_body_size == e.decoded_body_size == 0
    assert e.next_hop_protocol == ""
    assert e.server_timing == ()
    assert e.start_time > 0 and e.fetch_start == e.start_time
    assert e.response_end >= e.start_time > 0
    assert e.duration == pytest.approx(e.response_end - e.start_time, abs=1e-6)
    assert e.error == error
    if error is not None:
        assert e.response_status == 0
        assert e.error_message
    if status is not None:
        assert e.response_status == status


async def expect_error(client, perf, url: str, exc_type, kind: str, **kwargs):
    """Fetch ``url`` expecting ``exc_type``; check the one opaque entry it recorded."""
    before = len(perf.get_entries())
    with pytest.raises(exc_type) as info:
        await client.fetch(url, **kwargs)
    exc = info.value
    assert isinstance(exc, restiming.FetchError)
    assert exc.kind == kind
    entries = perf.get_entries()
    assert len(entries) == before + 1, "a network error records exactly one entry"
    entry = exc.entry
    assert entry is not None and entry in entries
    assert entry.name == url and exc.url == url
    assert_opaque(entry, error=kind)
    return exc


async def assert_usable(client, url: str, body: bytes | None = None):
    """The same client still fetches successfully (SPEC §4: errors leave it usable)."""
    response = await client.fetch(url)
    assert response.status == 200
    assert response.entry.error is None
    if body is not None:
        assert response.body == body
    return response


class StaticResolver:
    """A custom resolver answering fixed addresses; counts and records its calls."""

    def __init__(self, addresses=None, error: BaseException | None = None) -> None:
        self.addresses = addresses
        self.error = error
        self.calls: list[tuple[str, int]] = []

    @classmethod
    def loopback(cls, *ports: int) -> "StaticResolver":
        return cls([(socket.AF_INET, ("127.0.0.1", port)) for port in ports])

    async def resolve(self, host: str, port: int):
        self.calls.append((host, port))
        if self.error is not None:
            raise self.error
        return self.addresses
