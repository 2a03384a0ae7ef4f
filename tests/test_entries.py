"""Entries and the low-level recorder: the IDL's attribute list, immutability, sizes,
the opaque shape (failed Timing-Allow-Origin check, network error), strings that
arrive intact, typed recorder errors, and the phase order as data (hypothesis).
https://w3c.github.io/resource-timing/#sec-performanceresourcetiming
https://w3c.github.io/resource-timing/#dfn-mark-resource-timing
"""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import restiming
from restiming import Performance, PerformanceResourceTiming, PerformanceServerTiming
from restiming._limits import DROPPED_METRIC, MAX_SERVER_TIMING_BYTES, MAX_TEXT_BYTES, TRUNCATION_MARKER
from restiming._servertiming import format_server_timing
from restiming._fields import (
    ATTRIBUTES,
    ERROR_KINDS,
    EXTENSIONS,
    OPAQUE_ZEROED_STAMPS,
    PARTIAL_ORDER,
    PHASE_ORDER,
    SLOT,
    STAMPS,
)

# The PerformanceResourceTiming IDL (with the PerformanceEntry attributes first), in
# toJSON order: https://w3c.github.io/resource-timing/#sec-performanceresourcetiming
SPEC_JSON_KEYS = (
    "name", "entryType", "startTime", "duration",
    "initiatorType", "deliveryType", "nextHopProtocol", "workerStart", "redirectStart",
    "redirectEnd", "fetchStart", "domainLookupStart", "domainLookupEnd", "connectStart",
    "connectEnd", "secureConnectionStart", "requestStart", "firstInterimResponseStart",
    "finalResponseHeadersStart", "responseStart", "responseEnd", "transferSize",
    "encodedBodySize", "decodedBodySize", "responseStatus", "renderBlockingStatus",
    "contentType", "contentEncoding", "serverTiming",
)
EXTENSION_NAMES = (
    "error", "error_message", "connection_id", "connection_reused", "remote_address",
    "tls_version", "request_end", "bytes_sent", "bytes_received", "intended_start",
    "proxy", "proxy_connect_start", "proxy_connect_end",
)
NETWORK_PHASES = [p for p in PHASE_ORDER if p not in ("start_time", "fetch_start", "response_end")]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@pytest.fixture
def perf():
    p = Performance(buffer_size=10_000)
    yield p
    p.close()


def full_record(perf, url="https://example.test/full", **finish):
    """An entry with every phase stamped, in order, and every field set."""
    rec = perf.begin(url, initiator_type="xmlhttprequest")
    for phase in PHASE_ORDER[1:-1]:
        if phase == "fetch_start":
            continue
        rec.stamp(phase)
    rec.stamp("request_end")
    kwargs = dict(
        response_status=203, encoded_body_size=1000, decoded_body_size=4000,
        next_hop_protocol="http/1.1", content_type="text/html", content_encoding="gzip",
        delivery_type="", server_timing="db;dur=53;desc=\"query\", cache",
        connection_id=7, connection_reused=True, remote_address="127.0.0.1:8080",
        tls_version="TLSv1.3", bytes_sent=120, bytes_received=1500, proxy="10.0.0.1:3128",
    )
    kwargs.update(finish)
    return rec, rec.finish(**kwargs)


# ------------------------------------------------------------------ the model


def test_to_json_keys_are_the_spec_attributes(perf):
    _, entry = full_record(perf)
    data = entry.to_json()
    assert tuple(data) == SPEC_JSON_KEYS
    for name in EXTENSION_NAMES:
        assert name not in data and camel(name) not in data


def test_to_json_values(perf):
    _, entry = full_record(perf)
    data = entry.to_json()
    for key in SPEC_JSON_KEYS:
        attr = {"entryType": "entry_type"}.get(key) or "".join(
            "_" + c.lower() if c.isupper() else c for c in key)
        if key == "serverTiming":
            continue
        assert data[key] == getattr(entry, attr), key
    assert data["entryType"] == "resource"
    assert data["renderBlockingStatus"] == "non-blocking"
    assert data["workerStart"] == 0
    assert data["serverTiming"] == [
        {"name": "db", "duration": 53.0, "description": "query"},
        {"name": "cache", "duration": 0.0, "description": ""},
    ]
    assert entry.server_timing == (
        PerformanceServerTiming("db", 53.0, "query"), PerformanceServerTiming("cache", 0.0, ""))
    for key in ("transferSize", "encodedBodySize", "decodedBodySize", "responseStatus"):
        assert type(data[key]) is int
    for key in ("startTime", "duration", "fetchStart", "responseEnd"):
        assert type(data[key]) is float


