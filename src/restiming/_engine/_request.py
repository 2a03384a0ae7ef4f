"""The request layer: the caller's arguments validated and the h11 request built,
before any socket (SPEC §2: a caller's mistake is ``InvalidURL``, ``InvalidHeader`` or
``InvalidRequest``, records nothing and leaves the pool as it was).

``Requests`` belongs to one client and keeps what is pure and repeated: parsed URLs,
normalized header lists, and per (target, authority, method, body length, headers,
proxy) the h11 request event with its serialized bytes, which the connection sends
without serializing again. A load generator's call, the same URL, method and headers
every time, is one dictionary lookup (``plain``). Fetch's redirect rules for the
method and the headers are here too (``redirect_request``).
https://fetch.spec.whatwg.org/#http-redirect-fetch
"""

from __future__ import annotations

import re

import h11

from restiming._exceptions import InvalidRequest
from restiming._headers import normalize_headers
from restiming._url import parse_url

__all__ = ["Requests", "USER_AGENT", "check_initiator", "check_intended_start", "redirect_request"]

_NORMALIZED_METHODS = {m: m.encode() for m in ("DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH")}
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BODY_HEADERS = {b"content-encoding", b"content-language", b"content-location", b"content-type",
                 b"content-length", b"transfer-encoding"}
_CREDENTIAL_HEADERS = {b"authorization", b"cookie", b"proxy-authorization"}
# Caches: parse_url, header normalization and request building are pure. Short URLs
# and heads only, and each cache is cleared when full (a crawler's endless URLs never
# grow memory).
CACHE_SIZE = 256
URL_CACHE_MAX_LENGTH = 2048
REQUEST_CACHE_MAX_BYTES = 4096
NO_HEADERS: list = []  # shared, never mutated (redirects build new lists)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("restiming")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


USER_AGENT = b"restiming/" + _version().encode("ascii")


def check_initiator(initiator_type) -> None:
    if not isinstance(initiator_type, str) or not initiator_type:
        raise InvalidRequest(f"initiator_type must be a non-empty str, got {initiator_type!r}")
    try:
        initiator_type.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"initiator_type must be valid Unicode text, got {initiator_type!r}") from None


def check_intended_start(intended_start) -> None:
    if isinstance(intended_start, bool) or not isinstance(intended_start, int) or intended_start < 0:
        raise InvalidRequest(f"intended_start must be a monotonic ns int >= 0, got {intended_start!r}")


def body_bytes(body) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequest(f"body is not valid Unicode text: {exc}") from exc
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"body must be bytes, str or None, not {type(body).__name__}")


def redirect_request(method: bytes, body: bytes, headers: list, status: int, from_origin: str,
                     to_origin: str) -> tuple[bytes, bytes, list]:
    """Fetch's HTTP-redirect fetch: the method, body and headers of the next hop."""
    if (status in (301, 302) and method == b"POST") or (status == 303 and method not in (b"GET", b"HEAD")):
        method = b"GET"
        body = b""
        headers = [(n, v) for n, v in headers if n.lower() not in _BODY_HEADERS]
    if to_origin != from_origin:
        headers = [(n, v) for n, v in headers if n.lower() not in _CREDENTIAL_HEADERS and n.lower() != b"host"]
    return method, body, headers


def _headers_key(headers):
    """A hashable key for headers given as a list or tuple of pairs, else None."""
    kind = type(headers)
    if kind is list or kind is tuple:
        try:
            key = tuple(headers)
            hash(key)
        except TypeError:
            return None
        return key
    return None


