"""The one module that imports the compiled core (``restiming._native``).

Everything else goes through ``ffi``/``lib`` from here, and every C status is
checked by :func:`ensure`, which turns a negative ``RT_E*`` code into a typed error.
"""

from __future__ import annotations

import os

__all__ = ["ffi", "lib", "ensure"]

try:
    from restiming._native import ffi, lib
except ImportError as exc:  # pragma: no cover - exercised by hand, not in CI
    raise ImportError(
        "restiming's C core (restiming._native) is missing or broken: "
        f"{exc}. Rebuild it with `pip install --force-reinstall --no-deps .` "
        "from the source tree (needs a C compiler and Python headers); "
        "there is no pure-Python fallback."
    ) from exc

from restiming._exceptions import NativeError, SharedTimelineError

_MESSAGES = {
    lib.RT_EINVAL: "invalid argument",
    lib.RT_ENOMEM: "out of memory",
    lib.RT_ESYS: "system call failed",
    lib.RT_ENOENT: "no such shared timeline segment",
    lib.RT_EFOREIGN: "segment is not a restiming timeline of this version",
    lib.RT_ETOOBIG: "record larger than the ring can hold",
    lib.RT_EEXIST: "shared timeline segment already exists",
    lib.RT_ETRUNC: "shared timeline segment was truncated by another process",
}
_SHARED = {lib.RT_ENOENT, lib.RT_EFOREIGN, lib.RT_EEXIST, lib.RT_ETRUNC}


def ensure(status: int, what: str) -> int:
    """Return ``status`` if it is not a failure, else raise the matching error."""
    if status >= 0:
        return status
    message = f"{what}: {_MESSAGES.get(status, f'status {status}')}"
    if status == lib.RT_ESYS:
        err = ffi.errno
        message += f" ({os.strerror(err)})" if err else ""
    if status in _SHARED:
        raise SharedTimelineError(message)
    raise NativeError(message, status)