def test_extensions_only_in_to_dict(perf):
    _, entry = full_record(perf)
    assert set(EXTENSIONS) == set(EXTENSION_NAMES)
    data = entry.to_dict()
    assert tuple(data) == ATTRIBUTES
    assert data["error"] is None and data["error_message"] is None
    assert data["connection_id"] == 7
    assert data["connection_reused"] is True
    assert data["remote_address"] == "127.0.0.1:8080"
    assert data["tls_version"] == "TLSv1.3"
    assert (data["bytes_sent"], data["bytes_received"]) == (120, 1500)
    assert entry.request_start <= entry.request_end <= entry.response_end
    assert data["intended_start"] == 0.0
    assert data["proxy"] == "10.0.0.1:3128"
    assert entry.connect_start <= data["proxy_connect_start"] <= data["proxy_connect_end"] <= entry.connect_end
    assert data["server_timing"] == entry.to_json()["serverTiming"]


def test_entries_are_immutable(perf):
    _, entry = full_record(perf)
    for name in ("name", "start_time", "transfer_size", "error", "_d", "new_attribute"):
        with pytest.raises(AttributeError):
            setattr(entry, name, 1)
    with pytest.raises(AttributeError):
        del entry.name
    assert not hasattr(entry, "__dict__")
    assert entry.name == "https://example.test/full"


def test_entries_compare_hash_and_pickle(perf):
    _, entry = full_record(perf)
    (buffered,) = perf.get_entries()
    assert buffered == entry and hash(buffered) == hash(entry)
    assert buffered is not entry
    again = pickle.loads(pickle.dumps(entry))
    assert again == entry and isinstance(again, PerformanceResourceTiming)
    assert "full" in repr(entry)


def test_transfer_size_is_encoded_plus_300(perf):
    entry = perf.begin("https://example.test/").finish(encoded_body_size=1234, decoded_body_size=5000)
    assert entry.transfer_size == 1534
    assert entry.encoded_body_size == 1234
    assert entry.decoded_body_size == 5000
    empty = perf.begin("https://example.test/empty").finish()
    assert empty.transfer_size == 300


def test_defaults_of_a_bare_record(perf):
    before = perf.now()
    rec = perf.begin("https://example.test/bare")
    assert rec.name == "https://example.test/bare" and rec.initiator_type == "fetch"
    assert not rec.finished
    entry = rec.finish()
    assert rec.finished
    assert entry.entry_type == "resource"
    assert entry.initiator_type == "fetch"
    assert before <= entry.start_time == entry.fetch_start <= entry.response_end <= perf.now()
    for phase in NETWORK_PHASES:
        assert getattr(entry, phase) == 0.0
    assert entry.response_start == 0.0
    assert entry.response_status == 0
    assert entry.server_timing == ()
    assert entry.error is None


def test_response_start_is_the_first_of_interim_and_final(perf):
    rec = perf.begin("https://example.test/103")
    rec.stamp("first_interim_response_start")
    rec.stamp("final_response_headers_start")
    entry = rec.finish(response_status=200)
    assert entry.response_start == entry.first_interim_response_start
    assert entry.first_interim_response_start <= entry.final_response_headers_start
    rec = perf.begin("https://example.test/200")
    rec.stamp("final_response_headers_start")
    entry = rec.finish(response_status=200)
    assert entry.response_start == entry.final_response_headers_start
    assert entry.first_interim_response_start == 0


def test_recorder_set_get_copy(perf):
    rec = perf.begin("https://example.test/")
    start = rec.get("start_time")
    assert rec.get("fetch_start") == start  # the very same stamp
    rec.stamp("connect_start")
    rec.copy("domain_lookup_start", "fetch_start")
    rec.copy("domain_lookup_end", "fetch_start")
    rec.set("intended_start", start - 1_000_000)
    assert rec.get("domain_lookup_start") == start
    entry = rec.finish()
    assert entry.domain_lookup_start == entry.domain_lookup_end == entry.fetch_start
    assert entry.intended_start == pytest.approx(entry.start_time - 1.0)
    assert entry.connect_start >= entry.fetch_start
    rec = perf.begin("https://example.test/2")
    entry = rec.finish(intended_start=rec.get("start_time") - 2_000_000)
    assert entry.intended_start == pytest.approx(entry.start_time - 2.0)


