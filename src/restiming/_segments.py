"""POSIX shared-memory segments of shared timelines: unlinking ours when the owner
closes or exits, and removing those left behind by owners that were killed.
"""

from __future__ import annotations

import os
import re

from restiming._exceptions import SharedTimelineError
from restiming._ring import Ring

__all__ = ["remove_stale_segments"]

_SHM_DIR = "/dev/shm"
_SEGMENT = re.compile(r"^restiming-(\d+)-[0-9a-f]{12}$")


def remove_stale_segments() -> list[str]:
    """Unlink shared timelines whose owner process is gone (killed before it could
    clean up). Returns the names removed. Segments of live processes, or of other
    users, are left alone."""
    removed = []
    try:
        names = os.listdir(_SHM_DIR)
    except OSError:
        return removed
    for entry in names:
        match = _SEGMENT.match(entry)
        if match is None:
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
        except SharedTimelineError:
            pass  # raced with another cleaner, or not ours
    return removed


def _release_shared(ring: Ring, name: str, pid: int) -> None:
    if os.getpid() == pid:
        Ring.unlink(name)
    ring.close()
