"""Deadlines, cancellation and close() (SPEC.md §2 ``timeout``, §4): each deadline raises
its own typed timeout at the right moment and records an opaque ``"timeout"`` entry; a
cancelled fetch lets ``CancelledError`` through and records ``"cancelled"``; close()
fails everything in flight at once. The same client keeps working afterwards.

A server whose script holds a socket open forever (``KeepOpen``, ``read_requests=False``)
is stopped inside the test, so the descriptor check of ``arun`` sees its sockets closed.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import restiming
from tests.engine_checks import assert_opaque, assert_usable, expect_error, make_client, quick, routes
from tests.peers.scripted import Drain, KeepOpen, Send, Sleep, Trickle, response

MiB = 1 << 20
HEAD_1000 = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"


# -- deadlines ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["never-answers", "stalls-mid-head", "stalls-mid-body"])
def test_read_timeout(arun, scripted_server, case):
    actions = {"never-answers": [Drain()],
               "stalls-mid-head": [Send(b"HTTP/1.1 200 OK\r\n"), Drain()],
               "stalls-mid-body": [Send(HEAD_1000 + b"x" * 10), Drain()]}[case]
    server = scripted_server(routes(slow=actions))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            started = time.monotonic()
            exc = await expect_error(client, perf, server.url("/slow"), restiming.ReadTimeout, "timeout",
                                     timeout=quick(read=0.3))
            elapsed = time.monotonic() - started
            assert exc.phase == "read" and isinstance(exc, TimeoutError)
            assert 0.25 <= elapsed < 1.5
            assert 250 <= exc.entry.duration < 1500
            await assert_usable(client, server.url("/ok"))

    arun(main)


@pytest.mark.parametrize("case", ["trickled-body", "trickled-head"])
def test_trickling_server_hits_total_timeout(arun, scripted_server, case):
    actions = {"trickled-body": [Send(b"HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\n"),
                                 Trickle(None, 0.03, chunk=10)],
               "trickled-head": [Send(b"HTTP/1.1 200 OK\r\nX-Slow: "), Trickle(None, 0.03, chunk=1)]}[case]
    server = scripted_server(routes(slow=actions))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            started = time.monotonic()
            exc = await expect_error(client, perf, server.url("/slow"), restiming.TotalTimeout, "timeout",
                                     timeout=quick(read=1.0, total=0.5))
            assert exc.phase == "total"
            assert 0.45 <= time.monotonic() - started < 1.5
            await assert_usable(client, server.url("/ok"))

    arun(main)


def test_a_float_timeout_sets_every_deadline(arun, scripted_server):
    server = scripted_server(routes(slow=[Drain()]))

    async def main():
        perf = restiming.Performance()
        async with restiming.Client(perf, timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(restiming.TimeoutError) as info:  # read and total expire together
                await client.fetch(server.url("/slow"))
            assert 0.25 <= time.monotonic() - started < 1.5
            assert_opaque(info.value.entry, error="timeout")
            await assert_usable(client, server.url("/ok"))
        async with restiming.Client(perf, timeout=None) as client:  # None disables them all
            await assert_usable(client, server.url("/ok"))

    arun(main)


def test_total_timeout_covers_redirects(arun, scripted_server):
    server = scripted_server(routes(a=[Sleep(0.2), Send(response(302, [("location", "/b")]))],
                                    b=[Sleep(0.2), Send(response(302, [("location", "/a")]))]))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            await expect_error(client, perf, server.url("/a"), restiming.TotalTimeout, "timeout",
                               timeout=quick(total=0.5))
            await assert_usable(client, server.url("/ok"))

    arun(main)


def test_connect_timeout_on_stalled_tls_handshake(arun, scripted_server, tls_ca):
    stalled = scripted_server(None, tls=tls_ca.server_context(), on_connect=lambda index: [KeepOpen()])
    good = scripted_server(routes())

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, verify=tls_ca.ca_file) as client:
            started = time.monotonic()
            exc = await expect_error(client, perf, stalled.url("/"), restiming.ConnectTimeout, "timeout",
                                     timeout=quick(connect=0.3))
            assert exc.phase == "connect"
            assert 0.25 <= time.monotonic() - started < 1.5
            assert client.open_connections == 0
            await assert_usable(client, good.url("/ok"))
        stalled.stop()

    arun(main)


def test_pool_timeout(arun, scripted_server):
    server = scripted_server(routes(hang=[Drain()]))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, limits=restiming.Limits(max_connections=1)) as client:
            hanging = asyncio.ensure_future(client.fetch(server.url("/hang")))
            while not server.requests:
                await asyncio.sleep(0.01)
            exc = await expect_error(client, perf, server.url("/ok"), restiming.PoolTimeout, "timeout",
                                     timeout=quick(pool=0.2))
            assert exc.phase == "pool"
            assert len(server.requests) == 1
            hanging.cancel()
            with pytest.raises(asyncio.CancelledError):
                await hanging
            await assert_usable(client, server.url("/ok"))
            assert client.open_connections == 1

    arun(main)


def test_write_timeout(arun, scripted_server):
    deaf = scripted_server(None, read_requests=False)
    good = scripted_server(routes())

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            started = time.monotonic()
            exc = await expect_error(client, perf, deaf.url("/upload"), restiming.WriteTimeout, "timeout",
                                     method="POST", body=bytes(50 * MiB), timeout=quick(write=0.5))
            assert exc.phase == "write"
            assert 0.45 <= time.monotonic() - started < 2.0
            assert exc.entry.bytes_sent > 0
            await assert_usable(client, good.url("/ok"))
        deaf.stop()

    arun(main)


# -- cancellation and close -----------------------------------------------------------------

@pytest.mark.parametrize("stage", ["waiting-for-response", "reading-body", "tls-handshake", "pool-wait"])
def test_cancellation_records_an_entry(arun, scripted_server, tls_ca, stage):
    server = scripted_server(routes(hang=[Drain()], body=[Send(HEAD_1000 + b"x"), Drain()]))
    stalled = scripted_server(None, tls=tls_ca.server_context(), on_connect=lambda index: [KeepOpen()])

    async def main():
        perf = restiming.Performance()
        limits = restiming.Limits(max_connections=1)
        async with make_client(perf, verify=tls_ca.ca_file, limits=limits) as client:
            blocker = None
            if stage == "pool-wait":
                blocker = asyncio.ensure_future(client.fetch(server.url("/hang")))
                while not server.requests:
                    await asyncio.sleep(0.01)
            url = {"waiting-for-response": server.url("/hang"), "reading-body": server.url("/body"),
                   "tls-handshake": stalled.url("/"), "pool-wait": server.url("/ok")}[stage]
            task = asyncio.ensure_future(client.fetch(url))
            await asyncio.sleep(0.15)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            cancelled = [e for e in perf.get_entries() if e.name == url]
            assert len(cancelled) == 1
            assert_opaque(cancelled[0], error="cancelled")
            assert cancelled[0].duration >= 100
            if blocker is not None:
                blocker.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await blocker
            assert client.open_connections == 0
            await assert_usable(client, server.url("/ok"))
        stalled.stop()

    arun(main)


@pytest.mark.parametrize("stage", ["reading", "pool-wait"])
def test_close_fails_in_flight_fetches_and_refuses_new_ones(arun, scripted_server, stage):
    server = scripted_server(routes(hang=[Drain()]))

    async def main():
        perf = restiming.Performance()
        client = make_client(perf, limits=restiming.Limits(max_connections=1))
        await assert_usable(client, server.url("/ok"))
        reading = asyncio.ensure_future(client.fetch(server.url("/hang")))
        while len(server.requests) < 2:
            await asyncio.sleep(0.01)
        waiting = asyncio.ensure_future(client.fetch(server.url("/ok"))) if stage == "pool-wait" else None
        await asyncio.sleep(0.05)
        await client.close()
        with pytest.raises(restiming.ConnectionReset) as info:
            await reading  # its reused connection died with close(): not retried
        assert_opaque(info.value.entry, error="reset")
        if waiting is not None:
            with pytest.raises(restiming.ClientClosed) as info:
                await waiting
            assert_opaque(info.value.entry, error="cancelled")
        assert client.open_connections == 0
        with pytest.raises(restiming.ClientClosed):
            await client.fetch(server.url("/ok"))
        assert len(perf.get_entries()) == (3 if waiting else 2)
        assert len(server.requests) == 2

    arun(main)
