"""Phase breakdown of an entry: the durations people read (queue, DNS, connect, TLS,
request, wait, receive, total), derived from the Resource Timing stamps by one table.

Each phase is (name, start stamp, end stamp, condition); a phase whose stamps are 0 or
that did not happen (DNS/connect on a reused connection, TLS on plain HTTP) is
``None``. ``queue`` is time waiting for a connection: before DNS on a new
connection, before the request on a reused one. Used by the CLI's waterfall, the
load generator's histograms and the HAR export, so all three agree.
https://w3c.github.io/resource-timing/#attribute-descriptions
"""

from __future__ import annotations

__all__ = ["PHASES", "phase_durations", "phase_spans"]

#: Display phases, in waterfall order.
PHASES = ("redirect", "queue", "dns", "connect", "tls", "request", "wait", "receive")


def _get(entry, name: str) -> float:
    if isinstance(entry, dict):
        return entry.get(name) or 0.0
    return getattr(entry, name) or 0.0


def phase_spans(entry) -> dict[str, tuple[float, float] | None]:
    """Each phase's (start, end) in the entry's milliseconds, or None if absent."""
    g = lambda n: _get(entry, n)  # noqa: E731
    fetch, dls, dle, cs, ce = g("fetch_start"), g("domain_lookup_start"), g("domain_lookup_end"), \
        g("connect_start"), g("connect_end")
    scs, reqs, reqe, rs, rend = g("secure_connection_start"), g("request_start"), g("request_end"), \
        g("response_start"), g("response_end")
    rds, rde = g("redirect_start"), g("redirect_end")
    reused = bool(_get(entry, "connection_reused")) or (dls and dls == fetch and ce == fetch)
    spans: dict[str, tuple[float, float] | None] = dict.fromkeys(PHASES)
    if rds and rde:
        spans["redirect"] = (rds, rde)
    if not reqs:  # opaque or failed before a request: only the whole is known
        return spans
    if reused:
        spans["queue"] = (ce or fetch, reqs)
    else:
        if dls:
            spans["queue"] = (fetch, dls)
            spans["dns"] = (dls, dle)
        if cs:
            tcp_end = scs if scs and scs >= cs else ce
            spans["connect"] = (cs, tcp_end)
            if scs and ce >= scs:
                spans["tls"] = (scs, ce)
    sent = reqe or reqs
    spans["request"] = (reqs, sent)
    if rs:
        spans["wait"] = (sent if sent <= rs else reqs, rs)
        if rend:
            spans["receive"] = (rs, rend)
    return spans


def phase_durations(entry) -> dict[str, float | None]:
    """Durations in ms of each phase (None when absent), plus ``total`` (the
    entry's duration) and, when the entry has an intended start, ``corrected``:
    response_end minus the intended start (latency without coordinated omission)."""
    out: dict[str, float | None] = {}
    for name, span in phase_spans(entry).items():
        out[name] = None if span is None else max(span[1] - span[0], 0.0)
    out["total"] = _get(entry, "duration")
    intended = _get(entry, "intended_start")
    rend = _get(entry, "response_end")
    out["corrected"] = (rend - intended) if intended and rend else None
    return out
