"""``restiming bench`` / ``compare`` / fetch as users run them: against real nginx and
the scripted server, in-process (``main(argv, stdout, stderr)``) and as subprocesses.
Load runs are short and bounded (a second or two each)."""

from __future__ import annotations

import io
import json
import re
import os
import subprocess
import sys

import pytest

from restiming import __version__
from restiming.__main__ import main
from restiming._cli._hist import rank_for_percentile
from restiming.phases import phase_durations
from tests.peers.scripted import Send, Sleep, response

pytestmark = pytest.mark.nginx


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def bench(*argv):
    return run("bench", "--no-progress", *argv)


def _env(**extra):
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    env.update(extra)
    return env


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("rate,workers", [(200, 1), (1000, 2), (3000, 1), (3000, 2)])
def test_open_loop_never_negative_and_corrected_at_least_total(nginx, tmp_path, monkeypatch, loop, rate, workers):
    if loop == "asyncio":
        monkeypatch.setenv("RESTIMING_LOOP", "asyncio")
    out, summary = tmp_path / "o.ndjson", tmp_path / "s.json"
    seconds = 1.0 if rate < 3000 else 0.5
    code, text, err = bench(nginx.url("/small.txt"), "--rate", str(rate), "-z", str(seconds), "-c", "32",
                            "--workers", str(workers), "--out", str(out), "--summary", str(summary))
    data = json.loads(summary.read_text())
    assert code == (0 if not data["dropped"] else 1), text + err
    rows = _rows(out)
    assert data["sent"] + data["dropped"] == int(rate * seconds)
    assert len(rows) == data["sent"] == data["completed"] + sum(data["errors"].values())
    assert data["late"]["early"] == 0
    rss = data["peak_rss_mb"]  # memory of every process of the run
    assert rss["parent"] > 0 and len(rss["workers"]) == workers and all(w > 0 for w in rss["workers"])
    for row in rows:
        d = phase_durations(row)
        assert row["start_time"] >= row["intended_start"] > 0
        assert all(v is None or v >= 0 for v in d.values()), d
        assert d["corrected"] >= d["total"] >= 0
    assert data["phases"]["corrected"]["min_ms"] >= 0


def test_overloaded_open_loop_reports_drops(scripted_server, tmp_path):
    server = scripted_server(lambda req: [Sleep(0.3), Send(response(200, [], b"ok"))])
    summary = tmp_path / "s.json"
    code, text, err = bench(server.url("/"), "--rate", "100", "-z", "1", "-c", "50", "--max-in-flight", "5",
                            "--summary", str(summary))
    data = json.loads(summary.read_text())
    assert code == 1, text
    assert data["dropped"] > 50 and data["sent"] + data["dropped"] == 100
    assert "dropped:" in text and "could not keep up" in text


def test_unexpected_statuses_fail_and_thresholds_exit_99(nginx, tmp_path):
    summary = tmp_path / "s.json"
    code, text, _ = bench(nginx.url("/status/503"), nginx.url("/status/404"), "-n", "100", "-c", "4",
                          "--summary", str(summary))
    data = json.loads(summary.read_text())
    assert code == 1, text  # nothing succeeded
    assert data["statuses"] == {"404": 50, "503": 50} and data["unexpected"] == 100 and data["expected"] == 0
    assert data["failure_rate"] == 1.0 and data["ok_throughput_rps"] == 0
    assert "404 ×50" in text and "503 ×50" in text
    assert [g["name"] for g in data["groups"]] == [nginx.url("/status/503"), nginx.url("/status/404")]

    # Some fail: the default rule passes, a failure-rate threshold does not.
    urls = [nginx.url("/small.txt")] * 3 + [nginx.url("/status/503")]
    code, text, _ = bench(*urls, "-n", "80", "-c", "4", "--summary", str(summary),
                          "--threshold", "failures:rate<1%", "--threshold", "total:p(99)<10s")
    data = json.loads(summary.read_text())
    assert code == 99, text
    assert [t["passed"] for t in data["thresholds"]] == [False, True]
    assert "FAIL  failures:rate<1%" in text and "PASS  total:p(99)<10s" in text
    assert data["failure_rate"] == pytest.approx(0.25)
    # 503 expected: everything passes.
    code, text, _ = bench(*urls, "-n", "40", "--expect-status", "200,503", "--threshold", "failures:rate<1%")
    assert code == 0, text


def test_refused_port_exits_1_and_says_connection_refused(free_port):
    port = free_port()
    code, text, _ = bench(f"http://127.0.0.1:{port}/", "-n", "20")
    assert code == 1 and "connect 20" in text
    assert "throughput: 0.0 req/s" in text  # network errors are not responses
    code, out, err = run(f"http://127.0.0.1:{port}/")
    assert code == 1 and out == ""
    assert f"connection refused by 127.0.0.1:{port}" in err


def test_threshold_syntax_errors_are_usage_errors(nginx):
    for bad in ("total<5", "total:p(99)<5%", "nope:avg<1"):
        code, _, err = bench(nginx.url("/small.txt"), "-n", "1", "--threshold", bad)
        assert code == 2 and "threshold" in err


