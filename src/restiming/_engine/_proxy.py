"""HTTP proxies: which fetch goes through which proxy, and the CONNECT tunnel.

``Proxies`` holds the routes (``Client(proxy=...)``, or ``HTTP_PROXY`` /
``HTTPS_PROXY`` / ``NO_PROXY`` when ``trust_env=True``) and picks one per URL.
Plain-HTTP requests go to the proxy in absolute-form (RFC 9112 §3.2.2) with the
credentials in ``Proxy-Authorization``; HTTPS goes through a ``CONNECT`` tunnel
opened on the engine's own socket before TLS (``Tunnel``, run by the network
layer between TCP connect and the TLS handshake with the origin), so the
credentials never reach the origin. Stamps: connect_start/connect_end cover the
TCP connection to the proxy, the tunnel and the TLS handshake; the extensions
proxy_connect_start/proxy_connect_end are CONNECT sent / 2xx received. A proxy
that refuses the tunnel is ``ProxyError`` with its status.
https://www.rfc-editor.org/rfc/rfc9110#section-9.3.6
"""

from __future__ import annotations

import base64
import os
import urllib.parse

import h11

from restiming._binding import lib
from restiming._exceptions import InvalidRequest, ProxyError
from restiming._fields import SLOT

__all__ = ["Proxy", "Proxies", "Tunnel"]

_now = lib.rt_now_ns
_PCS, _PCE = SLOT["proxy_connect_start"], SLOT["proxy_connect_end"]
_READ = 65536


class Proxy:
    """One HTTP proxy: where to connect and what to say (parsed once)."""

    __slots__ = ("host", "port", "authorization", "display", "key")

    def __init__(self, url: str) -> None:
        if not isinstance(url, str):
            raise TypeError(f"proxy must be a str URL, not {type(url).__name__}")
        parts = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme.lower() != "http":
            raise InvalidRequest(f"proxy: only http:// proxies are supported, got {url!r}")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise InvalidRequest(f"proxy: bad port in {url!r}") from exc
        if not parts.hostname:
            raise InvalidRequest(f"proxy: no host in {url!r}")
        self.host = parts.hostname
        self.port = port
        self.authorization: bytes | None = None
        if parts.username is not None:
            pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self.authorization = b"Basic " + base64.b64encode(pair.encode("utf-8"))
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.display = f"{host}:{port}"   # never the credentials
        self.key = ("proxy", self.host, port, self.authorization)

    def __repr__(self) -> str:
        return f"Proxy({self.display!r})"


class Proxies:
    """The proxy routes of a client: http and https, and the NO_PROXY exceptions."""

    __slots__ = ("http", "https", "no_proxy")

    def __init__(self, http: Proxy | None, https: Proxy | None, no_proxy: str = "") -> None:
        self.http = http
        self.https = https
        self.no_proxy = _parse_no_proxy(no_proxy)

    @classmethod
    def configure(cls, proxy, trust_env: bool, environ=None) -> "Proxies | None":
        """``proxy`` (a URL for both schemes) wins over the environment; with
        ``trust_env`` the environment's NO_PROXY applies to it as well."""
        env = os.environ if environ is None else environ
        no_proxy = _env(env, "no_proxy") if trust_env else ""
        if proxy is not None:
            p = Proxy(proxy)
            return cls(p, p, no_proxy)
        if not trust_env:
            return None
        http = _env(env, "http_proxy")
        https = _env(env, "https_proxy")
        everything = _env(env, "all_proxy")
        http = http or everything
        https = https or everything
        if not http and not https:
            return None
        return cls(Proxy(http) if http else None, Proxy(https) if https else None, no_proxy)

    def select(self, url) -> Proxy | None:
        """The proxy for ``url`` (a parsed URL), or None to go direct."""
        proxy = self.https if url.scheme == "https" else self.http
        if proxy is None or (self.no_proxy and _bypass(self.no_proxy, url.host, url.port)):
            return None
        return proxy


def _env(env, name: str) -> str:
    # curl's rule: the lower-case name first (HTTP_PROXY in upper case is unsafe under
    # CGI, where a request's Proxy header becomes HTTP_PROXY); NO_PROXY in either case.
    value = env.get(name) or ("" if name == "http_proxy" else env.get(name.upper(), ""))
    return value.strip()


def _parse_no_proxy(value: str) -> tuple:
    import ipaddress  # only clients with a proxy pay for it

    rules = []
    for item in value.replace(",", " ").split():
        item = item.strip().lower()
        if not item:
            continue
        if item == "*":
            return (("*", None, None),)
        port = None
        host = item
        if host.startswith("["):  # [v6]:port
            end = host.find("]")
            rest = host[end + 1:]
            host = host[1:end]
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
        elif host.count(":") == 1:
            host, _, p = host.partition(":")
            if p.isdigit():
                port = int(p)
        try:
            net = ipaddress.ip_network(host, strict=False)
        except ValueError:
            net = None
        rules.append((host.lstrip(".").lstrip("*").lstrip("."), port, net))
    return tuple(rules)


def _bypass(rules: tuple, host: str, port: int) -> bool:
    import ipaddress

    host = host.lower().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for name, rule_port, net in rules:
        if name == "*":
            return True
        if rule_port is not None and rule_port != port:
            continue
        if net is not None:
            if address is not None and address.version == net.version and address in net:
                return True
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


class Tunnel:
    """The CONNECT exchange on the engine's socket, connected to the proxy, before
    TLS; stamps proxy_connect_start/end; counts its bytes for the entry."""

    __slots__ = ("proxy", "authority", "max_head", "sent", "received")

    def __init__(self, proxy: Proxy, authority: str, max_head: int) -> None:
        self.proxy = proxy
        self.authority = authority
        self.max_head = max_head
        self.sent = 0
        self.received = 0

    async def __call__(self, loop, sock, stamps) -> None:
        proxy = self.proxy
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.max_head)
        headers = [(b"Host", self.authority.encode("ascii")), (b"User-Agent", b"restiming/0.1")]
        if proxy.authorization is not None:
            headers.append((b"Proxy-Authorization", proxy.authorization))
        data = conn.send(h11.Request(method=b"CONNECT", target=self.authority.encode("ascii"), headers=headers))
        data += conn.send(h11.EndOfMessage())
        stamps[_PCS] = _now()
        try:
            await loop.sock_sendall(sock, data)
            self.sent += len(data)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    chunk = await loop.sock_recv(sock, _READ)
                    self.received += len(chunk)
                    conn.receive_data(chunk)
                    continue
                if type(event) is h11.InformationalResponse:
                    continue
                if type(event) is h11.Response:
                    break
                raise ProxyError(f"proxy {proxy.display} closed the connection without answering CONNECT")
        except h11.RemoteProtocolError as exc:
            if conn.their_state is h11.CLOSED or not self.received:
                raise ProxyError(f"proxy {proxy.display} closed the connection without answering CONNECT") \
                    from exc
            raise ProxyError(f"proxy {proxy.display} answered CONNECT with malformed HTTP: {exc}") from exc
        except OSError as exc:
            raise ProxyError(f"proxy {proxy.display} failed during CONNECT: {exc.strerror or exc}") from exc
        status = event.status_code
        if not 200 <= status < 300:
            raise ProxyError(f"proxy {proxy.display} refused the tunnel to {self.authority}: {status} "
                             f"{event.reason.decode('latin-1', 'replace')}", status=status)
        if conn.trailing_data[0]:
            raise ProxyError(f"proxy {proxy.display} sent bytes after its CONNECT answer", status=status)
        stamps[_PCE] = _now()
