"""A real nginx as a well-behaved HTTP/1.1 peer (gzip, keep-alive, redirects, TAO, TLS).

Strategy: write a config and the served files into a private temporary directory, run
the system nginx binary in the foreground (``-p DIR -c nginx.conf -g 'daemon off;'``) in
its own process group, and wait until the port accepts. The port is picked by binding
port 0 and closing, so a lost race shows up as a bind failure: then we retry on another
port. Stop is SIGQUIT (graceful), then SIGKILL of the whole group after a timeout.
Locations serve the cases of SPEC.md §3: redirects (``/redirect/N``), cross-origin hops
(``/cross`` goes to ``localhost``, another origin of the same server), Timing-Allow-Origin
(https://w3c.github.io/resource-timing/#sec-timing-allow-origin) and Server-Timing.
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

__all__ = ["NginxServer", "find_nginx", "nginx_available", "nginx", "MAX_REDIRECT",
           "STATUSES", "SERVER_TIMING"]

MAX_REDIRECT = 30          # /redirect/N exists for N <= 30: enough to exceed the limit of 20
STATUSES = (200, 201, 202, 204, 400, 401, 403, 404, 405, 410, 429, 500, 502, 503, 504)
SERVER_TIMING = 'db;dur=53.2;desc="query", cache;desc=hit'
_START_SECONDS = 10.0
_STOP_SECONDS = 5.0


def find_nginx() -> str | None:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def nginx_available() -> bool:
    return find_nginx() is not None


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def _files() -> dict[str, bytes]:
    # Deterministic contents so tests can compare bodies byte for byte.
    paragraph = (b"<p>restiming serves the W3C Resource Timing model to Python; "
                 b"this paragraph repeats so that gzip has something to do.</p>\n")
    html = b"<!doctype html><html><body>\n" + paragraph * 900
    html = html[:100 * 1024 - 15] + b"</body></html>\n"
    return {
        "small.txt": (b"0123456789abcdef" * 64)[:1023] + b"\n",
        "large.bin": bytes(range(256)) * 4096,
        "text.html": html,
    }


class NginxServer:
    """nginx on 127.0.0.1 (and ::1 when available); ``tls`` (a ``certs.TestCA``) adds an
    https listener on a second port with a leaf for 127.0.0.1 and localhost, and an
    https listener that also speaks HTTP/2 (ALPN h2) on a third (``h2_port``)."""

    def __init__(self, tls=None, *, binary: str | None = None) -> None:
        self.binary = binary or find_nginx()
        self.tls = tls
        self.directory = Path(tempfile.mkdtemp(prefix="restiming-nginx-"))
        self.files = _files()
        self.port: int | None = None
        self.https_port: int | None = None
        self.h2_port: int | None = None
        self._process: subprocess.Popen | None = None

    # -- addresses ----------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cross_origin(self) -> str:
        """Same server, another origin: the host differs."""
        return f"http://localhost:{self.port}"

    @property
    def https_origin(self) -> str:
        if self.https_port is None:
            raise RuntimeError("nginx was started without tls")
        return f"https://127.0.0.1:{self.https_port}"

    def url(self, path: str = "/", *, host: str = "127.0.0.1", https: bool = False, h2: bool = False) -> str:
        path = path if path.startswith("/") else "/" + path
        if h2:
            return f"https://{host}:{self.h2_port}{path}"
        if https:
            return f"https://{host}:{self.https_port}{path}"
        return f"http://{host}:{self.port}{path}"

    # -- lifecycle ----------------------------------------------------------------

    def start(self, attempts: int = 5) -> NginxServer:
        if self.binary is None:
            raise RuntimeError("nginx binary not found")
        www, tmp = self.directory / "www", self.directory / "tmp"
        www.mkdir(exist_ok=True)
        tmp.mkdir(exist_ok=True)
        for name, data in self.files.items():
            (www / name).write_bytes(data)
        error = ""
        for _ in range(attempts):
            self.port = free_port()
            self.https_port = free_port() if self.tls is not None else None
            self.h2_port = free_port() if self.tls is not None else None
            (self.directory / "nginx.conf").write_text(self._config())
            error = self._launch()
            if not error:
                return self
            if "Address already in use" not in error:
                break
        raise RuntimeError(f"nginx did not start: {error}")

    def _launch(self) -> str:
        """Start nginx and wait for the port; '' on success, else the error log."""
        log = self.directory / "error.log"
        stderr = open(self.directory / "stderr.log", "ab")
        try:
            self._process = subprocess.Popen(
                [self.binary, "-p", str(self.directory), "-e", str(log),
                 "-c", str(self.directory / "nginx.conf"), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                # Own process group: the workers can be killed with the master.
                start_new_session=True,
            )
        finally:
            stderr.close()
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return ""
            except OSError:
                time.sleep(0.02)
        self.stop()
        text = ""
        for name in ("error.log", "stderr.log"):
            path = self.directory / name
            if path.exists():
                text += path.read_text(errors="replace")
        return text or "nginx did not accept connections in time"

    def stop(self, timeout: float = _STOP_SECONDS) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the group we created: master + workers
        except ProcessLookupError:
            pass
        process.wait(timeout)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.cleanup()

    # -- configuration ------------------------------------------------------------

    def _config(self) -> str:
        d, port = self.directory, self.port
        listen = [f"listen 127.0.0.1:{port};"]
        if _ipv6_loopback():
            listen.append(f"listen [::1]:{port};")
        if self.tls is not None:
            cert, key = self.tls.cert_files(("127.0.0.1", "localhost"))
            listen += [f"listen 127.0.0.1:{self.https_port} ssl;",
                       f"listen 127.0.0.1:{self.h2_port} ssl http2;",
                       f"ssl_certificate {cert};", f"ssl_certificate_key {key};"]
        tao = 'add_header Timing-Allow-Origin "*" always;'
        locations = [
            f"location /plain/ {{ gzip off; alias {d}/www/; }}",
            # limit_rate makes a real server's body take measurable time (256 KiB/s).
            f"location /slow/ {{ limit_rate 256k; alias {d}/www/; }}",
            f"location = /cross {{ return 302 http://localhost:{port}/small.txt; }}",
            # HTTP/2 hops: a redirect to another origin on the h2 listener.
            f"location = /cross-h2 {{ return 302 https://localhost:{self.h2_port}/small.txt; }}",
            f"location = /cross-tao {{ {tao} return 302 http://localhost:{port}/tao/star; }}",
            f'location = /tao/star {{ {tao} return 200 "tao star\\n"; }}',
            f'location = /tao/origin {{ add_header Timing-Allow-Origin '
            f'"http://127.0.0.1:{port}" always; return 200 "tao origin\\n"; }}',
            'location = /tao/none { return 200 "tao none\\n"; }',
            f"location = /st {{ add_header Server-Timing '{SERVER_TIMING}' always; "
            'return 200 "server timing\\n"; }',
            'location = /post { client_max_body_size 16m; return 200 "posted\\n"; }',
            'location = /redirect/0 { return 200 "redirect done\\n"; }',
            f'location = /redirect-tao/0 {{ {tao} return 200 "redirect done\\n"; }}',
        ]
        # nginx has no arithmetic, so each hop of the countdown is its own location.
        for n in range(1, MAX_REDIRECT + 1):
            locations.append(f"location = /redirect/{n} {{ return 302 /redirect/{n - 1}; }}")
            locations.append(
                f"location = /redirect-tao/{n} {{ {tao} return 302 /redirect-tao/{n - 1}; }}")
        for code in STATUSES:
            locations.append(f'location = /status/{code} {{ return {code} "status {code}\\n"; }}')
        user = "user root;" if os.geteuid() == 0 else ""  # workers must read our 0700 dir
        temp = "\n".join(f"    {kind}_temp_path {d}/tmp/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        body = "\n".join("        " + line for line in listen + locations)
        return f"""{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
{temp}
    types {{ text/html html; text/plain txt; application/octet-stream bin; }}
    default_type text/plain;
    keepalive_requests 10000;
    keepalive_timeout 60s;
    # Relative Location headers: the client resolves them against the request URL.
    absolute_redirect off;
    gzip on;
    gzip_min_length 1;
    gzip_types text/plain;  # text/html is always compressed once gzip is on
    server {{
        server_name _;
        root {d}/www;
{body}
    }}
}}
"""


@pytest.fixture(scope="session")
def nginx(tls_ca):
    """One nginx for the session (http, plus https trusted by ``tls_ca``)."""
    if not nginx_available():
        message = "nginx binary not found (apt-get install -y nginx)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = NginxServer(tls=tls_ca).start()
    yield server
    server.cleanup()
