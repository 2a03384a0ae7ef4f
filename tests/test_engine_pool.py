"""The connection pool, retries and name resolution through the engine (SPEC.md §3):
waiting for a pooled connection shows before requestStart, idle connections expire, a
GET on a keep-alive connection that proves dead is retried once on a new one (a POST is
not), a refused address gives way to the next, and DNS is stamped from the resolver,
custom or cached.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

import restiming
from tests.engine_checks import (
    StaticResolver,
    assert_fresh,
    assert_reused,
    assert_usable,
    expect_error,
    make_client,
)
from tests.peers.scripted import Close, Reset, Send, Sleep, response


# -- the pool -------------------------------------------------------------------------------

def test_pool_wait_shows_before_request_start(arun, scripted_server):
    server = scripted_server({"/slow": [Sleep(0.2), Send(response(200, body=b"slow"))]})

    async def main():
        perf = restiming.Performance()
        limits = restiming.Limits(max_connections_per_origin=1)
        async with make_client(perf, limits=limits) as client:
            a, b = await asyncio.gather(client.fetch(server.url("/slow")), client.fetch(server.url("/slow")))
        first, second = sorted((a.entry, b.entry), key=lambda e: e.request_start)
        assert_fresh(first, tls=False)
        assert_reused(second, tls=False)
        assert second.connection_id == first.connection_id
        # the second fetch started with the first, then waited for the connection
        assert abs(second.start_time - first.start_time) < 50
        assert second.request_start - second.connect_end >= 150
        assert second.request_start >= first.response_end
        assert server.connections == 1

    arun(main)


def test_keepalive_expiry_closes_idle_connections(arun, scripted_server):
    server = scripted_server(None)

    async def main():
        perf = restiming.Performance()
        limits = restiming.Limits(keepalive_expiry=0.1)
        async with make_client(perf, limits=limits) as client:
            first = (await client.fetch(server.url("/"))).entry
            await asyncio.sleep(0.25)
            second = (await client.fetch(server.url("/"))).entry
            assert client.open_connections == 1
        assert_fresh(second, tls=False)
        assert second.connection_id != first.connection_id
        assert server.connections == 2

    arun(main)


def test_connection_close_response_is_not_reused(arun, scripted_server):
    server = scripted_server({"/": [Send(response(200, [("connection", "close")], b"bye"))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            first = (await client.fetch(server.url("/"))).entry
            second = (await client.fetch(server.url("/"))).entry
            assert client.open_connections == 0
        assert_fresh(second, tls=False)
        assert second.connection_id != first.connection_id

    arun(main)


def _dies_on_second_request(end):
    def handler(request):
        if request.connection_index == 0 and request.request_index_on_connection == 1:
            return [end]  # the keep-alive race: closed as the request arrived, no response byte
        return [Send(response(200, body=b"conn%d" % request.connection_index))]
    return handler


@pytest.mark.parametrize("end", [Close(), Reset()], ids=["close", "reset"])
def test_idempotent_request_retried_on_dead_reused_connection(arun, scripted_server, end):
    server = scripted_server(_dies_on_second_request(end))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            first = (await client.fetch(server.url("/"))).entry
            retried = await client.fetch(server.url("/again"))
        e = retried.entry
        assert retried.status == 200 and retried.body == b"conn1"
        assert len(perf.get_entries()) == 2
        # the stamps describe the new attempt on a new connection
        assert_fresh(e, tls=False)
        assert e.connection_id != first.connection_id
        assert e.bytes_sent > len(server.requests[-1].raw)  # both attempts' bytes count
        assert [(r.connection_index, r.path) for r in server.requests] == [(0, "/"), (0, "/again"), (1, "/again")]

    arun(main)


def test_post_is_not_retried_on_dead_reused_connection(arun, scripted_server):
    server = scripted_server(_dies_on_second_request(Close()))

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            await client.fetch(server.url("/"))
            await expect_error(client, perf, server.url("/post"), restiming.ConnectionReset, "reset",
                               method="POST", body=b"once only")
            assert client.open_connections == 0
            await assert_usable(client, server.url("/"), b"conn1")
        assert [r.method for r in server.requests] == ["GET", "POST", "GET"]

    arun(main)


# -- addresses and DNS ----------------------------------------------------------------------

class _MarkingList(list):
    """Addresses that note the time the engine reached the second one."""

    def __init__(self, items, perf):
        super().__init__(items)
        self.perf = perf
        self.reached = 0.0

    def __iter__(self):
        for index, item in enumerate(list.__iter__(self)):
            if index == 1:
                self.reached = self.perf.now()
            yield item


def test_refused_address_then_good_one(arun, scripted_server, free_port):
    server = scripted_server(None)
    refused = free_port()

    async def main():
        perf = restiming.Performance()
        addresses = _MarkingList([(socket.AF_INET, ("127.0.0.1", refused)),
                                  (socket.AF_INET, ("127.0.0.1", server.port))], perf)
        resolver = StaticResolver(addresses)
        async with make_client(perf, resolver=resolver) as client:
            response_ = await client.fetch(f"http://app.test:{server.port}/")
        e = response_.entry
        assert response_.body == b"ok"
        assert resolver.calls == [("app.test", server.port)]
        assert_fresh(e, tls=False)
        assert e.remote_address == f"127.0.0.1:{server.port}"
        # connectStart belongs to the attempt that succeeded, after the refused one
        assert e.connect_start >= addresses.reached > e.domain_lookup_end
        assert server.requests[0].header("host") == f"app.test:{server.port}".encode()

    arun(main)


def test_custom_resolver_is_used_and_stamped(arun, scripted_server):
    server = scripted_server(None)

    async def main():
        perf = restiming.Performance()
        resolver = StaticResolver.loopback(server.port)
        async with make_client(perf, resolver=resolver) as client:
            e = (await client.fetch(f"http://service.internal:{server.port}/x")).entry
        assert resolver.calls == [("service.internal", server.port)]
        assert_fresh(e, tls=False)

    arun(main)


def test_default_resolver_cache_hit_still_stamps(arun, scripted_server):
    server = scripted_server({"/": [Send(response(200, [("connection", "close")], b"ok"))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            first = (await client.fetch(f"http://localhost:{server.port}/")).entry
            second = (await client.fetch(f"http://localhost:{server.port}/")).entry
        for e in (first, second):
            assert_fresh(e, tls=False)
        assert second.connection_id != first.connection_id
        # a cache hit: the lookup is a dictionary read, far below a millisecond
        assert second.domain_lookup_end - second.domain_lookup_start < 5

    arun(main)


@pytest.mark.parametrize("failure", ["raises", "empty", "garbage"])
def test_resolver_failure_is_a_dns_error(arun, scripted_server, failure):
    server = scripted_server(None)
    broken = {"raises": StaticResolver(error=OSError("no such host")),
              "empty": StaticResolver([]),
              "garbage": StaticResolver(["127.0.0.1"])}[failure]
    good = StaticResolver.loopback(server.port)

    class Resolver:
        async def resolve(self, host, port):
            return await (broken if host == "nowhere.test" else good).resolve(host, port)

    resolver = Resolver()

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, resolver=resolver) as client:
            exc = await expect_error(client, perf, "http://nowhere.test/", restiming.DNSError, "dns")
            assert client.open_connections == 0
            await assert_usable(client, f"http://somewhere.test:{server.port}/")
        assert not isinstance(exc, OSError)

    arun(main)


@pytest.mark.parametrize("pause", [0.0, 0.05], ids=["at-once", "after-a-pause"])
def test_server_closing_after_each_response(arun, scripted_server, pause):
    """The server closes without saying so: the next fetch opens a new connection,
    whether the pool saw the FIN first or the request found the connection dead."""
    server = scripted_server({"/": [Send(response(200, body=b"once")), Close()]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            entries = []
            for _ in range(3):
                entries.append((await client.fetch(server.url("/"))).entry)
                await asyncio.sleep(pause)
        for e in entries:
            assert_fresh(e, tls=False)
        assert len({e.connection_id for e in entries}) == 3
        assert server.connections == 3 and len(server.requests) == 3

    arun(main)


def test_per_origin_limit_under_concurrency(arun, scripted_server):
    server = scripted_server({"/": [Sleep(0.01), Send(response(200, body=b"c"))]})

    async def main():
        perf = restiming.Performance()
        limits = restiming.Limits(max_connections_per_origin=3)
        async with make_client(perf, limits=limits) as client:
            responses = await asyncio.gather(*(client.fetch(server.url("/")) for _ in range(30)))
            assert client.open_connections == 3
        entries = [r.entry for r in responses]
        assert all(r.status == 200 for r in responses)
        assert server.connections == 3
        assert sum(not e.connection_reused for e in entries) == 3
        for e in entries:
            if e.connection_reused:
                assert_reused(e, tls=False)
            else:
                assert_fresh(e, tls=False)
        assert len(perf.get_entries()) == 30

    arun(main)


def test_idle_connection_of_another_origin_is_evicted(arun, scripted_server):
    first = scripted_server(None)
    second = scripted_server(None)

    async def main():
        perf = restiming.Performance()
        async with make_client(perf, limits=restiming.Limits(max_connections=1)) as client:
            await assert_usable(client, first.url("/"))
            e = (await assert_usable(client, second.url("/"))).entry
            assert client.open_connections == 1
            again = (await assert_usable(client, first.url("/"))).entry
        assert_fresh(e, tls=False)
        assert_fresh(again, tls=False)  # the first origin's connection was evicted
        assert first.connections == 2 and second.connections == 1

    arun(main)


STRAY = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfake!"


@pytest.mark.parametrize("case", ["same-segment", "later-segment", "head-with-body"])
def test_stray_bytes_after_a_response_are_never_the_next_response(arun, scripted_server, case):
    """A keep-alive connection with unread bytes after a complete response is not reused:
    h11 would parse them as the answer to the next request (a response desync)."""
    actions = {"same-segment": [Send(response(200, body=b"ok") + STRAY)],
               "later-segment": [Send(response(200, body=b"ok")), Sleep(0.03), Send(STRAY)],
               "head-with-body": [Send(response(200, body=b"a body for a HEAD"))]}[case]
    server = scripted_server({"/first": actions, "/next": [Send(response(200, body=b"real"))]})

    async def main():
        perf = restiming.Performance()
        async with make_client(perf) as client:
            method = "HEAD" if case == "head-with-body" else "GET"
            first = await client.fetch(server.url("/first"), method=method)
            await asyncio.sleep(0.06)
            second = await client.fetch(server.url("/next"))
        assert first.status == 200
        assert second.body == b"real"
        assert_fresh(second.entry, tls=False)
        assert second.entry.connection_id != first.entry.connection_id

    arun(main)
