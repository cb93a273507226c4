"""viser's own listener serves the gate only (docs/viewer.md, "Security").

viser listens on a TCP port of its own (``127.0.0.1:<ephemeral>``) and has no option to listen elsewhere
or to refuse a request. Left alone, that port would serve the page and the websocket to any local process,
and to a web page through DNS rebinding, token or not. So the viewer hooks viser's server, which is a
``websockets.asyncio.server.Server``: its ``process_request`` (called for every request, the websocket
handshake included, before viser's own handler) is wrapped by a check that the request carries
``GATE_HEADER`` with a secret that only this process knows and that the gate adds to every request it
forwards. Anything else is answered 403 and the connection is closed; viser never sees it.

When the hook cannot be installed (another viser or websockets layout), the viewer refuses to start
rather than serve an open port.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import http
import secrets
import socket
from dataclasses import dataclass

from .gate import GATE_HEADER

GUARD_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class UpstreamGuard:
    """The secret the gate must send (``Gate(upstream_secret=...)``) and the port it guards."""

    port: int
    secret: str


def _server_on(port: int):
    """The serving ``websockets.asyncio.server.Server`` listening on TCP ``port`` of this process, or None."""
    try:
        from websockets.asyncio.server import Server
    except ImportError:
        return None
    for obj in gc.get_objects():
        if not issubclass(type(obj), Server):  # type(): never ask a proxy object for its __class__
            continue
        listener = getattr(obj, "server", None)  # the asyncio.Server, set once it listens
        try:
            if listener is None or not listener.is_serving():
                continue
            if any(s.family in (socket.AF_INET, socket.AF_INET6) and s.getsockname()[1] == port
                   for s in listener.sockets):
                return obj
        except (OSError, AttributeError):
            continue
    return None


def _gated(process_request, secret: str):
    """``process_request`` behind the check of ``GATE_HEADER`` (constant-time; exactly one copy)."""
    expected = secret.encode("utf-8")

    def check(connection, request):
        given = request.headers.get_all(GATE_HEADER)
        if len(given) != 1 or not hmac.compare_digest(given[0].encode("utf-8", "replace"), expected):
            return connection.respond(http.HTTPStatus.FORBIDDEN, "simrecon view: open the viewer's own port\n")
        return process_request(connection, request) if process_request is not None else None

    return check


def guard_viser(port: int) -> UpstreamGuard:
    """Make viser's server on ``port`` answer only requests that carry a fresh secret; returns the secret.

    Raises ``ValueError`` (one line) when viser's server cannot be hooked: the viewer must not start then.
    """
    server = _server_on(port)
    loop = getattr(server, "loop", None)
    if server is None or not hasattr(server, "process_request") or not hasattr(server, "handlers") or \
            loop is None:
        raise ValueError("simrecon view: cannot restrict viser's internal port to the viewer's gate with this viser/"
                         "websockets version (needs websockets' asyncio server, websockets>=13); not serving")
    secret = secrets.token_urlsafe(32)

    async def install() -> None:
        # On viser's loop, so no request is being handled meanwhile: every connection accepted later reads the
        # new check; the ones accepted before it (in the moments since viser started listening, before the
        # gate existed, so none of them is the gate's) already hold the old one and are closed.
        server.process_request = _gated(server.process_request, secret)
        for connection in list(server.handlers):
            connection.transport.abort()

    try:
        asyncio.run_coroutine_threadsafe(install(), loop).result(GUARD_TIMEOUT_S)
    except TimeoutError:
        raise ValueError("simrecon view: viser's server did not answer; not serving") from None
    return UpstreamGuard(port, secret)