def test_concurrency_is_the_total_across_workers(scripted_server, tmp_path):
    server = scripted_server(lambda req: [Sleep(0.005), Send(response(200, [], b"ok"))])
    summary = tmp_path / "s.json"
    code, text, err = bench(server.url("/"), "-n", "60", "-c", "1", "--workers", "3", "--summary", str(summary))
    assert code == 0, text
    assert "running 1 worker(s), not 3" in err
    data = json.loads(summary.read_text())
    assert (data["concurrency"], data["workers"]) == (1, 1)
    assert data["requested"] == {"concurrency": 1, "workers": 3}
    assert server.connections == 1 and "1 concurrent, 1 worker(s)" in text

    server = scripted_server(lambda req: [Sleep(0.005), Send(response(200, [], b"ok"))])
    code, text, _ = bench(server.url("/"), "-n", "80", "-c", "4", "--workers", "2", "--summary", str(summary))
    assert code == 0 and json.loads(summary.read_text())["concurrency"] == 4
    assert server.connections == 4


def test_data_flag_is_the_body_and_duration_is_z(scripted_server):
    server = scripted_server()
    code, text, _ = bench(server.url("/post"), "-X", "POST", "-d", "a=1", "-n", "5", "-c", "1")
    assert code == 0, text
    req = server.requests[0]
    assert req.method == "POST" and req.body == b"a=1"
    assert req.header("content-type") == b"application/x-www-form-urlencoded"
    assert req.header("user-agent") == f"restiming/{__version__}".encode()
    code, text, _ = bench(server.url("/"), "-z", "0.3", "-c", "2")
    assert code == 0, text
    assert re.search(r"worker\(s\), 0\.[34]\d s", text), text  # -z is the duration: about 0.3 s


def test_warmup_and_stages(nginx, tmp_path):
    out, summary = tmp_path / "o.ndjson", tmp_path / "s.json"
    code, text, _ = bench(nginx.url("/small.txt"), "--stages", "0.5s:200,0.5s:0", "--warmup", "0.5",
                          "--out", str(out), "--summary", str(summary))
    data = json.loads(summary.read_text())
    assert code == 0, text
    assert data["sent"] == 100  # (0 + 200) / 2 * 0.5 + (200 + 0) / 2 * 0.5
    assert data["warmup_requests"] == 100  # 0.5 s at the first target, 200 req/s
    rows = _rows(out)
    assert len(rows) == 100 and all(r["initiator_type"] == "fetch" for r in rows)
    assert data["phases"]["total"]["count"] == 100


def test_summary_histograms_and_hlog_read_by_hdrhistogram(nginx, tmp_path):
    hdrh = pytest.importorskip("hdrh.histogram")
    hlog_mod = pytest.importorskip("hdrh.log")
    summary, hlog = tmp_path / "s.json", tmp_path / "run.hlog"
    code, text, _ = bench(nginx.url("/small.txt"), nginx.url("/text.html"), "--rate", "400", "-z", "2.2",
                          "--summary", str(summary), "--hlog", str(hlog))
    assert code == 0, text
    data = json.loads(summary.read_text())
    for rows in [data["phases"]] + [g["phases"] for g in data["groups"]]:
        for name, row in rows.items():
            if not row["count"]:
                continue
            h = hdrh.HdrHistogram.decode(row["hdr"])
            assert h.get_total_count() == row["count"], name
            n = row["count"]
            for p, key in ((50, "p50_ms"), (90, "p90_ms"), (99, "p99_ms")):
                # Our rank is ceil(p/100 * n) (theirs rounds to nearest): ask theirs at ours.
                rank = rank_for_percentile(p, n)
                theirs = h.get_value_at_percentile(rank * 100 / n)
                lo, hi = round(row["min_ms"] * 1e6), round(row["max_ms"] * 1e6)
                # We also answer the first and last rank with the exact min and max
                # (which the blob does not carry) and clamp into them.
                expected = lo if rank == 1 else hi if rank == n else min(max(theirs, lo), hi)
                assert round(row[key] * 1e6) == expected, (name, p, theirs, row[key])
    assert len(data["groups"]) == 2
    reader = hlog_mod.HistogramLogReader(str(hlog), hdrh.HdrHistogram(1000, 3_600_000_000_000, 3))
    total, intervals = 0, 0
    while True:
        h = reader.get_next_interval_histogram()
        if h is None:
            break
        intervals += 1
        total += h.get_total_count()
    assert intervals >= 2
    assert total == data["completed"]


