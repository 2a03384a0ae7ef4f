"""SPEC §5: the integrations are optional extras; importing restiming (and the adapters
package) imports none of their dependencies."""

from __future__ import annotations

import os
import subprocess
import sys

OPTIONAL = ("httpx", "aiohttp", "opentelemetry", "pytest", "_pytest", "pytest_benchmark",
            "pytest_asyncio", "anyio", "multidict", "yarl", "httpcore", "h2", "hpack", "hyperframe")


def test_importing_restiming_imports_no_optional_integration():
    code = ("import sys, restiming, restiming.adapters; "
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r}); "
            "print(','.join(bad))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "", f"import restiming pulled in: {out.stdout.strip()}"


def test_the_pytest_plugin_module_imports_neither_restiming_nor_benchmark():
    """pytest imports its pytest11 plugins at every start: this one must stay cheap."""
    code = ("import sys, restiming_pytest; "
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('restiming', 'pytest_benchmark', 'asyncio', 'httpx', 'aiohttp', 'opentelemetry'))))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == ""
