"""SPEC §5: the integrations are optional extras; importing restiming (and the adapters
package) imports none of their dependencies."""

from __future__ import annotations

import os
import subprocess
import sys

OPTIONAL = ("httpx", "aiohttp", "opentelemetry", "pytest", "_pytest", "pytest_benchmark",
            "pytest_asyncio", "anyio", "multidict", "yarl", "httpcore")


def test_importing_restiming_imports_no_optional_integration():
    code = ("import sys, restiming, restiming.adapters; "
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r}); "
            "print(','.join(bad))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "", f"import restiming pulled in: {out.stdout.strip()}"
