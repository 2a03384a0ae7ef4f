"""The timeline: the current Resource Timing buffer processing model, events, queries,
observers, and where callbacks run.

Scenarios follow the current spec's "add a PerformanceResourceTiming entry" and "fire a
buffer full event" algorithms (and the web-platform-tests resource-timing/buffer-full-*
cases): an entry goes to the buffer while it has room and no buffer-full task is
pending, otherwise to the secondary buffer, and one task per overflow fires the event
while the buffer is full, copies what fits, and drops the rest once nothing moved.
Every test runs on the stock asyncio loop and on uvloop; a loop exception fails it.
https://w3c.github.io/resource-timing/#sec-extensions-performance-interface
https://w3c.github.io/performance-timeline/#the-performanceobserver-interface
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import restiming
from restiming import Performance, PerformanceObserver
from restiming._timeline import ResourceTimingBufferFullEvent

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency where it exists
    uvloop = None

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason="no uvloop"))]


@pytest.fixture(params=LOOPS)
def run(request):
    """``run(coroutine)`` on a fresh loop of each kind; fails on any loop exception."""

    def runner(coro, *, allow_loop_errors: bool = False):
        loop = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()
        errors: list[dict] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        try:
            result = loop.run_until_complete(asyncio.wait_for(coro, 30))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
        if errors and not allow_loop_errors:
            pytest.fail(f"loop exceptions: {errors}")
        return (result, errors) if allow_loop_errors else result

    return runner


async def settle(rounds: int = 5) -> None:
    """Let queued loop callbacks (the buffer-full task, observer tasks) run."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def record(perf: Performance, count: int, prefix: str = "https://example.test/r"):
    return [perf.begin(f"{prefix}{i}").finish(response_status=200) for i in range(count)]


def names(entries) -> list[str]:
    return [e.name for e in entries]


class Events:
    """A resourcetimingbufferfull handler that counts and can act on the timeline."""

    def __init__(self, perf: Performance, action=None) -> None:
        self.perf = perf
        self.action = action
        self.events: list[ResourceTimingBufferFullEvent] = []
        self.seen_in_buffer: list[int] = []

    def __call__(self, event) -> None:
        self.events.append(event)
        self.seen_in_buffer.append(len(self.perf.get_entries()))
        if self.action is not None:
            self.action(self.perf, event)

    def __len__(self) -> int:
        return len(self.events)


# ----------------------------------------------------------------- buffer scenarios


def test_default_buffer_size_and_validation():
    perf = Performance()
    assert perf.resource_timing_buffer_size == 250
    with pytest.raises(ValueError):
        perf.set_resource_timing_buffer_size(-1)
    with pytest.raises(TypeError):
        perf.set_resource_timing_buffer_size(2.5)
    with pytest.raises(TypeError):
        perf.set_resource_timing_buffer_size(True)
    with pytest.raises(ValueError):
        Performance(buffer_size=-1)
    perf.set_resource_timing_buffer_size(7)
    assert perf.resource_timing_buffer_size == 7


def test_clear_resource_timings(run):
    async def main():
        perf = Performance(buffer_size=5)
        record(perf, 4)
        assert len(perf.get_entries()) == 4
        perf.clear_resource_timings()
        assert perf.get_entries() == []
        # Room again: five more fit without an event.
        events = Events(perf)
        perf.onresourcetimingbufferfull = events
        record(perf, 5, "https://example.test/again")
        await settle()
        assert len(perf.get_entries()) == 5
        assert len(events) == 0
        assert perf.dropped_entries == 0

    run(main())


def test_shrinking_below_count_keeps_entries_and_fires_nothing(run):
    async def main():
        perf = Performance(buffer_size=10)
        events = Events(perf)
        perf.onresourcetimingbufferfull = events
        record(perf, 6)
        perf.set_resource_timing_buffer_size(2)
        await settle()
        assert len(perf.get_entries()) == 6
        assert len(events) == 0
        assert perf.dropped_entries == 0
        # The next entry overflows: one event, and (handler does nothing) it is dropped.
        record(perf, 1, "https://example.test/late")
        await settle()
        assert len(events) == 1
        assert len(perf.get_entries()) == 6
        assert perf.dropped_entries == 1

    run(main())


