"""The bench parent's aggregation, straight from packed ring records.

Strategy: the parent drains the shared timeline as packed records
(``Performance._drain_raw``) and never builds a Python entry per request. For each
record one ``struct.unpack_from`` gives the integer nanosecond stamps; the phase
durations are computed from those ints by the same rules as
``restiming.phases.phase_spans`` (checked against it in the tests) and appended to
per-group lists; at the end of each drained span the lists go into the histograms in
one batch (``Histogram.record_batch``). Status codes are counted per group; network
errors (status 0) are the only records whose strings are read (for the error kind).
Entries (``decode_record``) are built only for the few sampled requests of the
report and when NDJSON/CSV/HAR output is asked for.

Groups: one per URL (``--group-by url``, the default with several URLs), per status
code or per method; the run's totals are the groups' histograms merged, never
percentiles averaged. Everything is fixed-size whatever the run length: the time
series keeps at most ``MAX_SLOTS`` coarse histograms and doubles the slot width when
the run outgrows them.

Deltas (``restiming.distributed``): an engine actor accounts its own records with a
fresh ``Aggregator`` per shipping period and ships ``to_delta()`` (sparse histograms,
counts, packed samples); the driver adds them up with ``merge_delta``. Slots and hlog
intervals are indexed from ``t0_ns``, which every actor sets to one agreed instant, so
they line up across hosts; samples are moved onto the driver's clock by ``shift_ns``.
"""

from __future__ import annotations

import collections
import random
from itertools import compress

from restiming._fields import RECORD, STAMPS, TEXTS

from ._hist import Histogram

__all__ = ["Aggregator", "HIST_PHASES", "LATE_THRESHOLD_NS", "MAX_SLOTS", "phases_ns", "IntervalCollector"]

#: Phase rows of the table and the summary, in this order (``corrected`` only in an open loop).
HIST_PHASES = ("queue", "dns", "connect", "tls", "request", "wait", "receive", "total", "corrected")
MAX_SLOTS = 600
#: Sampled requests kept per kind (new connection, reused, unexpected status, error).
SAMPLES_PER_KIND = 15
#: Requests starting more than this after their intended time count as late.
LATE_THRESHOLD_NS = 1_000_000
_FLAG_REUSED = 0x4
_SIZE = RECORD.size
# The unpacking in Aggregator.add_span names the first stamps positionally; stamps
# added to the layout later (the proxy's) come after them and are not read here.
assert STAMPS[:15] == ("start_time", "fetch_start", "redirect_start", "redirect_end", "domain_lookup_start",
                       "domain_lookup_end", "connect_start", "connect_end", "secure_connection_start",
                       "request_start", "request_end", "first_interim_response_start",
                       "final_response_headers_start", "response_end", "intended_start"), STAMPS
_unpack = RECORD.unpack_from
_ERROR_INDEX = TEXTS.index("error")
_PROTOCOL_INDEX = TEXTS.index("next_hop_protocol")
_WARMUP = b"warmup\0"  # the initiator type, the first string after the URL
assert TEXTS[0] == "initiator_type", TEXTS


def phases_ns(v: tuple) -> dict:
    """Phase durations (int ns, None when absent) of one unpacked record: the
    reference version of the inlined loop below (``phase_spans`` on ints)."""
    (st, fe, rs, re_, dls, dle, cs, ce, scs, reqs, reqe, fir, frh, rend, intended) = v[:15]
    flags = v[21]
    out = dict.fromkeys(HIST_PHASES)
    out["total"] = rend - st if rend else 0
    out["corrected"] = rend - intended if intended and rend else None
    if not reqs:
        return out
    if flags & _FLAG_REUSED or (dls and dls == fe and ce == fe):
        out["queue"] = reqs - (ce or fe)
    else:
        if dls:
            out["queue"] = dls - fe
            out["dns"] = dle - dls
        if cs:
            out["connect"] = (scs if scs and scs >= cs else ce) - cs
            if scs and ce >= scs:
                out["tls"] = ce - scs
    sent = reqe or reqs
    out["request"] = sent - reqs
    rstart = fir or frh
    if rstart:
        out["wait"] = rstart - (sent if sent <= rstart else reqs)
        if rend:
            out["receive"] = rend - rstart
    return {k: (None if x is None else max(x, 0)) for k, x in out.items()}


