"""``restiming bench --ray`` and ``restiming.distributed.run`` on a real local Ray
instance (one per module, small: 1 CPU, 4 engine slots) against local nginx. Each run
is a second or two of load. Every request is accounted for (against the Parquet
rows), the histograms agree with exact percentiles computed from the Parquet, and
thresholds, exit codes, a killed actor, Ctrl-C and an unreachable cluster behave as
the CLI promises."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from restiming.__main__ import main
from restiming._cli._hist import rank_for_percentile

pytestmark = [pytest.mark.slow, pytest.mark.nginx]

if os.environ.get("CI") == "true":  # CI installs the extra: a missing Ray is a failure there
    import pyarrow.dataset as ds
    import ray
else:
    ray = pytest.importorskip("ray")
    ds = pytest.importorskip("pyarrow.dataset")

from restiming import distributed  # noqa: E402
from restiming.distributed._runner import RESOURCE, RayRunner  # noqa: E402

ENGINE_SLOTS = 4


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    assert not ray.is_initialized(), "an earlier test left Ray initialized in this process"
    ray.init(num_cpus=1, resources={RESOURCE: ENGINE_SLOTS}, include_dashboard=False,
             object_store_memory=128 * 1024 * 1024, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def bench(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(["bench", "--no-progress", *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _table(path):
    return ds.dataset(str(path)).to_table()


def _exact(values, p):
    values = sorted(values)
    return values[rank_for_percentile(p, len(values)) - 1]


def _close(hist_ms, exact_ns):
    """A histogram value is the top of its counter: never below the exact value, above
    it by less than 1/1024 of it plus one unit (1 µs here)."""
    exact_ms = exact_ns / 1e6
    return exact_ms - 1e-9 <= hist_ms <= exact_ms * (1 + 1 / 1024) + 0.001


def test_open_loop_every_request_accounted_for_and_percentiles_match_parquet(nginx, tmp_path):
    pq, summary = tmp_path / "pq", tmp_path / "s.json"
    code, text, err = bench(nginx.url("/small.txt"), "--rate", "400", "-z", "1.5", "-c", "16", "--workers", "2",
                            "--ray", "--parquet", str(pq), "--summary", str(summary), "--warmup", "0.3")
    s = json.loads(summary.read_text())
    assert code == (0 if not s["dropped"] else 1), text + err
    assert "ray: 2 engine actor(s)" in text
    table = _table(pq)
    errors = sum(s["errors"].values())
    assert s["sent"] + s["dropped"] == 600
    assert s["sent"] == s["completed"] + errors == table.num_rows and s["missing"] == 0
    assert s["warmup_requests"] > 0 and "warmup" not in table.column("initiator_type").to_pylist()
    actors = s["cluster"]["actors"]
    assert [a["status"] for a in actors] == ["ok", "ok"]
    assert sorted(set(table.column("actor").to_pylist())) == [0, 1]
    by_actor = {a["index"]: a for a in actors}
    for i in (0, 1):
        rows = table.filter(ds.field("actor") == i)
        assert rows.num_rows == by_actor[i]["sent"]
        assert set(rows.column("pid").to_pylist()) == {by_actor[i]["pid"]}
        assert len(set(rows.column("origin_realtime_ns").to_pylist())) == 1
    # Histograms vs exact percentiles of the Parquet: total = duration, corrected =
    # response_end - intended_start (both integer ns, from one host's stamps).
    ok = [r for r in table.to_pylist() if r["response_status"]]
    totals = [r["duration"] for r in ok]
    corrected = [r["response_end"] - r["intended_start"] for r in ok]
    for name, values in (("total", totals), ("corrected", corrected)):
        row = s["phases"][name]
        assert row["count"] == len(values)
        for p, key in ((50, "p50_ms"), (90, "p90_ms"), (99, "p99_ms"), (99.9, "p999_ms")):
            assert _close(row[key], _exact(values, p)), (name, key, row[key], _exact(values, p))
        assert row["max_ms"] == pytest.approx(max(values) / 1e6)
    # One time axis: every row placed by its host's wall clock falls inside the run.
    start = s["cluster"]["start_at_unix_ns"]
    walls = [r["origin_realtime_ns"] + r["start_time"] for r in table.to_pylist()]
    assert start - 5e6 <= min(walls) and max(walls) <= start + 3e9


def test_closed_loop_thresholds_and_exit_codes(nginx, tmp_path):
    url = nginx.url("/small.txt")
    code, text, err = bench(url, "-n", "200", "-c", "4", "--workers", "2", "--ray",
                            "--threshold", "total:p(99)<10s", "--threshold", "failures:rate<1%")
    assert code == 0, text + err
    assert "PASS  total:p(99)<10s" in text and "200 sent, 200 completed" in text
    code, text, err = bench(url, "-n", "100", "-c", "2", "--workers", "2", "--ray",
                            "--threshold", "total:p(50)<1us")
    assert code == 99, text + err
    assert "FAIL  total:p(50)<1us" in text
    code, text, err = bench(url, "-n", "50", "-c", "2", "--workers", "2", "--ray", "--expect-status", "404")
    assert code == 1, text + err


def test_python_api_returns_the_cli_summary(nginx, tmp_path):
    summary = distributed.run(distributed.Config(urls=(nginx.url("/small.txt"),), workers=2, requests=100,
                                                 concurrency=4, thresholds=("total:p(99)<10s",),
                                                 summary=str(tmp_path / "s.json")))
    on_disk = json.loads((tmp_path / "s.json").read_text())
    assert set(summary) == set(on_disk) and summary.exit_code == 0 and summary.passed
    assert summary["sent"] == summary.completed == 100 and summary.cluster["actors"][0]["status"] == "ok"
    assert "restiming bench" in summary.text()
    with pytest.raises(ValueError):
        distributed.run(distributed.Config(urls=("http://x/",), workers=1, concurrency=0))


def test_killed_actor_is_reported_with_its_lost_count(nginx, tmp_path):
    killed = []

    def on_poll(elapsed, handles):
        if elapsed > 0.6 and not killed:
            ray.kill(handles[1])
            killed.append(time.monotonic())

    pq = tmp_path / "pq"
    summary = distributed.run(distributed.Config(urls=(nginx.url("/small.txt"),), workers=2, rate=200,
                                                 duration=2.0, concurrency=8, parquet=str(pq)),
                              runner=RayRunner(on_poll=on_poll))
    assert killed
    actors = summary.cluster["actors"]
    dead = actors[1]
    assert actors[0]["status"] == "ok" and dead["status"] == "died" and "actor died" in dead["reason"]
    assert 0 < dead["lost"] <= 200 and summary.exit_code == 1 and summary.missing == dead["lost"]
    assert summary.sent + summary.dropped + dead["lost"] - (dead["sent"] - dead["records"]) == 400
    table = _table(pq)
    assert table.filter(ds.field("actor") == 1).num_rows == dead["records"]
    assert table.num_rows == summary.completed + sum(summary.errors.values())
    assert "actor 1 on" in summary.text() and "requests lost" in summary.text()


def _src_env():
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.abspath(distributed.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    return env


def test_ctrl_c_stops_every_actor_and_still_writes_the_summary(nginx, tmp_path):
    pq, summary = tmp_path / "pq", tmp_path / "s.json"
    address = ray.get_runtime_context().gcs_address  # the module's instance
    proc = subprocess.Popen([sys.executable, "-m", "restiming", "bench", "--no-progress", nginx.url("/small.txt"),
                             "--rate", "100", "-z", "60", "--workers", "2", "--ray", address, "--parquet", str(pq),
                             "--summary", str(summary)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_src_env(), start_new_session=True, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (pq.exists() and len(list(pq.iterdir())) == 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    s = json.loads(summary.read_text())
    assert s["interrupted"] and "[interrupted]" in out
    assert 0 < s["sent"] < 6000 and s["missing"] == 0
    assert s["sent"] == s["completed"] + sum(s["errors"].values()) == _table(pq).num_rows
    deadline = time.monotonic() + 30  # every actor gone: their engine slots are free again
    while ray.available_resources().get(RESOURCE, 0) < ENGINE_SLOTS and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get(RESOURCE, 0) == ENGINE_SLOTS


def test_unreachable_cluster_is_a_clear_error_before_any_load(nginx, free_port):
    port = free_port()
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "restiming", "bench", nginx.url("/small.txt"), "-n", "10",
                           "--workers", "2", "--ray", f"127.0.0.1:{port}"], capture_output=True, text=True,
                          env=_src_env(), timeout=60)
    assert proc.returncode == 1 and time.monotonic() - t < 30
    assert f"cannot reach the Ray cluster at '127.0.0.1:{port}'" in proc.stderr
    assert proc.stdout == ""  # no summary: nothing ran