def test_exactly_one_event_per_overflow(run):
    async def main():
        perf = Performance(buffer_size=3)
        events = Events(perf)
        perf.onresourcetimingbufferfull = events
        record(perf, 10)
        assert len(events) == 0  # the event is a task, never fired inside finish()
        await settle()
        assert len(events) == 1
        assert events.seen_in_buffer == [3]
        assert names(perf.get_entries()) == [f"https://example.test/r{i}" for i in range(3)]
        assert perf.dropped_entries == 7
        # Still full: a later entry is a new overflow, with its own single event.
        record(perf, 4, "https://example.test/second")
        await settle()
        assert len(events) == 2
        assert perf.dropped_entries == 11
        stats = perf.stats()
        assert (stats.pending, stats.secondary) == (0, 0)

    run(main())


def test_event_shape(run):
    async def main():
        perf = Performance(buffer_size=1)
        events = Events(perf)
        perf.onresourcetimingbufferfull = events
        before = perf.now()
        record(perf, 2)
        await settle()
        (event,) = events.events
        assert isinstance(event, ResourceTimingBufferFullEvent)
        assert event.type == "resourcetimingbufferfull"
        assert event.bubbles is False
        assert event.cancelable is False
        assert event.target is perf
        assert before <= event.time_stamp <= perf.now()

    run(main())


def _clear(p, e):
    p.clear_resource_timings()


def _resize(n):
    return lambda p, e: p.set_resource_timing_buffer_size(n)


# (case, buffer size, handler, entries recorded, events fired, buffer afterwards as
#  indices of the recorded entries, dropped, buffer size afterwards)
HANDLER_CASES = [
    # No handler action: one event, the overflow is dropped.
    ("does nothing", 4, None, 9, 1, range(4), 5, 4),
    # Cleared once, then the two waiting entries moved in.
    ("clears", 3, _clear, 5, 1, range(3, 5), 0, 3),
    # Fire (clear), copy 3, still 2 waiting and full: fire again, copy 2.
    ("clears repeatedly while still full", 3, _clear, 8, 2, range(6, 8), 0, 3),
    ("increases the size", 3, _resize(10), 6, 1, range(6), 0, 10),
    # Shrinking removes nothing; nothing moves, so the waiting three are dropped.
    ("decreases the size", 3, _resize(1), 6, 1, range(3), 3, 1),
    ("sets the current size", 3, _resize(3), 5, 1, range(3), 2, 3),
]


@pytest.mark.parametrize("case, size, action, count, fired, kept, dropped, size_after", HANDLER_CASES,
                         ids=[c[0] for c in HANDLER_CASES])
def test_buffer_full_handler(run, case, size, action, count, fired, kept, dropped, size_after):
    async def main():
        perf = Performance(buffer_size=size)
        events = Events(perf, action)
        perf.onresourcetimingbufferfull = events
        record(perf, count)
        await settle()
        assert len(events) == fired
        assert names(perf.get_entries()) == [f"https://example.test/r{i}" for i in kept]
        assert perf.dropped_entries == dropped
        assert perf.resource_timing_buffer_size == size_after

    run(main())


def test_handler_that_stores_the_entries(run):
    async def main():
        perf = Performance(buffer_size=3)
        stored: list = []
        events = Events(perf, lambda p, e: stored.extend(p.get_entries()))
        perf.onresourcetimingbufferfull = events
        record(perf, 5)
        await settle()
        # Inside the handler the buffer holds exactly the first three (the others wait).
        assert names(stored) == [f"https://example.test/r{i}" for i in range(3)]
        assert len(perf.get_entries()) == 3
        assert perf.dropped_entries == 2

    run(main())


def test_handler_that_stores_and_clears(run):
    async def main():
        perf = Performance(buffer_size=3)
        stored: list = []

        def store_and_clear(p, e):
            stored.extend(p.get_entries())
            p.clear_resource_timings()

        perf.onresourcetimingbufferfull = Events(perf, store_and_clear)
        record(perf, 5)
        await settle()
        assert names(stored) + names(perf.get_entries()) == [
            f"https://example.test/r{i}" for i in range(5)]
        assert perf.dropped_entries == 0

    run(main())


