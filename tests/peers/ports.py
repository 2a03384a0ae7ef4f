"""Free TCP ports on the loopback interface.

Strategy: bind port 0, read the port the kernel chose, close. The port is only *probably*
free afterwards (another process can take it), so callers that start a server on it retry
on a bind failure; callers that want a refused connection get a port nobody listens on.
"""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
