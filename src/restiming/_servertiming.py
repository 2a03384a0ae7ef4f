"""Server-Timing: the header parser and the ``PerformanceServerTiming`` value.

Implements https://w3c.github.io/server-timing/#the-server-timing-header-field. The field
value is first split into metrics as Fetch's "get, decode, and split" does (commas inside
quoted strings do not split); each metric is then read with the header's grammar,

    server-timing-metric = metric-name *( OWS ";" OWS server-timing-param )
    server-timing-param  = token OWS "=" OWS ( token / quoted-string )

recovering as the spec's prose requires: extraneous characters after the metric name or a
parameter value are skipped up to the next ``;``; a parameter's first occurrence wins,
even when it has no or an invalid value; unknown parameters are ignored; parameter names
are case-insensitive; ``dur`` is read with HTML's rules for parsing floating-point number
values and is 0 when that fails. A metric whose name is not a token is skipped.

Where the spec's step-by-step algorithm and the web-platform-tests cases
(server-timing/server_timing_header-parsing) disagree, this follows the tests, which pin
what browsers expose: ``desc=d1 d2`` is ``"d1"``, an unterminated quoted string is ``""``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from ._headers import split_list

__all__ = ["PerformanceServerTiming", "parse_server_timing", "format_server_timing"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")
_OWS = re.compile(r"[ \t]*")
_TO_SEMICOLON = re.compile(r'[^;"]*')
# HTML "rules for parsing floating-point number values": leading ASCII whitespace, a sign,
# digits with an optional fraction, an optional exponent; anything after is ignored.
_FLOAT = re.compile(r"[\t\n\f\r ]*([+-]?)(?:([0-9]+)(?:\.([0-9]+))?|\.([0-9]+))(?:[eE]([+-]?[0-9]+))?")


class PerformanceServerTiming:
    """One Server-Timing metric: ``name``, ``duration`` (ms by convention), ``description``.

    Immutable. ``name`` must be a non-empty token so that every instance can be written
    back into a header value by :func:`format_server_timing`.
    """

    __slots__ = ("name", "duration", "description")

    name: str
    duration: float
    description: str

    def __init__(self, name: str, duration: float = 0.0, description: str = "") -> None:
        if not isinstance(name, str) or not name or not _TOKEN.fullmatch(name):
            raise ValueError(f"Server-Timing metric name must be a non-empty token, not {name!r}")
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            raise TypeError(f"duration must be a number, not {type(duration).__name__}")
        if not math.isfinite(duration):
            raise ValueError(f"duration must be finite, not {duration!r}")
        if not isinstance(description, str):
            raise TypeError(f"description must be a str, not {type(description).__name__}")
        object.__setattr__(self, "name", name)
        # Adding 0.0 turns -0.0 into 0.0, as HTML's number parsing does.
        object.__setattr__(self, "duration", float(duration) + 0.0)
        object.__setattr__(self, "description", description)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"PerformanceServerTiming is immutable; cannot set {key!r}")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"PerformanceServerTiming is immutable; cannot delete {key!r}")

    def __reduce__(self) -> tuple[type, tuple[str, float, str]]:
        # The default slot-state pickling would call the refusing __setattr__.
        return (PerformanceServerTiming, (self.name, self.duration, self.description))

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "duration": self.duration, "description": self.description}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PerformanceServerTiming):
            return NotImplemented
        return (self.name, self.duration, self.description) == (other.name, other.duration, other.description)

    def __hash__(self) -> int:
        return hash((self.name, self.duration, self.description))

    def __repr__(self) -> str:
        return (
            f"PerformanceServerTiming(name={self.name!r}, duration={self.duration!r}, "
            f"description={self.description!r})"
        )


def parse_server_timing(value: str | bytes | None) -> tuple[PerformanceServerTiming, ...]:
    """Parse a (combined) Server-Timing field value into metrics, in header order."""
    if not value:
        return ()
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("latin-1")
    metrics = []
    for member in split_list(value):
        metric = _parse_metric(member)
        if metric is not None:
            metrics.append(metric)
    return tuple(metrics)


def _parse_metric(text: str) -> PerformanceServerTiming | None:
    end = len(text)
    metric_name = _TOKEN.match(text).group()
    if not metric_name:
        return None
    params: dict[str, str] = {}
    pos = _skip_extraneous(text, len(metric_name))
    while pos < end:  # text[pos] == ";"
        pos = _OWS.match(text, pos + 1).end()
        name_end = _TOKEN.match(text, pos).end()
        param = text[pos:name_end].lower()
        pos = _OWS.match(text, name_end).end()
        value = ""
        if param and pos < end and text[pos] == "=":
            pos = _OWS.match(text, pos + 1).end()
            if pos < end and text[pos] == '"':
                value, pos = _quoted_string(text, pos)
            else:
                value_end = _TOKEN.match(text, pos).end()
                value, pos = text[pos:value_end], value_end
        if param:
            params.setdefault(param, value)
        pos = _skip_extraneous(text, pos)
    return PerformanceServerTiming(metric_name, _duration(params.get("dur")), params.get("desc", ""))


def _skip_extraneous(text: str, pos: int) -> int:
    """Position of the next ``;`` outside a quoted string, or the end of ``text``."""
    end = len(text)
    while True:
        pos = _TO_SEMICOLON.match(text, pos).end()
        if pos >= end or text[pos] == ";":
            return pos
        pos = _quoted_string(text, pos)[1]


def _quoted_string(text: str, pos: int) -> tuple[str, int]:
    """Unescape the quoted string at ``pos``; ``""`` when it is not terminated."""
    end = len(text)
    out = []
    pos += 1
    while pos < end:
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":
            if pos + 1 >= end:
                break
            char = text[pos + 1]
            pos += 1
        out.append(char)
        pos += 1
    return "", end


def _duration(raw: str | None) -> float:
    if raw is None:
        return 0.0
    m = _FLOAT.match(raw)
    if not m:
        return 0.0
    sign, whole, fraction, bare_fraction, exponent = m.groups()
    if bare_fraction is not None:
        whole, fraction = "0", bare_fraction
    number = float(f"{sign}{whole}.{fraction or '0'}e{exponent or '0'}")
    # HTML treats a value that rounds to infinity as an error; -0 becomes 0.
    return number + 0.0 if math.isfinite(number) else 0.0


def _format_duration(duration: float) -> str:
    if duration.is_integer() and abs(duration) < 2**53:
        return str(int(duration))
    return repr(duration)


def _format_description(description: str) -> str:
    if _TOKEN.fullmatch(description):
        return description
    return '"' + description.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_server_timing(metrics: Iterable[PerformanceServerTiming]) -> str:
    """Serialize metrics into one Server-Timing value that parses back to the same metrics."""
    parts = []
    for metric in metrics:
        if not isinstance(metric, PerformanceServerTiming):
            raise TypeError(f"expected PerformanceServerTiming, not {type(metric).__name__}")
        part = metric.name
        if metric.duration:
            part += ";dur=" + _format_duration(metric.duration)
        if metric.description:
            part += ";desc=" + _format_description(metric.description)
        parts.append(part)
    return ", ".join(parts)