class _Slot:
    """One time slot of the latency-over-time series: a coarse histogram (one
    significant digit, about 4 KiB) of the latencies that started in it, plus errors."""

    __slots__ = ("hist", "errors")

    def __init__(self) -> None:
        self.hist = Histogram(digits=1)
        self.errors = 0

    def merge(self, other: "_Slot") -> None:
        self.hist.merge(other.hist)
        self.errors += other.errors

    def row(self, t: float, width: float) -> dict:
        h = self.hist
        empty = not h.count
        return {"t": t, "width": width, "count": h.count + self.errors, "errors": self.errors,
                "p50_ms": 0.0 if empty else h.percentile(50) / 1e6,
                "p99_ms": 0.0 if empty else h.percentile(99) / 1e6,
                "max_ms": 0.0 if empty else h.max / 1e6}


class Group:
    """Counts and per-phase histograms of one group of requests."""

    __slots__ = ("name", "hists", "lists", "statuses", "status_list", "errors")

    def __init__(self, name: str) -> None:
        self.name = name
        self.hists = [Histogram() for _ in HIST_PHASES]
        self.lists = tuple([] for _ in HIST_PHASES)
        self.statuses: collections.Counter = collections.Counter()
        self.status_list: list[int] = []
        self.errors: collections.Counter = collections.Counter()

    def flush(self) -> None:
        for hist, values in zip(self.hists, self.lists):
            if values:
                if min(values) < 0:  # stamps out of order: a phase is never negative
                    values[:] = [max(v, 0) for v in values]
                hist.record_batch(values)
                values.clear()
        if self.status_list:
            self.statuses.update(self.status_list)
            self.status_list.clear()

    def merge_into(self, other: "Group") -> None:
        for mine, theirs in zip(self.hists, other.hists):
            theirs.merge(mine)
        other.statuses.update(self.statuses)
        other.errors.update(self.errors)

    @property
    def responses(self) -> int:
        return sum(self.statuses.values())


