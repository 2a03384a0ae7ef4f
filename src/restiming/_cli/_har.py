"""HAR 1.2 export of Resource Timing entries (http://www.softwareishard.com/blog/har-12-spec/).

Strategy: one pure function from plain records (an entry's ``to_dict()`` plus the
owning timeline's ``time_origin`` and optional request/response facts) to the HAR
``log`` object. Every duration comes from ``restiming.phases.phase_durations`` so the
HAR, the CLI waterfall and the bench histograms agree to the microsecond.

HAR 1.2 timing rules applied here:

- ``blocked``, ``dns``, ``connect`` and ``ssl`` are -1 when the phase did not happen
  (a reused connection has no DNS or connect, plain HTTP no TLS); ``blocked`` is the
  ``queue`` phase.
- ``connect`` includes ``ssl`` (HAR 1.2 keeps HAR 1.1 readers working that way), so
  ``connect = tcp + tls`` and ``ssl`` is reported on its own as well.
- ``send``, ``wait`` and ``receive`` are required and non-negative: 0 when absent.
- ``time`` is the sum of the non-negative values among blocked, dns, connect, send,
  wait and receive (not ``ssl``, which is already inside ``connect``).

An opaque entry (network error or failed Timing-Allow-Origin check) exposes no phase,
so its timings are all -1 / 0 and its ``time`` is 0, as browsers export failed
requests; the real elapsed time is kept in the custom ``_duration`` field, the
redirect phase (which HAR has no slot for) in ``_redirect``. Custom fields start with
an underscore, as HAR 1.2 requires.
"""

from __future__ import annotations

import http
import json
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from restiming.phases import phase_durations

__all__ = ["har_document", "har_entry", "har_header", "har_footer", "har_record", "har_timings"]

HAR_VERSION = "1.2"
# ALPN protocol ids (what next_hop_protocol holds) to HAR's httpVersion strings.
_ALPN_TO_HTTP = {"http/1.0": "HTTP/1.0", "http/1.1": "HTTP/1.1", "h2": "HTTP/2", "h2c": "HTTP/2", "h3": "HTTP/3"}
# Methods whose request normally has no body: 0 bytes rather than "unknown" (-1).
_BODYLESS = frozenset({"GET", "HEAD"})


def har_record(entry, time_origin: float, **extra: Any) -> dict[str, Any]:
    """The record ``har_document`` takes, from an entry (or its ``to_dict()``), the
    owning timeline's ``time_origin`` and optional ``method``, ``request_headers``,
    ``response_headers``, ``http_version``, ``status_text``, ``request_body_size``."""
    record = dict(entry) if isinstance(entry, Mapping) else entry.to_dict()
    record["time_origin"] = time_origin
    record.update(extra)
    return record


def _ms(value: float) -> float:
    # Microsecond resolution is what the clock pairing gives; more digits are noise.
    return round(value, 3)


def har_timings(record: Mapping[str, Any]) -> dict[str, float]:
    """The HAR ``timings`` object of one record (see the module docstring)."""
    d = phase_durations(record)
    tcp, tls = d["connect"], d["tls"]
    timings = {
        "blocked": -1 if d["queue"] is None else _ms(d["queue"]),
        "dns": -1 if d["dns"] is None else _ms(d["dns"]),
        "connect": -1 if tcp is None and tls is None else _ms((tcp or 0.0) + (tls or 0.0)),
        "send": _ms(d["request"] or 0.0),
        "wait": _ms(d["wait"] or 0.0),
        "receive": _ms(d["receive"] or 0.0),
        "ssl": -1 if tls is None else _ms(tls),
    }
    return timings


def har_time(timings: Mapping[str, float]) -> float:
    """HAR ``time``: the non-negative timings summed, ``ssl`` excluded (it is inside
    ``connect``)."""
    total = 0.0
    for key in ("blocked", "dns", "connect", "send", "wait", "receive"):
        if timings[key] >= 0:
            total += timings[key]
    return _ms(total)


