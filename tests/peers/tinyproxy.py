"""A real forward proxy (Debian's tinyproxy) for plain HTTP (absolute-form) and CONNECT.

Strategy: as ``nginx.py``: a private directory with a config (no ConnectPort line, so
CONNECT to any port is allowed; no Via header; log to the directory), the binary run in
the foreground (``-d``) in its own process group, a port found by binding port 0 and a
retry when another process took it first. ``log()`` returns what it logged (tests check
which requests went through it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .ports import free_port

__all__ = ["TinyProxy", "find_tinyproxy", "tinyproxy"]


def find_tinyproxy() -> str | None:
    for candidate in (shutil.which("tinyproxy"), "/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class TinyProxy:
    def __init__(self, *, basic_auth: tuple[str, str] | None = None) -> None:
        self.binary = find_tinyproxy()
        self.basic_auth = basic_auth
        self.directory = Path(tempfile.mkdtemp(prefix="restiming-tinyproxy-"))
        self.port: int | None = None
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.directory / "tinyproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, attempts: int = 5) -> "TinyProxy":
        if self.binary is None:
            raise RuntimeError("tinyproxy binary not found")
        error = ""
        for _ in range(attempts):
            self.port = free_port()
            d = self.directory
            auth = f"BasicAuth {self.basic_auth[0]} {self.basic_auth[1]}\n" if self.basic_auth else ""
            (d / "tinyproxy.conf").write_text(
                f"Port {self.port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 200\nAllow 127.0.0.1\n"
                f"DisableViaHeader Yes\nLogFile \"{d}/tinyproxy.log\"\nLogLevel Info\n"
                f"PidFile \"{d}/tinyproxy.pid\"\n{auth}")
            stderr = open(d / "stderr.log", "ab")
            try:
                self._process = subprocess.Popen(
                    [self.binary, "-d", "-c", str(d / "tinyproxy.conf")], stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
            finally:
                stderr.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._process.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return self
                except OSError:
                    time.sleep(0.02)
            self.stop()
            error = (d / "stderr.log").read_text(errors="replace") + self.log()
            if "Address already in use" not in error:
                break
        raise RuntimeError(f"tinyproxy did not start: {error}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def tinyproxy():
    """One tinyproxy for the session (fails, not skips, under CI=true when missing)."""
    if find_tinyproxy() is None:
        message = "tinyproxy binary not found (apt-get install -y tinyproxy)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    proxy = TinyProxy().start()
    yield proxy
    proxy.cleanup()
