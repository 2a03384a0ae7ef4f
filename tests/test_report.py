"""The HTML bench report: well-formed, self-contained, escaped, and drawn without
errors by a real browser (headless Chromium)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

import restiming
from restiming._cli._hist import Histogram
from restiming._cli._report import render_html

HOSTILE = "<script>alert(1)</script>"
MS = 1_000_000


def _entry(perf, url: str, rng: random.Random, *, reused: bool, error: str | None = None):
    """An entry recorded with the recording API, stamps at realistic offsets."""
    rec = perf.begin(url)
    base = rec.get("start_time")
    t = 0.0

    def at(phase: str, dt: float) -> None:
        nonlocal t
        t += dt
        rec.set(phase, base + int(t * MS))

    if error:
        at("response_end", rng.uniform(5, 40))
        return rec.finish(error=error, error_message="connection refused")
    if reused:
        for phase in ("domain_lookup_start", "domain_lookup_end", "connect_start", "connect_end",
                      "secure_connection_start"):
            rec.copy(phase, "fetch_start")
        at("request_start", rng.uniform(0.01, 0.8))
    else:
        at("domain_lookup_start", rng.uniform(0.01, 0.3))
        at("domain_lookup_end", rng.uniform(0.05, 2))
        at("connect_start", 0.01)
        at("secure_connection_start", rng.uniform(0.1, 1.5))
        at("connect_end", rng.uniform(1, 4))
        at("request_start", 0.02)
    at("request_end", rng.uniform(0.02, 0.2))
    at("final_response_headers_start", rng.lognormvariate(1.5, 0.6))
    at("response_end", rng.uniform(0.1, 3))
    return rec.finish(response_status=rng.choice((200, 200, 200, 404)), encoded_body_size=2048,
                      decoded_body_size=8192, next_hop_protocol="http/1.1", connection_reused=reused,
                      connection_id=rng.randint(1, 8), remote_address="127.0.0.1:8443")


def bench_inputs(url: str = "https://127.0.0.1:8443/api?x=1&y=<2>", seconds: int = 30, open_loop: bool = True):
    """A plausible bench run: summary, per-second timeline and ~40 sampled entries."""
    rng = random.Random(7)
    with restiming.Performance(buffer_size=100_000) as perf:
        entries = [_entry(perf, url, rng, reused=i % 8 != 0, error="connect" if i % 97 == 5 else None)
                   for i in range(600)]
    hists = {name: Histogram() for name in ("queue", "dns", "connect", "tls", "request", "wait", "receive",
                                            "total", "corrected")}
    from restiming.phases import phase_durations

    for e in entries:
        if e.error:
            continue
        for name, ms in phase_durations(e).items():
            if name in hists and ms is not None:
                hists[name].record(int(ms * MS))
        hists["corrected"].record(int((e.duration + rng.expovariate(1 / 3)) * MS))
    phases = {name: h.summary_ms() for name, h in hists.items() if open_loop or name != "corrected"}
    timeline = []
    for t in range(seconds):
        spike = 6 if 18 <= t <= 20 else 1
        p50 = 4.5 * spike * rng.uniform(0.9, 1.1)
        timeline.append({"t": t, "width": 1, "count": rng.randint(900, 1100) // spike,
                         "errors": rng.choice((0, 0, 0, 2)), "p50_ms": p50, "p99_ms": p50 * rng.uniform(2.5, 4),
                         "max_ms": p50 * rng.uniform(5, 12)})
    summary = {
        "url": url, "mode": "open" if open_loop else "closed", "concurrency": 64,
        "rate": 1000 if open_loop else None, "workers": 4, "duration_s": float(seconds),
        "sent": 30_000, "completed": 29_950, "errors": {"connect": 42, "timeout": 8},
        "throughput_rps": 998.3, "late": {"count": 12, "mean_ms": 1.5, "max_ms": 9.25} if open_loop else None,
        "phases": phases,
    }
    samples = [e.to_dict() for e in entries[:48]]
    return summary, timeline, samples


class _Checker(HTMLParser):
    """Collects every src/href and checks that elements nest properly."""

    VOID = {"meta", "link", "br", "img", "input", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.urls: list[str] = []
        self.errors: list[str] = []
        self.scripts: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if tag == "script":
            self.scripts.append(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def _check(page: str) -> _Checker:
    c = _Checker()
    c.feed(page)
    c.close()
    assert not c.errors and not c.stack, (c.errors, c.stack)
    return c


def test_report_is_well_formed_and_self_contained():
    page = render_html(*bench_inputs())
    c = _check(page)
    assert c.urls == []  # nothing to fetch: no src, no href
    assert all("src" not in s for s in c.scripts)
    outside_data = re.sub(r'<script type="application/json".*?</script>', "", page, flags=re.S)
    assert "https://" not in outside_data.replace("https://127.0.0.1:8443/api?x=1&amp;y=&lt;2&gt;", "")
    assert not re.search(r"(?:src|href)\s*=|@import|url\(", outside_data)
    assert page.startswith("<!DOCTYPE html>")


def test_data_island_round_trips():
    summary, timeline, samples = bench_inputs()
    page = render_html(summary, timeline, samples)
    raw = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1)
    data = json.loads(raw)
    assert len(data["samples"]) == len(samples)
    assert data["samples"][0]["name"] == samples[0]["name"]
    assert [p["name"] for p in data["phases"]][:3] == ["queue", "dns", "connect"]


def test_hostile_strings_are_escaped():
    summary, timeline, samples = bench_inputs(url=HOSTILE)
    summary["errors"] = {HOSTILE: 1}
    samples[0]["error"] = "</script><script>alert(2)</script>"
    page = render_html(summary, timeline, samples, title=HOSTILE)
    assert "<script>alert" not in page
    assert "</script><script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    _check(page)
    assert page.count("<script") == 2  # the data island and the drawing script, nothing injected


def test_empty_inputs_render():
    summary = {"url": "http://x.test/", "mode": "closed", "phases": {"total": {"count": 0}}, "errors": {}}
    _check(render_html(summary, [], []))


def test_non_finite_numbers_do_not_break_the_data():
    summary, timeline, samples = bench_inputs()
    timeline[0]["p99_ms"] = float("nan")
    timeline[1]["max_ms"] = float("inf")
    page = render_html(summary, timeline, samples)
    assert "NaN" not in page and "Infinity" not in page


# -- a real browser ---------------------------------------------------------------------

def _chromium() -> str | None:
    for candidate in (os.environ.get("RESTIMING_CHROMIUM"), "chromium", "/usr/bin/chromium"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def _run_chromium(binary: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([binary, *flags, *extra], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _png_distinct_bytes(path: Path) -> int:
    """Distinct byte values in the PNG's decompressed image data: a blank page is a
    handful (filter bytes and one colour), a drawn chart hundreds."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "Uncaught" in line or (":CONSOLE" in line and "file://" in line)]


