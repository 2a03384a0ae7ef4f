"""The bench's load on a Ray cluster: ``RayRunner`` implements ``_cli._runner``'s
``run`` with one engine actor per worker.

Strategy: connect (or start a local instance) and check the cluster can hold the
actors before any load (``ClusterError`` otherwise); place the actors with a SPREAD
placement group on a custom resource (``RESOURCE``, with ``num_cpus=0``: on a 2-core
node, actors that held CPUs would starve Ray's own tasks); once every actor is ready,
send the start instant as wall-clock time far enough ahead that every actor has it
in time (each converts it to its own monotonic clock). Then poll each actor about
every ``POLL_INTERVAL``: one poll returns one Arrow batch plus the period's histogram
delta, owned by the driver from then on, so a batch once shipped survives its actor.
The driver merges the deltas into the bench's ``Aggregator`` (progress line, final
summary, thresholds, exit code: the local run's code) and writes the batches to
Parquet (``_arrow.ParquetSink``: one file per actor) and to the outputs asked for.

An actor that dies is reported with its lost count: what it sent after its last
shipped batch, plus (when the schedule says how many) the arrivals it never reached.
"""

from __future__ import annotations

import logging
import math
import socket
import time

from restiming import clock
from restiming._cli._load import STOP_GRACE, arrivals
from restiming._exceptions import ClusterError

from ._actor import SWITCH_INTERVAL, EngineActor
from ._arrow import batch_to_dicts

__all__ = ["RayRunner", "RESOURCE"]

#: The custom resource an engine actor takes one of (``ray start --resources``).
RESOURCE = "restiming_engine"
POLL_INTERVAL = 0.2
#: The start instant is at least this far after the actors are ready.
START_LEAD_NS = 250_000_000
READY_TIMEOUT = 60.0
#: After a stop, actors get STOP_GRACE plus this to send their last batch.
STOP_SLACK = 10.0


#: Seconds to reach a cluster's address before calling it unreachable (``ray.init``
#: itself retries an unreachable GCS for many minutes).
CONNECT_TIMEOUT = 5.0


def _probe(address: str) -> None:
    """Fail fast when ``host:port`` (or ``ray://host:port``) does not accept connections."""
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" or a form ray.init resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}") from exc


def _connect(address: str | None, workers: int, init_kwargs: dict) -> bool:
    """Connect to the cluster; True when this process started the Ray instance."""
    import ray

    if ray.is_initialized():
        return False
    opts = dict(logging_level=logging.WARNING, log_to_driver=True)
    if address:
        _probe(address)
        try:
            ray.init(address=address, **opts, **init_kwargs)
        except Exception as exc:
            raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {exc}") from exc
        return True
    try:
        ray.init(address="auto", **opts, **init_kwargs)
        return True
    except ConnectionError:
        pass  # no running cluster here: start a local one with the actors' resource
    local = dict(num_cpus=1, resources={RESOURCE: max(workers, 1)}, include_dashboard=False,
                 object_store_memory=256 * 1024 * 1024)
    local.update(init_kwargs)
    try:
        ray.init(**opts, **local)
    except Exception as exc:
        raise ClusterError(f"cannot start a local Ray instance: {exc}") from exc
    return True


class _Actor:
    __slots__ = ("index", "handle", "info", "pending", "next_poll", "counts", "records", "done",
                 "dead", "reason", "late_ns", "batches", "lost", "share")

    def __init__(self, index: int, handle, share: dict) -> None:
        self.index, self.handle, self.share = index, handle, share
        self.info: dict = {}
        self.pending = None
        self.next_poll = 0.0
        self.counts = {"index": index, "sent": 0, "warmup_sent": 0, "dropped": 0,
                       "concurrency": share["concurrency"]}
        self.records = self.batches = self.lost = self.late_ns = 0
        self.done = self.dead = False
        self.reason: str | None = None