def test_response_end_kept_when_already_stamped(perf):
    rec = perf.begin("https://example.test/")
    rec.stamp("response_end")
    end = rec.get("response_end")
    entry = rec.finish()
    assert entry.response_end == perf.to_ms(end)


# ------------------------------------------------------------ the opaque shape


def assert_opaque(entry, start_time: float):
    for phase in OPAQUE_ZEROED_STAMPS:
        assert getattr(entry, phase) == 0.0, phase
    assert entry.response_start == 0.0
    assert entry.start_time == entry.fetch_start == start_time
    assert entry.response_end > 0
    assert entry.duration == pytest.approx(entry.response_end - entry.start_time)
    assert (entry.transfer_size, entry.encoded_body_size, entry.decoded_body_size) == (0, 0, 0)
    assert entry.next_hop_protocol == ""
    assert entry.server_timing == ()
    assert entry.to_json()["serverTiming"] == []


def test_failed_timing_allow_check_is_opaque(perf):
    rec, _ = None, None
    rec = perf.begin("https://other.test/img", initiator_type="img")
    start = perf.to_ms(rec.get("start_time"))
    rec.stamp("redirect_start")
    rec.stamp("redirect_end")
    rec.stamp("fetch_start")  # the final hop starts later than start_time
    for phase in NETWORK_PHASES[2:]:
        rec.stamp(phase)
    rec.stamp("request_end")
    entry = rec.finish(response_status=200, encoded_body_size=10, decoded_body_size=20,
                       next_hop_protocol="http/1.1", server_timing="db;dur=1",
                       content_type="image/png", timing_allow_passed=False)
    assert_opaque(entry, start)
    assert entry.response_status == 200  # the caller sees the response anyway
    assert entry.error is None
    assert entry.initiator_type == "img"
    assert entry.request_end == 0.0
    assert perf.get_entries_by_name("https://other.test/img") == [entry]


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_network_error_is_opaque_with_the_error_kind(perf, kind):
    rec = perf.begin(f"https://broken.test/{kind}")
    start = perf.to_ms(rec.get("start_time"))
    rec.stamp("domain_lookup_start")
    rec.stamp("domain_lookup_end")
    rec.stamp("connect_start")
    entry = rec.finish(response_status=502, encoded_body_size=5, error=kind,
                       error_message="it failed")
    assert_opaque(entry, start)
    assert entry.response_status == 0
    assert entry.error == kind
    assert entry.error_message == "it failed"
    assert "error" not in entry.to_json()
    assert entry.to_dict()["error"] == kind


def test_error_kinds_are_the_documented_ones():
    assert set(ERROR_KINDS) == {"dns", "connect", "tls", "timeout", "protocol", "reset",
                                "too_many_redirects", "redirect_scheme", "limit", "cancelled"}


# ------------------------------------------------------------------- strings


def test_8k_url_arrives_intact(perf):
    url = "https://example.test/" + "".join(chr(ord("a") + i % 26) for i in range(8192))
    entry = perf.begin(url).finish(response_status=200)
    assert entry.name == url
    (buffered,) = perf.get_entries()
    assert buffered.name == url
    assert perf.get_entries_by_name(url) == [buffered]


def test_url_too_big_for_a_small_ring_is_truncated_with_the_marker():
    """Issue 8 finding 9 / SPEC §4: an entry always fits its ring; a URL too long for a
    (tiny) ring is shortened with the documented marker instead of losing the entry."""
    perf = Performance(ring_cells=64)
    try:
        url = "https://example.test/" + "x" * 4000
        entry = perf.begin(url).finish(response_status=200)
        assert entry.name.endswith(TRUNCATION_MARKER) and url.startswith(entry.name[: -len(TRUNCATION_MARKER)])
        assert entry.response_status == 200
        (buffered,) = perf.get_entries()
        assert buffered == entry
        perf.begin("https://example.test/short").finish()
        assert len(perf.get_entries()) == 2
    finally:
        perf.close()


