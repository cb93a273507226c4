"""The viewer's one public port: a small HTTP/websocket gate in front of viser.

viser serves its page and its websocket on one port but offers no hook to refuse a request, so the
viewer runs viser on an ephemeral loopback port and puts this gate on the port the user asked for.
Every TCP connection starts with an HTTP request head (a page, an asset or the websocket upgrade);
the gate reads it, decides, and then either answers itself (401 / 403 / a redirect) or pipes
the connection to viser (the head plus the gate's secret header, then every byte untouched). viser
answers one request per connection (a page, an asset, or the upgrade to the websocket), so the head the
gate checked is the only request viser sees on that connection. So the page, the assets and the
websocket share one port (an SSH tunnel of that port is all a remote user needs), and the token is
checked before viser sees anything.

Token: ``http://host:port/?token=T`` is answered by a redirect to ``/`` that sets an HttpOnly cookie
(the browser then sends it with the assets and the websocket handshake, same origin); a request with
neither a valid ``token`` query parameter nor the cookie gets 401. Comparisons are constant-time.

Host: when the gate listens on a loopback address (always the case without a token) it serves only
requests whose ``Host`` is a literal loopback name (``localhost``, ``127.0.0.0/8``, ``[::1]``) or the
``--host`` the user gave, with or without a port. The name is never resolved: a DNS-rebinding domain
resolves to 127.0.0.1 exactly when it attacks, so a DNS answer proves nothing.

Upstream: viser's own listener must not serve anyone but the gate (``upstream.py``); the gate proves
itself with a per-process secret in the ``X-Simrecon-Gate`` header it adds to every request head it
forwards (a copy sent by the client is dropped first).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
import socket
import threading
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

MAX_HEAD = 64 * 1024
HEAD_TIMEOUT_S = 15.0
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")  # bind addresses (resolved anyway)
GATE_HEADER = "X-Simrecon-Gate"


def generate_token() -> str:
    """A fresh URL-safe token (128 bits)."""
    return secrets.token_urlsafe(16)


def is_loopback_host(host: str) -> bool:
    """True when the bind address ``host`` (a name or an address) only means this machine.

    Names are resolved: right for the address the viewer binds (resolved once, by this machine), never
    for a request's ``Host`` header (``host_allowed``)."""
    h = host.strip().strip("[]").lower()
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(h, None)
    except OSError:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def host_name(header: str) -> str | None:
    """The name of a ``Host`` header value (``name``, ``name:port``, ``[v6]``, ``[v6]:port``), lower case and
    without brackets; None when malformed (a bare IPv6 address, an empty name, a port that is not a number)."""
    h = header.strip().lower()
    if h.startswith("["):
        name, sep, rest = h[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name or None
    name, sep, port = h.partition(":")
    if sep and not port.isdigit():
        return None
    return name or None


def is_loopback_literal(name: str) -> bool:
    """``localhost``, an address of 127.0.0.0/8 or ``::1``, written out: no name is looked up."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(header: str, configured: str) -> bool:
    """Whether a request's ``Host`` names this viewer: a literal loopback name or address, or ``configured``
    (the ``--host`` the user gave), with or without a port. Never a DNS answer (DNS rebinding)."""
    name = host_name(header)
    if name is None:
        return False
    return is_loopback_literal(name) or name == configured.strip().strip("[]").lower()


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token (``ValueError``, one line)."""
    if not is_loopback_host(host) and not token:
        raise ValueError(f"--host {host}: binding to a non-loopback address needs --token (anyone who can reach "
                         "the port could otherwise edit scenarios and write files); or keep the default 127.0.0.1 "
                         "and use an SSH tunnel (docs/viewer.md)")


def cookie_name(port: int) -> str:
    return f"simrecon_view_{port}"


def _response(status: str, body: str, extra: dict[str, str] | None = None) -> bytes:
    data = body.encode("utf-8")
    head = [f"HTTP/1.1 {status}", "Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(data)}",
            "Cache-Control: no-store", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data


class Gate:
    """Listen on ``host:port`` and forward accepted connections to ``127.0.0.1:upstream_port``."""

    def __init__(self, host: str, port: int, upstream_port: int, token: str | None = None,
                 upstream_secret: str | None = None):
        check_bind(host, token)
        self.host, self.port, self.upstream_port, self.token = host, port, upstream_port, token
        self.upstream_secret = upstream_secret  # sent as GATE_HEADER with every forwarded request
        # Bound to loopback: every legitimate Host is loopback or --host itself. Bound elsewhere (a token is
        # then required) remote users may use any name of the machine, and the token is the guard.
        self.check_host = is_loopback_host(host)
        self.refused = 0  # requests answered 401/403 (tests, logs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> "Gate":
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)

            async def main() -> None:
                self._stopped = asyncio.Event()
                try:
                    self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                              limit=MAX_HEAD, reuse_address=True)
                except OSError as exc:
                    error.append(exc)
                    ready.set()
                    return
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()
                await self._stopped.wait()
                self._server.close()
                try:
                    await asyncio.wait_for(self._server.wait_closed(), 1.0)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - open pipes; closing anyway
                    pass

            try:
                loop.run_until_complete(main())
            finally:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                try:
                    loop.run_until_complete(asyncio.sleep(0))
                except Exception:  # noqa: BLE001
                    pass
                loop.close()

        self._thread = threading.Thread(target=run, name="simrecon-view-gate", daemon=True)
        self._thread.start()
        ready.wait(10.0)
        if error:
            exc = error[0]
            raise OSError(exc.errno, f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stopped.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=3.0)

    # -- one connection -------------------------------------------------------------------------------------
    def _decide(self, head: bytes) -> tuple[bytes | None, str]:
        """(response to send and close, or None to forward; reason for the log)."""
        try:
            text = head.decode("latin-1")
            request_line, *header_lines = text.split("\r\n")
            method, target, _version = request_line.split(" ", 2)
        except ValueError:
            return _response("400 Bad Request", "bad request\n"), "malformed"
        headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.setdefault(k.strip().lower(), v.strip())
        if self.check_host and not host_allowed(headers.get("host", ""), self.host):
            return _response("403 Forbidden", "simrecon view: only literal loopback host names (localhost, 127.0.0.1, "
                                              "[::1]) or --host are served (open http://127.0.0.1:PORT/ or tunnel "
                                              "the port)\n"), "host"
        if not self.token:
            return None, "ok"
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        given = query.get("token", [None])[0]
        cookie_ok = False
        if "cookie" in headers:
            jar = SimpleCookie()
            try:
                jar.load(headers["cookie"])
            except Exception:  # noqa: BLE001 - a malformed cookie is just no cookie
                jar = SimpleCookie()
            morsel = jar.get(cookie_name(self.port))
            cookie_ok = morsel is not None and hmac.compare_digest(morsel.value.encode(), self.token.encode())
        query_ok = given is not None and hmac.compare_digest(given.encode(), self.token.encode())
        upgrade = headers.get("upgrade", "").lower() == "websocket"
        if query_ok and not upgrade and method == "GET":
            rest = {k: v for k, v in query.items() if k != "token"}
            location = urlunsplit(("", "", parts.path or "/", urlencode(rest, doseq=True), ""))
            cookie = f"{cookie_name(self.port)}={self.token}; Path=/; HttpOnly; SameSite=Strict"
            return _response("303 See Other", "token accepted\n", {"Location": location, "Set-Cookie": cookie}), "login"
        if query_ok or cookie_ok:
            return None, "ok"
        return _response("401 Unauthorized", "simrecon view: this viewer needs its token: open the URL that "
                                             "'simrecon view' printed (http://HOST:PORT/?token=...)\n"), "token"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_writer = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
                return
            answer, reason = self._decide(head)
            if answer is not None:
                if reason in ("token", "host"):
                    self.refused += 1
                writer.write(answer)
                await writer.drain()
                return
            up_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            upstream_writer.write(self._forward_head(head))
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(up_reader, writer))
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    try:
                        w.close()
                    except Exception:  # noqa: BLE001
                        pass

    def _forward_head(self, head: bytes) -> bytes:
        """``head`` with the gate's secret header (any copy the client sent is dropped)."""
        if self.upstream_secret is None:
            return head
        lines = head[:-4].split(b"\r\n")
        name = GATE_HEADER.lower().encode("latin-1")
        kept = [lines[0]] + [ln for ln in lines[1:] if ln.split(b":", 1)[0].strip().lower() != name]
        kept.append(f"{GATE_HEADER}: {self.upstream_secret}".encode("latin-1"))
        return b"\r\n".join(kept) + b"\r\n\r\n"

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await src.read(1 << 16)
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                if dst.can_write_eof():
                    dst.write_eof()
            except (OSError, RuntimeError):
                pass