def test_entries_recorded_inside_the_handler_that_makes_room(run):
    async def main():
        perf = Performance(buffer_size=3)

        def grow_and_record(p, e):
            p.set_resource_timing_buffer_size(10)
            record(p, 2, "https://example.test/inside")

        events = Events(perf, grow_and_record)
        perf.onresourcetimingbufferfull = events
        record(perf, 5)
        await settle()
        assert len(events) == 1
        got = names(perf.get_entries())
        assert len(got) == 7
        assert set(got) == {f"https://example.test/r{i}" for i in range(5)} | {
            "https://example.test/inside0", "https://example.test/inside1"}
        assert perf.dropped_entries == 0

    run(main())


def test_entries_recorded_inside_the_handler_that_makes_no_room(run):
    async def main():
        perf = Performance(buffer_size=3)
        events = Events(perf, lambda p, e: record(p, 2, "https://example.test/inside"))
        perf.onresourcetimingbufferfull = events
        record(perf, 5)
        await settle()
        # The handler's entries joined the secondary buffer and were dropped with it;
        # they did not start an event of their own.
        assert len(events) == 1
        assert names(perf.get_entries()) == [f"https://example.test/r{i}" for i in range(3)]
        assert perf.dropped_entries == 4
        await settle()
        assert len(events) == 1

    run(main())


def test_increase_before_the_task_runs_fires_nothing(run):
    async def main():
        perf = Performance(buffer_size=3)
        events = Events(perf)
        perf.onresourcetimingbufferfull = events
        record(perf, 5)
        perf.set_resource_timing_buffer_size(5)  # before the queued task runs
        await settle()
        assert len(events) == 0
        assert len(perf.get_entries()) == 5
        assert perf.dropped_entries == 0

    run(main())


def test_clear_before_the_task_runs_fires_nothing(run):
    async def main():
        perf = Performance(buffer_size=3)
        events = Events(perf)
        perf.onresourcetimingbufferfull = events
        record(perf, 5)
        perf.clear_resource_timings()
        await settle()
        assert len(events) == 0
        assert names(perf.get_entries()) == ["https://example.test/r3", "https://example.test/r4"]
        assert perf.dropped_entries == 0

    run(main())


def test_partial_increase_before_the_task_still_fires(run):
    async def main():
        perf = Performance(buffer_size=3)
        events = Events(perf)
        perf.onresourcetimingbufferfull = events
        record(perf, 8)  # 5 waiting
        perf.set_resource_timing_buffer_size(5)  # room for 2 of them only
        await settle()
        # First round: not full, copy 2; second round: full, fire, nothing moves, drop.
        assert len(events) == 1
        assert events.seen_in_buffer == [5]
        assert len(perf.get_entries()) == 5
        assert perf.dropped_entries == 3

    run(main())


def test_zero_size_buffer(run):
    async def main():
        perf = Performance(buffer_size=0)
        events = Events(perf)
        perf.onresourcetimingbufferfull = events
        record(perf, 3)
        await settle()
        assert len(events) == 1
        assert perf.get_entries() == []
        assert perf.dropped_entries == 3

    run(main())


def test_overflow_beyond_the_secondary_capacity_is_counted(run):
    async def main():
        perf = Performance(buffer_size=2)
        perf._ring.set_secondary_cap(3)  # shrink the overflow room for the test
        seen: list = []
        observer = PerformanceObserver(lambda lst, obs: seen.extend(lst.get_entries()), perf)
        observer.observe(type="resource")
        events = Events(perf, lambda p, e: p.set_resource_timing_buffer_size(100))
        perf.onresourcetimingbufferfull = events
        record(perf, 10)  # 2 buffered, 3 waiting, 5 beyond the overflow room
        await settle()
        assert len(events) == 1
        assert len(perf.get_entries()) == 5
        assert perf.dropped_entries == 5
        assert len(seen) == 10  # observers see every entry, dropped or not

    run(main())


def test_drain_takes_primary_and_secondary(run):
    async def main():
        perf = Performance(buffer_size=3)
        events = Events(perf)
        perf.onresourcetimingbufferfull = events
        record(perf, 5)
        taken = perf.drain()  # before the task: the two waiting entries come too
        assert names(taken) == [f"https://example.test/r{i}" for i in range(5)]
        assert perf.get_entries() == []
        await settle()
        assert len(events) == 0
        assert perf.dropped_entries == 0
        record(perf, 3, "https://example.test/next")
        assert len(perf.get_entries()) == 3
        assert len(perf.drain()) == 3
        assert perf.drain() == []
        stats = perf.stats()
        assert (stats.primary, stats.secondary) == (0, 0)

    run(main())