def _summary_with(tmp_path, name, latencies_ms, rps):
    from restiming._cli._hdr import encode_histogram
    from restiming._cli._hist import Histogram

    h = Histogram()
    h.record_batch([int(v * 1e6) for v in latencies_ms])
    row = dict(h.summary_ms(), hdr=encode_histogram(h))
    doc = {"urls": ["http://x/"], "mode": "closed", "throughput_rps": rps, "phases": {"total": row},
           "groups": [{"name": "http://x/", "rps": rps, "phases": {"total": row}}]}
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def test_compare_two_summaries_with_a_known_shift(tmp_path):
    base = _summary_with(tmp_path, "base.json", [10.0] * 900 + [20.0] * 100, 100.0)
    new = _summary_with(tmp_path, "new.json", [10.0] * 900 + [30.0] * 100, 90.0)
    code, text, _ = run("compare", base, new)
    assert code == 0, text
    line = next(x for x in text.splitlines() if x.strip().startswith("p99 "))
    assert "+50.0%" in line
    assert "-10.0%" in text  # throughput
    code, text, _ = run("compare", base, new, "--fail-if", "total:p(99)>+10%")
    assert code == 99 and "FAIL" in text
    code, text, _ = run("compare", base, new, "--fail-if", "total:p(50)>+10%", "--fail-if", "rps:avg<-20%")
    assert code == 0, text
    code, _, err = run("compare", base, str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err
    # a rule on a phase with no data in these runs fails: a gate never passes by default
    code, text, _ = run("compare", base, new, "--fail-if", "tls:p(99)>+1%")
    assert code == 99 and "no data" in text


def test_fetch_include_headers_and_stderr_routing(nginx):
    code, out, err = run("-i", nginx.url("/small.txt"))
    assert code == 0 and err == ""
    head = out.split("\n\n")[0]
    assert "HTTP/1.1 200 OK" in head and "Server: nginx" in head and "Content-Type: text/plain" in head


def test_piped_output_ends_quietly(nginx):
    url = nginx.url("/small.txt")
    proc = subprocess.run(f"{sys.executable} -m restiming {url} {url} {url} {url} | head -2", shell=True,
                          capture_output=True, text=True, timeout=60, env=_env())
    assert proc.stdout.count("\n") == 2
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_errors_go_to_stderr_in_a_subprocess(free_port):
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "restiming", f"http://127.0.0.1:{port}/"], capture_output=True,
                          text=True, timeout=60, env=_env())
    assert proc.returncode == 1 and proc.stdout == ""
    assert "connection refused" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "restiming", "bench", "http://x/", "--threshold", "bad"],
                          capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 2 and proc.stdout == "" and "threshold" in proc.stderr


def test_internal_errors_exit_70_with_a_traceback(monkeypatch, nginx):
    import restiming._cli._bench as bench_mod

    def boom(*a, **k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(bench_mod, "run_bench", boom)
    code, _, err = bench(nginx.url("/small.txt"), "-n", "1")
    assert code == 70 and "Traceback" in err and "RuntimeError: a bug" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_has_target_rate_errors_p99_and_eta(nginx):
    err = _Terminal()
    code = main(["bench", nginx.url("/small.txt"), "--rate", "200", "-z", "1"], stdout=io.StringIO(), stderr=err)
    assert code == 0
    line = err.getvalue().split("\r")[-1]
    assert "200/200 done" in line and "req/s" in line and "errors" in line and "p99" in line and "ETA" in line


def test_har_request_headers_are_the_ones_sent(scripted_server, tmp_path):
    server = scripted_server()
    har = tmp_path / "f.har"
    code, _, _ = run("--har", str(har), "-H", "X-Trace: 1", "-d", "q=2", server.url("/form"))
    assert code == 0
    received = [(n.decode().lower(), v.decode()) for n, v in server.requests[0].headers]
    entry = json.loads(har.read_text())["log"]["entries"][0]
    listed = [(h["name"].lower(), h["value"]) for h in entry["request"]["headers"]]
    assert sorted(listed) == sorted(received)
    assert entry["request"]["method"] == "POST" and entry["request"]["bodySize"] == 3

    har = tmp_path / "b.har"
    code, text, _ = bench(server.url("/b"), "-n", "3", "-c", "1", "--har", str(har))
    assert code == 0, text
    received = sorted((n.decode().lower(), v.decode()) for n, v in server.requests[-1].headers)
    for entry in json.loads(har.read_text())["log"]["entries"]:
        assert sorted((h["name"].lower(), h["value"]) for h in entry["request"]["headers"]) == received


def test_bad_client_options_are_usage_errors(nginx, tmp_path):
    for argv in (["--origin", "bad"], ["--cacert", str(tmp_path / "missing.pem")], ["--timeout", "0"]):
        code, _, err = bench(nginx.url("/small.txt"), "-n", "1", *argv)
        assert code == 2, (argv, err)
        code, _, err = run(nginx.url("/small.txt"), *argv)
        assert code == 2, (argv, err)


def test_group_by_status_and_method_in_process(nginx, tmp_path):
    summary = tmp_path / "s.json"
    urls = [nginx.url("/small.txt"), nginx.url("/status/404")]
    code, text, _ = bench(*urls, "-n", "40", "-c", "2", "--workers", "0", "--group-by", "status",
                          "--summary", str(summary))
    assert code == 0, text
    data = json.loads(summary.read_text())
    assert {g["name"]: g["requests"] for g in data["groups"]} == {"200": 20, "404": 20}
    assert "by status" in text
    code, text, _ = bench(*urls, "-n", "10", "--workers", "0", "--group-by", "method", "--summary", str(summary))
    assert [g["name"] for g in json.loads(summary.read_text())["groups"]] == ["GET"]
    assert code == 0