def test_huge_server_timing_is_capped_with_a_count_of_the_dropped_metrics(perf):
    """Finding 9: a 1 MB Server-Timing header must not lose the entry."""
    metrics = ", ".join(f"m{i};dur={i};desc=\"{'d' * 40}\"" for i in range(20_000))
    assert len(metrics) > 1_000_000
    entry = perf.begin("https://example.test/st").finish(response_status=200, server_timing=metrics)
    timings = entry.server_timing
    assert timings[0] == PerformanceServerTiming("m0", 0.0, "d" * 40)
    assert timings[-1].name == DROPPED_METRIC
    kept = len(timings) - 1
    assert [m.name for m in timings[:-1]] == [f"m{i}" for i in range(kept)]
    assert int(timings[-1].description) == 20_000 - kept
    assert len(format_server_timing(timings).encode()) <= MAX_SERVER_TIMING_BYTES
    assert perf.get_entries() == [entry]


def test_long_strings_are_bounded_and_marked(perf):
    message = "é" * 5000
    entry = perf.begin("https://example.test/m").finish(error="protocol", error_message=message,
                                                         remote_address="r" * 3000)
    assert entry.error_message.endswith(TRUNCATION_MARKER)
    assert len(entry.error_message.encode()) <= MAX_TEXT_BYTES
    assert message.startswith(entry.error_message[: -len(TRUNCATION_MARKER)])
    assert len(entry.remote_address.encode()) <= MAX_TEXT_BYTES
    assert entry.error == "protocol"


@pytest.mark.parametrize("cells", [64, 128])
def test_every_string_too_long_still_fits_the_smallest_ring(cells):
    perf = Performance(ring_cells=cells)
    try:
        rec = perf.begin("https://example.test/" + "u" * 3000, initiator_type="i" * 3000)
        entry = rec.finish(response_status=204, content_type="c" * 3000, error_message=None,
                           server_timing=", ".join(f"x{i}" for i in range(3000)), remote_address="a" * 3000,
                           tls_version="t" * 3000, next_hop_protocol="h" * 3000)
        assert entry.response_status == 204
        assert perf.get_entries() == [entry]
    finally:
        perf.close()


@pytest.mark.parametrize("url", [
    "https://例え.テスト/パス?q=é#frag",
    "https://example.test/emoji/\N{GRINNING FACE}",
    "https://example.test/\u00fc\u00df/%C3%A9",
    "https://example.test/lone-surrogate/\udcff",
])
def test_non_ascii_urls(perf, url):
    entry = perf.begin(url).finish()
    assert entry.name == url
    assert perf.get_entries_by_name(url)[0].name == url


def test_strings_round_trip_and_nul_is_replaced(perf):
    entry = perf.begin("https://example.test/", initiator_type="css").finish(
        content_type="text/plain; charset=utf-8", content_encoding="br",
        next_hop_protocol="h2", delivery_type="cache", remote_address="[::1]:443",
        tls_version="TLSv1.2", error_message=None)
    assert (entry.initiator_type, entry.content_type, entry.content_encoding) == (
        "css", "text/plain; charset=utf-8", "br")
    assert (entry.next_hop_protocol, entry.delivery_type) == ("h2", "cache")
    assert (entry.remote_address, entry.tls_version) == ("[::1]:443", "TLSv1.2")
    nul = perf.begin("https://example.test/nul").finish(content_type="a\0b")
    assert nul.content_type == "a\ufffdb"
    assert nul.content_encoding == ""  # the separator did not shift the fields


def test_server_timing_objects_are_formatted(perf):
    entry = perf.begin("https://example.test/st").finish(
        server_timing=[PerformanceServerTiming("app", 12.5, "render")])
    assert entry.server_timing == (PerformanceServerTiming("app", 12.5, "render"),)


# -------------------------------------------------------------- recorder errors


