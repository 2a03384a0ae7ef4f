"""The ``resourcetimingbufferfull`` event and how exceptions in user callbacks are
reported (never propagated into the code that recorded the entry, as on the web).
https://w3c.github.io/resource-timing/#dom-performance-onresourcetimingbufferfull
"""

from __future__ import annotations

import asyncio
import sys

__all__ = ["ResourceTimingBufferFullEvent"]


class ResourceTimingBufferFullEvent:
    """The ``resourcetimingbufferfull`` event (a plain Event: does not bubble)."""

    __slots__ = ("type", "target", "time_stamp")
    bubbles = False
    cancelable = False

    def __init__(self, target) -> None:  # target: the Performance that fired it
        self.type = "resourcetimingbufferfull"
        self.target = target
        self.time_stamp = target.now()

    def __repr__(self) -> str:
        return f"<ResourceTimingBufferFullEvent time_stamp={self.time_stamp:.3f}>"


def _report(exc: BaseException, what: str) -> None:
    """An exception in a user callback is reported, never propagated (as on the web)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        loop.call_exception_handler({"message": f"restiming: exception in {what}", "exception": exc})
    else:
        sys.unraisablehook(sys.UnraisableHookArgs(type(exc), exc, exc.__traceback__,
                                                  f"restiming: exception in {what}", None))
