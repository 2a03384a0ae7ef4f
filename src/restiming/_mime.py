"""The entry's ``contentType``: Fetch's "extract a MIME type" of the Content-Type field,
then MIME Sniffing's "minimize a supported MIME type" (SPEC §3: restiming delivers
every body, so every valid MIME type counts as supported). Pure and memoized for the
short values servers repeat.
https://fetch.spec.whatwg.org/#concept-header-extract-mime-type
https://mimesniff.spec.whatwg.org/#minimize-a-supported-mime-type
"""

from __future__ import annotations

import functools
import re

from restiming._headers import split_list

__all__ = ["content_type_attribute", "essence", "minimize"]

_MIME_ESSENCE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# MIME Sniffing, "JavaScript MIME type": https://mimesniff.spec.whatwg.org/#javascript-mime-type
_JAVASCRIPT = frozenset((
    "application/ecmascript", "application/javascript", "application/x-ecmascript", "application/x-javascript",
    "text/ecmascript", "text/javascript", "text/javascript1.0", "text/javascript1.1", "text/javascript1.2",
    "text/javascript1.3", "text/javascript1.4", "text/javascript1.5", "text/jscript", "text/livescript",
    "text/x-ecmascript", "text/x-javascript"))
_MEMO_MAX_LENGTH = 256  # an attacker-sized value is not kept in the memo


def essence(content_type: str | None) -> str:
    """Fetch's "extract a MIME type", reduced to the essence: of the comma-separated
    values, the last that parses wins (``*/*`` is skipped); "" when none does."""
    if not content_type:
        return ""
    found = ""
    for value in split_list(content_type):
        candidate = value.split(";", 1)[0].strip(" \t\r\n").lower()
        if candidate != "*/*" and _MIME_ESSENCE.match(candidate):
            found = candidate
    return found


def minimize(mime_essence: str) -> str:
    """Minimize a supported MIME type, given its essence."""
    if mime_essence in _JAVASCRIPT:
        return "text/javascript"
    if mime_essence in ("application/json", "text/json") or mime_essence.endswith("+json"):
        return "application/json"
    if mime_essence == "image/svg+xml":
        return mime_essence
    if mime_essence in ("text/xml", "application/xml") or mime_essence.endswith("+xml"):
        return "application/xml"
    return mime_essence


def _attribute(content_type: str | None) -> str:
    return minimize(essence(content_type))


_memo = functools.lru_cache(maxsize=256)(_attribute)


def content_type_attribute(content_type: str | None) -> str:
    """The ``contentType`` of a response whose Content-Type field (values combined)
    is ``content_type``."""
    if content_type and len(content_type) <= _MEMO_MAX_LENGTH:
        return _memo(content_type)
    return _attribute(content_type)
