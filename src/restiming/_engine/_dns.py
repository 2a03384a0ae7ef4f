"""Name resolution: the loop's ``getaddrinfo`` behind a small TTL cache.

A resolver is any object with ``async def resolve(host, port)`` returning
``(family, sockaddr)`` pairs in the order to try. IP literals skip resolution. A
cache hit still goes through ``resolve()``, so the engine stamps the retrieval as
``domainLookupStart``/``domainLookupEnd`` like a browser's host cache does.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time

from restiming._exceptions import DNSError, InvalidRequest

__all__ = ["CachingResolver", "DEFAULT_DNS_TTL", "DEFAULT_DNS_CACHE_SIZE"]

#: Seconds a getaddrinfo answer is reused (getaddrinfo exposes no record TTL).
DEFAULT_DNS_TTL = 60.0
#: Host/port pairs kept; the oldest is evicted beyond this.
DEFAULT_DNS_CACHE_SIZE = 1024


@functools.lru_cache(maxsize=1024)
def _family(host: str) -> int:
    """AF_INET or AF_INET6 for an IP literal, 0 for a name (pure, so memoized)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return 0
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def _literal(host: str, port: int) -> list[tuple[int, tuple]] | None:
    family = _family(host)
    if not family:
        return None
    if family == socket.AF_INET6:
        return [(family, (host, port, 0, 0))]
    return [(family, (host, port))]


class CachingResolver:
    """The default resolver: ``loop.getaddrinfo`` with a per-(host, port) TTL cache."""

    def __init__(self, ttl: float = DEFAULT_DNS_TTL, max_entries: int = DEFAULT_DNS_CACHE_SIZE) -> None:
        if not ttl >= 0:
            raise InvalidRequest(f"ttl must be >= 0, got {ttl!r}")
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[tuple[str, int], tuple[float, list]] = {}

    async def resolve(self, host: str, port: int) -> list[tuple[int, tuple]]:
        literal = _literal(host, port)
        if literal is not None:
            return literal
        key = (host, port)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise DNSError(f"cannot resolve {host!r}: {exc}") from exc
        addrs = [(family, sockaddr) for family, _type, _proto, _canon, sockaddr in infos]
        if not addrs:
            raise DNSError(f"cannot resolve {host!r}: no addresses")
        if self.ttl:
            if len(self._cache) >= self.max_entries:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (now + self.ttl, addrs)
        return addrs

    def clear(self) -> None:
        self._cache.clear()
