"""The deadline sweep (``_engine/_deadlines.py``): deadlines are data on the waiting
objects and one timer per client fires at the earliest; a deadline fires no earlier
than it is due and at most ``GRANULARITY_NS`` (plus scheduling noise) after it.
Unit tests drive ``Sweep`` with fake waiters on a real loop; the engine tests check
that each timeout kind still fires within its granularity against real servers."""

from __future__ import annotations

import asyncio
import time

import pytest

import restiming
from restiming._engine._deadlines import GRANULARITY_NS, Sweep, TaskDeadline
from restiming.clock import now_ns
from tests.engine_checks import expect_error, make_client, routes
from tests.peers.scripted import Drain, Send, Trickle

NOISE_S = 0.15  # a busy CI machine's scheduling delay on top of the granularity


class _Waiter:
    def __init__(self, due: int) -> None:
        self.at = due
        self.fired_at = 0

    def due(self) -> int:
        return self.at

    def expire(self, now: int) -> None:
        self.fired_at = now


def test_sweep_fires_each_deadline_once_within_the_granularity(arun):
    async def main():
        loop = asyncio.get_running_loop()
        sweep = Sweep()
        start = now_ns()
        waiters = [_Waiter(start + ms * 1_000_000) for ms in (30, 10, 50, 20)]
        for w in waiters:
            sweep.watch(w, w.at, loop)
        await asyncio.sleep(0.2)
        for w in waiters:
            assert w.fired_at >= w.at, "fired early"
            assert w.fired_at - w.at <= GRANULARITY_NS + NOISE_S * 1e9
        sweep.close()

    arun(main)


def test_sweep_rearms_for_an_earlier_deadline_and_skips_moved_ones(arun):
    async def main():
        loop = asyncio.get_running_loop()
        sweep = Sweep()
        late = _Waiter(now_ns() + 10_000_000_000)
        sweep.watch(late, late.at, loop)
        early = _Waiter(now_ns() + 20_000_000)  # comes after a far timer: must re-arm
        sweep.watch(early, early.at, loop)
        moved = _Waiter(now_ns() + 30_000_000)
        sweep.watch(moved, moved.at, loop)
        moved.at += 10_000_000_000  # activity pushed it later (a read deadline restarts)
        unwatched = _Waiter(now_ns() + 25_000_000)
        sweep.watch(unwatched, unwatched.at, loop)
        sweep.unwatch(unwatched)
        await asyncio.sleep(0.15)
        assert early.fired_at and not moved.fired_at and not late.fired_at and not unwatched.fired_at
        sweep.close()

    arun(main)


def test_task_deadline_cancels_and_settles(arun):
    async def main():
        loop = asyncio.get_running_loop()
        sweep = Sweep()
        task = asyncio.current_task()
        deadline = TaskDeadline(task, now_ns() + 20_000_000)
        sweep.watch(deadline, deadline.at, loop)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.sleep(5)
        assert deadline.settle() is True  # ours: the caller raises its timeout
        assert task.cancelling() == 0
        sweep.close()

    arun(main)


@pytest.mark.parametrize("kind", ["read", "total"])
def test_timeouts_fire_within_the_granularity(arun, scripted_server, kind):
    server = scripted_server(routes(silent=[Drain()],
                                    trickle=[Send(b"HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\n"),
                                             Trickle(None, 0.02, chunk=10)]))
    value = 0.3
    timeout = (restiming.Timeout(read=value, total=10.0) if kind == "read"
               else restiming.Timeout(read=5.0, total=value))
    error = restiming.ReadTimeout if kind == "read" else restiming.TotalTimeout
    path = "/silent" if kind == "read" else "/trickle"

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            await client.fetch(server.url("/ok"))  # the connection exists: no connect in the time
            started = time.monotonic()
            exc = await expect_error(client, perf, server.url(path), error, "timeout", timeout=timeout)
            elapsed = time.monotonic() - started
            assert exc.phase == kind
            assert value <= elapsed + 0.002  # never early (the clocks differ by rounding)
            assert elapsed <= value + GRANULARITY_NS / 1e9 + NOISE_S

    arun(main)


@pytest.mark.parametrize("case", ["read", "connect"])
def test_a_float_timeout_names_the_phase_that_stalled(arun, scripted_server, tls_ca, case):
    """``timeout=0.3`` sets every deadline alike, so the total deadline and the stalled
    phase's deadline fall within the sweep's granularity: the phase's timeout is raised
    (it says where the fetch was), not TotalTimeout."""
    if case == "read":
        server = scripted_server(routes(slow=[Drain()]))
        url, error, phase = server.url("/slow"), restiming.ReadTimeout, "read"
    else:  # a TLS handshake that never completes
        server = scripted_server(routes(), on_connect=lambda index: [Drain()], tls=tls_ca.server_context())
        url, error, phase = server.url("/ok"), restiming.ConnectTimeout, "connect"

    async def main():
        perf = restiming.Performance()
        async with restiming.Client(perf, timeout=0.3, verify=tls_ca.ca_file) as client:
            exc = await expect_error(client, perf, url, error, "timeout")
            assert exc.phase == phase

    arun(main)
