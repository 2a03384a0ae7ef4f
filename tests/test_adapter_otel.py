"""The OpenTelemetry exporter (``restiming.adapters.otel``) with the SDK's in-memory
span exporter and metric reader: spans per the HTTP client conventions, one event per
timestamp, epoch-nanosecond times from the timeline's origin, failures as ERROR spans,
the duration and per-phase histograms, and ``close()`` stopping the export."""

from __future__ import annotations

import asyncio

import pytest

import restiming
from restiming.phases import PHASES
from tests.peers.scripted import Send, response, timed_response

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from restiming.adapters.otel import SpanExporter  # noqa: E402


class Sink:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def exporter(self, perf) -> SpanExporter:
        return SpanExporter(perf, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def histograms(self) -> dict:
        out = {}
        for rm in self.reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    out[metric.name] = metric.data.data_points
        return out


async def settle():
    for _ in range(3):  # observers run on the loop, after the fetch
        await asyncio.sleep(0)


def test_span_per_entry_with_events_and_metrics(arun, scripted_server):
    server = scripted_server(timed_response(200, [("content-type", "text/plain")], b"x" * 2000,
                                            head_delay=0.03, body_delay=0.01))
    sink = Sink()

    async def main():
        perf = restiming.Performance()
        exporter = sink.exporter(perf)
        async with restiming.Client(perf, timeout=3.0) as client:
            entries = [(await client.fetch(server.url("/a?b=1"))).entry for _ in range(2)]
        await settle()
        exporter.close()
        return perf, entries

    perf, entries = arun(main)
    spans = sink.spans.get_finished_spans()
    assert len(spans) == 2
    for span, e in zip(spans, entries):
        assert span.kind is SpanKind.CLIENT and span.name == "HTTP"
        a = span.attributes
        assert a["url.full"] == server.url("/a?b=1") and a["http.request.method"] == "_OTHER"
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == server.port
        assert a["network.protocol.version"] == "1.1" and a["http.response.status_code"] == 200
        assert "error.type" not in a and span.status.status_code is StatusCode.UNSET
        assert a["http.response.body.size"] == 2000
        # times: epoch ns from the timeline's origin, to the nanosecond of the entry
        origin_ns = round(perf.time_origin * 1e6)
        assert span.start_time == origin_ns + round(e.start_time * 1e6)
        assert abs((span.end_time - span.start_time) - e.duration * 1e6) <= 2
        names = [ev.name for ev in span.events]
        assert names[0] == "fetchStart" and names[-1] == "responseEnd"
        assert "requestStart" in names and "responseStart" in names
        stamps = [ev.timestamp for ev in span.events]
        assert stamps == sorted(stamps)
        assert span.start_time <= stamps[0] and stamps[-1] == span.end_time
    assert spans[0].parent is None
    assert spans[1].attributes["restiming.connection_reused"] is True
    hist = sink.histograms()
    (point,) = hist["http.client.request.duration"]
    assert point.count == 2 and 0.03 <= point.sum / 2 < 0.5
    assert point.attributes["http.response.status_code"] == 200 and "url.full" not in point.attributes
    for phase in ("wait", "receive", "request"):
        assert hist[f"restiming.phase.{phase}.duration"][0].count == 2
    assert hist["restiming.phase.dns.duration"][0].count == 1  # the reused fetch has no DNS
    assert set(hist) <= {"http.client.request.duration", *(f"restiming.phase.{p}.duration" for p in PHASES)}


@pytest.mark.nginx
def test_redirect_tls_and_failures(arun, nginx, tls_ca, free_port):
    sink = Sink()
    refused = f"http://127.0.0.1:{free_port()}/"

    async def main():
        perf = restiming.Performance()
        exporter = sink.exporter(perf)
        async with restiming.Client(perf, timeout=3.0, verify=tls_ca.ca_file) as client:
            await client.fetch(nginx.url("/redirect/2"))
            await client.fetch(nginx.url("/small.txt", https=True))
            await client.fetch(nginx.url("/status/404"))
            with pytest.raises(restiming.ConnectError):
                await client.fetch(refused)
        await settle()
        exporter.close()

    arun(main)
    redirect, tls, missing, failed = sink.spans.get_finished_spans()
    assert [ev.name for ev in redirect.events][:3] == ["redirectStart", "redirectEnd", "fetchStart"]
    assert tls.attributes["tls.protocol.version"].startswith("1.") and tls.attributes["server.port"] == nginx.https_port
    assert "secureConnectionStart" in [ev.name for ev in tls.events]
    assert missing.status.status_code is StatusCode.ERROR and missing.attributes["error.type"] == "404"
    assert failed.status.status_code is StatusCode.ERROR and failed.status.description == "connect"
    assert failed.attributes["error.type"] == "connect" and "http.response.status_code" not in failed.attributes
    assert [ev.name for ev in failed.events] == ["fetchStart", "responseEnd"]


def test_close_stops_the_export(arun, scripted_server):
    server = scripted_server([Send(response(200, body=b"ok"))])
    sink = Sink()

    async def main():
        perf = restiming.Performance()
        with sink.exporter(perf):
            async with restiming.Client(perf, timeout=3.0) as client:
                await client.fetch(server.url("/"))  # delivered at close() if not before
        async with restiming.Client(perf, timeout=3.0) as client:
            await client.fetch(server.url("/"))
        await settle()

    arun(main)
    assert len(sink.spans.get_finished_spans()) == 1
