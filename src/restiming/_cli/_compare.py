"""``restiming compare BASE.json NEW.json``: two bench summaries side by side.

Per phase and per group (matched by name), p50/p90/p99/p99.9/max and throughput with
the change in percent. Percentiles come from the summaries' HdrHistogram blobs (the
merged histograms, never averaged percentiles); the exact max from the summary.
``--fail-if 'total:p(99)>+10%'`` (repeatable; see ``_thresholds``) exits 99 when any
rule holds for the change from BASE to NEW: this is how a release is gated on latency.
"""

from __future__ import annotations

import json
from typing import TextIO

from ._common import EXIT_OK, EXIT_THRESHOLDS, Parser, UsageError
from ._hdr import decode_histogram
from ._stats import HIST_PHASES
from ._thresholds import parse_threshold

__all__ = ["run_compare_cli", "compare_parser"]

_ROWS = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def compare_parser() -> Parser:
    p = Parser(prog="restiming compare", description="Compare two 'restiming bench --summary' files.")
    p.add_argument("base", metavar="BASE.json")
    p.add_argument("new", metavar="NEW.json")
    p.add_argument("--fail-if", action="append", default=[], metavar="EXPR",
                   help="exit 99 when the change holds, repeatable: 'total:p(99)>+10%%', 'rps:avg<-5%%', "
                        "'wait:p(50)>+2ms'")
    p.add_argument("--phases", default="total,corrected,wait,connect",
                   help="phases to show (default total,corrected,wait,connect); 'all' for every one")
    return p


def _load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise UsageError(f"restiming compare: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"restiming compare: {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or "phases" not in data:
        raise UsageError(f"restiming compare: {path} is not a 'restiming bench --summary' file")
    return data


def _value(row: dict | None, agg: str, p: float | None) -> float | None:
    """ms for a phase row and an aggregation, from its histogram."""
    if not row or not row.get("count"):
        return None
    if agg == "max":
        return row["max_ms"]
    if agg == "min":
        return row["min_ms"]
    if agg == "avg":
        return row["mean_ms"]
    if "hdr" not in row:
        key = {50.0: "p50_ms", 90.0: "p90_ms", 99.0: "p99_ms", 99.9: "p999_ms"}.get(p if agg == "p" else 50.0)
        return row.get(key) if key else None
    h = decode_histogram(row["hdr"])
    value = h.percentile(50.0 if agg == "med" else p) / 1e6
    return min(value, row["max_ms"])


def _change(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    if a == 0:
        return 0.0 if b == 0 else None
    return (b - a) / a * 100


def _pct(c: float | None) -> str:
    return "n/a" if c is None else f"{c:+.1f}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _section(lines: list, title: str, base: dict, new: dict, phases) -> None:
    lines.append(title)
    lines.append(f"  {'':<18}{'base':>12}{'new':>12}{'change':>10}")
    for phase in phases:
        a, b = base.get(phase), new.get(phase)
        if not (a and a.get("count")) and not (b and b.get("count")):
            continue
        lines.append(f"  {phase} (ms)")
        for label, p in _ROWS + (("max", None),):
            va = _value(a, "max" if p is None else "p", p)
            vb = _value(b, "max" if p is None else "p", p)
            lines.append(f"    {label:<16}{_num(va):>12}{_num(vb):>12}{_pct(_change(va, vb)):>10}")


def run_compare_cli(argv: list[str], out: TextIO, err: TextIO) -> int:
    args = compare_parser().parse_args(argv)
    rules = [parse_threshold(t, compare=True) for t in args.fail_if]
    base, new = _load(args.base), _load(args.new)
    phases = HIST_PHASES if args.phases == "all" else tuple(args.phases.split(","))
    lines = [f"restiming compare  {args.base} -> {args.new}", ""]
    _section(lines, "all requests", base["phases"], new["phases"], phases)
    ra, rb = base.get("throughput_rps"), new.get("throughput_rps")
    lines.append(f"  {'throughput (req/s)':<18}{ra:>12.1f}{rb:>12.1f}{_pct(_change(ra, rb)):>10}")
    base_groups = {g["name"]: g for g in base.get("groups") or []}
    for g in new.get("groups") or []:
        if g["name"] in base_groups:
            bg = base_groups[g["name"]]
            lines.append("")
            _section(lines, f"group {g['name']}", bg["phases"], g["phases"], ("total", "corrected"))
            lines.append(f"  {'throughput (req/s)':<18}{bg['rps']:>12.1f}{g['rps']:>12.1f}"
                         f"{_pct(_change(bg['rps'], g['rps'])):>10}")
    code = EXIT_OK
    if rules:
        lines.append("")
        lines.append("fail-if:")
    for rule in rules:
        if rule.metric == "rps":
            a, b = ra, rb
        elif rule.metric == "failures":
            a, b = base.get("failure_rate"), new.get("failure_rate")
        else:
            a = _value(base["phases"].get(rule.metric), rule.agg, rule.percentile)
            b = _value(new["phases"].get(rule.metric), rule.agg, rule.percentile)
        delta = _change(a, b) if rule.relative else (None if a is None or b is None else b - a)
        # A rule that cannot be evaluated (a phase with no data in either run, e.g.
        # "corrected" of a closed loop) fails, as a bench threshold without data does:
        # a release gate must not pass by default.
        holds = delta is None or rule.holds(delta)
        if holds:
            code = EXIT_THRESHOLDS
        shown = "n/a (no data: fails)" if delta is None else (f"{delta:+.1f}%" if rule.relative
                                                             else f"{delta:+.3f} ms")
        lines.append(f"  {'FAIL' if holds else 'PASS'}  {rule.text:<28} change {shown}")
    out.write("\n".join(lines) + "\n")
    return code
