"""The bench report: one self-contained HTML page (inline CSS and JS, no network).

Strategy: Python writes the tables (every string through ``html.escape``) and one
JSON data island (``<script type="application/json">`` with ``<``, ``>`` and ``&``
written as ``\\u003c`` etc., so no data can close the script element); a small inline
script reads it and draws three SVG charts with ``createElementNS``/``textContent``
only (never ``innerHTML``): latency over time, per-phase percentiles, and a waterfall
of sampled requests. Phase segments of the waterfall are computed here with
``restiming.phases.phase_spans``, so the page never re-derives phase math. When the
script is done it sets ``data-charts`` and ``data-points-drawn`` on ``<body>``
(``data-error`` on failure) so a headless browser test can check the drawing.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from restiming.phases import PHASES, phase_spans

__all__ = ["render_html", "PHASE_COLORS"]

#: One colour per waterfall phase (Chrome DevTools' conventions where it has one:
#: green for waiting on the server, blue for downloading).
PHASE_COLORS = {
    "redirect": "#e879f9", "queue": "#cbd5e1", "dns": "#2dd4bf", "connect": "#fb923c",
    "tls": "#a78bfa", "request": "#60a5fa", "wait": "#22c55e", "receive": "#2563eb",
}
#: Rows of the per-phase table and groups of the percentile chart, in this order.
SUMMARY_PHASES = ("queue", "dns", "connect", "tls", "request", "wait", "receive", "total", "corrected")
_STATS = (("count", "count"), ("min_ms", "min"), ("p50_ms", "p50"), ("p90_ms", "p90"),
          ("p99_ms", "p99"), ("p999_ms", "p99.9"), ("max_ms", "max"), ("mean_ms", "mean"))
_MAX_SAMPLES = 200  # the waterfall stays readable and the page small

_CSS = """
:root{--fg:#1e293b;--muted:#64748b;--line:#e2e8f0;--card:#fff;--bg:#f1f5f9;--accent:#0f766e}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#0f172a;color:#f8fafc;padding:18px 28px}
header h1{margin:0;font-size:20px;font-weight:600}
header .urls{color:#cbd5e1;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px;
 word-break:break-all;margin:6px 0 0;padding-left:18px}
header .meta{color:#94a3b8;font-size:12px;margin-top:6px}
header .cmd{color:#94a3b8;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;margin-top:2px;
 word-break:break-all}
main{max-width:1180px;margin:0 auto;padding:20px 24px 40px}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin-bottom:18px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.kpi .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.kpi .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.kpi.bad .v{color:#dc2626}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 18px;
 margin-bottom:18px}
section h2{font-size:15px;margin:0 0 8px;font-weight:600}
section p.note{color:var(--muted);margin:0 0 8px;font-size:12.5px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase}
td.wrap{white-space:normal;word-break:break-all;text-align:left}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:18px}
svg.chart{display:block;font-size:11px;fill:var(--fg)}
svg .axis{stroke:#94a3b8;stroke-width:1}
svg .grid{stroke:var(--line);stroke-width:1}
svg text{fill:#475569}
svg .title{font-size:12px;fill:var(--fg)}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin:0 4px 0 12px;
 vertical-align:-1px}
.legend{font-size:12px;color:var(--muted);margin-bottom:4px}
"""

_JS = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg", body = document.body, points = 0, charts = 0, perChart = {};
  function fail(msg) { body.dataset.error = String(msg); }
  window.onerror = function (msg, src, line, col, err) { fail(err && err.message ? err.message : msg); };
  function el(tag, attrs, parent, text) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) { if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, attrs[k]); }
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function tip(node, text) { el("title", {}, node, text); return node; }
  // Axis labels: a few significant digits, never "0.000" for 0.0005 on a log axis.
  function tick(v) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    return String(+(a >= 1 ? v.toPrecision(Math.max(3, Math.ceil(Math.log10(a + 1)))) : v.toPrecision(2)));
  }
  function count(name, n) { points += n; perChart[name] = (perChart[name] || 0) + n; }
  function fmt(v) {
    if (v === null || v === undefined || !isFinite(v)) return "n/a";
    var a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
  }
  function chart(id, w, h) {
    var box = document.getElementById(id);
    return el("svg", {viewBox: "0 0 " + w + " " + h, width: "100%", "class": "chart",
                      role: "img", preserveAspectRatio: "xMidYMid meet"}, box);
  }
  function empty(svg, w, h, text) { el("text", {x: w / 2, y: h / 2, "text-anchor": "middle"}, svg, text); }
  function linear(d0, d1, r0, r1) {
    var s = function (v) { return r0 + (v - d0) / ((d1 - d0) || 1) * (r1 - r0); };
    s.ticks = function (n) {
      var span = (d1 - d0) || 1, step = Math.pow(10, Math.floor(Math.log10(span / n))), out = [];
      [1, 2, 5, 10].some(function (m) { if (span / (step * m) <= n) { step *= m; return true; } return false; });
      for (var v = Math.ceil(d0 / step) * step; v <= d1 + step * 1e-9; v += step) out.push(+v.toFixed(10));
      return out;
    };
    return s;
  }
  // Latency spans decades (a 0.1 ms DNS hit next to a 2 s tail): log axes keep all visible.
  function logScale(values, r0, r1) {
    var pos = values.filter(function (v) { return v > 0 && isFinite(v); });
    if (!pos.length) return null;
    // Half a decade of headroom below the smallest value so it still shows as a bar.
    var lo = Math.pow(10, Math.floor(Math.log10(Math.min.apply(null, pos) / 3))),
        hi = Math.pow(10, Math.ceil(Math.log10(Math.max.apply(null, pos) * 1.0001)));
    if (hi <= lo) hi = lo * 10;
    var a = Math.log10(lo), b = Math.log10(hi);
    var s = function (v) { return r0 + (Math.log10(Math.max(v, lo)) - a) / (b - a) * (r1 - r0); };
    s.lo = lo;
    s.ticks = function () {
      var out = [], decades = b - a;
      for (var e = a; e <= b; e++) {
        var m = decades <= 3 ? [1, 2, 5] : [1];
        m.forEach(function (k) { var v = k * Math.pow(10, e); if (v >= lo && v <= hi) out.push(v); });
      }
      return out;
    };
    return s;
  }
  function yAxis(svg, scale, ticks, x, x2, side, label, grid) {
    ticks.forEach(function (v) {
      var y = scale(v);
      if (grid) el("line", {x1: x, x2: x2, y1: y, y2: y, "class": "grid"}, svg);
      el("text", {x: side === "left" ? x - 6 : x2 + 6, y: y + 3.5,
                  "text-anchor": side === "left" ? "end" : "start"}, svg, tick(v));
    });
    el("text", {x: side === "left" ? x - 50 : x2 + 50, y: (scale(ticks[0]) + scale(ticks[ticks.length - 1])) / 2,
                "text-anchor": "middle", "class": "title",
                transform: "rotate(-90 " + (side === "left" ? x - 50 : x2 + 50) + " " +
                           (scale(ticks[0]) + scale(ticks[ticks.length - 1])) / 2 + ")"}, svg, label);
  }
  function legend(svg, x, y, items) {
    items.forEach(function (it) {
      el("rect", {x: x, y: y - 9, width: 12, height: it.line ? 3 : 10, fill: it.color,
                  transform: it.line ? "translate(0 4)" : null}, svg);
      el("text", {x: x + 16, y: y}, svg, it.label);
      x += 22 + it.label.length * 6.5;
    });
  }

  function drawTimeline(data) {
    var W = 1100, H = 340, L = 70, R = 70, T = 28, B = 40, svg = chart("chart-timeline", W, H);
    var rows = data.timeline;
    if (!rows.length) { empty(svg, W, H, "no completed requests"); return; }
    // Slots may be wider than 1 s on long runs (the aggregator merges them): plot rates.
    rows.forEach(function (r) { r.w = r.width > 0 ? r.width : 1; r.rate = r.count / r.w;
                                r.erate = (r.errors || 0) / r.w; r.mid = r.t + r.w / 2; });
    var tMax = Math.max.apply(null, rows.map(function (r) { return r.t + r.w; }));
    var x = linear(0, tMax, L, W - R);
    var lat = [];
    rows.forEach(function (r) { lat.push(r.p50_ms, r.p99_ms, r.max_ms); });
    var y = logScale(lat, H - B, T);
    var cMax = Math.max.apply(null, rows.map(function (r) { return r.rate; })) || 1;
    var yc = linear(0, cMax * 1.1, H - B, T);
    rows.forEach(function (r) {
      var bw = Math.max(1, (x(r.w) - x(0)) * 0.7), bx = x(r.mid) - bw / 2;
      tip(el("rect", {x: bx, y: yc(r.rate), width: bw, height: yc(0) - yc(r.rate), fill: "#bfdbfe"}, svg),
          "t=" + tick(r.t) + " s: " + r.count + " responses, " + (r.errors || 0) + " network errors");
      if (r.errors) el("rect", {x: bx, y: yc(r.erate), width: bw, height: yc(0) - yc(r.erate), fill: "#fca5a5"}, svg);
      count("timeline", 1);
    });
    if (y) {
      yAxis(svg, y, y.ticks(), L, W - R, "left", "latency, ms (log)", true);
      [["max_ms", "#94a3b8", "4 3"], ["p99_ms", "#f97316", null], ["p50_ms", "#0f766e", null]].forEach(function (s) {
        var d = "", pen = "M";
        rows.forEach(function (r) {
          var v = r[s[0]];
          if (v === null || v === undefined || !(v > 0)) { pen = "M"; return; }
          d += pen + x(r.mid).toFixed(1) + " " + y(v).toFixed(1) + " "; pen = "L"; count("timeline", 1);
          if (rows.length <= 120) el("circle", {cx: x(r.mid), cy: y(v), r: 2.2, fill: s[1]}, svg);
        });
        el("path", {d: d, fill: "none", stroke: s[1], "stroke-width": 2, "stroke-dasharray": s[2],
                    "stroke-linejoin": "round"}, svg);
      });
    }
    yAxis(svg, yc, yc.ticks(5), L, W - R, "right", "responses / s", false);
    x.ticks(12).forEach(function (t) {
      el("text", {x: x(t), y: H - B + 16, "text-anchor": "middle"}, svg, tick(t));
    });
    el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, "class": "axis"}, svg);
    el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "class": "title"}, svg, "seconds since start");
    legend(svg, L, 14, [{label: "p50", color: "#0f766e", line: 1}, {label: "p99", color: "#f97316", line: 1},
                        {label: "max", color: "#94a3b8", line: 1}, {label: "responses/s", color: "#bfdbfe"},
                        {label: "errors/s", color: "#fca5a5"}]);
    charts += 1;
  }

  function drawPhases(data) {
    var W = 1100, H = 340, L = 70, R = 20, T = 28, B = 52, svg = chart("chart-phases", W, H);
    var stats = [["p50_ms", "p50", "#99f6e4"], ["p90_ms", "p90", "#2dd4bf"], ["p99_ms", "p99", "#0d9488"],
                 ["p999_ms", "p99.9", "#134e4a"]];
    var groups = data.phases.filter(function (p) { return p.count > 0; });
    var all = [];
    groups.forEach(function (p) { stats.forEach(function (s) { all.push(p[s[0]]); }); });
    var y = logScale(all, H - B, T);
    if (!groups.length || !y) { empty(svg, W, H, "no phase data"); return; }
    yAxis(svg, y, y.ticks(), L, W - R, "left", "ms (log)", true);
    var gw = (W - R - L) / groups.length, bw = Math.min(26, gw * 0.8 / stats.length);
    groups.forEach(function (p, i) {
      var gx = L + i * gw + (gw - bw * stats.length) / 2;
      stats.forEach(function (s, j) {
        var v = p[s[0]];
        if (!(v > 0)) return;
        tip(el("rect", {x: gx + j * bw, y: y(v), width: bw - 2, height: Math.max(0.5, y(y.lo) - y(v)),
                        fill: s[2], rx: 1.5}, svg), p.name + " " + s[1] + ": " + fmt(v) + " ms");
        count("phases", 1);
      });
      el("text", {x: L + (i + 0.5) * gw, y: H - B + 17, "text-anchor": "middle", "class": "title"}, svg, p.name);
      el("text", {x: L + (i + 0.5) * gw, y: H - B + 32, "text-anchor": "middle"}, svg,
         "p99 " + fmt(p.p99_ms) + " ms");
    });
    el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, "class": "axis"}, svg);
    legend(svg, L, 14, stats.map(function (s) { return {label: s[1], color: s[2]}; }));
    charts += 1;
  }

  // HdrHistogram's percentile plot: x is 1 / (1 - p) on a log axis, so 90 %, 99 %,
  // 99.9 % ... are evenly spaced and the tail gets the room it deserves.
  function drawSpectrum(data) {
    var W = 1100, H = 360, L = 70, R = 130, T = 28, B = 44, svg = chart("chart-spectrum", W, H);
    var series = data.spectrum.filter(function (s) { return s.points.length > 1; });
    var all = [];
    series.forEach(function (s) { s.points.forEach(function (p) { all.push(p[1]); }); });
    var y = logScale(all, H - B, T);
    if (!series.length || !y) { empty(svg, W, H, "no latency data"); return; }
    var maxNines = 1;
    series.forEach(function (s) { s.points.forEach(function (p) {
      if (p[0] < 100) maxNines = Math.max(maxNines, Math.ceil(-Math.log10(1 - p[0] / 100) - 1e-9)); }); });
    var x = function (p) { var n = p >= 100 ? maxNines : Math.min(-Math.log10(1 - p / 100), maxNines);
                           return L + n / maxNines * (W - R - L); };
    yAxis(svg, y, y.ticks(), L, W - R, "left", "latency, ms (log)", true);
    for (var n = 0; n <= maxNines; n++) {
      var p = 100 * (1 - Math.pow(10, -n)), label = n === 0 ? "0%" : String(+p.toFixed(n)) + "%";
      el("line", {x1: x(p), x2: x(p), y1: T, y2: H - B, "class": "grid"}, svg);
      el("text", {x: x(p), y: H - B + 16, "text-anchor": "middle"}, svg, label);
    }
    el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "class": "title"}, svg, "percentile");
    series.forEach(function (s, i) {
      var d = "";
      s.points.forEach(function (pt, j) {
        d += (j ? "L" : "M") + x(pt[0]).toFixed(1) + " " + y(pt[1]).toFixed(1) + " ";
        tip(el("circle", {cx: x(pt[0]), cy: y(pt[1]), r: 2.4, fill: s.color}, svg),
            s.name + " p" + pt[0] + ": " + fmt(pt[1]) + " ms");
        count("spectrum", 1);
      });
      el("path", {d: d, fill: "none", stroke: s.color, "stroke-width": s.name === "total" ||
                  s.name === "corrected" ? 2.5 : 1.5}, svg);
      el("rect", {x: W - R + 14, y: T + i * 17 - 9, width: 12, height: 3, fill: s.color,
                  transform: "translate(0 4)"}, svg);
      el("text", {x: W - R + 30, y: T + i * 17}, svg, s.name);
    });
    charts += 1;
  }

  function drawWaterfall(data) {
    var rows = data.samples, W = 1100, R = 90, T = 26, RH = 17, B = 34;
    // Name the resource on each row only when the samples are not all the same URL.
    var many = rows.some(function (r) { return r.name !== rows[0].name; }), L = many ? 330 : 200;
    function short(name) {
      var m = /^[a-z]+:\/\/[^\/?#]*(.*)$/i.exec(name), p = (m ? m[1] : name) || "/";
      return p.length > 22 ? p.slice(0, 10) + "…" + p.slice(-11) : p;
    }
    var H = T + Math.max(rows.length, 1) * RH + B, svg = chart("chart-waterfall", W, H);
    if (!rows.length) { empty(svg, W, H, "no sampled requests"); return; }
    var dMax = Math.max.apply(null, rows.map(function (r) { return r.duration; })) || 1;
    var x = linear(0, dMax, L, W - R), ticks = x.ticks(10);
    ticks.forEach(function (t) {
      el("line", {x1: x(t), x2: x(t), y1: T - 4, y2: H - B, "class": "grid"}, svg);
      var label = tick(t);
      el("text", {x: x(t), y: T - 9, "text-anchor": "middle"}, svg, label);
      el("text", {x: x(t), y: H - B + 15, "text-anchor": "middle"}, svg, label);
    });
    el("text", {x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", "class": "title"}, svg,
       "ms since each request's start");
    rows.forEach(function (r, i) {
      var y0 = T + i * RH;
      var shade = r.error ? "#fee2e2" : !r.ok ? "#ffedd5" : (i % 2 ? "#f8fafc" : null);
      if (shade) el("rect", {x: 0, y: y0, width: W, height: RH, fill: shade}, svg);
      var label = "#" + (i + 1) + "  " + (r.error ? "error: " + r.error :
                  r.status + (r.segments.length ? (r.reused ? "  reused" : "  new conn") : "  opaque"))
                  + (many ? "  " + short(r.name) : "");
      tip(el("text", {x: 8, y: y0 + RH - 5}, svg, label), r.name);
      var bar = el("g", {}, svg), detail = [r.name];
      if (!r.segments.length) {  // opaque or failed: only the whole duration is known
        el("rect", {x: x(0), y: y0 + 3, width: Math.max(1, x(r.duration) - x(0)), height: RH - 6,
                    fill: r.error ? "#fca5a5" : "#e2e8f0", stroke: r.error ? "#dc2626" : "#94a3b8"}, bar);
        detail.push((r.error ? "error " + r.error : "no timing exposed") + ": " + fmt(r.duration) + " ms");
        count("waterfall", 1);
      }
      r.segments.forEach(function (s) {
        el("rect", {x: x(s[1]), y: y0 + 3, width: Math.max(0.8, x(s[2]) - x(s[1])), height: RH - 6,
                    fill: data.colors[s[0]]}, bar);
        detail.push(s[0] + ": " + fmt(s[2] - s[1]) + " ms");
        count("waterfall", 1);
      });
      tip(bar, detail.join("\n"));
      el("text", {x: x(r.duration) + 6, y: y0 + RH - 5}, svg, fmt(r.duration) + " ms");
    });
    el("line", {x1: L, x2: L, y1: T - 4, y2: H - B, "class": "axis"}, svg);
    charts += 1;
  }

  try {
    var data = JSON.parse(document.getElementById("report-data").textContent);
    drawTimeline(data);
    drawPhases(data);
    drawSpectrum(data);
    drawWaterfall(data);
    for (var k in perChart) body.dataset["points" + k.charAt(0).toUpperCase() + k.slice(1)] = String(perChart[k]);
    body.dataset.pointsDrawn = String(points);
    body.dataset.charts = String(charts);
  } catch (err) {
    fail(err && err.message ? err.message : err);
  }
})();
"""


def _finite(value: Any) -> Any:
    """JSON without NaN/Infinity (not JSON, and JSON.parse rejects them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_island(data: Any) -> str:
    # In a script element only "</script" (and "<!--" tricks) can end the data early;
    # escaping every <, > and & inside JSON strings rules all of them out.
    text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _ms(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    v = float(value)
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}" if abs(v) >= 1 \
        else f"{v:.3f}"


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


#: Percentiles of the spectrum chart (HdrHistogram's plot goes out to the max).
SPECTRUM = (0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0)
_SPECTRUM_COLORS = dict(PHASE_COLORS, total="#0f172a", corrected="#dc2626")


def _sample_rows(samples: list[dict], expected=None) -> list[dict]:
    """Each sample as {name, status, ok, error, reused, duration, segments} with segment
    times relative to the sample's own start (phase_spans does the phase math)."""
    expected = expected or (lambda status: 200 <= status <= 399)
    rows = []
    for s in samples[:_MAX_SAMPLES]:
        start = float(s.get("start_time") or 0.0)
        end = float(s.get("response_end") or 0.0)
        duration = float(s.get("duration") or (end - start if end else 0.0))
        spans = phase_spans(s)
        segments = [[name, spans[name][0] - start, spans[name][1] - start]
                    for name in PHASES if spans[name] is not None]
        status = int(s.get("response_status") or 0)
        rows.append({"name": str(s.get("name", "")), "status": status, "ok": bool(status and expected(status)),
                     "error": s.get("error"), "reused": bool(s.get("connection_reused")),
                     "duration": max(duration, 0.0), "segments": segments})
    return rows


def _spectrum(phases: dict, names: list[str]) -> list[dict]:
    """Latency by percentile per phase, from the summary's HdrHistogram blobs (or, for
    a summary without them, the few percentiles it lists)."""
    from ._hdr import decode_histogram

    out = []
    for name in names:
        row = phases.get(name) or {}
        if not row.get("count"):
            continue
        if row.get("hdr"):
            h = decode_histogram(row["hdr"])
            lo, hi = row.get("min_ms", 0.0), row.get("max_ms", 0.0)
            values = [min(max(v / 1e6, lo), hi) for v in h.percentiles(SPECTRUM)]
            values[0], values[-1] = lo, hi
            points = [[p, v] for p, v in zip(SPECTRUM, values)]
        else:
            points = [[p, row[k]] for p, k in ((0.0, "min_ms"), (50.0, "p50_ms"), (90.0, "p90_ms"),
                                                (99.0, "p99_ms"), (99.9, "p999_ms"), (100.0, "max_ms"))
                      if row.get(k) is not None]
        out.append({"name": name, "color": _SPECTRUM_COLORS.get(name, "#64748b"),
                    "points": [[p, v] for p, v in points if v and v > 0]})
    return out


def _kpi(label: str, value: str, bad: bool = False) -> str:
    cls = "kpi bad" if bad else "kpi"
    return f'<div class="{cls}"><div class="k">{html.escape(label)}</div><div class="v">{html.escape(value)}</div></div>'


def _table(head: list[str], rows: list[list[str]], table_id: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _urls(summary: dict) -> list[str]:
    urls = summary.get("urls")
    if urls is None:
        url = summary.get("url", "")
        urls = [url] if isinstance(url, str) else list(url)
    return [str(u) for u in urls]


def render_html(summary: dict, timeline: list[dict], samples: list[dict], *, title: str = "restiming bench") -> str:
    """The report page for one bench run (see the module docstring for the inputs)."""
    phases = summary.get("phases") or {}
    errors = summary.get("errors") or {}
    error_total = sum(int(v) for v in errors.values())
    statuses = summary.get("statuses") or {}
    open_loop = summary.get("mode") == "open"
    # Open loop: the honest headline is latency from the intended start.
    which = "corrected" if open_loop and phases.get("corrected") else "total"
    headline = phases.get(which) or {}
    late = summary.get("late")
    failures = summary.get("failures", error_total)
    failure_rate = summary.get("failure_rate")
    dropped = int(summary.get("dropped") or 0)
    urls = _urls(summary)

    kpis = "".join([
        _kpi("throughput", f"{float(summary.get('throughput_rps') or 0):,.1f} req/s"),
        _kpi("expected status", f"{float(summary.get('ok_throughput_rps', summary.get('throughput_rps')) or 0):,.1f}"
                                " req/s"),
        _kpi("completed", _num(summary.get("completed"))),
        _kpi("failures", _num(failures) + ("" if failure_rate is None else f" ({failure_rate * 100:.2f}%)"),
             bad=bool(failures)),
        _kpi("dropped", _num(dropped), bad=dropped > 0),
        _kpi(f"p50 {which}", f"{_ms(headline.get('p50_ms'))} ms"),
        _kpi(f"p99 {which}", f"{_ms(headline.get('p99_ms'))} ms"),
        _kpi(f"max {which}", f"{_ms(headline.get('max_ms'))} ms"),
    ])
    run_rows = [
        ["mode", f"{summary.get('mode', '')} loop"],
        ["concurrency", _num(summary.get("concurrency"))],
        ["rate", "–" if summary.get("rate") is None else f"{_num(summary.get('rate'))} req/s"],
        ["workers", _num(summary.get("workers"))],
        ["duration", f"{float(summary.get('duration_s') or 0):.2f} s"],
        ["sent / completed", f"{_num(summary.get('sent'))} / {_num(summary.get('completed'))}"],
        ["network errors", ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none"],
    ]
    if summary.get("stages"):
        run_rows.insert(3, ["stages", ", ".join(f"{s:g} s → {r:g}/s" for s, r in summary["stages"])])
    if summary.get("warmup_s"):
        run_rows.append(["warm-up", f"{summary['warmup_s']:g} s ({_num(summary.get('warmup_requests'))} "
                                    "requests, excluded)"])
    if late:
        late_text = f"{_num(late.get('count'))}"
        if "p99_ms" in late:
            late_text += (f" over {late.get('threshold_ms', 1):g} ms (p50 {_ms(late.get('p50_ms'))}, "
                          f"p99 {_ms(late.get('p99_ms'))}, max {_ms(late.get('max_ms'))} ms)")
        else:
            late_text += f" (mean {_ms(late.get('mean_ms'))} ms, max {_ms(late.get('max_ms'))} ms)"
        run_rows.append(["late starts", late_text])
    run_table = "<table><tbody>" + "".join(
        f'<tr><td>{html.escape(k)}</td><td class="wrap">{html.escape(v)}</td></tr>' for k, v in run_rows
    ) + "</tbody></table>"

    # Outcomes: every status, every error kind, dropped.
    expect = summary.get("expect_status", "200-399")
    total_ended = sum(int(v) for v in statuses.values()) + error_total
    outcome_rows = []
    for code, n in sorted(statuses.items()):
        outcome_rows.append([f"HTTP {code}", _num(int(n)), f"{int(n) / total_ended * 100:.2f}%" if total_ended
                             else "–"])
    for kind, n in sorted(errors.items()):
        outcome_rows.append([f"error: {kind}", _num(int(n)), f"{int(n) / total_ended * 100:.2f}%" if total_ended
                             else "–"])
    if dropped:
        outcome_rows.append(["dropped (not sent)", _num(dropped), "–"])
    outcome_table = _table(["outcome", "count", "share"], outcome_rows, "outcome-table")

    groups = summary.get("groups") or []
    group_rows = []
    for g in groups:
        row = (g.get("phases") or {}).get(which) or {}
        group_rows.append([str(g.get("name")), _num(g.get("requests")),
                           f"{float(g.get('failure_rate') or 0) * 100:.2f}%", f"{float(g.get('rps') or 0):,.1f}"]
                          + [_ms(row.get(k)) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")])
    group_table = _table([f"{summary.get('group_by') or 'group'}", "requests", "failures", "req/s",
                          f"p50 {which}", "p90", "p99", "p99.9", "max"], group_rows, "group-table") \
        if groups else ""

    phase_names = [p for p in SUMMARY_PHASES if p in phases] + [p for p in phases if p not in SUMMARY_PHASES]
    phase_rows = [[name] + [_num(phases[name].get(k)) if k == "count" else _ms(phases[name].get(k))
                            for k, _ in _STATS] for name in phase_names]
    phase_table = _table(["phase (ms)"] + [label for _, label in _STATS], phase_rows)

    expected_pred = None
    try:
        from ._thresholds import parse_expect_status

        expected_pred = parse_expect_status(expect)[0]
    except Exception:  # an old summary or a hand-made one: the default classes
        pass
    width = timeline[0].get("width", 1) if timeline else 1
    data = {
        "timeline": [{k: r.get(k) for k in ("t", "width", "count", "errors", "p50_ms", "p99_ms", "max_ms")}
                     for r in timeline],
        "phases": [dict(name=name, count=int(phases[name].get("count") or 0),
                        **{k: phases[name].get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms")})
                   for name in phase_names],
        "spectrum": _spectrum(phases, ["total", "corrected", "queue", "dns", "connect", "tls", "request", "wait",
                                       "receive"]),
        "samples": _sample_rows(samples, expected_pred),
        "colors": PHASE_COLORS,
    }
    thresholds = summary.get("thresholds") or []
    threshold_html = ""
    if thresholds:
        threshold_html = "<section><h2>Thresholds</h2>" + _table(
            ["threshold", "value", "result"],
            [[t["expr"], _threshold_value(t),
              "passed" if t.get("passed") else "FAILED"] for t in thresholds], "threshold-table") + "</section>"
    swatches = "".join(f'<span class="swatch" style="background:{c}"></span>{html.escape(n)}'
                       for n, c in PHASE_COLORS.items())
    swatches += ('<span class="swatch" style="background:#fee2e2"></span>network error'
                 '<span class="swatch" style="background:#ffedd5"></span>unexpected status')
    corrected_note = (' "corrected" is measured from each request\'s intended start on the open-loop '
                      "schedule, so it includes time spent waiting behind slow responses "
                      "(no coordinated omission).") if open_loop else ""
    meta = " · ".join(html.escape(str(x)) for x in (
        summary.get("started_at"), f"restiming {summary.get('restiming_version') or restiming_version()}",
        summary.get("host")) if x)
    command = summary.get("command")
    url_list = "".join(f"<li>{html.escape(u)}</li>" for u in urls)
    t = html.escape(title)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t}</title><style>{_CSS}</style></head>
<body>
<header><h1>{t}</h1><ul class="urls">{url_list}</ul>
<div class="meta">{meta}</div>{f'<div class="cmd">{html.escape(command)}</div>' if command else ""}</header>
<main>
<div class="kpis">{kpis}</div>
{threshold_html}
<section><h2>Outcomes</h2><p class="note">Expected statuses: {html.escape(str(expect))}. Failures are
unexpected statuses plus network errors.</p>{outcome_table}</section>
{f'<section><h2>By {html.escape(str(summary.get("group_by") or "group"))}</h2>{group_table}</section>'
 if groups else ""}
<section><h2>Latency over time</h2>
<p class="note">p50, p99 and max latency per {_ms(float(width) * 1000)} ms slot (log scale); bars are
responses per second, red the network errors (unexpected statuses are in the outcome table).</p>
<div id="chart-timeline"></div></section>
<section><h2>Latency by percentile</h2>
<p class="note">Each phase's full distribution from its HdrHistogram, out to the max.</p>
<div id="chart-spectrum"></div></section>
<section><h2>Latency by phase</h2>
<p class="note">Percentiles of each phase from merged histograms (never averaged).{html.escape(corrected_note)}</p>
<div id="chart-phases"></div>{phase_table}</section>
<section><h2>Sampled requests</h2>
<p class="note">Sampled per kind: new connections, reused ones, unexpected statuses and network errors.</p>
<div class="legend">{swatches}</div>
<div id="chart-waterfall"></div></section>
<section><h2>Run</h2>{run_table}</section>
</main>
<script type="application/json" id="report-data">{_json_island(data)}</script>
<script>{_JS}</script>
</body></html>
"""


def _threshold_value(t: dict) -> str:
    value = t.get("value")
    if value is None:
        return "no data"
    if str(t.get("expr", "")).startswith("failures"):
        return f"{value * 100:.2f}%"
    return f"{value:.4g} {t.get('unit', '')}".strip()


def restiming_version() -> str:
    from restiming import __version__

    return __version__
