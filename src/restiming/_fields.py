"""The tables the rest of restiming is derived from.

``STAMPS`` is the record's stamp slots (matching ``csrc/rt_ring.h``); ``PHASE_ORDER``
is the legal chronological order of the stamps as data: the tests check every entry
against it (tests/engine_checks.py, tests/test_entries.py). ``FIELDS`` maps every
entry attribute (snake_case) to its spec key (camelCase) or marks it an extension,
so ``to_json()``, the exports and the entry class come from one list.
https://w3c.github.io/resource-timing/#sec-performanceresourcetiming
"""

from __future__ import annotations

import struct

# Stamp slots of rt_record.stamp[], in layout order.
STAMPS = (
    "start_time",
    "fetch_start",
    "redirect_start",
    "redirect_end",
    "domain_lookup_start",
    "domain_lookup_end",
    "connect_start",
    "connect_end",
    "secure_connection_start",
    "request_start",
    "request_end",
    "first_interim_response_start",
    "final_response_headers_start",
    "response_end",
    "intended_start",
    "proxy_connect_start",
    "proxy_connect_end",
)
SLOT = {name: i for i, name in enumerate(STAMPS)}

# Chronological order of a fetch's stamps (Resource Timing §4.3 "processing model",
# plus our request_end). A stamp that is 0 (did not happen) is skipped; every other
# pair must be non-decreasing in this order. response_start is derived.
PHASE_ORDER = (
    "start_time",
    "redirect_start",
    "redirect_end",
    "fetch_start",
    "domain_lookup_start",
    "domain_lookup_end",
    "connect_start",
    "proxy_connect_start",
    "proxy_connect_end",
    "secure_connection_start",
    "connect_end",
    "request_start",
    "first_interim_response_start",
    "final_response_headers_start",
    "response_end",
)
# request_end sits between request_start and response_end; a server may answer
# before the request body is fully written, so it is not ordered against responses.
PARTIAL_ORDER = (("request_start", "request_end"), ("request_end", "response_end"))

# Stamps a failed Timing-Allow-Origin check (or a network error) zeroes.
# https://w3c.github.io/resource-timing/#dfn-mark-resource-timing (opaque shape)
OPAQUE_ZEROED_STAMPS = (
    "redirect_start",
    "redirect_end",
    "domain_lookup_start",
    "domain_lookup_end",
    "connect_start",
    "connect_end",
    "secure_connection_start",
    "request_start",
    "request_end",
    "first_interim_response_start",
    "final_response_headers_start",
    "proxy_connect_start",
    "proxy_connect_end",
)

# Strings stored after the URL, NUL-separated, in this order.
TEXTS = (
    "initiator_type",
    "next_hop_protocol",
    "content_type",
    "content_encoding",
    "delivery_type",
    "server_timing",
    "error",
    "error_message",
    "remote_address",
    "tls_version",
    "proxy",
)

# rt_record: 17 int64 stamps, 4 int64 sizes, u32 connection_id, u16 status,
# u16 flags, u32 url_len, u32 text_len = 184 bytes.
RECORD = struct.Struct("<17q4qIHHII")
assert RECORD.size == 184
# Byte offsets the consumer reads without unpacking a whole record (checked against
# the compiled layout in tests/test_native.py).
FLAGS_OFFSET = struct.calcsize("<17q4qIH")
URL_LEN_OFFSET = struct.calcsize("<17q4qIHH")

# (attribute, spec key or None for an extension, kind). Order = attribute order of
# the spec's IDL, then the extensions.
FIELDS = (
    ("name", "name", "str"),
    ("entry_type", "entryType", "str"),
    ("start_time", "startTime", "time"),
    ("duration", "duration", "float"),
    ("initiator_type", "initiatorType", "str"),
    ("delivery_type", "deliveryType", "str"),
    ("next_hop_protocol", "nextHopProtocol", "str"),
    ("worker_start", "workerStart", "time"),
    ("redirect_start", "redirectStart", "time"),
    ("redirect_end", "redirectEnd", "time"),
    ("fetch_start", "fetchStart", "time"),
    ("domain_lookup_start", "domainLookupStart", "time"),
    ("domain_lookup_end", "domainLookupEnd", "time"),
    ("connect_start", "connectStart", "time"),
    ("connect_end", "connectEnd", "time"),
    ("secure_connection_start", "secureConnectionStart", "time"),
    ("request_start", "requestStart", "time"),
    ("first_interim_response_start", "firstInterimResponseStart", "time"),
    ("final_response_headers_start", "finalResponseHeadersStart", "time"),
    ("response_start", "responseStart", "time"),
    ("response_end", "responseEnd", "time"),
    ("transfer_size", "transferSize", "int"),
    ("encoded_body_size", "encodedBodySize", "int"),
    ("decoded_body_size", "decodedBodySize", "int"),
    ("response_status", "responseStatus", "int"),
    ("render_blocking_status", "renderBlockingStatus", "str"),
    ("content_type", "contentType", "str"),
    ("content_encoding", "contentEncoding", "str"),
    ("server_timing", "serverTiming", "server_timing"),
    # Extensions: snake_case only, not in to_json(), present in the exports.
    ("error", None, "optstr"),
    ("error_message", None, "optstr"),
    ("connection_id", None, "int"),
    ("connection_reused", None, "bool"),
    ("remote_address", None, "str"),
    ("tls_version", None, "str"),
    ("request_end", None, "time"),
    ("bytes_sent", None, "int"),
    ("bytes_received", None, "int"),
    ("intended_start", None, "time"),
    # Fetches through a proxy: its address, and the CONNECT tunnel (request sent,
    # 2xx received) within connect_start..connect_end; 0 without a tunnel.
    ("proxy", None, "str"),
    ("proxy_connect_start", None, "time"),
    ("proxy_connect_end", None, "time"),
)
ATTRIBUTES = tuple(f[0] for f in FIELDS)
INDEX = {name: i for i, name in enumerate(ATTRIBUTES)}
SPEC_KEYS = tuple((name, key) for name, key, _ in FIELDS if key is not None)
EXTENSIONS = tuple(name for name, key, _ in FIELDS if key is None)

# Per-record overhead the ring adds to the body size of an entry (Fetch "transfer
# size" of a network fetch: encoded body plus a fixed 300-octet header allowance).
# https://w3c.github.io/resource-timing/#dom-performanceresourcetiming-transfersize
TRANSFER_SIZE_OVERHEAD = 300

ERROR_KINDS = (
    "dns",
    "connect",
    "tls",
    "timeout",
    "protocol",
    "reset",
    "too_many_redirects",
    "redirect_scheme",
    "limit",
    "cancelled",
)