def test_report_draws_in_headless_chromium(tmp_path):
    binary = _chromium()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("chromium not installed")
    page = tmp_path / "report.html"
    page.write_text(render_html(*bench_inputs()), encoding="utf-8")

    dom = _run_chromium(binary, tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:500]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert "data-error" not in attrs, attrs.get("data-error")
    assert int(attrs.get("data-charts", 0)) >= 3, attrs
    assert int(attrs.get("data-points-drawn", 0)) > 0, attrs
    assert dom.stdout.count("<svg") >= 3
    assert not _console_errors(dom.stderr), _console_errors(dom.stderr)

    png = tmp_path / "report.png"
    shot = _run_chromium(binary, tmp_path, f"--screenshot={png}", "--window-size=1200,2000",
                         "--hide-scrollbars", page.as_uri())
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    assert png.stat().st_size > 20_000
    assert _png_distinct_bytes(png) > 64
    assert not _console_errors(shot.stderr), _console_errors(shot.stderr)


@pytest.mark.nginx
def test_report_of_a_real_run_in_headless_chromium(nginx, tmp_path, free_port):
    """A real bench (several URLs, a 404, a refused port): every chart has points,
    the per-group table has one row per URL, no console errors."""
    binary = _chromium()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("chromium not installed")
    import io

    from restiming.__main__ import main

    page = tmp_path / "report.html"
    urls = [nginx.url("/small.txt"), nginx.url("/text.html"), nginx.url("/status/404"),
            f"http://127.0.0.1:{free_port()}/"]
    out, err = io.StringIO(), io.StringIO()
    code = main(["bench", *urls, "--rate", "200", "-z", "1.5", "-c", "4", "--workers", "0", "--no-progress",
                 "--html", str(page), "--threshold", "failures:rate<1%"], stdout=out, stderr=err)
    assert code == 99, out.getvalue() + err.getvalue()
    text = page.read_text()
    table = text.split('id="group-table"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 1 + len(urls)  # the head row, then one per URL
    assert all(html_escape(u) in table for u in urls)
    assert "['" not in text.split("<main>")[0]  # URLs as a list, not a Python repr
    assert restiming.__version__ in text and "restiming bench" in text

    dom = _run_chromium(binary, tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom.stdout).group(1)))
    assert "data-error" not in attrs, attrs.get("data-error")
    assert int(attrs["data-charts"]) == 4, attrs
    for chart in ("timeline", "phases", "spectrum", "waterfall"):
        assert int(attrs.get(f"data-points-{chart}", 0)) > 0, (chart, attrs)
    assert int(attrs["data-points-timeline"]) >= 50 * 2  # >= 50 slots: a bar and line points each
    assert not _console_errors(dom.stderr), _console_errors(dom.stderr)
    # Sampled waterfall: new connections (a connect segment) and the failures are in it.
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1))
    kinds = {(r["error"], r["reused"], r["ok"]) for r in data["samples"]}
    assert ("connect", False, False) in kinds
    assert any(any(seg[0] == "connect" for seg in r["segments"]) for r in data["samples"])
    assert any(not r["ok"] and not r["error"] for r in data["samples"])


def html_escape(s: str) -> str:
    import html

    return html.escape(s)
