"""Request header validation and normalisation, and field-value list helpers.

Names must be tokens and values field-values as RFC 9110 section 5
(https://www.rfc-editor.org/rfc/rfc9110#section-5) defines them; anything that could
split a request (CR, LF, NUL) or smuggle a control character is refused with
:class:`InvalidHeader` before a byte is written. ``str`` values are encoded as Latin-1,
the Fetch standard's ByteString rule (a code point above U+00FF is an error: pass
``bytes`` to send another encoding). Order and duplicates are kept: the engine writes what
the caller gave.

:func:`split_list` is the Fetch standard's "get, decode, and split"
(https://fetch.spec.whatwg.org/#header-value-get-decode-and-split), shared by the
Timing-Allow-Origin check and the Server-Timing parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ._exceptions import InvalidHeader

__all__ = ["normalize_headers", "split_list"]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Field values: every control but HTAB is refused; obs-text (0x80-0xFF) is allowed.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_OWS = b" \t"


def _show(item: object) -> str:
    text = repr(item)
    return text if len(text) <= 100 else text[:97] + "..."


def _to_bytes(item: object, what: str, name: object) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):
        try:
            return item.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidHeader(
                f"header {what} for {_show(name)} has characters above U+00FF; "
                "encode it yourself and pass bytes"
            ) from None
    raise InvalidHeader(f"header {what} for {_show(name)} must be str or bytes, not {type(item).__name__}")


def _pairs(headers: object) -> Iterable[object]:
    if isinstance(headers, (str, bytes, bytearray)):
        raise InvalidHeader(f"headers must be a mapping or a sequence of (name, value) pairs, not {_show(headers)}")
    multi_items = getattr(headers, "multi_items", None)
    if callable(multi_items):
        # Multi-dicts (httpx.Headers, multidict) keep duplicates only through multi_items().
        return multi_items()
    if isinstance(headers, Mapping):
        return headers.items()
    try:
        return iter(headers)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidHeader(f"headers must be a mapping or a sequence of pairs, not {type(headers).__name__}") from None


def normalize_headers(headers: object) -> list[tuple[bytes, bytes]]:
    """Validate request headers and return them as ``(name, value)`` byte pairs.

    Accepts ``None``, a mapping, or an iterable of ``(name, value)`` pairs whose items are
    ``str`` or ``bytes``. Values lose leading and trailing spaces and tabs.
    """
    if headers is None:
        return []
    out: list[tuple[bytes, bytes]] = []
    for pair in _pairs(headers):
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise InvalidHeader(f"header {_show(pair)} is not a (name, value) pair")
        raw_name, raw_value = pair
        name = _to_bytes(raw_name, "name", raw_name)
        if not _TOKEN.fullmatch(name):
            raise InvalidHeader(f"invalid header name {_show(raw_name)}: not an RFC 9110 token")
        value = _to_bytes(raw_value, "value", raw_name).strip(_OWS)
        bad = _BAD_VALUE.search(value)
        if bad:
            raise InvalidHeader(
                f"invalid value for header {_show(raw_name)}: control character {bad.group()!r} "
                f"in {_show(raw_value)}"
            )
        out.append((name, value))
    return out


def split_list(value: str) -> list[str]:
    """Split a combined field value on commas outside quoted strings (Fetch).

    Each item loses leading and trailing spaces and tabs; quotes and backslashes stay in
    the items, and empty items are kept, exactly as the Fetch algorithm returns them.
    """
    items: list[str] = []
    n = len(value)
    pos = 0
    start = 0
    while True:
        while pos < n and value[pos] not in '",':
            pos += 1
        if pos < n and value[pos] == '"':
            pos += 1
            while pos < n and value[pos] != '"':
                pos += 2 if value[pos] == "\\" else 1
            pos += 1
            continue
        items.append(value[start:pos].strip(" \t"))
        if pos >= n:
            return items
        pos += 1
        start = pos
