"""CLI flags of issue 12: ``--http2`` and ``-x/--proxy`` for the fetch command and
``bench`` (both pass straight through to ``restiming.Client``)."""

from __future__ import annotations

import io
import json

import pytest

from restiming._cli._main import main

pytestmark = pytest.mark.nginx


def test_fetch_http2_json(nginx, tls_ca):
    pytest.importorskip("h2")
    out = io.StringIO()
    status = main([nginx.url("/plain/small.txt", h2=True), "--http2", "--cacert", tls_ca.ca_file, "--json"], out)
    assert status == 0, out.getvalue()
    (entry,) = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")] or \
        [json.loads(out.getvalue())]
    assert "h2" in json.dumps(entry)


def test_fetch_through_a_proxy(nginx, tinyproxy):
    out = io.StringIO()
    status = main([nginx.url("/plain/small.txt"), "-x", tinyproxy.url, "--json"], out)
    assert status == 0, out.getvalue()
    assert f"127.0.0.1:{tinyproxy.port}" in out.getvalue()


def test_bad_proxy_is_a_usage_error(nginx):
    out = io.StringIO()
    assert main([nginx.url("/"), "--proxy", "ftp://nope:1"], out) != 0
    assert "proxy" in out.getvalue()


def test_bench_http2_and_proxy(nginx, tls_ca, tinyproxy):
    pytest.importorskip("h2")
    out = io.StringIO()
    status = main(["bench", nginx.url("/plain/small.txt", h2=True), "--http2", "-c", "16", "-n", "64",
                   "--workers", "0", "--no-progress", "--cacert", tls_ca.ca_file], out)
    assert status == 0, out.getvalue()
    # 16 concurrent fetches multiplexed as streams over one connection, and said so
    assert "connections: 1 opened (h2 1), 64.0 responses per connection (HTTP/2" in out.getvalue()
    out = io.StringIO()
    status = main(["bench", nginx.url("/plain/small.txt"), "-x", tinyproxy.url, "-c", "4", "-n", "16",
                   "--workers", "0", "--no-progress"], out)
    assert status == 0, out.getvalue()


def test_bench_summary_counts_connections(nginx, tmp_path):
    out = io.StringIO()
    summary = tmp_path / "s.json"
    status = main(["bench", nginx.url("/plain/small.txt"), "-c", "4", "-n", "40", "--workers", "0",
                   "--no-progress", "--summary", str(summary)], out)
    assert status == 0, out.getvalue()
    conns = json.loads(summary.read_text())["connections"]
    assert conns == {"opened": 4, "by_protocol": {"http/1.1": 4}}
    assert "connections: 4 opened (http/1.1 4), 10.0 responses per connection" in out.getvalue()
