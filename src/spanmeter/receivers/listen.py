"""Listening sockets of the receivers, and the one-line reason when a port cannot be had.

A busy port must fail at start, naming the endpoint and the config key that sets it: the HTTP
socket is bound here (uvicorn would log and exit the process itself), and gRPC's own
SO_REUSEPORT is turned off (`create_server`), which otherwise let a second collector share the
port silently and split the exports between two databases.
"""

from __future__ import annotations

import errno
import socket

from spanmeter.errors import ListenError


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (no SO_REUSEPORT); OSError when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def probe(host: str, port: int) -> OSError | None:
    """Why host:port cannot be bound right now (None: it can)."""
    try:
        bind(host, port).close()
    except OSError as error:
        return error
    return None


def listen_error(what: str, endpoint: str, key: str, error: OSError | None) -> ListenError:
    port = endpoint.rpartition(":")[2]
    host = endpoint.rpartition(":")[0].strip("[]")
    code = error.errno if error is not None else None
    if code == errno.EADDRINUSE:
        reason = f"port {port} is already in use by another process (another spanmeter?)"
    elif code == errno.EACCES:
        reason = f"not permitted to listen on port {port} (ports below 1024 need privileges)"
    elif code == errno.EADDRNOTAVAIL or isinstance(error, socket.gaierror):
        reason = f"{host} is not an address of this machine"
    elif error is not None:
        reason = error.strerror or str(error)
    else:
        reason = "the address cannot be bound"
    return ListenError(f"cannot listen for {what} on {endpoint}: {reason}; change {key} in the config (-c FILE)")
