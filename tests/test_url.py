"""URL parsing, redirect resolution and origin comparison (restiming._url)."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from restiming._exceptions import InvalidURL
from restiming._url import (
    MAX_URL_LENGTH, normalize_origin, parse_url, resolve_location, same_origin, serialize_ipv6,
)

# (url, scheme, host, port, target, origin, authority)
VALID = [
    ("http://example.com", "http", "example.com", 80, "/", "http://example.com", "example.com"),
    ("http://example.com/", "http", "example.com", 80, "/", "http://example.com", "example.com"),
    ("https://example.com/a/b?x=1&y=2", "https", "example.com", 443, "/a/b?x=1&y=2", "https://example.com", "example.com"),
    ("HTTP://EXAMPLE.COM/Path", "http", "example.com", 80, "/Path", "http://example.com", "example.com"),
    ("hTtPs://Example.Com:443/", "https", "example.com", 443, "/", "https://example.com", "example.com"),
    ("http://example.com:80/", "http", "example.com", 80, "/", "http://example.com", "example.com"),
    ("http://example.com:443/", "http", "example.com", 443, "/", "http://example.com:443", "example.com:443"),
    ("https://example.com:80/", "https", "example.com", 80, "/", "https://example.com:80", "example.com:80"),
    ("http://127.0.0.1:8080/x", "http", "127.0.0.1", 8080, "/x", "http://127.0.0.1:8080", "127.0.0.1:8080"),
    ("http://example.com:/", "http", "example.com", 80, "/", "http://example.com", "example.com"),
    ("http://example.com:0080/", "http", "example.com", 80, "/", "http://example.com", "example.com"),
    ("http://example.com:65535/", "http", "example.com", 65535, "/", "http://example.com:65535", "example.com:65535"),
    ("http://[::1]/", "http", "::1", 80, "/", "http://[::1]", "[::1]"),
    ("http://[::1]:8443/p", "http", "::1", 8443, "/p", "http://[::1]:8443", "[::1]:8443"),
    ("http://[2001:DB8:0:0:0:0:0:1]/", "http", "2001:db8::1", 80, "/", "http://[2001:db8::1]", "[2001:db8::1]"),
    ("http://[::ffff:1.2.3.4]/", "http", "::ffff:102:304", 80, "/", "http://[::ffff:102:304]", "[::ffff:102:304]"),
    ("http://example.com/p#frag", "http", "example.com", 80, "/p", "http://example.com", "example.com"),
    ("http://example.com?", "http", "example.com", 80, "/?", "http://example.com", "example.com"),
    ("http://example.com?q", "http", "example.com", 80, "/?q", "http://example.com", "example.com"),
    ("http://example.com/?a=1#x?y", "http", "example.com", 80, "/?a=1", "http://example.com", "example.com"),
    ("http://example.com/caf\u00e9?q=\u00fc", "http", "example.com", 80, "/caf%C3%A9?q=%C3%BC", "http://example.com", "example.com"),
    ('http://example.com/a"b<c>{d}`e?f"g\'h', "http", "example.com", 80, "/a%22b%3Cc%3E%7Bd%7D%60e?f%22g%27h", "http://example.com", "example.com"),
    ("http://example.com/%7Euser/%zz", "http", "example.com", 80, "/%7Euser/%zz", "http://example.com", "example.com"),
    ("http://example.com/a/./b/../c", "http", "example.com", 80, "/a/c", "http://example.com", "example.com"),
    ("http://example.com/a/b/..", "http", "example.com", 80, "/a/", "http://example.com", "example.com"),
    ("http://example.com/../../x", "http", "example.com", 80, "/x", "http://example.com", "example.com"),
    ("http://example.com\\a\\b?c\\d", "http", "example.com", 80, "/a/b?c\\d", "http://example.com", "example.com"),
    ("http://b\u00fccher.example/", "http", "xn--bcher-kva.example", 80, "/", "http://xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("http://B\u00dcCHER.example/", "http", "xn--bcher-kva.example", 80, "/", "http://xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("http://ex%61mple.com/", "http", "example.com", 80, "/", "http://example.com", "example.com"),
    ("http://example.com./", "http", "example.com.", 80, "/", "http://example.com.", "example.com."),
    ("http://my_host/", "http", "my_host", 80, "/", "http://my_host", "my_host"),
    ("http://0x7f.1/", "http", "127.0.0.1", 80, "/", "http://127.0.0.1", "127.0.0.1"),
    ("http://2130706433/", "http", "127.0.0.1", 80, "/", "http://127.0.0.1", "127.0.0.1"),
    ("http://0177.0.0.1/", "http", "127.0.0.1", 80, "/", "http://127.0.0.1", "127.0.0.1"),
    ("http://1.2.3.4./", "http", "1.2.3.4", 80, "/", "http://1.2.3.4", "1.2.3.4"),
    ("http://1.2.3.4x/", "http", "1.2.3.4x", 80, "/", "http://1.2.3.4x", "1.2.3.4x"),
]


@pytest.mark.parametrize(("url", "scheme", "host", "port", "target", "origin", "authority"), VALID)
def test_parse_valid(url, scheme, host, port, target, origin, authority):
    parsed = parse_url(url)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.target, parsed.origin, parsed.authority) == (
        scheme,
        host,
        port,
        target,
        origin,
        authority,
    )
    assert parsed.url == url
    assert parsed.target.isascii()


# The URL Standard's IPv6 serializer (cases from WPT's urltestdata.json and the standard's
# examples): hex pieces, lower case, the first longest run of 2+ zero pieces compressed,
# never a dotted IPv4 tail (Python 3.13's ipaddress prints "::ffff:1.2.3.4").
IPV6 = [
    ("[::ffff:1.2.3.4]", "::ffff:102:304"),
    ("[::ffff:192.168.0.1]", "::ffff:c0a8:1"),
    ("[::ffff:0:0]", "::ffff:0:0"),
    ("[0:0:0:0:0:0:13.1.68.3]", "::d01:4403"),
    ("[::127.0.0.1]", "::7f00:1"),
    ("[64:ff9b::1.2.3.4]", "64:ff9b::102:304"),
    ("[1:0::]", "1::"),
    ("[0::0]", "::"),
    ("[1:0:0:2:0:0:3:4]", "1::2:0:0:3:4"),
    ("[1:0:0:2:0:0:0:3]", "1:0:0:2::3"),
    ("[1:0:3:4:5:6:7:8]", "1:0:3:4:5:6:7:8"),
    ("[ABCD:EF01::]", "abcd:ef01::"),
    ("[0001:0002:0003:0004:0005:0006:0007:0008]", "1:2:3:4:5:6:7:8"),
]


@pytest.mark.parametrize(("bracketed", "host"), IPV6)
def test_ipv6_hosts_serialize_per_the_url_standard(bracketed, host):
    parsed = parse_url(f"http://{bracketed}:81/")
    assert parsed.host == host
    assert parsed.authority == f"[{host}]:81"
    assert parsed.origin == f"http://[{host}]:81"


@given(st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF, 0xABC]) | st.integers(0, 0xFFFF), min_size=8, max_size=8))
def test_ipv6_serializer_round_trips_and_compresses_the_first_longest_zero_run(pieces):
    packed = b"".join(p.to_bytes(2, "big") for p in pieces)
    text = serialize_ipv6(packed)
    assert ipaddress.IPv6Address(text).packed == packed
    assert "." not in text and text == text.lower() and text.count("::") <= 1
    runs = [(i, j - i) for i in range(8) for j in range(i + 2, 9) if not any(pieces[i:j])]
    if runs:
        start, length = max(runs, key=lambda r: (r[1], -r[0]))
        assert text == ":".join(f"{p:x}" for p in pieces[:start]) + "::" + ":".join(
            f"{p:x}" for p in pieces[start + length:])
    else:
        assert text == ":".join(f"{p:x}" for p in pieces)


@pytest.mark.parametrize(
    ("url", "fragment", "href"),
    [
        ("http://example.com", None, "http://example.com/"),
        ("http://example.com/#", "", "http://example.com/#"),
        ("http://Example.com:80/a?b#c", "c", "http://example.com/a?b#c"),
        ("https://[::1]:444/#x#y", "x#y", "https://[::1]:444/#x#y"),
    ],
)
def test_fragment_and_href(url, fragment, href):
    parsed = parse_url(url)
    assert parsed.fragment == fragment
    assert parsed.href == href


INVALID = [
    (None, "must be a str"),
    (b"http://example.com/", "must be a str"),
    ("", "empty"),
    ("example.com", "no scheme"),
    ("/relative/path", "no scheme"),
    ("://example.com", "no scheme"),
    ("ftp://example.com/", "unsupported scheme 'ftp'"),
    ("file:///etc/passwd", "unsupported scheme 'file'"),
    ("javascript:alert(1)", "unsupported scheme"),
    ("http:example.com", "missing '//'"),
    ("http:/example.com", "missing '//'"),
    ("http://", "missing host"),
    ("http:///path", "missing host"),
    ("http://:80/", "missing host"),
    ("http://example.com:port/", "not a number"),
    ("http://example.com:-1/", "not a number"),
    ("http://example.com:+80/", "not a number"),
    ("http://example.com:65536/", "out of range"),
    ("http://example.com:99999999999999999999/", "out of range"),
    ("http://example.com:8\u0661/", "not a number"),
    ("http://user:pass@example.com/", "credentials"),
    ("http://user@example.com/", "credentials"),
    ("http://exa mple.com/", "space"),
    ("http://example.com/a b", "space"),
    ("http://example.com/\r\nHost: evil", "control character"),
    ("http://example.com/\x00", "control character"),
    ("http://example.com/\t", "control character"),
    ("http://example.com/\x7f", "control character"),
    (" http://example.com/", "control character or space"),
    ("http://example.com/#a b", "space"),
    ("http://[::1/", "unterminated IPv6"),
    ("http://[::1]x/", "after the IPv6"),
    ("http://[::g]/", "not a valid IPv6"),
    ("http://[fe80::1%25eth0]/", "zone identifiers"),
    ("http://[127.0.0.1]/", "not a valid IPv6"),
    ("http://::1/", "missing host"),
    ("http://exa<mple.com/", "forbidden character"),
    ("http://exa^mple.com/", "forbidden character"),
    ("http://ex%2Fample.com/", "forbidden character"),
    ("http://ex%00ample.com/", "forbidden character"),
    ("http://ex%ffample.com/", "not valid UTF-8"),
    ("http://a..b\u00fc/", "IDNA"),
    ("http://" + "\u00fc" * 70 + ".com/", "IDNA"),
    ("http://1.2.3.256/", "not a valid IPv4"),
    ("http://1.2.3.4.5/", "not a valid IPv4"),
    ("http://1..2/", "not a valid IPv4"),
    ("http://09.1/", "not a valid IPv4"),
    ("http://0xg.1/", "not a valid IPv4"),
    ("http://4294967296/", "not a valid IPv4"),
    ("http://example.com/" + "a" * MAX_URL_LENGTH, f"longer than {MAX_URL_LENGTH}"),
]


@pytest.mark.parametrize(("url", "message"), INVALID)
def test_parse_invalid(url, message):
    with pytest.raises(InvalidURL) as info:
        parse_url(url)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_url_at_the_length_limit_is_accepted():
    url = "http://example.com/" + "a" * (MAX_URL_LENGTH - len("http://example.com/"))
    assert len(url) == MAX_URL_LENGTH
    assert parse_url(url).target.startswith("/aaa")


def test_long_invalid_url_message_is_truncated():
    with pytest.raises(InvalidURL) as info:
        parse_url("gopher://" + "x" * 500)
    assert len(str(info.value)) < 200


BASE = parse_url("http://a.example/b/c/d;p?q#frag")
NOFRAG = parse_url("http://a.example/b/c/d;p?q")

# (base, Location, resolved): RFC 3986 section 5.4 plus the Fetch fragment rule.
LOCATIONS = [
    (NOFRAG, "g", "http://a.example/b/c/g"),
    (NOFRAG, "./g", "http://a.example/b/c/g"),
    (NOFRAG, "g/", "http://a.example/b/c/g/"),
    (NOFRAG, "/g", "http://a.example/g"),
    (NOFRAG, "//g", "http://g"),
    (NOFRAG, "?y", "http://a.example/b/c/d;p?y"),
    (NOFRAG, "g?y", "http://a.example/b/c/g?y"),
    (NOFRAG, "#s", "http://a.example/b/c/d;p?q#s"),
    (NOFRAG, "..", "http://a.example/b/"),
    (NOFRAG, "../..", "http://a.example/"),
    (NOFRAG, "../../../g", "http://a.example/g"),
    (NOFRAG, "", "http://a.example/b/c/d;p?q"),
    (NOFRAG, "https://other.example:8443/x", "https://other.example:8443/x"),
    (BASE, "g", "http://a.example/b/c/g#frag"),
    (BASE, "g#s", "http://a.example/b/c/g#s"),
    (BASE, "g#", "http://a.example/b/c/g#"),
    (BASE, "", "http://a.example/b/c/d;p?q#frag"),
    (BASE, "https://other.example/", "https://other.example/#frag"),
    (BASE, "  /padded  ", "http://a.example/padded#frag"),
    (NOFRAG, "/a b", "http://a.example/a%20b"),
    (NOFRAG, "g?", "http://a.example/b/c/g?"),
    (NOFRAG, "?", "http://a.example/b/c/d;p?"),
    (BASE, "#a b", "http://a.example/b/c/d;p?q#a%20b"),
    (NOFRAG, "\\\\evil.example\\x", "http://evil.example/x"),
    (NOFRAG, "/x?a\\b", "http://a.example/x?a\\b"),
    (NOFRAG, "/caf\u00e9", "http://a.example/caf\u00e9"),
    # Not validated here: the caller turns a non-http(s) Location into a redirect error.
    (NOFRAG, "ftp://files.example/x", "ftp://files.example/x"),
    (NOFRAG, "mailto:someone@example.com", "mailto:someone@example.com"),
    (parse_url("HTTP://A.EXAMPLE:80/x/y"), "z", "http://a.example/x/z"),
]


@pytest.mark.parametrize(("base", "location", "expected"), LOCATIONS)
def test_resolve_location(base, location, expected):
    assert resolve_location(base, location) == expected


@pytest.mark.parametrize("location", ["/a\r\nSet-Cookie: x", "/a\x00", "\x00/a", "/a\tb", "/a\x7f", "/a\n", None])
def test_resolve_location_rejects_controls(location):
    with pytest.raises(InvalidURL):
        resolve_location(NOFRAG, location)


def test_resolved_locations_parse():
    for base, location, expected in LOCATIONS:
        if expected.startswith("http"):
            assert parse_url(resolve_location(base, location)).url == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("https://example.com", "https://example.com", True),
        ("https://example.com", "https://example.com:443", True),
        ("https://example.com", "HTTPS://EXAMPLE.COM", True),
        ("https://example.com", "https://example.com/", True),
        ("https://example.com", "http://example.com", False),
        ("https://example.com", "https://example.com:8443", False),
        ("https://example.com", "https://www.example.com", False),
        ("http://[::1]:80", "http://[0:0::1]", True),
        ("null", "null", False),
        ("null", "https://example.com", False),
        ("https://example.com", "not an origin", False),
        ("not an origin", "not an origin", True),
    ],
)
def test_same_origin(a, b, expected):
    assert same_origin(a, b) is expected
    assert same_origin(b, a) is expected


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://Example.com:443", "https://example.com"),
        ("http://example.com/", "http://example.com"),
        ("http://example.com:8080", "http://example.com:8080"),
        ("null", "null"),
    ],
)
def test_normalize_origin(origin, expected):
    assert normalize_origin(origin) == expected


@pytest.mark.parametrize(
    "origin", ["https://example.com/path", "https://example.com/?q", "https://example.com/#f", "https://example.com/.", "example.com", "ftp://x"]
)
def test_normalize_origin_rejects(origin):
    with pytest.raises(InvalidURL):
        normalize_origin(origin)


_url_soup = st.text(alphabet="hHtTpPsS:/\\.?#@[]%0123456789abcdefx\u00fc\u65e5 -_", max_size=40)
_urls = st.one_of(st.text(max_size=60), _url_soup, st.builds("http://{}".format, _url_soup))


@given(_urls)
def test_parse_url_raises_only_invalid_url(url):
    try:
        parsed = parse_url(url)
    except InvalidURL:
        return
    # What the engine sends must be acceptable to h11 as a request target and Host.
    assert re.fullmatch(r"[\x21-\x7e]+", parsed.target)
    assert parsed.target.startswith("/")
    assert re.fullmatch(r"[\x21-\x7e]+", parsed.authority)
    assert parse_url(parsed.href).origin == parsed.origin


@given(_urls)
def test_resolve_location_raises_only_invalid_url(location):
    try:
        resolve_location(BASE, location)
    except InvalidURL:
        pass