def test_buffer_limit_survives_many_drains():
    perf = Performance(buffer_size=5, ring_cells=64)
    for round_ in range(50):
        record(perf, 5, f"https://example.test/{round_}/")
        assert len(perf.drain()) == 5
    assert perf.dropped_entries == 0


# ------------------------------------------------------------------- listeners


def test_onresourcetimingbufferfull_and_listeners(run):
    async def main():
        perf = Performance(buffer_size=1)
        calls: list[str] = []
        first = lambda e: calls.append("first")  # noqa: E731
        second = lambda e: calls.append("second")  # noqa: E731
        perf.add_event_listener("resourcetimingbufferfull", first)
        perf.onresourcetimingbufferfull = lambda e: calls.append("on")
        perf.add_event_listener("resourcetimingbufferfull", second)
        perf.add_event_listener("resourcetimingbufferfull", second)  # once only
        assert callable(perf.onresourcetimingbufferfull)
        record(perf, 2)
        await settle()
        assert calls == ["first", "on", "second"]

        calls.clear()
        perf.remove_event_listener("resourcetimingbufferfull", first)
        perf.onresourcetimingbufferfull = None
        assert perf.onresourcetimingbufferfull is None
        record(perf, 1, "https://example.test/b")
        await settle()
        assert calls == ["second"]

        calls.clear()
        perf.remove_event_listener("resourcetimingbufferfull", second)
        perf.remove_event_listener("resourcetimingbufferfull", second)  # absent: no error
        record(perf, 1, "https://example.test/c")
        await settle()
        assert calls == []
        assert perf.dropped_entries == 3

    run(main())


def test_listener_validation():
    perf = Performance()
    with pytest.raises(TypeError):
        perf.onresourcetimingbufferfull = "not callable"
    with pytest.raises(TypeError):
        perf.add_event_listener("resourcetimingbufferfull", None)
    with pytest.raises(ValueError):
        perf.add_event_listener("click", lambda e: None)


def test_handler_exception_is_reported_not_raised(run):
    async def main():
        perf = Performance(buffer_size=1)
        calls: list[str] = []

        def boom(event):
            raise RuntimeError("handler failed")

        perf.add_event_listener("resourcetimingbufferfull", boom)
        perf.add_event_listener("resourcetimingbufferfull", lambda e: calls.append("after"))
        record(perf, 2)
        await settle()
        assert calls == ["after"]
        assert perf.dropped_entries == 1

    _, errors = run(main(), allow_loop_errors=True)
    assert len(errors) == 1
    assert isinstance(errors[0]["exception"], RuntimeError)
    assert "resourcetimingbufferfull" in errors[0]["message"]


# --------------------------------------------------------------------- queries


def test_queries_sorted_by_start_time(run):
    async def main():
        perf = Performance()
        recs = [perf.begin(f"https://example.test/{c}") for c in "abcd"]
        for rec in (recs[2], recs[0], recs[3], recs[1]):  # finish out of order
            await asyncio.sleep(0.001)
            rec.finish()
        entries = perf.get_entries()
        assert names(entries) == [f"https://example.test/{c}" for c in "abcd"]
        starts = [e.start_time for e in entries]
        assert starts == sorted(starts) and len(set(starts)) == 4
        ends = [e.response_end for e in entries]
        assert ends != sorted(ends)  # the buffer really was filled out of order
        assert perf.get_entries_by_type("resource") == entries
        assert perf.drain() == entries

    run(main())


def test_get_entries_by_name_and_type(run):
    async def main():
        perf = Performance()
        first = perf.begin("https://example.test/same")
        other = perf.begin("https://example.test/other")
        await asyncio.sleep(0.001)
        second = perf.begin("https://example.test/same")
        second.finish(response_status=404)
        other.finish()
        first.finish(response_status=200)
        by_name = perf.get_entries_by_name("https://example.test/same")
        assert [e.response_status for e in by_name] == [200, 404]  # by start_time
        assert perf.get_entries_by_name("https://example.test/same", "resource") == by_name
        assert perf.get_entries_by_name("https://example.test/same", type="resource") == by_name
        assert perf.get_entries_by_name("https://example.test/same", "mark") == []
        assert perf.get_entries_by_name("https://example.test/sam") == []
        assert perf.get_entries_by_name("https://example.test/nope") == []
        assert perf.get_entries_by_type("navigation") == []
        assert len(perf.get_entries_by_type("resource")) == 3

    run(main())