def test_recorder_errors_are_typed(perf):
    rec = perf.begin("https://example.test/")
    with pytest.raises(ValueError, match="unknown phase"):
        rec.stamp("dom_interactive")
    with pytest.raises(ValueError):
        rec.set("nope", 1)
    with pytest.raises(ValueError):
        rec.set("connect_start", -5)
    with pytest.raises(TypeError):
        rec.set("connect_start", 1.5)
    with pytest.raises(ValueError, match="error must be one of"):
        rec.finish(error="boom")
    for size in ("encoded_body_size", "decoded_body_size", "bytes_sent", "bytes_received"):
        with pytest.raises(ValueError):
            rec.finish(**{size: -1})
        with pytest.raises(TypeError):
            rec.finish(**{size: 1.0})
        with pytest.raises(TypeError):
            rec.finish(**{size: True})
    with pytest.raises(ValueError):
        rec.finish(response_status=1000)
    with pytest.raises(ValueError):
        rec.finish(connection_id=2**32)
    with pytest.raises(TypeError):
        rec.finish(content_type=b"text/html")
    assert not rec.finished
    assert perf.get_entries() == []  # failed finishes queued nothing
    rec.finish()
    with pytest.raises(restiming.RestimingError, match="already finished"):
        rec.finish()
    assert len(perf.get_entries()) == 1


def test_begin_validates_its_arguments(perf):
    with pytest.raises(TypeError):
        perf.begin("")
    with pytest.raises(TypeError):
        perf.begin(b"https://example.test/")
    with pytest.raises(TypeError):
        perf.begin("https://example.test/", initiator_type="")


# ------------------------------------------------------------- phase order


REUSED_SAME_AS_FETCH = ("domain_lookup_start", "domain_lookup_end", "connect_start",
                        "secure_connection_start", "connect_end")


@st.composite
def stamp_plans(draw):
    """A chronological plan: a subsequence of PHASE_ORDER (after start_time), with
    request_end somewhere between request_start and response_end; whether the
    connection is reused (its DNS/connect/TLS stamps copied from fetch_start, SPEC §3),
    whether the timing is exposed, and whether the fetch ends in a network error."""
    chosen = {p for p in PHASE_ORDER[1:] if draw(st.booleans())}
    if chosen & {"redirect_start", "redirect_end"}:
        chosen.add("fetch_start")  # with redirects the final hop starts after them
    phases = [p for p in PHASE_ORDER[1:] if p in chosen]
    if draw(st.booleans()):
        low = phases.index("request_start") + 1 if "request_start" in phases else 0
        high = phases.index("response_end") if "response_end" in phases else len(phases)
        phases.insert(draw(st.integers(low, high)), "request_end")
    return phases, draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from([None, "timeout"]))


def check_order(entry) -> None:
    values = [(p, getattr(entry, p)) for p in PHASE_ORDER]
    present = [(p, v) for p, v in values if v]
    for (p1, v1), (p2, v2) in zip(present, present[1:]):
        assert v1 <= v2, f"{p1}={v1} after {p2}={v2}"
    for p1, p2 in PARTIAL_ORDER:
        v1, v2 = getattr(entry, p1), getattr(entry, p2)
        if v1 and v2:
            assert v1 <= v2, f"{p1}={v1} after {p2}={v2}"
    assert entry.duration >= 0
    assert entry.start_time <= entry.fetch_start
    if entry.response_start:
        assert entry.response_start in (entry.first_interim_response_start,
                                        entry.final_response_headers_start)


@settings(max_examples=200, deadline=None)
@given(plan=stamp_plans())
def test_stamps_are_monotonic_in_phase_order(plan):
    phases, reused, exposed, error = plan
    if reused:  # a reused tunnel sends no CONNECT: the proxy stamps stay 0
        phases = [p for p in phases if p not in ("proxy_connect_start", "proxy_connect_end")]
    perf = Performance()
    try:
        rec = perf.begin("https://example.test/order")
        for phase in phases:
            if reused and phase in REUSED_SAME_AS_FETCH:
                rec.copy(phase, "fetch_start")
            else:
                rec.stamp(phase)
        entry = rec.finish(response_status=200, timing_allow_passed=exposed, error=error)
        check_order(entry)
        (buffered,) = perf.get_entries()
        check_order(buffered)
        assert buffered == entry
        stamped = set(phases) | {"start_time", "fetch_start", "response_end"}
        for phase in PHASE_ORDER:
            if phase not in stamped:
                assert getattr(entry, phase) == 0.0, phase
        if not exposed or error:
            nonzero = {p for p in STAMPS if p != "intended_start" and getattr(entry, p)}
            assert nonzero <= {"start_time", "fetch_start", "response_end"}
    finally:
        perf.close()