def _iso(epoch_ms: float) -> str:
    stamp = datetime.fromtimestamp(epoch_ms / 1000.0, tz=timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")  # HTTP field bytes, lossless
    return str(value)


def _headers(headers: Any) -> list[dict[str, str]]:
    if not headers:
        return []
    if hasattr(headers, "items"):  # a mapping or restiming.Headers
        headers = headers.items()
    return [{"name": _text(n), "value": _text(v)} for n, v in headers]


def _http_version(record: Mapping[str, Any]) -> str:
    if record.get("http_version"):
        return str(record["http_version"])
    protocol = (record.get("next_hop_protocol") or "").lower()
    # restiming's engine speaks HTTP/1.1 only; an opaque entry hides the protocol.
    return _ALPN_TO_HTTP.get(protocol, protocol.upper() or "HTTP/1.1")


def _server_ip(remote_address: str) -> str:
    # The engine writes "host:port" or "[v6]:port"; HAR wants the bare address.
    if not remote_address:
        return ""
    if remote_address.startswith("["):
        return remote_address[1:].split("]", 1)[0]
    if remote_address.count(":") == 1:
        return remote_address.rsplit(":", 1)[0]
    return remote_address  # a bare IPv6 address without port


def _server_timing(values: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for m in values or ():
        if not isinstance(m, Mapping):
            m = m.to_json()
        out.append({"name": m["name"], "duration": m["duration"], "description": m["description"]})
    return out


def _is_opaque(record: Mapping[str, Any]) -> bool:
    # decode_record gives transfer_size 0 exactly for opaque entries (TAO failure or
    # network error): their sizes are "not exposed", not "empty".
    if record.get("error"):
        return True
    return "transfer_size" in record and not record["transfer_size"]


def har_entry(record: Mapping[str, Any], *, pageref: str | None = None) -> dict[str, Any]:
    """One HAR ``entry`` object from one record."""
    url = str(record["name"])
    parts = urlsplit(url)
    method = str(record.get("method") or "GET").upper()
    status = int(record.get("response_status") or 0)
    opaque = _is_opaque(record)
    version = _http_version(record)
    encoded = int(record.get("encoded_body_size") or 0)
    decoded = int(record.get("decoded_body_size") or 0)
    status_text = record.get("status_text")
    if status_text is None:
        try:
            status_text = http.HTTPStatus(status).phrase
        except ValueError:
            status_text = ""

    content: dict[str, Any] = {"size": decoded, "mimeType": record.get("content_type") or "x-unknown"}
    if decoded - encoded > 0:
        content["compression"] = decoded - encoded
    body_size = record.get("request_body_size")
    if body_size is None:
        body_size = 0 if method in _BODYLESS else -1

    timings = har_timings(record)
    entry: dict[str, Any] = {}
    if pageref is not None:
        entry["pageref"] = pageref
    entry.update({
        "startedDateTime": _iso(float(record["time_origin"]) + float(record.get("start_time") or 0.0)),
        "time": har_time(timings),
        "request": {
            "method": method,
            # HAR: absolute URL, fragment not included (the entry name keeps it).
            "url": urlunsplit(parts._replace(fragment="")),
            "httpVersion": version,
            "cookies": [],
            "headers": _headers(record.get("request_headers")),
            "queryString": [{"name": n, "value": v}
                            for n, v in parse_qsl(parts.query, keep_blank_values=True)],
            "headersSize": -1,
            "bodySize": int(body_size),
        },
        "response": {
            "status": status,
            "statusText": str(status_text),
            "httpVersion": version if status else "",
            "cookies": [],
            "headers": _headers(record.get("response_headers")),
            "content": content,
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1 if opaque else encoded,
        },
        "cache": {},
        "timings": timings,
    })
    server_ip = _server_ip(str(record.get("remote_address") or ""))
    if server_ip:
        entry["serverIPAddress"] = server_ip
    if record.get("connection_id"):
        entry["connection"] = str(record["connection_id"])
    entry["_duration"] = _ms(float(record.get("duration") or 0.0))
    redirect = phase_durations(record)["redirect"]
    if redirect is not None:
        entry["_redirect"] = _ms(redirect)
    if record.get("error"):
        entry["_error"] = str(record["error"])
        entry["_errorMessage"] = str(record.get("error_message") or "")
    server_timing = _server_timing(record.get("server_timing"))
    if server_timing:
        entry["_serverTiming"] = server_timing
    return entry


def har_document(
    records: Iterable[Mapping[str, Any]],
    *,
    creator: str = "restiming",
    version: str | None = None,
    page_title: str | None = None,
) -> dict[str, Any]:
    """The HAR 1.2 document ``{"log": {...}}`` for ``records`` (see ``har_record``),
    entries sorted by start time as HAR prefers. With ``page_title``, one page groups
    every entry; without, ``pages`` is omitted (it is optional)."""
    if version is None:
        from restiming import __version__ as version
    records = sorted(records, key=lambda r: float(r["time_origin"]) + float(r.get("start_time") or 0.0))
    log: dict[str, Any] = {"version": HAR_VERSION, "creator": {"name": creator, "version": str(version)}}
    pageref = None
    if page_title is not None:
        pageref = "page_1"
        first = records[0] if records else None
        started = (float(first["time_origin"]) + float(first.get("start_time") or 0.0)) if first else 0.0
        log["pages"] = [{
            "startedDateTime": _iso(started),
            "id": pageref,
            "title": str(page_title),
            "pageTimings": {"onContentLoad": -1, "onLoad": -1},
        }]
    log["entries"] = [har_entry(r, pageref=pageref) for r in records]
    return {"log": log}


def har_header(*, creator: str = "restiming", version: str | None = None) -> str:
    """The text before the first entry when a HAR is streamed to a file one entry at a
    time (entries ``json.dumps(har_entry(r))`` joined by ``",\\n"``, then
    ``har_footer()``), so a long bench never holds every entry in memory."""
    if version is None:
        from restiming import __version__ as version
    head = json.dumps({"version": HAR_VERSION, "creator": {"name": creator, "version": str(version)}})
    return '{"log": ' + head[:-1] + ', "entries": [\n'


def har_footer() -> str:
    """The text after the last streamed entry (see ``har_header``)."""
    return "\n]}}\n"