def test_get_entries_by_name_non_ascii():
    perf = Performance()
    url = "https://例え.テスト/パス?q=é"
    perf.begin(url).finish()
    perf.begin(url + "x").finish()
    assert names(perf.get_entries_by_name(url)) == [url]


def test_time_origin_and_now():
    wall_before = time.time() * 1000
    perf = Performance()
    wall_after = time.time() * 1000
    assert wall_before - 1 <= perf.time_origin <= wall_after + 1
    a = perf.now()
    time.sleep(0.005)
    b = perf.now()
    assert 0 <= a < b
    assert b - a >= 5
    # now() and the wall clock agree (no step expected during a test).
    assert abs((perf.time_origin + perf.now()) - time.time() * 1000) < 50


def test_entry_times_are_relative_to_the_time_origin():
    perf = Performance()
    time.sleep(0.002)
    before = perf.now()
    entry = perf.begin("https://example.test/").finish()
    after = perf.now()
    assert before <= entry.start_time <= entry.response_end <= after
    assert entry.fetch_start == entry.start_time
    assert entry.duration == pytest.approx(entry.response_end - entry.start_time)
    assert perf.to_ms(0) == 0.0


# ------------------------------------------------------------------- observers


def make_observer(perf, sink: list):
    def callback(entry_list, observer):
        sink.append((entry_list, observer, threading.get_ident()))

    return PerformanceObserver(callback, perf)


def test_observe_type_errors():
    perf = Performance()
    obs = PerformanceObserver(lambda lst, o: None, perf)
    with pytest.raises(TypeError):
        obs.observe()
    with pytest.raises(TypeError):
        obs.observe(entry_types=[])
    with pytest.raises(TypeError):
        obs.observe(entry_types=["mark", "navigation"])
    with pytest.raises(TypeError):
        obs.observe(entry_types=["resource"], buffered=True)
    with pytest.raises(TypeError):
        obs.observe(type="resource", entry_types=["resource"])
    with pytest.raises(TypeError):
        obs.observe(entry_types="resource")
    with pytest.raises(TypeError):
        PerformanceObserver("not callable", perf)
    with pytest.raises(TypeError):
        PerformanceObserver(lambda lst, o: None, performance=object())
    assert perf._observers == []  # nothing registered by a failed call


def test_supported_entry_types():
    assert PerformanceObserver.supported_entry_types == ("resource",)
    assert restiming.PerformanceObserver(lambda lst, o: None).supported_entry_types == ("resource",)


def test_default_observer_watches_the_default_performance():
    obs = PerformanceObserver(lambda lst, o: None)
    assert obs._perf is restiming.performance


def test_observer_callback_runs_later_on_the_loop(run):
    async def main():
        perf = Performance()
        sink: list = []
        obs = make_observer(perf, sink)
        obs.observe(type="resource")
        record(perf, 3)
        assert sink == []  # not inside finish()
        await settle()
        assert len(sink) == 1
        entry_list, observer, ident = sink[0]
        assert observer is obs
        assert ident == threading.get_ident()
        assert names(entry_list.get_entries()) == [f"https://example.test/r{i}" for i in range(3)]
        record(perf, 1, "https://example.test/more")
        await settle()
        assert len(sink) == 2
        assert names(sink[1][0].get_entries()) == ["https://example.test/more0"]

    run(main())


