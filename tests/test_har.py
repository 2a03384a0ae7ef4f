"""HAR 1.2 export: entries recorded with the low-level recording API, checked against
the HAR 1.2 field and timing rules."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

import restiming
from restiming._cli._har import har_document, har_entry, har_record
from restiming.phases import phase_durations

MS = 1_000_000  # ns

REQUIRED = {
    "log": {"version", "creator", "entries"},
    "entry": {"startedDateTime", "time", "request", "response", "cache", "timings"},
    "request": {"method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize"},
    "response": {"status", "statusText", "httpVersion", "cookies", "headers", "content", "redirectURL",
                 "headersSize", "bodySize"},
    "content": {"size", "mimeType"},
    "timings": {"send", "wait", "receive"},
}
TIMING_KEYS = ("blocked", "dns", "connect", "send", "wait", "receive")


@pytest.fixture
def perf():
    with restiming.Performance() as p:
        yield p


def _at(rec, offsets_ms: dict[str, float]) -> None:
    """Place stamps at exact offsets (ms) after start_time, so durations are known."""
    base = rec.get("start_time")
    for phase, ms in offsets_ms.items():
        rec.set(phase, base + int(ms * MS))


def fresh_tls(perf):
    rec = perf.begin("https://example.test/search?q=a+b&empty=&q=2#frag")
    _at(rec, {"domain_lookup_start": 1, "domain_lookup_end": 3, "connect_start": 3,
              "secure_connection_start": 5, "connect_end": 9, "request_start": 9.5,
              "request_end": 10, "final_response_headers_start": 30, "response_end": 35})
    return rec.finish(response_status=200, encoded_body_size=1000, decoded_body_size=4000,
                      next_hop_protocol="http/1.1", content_type="text/html", content_encoding="gzip",
                      server_timing='db;dur=12.5;desc="query", cache;desc=hit',
                      connection_id=7, remote_address="192.0.2.1:443", tls_version="TLSv1.3",
                      bytes_sent=120, bytes_received=1200)


def reused(perf):
    rec = perf.begin("http://example.test/a")
    for phase in ("domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end"):
        rec.copy(phase, "fetch_start")
    _at(rec, {"request_start": 2, "request_end": 2.5, "final_response_headers_start": 8, "response_end": 8.25})
    return rec.finish(response_status=404, encoded_body_size=10, decoded_body_size=10,
                      next_hop_protocol="http/1.1", connection_id=7, connection_reused=True,
                      remote_address="[2001:db8::1]:80")


def redirected(perf):
    rec = perf.begin("https://example.test/old")
    rec.copy("redirect_start", "start_time")
    _at(rec, {"redirect_end": 20, "fetch_start": 21, "domain_lookup_start": 21, "domain_lookup_end": 21,
              "connect_start": 21, "connect_end": 21, "secure_connection_start": 21,
              "request_start": 22, "request_end": 22, "final_response_headers_start": 40,
              "response_end": 41})
    return rec.finish(response_status=200, encoded_body_size=5, decoded_body_size=5,
                      next_hop_protocol="http/1.1", connection_reused=True, connection_id=3)


def opaque(perf):
    rec = perf.begin("https://other.test/x")
    _at(rec, {"domain_lookup_start": 1, "domain_lookup_end": 2, "connect_start": 2, "connect_end": 4,
              "request_start": 5, "final_response_headers_start": 9, "response_end": 12})
    return rec.finish(response_status=200, encoded_body_size=50, decoded_body_size=50,
                      timing_allow_passed=False)


def failed(perf):
    rec = perf.begin("https://down.test/")
    _at(rec, {"domain_lookup_start": 1, "domain_lookup_end": 2, "connect_start": 2, "response_end": 15})
    return rec.finish(error="connect", error_message="connection refused by 192.0.2.9:443")


def stamped_live(perf):
    """Stamped with the real clock in order, as the engine does."""
    rec = perf.begin("https://example.test/live")
    for phase in ("domain_lookup_start", "domain_lookup_end", "connect_start", "secure_connection_start",
                  "connect_end", "request_start", "request_end", "final_response_headers_start"):
        rec.stamp(phase)
    return rec.finish(response_status=200, next_hop_protocol="http/1.1")


ALL = (fresh_tls, reused, redirected, opaque, failed, stamped_live)


def _check_required(doc: dict) -> None:
    log = doc["log"]
    assert REQUIRED["log"] <= set(log)
    assert log["version"] == "1.2"
    for e in log["entries"]:
        assert REQUIRED["entry"] <= set(e)
        assert REQUIRED["request"] <= set(e["request"])
        assert REQUIRED["response"] <= set(e["response"])
        assert REQUIRED["content"] <= set(e["response"]["content"])
        assert REQUIRED["timings"] <= set(e["timings"])
        assert e["cache"] == {}
        for key in e:
            assert key in REQUIRED["entry"] | {"pageref", "serverIPAddress", "connection", "comment"} \
                or key.startswith("_"), key  # custom fields must start with "_"
        for pair in e["request"]["headers"] + e["request"]["queryString"] + e["response"]["headers"]:
            assert set(pair) == {"name", "value"}


def _check_timings(e: dict) -> None:
    t = e["timings"]
    for key in ("send", "wait", "receive"):
        assert t[key] >= 0, key
    for key in ("blocked", "dns", "connect", "ssl"):
        assert t[key] == -1 or t[key] >= 0, key
    if t["ssl"] != -1:
        assert t["connect"] >= t["ssl"]  # connect includes ssl
    assert e["time"] == pytest.approx(sum(t[k] for k in TIMING_KEYS if t[k] >= 0), abs=1e-9)


@pytest.mark.parametrize("make", ALL, ids=lambda f: f.__name__)
def test_each_kind_of_entry_obeys_har_1_2(perf, make):
    entry = make(perf)
    doc = har_document([har_record(entry, perf.time_origin, method="GET",
                                   request_headers=[("Accept", "*/*")],
                                   response_headers=[(b"content-type", b"text/html")])])
    doc = json.loads(json.dumps(doc, allow_nan=False))  # JSON-serializable, no NaN
    _check_required(doc)
    (e,) = doc["log"]["entries"]
    _check_timings(e)
    started = datetime.fromisoformat(e["startedDateTime"].replace("Z", "+00:00"))
    assert started.tzinfo is not None
    assert started.timestamp() * 1000 == pytest.approx(perf.time_origin + entry.start_time, abs=1)
    assert e["request"]["headers"] == [{"name": "Accept", "value": "*/*"}]
    assert e["response"]["headers"] == [{"name": "content-type", "value": "text/html"}]


def test_fresh_tls_entry(perf):
    entry = fresh_tls(perf)
    e = har_entry(har_record(entry, perf.time_origin))
    t = e["timings"]
    assert t == {"blocked": 1.0, "dns": 2.0, "connect": 6.0, "ssl": 4.0, "send": 0.5, "wait": 20.0,
                 "receive": 5.0}
    assert e["time"] == 34.5
    assert e["request"]["url"] == "https://example.test/search?q=a+b&empty=&q=2"  # no fragment
    assert e["request"]["queryString"] == [{"name": "q", "value": "a b"}, {"name": "empty", "value": ""},
                                           {"name": "q", "value": "2"}]
    assert e["request"]["bodySize"] == 0
    r = e["response"]
    assert (r["status"], r["statusText"], r["httpVersion"], r["bodySize"]) == (200, "OK", "HTTP/1.1", 1000)
    assert r["content"] == {"size": 4000, "compression": 3000, "mimeType": "text/html"}
    assert e["serverIPAddress"] == "192.0.2.1" and e["connection"] == "7"
    assert e["_serverTiming"] == [{"name": "db", "duration": 12.5, "description": "query"},
                                  {"name": "cache", "duration": 0.0, "description": "hit"}]
    assert "_error" not in e


def test_phases_agree_with_phase_durations(perf):
    entry = fresh_tls(perf)
    d = phase_durations(entry)
    t = har_entry(har_record(entry, perf.time_origin))["timings"]
    assert (t["blocked"], t["dns"], t["ssl"], t["wait"]) == pytest.approx(
        (d["queue"], d["dns"], d["tls"], d["wait"]))
    assert t["connect"] == pytest.approx(d["connect"] + d["tls"])


def test_reused_connection_has_no_dns_or_connect(perf):
    e = har_entry(har_record(reused(perf), perf.time_origin))
    t = e["timings"]
    assert (t["dns"], t["connect"], t["ssl"]) == (-1, -1, -1)
    assert t["blocked"] == 2.0 and t["wait"] == 5.5 and t["receive"] == 0.25
    assert e["response"]["statusText"] == "Not Found"
    assert e["serverIPAddress"] == "2001:db8::1"


def test_redirect_time_is_kept_in_a_custom_field(perf):
    e = har_entry(har_record(redirected(perf), perf.time_origin))
    assert e["_redirect"] == 20.0
    assert e["_duration"] == 41.0
    assert e["timings"]["wait"] == 18.0


def test_opaque_entry_exposes_no_phase(perf):
    e = har_entry(har_record(opaque(perf), perf.time_origin))
    t = e["timings"]
    assert (t["blocked"], t["dns"], t["connect"], t["ssl"]) == (-1, -1, -1, -1)
    assert (t["send"], t["wait"], t["receive"], e["time"]) == (0, 0, 0, 0)
    assert e["_duration"] == 12.0
    assert e["response"]["status"] == 200 and e["response"]["bodySize"] == -1


def test_network_error_entry(perf):
    e = har_entry(har_record(failed(perf), perf.time_origin))
    assert e["_error"] == "connect"
    assert e["_errorMessage"] == "connection refused by 192.0.2.9:443"
    assert e["response"]["status"] == 0 and e["response"]["httpVersion"] == ""
    assert e["response"]["content"]["mimeType"] == "x-unknown"
    assert e["time"] == 0 and e["_duration"] == 15.0


def test_document_sorted_with_optional_page(perf):
    late = fresh_tls(perf)
    early = failed(perf)
    records = [har_record(late, perf.time_origin), har_record(early.to_dict(), perf.time_origin)]
    records[0]["start_time"] += 1000  # make the first one clearly later
    doc = har_document(records, creator="restiming-test", version="9", page_title="bench <1>")
    log = doc["log"]
    assert log["creator"] == {"name": "restiming-test", "version": "9"}
    assert [e["request"]["url"] for e in log["entries"]] == ["https://down.test/",
                                                           "https://example.test/search?q=a+b&empty=&q=2"]
    (page,) = log["pages"]
    assert page["title"] == "bench <1>" and page["startedDateTime"] == log["entries"][0]["startedDateTime"]
    assert all(e["pageref"] == page["id"] for e in log["entries"])
    assert "pages" not in har_document(records)["log"]
    assert har_document([])["log"]["entries"] == []


def test_method_and_request_body_size(perf):
    record = har_record(reused(perf), perf.time_origin, method="post", http_version="HTTP/1.0",
                        status_text="Nope")
    e = har_entry(record)
    assert e["request"]["method"] == "POST" and e["request"]["bodySize"] == -1
    assert e["request"]["httpVersion"] == "HTTP/1.0" and e["response"]["statusText"] == "Nope"
    record["request_body_size"] = 12
    assert har_entry(record)["request"]["bodySize"] == 12


def test_streamed_har_is_the_same_document(perf):
    from restiming._cli._har import har_footer, har_header

    records = [har_record(make(perf), perf.time_origin) for make in (fresh_tls, reused, failed)]
    text = har_header(version="9") + ",\n".join(json.dumps(har_entry(r)) for r in records) + har_footer()
    streamed = json.loads(text)
    assert streamed == {"log": {"version": "1.2", "creator": {"name": "restiming", "version": "9"},
                                "entries": [har_entry(r) for r in records]}}
    assert json.loads(har_header() + har_footer())["log"]["entries"] == []
