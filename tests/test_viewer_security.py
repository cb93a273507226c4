"""The viewer's two network guards: the Host check (no DNS rebinding) and viser reachable only through the gate."""

from __future__ import annotations

import http.client
import os
import socket
import threading

import pytest

from simrecon.compose.scenes import open_scene
from simrecon.viewer.gate import Gate, cookie_name

TOKEN = "s3cret-token"
WS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "viser-v1"}


def _status(port: int, path: str = "/", headers: dict | None = None) -> tuple[int, str]:
    """(status, first bytes of the body) of one raw request to 127.0.0.1:port; ``Host`` as given, if given."""
    head = {"Host": f"127.0.0.1:{port}", **(headers or {})}
    req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(req.encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        if data.startswith(b"HTTP/1.1 200"):  # some of the body, to tell viser's page apart
            s.settimeout(1.0)
            try:
                data += s.recv(4096)
            except OSError:
                pass
    if not data:
        return 0, ""  # closed without an answer: refused too
    line, _, rest = data.partition(b"\r\n")
    return int(line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode("latin-1", "replace")


def _tcp_listeners() -> set[int]:
    """Ports of this process's listening TCP sockets (its file descriptors, no psutil needed)."""
    ports = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            s = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if s.family in (socket.AF_INET, socket.AF_INET6) and s.type == socket.SOCK_STREAM and \
                    s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                ports.add(s.getsockname()[1])
        except OSError:
            pass
        finally:
            s.close()
    return ports


# ---------------------------------------------------------------------------------------------------------
# S4: the Host header must be a literal loopback name or the configured host, never a DNS answer
# ---------------------------------------------------------------------------------------------------------
def test_host_check_accepts_literals_only():
    from simrecon.viewer.gate import host_allowed

    for h in ("localhost", "localhost:7012", "127.0.0.1:7012", "127.3.4.5", "[::1]:7012", "[::1]", "LOCALHOST:1"):
        assert host_allowed(h, "127.0.0.1"), h
    # 'vm' resolves to 127.0.0.1 on many machines (/etc/hosts): exactly what a rebinding domain does
    for h in ("vm:7012", "vm", "rebind.example:7012", "evil.example", "", "localhost.evil.example:1",
              "127.0.0.1.evil.example", "::1", "[::1", "0.0.0.0:7012", "192.168.1.10:7012", "localhost:port"):
        assert not host_allowed(h, "127.0.0.1"), h
    assert host_allowed("vm:7012", "vm") and host_allowed("VM", "vm")  # the name the user gave to --host
    assert host_allowed("[::1]:7012", "::1")


def _ok_upstream(heads: list | None = None) -> socket.socket:
    """A listener that answers 200 to any request (a stand-in for viser); request heads go to ``heads``."""
    sock = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if heads is not None:
                    heads.append(data.decode("latin-1"))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    threading.Thread(target=serve, daemon=True).start()
    return sock


def test_gate_refuses_non_literal_host_names():
    up = _ok_upstream()
    gate = Gate("127.0.0.1", 0, up.getsockname()[1]).start()
    try:
        p = gate.port
        for host in (f"vm:{p}", f"rebind.example:{p}", "vm", f"localhost.:{p}"):
            assert _status(p, headers={"Host": host})[0] in (403, 421), host
        for host in (f"localhost:{p}", f"127.0.0.1:{p}", f"[::1]:{p}", "localhost"):
            assert _status(p, headers={"Host": host})[0] == 200, host
    finally:
        gate.stop()
        up.close()


def test_gate_checks_host_with_a_token_too_and_signs_what_it_forwards():
    heads: list[str] = []
    up = _ok_upstream(heads)
    gate = Gate("127.0.0.1", 0, up.getsockname()[1], token=TOKEN, upstream_secret="gate-secret").start()
    try:
        p = gate.port
        cookie = {"Cookie": f"{cookie_name(p)}={TOKEN}"}
        assert _status(p, headers={"Host": f"vm:{p}", **cookie})[0] == 403  # bound to loopback: Host checked
        assert heads == []
        assert _status(p, headers={**cookie, "X-Simrecon-Gate": "guess", "x-simrecon-gate ": "guess2"})[0] == 200
        assert len(heads) == 1
        sent = [ln for ln in heads[0].split("\r\n") if ln.lower().startswith("x-simrecon-gate")]
        assert sent == ["X-Simrecon-Gate: gate-secret"]  # the client's copies dropped, the gate's added
        assert heads[0].startswith("GET / HTTP/1.1\r\n") and heads[0].endswith("\r\n\r\n")
    finally:
        gate.stop()
        up.close()
    # bound to every address (a token is required there), remote users reach it by any name: the token guards
    remote = Gate("0.0.0.0", 0, 1, token=TOKEN)  # not started: tests stay on loopback
    head = f"GET / HTTP/1.1\r\nHost: gpu-box.lan:7007\r\nCookie: {cookie_name(0)}={TOKEN}\r\n\r\n".encode()
    assert remote._decide(head) == (None, "ok")


# ---------------------------------------------------------------------------------------------------------
# S5: nothing but the gate accepts a connection of the running viewer
# ---------------------------------------------------------------------------------------------------------
def test_only_the_gate_serves_the_viewer(synth_small):
    pytest.importorskip("viser")
    from simrecon.viewer.app import SceneViewer

    before = _tcp_listeners()
    viewer = SceneViewer(open_scene(synth_small), synth_small, port=0, token=TOKEN).start()
    try:
        gate = viewer.port
        others = (_tcp_listeners() - before) | {viewer.server.get_port()}
        others.discard(gate)
        assert others  # viser's own listener (today) or the port it reports
        for port in others:
            for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
                status, body = _status(port, headers={"Host": host})
                assert status != 200 and "<html" not in body.lower(), (port, status)
                assert _status(port, "/?token=" + TOKEN, {"Host": host})[0] != 200
                assert _status(port, headers={"Host": host, **WS})[0] != 101, port
        # through the gate, with the token, everything works: the page and the websocket
        assert _status(gate)[0] == 401
        assert _status(gate, headers=WS)[0] == 401
        cookie = {"Cookie": f"{cookie_name(gate)}={TOKEN}"}
        status, body = _status(gate, headers=cookie)
        assert status == 200 and "<html" in body.lower()
        assert _status(gate, headers={**WS, **cookie})[0] == 101
        # a client cannot smuggle its own copy of the gate's header past the gate
        assert _status(gate, headers={**cookie, "X-Simrecon-Gate": "guess"})[0] == 200
    finally:
        viewer.stop()


def test_view_command_without_token_still_serves_through_the_gate(synth_small):
    pytest.importorskip("viser")
    from simrecon.viewer.app import SceneViewer

    viewer = SceneViewer(open_scene(synth_small), synth_small, port=0).start()
    try:
        c = http.client.HTTPConnection("127.0.0.1", viewer.port, timeout=5)
        c.request("GET", "/")
        r = c.getresponse()
        assert r.status == 200 and b"<html" in r.read().lower()
        c.close()
        assert _status(viewer.port, headers=WS)[0] == 101
        assert _status(viewer.server.get_port())[0] != 200  # viser's port, even without a token
    finally:
        viewer.stop()
