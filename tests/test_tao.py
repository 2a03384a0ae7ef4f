"""The Timing-Allow-Origin check over redirect chains (restiming._tao)."""

from __future__ import annotations

import pytest

from restiming._exceptions import InvalidURL
from restiming._tao import TaoCheck, tao_allows

DOC = "https://doc.example"
OTHER = "https://cdn.example"
THIRD = "https://third.example"

# (Timing-Allow-Origin field values, request origin, allowed)
TAO_VALUES = [
    ([], DOC, False),
    ([""], DOC, False),
    (["*"], DOC, True),
    ([" * "], DOC, True),
    (["\t*\t"], DOC, True),
    ([DOC], DOC, True),
    ([f"  {DOC}  "], DOC, True),
    ([DOC.upper()], DOC, False),
    (["https://Doc.example"], DOC, False),
    ([DOC + "/"], DOC, False),
    ([DOC + ":443"], DOC, False),
    (["doc.example"], DOC, False),
    ([OTHER], DOC, False),
    ([f"{OTHER}, {DOC}"], DOC, True),
    ([f"{OTHER},{DOC}"], DOC, True),
    ([OTHER, DOC], DOC, True),
    ([OTHER, "*"], DOC, True),
    (["", DOC], DOC, True),
    (["**"], DOC, False),
    (["'*'"], DOC, False),
    (['"*"'], DOC, False),
    ([f"{DOC} {OTHER}"], DOC, False),
    ([f"{DOC};x"], DOC, False),
    (["null"], "null", True),
    (["null"], DOC, False),
    (["NULL"], "null", False),
    ([DOC], "null", False),
    (["*"], "null", True),
    # A comma inside a quoted string does not split (Fetch "get, decode, and split").
    (['"x, *'], DOC, False),
    ([f'"x", {DOC}'], DOC, True),
]


@pytest.mark.parametrize(("values", "origin", "allowed"), TAO_VALUES)
def test_tao_allows(values, origin, allowed):
    assert tao_allows(values, origin) is allowed


def _run(document, first, steps):
    """Drive a TaoCheck: steps are ("response", origin, values) or ("redirect", from, to)."""
    check = TaoCheck(document, first)
    for step in steps:
        if step[0] == "response":
            check.on_response(step[1], step[2])
        else:
            check.on_redirect(step[1], step[2])
    return check


def resp(origin, *values):
    return ("response", origin, list(values))


def hop(from_origin, to_origin):
    return ("redirect", from_origin, to_origin)