class Aggregator:
    """Accounts drained records. ``group_by``: None (one group), "url", "status" or
    "method"; ``expected``: a predicate on status codes; ``t0_ns``: the monotonic
    start of the measured load (set later by ``start``)."""

    def __init__(self, *, open_loop: bool, group_by: str | None = None, method: str = "GET",
                 expected=lambda s: 200 <= s <= 399, warmup: bool = False, slot_width: float = 0.1,
                 hlog=None) -> None:
        self.open_loop = open_loop
        self.group_by = group_by
        self.method = method
        self.expected = expected
        self.warmup = warmup
        self.groups: dict = {}
        self._single = Group(method if group_by == "method" else "all")
        self.warmup_entries = 0
        #: Connections opened (one per successful response that did not reuse one),
        #: by the protocol they spoke: with HTTP/2, every response is a stream on them.
        self.connections: collections.Counter = collections.Counter()
        self.early = 0
        self.late_hist = Histogram()
        self._late: list[int] = []
        self.t0_ns: int | None = None
        self.slot_width = slot_width
        self.slots: list[_Slot] = []
        self._ser_t: list[int] = []
        self._ser_v: list[int] = []
        self._ser_err: list[int] = []
        self.samples: dict[str, list[bytes]] = {"new": [], "reused": [], "unexpected": [], "error": []}
        self._seen = collections.Counter()
        self._rng = random.Random(1).random
        self.hlog = hlog
        self._hlog_open: dict[int, list[int]] = {}
        self._hlog_merged: dict[int, Histogram] = {}

    def start(self, t0_ns: int) -> None:
        self.t0_ns = t0_ns

    # ------------------------------------------------------------ hot path
    def add_span(self, buf, start: int, end: int) -> int:
        """Account every record in ``buf[start:end]`` (length-prefixed, as drained);
        returns how many records were read (warm-up ones included)."""
        if self.t0_ns is None:
            self.t0_ns = 0
        by = self.group_by
        groups = self.groups
        single = self._single if by in (None, "method") else None
        lists = single.lists if single is not None else None
        q = dns = con = tls = req = wait = rec = tot = cor = None
        if lists is not None:
            q, dns, con, tls, req, wait, rec, tot, cor = lists
            status_list = single.status_list
        late = self._late
        ser_t, ser_v, ser_err = self._ser_t, self._ser_v, self._ser_err
        warmup = self.warmup
        open_loop = self.open_loop
        expected = self.expected
        samples, seen, rand = self.samples, self._seen, self._rng
        k = SAMPLES_PER_KIND
        from_bytes = int.from_bytes
        read = 0
        pos = start
        while pos < end:
            n = from_bytes(buf[pos:pos + 8], "little")
            off = pos + 8
            pos = off + ((n + 7) & ~7)
            read += 1
            (st, fe, _rs, _re, dls, dle, cs, ce, scs, reqs, reqe, fir, frh, rend, intended, *_later,
             _enc, _dec, _bs, _br, _cid, status, flags, ulen, tlen) = _unpack(buf, off)
            if warmup and buf[off + _SIZE + ulen:off + _SIZE + ulen + 7] == _WARMUP:
                self.warmup_entries += 1
                continue
            if single is None:
                key = bytes(buf[off + _SIZE:off + _SIZE + ulen]) if by == "url" else status
                group = groups.get(key)
                if group is None:
                    group = groups[key] = Group(key.decode("utf-8", "surrogateescape") if by == "url"
                                                else str(key) if key else "error")
                q, dns, con, tls, req, wait, rec, tot, cor = group.lists
                status_list = group.status_list
            else:
                group = single
            if intended:
                late.append(st - intended)
            if not status:  # a network error: the only record whose strings we read
                p = off + _SIZE + ulen
                texts = bytes(buf[p:p + tlen]).split(b"\0")
                kind = texts[_ERROR_INDEX].decode() if len(texts) > _ERROR_INDEX and texts[_ERROR_INDEX] \
                    else "unknown"
                group.errors[kind] += 1
                ser_err.append(st)
                kind = "error"
            else:
                status_list.append(status)
                total = rend - st if rend else 0
                tot.append(total)
                if intended and rend:
                    corrected = rend - intended
                    cor.append(corrected)
                    ser_t.append(st)
                    ser_v.append(corrected if open_loop else total)
                else:
                    ser_t.append(st)
                    ser_v.append(total)
                kind = "reused"
                if reqs:
                    if flags & _FLAG_REUSED or (dls and dls == fe and ce == fe):
                        q.append(reqs - (ce or fe))
                    else:
                        kind = "new"
                        p = off + _SIZE + ulen  # the protocol: read for new connections only
                        texts = bytes(buf[p:p + tlen]).split(b"\0", _PROTOCOL_INDEX + 1)
                        self.connections[texts[_PROTOCOL_INDEX].decode("ascii", "replace")
                                         if len(texts) > _PROTOCOL_INDEX else ""] += 1
                        if dls:
                            q.append(dls - fe)
                            dns.append(dle - dls)
                        if cs:
                            con.append((scs if scs and scs >= cs else ce) - cs)
                            if scs and ce >= scs:
                                tls.append(ce - scs)
                    sent = reqe or reqs
                    req.append(sent - reqs)
                    rstart = fir or frh
                    if rstart:
                        wait.append(rstart - (sent if sent <= rstart else reqs))
                        if rend:
                            rec.append(rend - rstart)
                if not expected(status):
                    kind = "unexpected"
            # Reservoir sample per kind (kept packed; decoded only for the report).
            seen[kind] += 1
            bucket = samples[kind]
            if len(bucket) < k:
                bucket.append(bytes(buf[off - 8:pos]))
            elif rand() * seen[kind] < k:
                bucket[int(rand() * k)] = bytes(buf[off - 8:pos])
        self._flush()
        return read

    # ------------------------------------------------------------ batches
    def _flush(self) -> None:
        for group in self.groups.values():
            group.flush()
        self._single.flush()
        late = self._late
        if late:
            if min(late) < 0:
                self.early += sum(1 for v in late if v < 0)
                late[:] = [max(v, 0) for v in late]
            self.late_hist.record_batch(late)
            late.clear()
        t0 = self.t0_ns or 0
        if self.hlog is not None:
            opened = self._hlog_open
            for t, v in zip(self._ser_t, self._ser_v):
                opened.setdefault(max(t - t0, 0) // 1_000_000_000, []).append(v)
        per_slot: dict[int, list[int]] = {}
        width_ns = int(self.slot_width * 1e9)
        for t, v in zip(self._ser_t, self._ser_v):
            per_slot.setdefault(max(t - t0, 0) // width_ns, []).append(max(v, 0))
        errors_per_slot = collections.Counter(max(t - t0, 0) // width_ns for t in self._ser_err)
        self._ser_t.clear()
        self._ser_v.clear()
        self._ser_err.clear()
        last = max(list(per_slot) + list(errors_per_slot), default=-1)
        while last >= MAX_SLOTS:  # keep memory fixed: halve the resolution
            self._halve()
            per_slot = _rekey(per_slot)
            errors_per_slot = _rekey_counts(errors_per_slot)
            last //= 2
        while len(self.slots) <= last:
            self.slots.append(_Slot())
        for i, values in per_slot.items():
            self.slots[i].hist.record_batch(values)
        for i, c in errors_per_slot.items():
            self.slots[i].errors += c
        if self.hlog is not None and self._hlog_open:
            newest = max(self._hlog_open)
            for i in sorted(self._hlog_open):
                if i < newest - 1:
                    self._write_interval(i)

    def _halve(self) -> None:
        merged = []
        for i in range(0, len(self.slots), 2):
            slot = self.slots[i]
            if i + 1 < len(self.slots):
                slot.merge(self.slots[i + 1])
            merged.append(slot)
        self.slots = merged
        self.slot_width *= 2

    def _write_interval(self, i: int) -> None:
        h = Histogram()
        h.record_batch(self._hlog_open.pop(i))
        self.hlog.interval(float(i), 1.0, h)

    def close_hlog(self) -> None:
        if self.hlog is not None:
            merged = self._hlog_merged
            for i in sorted(set(self._hlog_open) | set(merged)):
                h = Histogram()
                h.record_batch(self._hlog_open.pop(i, []))
                if i in merged:
                    h.merge(merged.pop(i))
                self.hlog.interval(float(i), 1.0, h)
            self.hlog.close()

    # ------------------------------------------------------------ results
    def all_groups(self) -> list[Group]:
        return list(self.groups.values()) if self.groups else [self._single]

    def late_summary(self) -> dict:
        """Lateness of the open loop's starts (``start_time - intended_start``): how many
        were later than ``LATE_THRESHOLD_NS`` (to the histogram's precision), how many
        were early (counted, then recorded as 0), and the spread, in ms."""
        h = self.late_hist
        over = sum(c for i, c in enumerate(h._counts) if c and h._range(i)[0] > LATE_THRESHOLD_NS)
        return {"count": over, "threshold_ms": LATE_THRESHOLD_NS / 1e6, "early": self.early,
                "p50_ms": h.percentile(50) / 1e6, "p99_ms": h.percentile(99) / 1e6, "max_ms": h.max / 1e6}

    def merged(self) -> Group:
        if not self.groups:
            return self._single
        out = Group("all")
        for g in self.groups.values():
            g.merge_into(out)
        return out

    @property
    def responses(self) -> int:
        return sum(g.responses for g in self.all_groups())

    @property
    def errors(self) -> collections.Counter:
        out: collections.Counter = collections.Counter()
        for g in self.all_groups():
            out.update(g.errors)
        return out

    @property
    def total(self) -> int:
        return self.responses + sum(self.errors.values())

    def p99_ms(self) -> float:
        h = Histogram()
        for g in self.all_groups():
            h.merge(g.hists[HIST_PHASES.index("corrected" if self.open_loop else "total")])
        return h.percentile(99) / 1e6 if h.count else 0.0

    def timeline(self) -> list[dict]:
        return [slot.row(i * self.slot_width, self.slot_width) for i, slot in enumerate(self.slots)]

    def sample_records(self) -> list[bytes]:
        out = []
        for kind in ("error", "unexpected", "new", "reused"):
            out.extend(self.samples[kind])
        return out


    # ------------------------------------------------------------ deltas
    def to_delta(self) -> dict:
        """Everything this aggregator accounted, as plain data: an actor makes a fresh
        aggregator per shipping period, so this is the period's delta."""
        if isinstance(self.hlog, IntervalCollector):
            self.close_hlog()
        group = _group_delta
        return {
            "warmup_entries": self.warmup_entries, "early": self.early, "late": _sparse(self.late_hist),
            "connections": dict(self.connections),
            "single": group(None, self._single),
            "groups": [group(k, g) for k, g in self.groups.items()],
            "slot_width": self.slot_width,
            "slots": [(i, _sparse(s.hist), s.errors) for i, s in enumerate(self.slots) if s.hist.count or s.errors],
            "hlog": [(i, _sparse(h)) for i, h in self.hlog.intervals.items()]
            if isinstance(self.hlog, IntervalCollector) else [],
            "samples": self.samples, "seen": dict(self._seen),
        }

    def merge_delta(self, d: dict, shift_ns: int = 0) -> None:
        """Add an actor's ``to_delta()``; ``shift_ns`` moves its monotonic stamps onto
        this process's clock (only the sampled records and first/last carry any)."""
        self.warmup_entries += d["warmup_entries"]
        self.early += d["early"]
        self.connections.update(d["connections"])
        _merge_sparse(self.late_hist, d["late"])
        _merge_group(self._single, d["single"])
        for key, name, hists, statuses, errors in d["groups"]:
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Group(name)
            _merge_group(group, (key, name, hists, statuses, errors))
        width = d["slot_width"]
        while self.slot_width < width * (1 - 1e-9):
            self._halve()
        factor = max(round(self.slot_width / width), 1)
        for i, hist, errors in d["slots"]:
            j = i // factor
            while j >= MAX_SLOTS:
                self._halve()
                factor *= 2
                j = i // factor
            while len(self.slots) <= j:
                self.slots.append(_Slot())
            _merge_sparse(self.slots[j].hist, hist)
            self.slots[j].errors += errors
        for i, hist in d["hlog"]:
            h = self._hlog_merged.get(i)
            if h is None:
                h = self._hlog_merged[i] = Histogram()
            _merge_sparse(h, hist)
        k = SAMPLES_PER_KIND
        for kind, packed in d["samples"].items():
            n = d["seen"].get(kind, 0)
            self._seen[kind] += n
            bucket = self.samples[kind]
            for p in packed:
                p = rebase_record(p, shift_ns) if shift_ns else p
                if len(bucket) < k:
                    bucket.append(p)
                elif self._rng() * self._seen[kind] < n:
                    bucket[int(self._rng() * k)] = p


class IntervalCollector:
    """Stands in for an ``HlogWriter`` in an actor: keeps the intervals for the delta."""

    def __init__(self) -> None:
        self.intervals: dict[int, Histogram] = {}

    def interval(self, start_s: float, length_s: float, h: Histogram) -> None:
        self.intervals[int(start_s)] = h

    def close(self) -> None:
        pass


def rebase_record(packed: bytes, shift_ns: int) -> bytes:
    """A length-prefixed packed record with every stamp that happened moved by ``shift_ns``."""
    v = list(RECORD.unpack_from(packed, 8))
    for i in range(len(STAMPS)):
        if v[i]:
            v[i] += shift_ns
    return packed[:8] + RECORD.pack(*v) + packed[8 + _SIZE:]


def _sparse(h: Histogram):
    """A histogram as plain data, only its non-zero counters (None when empty)."""
    if not h.count:
        return None
    counts = h._counts
    idx = list(compress(range(len(counts)), counts))
    return ((h.lowest, h.highest, h.digits), h.count, h.clamped, h._sum, h._min, h._max, idx,
            [counts[i] for i in idx])


def _merge_sparse(h: Histogram, d) -> None:
    if d is None:
        return
    layout, count, clamped, total, lo, hi, idx, values = d
    if tuple(layout) != (h.lowest, h.highest, h.digits):
        raise ValueError(f"histogram layout {tuple(layout)} does not match {(h.lowest, h.highest, h.digits)}")
    counts = h._counts
    for i, c in zip(idx, values):
        counts[i] += c
    if h.count == 0 or lo < h._min:
        h._min = lo
    h._max = max(h._max, hi)
    h._sum += total
    h.count += count
    h.clamped += clamped


def _group_delta(key, g: Group) -> tuple:
    return (key, g.name, [_sparse(h) for h in g.hists], list(g.statuses.items()), dict(g.errors))


def _merge_group(group: Group, d: tuple) -> None:
    _, _, hists, statuses, errors = d
    for h, sparse in zip(group.hists, hists):
        _merge_sparse(h, sparse)
    group.statuses.update(dict(statuses))
    group.errors.update(errors)


def _rekey(per_slot: dict) -> dict:
    out: dict = {}
    for i, values in per_slot.items():
        out.setdefault(i // 2, []).extend(values)
    return out


def _rekey_counts(counts: collections.Counter) -> collections.Counter:
    out: collections.Counter = collections.Counter()
    for i, c in counts.items():
        out[i // 2] += c
    return out
