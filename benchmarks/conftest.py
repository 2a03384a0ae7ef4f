"""Benchmark helpers: every benchmark names its group's baseline, and the summary at
the end of the run prints restiming's figure against that baseline as a ratio (both
measured in the same run, on the same machine).

Mark a benchmark as its group's baseline with ``benchmark.extra_info["baseline"] = True``;
set ``extra_info["records"]`` to the records one call moves to get records/s too, or
``extra_info["bytes_per_entry"]`` to compare memory instead of time.
Free-form figures (memory per entry) go through the ``report`` fixture.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

_LINES: list[str] = []


def pytest_collect_file(file_path, parent):
    """Collect ``bench_*.py`` here (the project's python_files pattern is test_*.py)."""
    # A file named on the command line is already collected by pytest itself.
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") \
            and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture
def report():
    """``report(line)``: print ``line`` in the ratio summary at the end of the run."""
    return _LINES.append


def _mean(bench) -> float:
    return bench.stats.mean


def _spread(bench) -> str:
    """The spread to publish with a mean: median and interquartile range, in us."""
    s = bench.stats
    return f"(median {s.median * 1e6:.3f}, IQR {s.iqr * 1e6:.3f})"


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    benches = [b for b in (getattr(session, "benchmarks", None) or []) if not b.has_error]
    if not benches and not _LINES:
        return
    tr = terminalreporter
    tr.section("restiming vs baselines (same run)")
    if not benches:
        tr.write_line("timings disabled: run with --benchmark-enable for ratios")
    groups: dict[str, list] = defaultdict(list)
    for bench in benches:
        groups[bench.group or bench.name].append(bench)
    for group, items in sorted(groups.items()):
        base = next((b for b in items if b.extra_info.get("baseline")), None)
        if base is None:
            continue
        for bench in items:
            if bench is base:
                continue
            if "bytes_per_entry" in base.extra_info:
                ratio = base.extra_info["bytes_per_entry"] / bench.extra_info["bytes_per_entry"]
                tr.write_line(
                    f"{group}: {bench.name} {bench.extra_info['bytes_per_entry']:.1f} vs "
                    f"{base.name} {base.extra_info['bytes_per_entry']:.1f} bytes/entry beyond "
                    f"the URL -> {ratio:.2f}x {'less' if ratio >= 1 else 'more'} memory")
                continue
            speedup = _mean(base) / _mean(bench)
            line = (f"{group}: {bench.name} {_mean(bench) * 1e6:.3f} us {_spread(bench)} vs "
                    f"{base.name} {_mean(base) * 1e6:.3f} us {_spread(base)} -> {speedup:.2f}x "
                    f"({'faster' if speedup >= 1 else 'slower'} than the baseline)")
            records = bench.extra_info.get("records")
            if records:
                line += (f"; {records / _mean(bench):,.0f} vs "
                         f"{base.extra_info.get('records', records) / _mean(base):,.0f} records/s")
            tr.write_line(line)
    for line in _LINES:
        tr.write_line(line)