def test_entry_list_queries(run):
    async def main():
        perf = Performance()
        sink: list = []
        make_observer(perf, sink).observe(type="resource")
        late = perf.begin("https://example.test/x")
        await asyncio.sleep(0.001)
        early_done = perf.begin("https://example.test/y")
        early_done.finish()
        late.finish()
        perf.begin("https://example.test/x").finish()
        await settle()
        entry_list = sink[0][0]
        assert names(entry_list.get_entries()) == [
            "https://example.test/x", "https://example.test/y", "https://example.test/x"]
        assert entry_list.get_entries_by_type("resource") == entry_list.get_entries()
        assert entry_list.get_entries_by_type("mark") == []
        by_name = entry_list.get_entries_by_name("https://example.test/x")
        assert len(by_name) == 2 and by_name[0].start_time < by_name[1].start_time
        assert entry_list.get_entries_by_name("https://example.test/x", "resource") == by_name
        assert entry_list.get_entries_by_name("https://example.test/x", "mark") == []
        assert entry_list.get_entries_by_name("https://example.test/z") == []

    run(main())


def test_observers_receive_entries_whatever_the_buffer(run):
    async def main():
        perf = Performance(buffer_size=2)
        sink: list = []
        make_observer(perf, sink).observe(type="resource")
        perf.onresourcetimingbufferfull = lambda e: None
        record(perf, 6)
        await settle()
        got = [e for entry_list, _, _ in sink for e in entry_list.get_entries()]
        assert names(got) == [f"https://example.test/r{i}" for i in range(6)]
        assert len(perf.get_entries()) == 2
        assert perf.dropped_entries == 4

    run(main())


def test_unbuffered_observer_misses_earlier_entries(run):
    async def main():
        perf = Performance()
        record(perf, 3, "https://example.test/before")
        sink: list = []
        make_observer(perf, sink).observe(type="resource")
        record(perf, 1, "https://example.test/after")
        await settle()
        got = [e for entry_list, _, _ in sink for e in entry_list.get_entries()]
        assert names(got) == ["https://example.test/after0"]

    run(main())


def test_buffered_observer_gets_the_buffer_once(run):
    async def main():
        perf = Performance()
        record(perf, 3, "https://example.test/before")
        sink: list = []
        make_observer(perf, sink).observe(type="resource", buffered=True)
        assert sink == []
        await settle()
        got = [e for entry_list, _, _ in sink for e in entry_list.get_entries()]
        assert names(got) == [f"https://example.test/before{i}" for i in range(3)]
        record(perf, 1, "https://example.test/after")
        await settle()
        got = [e for entry_list, _, _ in sink for e in entry_list.get_entries()]
        assert len(got) == 4 and got[-1].name == "https://example.test/after0"

    run(main())


def test_second_observe_replaces_the_types(run):
    async def main():
        perf = Performance()
        sink: list = []
        obs = make_observer(perf, sink)
        obs.observe(entry_types=["resource", "mark"])
        assert obs._types == frozenset({"resource"})
        obs.observe(entry_types=["resource"])
        assert perf._observers.count(obs) == 1
        record(perf, 2)
        await settle()
        assert sum(len(lst) for lst, _, _ in sink) == 2  # delivered once, not twice
        with pytest.raises(TypeError):
            obs.observe(type="resource")  # cannot switch forms without disconnect()
        obs.disconnect()
        obs.observe(type="resource")

    run(main())


def test_take_records_and_disconnect(run):
    async def main():
        perf = Performance()
        sink: list = []
        obs = make_observer(perf, sink)
        obs.observe(type="resource")
        late = perf.begin("https://example.test/b")
        perf.begin("https://example.test/a").finish()
        late.finish()
        taken = obs.take_records()
        assert names(taken) == ["https://example.test/b", "https://example.test/a"]  # by start
        assert obs.take_records() == []
        await settle()
        assert sink == []  # taken records are not delivered again
        obs.disconnect()
        record(perf, 2)
        await settle()
        assert sink == []
        assert obs.take_records() == []
        assert len(perf.get_entries()) == 4

    run(main())


def test_observer_exception_is_reported(run):
    async def main():
        perf = Performance()
        ok: list = []

        def boom(entry_list, observer):
            raise ValueError("observer failed")

        PerformanceObserver(boom, perf).observe(type="resource")
        make_observer(perf, ok).observe(type="resource")
        record(perf, 1)
        await settle()
        assert len(ok) == 1

    _, errors = run(main(), allow_loop_errors=True)
    assert [type(e["exception"]) for e in errors] == [ValueError]


# ------------------------------------------------------- where callbacks run


