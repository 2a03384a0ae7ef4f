"""The C ring (through ``restiming._ring.Ring``) against a pure-Python model.

``RingModel`` restates csrc/rt_ring.h's theory of operation in a few lines of Python:
transport capacity (a record of ``184 + len(strings)`` bytes plus its 8-byte length
occupies ``ceil((8 + 184 + len(strings)) / 56)`` cells of a ring of N cells; with no
room the publish answers RING_FULL and writes nothing) and the buffer classification
(primary count/limit, pending flag, secondary count/cap, dropped count). A hypothesis
state machine drives both with the same operation sequences and compares every
answer, every counter and every drained byte. Rings are small (64-256 cells) so
wrap-around and RING_FULL happen constantly.
https://w3c.github.io/resource-timing/#sec-extensions-performance-interface
"""

from __future__ import annotations

import random
import struct
from collections import deque
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from restiming._binding import ffi, lib
from restiming._exceptions import NativeError
from restiming._fields import FLAGS_OFFSET as _FLAGS_OFFSET, RECORD
from restiming._ring import Ring, iter_records

CELL_PAYLOAD = 56
RECORD_SIZE = RECORD.size
FLAGS_OFFSET = _FLAGS_OFFSET  # u16 flags inside rt_record
UNLIMITED = 2**62

PUB_PRIMARY = lib.RT_PUB_PRIMARY
PUB_SECONDARY = lib.RT_PUB_SECONDARY
PUB_DROPPED = lib.RT_PUB_DROPPED
PUB_BECAME_FULL = lib.RT_PUB_BECAME_FULL
PUB_RING_FULL = lib.RT_PUB_RING_FULL
FLAG_SECONDARY = lib.RT_FLAG_SECONDARY
FLAG_DROPPED = lib.RT_FLAG_DROPPED
CLASS_MASK = FLAG_SECONDARY | FLAG_DROPPED


