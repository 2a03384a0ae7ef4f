"""Idiomatic wrapper over the C ring (see csrc/rt_ring.h for its theory of operation).

``Ring`` owns one ``rt_ring *`` (process-local heap memory, or a POSIX shared-memory
segment) and exposes publish / drain / counter operations with every status checked
through ``ensure``. ``Store`` is the consumer side's compact storage: drained records
stay packed in large bytearrays (no Python object per entry) until someone asks.
"""

from __future__ import annotations

from collections import namedtuple

from restiming._binding import ensure, ffi, lib

__all__ = ["Ring", "RingStats", "Store", "iter_records"]

RingStats = namedtuple(
    "RingStats",
    "ncells head tail primary limit secondary secondary_cap dropped_overflow "
    "rejected_ring_full published pending owner_pid origin_realtime_ns origin_monotonic_ns "
    "corrupt_records lost_stuck",
)

_UNLIMITED = 2**62


class Ring:
    """One ring. ``ncells`` cells of 64 bytes; a typical record takes 4-5 cells."""

    __slots__ = ("ptr", "name", "shared", "max_record", "_closed", "_stats")

    def __init__(self, ptr, name: str | None, shared: bool) -> None:
        self.ptr = ptr
        self.name = name
        self.shared = shared
        self.max_record = int(lib.rt_ring_max_record(ptr))
        self._closed = False
        self._stats = ffi.new("rt_ring_stats *")

    @classmethod
    def create(cls, ncells: int, limit: int, secondary_cap: int, origin: tuple[int, int]) -> "Ring":
        out = ffi.new("rt_ring **")
        ensure(lib.rt_ring_create(ncells, min(limit, _UNLIMITED), secondary_cap, origin[0], origin[1], out),
               "creating the ring")
        return cls(out[0], None, False)

    @classmethod
    def create_shared(cls, name: str, ncells: int, limit: int, secondary_cap: int,
                      origin: tuple[int, int]) -> "Ring":
        out = ffi.new("rt_ring **")
        ensure(lib.rt_ring_create_shared(name.encode(), ncells, min(limit, _UNLIMITED), secondary_cap,
                                         origin[0], origin[1], out),
               f"creating shared timeline {name!r}")
        return cls(out[0], name, True)

    @classmethod
    def attach(cls, name: str) -> "Ring":
        out = ffi.new("rt_ring **")
        ensure(lib.rt_ring_attach(name.encode(), out), f"attaching shared timeline {name!r}")
        return cls(out[0], name, True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            ensure(lib.rt_ring_close(self.ptr), "closing the ring")
            self.ptr = ffi.NULL

    @staticmethod
    def unlink(name: str) -> bool:
        status = lib.rt_ring_unlink(name.encode())
        if status == lib.RT_ENOENT:
            return False
        ensure(status, f"unlinking shared timeline {name!r}")
        return True

    def publish(self, rec, strings: bytes) -> int:
        return ensure(lib.rt_ring_publish(self.ptr, rec, strings, len(strings)), "publishing a record")

    def publish_raw(self, packed: bytes) -> int:
        """Publish one packed record (``_fields.RECORD`` then its strings)."""
        return ensure(lib.rt_ring_publish_raw(self.ptr, packed, len(packed)), "publishing a record")

    def skip_stuck(self, at: int) -> int:
        """Step over a reservation stuck at head position ``at``; cells skipped (0: none)."""
        skipped = ffi.new("uint64_t *")
        ensure(lib.rt_ring_skip_stuck(self.ptr, at, skipped), "skipping a stuck record")
        return int(skipped[0])

    def drain_into(self, buf: bytearray, offset: int, max_count: int = 1 << 20):
        """Drain one same-class run into ``buf[offset:]``; returns (used, count, klass).

        ``used`` is -1 when the first waiting record does not fit in the space left.
        """
        used = ffi.new("size_t *")
        count = ffi.new("uint32_t *")
        klass = ffi.new("uint32_t *")
        cap = len(buf) - offset
        if cap <= 0:
            return -1, 0, 0
        status = lib.rt_ring_drain(self.ptr, ffi.from_buffer(buf) + offset, cap, max_count, used, count, klass)
        if status == lib.RT_ETOOBIG:
            return -1, 0, 0
        ensure(status, "draining the ring")
        return int(used[0]), int(count[0]), int(klass[0])

    def stats(self) -> RingStats:
        s = self._stats
        ensure(lib.rt_ring_stats_get(self.ptr, s), "reading ring stats")
        return RingStats(s.ncells, s.head, s.tail, s.primary, s.limit, s.secondary, s.secondary_cap,
                         s.dropped_overflow, s.rejected_ring_full, s.published, s.pending,
                         s.owner_pid, s.origin_realtime_ns, s.origin_monotonic_ns,
                         s.corrupt_records, s.lost_stuck)

    def set_limit(self, limit: int) -> None:
        ensure(lib.rt_ring_set_limit(self.ptr, min(limit, _UNLIMITED)), "setting the buffer size")

    def set_secondary_cap(self, cap: int) -> None:
        ensure(lib.rt_ring_set_secondary_cap(self.ptr, cap), "setting the overflow room")

    def claim_primary(self, want: int) -> int:
        got = ffi.new("uint64_t *")
        ensure(lib.rt_ring_claim_primary(self.ptr, want, got), "claiming buffer slots")
        return int(got[0])

    def release_primary(self, n: int) -> None:
        if n:
            ensure(lib.rt_ring_release_primary(self.ptr, n), "releasing buffer slots")

    def release_secondary(self, n: int) -> None:
        if n:
            ensure(lib.rt_ring_release_secondary(self.ptr, n), "releasing overflow slots")

    def try_set_pending(self) -> bool:
        won = ffi.new("uint32_t *")
        ensure(lib.rt_ring_try_set_pending(self.ptr, won), "setting the pending flag")
        return bool(won[0])

    def clear_pending(self) -> None:
        ensure(lib.rt_ring_clear_pending(self.ptr), "clearing the pending flag")


def iter_records(buf, start: int, end: int):
    """Yield (offset of the record body, padded size) for each drained record."""
    pos = start
    while pos < end:
        n = int.from_bytes(buf[pos : pos + 8], "little")
        yield pos + 8, n
        pos += 8 + ((n + 7) & ~7)


class Store:
    """Packed records in 256 KiB chunks; one list slot per chunk, none per entry."""

    CHUNK = 1 << 18
    __slots__ = ("chunks", "count")

    def __init__(self) -> None:
        self.chunks: list[list] = []  # [bytearray, used, count]
        self.count = 0

    def tail(self, need: int = 0) -> list:
        if self.chunks:
            last = self.chunks[-1]
            if len(last[0]) - last[1] > max(need, 512):
                return last
        chunk = [bytearray(max(self.CHUNK, need + 16)), 0, 0]
        self.chunks.append(chunk)
        return chunk

    def append_packed(self, data: bytes, count: int) -> None:
        chunk = self.tail(len(data))
        buf, used = chunk[0], chunk[1]
        buf[used : used + len(data)] = data
        chunk[1] = used + len(data)
        chunk[2] += count
        self.count += count

    def records(self):
        """Yield (buffer, offset) for every stored record, in arrival order."""
        for buf, used, _ in self.chunks:
            for off, _n in iter_records(buf, 0, used):
                yield buf, off

    def clear(self) -> int:
        n = self.count
        self.chunks = []
        self.count = 0
        return n
