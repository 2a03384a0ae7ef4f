"""A fetch that succeeded always returns its response and records its entry, however
large its strings (issue 8 finding 9, SPEC §4, README "Limits"): a 1 MB Server-Timing
header is capped with a count of the metrics dropped, never a lost response.
Runs on asyncio and uvloop, ``fetch()`` and ``stream()``.
"""

from __future__ import annotations

import pytest

import restiming
from restiming._limits import DROPPED_METRIC
from tests.engine_checks import make_client
from tests.peers.scripted import Send, response

METRICS = 20_000
HUGE_SERVER_TIMING = ", ".join(f"m{i};dur={i};desc=\"{'d' * 40}\"" for i in range(METRICS))


@pytest.mark.parametrize("mode", ["fetch", "stream"])
def test_huge_server_timing_keeps_the_response_and_the_entry(arun, scripted_server, mode):
    assert len(HUGE_SERVER_TIMING) > 1_000_000
    server = scripted_server({"/st": [Send(response(200, [("server-timing", HUGE_SERVER_TIMING)], b"ok"))]})

    async def main():
        perf = restiming.Performance()
        limits = restiming.Limits(max_header_bytes=4 << 20)
        async with make_client(perf, limits=limits) as client:
            if mode == "fetch":
                resp = await client.fetch(server.url("/st"))
                body = resp.body
            else:
                async with client.stream(server.url("/st")) as resp:
                    body = b"".join([chunk async for chunk in resp.aiter_bytes()])
        assert resp.status == 200 and body == b"ok"
        (entry,) = perf.get_entries()
        assert entry.response_status == 200 and entry.error is None
        timings = entry.server_timing
        assert timings[0].name == "m0" and timings[-1].name == DROPPED_METRIC
        assert int(timings[-1].description) == METRICS - (len(timings) - 1)

    arun(main)
