"""Bounds on the strings of one entry, so that a record always fits its ring.

A fetch that succeeded always returns its response and records its entry (SPEC §4):
instead of refusing a record that is too large, ``fit_strings`` shortens the strings
that can grow without bound, in a documented order, and marks what it cut. Pure
functions over values; the recorder calls them only when a record is oversized.
https://w3c.github.io/server-timing/#the-performanceservertiming-interface
"""

from __future__ import annotations

from restiming._fields import TEXTS
from restiming._servertiming import PerformanceServerTiming, format_server_timing, parse_server_timing

__all__ = ["MAX_SERVER_TIMING_BYTES", "MAX_TEXT_BYTES", "TRUNCATION_MARKER", "DROPPED_METRIC",
           "FAST_TEXT_BOUND", "fit_strings"]

#: UTF-8 bytes of Server-Timing kept per entry. Metrics are kept whole, in header
#: order, while they fit; the rest are dropped and counted in one last metric named
#: ``DROPPED_METRIC`` whose description is the number dropped.
MAX_SERVER_TIMING_BYTES = 16 * 1024
#: UTF-8 bytes kept of every other string of an entry except the URL (content type,
#: error message, remote address...); longer ones end with ``TRUNCATION_MARKER``.
MAX_TEXT_BYTES = 1024
#: Appended to a string restiming shortened.
TRUNCATION_MARKER = "…[truncated]"
#: Name of the metric that counts the Server-Timing metrics dropped.
DROPPED_METRIC = "restiming-dropped"
#: Below this many bytes of strings no per-field bound can apply (the hot path's test).
FAST_TEXT_BOUND = MAX_TEXT_BYTES

_ST = TEXTS.index("server_timing")
_MSG = TEXTS.index("error_message")
_MARKER_B = TRUNCATION_MARKER.encode()


def _size(s: str) -> int:
    return len(s.encode("utf-8", "surrogateescape"))


def shorten(s: str, max_bytes: int) -> str:
    """``s`` if it fits in ``max_bytes`` UTF-8 bytes, else a prefix (whole characters)
    ending with ``TRUNCATION_MARKER``, within ``max_bytes`` (empty if even the marker
    does not fit)."""
    b = s.encode("utf-8", "surrogateescape")
    if len(b) <= max_bytes:
        return s
    room = max_bytes - len(_MARKER_B)
    if room < 0:
        return ""
    # "ignore" drops a character cut in half at the end.
    return b[:room].decode("utf-8", "ignore") + TRUNCATION_MARKER


def cap_server_timing(value: str, max_bytes: int) -> str:
    """Keep whole metrics of the Server-Timing value ``value`` while they fit in
    ``max_bytes``, plus a ``restiming-dropped;desc=N`` metric when N were dropped."""
    if _size(value) <= max_bytes:
        return value
    metrics = parse_server_timing(value)
    kept: list[PerformanceServerTiming] = []
    used = 0
    for i, metric in enumerate(metrics):
        dropped = len(metrics) - i
        part = _size(format_server_timing((metric,))) + 2
        tail = _size(format_server_timing((_dropped(dropped - 1),))) + 2 if dropped > 1 else 0
        if used + part + tail > max_bytes:
            break
        kept.append(metric)
        used += part
    dropped = len(metrics) - len(kept)
    if dropped:
        marker = _dropped(dropped)
        if _size(format_server_timing(kept + [marker])) <= max_bytes:
            kept.append(marker)
    return format_server_timing(kept)


def _dropped(n: int) -> PerformanceServerTiming:
    return PerformanceServerTiming(DROPPED_METRIC, 0.0, str(n))


def fit_strings(url: str, texts: list[str], budget: int) -> tuple[str, list[str]]:
    """Bound ``texts`` (in ``_fields.TEXTS`` order) and ``url`` so that their UTF-8
    bytes plus one separator between texts fit in ``budget`` bytes.

    First the fixed bounds (Server-Timing, every other text); then, if the ring's
    record limit is still exceeded (a very small ring, or a huge URL), in this order:
    fewer Server-Timing metrics, a shorter error message, a shorter URL, shorter
    other strings. The URL is only ever shortened in that last case."""
    texts = list(texts)
    texts[_ST] = cap_server_timing(texts[_ST], MAX_SERVER_TIMING_BYTES)
    for i, t in enumerate(texts):
        if i != _ST:
            texts[i] = shorten(t, MAX_TEXT_BYTES)

    def excess() -> int:
        return _size(url) + sum(_size(t) for t in texts) + len(texts) - 1 - budget

    over = excess()
    if over > 0:
        texts[_ST] = cap_server_timing(texts[_ST], max(0, _size(texts[_ST]) - over))
        over = excess()
    if over > 0:
        texts[_MSG] = shorten(texts[_MSG], max(0, _size(texts[_MSG]) - over))
        over = excess()
    if over > 0:
        url = shorten(url, max(len(_MARKER_B), _size(url) - over))
        over = excess()
    while over > 0:
        i = max(range(len(texts)), key=lambda j: _size(texts[j]))
        size = _size(texts[i])
        if size == 0:
            url = shorten(url, max(0, _size(url) - over))
            break
        texts[i] = shorten(texts[i], max(0, min(size - over, size // 2)))
        over = excess()
    return url, texts
