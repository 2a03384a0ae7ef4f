"""The network layer: the engine's own non-blocking sockets, connected and handed to
the loop's transports, with the connect phases stamped by the C clock.

``open_connection`` creates each socket itself (TCP_NODELAY), connects it with
``loop.sock_connect`` trying the resolved addresses in order, and hands it to
``loop.create_connection(sock=...)`` (with ``ssl=`` for TLS) so I/O runs on the
loop's transports: the same code on asyncio and on uvloop. The protocol object
(the HTTP layer) is given by the caller. ``warm_up`` makes a loop pay its one-time
costs of the connect path (uvloop imports the IDNA codec on its first connect: over
a millisecond) on a throwaway loopback connection before any fetch is timed.
This module stamps connect phases only; OSError/ssl errors are translated here.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import weakref

from restiming._binding import lib
from restiming._exceptions import ConnectError, ConnectionReset, TLSError
from restiming._fields import SLOT

__all__ = ["open_connection", "format_address", "translate_io", "warm_up"]

_now = lib.rt_now_ns
_CONNECT_START, _CONNECT_END = SLOT["connect_start"], SLOT["connect_end"]
_SECURE = SLOT["secure_connection_start"]
_warmed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> True, or the future of a warm-up under way


def format_address(sockaddr: tuple) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def translate_io(exc: BaseException, doing: str):
    """An OSError or ssl.SSLError as restiming's TLSError or ConnectionReset, with
    the original as its cause."""
    if isinstance(exc, ssl.SSLError):
        err = TLSError(f"TLS error while {doing}: {exc}")
    elif isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        err = ConnectionReset(f"connection reset by peer while {doing}")
    else:
        err = ConnectionReset(f"connection lost while {doing}: {exc}")
    err.__cause__ = exc
    return err


async def warm_up(loop: asyncio.AbstractEventLoop) -> None:
    """Once per loop: one loopback connection through sock_connect and
    create_connection, so their first-use costs never land in a fetch's stamps."""
    state = _warmed.get(loop)
    if state is True:
        return
    if state is not None:
        # Fetches that arrive during the warm-up wait for it and then go on in the
        # order they came (a pool slot goes to whoever asked first).
        await asyncio.shield(state)
        return
    done = _warmed[loop] = loop.create_future()
    try:
        await _connect_once(loop)
    finally:
        _warmed[loop] = True
        done.set_result(None)


async def _connect_once(loop) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock = None
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, listener.getsockname())
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=sock)
        sock = None  # the transport owns it
        transport.abort()
    except OSError:
        pass  # no loopback here: nothing to warm, the fetch will say what is wrong
    finally:
        if sock is not None:
            sock.close()
        listener.close()


async def open_connection(loop, protocol, stamps, addrs, host: str,
                          ssl_context: ssl.SSLContext | None, tunnel=None) -> None:
    """Connect ``protocol`` to the first address of ``addrs`` that accepts, then TLS.

    Stamps connect_start (per attempt, so the stamps describe the connection that
    succeeded), secure_connection_start and connect_end into ``stamps``; sets the
    protocol's ``remote_address``, ``tls_version`` and ``alpn``. Timeouts are the
    caller's (a deadline on this task). ``tunnel`` (``_proxy.Tunnel``): an async
    ``tunnel(loop, sock, stamps)`` run on the connected socket before TLS (CONNECT).
    """
    errors: list[str] = []
    last: BaseException | None = None
    for family, sockaddr in addrs:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        owned = True  # False once the loop's transport owns the socket
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stamps[_CONNECT_START] = _now()
            try:
                await loop.sock_connect(sock, sockaddr)
            except OSError as exc:
                sock.close()
                last = exc
                errors.append(f"{format_address(sockaddr)}: {_reason(exc)}")
                continue
            if tunnel is not None:
                await tunnel(loop, sock, stamps)
            if ssl_context is None:
                stamps[_CONNECT_END] = _now()
            else:
                stamps[_SECURE] = _now()
            # From here the loop owns the socket and closes it on failure itself. It
            # must not be closed here too: uvloop closes the fd in libuv, possibly
            # after we would have, when the number may already belong to another
            # connection (a double close that breaks an unrelated socket).
            owned = False
            try:
                await loop.create_connection(
                    lambda: protocol, sock=sock, ssl=ssl_context,
                    server_hostname=host if ssl_context is not None else None)
            except ssl.SSLError as exc:
                raise TLSError(f"TLS handshake with {host} failed: {exc.reason or exc}") from exc
            except OSError as exc:
                kind = TLSError if ssl_context is not None else ConnectError
                raise kind(f"connection to {host} failed while starting: {_reason(exc)}") from exc
            try:
                protocol.remote_address = format_address(sockaddr)
                if ssl_context is not None:
                    stamps[_CONNECT_END] = _now()
                    sslobj = protocol.transport.get_extra_info("ssl_object")
                    if sslobj is not None:
                        protocol.tls_version = sslobj.version() or ""
                        protocol.alpn = sslobj.selected_alpn_protocol() or None
            except BaseException:
                protocol.close()
                raise
            return
        except BaseException:
            if owned:
                sock.close()
            elif not isinstance(loop, asyncio.BaseEventLoop):
                # uvloop closed (or will close) the fd in libuv and usually detaches
                # this object itself, but not when a reset beats the end of
                # create_connection: then the object would close the number again when
                # garbage-collected, maybe under a newer connection. Detach it here.
                # (asyncio's own transports close this very object: nothing to do.)
                sock.detach()
            raise
    if len(errors) == 1:  # "address: reason"
        raise ConnectError(f"cannot connect to {errors[0]}") from last
    raise ConnectError(f"cannot connect to {host}: {'; '.join(errors) or 'no address'}") from last


def _reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return exc.strerror or str(exc)