# (document origin, first URL origin, steps, passed, request origin at the end)
CHAINS = [
    ("no origin: always passes", None, OTHER, [resp(OTHER)], True, "null"),
    ("no origin, cross-origin chain", None, DOC, [resp(DOC), hop(DOC, OTHER), resp(OTHER)], True, "null"),
    ("same-origin, no TAO", DOC, DOC, [resp(DOC)], True, DOC),
    ("same-origin, default port spelled out", DOC, DOC + ":443", [resp(DOC + ":443")], True, DOC),
    ("document origin is normalized", "HTTPS://DOC.EXAMPLE:443/", DOC, [resp(DOC)], True, DOC),
    ("cross-origin without TAO", DOC, OTHER, [resp(OTHER)], False, DOC),
    ("cross-origin with *", DOC, OTHER, [resp(OTHER, "*")], True, DOC),
    ("cross-origin with exact origin", DOC, OTHER, [resp(OTHER, DOC)], True, DOC),
    ("cross-origin, wrong case", DOC, OTHER, [resp(OTHER, DOC.upper())], False, DOC),
    ("cross-origin, trimmed list item", DOC, OTHER, [resp(OTHER, f"{THIRD} ,  {DOC}\t")], True, DOC),
    ("cross-origin, second header field", DOC, OTHER, [resp(OTHER, THIRD, DOC)], True, DOC),
    ("cross-origin, other origin only", DOC, OTHER, [resp(OTHER, THIRD)], False, DOC),
    ("scheme differs", DOC, "http://doc.example", [resp("http://doc.example")], False, DOC),
    ("port differs", DOC, DOC + ":8443", [resp(DOC + ":8443", DOC)], True, DOC),
    (
        "same-origin redirect chain",
        DOC, DOC,
        [resp(DOC), hop(DOC, DOC), resp(DOC)],
        True, DOC,
    ),
    (
        "same-origin to cross-origin: final needs TAO",
        DOC, DOC,
        [resp(DOC), hop(DOC, OTHER), resp(OTHER)],
        False, DOC,
    ),
    (
        "same-origin to cross-origin with TAO: origin not tainted",
        DOC, DOC,
        [resp(DOC), hop(DOC, OTHER), resp(OTHER, DOC)],
        True, DOC,
    ),
    (
        "cross-origin redirect response itself needs TAO",
        DOC, OTHER,
        [resp(OTHER), hop(OTHER, DOC), resp(DOC, "*")],
        False, "null",
    ),
    (
        "cross to cross: tainted, exact origin no longer matches",
        DOC, OTHER,
        [resp(OTHER, DOC), hop(OTHER, THIRD), resp(THIRD, DOC)],
        False, "null",
    ),
    (
        "cross to cross: tainted, null matches",
        DOC, OTHER,
        [resp(OTHER, DOC), hop(OTHER, THIRD), resp(THIRD, "null")],
        True, "null",
    ),
    (
        "cross to cross: tainted, * matches",
        DOC, OTHER,
        [resp(OTHER, "*"), hop(OTHER, THIRD), resp(THIRD, "*")],
        True, "null",
    ),
    (
        "redirect within one foreign origin does not taint",
        DOC, OTHER,
        [resp(OTHER, DOC), hop(OTHER, OTHER), resp(OTHER, DOC)],
        True, DOC,
    ),
    (
        "same-origin, through a cross-origin hop and back: final needs null",
        DOC, DOC,
        [resp(DOC), hop(DOC, OTHER), resp(OTHER, DOC), hop(OTHER, DOC), resp(DOC, DOC)],
        False, "null",
    ),
    (
        "same-origin, through a cross-origin hop and back, null allowed",
        DOC, DOC,
        [resp(DOC), hop(DOC, OTHER), resp(OTHER, DOC), hop(OTHER, DOC), resp(DOC, "null")],
        True, "null",
    ),
    (
        "same-origin, back from a cross-origin hop without any TAO",
        DOC, DOC,
        [resp(DOC), hop(DOC, OTHER), resp(OTHER, "*"), hop(OTHER, DOC), resp(DOC)],
        False, "null",
    ),
    (
        "a failure sticks even when later responses allow",
        DOC, OTHER,
        [resp(OTHER), hop(OTHER, OTHER), resp(OTHER, "*")],
        False, DOC,
    ),
    (
        "failure on a middle hop",
        DOC, DOC,
        [resp(DOC), hop(DOC, OTHER), resp(OTHER), hop(OTHER, THIRD), resp(THIRD, "*")],
        False, "null",
    ),
    ("opaque document: nothing is same-origin", "null", DOC, [resp(DOC)], False, "null"),
    ("opaque document: null allowed", "null", DOC, [resp(DOC, "null")], True, "null"),
]


@pytest.mark.parametrize(
    ("document", "first", "steps", "passed", "request_origin"),
    [case[1:] for case in CHAINS],
    ids=[case[0] for case in CHAINS],
)
def test_chain(document, first, steps, passed, request_origin):
    check = _run(document, first, steps)
    assert check.passed is passed
    assert check.request_origin == request_origin


def test_passes_before_any_response():
    check = TaoCheck(DOC, OTHER)
    assert check.passed is True
    assert check.request_origin == DOC
    assert "TaoCheck(" in repr(check)


@pytest.mark.parametrize("bad", ["https://doc.example/path", "doc.example", "ftp://doc.example"])
def test_bad_document_origin(bad):
    with pytest.raises(InvalidURL):
        TaoCheck(bad, OTHER)
