"""Request header validation (restiming._headers)."""

from __future__ import annotations

import pytest

from restiming._exceptions import InvalidHeader
from restiming._headers import normalize_headers, split_list


class MultiDict:
    """Stands in for httpx.Headers / multidict: duplicates only via multi_items()."""

    def __init__(self, pairs):
        self._pairs = pairs

    def multi_items(self):
        return list(self._pairs)

    def items(self):
        return dict(self._pairs).items()


VALID = [
    (None, []),
    ({}, []),
    ([], []),
    ({"Accept": "text/html"}, [(b"Accept", b"text/html")]),
    ({b"X-A": b"1", "X-B": "2"}, [(b"X-A", b"1"), (b"X-B", b"2")]),
    ([("X-A", "1"), ("x-a", "2"), ("X-A", "3")], [(b"X-A", b"1"), (b"x-a", b"2"), (b"X-A", b"3")]),
    ((("a", "b"),), [(b"a", b"b")]),
    ([["a", "b"]], [(b"a", b"b")]),
    (MultiDict([("a", "1"), ("a", "2")]), [(b"a", b"1"), (b"a", b"2")]),
    ({"X": "  padded\t "}, [(b"X", b"padded")]),
    ({"X": "inner  \t space"}, [(b"X", b"inner  \t space")]),
    ({"X": ""}, [(b"X", b"")]),
    ({"X": "   "}, [(b"X", b"")]),
    ({"X": "caf\u00e9"}, [(b"X", b"caf\xe9")]),
    ({"X": b"\xff\x80 obs-text"}, [(b"X", b"\xff\x80 obs-text")]),
    ({"X": bytearray(b"ba")}, [(b"X", b"ba")]),
    ({"!#$%&'*+-.^_`|~09azAZ": "v"}, [(b"!#$%&'*+-.^_`|~09azAZ", b"v")]),
    ({"X": '"quoted", (comment); a=b'}, [(b"X", b'"quoted", (comment); a=b')]),
    (iter([("a", "b")]), [(b"a", b"b")]),
    ((pair for pair in [("g", "h")]), [(b"g", b"h")]),
]


@pytest.mark.parametrize(("headers", "expected"), VALID)
def test_normalize_valid(headers, expected):
    assert normalize_headers(headers) == expected


INVALID = [
    ("X: y", "mapping or a sequence"),
    (b"X: y", "mapping or a sequence"),
    (42, "mapping or a sequence of pairs"),
    ([("a",)], "not a (name, value) pair"),
    ([("a", "b", "c")], "not a (name, value) pair"),
    (["ab"], "not a (name, value) pair"),
    ([None], "not a (name, value) pair"),
    ({"": "v"}, "not an RFC 9110 token"),
    ({"X Y": "v"}, "not an RFC 9110 token"),
    ({"X:": "v"}, "not an RFC 9110 token"),
    ({"X\r\nEvil": "v"}, "not an RFC 9110 token"),
    ({"X\x00": "v"}, "not an RFC 9110 token"),
    ({"(x)": "v"}, "not an RFC 9110 token"),
    ({"caf\u00e9": "v"}, "not an RFC 9110 token"),
    ({"\u65e5": "v"}, "above U+00FF"),
    ({"X": "a\r\nEvil: 1"}, "control character"),
    ({"X": "a\nb"}, "control character"),
    ({"X": "a\rb"}, "control character"),
    ({"X": "a\x00b"}, "control character"),
    ({"X": "a\x01b"}, "control character"),
    ({"X": "a\x1fb"}, "control character"),
    ({"X": "a\x7fb"}, "control character"),
    ({"X": b"a\r\nb"}, "control character"),
    ({"X": "\u65e5\u672c"}, "above U+00FF"),
    ({"X": 5}, "must be str or bytes, not int"),
    ({"X": None}, "must be str or bytes, not NoneType"),
    ({5: "v"}, "must be str or bytes"),
]


@pytest.mark.parametrize(("headers", "message"), INVALID)
def test_normalize_invalid(headers, message):
    with pytest.raises(InvalidHeader) as info:
        normalize_headers(headers)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_error_names_the_header_truncated():
    long_name = "X" * 300 + " bad"
    with pytest.raises(InvalidHeader) as info:
        normalize_headers({long_name: "v"})
    text = str(info.value)
    assert "'XXXX" in text and "..." in text
    assert len(text) < 200


def test_error_names_the_header_for_bad_value():
    with pytest.raises(InvalidHeader, match="'X-Trace'"):
        normalize_headers([("Accept", "ok"), ("X-Trace", "a\r\nb")])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", [""]),
        ("a", ["a"]),
        ("a,b", ["a", "b"]),
        (" a ,\tb\t, c ", ["a", "b", "c"]),
        ("a,,b", ["a", "", "b"]),
        ("a,", ["a", ""]),
        ('"a,b",c', ['"a,b"', "c"]),
        ('x"a,b"y, z', ['x"a,b"y', "z"]),
        ('"a\\",b",c', ['"a\\",b"', "c"]),
        ('"unterminated, still', ['"unterminated, still']),
        ('"trailing backslash\\', ['"trailing backslash\\']),
        ("https://a.example, *", ["https://a.example", "*"]),
    ],
)
def test_split_list(value, expected):
    assert split_list(value) == expected
