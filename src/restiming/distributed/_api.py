"""The Python API over the Ray runner: a config in, the bench summary out.

``Config`` holds what the CLI's flags hold; ``run`` builds the bench's own
``BenchConfig`` from it and runs ``_cli._bench.run_bench`` with a ``RayRunner``, so
the summary has exactly the CLI's fields (its JSON). Usage mistakes raise
``ValueError``; a cluster that cannot be reached or used raises ``ClusterError``
before any load.
"""

from __future__ import annotations

import dataclasses
import io
import json
import types
from collections.abc import Mapping
from typing import Any, Iterator

__all__ = ["Config", "Summary", "run"]


@dataclasses.dataclass(frozen=True)
class Config:
    """One distributed bench. Fields mirror ``restiming bench`` flags: ``workers`` is
    the number of engine actors, ``address`` is ``--ray ADDRESS`` (None: ``auto``, then
    a local instance), ``parquet`` is ``--parquet DIR``, ``summary``/``hlog``/``html``
    write those files, ``init_kwargs`` go to ``ray.init``."""

    urls: tuple[str, ...]
    workers: int = 2
    address: str | None = None
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    concurrency: int = 10
    requests: int | None = None
    duration: float | None = None
    rate: float | None = None
    stages: tuple[tuple[float, float], ...] | None = None
    warmup: float = 0.0
    max_in_flight: int = 1000
    expect_status: str = "200-399"
    group_by: str | None = None
    thresholds: tuple[str, ...] = ()
    timeout: float = 30.0
    verify: bool | str = True
    follow_redirects: bool = True
    max_redirects: int = 20
    origin: str | None = None
    parquet: str | None = None
    summary: str | None = None
    hlog: str | None = None
    html: str | None = None
    init_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Summary(Mapping):
    """The bench summary (the CLI's ``--summary`` JSON), read-only: ``s["p99"]``-style
    keys and attributes alike (``s.exit_code``, ``s.phases``, ``s.cluster``)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict) -> None:
        object.__setattr__(self, "_data", data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Summary is read-only")

    @property
    def passed(self) -> bool:
        return self._data["exit_code"] == 0

    def to_dict(self) -> dict:
        return json.loads(json.dumps(self._data))

    def text(self) -> str:
        """The table ``restiming bench`` prints."""
        from restiming._cli._bench import format_summary

        return format_summary(self._data)

    def __repr__(self) -> str:
        d = self._data
        return (f"<Summary sent={d['sent']} completed={d['completed']} errors={sum(d['errors'].values())} "
                f"dropped={d['dropped']} missing={d['missing']} exit_code={d['exit_code']}>")


def run(config: Config, *, runner=None) -> Summary:
    """Run ``config`` on the cluster; returns its summary (``exit_code`` as the CLI's)."""
    from restiming._cli._bench import BenchConfig, run_bench, write_reports
    from restiming._cli._common import UsageError

    from ._runner import RayRunner

    if isinstance(config.urls, str):
        raise ValueError("Config.urls is a list of URLs, not one string")
    try:
        cfg = BenchConfig(
            config.urls, method=config.method, headers=list(config.headers), body=config.body,
            concurrency=config.concurrency, requests=config.requests, duration=config.duration,
            rate=config.rate, stages=list(config.stages) if config.stages else None, warmup=config.warmup,
            workers=config.workers,
            client={"origin": config.origin, "timeout": config.timeout, "verify": config.verify,
                    "follow_redirects": config.follow_redirects, "max_redirects": config.max_redirects},
            max_in_flight=config.max_in_flight, group_by=config.group_by,
            expect_status=config.expect_status, thresholds=list(config.thresholds))
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    if cfg.workers < 1:
        raise ValueError("Config.workers must be >= 1 (one engine actor each)")
    args = types.SimpleNamespace(parquet=config.parquet, summary=config.summary, hlog=config.hlog,
                                 html=config.html, out=None, csv=None, har=None,
                                 argv=["--ray"] + ([config.address] if config.address else []) + list(config.urls))
    runner = runner or RayRunner(config.address, init_kwargs=dict(config.init_kwargs))
    runner.connect(cfg.workers)
    summary, _, agg = run_bench(cfg, io.StringIO(), args, progress=False, runner=runner)
    write_reports(summary, agg, args, io.StringIO())
    return Summary(summary)
