"""Running engine tests on asyncio and on uvloop, failing on leaks.

``run_async(coro_fn, kind)`` runs a coroutine on a fresh loop of that kind and fails
the test when the loop saw an unhandled exception, when a task is still pending at
the end, or when the process's open file descriptors did not return to their
starting count (polled briefly: the test servers close their side asynchronously).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

LOOP_KINDS = ["asyncio", "uvloop"]
_warmed: set[str] = set()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_fds(target: int, timeout: float = 3.0) -> int:
    deadline = time.monotonic() + timeout
    n = open_fds()
    while n > target and time.monotonic() < deadline:
        time.sleep(0.02)
        n = open_fds()
    return n


def run_async(coro_fn, kind: str, *, check_fds: bool = True, fd_slack: int = 0):
    if kind == "uvloop":
        if uvloop is None:
            if os.environ.get("CI") == "true":
                pytest.fail("uvloop is not installed")
            pytest.skip("uvloop is not installed")
        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    if kind not in _warmed:
        # The first uvloop loop of a process opens a process-wide pipe that stays open
        # for good: not a leak of the test, so run one loop before counting.
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(asyncio.sleep(0))
        _warmed.add(kind)
    errors: list = []
    before = open_fds()
    leftover: list = []

    async def wrapper():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        result = await coro_fn()
        await asyncio.sleep(0)
        me = asyncio.current_task()
        leftover.extend(t for t in asyncio.all_tasks() if t is not me and not t.done())
        return result

    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(wrapper())
    assert not leftover, f"tasks still pending at the end of the test: {leftover!r}"
    assert not errors, f"unhandled loop exceptions: {errors!r}"
    if check_fds:
        after = wait_fds(before + fd_slack)
        assert after <= before + fd_slack, f"file descriptors leaked: {before} before, {after} after"
    return result


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request):
    return request.param


@pytest.fixture
def arun(loop_kind):
    """``arun(coro_fn)`` runs ``coro_fn()`` on the parametrized loop kind with leak checks."""

    def runner(coro_fn, **kwargs):
        return run_async(coro_fn, loop_kind, **kwargs)

    runner.kind = loop_kind
    return runner
