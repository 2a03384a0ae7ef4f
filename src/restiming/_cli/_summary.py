"""The bench's summary: the JSON document (``build_summary``: outcomes, per-phase and
per-group percentiles with HdrHistogram blobs, thresholds, connections, the run's
context) and its text form (``format_summary``), shared by the local and the Ray runs
and the Python API (``restiming.distributed``)."""

from __future__ import annotations

import datetime
import os
import platform
import shlex

import restiming

from ._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_THRESHOLDS
from ._hdr import encode_histogram
from ._hist import Histogram
from ._runner import _peak_rss_mb
from ._stats import HIST_PHASES, Aggregator

__all__ = ["build_summary", "format_summary"]

def _phase_row(hist: Histogram, with_hdr: bool = True) -> dict:
    if not hist.count:
        return {"count": 0}
    row = hist.summary_ms()
    if with_hdr:
        row["hdr"] = encode_histogram(hist)
    return row


def _group_summary(group, agg: Aggregator, elapsed: float, open_loop: bool) -> dict:
    statuses = dict(sorted(group.statuses.items()))
    errors = dict(sorted(group.errors.items()))
    responses = sum(statuses.values())
    expected = sum(c for s, c in statuses.items() if agg.expected(s))
    ended = responses + sum(errors.values())
    failures = ended - expected
    phases = {name: _phase_row(h) for name, h in zip(HIST_PHASES, group.hists)
              if name != "corrected" or open_loop}
    return {"name": group.name, "requests": ended, "responses": responses, "expected": expected,
            "unexpected": responses - expected, "errors": errors,
            "statuses": {str(k): v for k, v in statuses.items()},
            "failures": failures, "failure_rate": failures / ended if ended else 0.0,
            # throughput counts responses (any status); a network error is not one
            "rps": responses / elapsed, "ok_rps": expected / elapsed, "phases": phases}


def _metric_value(t, hists: dict, totals: dict) -> float | None:
    if t.metric == "failures":
        return totals["failure_rate"] if totals["requests"] else None
    if t.metric == "rps":
        return totals["rps"]
    h = hists.get(t.metric)
    if h is None or not h.count:
        return None
    ns = {"avg": h.mean, "min": h.min, "max": h.max, "med": h.percentile(50)}.get(t.agg)
    if t.agg == "p":
        ns = h.percentile(t.percentile)
    return ns / 1e6


def build_summary(cfg, agg, results, lost, elapsed, interrupted, started_at, args) -> dict:
    merged = agg.merged()
    open_loop = cfg.open_loop
    totals = _group_summary(merged, agg, elapsed, open_loop)
    order = {u: i for i, u in enumerate(cfg.urls)}
    ordered = sorted(agg.groups.values(), key=lambda g: (order.get(g.name, len(order)), g.name)
                     if cfg.group_by == "url" else (g.name == "error", g.name))
    if cfg.group_by == "method":  # one method per run: one group, named by it
        ordered = agg.all_groups()
    groups = [_group_summary(g, agg, elapsed, open_loop) for g in ordered]
    sent = sum(r.get("sent", 0) for r in results)
    dropped = sum(r.get("dropped", 0) for r in results)
    warm_sent = sum(r.get("warmup_sent", 0) for r in results)
    accounted = totals["requests"] + agg.warmup_entries
    missing = max(sent + warm_sent - accounted, 0) + lost
    hists = dict(zip(HIST_PHASES, merged.hists))
    thresholds = []
    for t in cfg.thresholds:
        value = _metric_value(t, hists, totals)
        thresholds.append({"expr": t.text, "value": value, "unit": t.unit.strip(),
                           "passed": value is not None and t.holds(value)})
    if interrupted:
        code = EXIT_INTERRUPTED
    elif missing or totals["expected"] == 0 or dropped:
        code = EXIT_FAILED
    elif not all(t["passed"] for t in thresholds):
        code = EXIT_THRESHOLDS
    else:
        code = EXIT_OK
    concurrency = sum(r.get("concurrency", 0) for r in results) or cfg.concurrency
    summary = {
        "restiming_version": restiming.__version__,
        "started_at": datetime.datetime.fromtimestamp(started_at, datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "command": "restiming bench " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []) or []),
        "host": f"{platform.node()} ({platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
                f"Python {platform.python_version()})",
        "urls": cfg.urls,
        "mode": "open" if open_loop else "closed",
        "method": cfg.method,
        "concurrency": concurrency,
        "workers": cfg.workers,
        "requested": {"concurrency": cfg.requested_concurrency, "workers": cfg.requested_workers},
        "rate": cfg.rate,
        "stages": cfg.stages,
        "warmup_s": cfg.warmup,
        "max_in_flight": cfg.max_in_flight if open_loop else None,
        "duration_s": elapsed,
        "expect_status": cfg.expect_text,
        "group_by": cfg.group_by,
        "sent": sent,
        "completed": totals["responses"],
        "expected": totals["expected"],
        "unexpected": totals["unexpected"],
        "errors": totals["errors"],
        "dropped": dropped,
        "missing": missing,
        "warmup_requests": agg.warmup_entries,
        "connections": {"opened": sum(agg.connections.values()), "by_protocol": dict(agg.connections)},
        "statuses": totals["statuses"],
        "failures": totals["failures"],
        "failure_rate": totals["failure_rate"],
        "throughput_rps": totals["rps"],
        "ok_throughput_rps": totals["ok_rps"],
        "late": agg.late_summary() if open_loop else None,
        "phases": totals["phases"],
        "groups": groups,
        "thresholds": thresholds,
        "exit_code": code,
        "peak_rss_mb": {"parent": _peak_rss_mb(), "workers": [r.get("rss_mb") for r in results]},
        "interrupted": interrupted,
    }
    return summary