# ---------------------------------------------------------------- the one-call recorder
def test_recorder_stamps_are_a_list_of_c_clock_ints(perf):
    before = restiming.clock.now_ns()
    rec = perf.begin("https://example.test/list")
    assert isinstance(rec.stamps, list) and len(rec.stamps) == len(STAMPS)
    assert rec.stamps[SLOT["start_time"]] == rec.stamps[SLOT["fetch_start"]] >= before
    assert all(v == 0 for i, v in enumerate(rec.stamps) if i not in (SLOT["start_time"], SLOT["fetch_start"]))
    rec.stamps[SLOT["connect_start"]] = rec.stamps[SLOT["start_time"]] + 1_000_000  # the engine writes directly
    rec.stamp("request_start")
    assert rec.get("connect_start") == rec.stamps[SLOT["start_time"]] + 1_000_000
    assert rec.stamps[SLOT["request_start"]] >= before
    entry = rec.finish(response_status=200)
    assert entry.connect_start == pytest.approx(entry.start_time + 1.0)
    assert perf.get_entries() == [entry]


def test_bad_direct_stamp_writes_are_typed_errors(perf):
    rec = perf.begin("https://example.test/bad")
    rec.stamps[SLOT["connect_start"]] = "soon"
    with pytest.raises(TypeError, match="connect_start"):
        rec.finish()
    rec = perf.begin("https://example.test/bad2")
    rec.stamps[SLOT["connect_end"]] = 2**64
    with pytest.raises(ValueError, match="connect_end"):
        rec.finish()
    assert not rec.finished and perf.get_entries() == []


def test_response_start_is_accepted_by_the_low_level_api(perf):
    """Issue 8 finding 4: every timestamp attribute is accepted, response_start too."""
    rec = perf.begin("https://example.test/rs")
    rec.stamp("response_start")  # no interim response: the final response's first byte
    assert rec.get("final_response_headers_start") == rec.get("response_start") > 0
    entry = rec.finish(response_status=200)
    assert entry.response_start == entry.final_response_headers_start > 0
    assert entry.first_interim_response_start == 0

    rec = perf.begin("https://example.test/rs-interim")
    rec.stamp("first_interim_response_start")
    rec.set("response_start", rec.get("first_interim_response_start") + 5_000_000)
    assert rec.get("response_start") == rec.get("first_interim_response_start")  # the derived value
    entry = rec.finish(response_status=200)
    assert entry.final_response_headers_start == pytest.approx(entry.first_interim_response_start + 5.0)
    assert entry.response_start == entry.first_interim_response_start

    rec = perf.begin("https://example.test/rs-copy")
    rec.copy("response_start", "start_time")
    assert rec.get("final_response_headers_start") == rec.get("start_time")
    rec.clear("response_start")
    assert rec.get("response_start") == 0


def test_worker_start_is_always_zero(perf):
    rec = perf.begin("https://example.test/ws")
    assert rec.get("worker_start") == 0
    rec.set("worker_start", 0)
    rec.clear("worker_start")
    with pytest.raises(ValueError, match="service workers"):
        rec.stamp("worker_start")
    with pytest.raises(ValueError, match="service workers"):
        rec.set("worker_start", 5)


@pytest.mark.parametrize("method, args", [("stamp", ()), ("get", ()), ("set", (1,)), ("clear", ())])
def test_unknown_phase_names_the_valid_ones(perf, method, args):
    rec = perf.begin("https://example.test/unknown")
    with pytest.raises(ValueError) as info:
        getattr(rec, method)("dns_start", *args)
    message = str(info.value)
    assert "dns_start" in message and "response_start" in message and "worker_start" in message


def test_drain_returns_lazily_decoded_entries(perf):
    urls = [f"https://example.test/lazy/{i}" for i in range(5)]
    for url in reversed(urls):
        perf.begin(url).finish(response_status=200)
    entries = perf.drain()
    assert not any(e._decoded for e in entries)  # nothing decoded yet
    assert [e.name for e in entries] == list(reversed(urls))  # sorted by start_time
    assert entries[0].to_json()["name"] == urls[-1]
    assert entries == sorted(entries, key=lambda e: e.start_time)
    with pytest.raises(AttributeError):
        entries[0].name = "x"