class RayRunner:
    """``address``: as ``ray.init`` takes it (None: ``auto``, then a local instance).
    ``init_kwargs`` go to ``ray.init``; ``on_poll(elapsed_s, handles)`` is called in the
    driver loop (tests kill an actor from there)."""

    remote = True

    def __init__(self, address: str | None = None, *, init_kwargs=None,
                 ready_timeout: float = READY_TIMEOUT, poll_interval: float = POLL_INTERVAL, on_poll=None,
                 stats: dict | None = None) -> None:
        self.address = address
        self.parquet = None
        self.init_kwargs = dict(init_kwargs or {})
        self.ready_timeout = ready_timeout
        self.poll_interval = poll_interval
        self.on_poll = on_poll
        self.stats = stats
        self.agg = self.outputs = None
        self.origin = (0, 0)
        self.actors: list[_Actor] = []
        self._owns_ray = False
        self._pg = None
        self._cfg = None
        self.start_wall_ns = self.end_wall_ns = 0

    def bind(self, *, agg, outputs, perf, cfg, parquet=None) -> None:
        self.agg, self.outputs, self._cfg, self.parquet = agg, outputs, cfg, parquet
        self.origin = (perf._time.realtime_ns, perf._time.monotonic_ns)
        if self.stats is None:
            self.stats = {"open_loop": cfg.open_loop, "group_by": cfg.group_by, "method": cfg.method,
                          "expect_status": cfg.expect_text, "warmup": cfg.warmup > 0,
                          "slot_width": agg.slot_width, "hlog": agg.hlog is not None}

    # ------------------------------------------------------------ setup
    def connect(self, workers: int) -> None:
        """Reach the cluster and reserve the actors' places, or raise ``ClusterError``."""
        import ray
        from ray.util.placement_group import placement_group

        if self._pg is not None:
            return
        self._owns_ray = _connect(self.address, workers, self.init_kwargs)
        try:
            have = ray.cluster_resources().get(RESOURCE, 0)
            if have < workers:
                raise ClusterError(
                    f"the Ray cluster offers {have:g} {RESOURCE!r} slots for {workers} engine actors: "
                    f"start its nodes with `ray start ... --resources '{{\"{RESOURCE}\": N}}'`")
            self._pg = placement_group([{RESOURCE: 1}] * workers, strategy="SPREAD")
            try:
                ray.get(self._pg.ready(), timeout=self.ready_timeout)
            except ray.exceptions.GetTimeoutError:
                raise ClusterError(f"the Ray cluster could not place {workers} engine actors within "
                                   f"{self.ready_timeout:g} s") from None
        except BaseException:
            self.close()
            raise

    def _spawn(self, shares: list[dict]) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        cls = ray.remote(EngineActor)
        for i, share in enumerate(shares):
            handle = cls.options(
                num_cpus=0, resources={RESOURCE: 1}, max_concurrency=2, max_restarts=0,
                name=None, scheduling_strategy=PlacementGroupSchedulingStrategy(self._pg, i),
            ).remote(share["index"], self.stats, switch_interval=SWITCH_INTERVAL)
            self.actors.append(_Actor(share["index"], handle, share))
        try:
            infos = ray.get([a.handle.info.remote() for a in self.actors], timeout=self.ready_timeout)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
            raise ClusterError(f"engine actors failed to start: {exc}") from exc
        for a, info in zip(self.actors, infos):
            a.info = info

    # ------------------------------------------------------------ the run
    def run(self, perf, shares, *, tick, stop, on_start):
        import ray

        if self._pg is None:
            self.connect(len(shares))
        t_ready = time.monotonic()
        self._spawn(shares)
        rtt = time.monotonic() - t_ready
        self.start_wall_ns = time.time_ns() + max(START_LEAD_NS, int(3e9 * rtt))
        real, mono = clock.pair_ns()
        on_start(mono + (self.start_wall_ns - real))
        acks = ray.get([a.handle.start.remote(a.share, self.start_wall_ns) for a in self.actors])
        for a, ack in zip(self.actors, acks):
            a.late_ns = ack["late_ns"]
        t_start = time.monotonic()
        stop_deadline = None
        while not all(a.done or a.dead for a in self.actors):
            now = time.monotonic()
            for a in self.actors:
                if not (a.done or a.dead) and a.pending is None and now >= a.next_poll:
                    a.pending = a.handle.poll.remote()
                    a.next_poll = now + self.poll_interval
            refs = [a.pending for a in self.actors if a.pending is not None]
            due = min((a.next_poll for a in self.actors if not (a.done or a.dead)), default=now)
            wait = min(max(due - time.monotonic(), 0.005), self.poll_interval)
            if refs:  # every reply there is, or whatever came by the next poll's time
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=wait)
            else:
                ready = []
                time.sleep(wait)
            ready = set(ready)
            for a in self.actors:
                if a.pending is not None and a.pending in ready:
                    ref, a.pending = a.pending, None
                    try:
                        self._ship(a, ray.get(ref))
                    except ray.exceptions.RayActorError as exc:
                        self._died(a, _reason(exc))
            tick()
            if self.on_poll is not None:
                self.on_poll(time.monotonic() - t_start, [a.handle for a in self.actors])
            if stop() and stop_deadline is None:
                for a in self.actors:
                    if not (a.done or a.dead):
                        a.handle.stop.remote()
                stop_deadline = time.monotonic() + STOP_GRACE + STOP_SLACK
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                for a in self.actors:
                    if not (a.done or a.dead):
                        ray.kill(a.handle)
                        self._died(a, "did not stop within the grace period after Ctrl-C")
        return [dict(a.counts) for a in self.actors]

    def _ship(self, a: _Actor, res: dict) -> None:
        a.counts.update(res["counts"])
        a.records += res["records"]
        batch = res["batch"]
        agg = self.agg
        # The actor's monotonic clock onto this process's: through both wall clocks.
        shift = (self.origin[1] - self.origin[0]) - (a.info["origin_monotonic_ns"] - a.info["origin_realtime_ns"])
        agg.merge_delta(res["delta"], shift)
        if batch is not None:
            a.batches += 1
            if self.parquet is not None:
                self.parquet.write(a.index, batch)
            if self.outputs is not None and self.outputs.active:
                for row in batch_to_dicts(batch, self.origin[0]):
                    self.outputs.write(row)
        if res["error"]:
            self._died(a, "the load raised: " + res["error"].strip().splitlines()[-1])
            a.counts.setdefault("lost", 0)
            return
        if res["done"]:
            a.done = True
            self.end_wall_ns = max(self.end_wall_ns, res["ended_at_ns"])

    def _died(self, a: _Actor, reason: str) -> None:
        a.dead, a.reason = True, reason
        c = a.counts
        planned = self._planned(a.share)
        unsent = max(planned - c["sent"] - c["dropped"], 0) if planned is not None else 0
        in_flight = max(c["sent"] + c["warmup_sent"] - a.records, 0)
        a.lost = in_flight + unsent
        c["lost"] = c.get("lost", 0) + unsent  # the in-flight part shows as missing entries

    def _planned(self, share: dict) -> int | None:
        """Arrivals (open loop) or requests (closed loop) this actor's share had."""
        n = share["requests"]
        if share["schedule"] is None:
            return n  # closed loop: -n splits; -z is open-ended
        index, workers = share["index"], share["workers"]
        if n is None and any(math.isinf(s) for s, _ in share["schedule"]):
            return None
        count = 0
        for k, _ in enumerate(arrivals(share["schedule"], share["start_rate"])):
            if n is not None and k >= n:
                break
            count += k % workers == index
        return count

    # ------------------------------------------------------------ end
    def seconds(self) -> float | None:
        """From the agreed start to the last actor's end, by the hosts' wall clocks."""
        if not (self.start_wall_ns and self.end_wall_ns) or any(a.dead for a in self.actors):
            return None
        return (self.end_wall_ns - self.start_wall_ns) / 1e9

    def report(self) -> dict:
        return {
            "address": self.address or "auto",
            "nodes": len({a.info.get("node_id") for a in self.actors}),
            "start_at_unix_ns": self.start_wall_ns,
            "parquet": self.parquet.directory if self.parquet is not None else None,
            "actors": [{"index": a.index, "host": a.info.get("host"), "pid": a.info.get("pid"),
                        "node_id": a.info.get("node_id"), "status": "died" if a.dead else "ok",
                        "reason": a.reason, "sent": a.counts["sent"], "dropped": a.counts["dropped"],
                        "records": a.records, "batches": a.batches, "lost": a.lost,
                        "start_late_ms": a.late_ns / 1e6} for a in self.actors],
        }

    def close(self) -> None:
        import ray

        for a in self.actors:
            try:
                ray.kill(a.handle)
            except Exception:
                pass
        if self._pg is not None:
            from ray.util.placement_group import remove_placement_group

            try:
                remove_placement_group(self._pg)
            except Exception:
                pass
            self._pg = None
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return "actor died: " + (text[0] if text else type(exc).__name__)
