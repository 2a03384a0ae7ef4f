"""URL parsing and validation for the fetch engine.

Implements the subset of the WHATWG URL Standard (https://url.spec.whatwg.org/) that an
HTTP client needs for the special schemes ``http`` and ``https``: scheme, host (IDNA,
IPv4 in its WHATWG number forms, bracketed IPv6), port, request target, serialized origin
(https://html.spec.whatwg.org/multipage/browsers.html#ascii-serialisation-of-an-origin).
Redirect targets are resolved per RFC 3986 with the Fetch rule that a Location without a
fragment inherits the current URL's fragment.

Strategy: split by hand rather than with ``urlsplit`` so that "no query" and "empty query"
stay distinct and the host is validated once, here, before any socket exists. Everything
is pure; every failure is :class:`InvalidURL`.

Decisions where the standards leave room or browsers are more lenient:

- C0 controls, DEL and spaces anywhere in the URL are rejected, not stripped.
- Userinfo (``user:pass@``) is rejected: the URL names the timing entry, and credentials
  must not leak into entries and exports. Send an ``Authorization`` header instead.
- IPv6 zone identifiers (``%eth0``) are rejected, as in the URL Standard.
- Non-ASCII host names go through the standard library's IDNA 2003 codec (``ß`` maps to
  ``ss``, where the URL Standard's UTS 46 non-transitional processing would keep it).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import NamedTuple
from urllib.parse import unquote, urljoin

from ._exceptions import InvalidURL

__all__ = [
    "MAX_URL_LENGTH", "URL", "parse_url", "resolve_location", "same_origin", "normalize_origin",
    "serialize_ipv6",
]

#: Longest URL accepted, in characters. Servers commonly refuse request lines far shorter.
MAX_URL_LENGTH = 65536

DEFAULT_PORTS = {"http": 80, "https": 443}

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
# URL Standard "forbidden domain code points" minus the controls, which _CONTROL catches.
_FORBIDDEN_HOST = re.compile(r"[#%/:<>?@\[\\\]^|]")
# URL Standard path and special-query percent-encode sets, plus every non-ASCII character.
_PATH_ENCODE = re.compile(r'[^\x21-\x7e]|["<>`{}]')
_QUERY_ENCODE = re.compile(r"[^\x21-\x7e]|[\"<>']")


class URL(NamedTuple):
    """A parsed, validated http(s) URL, ready for the engine."""

    scheme: str
    host: str
    port: int
    target: str
    origin: str
    authority: str
    url: str
    fragment: str | None = None

    @property
    def href(self) -> str:
        """The normalized absolute URL, fragment included."""
        tail = "" if self.fragment is None else "#" + self.fragment
        return f"{self.scheme}://{self.authority}{self.target}{tail}"


def _fail(url: object, why: str) -> InvalidURL:
    shown = repr(url)
    if len(shown) > 100:
        shown = shown[:97] + "..."
    return InvalidURL(f"invalid URL {shown}: {why}")


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_url(url: str) -> URL:
    """Parse and validate an absolute http(s) URL; raise :class:`InvalidURL` otherwise."""
    if not isinstance(url, str):
        raise InvalidURL(f"URL must be a str, not {type(url).__name__}")
    if not url:
        raise InvalidURL("URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise _fail(url, f"longer than {MAX_URL_LENGTH} characters")
    bad = _CONTROL.search(url)
    if bad:
        raise _fail(url, f"control character or space {bad.group()!r} at index {bad.start()}")
    bad = _SURROGATE.search(url)
    if bad:
        raise _fail(url, f"lone surrogate {bad.group()!r} at index {bad.start()} (not a Unicode character)")
    m = _SCHEME.match(url)
    if not m:
        raise _fail(url, "no scheme (expected http:// or https://)")
    scheme = m.group()[:-1].lower()
    if scheme not in DEFAULT_PORTS:
        raise _fail(url, f"unsupported scheme {scheme!r} (only http and https)")

    rest, hash_, fragment = url[m.end() :].partition("#")
    before_query, qmark, query = rest.partition("?")
    # Special schemes treat "\" as "/" before the query (URL Standard, special authority).
    before_query = before_query.replace("\\", "/")
    if not before_query.startswith("//"):
        raise _fail(url, "missing '//' and host")
    netloc, slash, path = before_query[2:].partition("/")
    if "@" in netloc:
        raise _fail(url, "credentials in the URL are not supported; send an Authorization header")

    host, port = _split_host_port(url, netloc, DEFAULT_PORTS[scheme])
    path = _remove_dot_segments(slash + path) or "/"
    target = _PATH_ENCODE.sub(_pct, path)
    if qmark:
        target += "?" + _QUERY_ENCODE.sub(_pct, query)

    bracketed = f"[{host}]" if ":" in host else host
    authority = bracketed if port == DEFAULT_PORTS[scheme] else f"{bracketed}:{port}"
    return URL(
        scheme=scheme,
        host=host,
        port=port,
        target=target,
        origin=f"{scheme}://{authority}",
        authority=authority,
        url=url,
        fragment=fragment if hash_ else None,
    )


def _pct(m: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "surrogatepass"))


def _split_host_port(url: str, netloc: str, default_port: int) -> tuple[str, int]:
    if netloc.startswith("["):
        inner, close, after = netloc[1:].partition("]")
        if not close:
            raise _fail(url, "unterminated IPv6 address")
        if after and not after.startswith(":"):
            raise _fail(url, "unexpected characters after the IPv6 address")
        host = _parse_ipv6(url, inner)
        port_text = after[1:]
    else:
        raw_host, _, port_text = netloc.partition(":")
        host = _parse_host(url, raw_host)
    if not port_text:  # absent or empty: the URL Standard uses the default port
        return host, default_port
    if not port_text.isascii() or not port_text.isdigit():
        raise _fail(url, f"port {port_text!r} is not a number")
    port = int(port_text)
    if port > 65535:
        raise _fail(url, f"port {port} is out of range (0-65535)")
    return host, port


def _parse_ipv6(url: str, inner: str) -> str:
    if "%" in inner:
        raise _fail(url, "IPv6 zone identifiers are not supported")
    try:
        packed = ipaddress.IPv6Address(inner).packed
    except ValueError:
        raise _fail(url, f"{inner!r} is not a valid IPv6 address") from None
    return serialize_ipv6(packed)


def serialize_ipv6(packed: bytes) -> str:
    """The URL Standard's IPv6 serializer (https://url.spec.whatwg.org/#concept-ipv6-serializer).

    Eight lower-case hex pieces, the first longest run of two or more zero pieces written
    as ``::``, and never an IPv4 dotted tail: ``[::ffff:1.2.3.4]`` is ``::ffff:102:304``.
    Done here rather than with ``ipaddress``, whose text for IPv4-mapped addresses changed
    in Python 3.13.
    """
    pieces = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    compress, best, run = -1, 1, 0
    for i, piece in enumerate(pieces):
        run = run + 1 if piece == 0 else 0
        if run > best:
            compress, best = i - run + 1, run
    if compress < 0:
        return ":".join(f"{p:x}" for p in pieces)
    head = ":".join(f"{p:x}" for p in pieces[:compress])
    tail = ":".join(f"{p:x}" for p in pieces[compress + best :])
    return f"{head}::{tail}"


def _parse_host(url: str, raw: str) -> str:
    if not raw:
        raise _fail(url, "missing host")
    try:
        host = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise _fail(url, "host is not valid UTF-8 after percent-decoding") from None
    if host.isascii():
        host = host.lower()
    else:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise _fail(url, f"host fails IDNA encoding ({exc})") from None
    bad = _CONTROL.search(host) or _FORBIDDEN_HOST.search(host)
    if bad or not host:
        raise _fail(url, f"forbidden character {bad.group()!r} in host" if bad else "empty host")
    if _ends_in_number(host):
        return _parse_ipv4(url, host)
    return host


def _ends_in_number(host: str) -> bool:
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    if last.isdigit():
        return True
    return last[:2] == "0x" and all(c in "0123456789abcdef" for c in last[2:])


def _parse_ipv4(url: str, host: str) -> str:
    # URL Standard IPv4 parser: 1-4 parts, each decimal, 0x-hex or 0-octal; the last part
    # fills the remaining bytes. So "0x7f.1" is 127.0.0.1 and "1.2.3.256" is invalid.
    parts = host.split(".")
    if parts[-1] == "":
        parts.pop()
    if len(parts) > 4:
        raise _fail(url, f"{host!r} is not a valid IPv4 address")
    numbers = []
    for part in parts:
        if not part:
            raise _fail(url, f"{host!r} is not a valid IPv4 address")
        base, digits = 10, part
        if part[:2] == "0x":
            base, digits = 16, part[2:]
        elif len(part) > 1 and part[0] == "0":
            base, digits = 8, part[1:]
        try:
            numbers.append(int(digits, base) if digits else 0)
        except ValueError:
            raise _fail(url, f"{host!r} is not a valid IPv4 address") from None
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise _fail(url, f"{host!r} is not a valid IPv4 address")
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n * 256 ** (3 - i)
    return str(ipaddress.IPv4Address(value))


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 section 5.2.4, as browsers, curl and httpx apply it before sending.
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments[1:], 1):
        last = i == len(segments) - 1
        if seg == "..":
            if len(out) > 0:
                out.pop()
            if last:
                out.append("")
        elif seg == ".":
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def resolve_location(base: URL, location: str) -> str:
    """The absolute URL a redirect's ``Location`` value points to.

    Relative references resolve against ``base`` per RFC 3986; a Location without a
    fragment inherits ``base``'s fragment (Fetch, HTTP-redirect fetch). The scheme is not
    checked: a non-http(s) result is the caller's redirect error, not an invalid URL.
    """
    if not isinstance(location, str):
        raise InvalidURL(f"Location must be a str, not {type(location).__name__}")
    # h11 already strips OWS from field values; anything else that is a control is refused.
    location = location.strip(" \t")
    bad = re.search(r"[\x00-\x1f\x7f]", location)
    if bad:
        raise _fail(location, f"control character {bad.group()!r} in Location")
    if len(location) > MAX_URL_LENGTH:
        raise _fail(location, f"longer than {MAX_URL_LENGTH} characters")
    location, hash_, fragment = location.replace(" ", "%20").partition("#")
    head, qmark, query = location.partition("?")
    # Special URLs treat "\\" as "/" before the query, as parse_url does.
    location = head.replace("\\", "/") + qmark + query
    try:
        resolved = urljoin(base.href.partition("#")[0], location)
    except ValueError as exc:  # urllib refuses e.g. unbalanced IPv6 brackets
        raise _fail(location, str(exc)) from exc
    if qmark and not query:
        # urljoin treats an empty query as absent; the URL Standard keeps it empty.
        resolved = resolved.partition("?")[0] + "?"
    if hash_:
        resolved += "#" + fragment
    elif base.fragment is not None:
        resolved += "#" + base.fragment
    return resolved


@functools.lru_cache(maxsize=512)
def normalize_origin(origin: str) -> str:
    """Canonical serialization of an http(s) origin (``"null"`` stays ``"null"``)."""
    if origin == "null":
        return origin
    parsed = parse_url(origin)
    tail = origin.split("//", 1)[1].replace("\\", "/")
    if "/" in tail.rstrip("/") or parsed.target != "/" or parsed.fragment is not None:
        raise InvalidURL(f"{origin!r} is not an origin (expected scheme://host[:port])")
    return parsed.origin


def same_origin(a: str, b: str) -> bool:
    """Whether two serialized origins are the same origin.

    ``"null"`` (an opaque origin) is never same-origin with anything, itself included,
    since two serializations cannot tell whether they name the same opaque origin.
    """
    if a == "null" or b == "null":
        return False
    if a == b:
        return True
    try:
        return normalize_origin(a) == normalize_origin(b)
    except InvalidURL:
        return False
