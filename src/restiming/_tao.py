"""The Timing-Allow-Origin check over a redirect chain.

Implements the Fetch standard's TAO check (https://fetch.spec.whatwg.org/#concept-tao-check)
together with the two request states it reads: the response tainting, which stays "basic"
only while every URL of the chain is same-origin with the document, and the
redirect-tainted origin (https://fetch.spec.whatwg.org/#concept-request-tainted-origin),
which serializes the request origin as ``null``. Resource Timing applies the result
(https://w3c.github.io/resource-timing/#sec-timing-allow-origin); SPEC.md section 3
"Document origin and Timing-Allow-Origin" is the contract.

The engine drives one :class:`TaoCheck` per fetch: ``on_response`` for every response
(redirects included), ``on_redirect`` for every hop followed. The first failure sticks,
like Fetch's "timing allow failed flag".
"""

from __future__ import annotations

from ._headers import split_list
from ._url import normalize_origin, same_origin

__all__ = ["TaoCheck", "tao_allows"]


def tao_allows(field_values: list[str], request_origin: str) -> bool:
    """Whether a response's Timing-Allow-Origin field values allow ``request_origin``.

    The values are combined and split as Fetch's "get, decode, and split" does (commas
    inside quoted strings do not split); an item passes when it is exactly ``*`` or
    exactly, case-sensitively, the serialized request origin.
    """
    if not field_values:
        return False
    items = split_list(",".join(field_values))
    return "*" in items or request_origin in items


class TaoCheck:
    """Timing-Allow-Origin state of one fetch, across its redirect chain.

    ``document_origin=None`` means no document origin is configured: every fetch passes
    and :attr:`request_origin` is ``"null"``.
    """

    __slots__ = ("_document", "_basic", "_tainted", "_passed")

    def __init__(self, document_origin: str | None, first_url_origin: str) -> None:
        self._document = None if document_origin is None else normalize_origin(document_origin)
        # Fetch's response tainting stays "basic" only while the chain is same-origin.
        self._basic = self._document is not None and same_origin(self._document, first_url_origin)
        self._tainted = False
        self._passed = True

    def on_redirect(self, from_origin: str, to_origin: str) -> None:
        """Record a followed redirect from ``from_origin`` to ``to_origin``."""
        if self._document is None:
            return
        if not same_origin(from_origin, to_origin) and not same_origin(self._document, from_origin):
            self._tainted = True
        if not same_origin(self._document, to_origin):
            self._basic = False

    def on_response(self, url_origin: str, tao_field_values: list[str]) -> None:
        """Check one response of the chain, given its raw Timing-Allow-Origin values."""
        if self._document is None or not self._passed:
            return
        if not same_origin(self._document, url_origin):
            self._basic = False
        if self._basic:
            return
        if not tao_allows(tao_field_values, self.request_origin):
            self._passed = False

    @property
    def passed(self) -> bool:
        """False once any response of the chain failed the check."""
        return self._passed

    @property
    def request_origin(self) -> str:
        """The serialized request origin: the document origin, or ``"null"`` once tainted."""
        if self._document is None or self._tainted:
            return "null"
        return self._document

    def __repr__(self) -> str:
        return (
            f"TaoCheck(document_origin={self._document!r}, passed={self._passed}, "
            f"request_origin={self.request_origin!r}, same_origin_chain={self._basic})"
        )
