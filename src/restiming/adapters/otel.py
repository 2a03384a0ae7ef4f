"""OpenTelemetry export: one CLIENT span and a set of histogram measurements per
Resource Timing entry (``pip install restiming[otel]``).

Strategy: ``SpanExporter`` registers a ``PerformanceObserver`` on a timeline as soon as it
is made, so every entry recorded from then on (by the engine or any adapter) is
exported on the timeline's loop, after the fetch. Spans follow the HTTP client semantic
conventions; their start and end are the entry's ``start_time`` and ``response_end``
converted to epoch nanoseconds from the timeline's ``time_origin``; every non-zero
timestamp of the entry becomes a span event named by its spec key (``fetchStart``,
``domainLookupStart``...). ``http.client.request.duration`` gets the entry's duration
and ``restiming.phase.<phase>.duration`` each phase of ``restiming.phases`` (seconds).
Spans are roots: an entry is exported after its fetch, outside the caller's context.
https://opentelemetry.io/docs/specs/semconv/http/http-spans/#http-client
https://opentelemetry.io/docs/specs/semconv/http/http-metrics/#metric-httpclientrequestduration

Entries carry no request method, so ``http.request.method`` is ``_OTHER`` and the span
name ``HTTP``, as the conventions say for a method that is not known.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

import restiming
from restiming.phases import PHASES, phase_durations

__all__ = ["SpanExporter"]

# Entry timestamp -> span event name, in chronological order (redirect first).
_EVENTS = (
    ("redirect_start", "redirectStart"), ("redirect_end", "redirectEnd"), ("fetch_start", "fetchStart"),
    ("domain_lookup_start", "domainLookupStart"), ("domain_lookup_end", "domainLookupEnd"),
    ("connect_start", "connectStart"), ("secure_connection_start", "secureConnectionStart"),
    ("connect_end", "connectEnd"), ("request_start", "requestStart"), ("request_end", "requestEnd"),
    ("first_interim_response_start", "firstInterimResponseStart"),
    ("final_response_headers_start", "finalResponseHeadersStart"), ("response_start", "responseStart"),
    ("response_end", "responseEnd"),
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_METHOD_UNKNOWN = "_OTHER"
# Explicit bucket boundaries the conventions recommend for http.client.request.duration (s).
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


def _protocol_version(next_hop: str) -> str | None:
    if next_hop.startswith("http/"):
        return next_hop[5:]
    if next_hop == "h2":
        return "2"
    if next_hop == "h3":
        return "3"
    return None


class SpanExporter:
    """Exports every entry of ``performance`` (default ``restiming.performance``) as an
    OpenTelemetry span and metrics. ``close()`` (or ``with``) stops observing, after
    exporting the entries already delivered to it."""

    def __init__(self, performance: restiming.Performance | None = None, *, tracer_provider=None,
                 meter_provider=None) -> None:
        if performance is None:
            performance = restiming.performance
        self.performance = performance
        version = getattr(restiming, "__version__", None)
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer("restiming", version)
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("restiming", version)
        self._duration = meter.create_histogram(
            "http.client.request.duration", unit="s", description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS)
        self._phases = {
            phase: meter.create_histogram(
                f"restiming.phase.{phase}.duration", unit="s",
                description=f"Resource Timing '{phase}' phase of HTTP client requests.",
                explicit_bucket_boundaries_advisory=_DURATION_BUCKETS)
            for phase in PHASES
        }
        self._base_ns = round(performance.time_origin * 1e6)
        self._root = otel_context.Context()
        self._observer = restiming.PerformanceObserver(self._on_entries, performance=performance)
        self._observer.observe(type="resource")
        self._closed = False

    def _epoch_ns(self, ms: float) -> int:
        return self._base_ns + round(ms * 1e6)

    def _on_entries(self, entry_list, observer) -> None:
        self.export(entry_list.get_entries())

    def export(self, entries) -> None:
        """Export ``entries`` now (the observer does this for every new entry)."""
        for entry in entries:
            self._export_one(entry)

    def _export_one(self, e) -> None:
        parts = urlsplit(e.name)
        scheme = parts.scheme.lower()
        attributes = {"http.request.method": _METHOD_UNKNOWN, "url.full": e.name, "url.scheme": scheme}
        try:
            port = parts.port or _DEFAULT_PORTS.get(scheme)
        except ValueError:
            port = None
        if parts.hostname:
            attributes["server.address"] = parts.hostname
        if port:
            attributes["server.port"] = port
        version = _protocol_version(e.next_hop_protocol)
        if version:
            attributes["network.protocol.version"] = version
        status = e.response_status
        if status:
            attributes["http.response.status_code"] = status
        error_type = e.error or (str(status) if status >= 400 else None)
        if error_type:
            attributes["error.type"] = error_type
        metric_attributes = dict(attributes)
        del metric_attributes["url.full"]
        if e.encoded_body_size:
            attributes["http.response.body.size"] = e.encoded_body_size
        if e.remote_address:
            host, _, peer_port = e.remote_address.rpartition(":")
            attributes["network.peer.address"] = host.strip("[]")
            if peer_port.isdigit():
                attributes["network.peer.port"] = int(peer_port)
        if e.tls_version:
            attributes["tls.protocol.version"] = e.tls_version.removeprefix("TLSv")
        attributes["restiming.connection_reused"] = bool(e.connection_reused)
        attributes["restiming.initiator_type"] = e.initiator_type
        if e.error_message:
            attributes["restiming.error_message"] = e.error_message

        end_ms = e.response_end or (e.start_time + e.duration)
        span = self._tracer.start_span("HTTP", context=self._root, kind=SpanKind.CLIENT,
                                       attributes=attributes, start_time=self._epoch_ns(e.start_time))
        for field, event in _EVENTS:
            value = getattr(e, field)
            if value:
                span.add_event(event, timestamp=self._epoch_ns(value))
        if e.error:
            span.set_status(Status(StatusCode.ERROR, e.error))
        elif status >= 400:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=self._epoch_ns(end_ms))

        self._duration.record(e.duration / 1000.0, metric_attributes)
        for phase, ms in phase_durations(e).items():
            histogram = self._phases.get(phase)
            if histogram is not None and ms is not None:
                histogram.record(ms / 1000.0, metric_attributes)

    def close(self) -> None:
        """Export what the observer holds, then stop observing."""
        if self._closed:
            return
        self._closed = True
        self.export(self._observer.take_records())
        self._observer.disconnect()

    def __enter__(self) -> "SpanExporter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