# ---------------------------------------------------------------- text
def _fmt_row(label: str, row: dict, width: int = 13) -> str:
    if not row.get("count"):
        return f"  {label:<{width}}" + f"{'-':>10}" * 5 + f"{0:>9}"
    return (f"  {label:<{width}}{row['p50_ms']:>10.3f}{row['p90_ms']:>10.3f}{row['p99_ms']:>10.3f}"
            f"{row['p999_ms']:>10.3f}{row['max_ms']:>10.3f}{row['count']:>9}")


def format_summary(summary: dict) -> str:
    lines = []
    urls = summary["urls"]
    lines.append(f"restiming bench  {urls[0] if len(urls) == 1 else f'{len(urls)} URLs'}")
    if summary["mode"] == "open":
        mode = (f"open loop, stages {summary['stages']}" if summary.get("stages")
                else f"open loop at {summary['rate']:g} req/s")
        mode += f", up to {summary['concurrency']} connections"
    else:
        mode = f"closed loop, {summary['concurrency']} concurrent"
    warm = f" after {summary['warmup_s']:g} s warm-up" if summary.get("warmup_s") else ""
    lines.append(f"  {mode}, {summary['workers']} worker(s), {summary['duration_s']:.2f} s{warm}"
                 + ("  [interrupted]" if summary.get("interrupted") else ""))
    errors = summary["errors"]
    err_text = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"
    lines.append(f"  requests: {summary['sent']} sent, {summary['completed']} completed "
                 f"({summary['expected']} expected status, {summary['unexpected']} unexpected), "
                 f"{sum(errors.values())} errors ({err_text}), {summary['dropped']} dropped")
    statuses = ", ".join(f"{k} ×{v}" for k, v in summary["statuses"].items()) or "none"
    lines.append(f"  statuses: {statuses}   (expected: {summary['expect_status']})")
    lines.append(f"  failures: {summary['failures']} ({summary['failure_rate'] * 100:.2f}%)")
    lines.append(f"  throughput: {summary['throughput_rps']:.1f} req/s, "
                 f"{summary['ok_throughput_rps']:.1f} req/s with an expected status")
    conns = summary.get("connections")
    if conns and conns["opened"]:
        protocols = ", ".join(f"{k or '?'} {v}" for k, v in sorted(conns["by_protocol"].items()))
        per = summary["completed"] / conns["opened"]
        streams = " (HTTP/2: each response a stream on them)" if "h2" in conns["by_protocol"] else ""
        lines.append(f"  connections: {conns['opened']} opened ({protocols}), {per:.1f} responses per "
                     f"connection{streams}")
    if summary.get("late") is not None:
        late = summary["late"]
        lines.append(f"  late starts: {late['count']} over {late['threshold_ms']:g} ms (p50 {late['p50_ms']:.3f}, "
                     f"p99 {late['p99_ms']:.3f}, max {late['max_ms']:.3f} ms)")
    if summary["dropped"]:
        lines.append(f"  dropped: {summary['dropped']} arrivals not sent "
                     f"({summary['max_in_flight']} already in flight: the client could not keep up)")
    if summary.get("missing"):
        lines.append(f"  missing: {summary['missing']} requests left no entry")
    cluster = summary.get("cluster")
    if cluster:
        hosts = sorted({a["host"] for a in cluster["actors"]})
        lines.append(f"  ray: {len(cluster['actors'])} engine actor(s) on {cluster['nodes']} node(s) "
                     f"({', '.join(hosts)})")
        for a in cluster["actors"]:
            if a["status"] != "ok":
                lines.append(f"  actor {a['index']} on {a['host']} (pid {a['pid']}) {a['status']}: "
                             f"{a['lost']} requests lost ({a['reason']})")
    if summary.get("warmup_requests"):
        lines.append(f"  warm-up: {summary['warmup_requests']} requests excluded from every statistic")
    lines.append("")
    lines.append(f"  {'phase (ms)':<13}{'p50':>10}{'p90':>10}{'p99':>10}{'p99.9':>10}{'max':>10}{'count':>9}")
    for name, row in summary["phases"].items():
        lines.append(_fmt_row("total*" if name == "corrected" else name, row))
    if "corrected" in summary["phases"]:
        lines.append("  total* = corrected: from the intended start (open loop, no coordinated omission)")
    if summary.get("groups"):
        which = "corrected" if summary["mode"] == "open" else "total"
        lines.append("")
        lines.append(f"  by {summary['group_by']} ({'total*' if which == 'corrected' else 'total'}, ms)")
        lines.append(f"  {'':<3}{'p50':>10}{'p90':>10}{'p99':>10}{'p99.9':>10}{'max':>10}{'count':>9}"
                     f"{'fail%':>8}{'req/s':>10}  name")
        for i, g in enumerate(summary["groups"], 1):
            row = g["phases"].get(which) or {}
            cells = _fmt_row(f"{i}", row, width=3)
            lines.append(f"{cells}{g['failure_rate'] * 100:>8.2f}{g['rps']:>10.1f}  {g['name']}")
    if summary.get("thresholds"):
        lines.append("")
        lines.append("  thresholds:")
        for t in summary["thresholds"]:
            mark = "PASS" if t["passed"] else "FAIL"
            if t["value"] is None:
                value = "no data"
            elif t["expr"].startswith("failures"):
                value = f"{t['value'] * 100:.3f}%"
            else:
                value = f"{t['value']:.3f}{(' ' + t['unit']) if t['unit'] else ''}"
            lines.append(f"    {mark}  {t['expr']:<28} {value}")
    return "\n".join(lines) + "\n"
