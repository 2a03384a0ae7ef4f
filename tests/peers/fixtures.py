"""pytest plugin exposing the peers: load with ``pytest_plugins = ["tests.peers.fixtures"]``.

Strategy: expensive peers (the CA, nginx) are session-scoped; scripted servers are cheap
and made per test through a factory, so a test can run several with different scripts.
Every server a fixture starts is stopped at teardown, and a scripted server whose handler
raised fails the test at teardown, since a broken script otherwise looks like an engine bug.
"""

from __future__ import annotations

import pytest

from .certs import make_ca, tls_ca  # noqa: F401  (fixture re-exported)
from .nginx import nginx, nginx_available  # noqa: F401  (fixture re-exported)
from .ports import free_port as _free_port
from .scripted import ScriptedServer
from .tinyproxy import tinyproxy  # noqa: F401  (fixture re-exported)

__all__ = ["scripted_server", "tls_ca", "nginx", "free_port", "make_ca", "nginx_available", "h2_server",
           "tinyproxy", "scripted_proxy"]


@pytest.fixture
def scripted_server():
    """Factory: ``scripted_server(handler=None, **kwargs) -> ScriptedServer`` (started).

    kwargs are those of ``ScriptedServer``: ``tls``, ``host``, ``on_connect``,
    ``read_requests``.
    """
    servers: list[ScriptedServer] = []

    def make(handler=None, **kwargs) -> ScriptedServer:
        server = ScriptedServer(handler, **kwargs)
        servers.append(server)
        return server.start()

    yield make
    errors = []
    for server in servers:
        server.stop()
        errors += server.errors
    if errors:
        pytest.fail("scripted server handler raised:\n" + "\n".join(errors))


@pytest.fixture
def free_port():
    """``free_port(host="127.0.0.1") -> int``: a port nobody listens on (for refused
    connections, or for servers that retry on a bind race)."""
    return _free_port


@pytest.fixture
def h2_server(tls_ca):
    """Factory: ``h2_server(handler, **kwargs) -> H2Server`` (started, TLS from
    ``tls_ca``, ALPN h2); a handler that raised fails the test at teardown."""
    from .h2server import H2Server

    servers = []

    def make(handler, **kwargs):
        server = H2Server(tls_ca, handler, **kwargs)
        servers.append(server)
        return server.start()

    yield make
    errors = []
    for server in servers:
        server.stop()
        errors += server.errors
    if errors:
        pytest.fail("h2 server handler raised:\n" + "\n".join(errors))


@pytest.fixture
def scripted_proxy():
    """Factory: ``scripted_proxy(handler=None) -> ScriptedProxy`` (started);
    ``handler(raw_head) -> status | None``."""
    from .proxy import ScriptedProxy

    proxies = []

    def make(handler=None):
        proxy = ScriptedProxy(handler)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.stop()