def test_without_a_running_loop_callbacks_wait_for_the_next_call():
    perf = Performance(buffer_size=2)
    sink: list = []
    make_observer(perf, sink).observe(type="resource")
    events = Events(perf)
    perf.onresourcetimingbufferfull = events
    record(perf, 3)
    assert sink == [] and len(events) == 0  # deferred: nobody runs them yet
    entries = perf.get_entries()  # the next timeline call runs them, here
    assert len(events) == 1
    assert len(entries) == 2
    got = [e for entry_list, _, _ in sink for e in entry_list.get_entries()]
    assert len(got) == 3
    assert perf.dropped_entries == 1


def test_flush_runs_deferred_callbacks():
    perf = Performance()
    sink: list = []
    make_observer(perf, sink).observe(type="resource")
    record(perf, 2)
    assert sink == []
    perf.flush()
    assert len(sink) == 1 and len(sink[0][0]) == 2


def test_loop_closed_then_used_without_a_loop():
    perf = Performance(buffer_size=1)
    sink: list = []

    async def on_loop():
        make_observer(perf, sink).observe(type="resource")
        record(perf, 1, "https://example.test/on-loop")
        await settle()

    asyncio.run(on_loop())
    assert len(sink) == 1
    events = Events(perf)
    perf.onresourcetimingbufferfull = events
    record(perf, 2, "https://example.test/no-loop")  # the home loop is closed now
    assert len(sink) == 1
    perf.get_entries()
    assert len(sink) == 2 and len(events) == 1
    assert perf.dropped_entries == 2


def test_producer_thread_hands_callbacks_to_the_loop(run):
    async def main():
        perf = Performance(buffer_size=5)
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        sink: list = []
        obs = make_observer(perf, sink)
        obs.observe(type="resource")
        event_threads: list[int] = []
        perf.onresourcetimingbufferfull = lambda e: event_threads.append(threading.get_ident())
        done = loop.create_future()

        def produce():
            try:
                record(perf, 20, "https://example.test/thread")
            finally:
                loop.call_soon_threadsafe(done.set_result, threading.get_ident())

        worker = threading.Thread(target=produce)
        worker.start()
        producer_thread = await asyncio.wait_for(done, 10)
        worker.join(timeout=10)
        for _ in range(200):  # bounded wait for the handed-off callbacks
            if sum(len(lst) for lst, _, _ in sink) == 20 and event_threads:
                break
            await asyncio.sleep(0.005)
        assert producer_thread != loop_thread
        assert sum(len(lst) for lst, _, _ in sink) == 20
        assert {ident for _, _, ident in sink} == {loop_thread}
        # One event per overflow; the thread may overflow again after a task ended.
        assert event_threads and set(event_threads) == {loop_thread}
        assert len(perf.get_entries()) == 5
        assert perf.dropped_entries == 15

    run(main())


def test_producer_thread_with_observer_set_up_before_the_loop(run):
    # The observer was registered with no loop running; the first owner call made on
    # the loop adopts it as the home loop, and thread records are handed off to it.
    perf = Performance()
    sink: list = []
    make_observer(perf, sink).observe(type="resource")

    async def main():
        loop_thread = threading.get_ident()
        perf.get_entries()
        worker = threading.Thread(target=record, args=(perf, 5, "https://example.test/t"))
        worker.start()
        worker.join(timeout=10)
        for _ in range(200):
            if sum(len(lst) for lst, _, _ in sink) == 5:
                break
            await asyncio.sleep(0.005)
        assert sum(len(lst) for lst, _, _ in sink) == 5
        assert {ident for _, _, ident in sink} == {loop_thread}

    run(main())


def test_closed_performance_refuses_use():
    perf = Performance()
    perf.close()
    perf.close()  # idempotent
    with pytest.raises(restiming.RestimingError):
        perf.begin("https://example.test/")
    with pytest.raises(restiming.RestimingError):
        perf.get_entries()


def test_close_with_callbacks_still_queued(run):
    async def main():
        perf = Performance(buffer_size=1)
        sink: list = []
        make_observer(perf, sink).observe(type="resource")
        events = Events(perf)
        perf.onresourcetimingbufferfull = events
        record(perf, 3)
        perf.close()  # the buffer-full task and the observer task are queued already
        await settle()
        assert sink == [] and len(events) == 0

    run(main())  # and no loop exception from the tasks that ran after close()
