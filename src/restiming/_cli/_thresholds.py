"""The bench's pass/fail rules: expected status codes, thresholds, comparisons.

Threshold grammar (``--threshold``, repeatable)::

    METRIC:AGG OP NUMBER[UNIT]
    phase:AGG    phase in queue dns connect tls request wait receive total corrected,
                 AGG in p(N) (0 < N <= 100) avg min med max, UNIT in us ms (default) s
    failures:rate  a fraction, or a percentage with %   (unexpected statuses + network
                   errors, over all requests that ended)
    rps:avg        responses per second over the measured run
    OP in < <= > >=

``compare --fail-if`` uses the same ``METRIC:AGG`` and OP with a signed change: a
relative one in % (``total:p(99)>+10%``) or an absolute one in a time unit
(``total:p(99)>+2ms``); it holds when the change from BASE to NEW satisfies it.
A threshold whose metric has no data (TLS on plain HTTP) fails: it could not be checked.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from ._common import UsageError
from ._stats import HIST_PHASES

__all__ = ["Threshold", "parse_threshold", "parse_expect_status", "AGGS"]

AGGS = ("avg", "min", "med", "max")
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}
_RE = re.compile(r"""^\s*(?P<metric>[a-z]+)\s*:\s*(?P<agg>p\(\s*[^)]*\)|[a-z]+)\s*
                     (?P<op><=|>=|<|>)\s*(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*
                     (?P<unit>us|µs|ms|s|%)?\s*$""", re.X)


@dataclass(frozen=True)
class Threshold:
    text: str
    metric: str
    agg: str          # "p" (with ``percentile``), avg, min, med, max, rate
    percentile: float | None
    op: str
    number: float     # phases: ms; failures: fraction; rps: req/s; relative: percent
    relative: bool = False

    def holds(self, value: float) -> bool:
        return _OPS[self.op](value, self.number)

    @property
    def unit(self) -> str:
        if self.relative:
            return "%"
        return {"failures": "", "rps": " req/s"}.get(self.metric, " ms")


def _agg(text: str, raw: str) -> tuple[str, float | None]:
    if raw.startswith("p("):
        try:
            p = float(raw[2:-1].strip())
        except ValueError:
            raise UsageError(f"threshold {text!r}: bad percentile {raw!r} (write p(99) or p(99.9))") from None
        if not 0 < p <= 100:
            raise UsageError(f"threshold {text!r}: percentile must be in (0, 100], got {p:g}")
        return "p", p
    return raw, None


def parse_threshold(text: str, *, compare: bool = False) -> Threshold:
    """Parse one ``--threshold`` (or, with ``compare``, one ``--fail-if``) expression."""
    m = _RE.match(text)
    if not m:
        form = "METRIC:AGG OP [+|-]NUMBER(%|UNIT)" if compare else "METRIC:AGG OP NUMBER[UNIT]"
        raise UsageError(f"threshold {text!r} must look like {form}, e.g. 'total:p(99)<250ms'")
    metric, op, unit = m["metric"], m["op"], m["unit"]
    agg, p = _agg(text, m["agg"])
    number = float(m["num"])
    if metric in HIST_PHASES:
        if agg != "p" and agg not in AGGS:
            raise UsageError(f"threshold {text!r}: {metric} takes p(N), avg, min, med or max")
    elif metric == "failures":
        if agg != "rate":
            raise UsageError(f"threshold {text!r}: failures takes :rate")
    elif metric == "rps":
        if agg != "avg":
            raise UsageError(f"threshold {text!r}: rps takes :avg")
    else:
        raise UsageError(f"threshold {text!r}: unknown metric {metric!r} "
                         f"(one of {', '.join(HIST_PHASES)}, failures, rps)")
    if compare:
        if unit == "%":
            return Threshold(text, metric, agg, p, op, number, relative=True)
        if metric not in HIST_PHASES:
            raise UsageError(f"--fail-if {text!r}: a change of {metric} is written in %")
        return Threshold(text, metric, agg, p, op, number * _UNITS[unit or "ms"])
    if m["num"].startswith("+"):
        raise UsageError(f"threshold {text!r}: a signed number is for compare --fail-if")
    if metric in HIST_PHASES:
        if unit == "%":
            raise UsageError(f"threshold {text!r}: a time takes us, ms or s, not %")
        number *= _UNITS[unit or "ms"]
    elif metric == "failures":
        if unit == "%":
            number /= 100
        elif unit:
            raise UsageError(f"threshold {text!r}: failures:rate is a fraction or a percentage")
        if not 0 <= number <= 1:
            raise UsageError(f"threshold {text!r}: a rate is between 0 and 1 (or 0% and 100%)")
    elif unit:
        raise UsageError(f"threshold {text!r}: rps:avg takes a plain number")
    return Threshold(text, metric, agg, p, op, number)


def parse_expect_status(text: str):
    """``200-399`` / ``200,201,300-399`` / ``2xx,304`` -> (predicate, canonical text)."""
    ranges = []
    for part in text.split(","):
        part = part.strip().lower()
        try:
            if re.fullmatch(r"[1-5]xx", part):
                lo = int(part[0]) * 100
                ranges.append((lo, lo + 99))
            elif "-" in part:
                a, b = part.split("-", 1)
                ranges.append((int(a), int(b)))
            else:
                ranges.append((int(part), int(part)))
        except ValueError:
            raise UsageError(f"--expect-status {text!r}: write codes and ranges, e.g. 200,201,300-399") from None
    for lo, hi in ranges:
        if not 100 <= lo <= hi <= 999:
            raise UsageError(f"--expect-status {text!r}: {lo}-{hi} is not a range of HTTP status codes")
    table = bytearray(1000)
    for lo, hi in ranges:
        table[lo:hi + 1] = b"\1" * (hi + 1 - lo)
    ok = bytes(table)
    return (lambda status: status < 1000 and ok[status] == 1), ",".join(
        f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)
