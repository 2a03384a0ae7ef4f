"""Shared timelines' POSIX shared-memory segments: their names, unlinking ours when
the owner closes or exits, removing those left behind by killed owners, and the
owner's watch for a record whose producer died mid-publish.
"""

from __future__ import annotations

import os
import re
import secrets
import time

from restiming._exceptions import NativeError, SharedTimelineError
from restiming._ring import Ring

__all__ = ["remove_stale_segments", "new_segment_name", "check_segment_name", "StuckWatch",
           "STUCK_RECORD_TIMEOUT"]

_SHM_DIR = "/dev/shm"
_SEGMENT = re.compile(r"^restiming-(\d+)-[0-9a-f]{12}$")
# POSIX shm names: one leading "/", then a portable file name (NAME_MAX is 255).
_NAME = re.compile(r"^/[A-Za-z0-9._-]{1,250}$")
#: Seconds a record may stay reserved but uncommitted at the head of a shared ring
#: before the owner takes its producer for dead, skips it and counts it lost
#: (``stats().lost_stuck``). A producer stopped (not dead) for longer than this loses
#: that record too.
STUCK_RECORD_TIMEOUT = 2.0


def new_segment_name() -> str:
    return f"/restiming-{os.getpid()}-{secrets.token_hex(6)}"


def check_segment_name(name: object) -> str:
    """``name`` with its leading "/", or ``SharedTimelineError`` if it cannot be a
    shared timeline's segment (empty, a path, too long, odd characters)."""
    if not isinstance(name, str) or not name:
        raise SharedTimelineError(f"shared timeline name must be a non-empty str, got {name!r}")
    full = name if name.startswith("/") else "/" + name
    if not _NAME.match(full) or full in ("/.", "/.."):
        raise SharedTimelineError(
            f"not a shared timeline name: {name!r} (expected what share_name returned, "
            "e.g. '/restiming-123-0123456789ab')")
    return full


def remove_stale_segments() -> list[str]:
    """Unlink shared timelines whose owner process is gone (killed before it could
    clean up). Returns the names removed. Segments of live processes, and every
    segment of another user, are left alone."""
    removed = []
    try:
        names = os.listdir(_SHM_DIR)
    except OSError:
        return removed
    uid = os.getuid()
    for entry in names:
        match = _SEGMENT.match(entry)
        if match is None:
            continue
        try:
            if os.stat(os.path.join(_SHM_DIR, entry)).st_uid != uid:
                continue  # not ours to judge, even for root
        except OSError:
            continue
        pid = int(match.group(1))
        try:
            os.kill(pid, 0)
            continue  # alive (or pid reused): not ours to judge
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's live process
        try:
            if Ring.unlink("/" + entry):
                removed.append("/" + entry)
        except (SharedTimelineError, NativeError):
            pass  # raced with another cleaner, or not ours
    return removed


def release_shared(ring: Ring, name: str, pid: int, lock) -> None:
    """The owner's finalizer: unlink the segment (in the creating process only) and
    unmap it, under the timeline's lock so no producer thread is inside the ring."""
    with lock:
        if os.getpid() == pid:
            try:
                Ring.unlink(name)
            except (SharedTimelineError, NativeError):
                pass  # already gone
        ring.close()


class StuckWatch:
    """Notices the head of a shared ring staying on one uncommitted record and, past
    ``STUCK_RECORD_TIMEOUT``, steps over it (the ring counts it in ``lost_stuck``)."""

    __slots__ = ("at", "since", "timeout")

    def __init__(self, timeout: float = STUCK_RECORD_TIMEOUT) -> None:
        self.at = -1
        self.since = 0.0
        self.timeout = timeout

    def check(self, ring: Ring) -> bool:
        """Call after a drain that found nothing ready; True when a record was skipped."""
        stats = ring.stats()
        if stats.head == stats.tail:
            self.at = -1
            return False
        now = time.monotonic()
        if stats.head != self.at:
            self.at, self.since = stats.head, now
            return False
        if now - self.since < self.timeout:
            return False
        self.at = -1
        return ring.skip_stuck(stats.head) > 0
