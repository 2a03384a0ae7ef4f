"""Text rendering of one fetch: status line, sizes, Server-Timing and a waterfall of
the phases with milliseconds and proportional bars (like httpstat, but from the full
Resource Timing record). Pure: takes an entry (and response facts), returns text.
"""

from __future__ import annotations

import errno

from restiming._url import parse_url
from restiming.phases import PHASES, phase_spans

__all__ = ["render_fetch", "render_error", "LABELS"]

LABELS = {
    "redirect": "redirect",
    "queue": "queue",
    "dns": "DNS",
    "connect": "connect",
    "tls": "TLS",
    "request": "request",
    "wait": "wait",
    "receive": "receive",
}
BAR_WIDTH = 48


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


def _bars(entry, width: int = BAR_WIDTH, glyph: str = "█") -> list[str]:
    spans = phase_spans(entry)
    start = entry.start_time
    end = entry.response_end or start
    total = max(end - start, 1e-9)
    lines = []
    for name in PHASES:
        span = spans[name]
        if span is None:
            continue
        a, b = span
        ms = max(b - a, 0.0)
        left = int(round((a - start) / total * width))
        length = max(1, int(round(ms / total * width)))
        left = min(left, width - length)
        bar = " " * max(left, 0) + glyph * length
        lines.append(f"  {LABELS[name]:<9}{ms:>10.3f} ms  │{bar:<{width}}│")
    lines.append(f"  {'total':<9}{entry.duration:>10.3f} ms")
    return lines


def render_fetch(entry, *, method: str = "GET", status_text: str = "", http_version: str = "",
                 history=()) -> str:
    """The block printed for one successful fetch."""
    out = [f"{method} {entry.name}"]
    for status, url in history:
        out.append(f"  ↳ {status} redirect from {url}")
    facts = [p for p in (entry.next_hop_protocol or http_version, entry.remote_address, entry.tls_version) if p]
    reused = " (reused connection)" if entry.connection_reused else ""
    out.append(f"  {entry.response_status} {status_text}".rstrip() + f"   {' · '.join(facts)}{reused}")
    if entry.error is None and not entry.request_start and entry.response_status:
        out.append("  timing hidden: the Timing-Allow-Origin check failed for this origin")
    sizes = (f"  transfer {_size(entry.transfer_size)} · encoded {_size(entry.encoded_body_size)}"
             f" · decoded {_size(entry.decoded_body_size)}")
    if entry.content_type:
        sizes += f" · {entry.content_type}"
    if entry.content_encoding:
        sizes += f" ({entry.content_encoding})"
    out.append(sizes)
    if entry.server_timing:
        metrics = ", ".join(
            m.name + (f" {m.duration:g} ms" if m.duration else "") + (f" ({m.description})" if m.description else "")
            for m in entry.server_timing)
        out.append(f"  server-timing: {metrics}")
    out.append("")
    out.extend(_bars(entry))
    return "\n".join(out) + "\n"


#: Where each error kind happened, for people.
ERROR_PHASES = {
    "dns": "DNS lookup",
    "connect": "TCP connect",
    "tls": "TLS handshake",
    "reset": "the exchange (connection reset)",
    "protocol": "reading the response (malformed HTTP)",
    "too_many_redirects": "redirects",
    "redirect_scheme": "redirects",
    "limit": "reading the response (limit exceeded)",
    "cancelled": "the fetch (cancelled)",
}


def _refused(exc) -> bool:
    """Whether the connect failure was a refused connection (the engine keeps the
    OSError as the cause)."""
    seen, cause = 0, exc.__cause__ or exc.__context__
    while cause is not None and seen < 10:
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED:
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return False


def _address(url: str) -> str:
    try:
        u = parse_url(url)
    except ValueError:
        return url
    return f"{u.host}:{u.port}" if ":" not in u.host else f"[{u.host}]:{u.port}"


def render_error(url: str, exc, *, method: str = "GET") -> str:
    entry = getattr(exc, "entry", None)
    kind = getattr(exc, "kind", "error")
    phase = ERROR_PHASES.get(kind, "the fetch")
    if kind == "timeout":
        phase = f"{getattr(exc, 'phase', 'total')} timeout"
    after = f" after {entry.duration:.3f} ms" if entry is not None else ""
    message = f"connection refused by {_address(url)}" if kind == "connect" and _refused(exc) else str(exc)
    return f"{method} {url}\n  error [{kind}] during {phase}{after}: {message}\n"