def cells_for(strings_len: int) -> int:
    return -(-(8 + RECORD_SIZE + strings_len) // CELL_PAYLOAD)


def pad8(n: int) -> int:
    return (n + 7) & ~7


@dataclass
class Pending:
    """A record in the model's ring: its cells and the exact bytes drain must give."""

    cells: int
    klass: int
    body: bytes  # record (class bits as the ring writes them) + strings


class RingModel:
    """The ring's documented semantics, single-threaded."""

    def __init__(self, ncells: int, limit: int, secondary_cap: int) -> None:
        self.ncells = ncells
        self.head = 0
        self.tail = 0
        self.primary = 0
        self.limit = min(limit, UNLIMITED)
        self.secondary = 0
        self.secondary_cap = secondary_cap
        self.pending = 0
        self.dropped_overflow = 0
        self.rejected_ring_full = 0
        self.published = 0
        self.queue: deque[Pending] = deque()
        self.max_record = ncells // 2 * CELL_PAYLOAD - 8

    def publish(self, record: bytes, strings: bytes):
        """Return the publish bits, or the string "TOOBIG"."""
        if RECORD_SIZE + len(strings) > self.max_record:
            return "TOOBIG"
        k = cells_for(len(strings))
        if self.tail + k - self.head > self.ncells:
            self.rejected_ring_full += 1
            return PUB_RING_FULL
        self.tail += k
        if not self.pending and self.primary < self.limit:
            self.primary += 1
            result = PUB_PRIMARY
        else:
            if self.secondary >= self.secondary_cap:
                self.dropped_overflow += 1
                result = PUB_DROPPED
            else:
                self.secondary += 1
                result = PUB_SECONDARY
            if not self.pending:
                self.pending = 1
                result |= PUB_BECAME_FULL
        klass = (FLAG_SECONDARY if result & PUB_SECONDARY else 0) | (
            FLAG_DROPPED if result & PUB_DROPPED else 0)
        flags = int.from_bytes(record[FLAGS_OFFSET:FLAGS_OFFSET + 2], "little")
        flags = (flags & ~CLASS_MASK & 0xFFFF) | klass
        body = record[:FLAGS_OFFSET] + flags.to_bytes(2, "little") + record[FLAGS_OFFSET + 2:] + strings
        self.queue.append(Pending(k, klass, body))
        self.published += 1
        return result

    def drain(self, cap: int, max_count: int):
        """Return (used, count, klass, bytes) like Ring.drain_into; used -1 = too big."""
        if cap <= 0:
            return -1, 0, 0, b""
        out = bytearray()
        n = 0
        run = 0
        while n < max_count and self.queue:
            rec = self.queue[0]
            if n > 0 and rec.klass != run:
                break
            need = 8 + pad8(len(rec.body))
            if len(out) + need > cap:
                if n == 0:
                    return -1, 0, 0, b""
                break
            out += len(rec.body).to_bytes(8, "little") + rec.body + bytes(pad8(len(rec.body)) - len(rec.body))
            run = rec.klass
            n += 1
            self.queue.popleft()
            self.head += rec.cells
        return len(out), n, run, bytes(out)

    def claim_primary(self, want: int) -> int:
        room = max(0, self.limit - self.primary)
        take = min(want, room)
        self.primary += take
        return take

    def release(self, counter: str, n: int) -> bool:
        value = getattr(self, counter)
        if n > value:
            return False
        setattr(self, counter, value - n)
        return True

    def try_set_pending(self) -> bool:
        if self.pending:
            return False
        self.pending = 1
        return True


def make_record(rng: random.Random, url_len: int, text_len: int):
    """A C record with random contents (flags too: the ring must overwrite the class bits)."""
    rec = ffi.new("rt_record *")
    for i in range(lib.RT_NSTAMPS):
        rec.stamp[i] = rng.randrange(-(2**63), 2**63)
    rec.encoded_body_size = rng.randrange(2**63)
    rec.decoded_body_size = rng.randrange(2**63)
    rec.bytes_sent = rng.randrange(2**63)
    rec.bytes_received = rng.randrange(2**63)
    rec.connection_id = rng.randrange(2**32)
    rec.response_status = rng.randrange(2**16)
    rec.flags = rng.randrange(2**16)
    rec.url_len = url_len
    rec.text_len = text_len
    return rec


def stats_tuple(ring: Ring):
    s = ring.stats()
    return (s.head, s.tail, s.primary, s.limit, s.secondary, s.secondary_cap, s.pending,
            s.dropped_overflow, s.rejected_ring_full, s.published)


def model_tuple(m: RingModel):
    return (m.head, m.tail, m.primary, m.limit, m.secondary, m.secondary_cap, m.pending,
            m.dropped_overflow, m.rejected_ring_full, m.published)


# Sizes: mostly short strings (several records per ring), some of a few KiB
# (bigger than a 64-cell ring accepts; near the limit of a 256-cell one).
string_lengths = st.one_of(
    st.integers(0, 64),
    st.integers(65, 600),
    st.integers(600, 4096),
)
counts = st.integers(0, 12)


class RingMachine(RuleBasedStateMachine):
    @initialize(ncells=st.sampled_from([64, 128, 256]), limit=st.one_of(counts, st.just(2**63)),
                cap=counts, seed=st.integers(0, 2**32))
    def setup(self, ncells, limit, cap, seed):
        origin = (1_700_000_000_000_000_000, 123_456_789)
        self.ring = Ring.create(ncells, limit, cap, origin)
        self.model = RingModel(ncells, limit, cap)
        self.rng = random.Random(seed)
        assert self.ring.max_record == self.model.max_record
        s = self.ring.stats()
        assert (s.ncells, s.origin_realtime_ns, s.origin_monotonic_ns) == (ncells, *origin)

    def teardown(self):
        ring = getattr(self, "ring", None)
        if ring is not None:
            ring.close()

    @rule(length=string_lengths, split=st.floats(0, 1))
    def publish(self, length, split):
        self._publish(length, split)

    @rule(lengths=st.lists(st.integers(0, 700), min_size=2, max_size=30))
    def publish_burst(self, lengths):
        # Many records between two drains: the way a small ring fills up.
        for length in lengths:
            self._publish(length, 0.5)

    def _publish(self, length, split):
        url_len = int(length * split)
        rec = make_record(self.rng, url_len, length - url_len)
        strings = self.rng.randbytes(length)
        record = bytes(ffi.buffer(rec))
        expected = self.model.publish(record, strings)
        if expected == "TOOBIG":
            with pytest.raises(NativeError) as info:
                self.ring.publish(rec, strings)
            assert info.value.status == lib.RT_ETOOBIG
            event("publish: too big")
        else:
            assert self.ring.publish(rec, strings) == expected
            event(f"publish: {'ring full' if expected & PUB_RING_FULL else 'accepted'}")
            if self.model.tail > self.model.ncells:
                event("ring wrapped")
        assert bytes(ffi.buffer(rec)) == record  # the caller's record is left alone

    @rule(length=st.integers(1, 100), delta=st.sampled_from([-1, 1]))
    def publish_with_wrong_lengths(self, length, delta):
        rec = make_record(self.rng, length + delta, 0)
        with pytest.raises(NativeError) as info:
            self.ring.publish(rec, bytes(length))
        assert info.value.status == lib.RT_EINVAL

    @rule(max_count=st.one_of(st.just(1 << 20), st.integers(0, 5)),
          cap=st.one_of(st.just(1 << 16), st.integers(0, 4000)),
          offset=st.integers(0, 3))
    def drain(self, max_count, cap, offset):
        offset *= 8
        buf = bytearray(b"\xee" * (offset + cap))
        used, count, klass = self.ring.drain_into(buf, offset, max_count)
        m_used, m_count, m_klass, data = self.model.drain(cap, max_count)
        assert (used, count) == (m_used, m_count)
        if count:
            assert klass == m_klass
            assert bytes(buf[offset:offset + used]) == data
            # What the consumer sees: every record of the run carries the run's class.
            for off, n in iter_records(buf, offset, offset + used):
                assert RECORD.unpack_from(buf, off)[23] & CLASS_MASK == klass
        assert buf[:offset] == b"\xee" * offset

    @rule()
    def drain_everything(self):
        buf = bytearray(1 << 16)
        for _ in range(10_000):
            used, count, klass = self.ring.drain_into(buf, 0)
            m_used, m_count, m_klass, data = self.model.drain(len(buf), 1 << 20)
            assert (used, count, klass) == (m_used, m_count, m_klass)
            assert bytes(buf[:used]) == data
            if count == 0:
                break
        assert not self.model.queue
        s = self.ring.stats()
        assert s.head == s.tail

    @rule(limit=st.one_of(counts, st.just(2**64 - 1)))
    def set_limit(self, limit):
        self.ring.set_limit(limit)
        self.model.limit = min(limit, UNLIMITED)

    @rule(cap=counts)
    def set_secondary_cap(self, cap):
        self.ring.set_secondary_cap(cap)
        self.model.secondary_cap = cap

    @rule(want=counts)
    def claim_primary(self, want):
        assert self.ring.claim_primary(want) == self.model.claim_primary(want)

    @rule(n=counts)
    def release_primary(self, n):
        self._release("primary", self.ring.release_primary, n)

    @rule(n=counts)
    def release_secondary(self, n):
        self._release("secondary", self.ring.release_secondary, n)

    def _release(self, counter, release, n):
        if self.model.release(counter, n):
            release(n)
        else:
            with pytest.raises(NativeError) as info:
                release(n)
            assert info.value.status == lib.RT_EINVAL

    @rule()
    def try_set_pending(self):
        assert self.ring.try_set_pending() == self.model.try_set_pending()

    @rule()
    def clear_pending(self):
        self.ring.clear_pending()
        self.model.pending = 0

    @precondition(lambda self: hasattr(self, "ring"))
    @invariant()
    def counters_match(self):
        assert stats_tuple(self.ring) == model_tuple(self.model)
        s = self.ring.stats()
        assert 0 <= s.tail - s.head <= s.ncells


RingMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRingAgainstModel = RingMachine.TestCase


# --------------------------------------------------------------- fixed scenarios

ORIGIN = (0, 0)


def publish_n(ring: Ring, n: int, strings: bytes = b"x" * 10):
    rec = ffi.new("rt_record *")
    rec.url_len = len(strings)
    return [ring.publish(rec, strings) for _ in range(n)]


def test_transport_capacity_and_ring_full_writes_nothing():
    ring = Ring.create(64, UNLIMITED, 0, ORIGIN)
    try:
        # 184 + 84 + 8 = 276 bytes -> 5 cells; 12 fit in 64 cells (60), the 13th does not.
        strings = b"u" * 84
        assert cells_for(len(strings)) == 5
        results = publish_n(ring, 13, strings)
        assert results[:12] == [PUB_PRIMARY] * 12
        assert results[12] == PUB_RING_FULL
        s = ring.stats()
        assert (s.tail, s.published, s.rejected_ring_full, s.primary) == (60, 12, 1, 12)
        # Draining one record makes room for exactly one more.
        buf = bytearray(1 << 12)
        assert ring.drain_into(buf, 0, 1)[1] == 1
        assert publish_n(ring, 2, strings) == [PUB_PRIMARY, PUB_RING_FULL]
    finally:
        ring.close()


def test_wraparound_keeps_bytes_intact():
    ring = Ring.create(64, UNLIMITED, 0, ORIGIN)
    rng = random.Random(7)
    buf = bytearray(1 << 14)
    try:
        for round_ in range(200):
            rec = make_record(rng, 0, 0)
            strings = rng.randbytes(rng.randrange(0, 900))
            rec.url_len = len(strings)
            expected = bytes(ffi.buffer(rec))
            assert ring.publish(rec, strings) & PUB_PRIMARY
            used, count, klass = ring.drain_into(buf, 0)
            assert (count, klass) == (1, 0)
            n = int.from_bytes(buf[:8], "little")
            assert n == RECORD_SIZE + len(strings)
            got = bytes(buf[8:8 + n])
            assert got[FLAGS_OFFSET + 2:RECORD_SIZE] == expected[FLAGS_OFFSET + 2:RECORD_SIZE]
            assert got[:FLAGS_OFFSET] == expected[:FLAGS_OFFSET]
            assert got[RECORD_SIZE:] == strings
        assert ring.stats().head > 64 * 10  # went round many times
    finally:
        ring.close()


def test_classification_sequence():
    # limit 2, overflow room 2: P P S(+full) S D D; nothing moves pending back.
    ring = Ring.create(256, 2, 2, ORIGIN)
    try:
        assert publish_n(ring, 6) == [
            PUB_PRIMARY, PUB_PRIMARY, PUB_SECONDARY | PUB_BECAME_FULL,
            PUB_SECONDARY, PUB_DROPPED, PUB_DROPPED,
        ]
        buf = bytearray(1 << 14)
        runs = []
        while True:
            used, count, klass = ring.drain_into(buf, 0)
            if not count:
                break
            runs.append((count, klass))
        assert runs == [(2, 0), (2, FLAG_SECONDARY), (2, FLAG_DROPPED)]
        s = ring.stats()
        assert (s.primary, s.secondary, s.pending, s.dropped_overflow) == (2, 2, 1, 2)
        # While pending, even a freed primary slot is not used by producers.
        ring.release_primary(2)
        assert publish_n(ring, 1) == [PUB_DROPPED]
        ring.release_secondary(2)
        ring.clear_pending()
        assert publish_n(ring, 1) == [PUB_PRIMARY]
    finally:
        ring.close()


def test_too_big_and_invalid_sizes():
    ring = Ring.create(64, UNLIMITED, 0, ORIGIN)
    try:
        assert ring.max_record == 32 * 56 - 8
        rec = ffi.new("rt_record *")
        rec.url_len = ring.max_record - RECORD_SIZE
        assert ring.publish(rec, bytes(rec.url_len)) == PUB_PRIMARY
        rec.url_len += 1
        with pytest.raises(NativeError) as info:
            ring.publish(rec, bytes(rec.url_len))
        assert info.value.status == lib.RT_ETOOBIG
        # A drain buffer too small for the first record consumes nothing.
        assert ring.drain_into(bytearray(100), 0) == (-1, 0, 0)
        assert ring.drain_into(bytearray(100), 100) == (-1, 0, 0)
        assert ring.drain_into(bytearray(1 << 12), 0)[1] == 1
    finally:
        ring.close()
    for bad in (0, 32, 63, 65, 100):
        with pytest.raises(NativeError):
            Ring.create(bad, 1, 1, ORIGIN)


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 1500), min_size=1, max_size=40))
def test_cells_per_record(lengths):
    ring = Ring.create(256, UNLIMITED, 0, ORIGIN)
    try:
        rec = ffi.new("rt_record *")
        tail = 0
        buf = bytearray(1 << 14)
        for n in lengths:
            rec.url_len = n
            assert ring.publish(rec, bytes(n)) == PUB_PRIMARY
            tail += cells_for(n)
            assert ring.stats().tail == tail
            assert ring.drain_into(buf, 0)[1] == 1
    finally:
        ring.close()


def test_record_struct_matches_c_layout():
    assert struct.calcsize("<17q4qIHHII") == ffi.sizeof("rt_record") == 184
    assert ffi.offsetof("rt_record", "flags") == FLAGS_OFFSET == 174
    assert ffi.offsetof("rt_record", "url_len") == 176
    assert ffi.offsetof("rt_record", "text_len") == 180