class Requests:
    """One client's validated requests (see the module docstring)."""

    __slots__ = ("accept_encoding", "plain", "_urls", "_normalized", "_events")

    def __init__(self, accept_encoding: bytes) -> None:
        self.accept_encoding = accept_encoding
        #: (url, method, headers key) -> (URL, method bytes, headers, h11 event, bytes, proxy)
        self.plain: dict[tuple, tuple] = {}
        self._urls: dict[str, object] = {}
        self._normalized: dict[tuple, list] = {}
        self._events: dict[tuple, tuple] = {}

    def remember(self, url, method, headers, value: tuple) -> None:
        """Keep a validated call without body, timeout or intended start for ``plain``."""
        if type(url) is not str or len(url) > URL_CACHE_MAX_LENGTH or type(method) is not str:
            return
        key = _headers_key(headers) if headers else ()
        if key is None:
            return
        if len(self.plain) >= CACHE_SIZE:
            self.plain.clear()
        self.plain[(url, method, key)] = value

    def lookup(self, url, method, headers):
        """A remembered call, or None."""
        key = _headers_key(headers) if headers else ()
        return None if key is None else self.plain.get((url, method, key))

    def url(self, url):
        u = self._urls.get(url) if type(url) is str else None
        if u is None:
            u = parse_url(url)  # InvalidURL: before any socket, no entry
            if len(url) <= URL_CACHE_MAX_LENGTH:
                if len(self._urls) >= CACHE_SIZE:
                    self._urls.clear()
                self._urls[url] = u
        return u

    @staticmethod
    def method(method) -> bytes:
        m = _NORMALIZED_METHODS.get(method) if type(method) is str else None
        if m is None:
            if not isinstance(method, str) or not _TOKEN.match(method):
                raise InvalidRequest(f"method must be an HTTP token, got {method!r}")
            m = _NORMALIZED_METHODS.get(method.upper()) or method.encode("ascii")
        return m

    def headers(self, headers) -> list:
        """``normalize_headers``, kept for headers given as a list or tuple of pairs: a
        load generator passes the same few header sets on every fetch."""
        if not headers:
            return NO_HEADERS
        key = _headers_key(headers)
        if key is None:
            return normalize_headers(headers)
        cached = self._normalized.get(key)
        if cached is None:
            cached = normalize_headers(headers)
            if len(self._normalized) >= CACHE_SIZE:
                self._normalized.clear()
            self._normalized[key] = cached
        return cached

    def event(self, u, method: bytes, headers: list, body: bytes, proxy=None) -> tuple:
        """The h11 request event of a hop and its serialized bytes, kept per (target,
        authority, method, body length, caller headers, proxy); heads over 4 KiB are
        not kept. A request h11 refuses is the caller's mistake (InvalidRequest)."""
        # Through a proxy, plain HTTP goes in absolute-form with the proxy's
        # credentials (an https request goes through a tunnel: nothing changes).
        forward = proxy if proxy is not None and u.scheme == "http" else None
        key = (u.target, u.authority, method, len(body), *headers) if forward is None else \
            (u.target, u.authority, method, len(body), forward.key, *headers)
        cached = self._events.get(key)
        if cached is not None:
            return cached
        lower = [n.lower() for n, _ in headers]
        if lower.count(b"host") > 1:
            raise InvalidRequest("more than one Host header")
        if b"content-length" in lower:
            if b"transfer-encoding" in lower:  # RFC 9112 §6.2: a sender never sends both
                raise InvalidRequest("Content-Length and Transfer-Encoding together")
            declared = {v.strip() for n, v in headers if n.lower() == b"content-length"}
            if declared != {str(len(body)).encode()}:
                raise InvalidRequest(f"Content-Length {b', '.join(sorted(declared)).decode('latin-1')!r} "
                                     f"does not match the {len(body)}-byte body")
        names = set(lower)
        out = []
        if b"host" not in names:
            out.append((b"Host", u.authority.encode("ascii")))
        out.extend(headers)
        if b"user-agent" not in names:
            out.append((b"User-Agent", USER_AGENT))
        if b"accept" not in names:
            out.append((b"Accept", b"*/*"))
        if b"accept-encoding" not in names:
            out.append((b"Accept-Encoding", self.accept_encoding))
        if b"content-length" not in names and b"transfer-encoding" not in names:
            if body or method in (b"POST", b"PUT", b"PATCH"):
                out.append((b"Content-Length", str(len(body)).encode()))
        try:
            if forward is not None:
                target = f"http://{u.authority}{u.target}".encode("ascii")
                if forward.authorization is not None and b"proxy-authorization" not in names:
                    out.append((b"Proxy-Authorization", forward.authorization))
            else:
                target = u.target.encode("ascii")
            event = h11.Request(method=method, target=target, headers=out)
            head = h11.Connection(h11.CLIENT).send(event)
        except h11.LocalProtocolError as exc:
            raise InvalidRequest(f"cannot send this request: {exc}") from exc
        result = (event, head)
        if len(head) <= REQUEST_CACHE_MAX_BYTES:
            if len(self._events) >= CACHE_SIZE:
                self._events.clear()
            self._events[key] = result
        return result
