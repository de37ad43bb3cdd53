"""The loopback is ours, and slow or greedy clients cannot take it from the allowed page.

* Every loopback address of the port: the agent answers on [::1]:PORT too (browsers try it
  first for ``localhost``); a program already there is ``port_in_use``; without IPv6
  loopback, ``localhost``/``[::1]`` are not the agent's own names.
* A bounded slow-client attack on loopback (silent sockets, half-sent heads, a trickled body,
  a flood of WebSockets from one origin): the allowed page is still served at once, and the
  slow sockets are cut within the head timeout. A few seconds in all.
"""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack

import pytest
import websockets.sync.client
from websockets.exceptions import InvalidStatus

from agent.api.limits import ClientLimits, ServerLimits
from agent.api.server import bind_sockets
from agent.errors import AgentError
from testrig.ports import free_port
from tests.api_support import ALLOWED, start_agent
from tests.hostile_support import HIS, NHSO_PAGE, live_agent


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_v6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")


# -- every loopback address -----------------------------------------------------------------
@needs_v6
def test_the_agent_answers_on_ipv6_loopback_too(tmp_path):
    with live_agent(tmp_path) as agent:
        answer = agent.get("/api/smartcard/terminals", host=f"[::1]:{agent.port}")
        v6 = agent.raw(b"GET /v1/status HTTP/1.1\r\nHost: localhost:%d\r\n"
                       b"Connection: close\r\n\r\n" % agent.port, host="::1")
        assert answer.status == 200 and v6.status == 200
        assert v6.json()["name"] == "thaicard-agent"


@needs_v6
def test_a_program_on_ipv6_loopback_is_port_in_use():
    with socket.socket(socket.AF_INET6) as other:
        other.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        other.bind(("::1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(AgentError) as info:
            bind_sockets(port)
    assert info.value.code == "port_in_use" and f"[::1]:{port}" in str(info.value)
    with socket.socket() as probe:                # and 127.0.0.1 was let go again
        probe.bind(("127.0.0.1", port))


def test_a_program_on_ipv4_loopback_is_port_in_use():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(AgentError) as info:
            bind_sockets(other.getsockname()[1])
    assert info.value.code == "port_in_use"


@pytest.mark.parametrize("host", ["localhost:{port}", "[::1]:{port}"])
async def test_without_ipv6_loopback_localhost_is_not_ours(aiohttp_client, host):
    agent = await start_agent(aiohttp_client, loopback_v6=False)
    resp = await agent.client.get("/v1/status", headers={"Host": host.format(port=agent.port)})
    assert resp.status == 421 and (await resp.json())["code"] == "host_not_allowed"
    origin = "http://" + host.format(port=agent.port)
    resp = await agent.client.get("/v1/status", headers={"Origin": origin})
    assert resp.status == 403 and (await resp.json())["code"] == "origin_not_allowed"
    resp = await agent.client.get("/v1/status", headers={"Origin": f"http://127.0.0.1:{agent.port}"})
    assert resp.status == 200


# -- slow and greedy clients ------------------------------------------------------------------
def closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
            # an error answer may come first (e.g. 408); the close must follow
    except TimeoutError:
        return False
    except ConnectionError:
        return True


@pytest.mark.timeout(30)
def test_slow_clients_are_cut_and_the_allowed_page_is_still_served(tmp_path):
    # The head timeout is longer than the page may wait: answered before any slow socket
    # timed out, the page did not wait for one.
    limits = ServerLimits(head_timeout=2.5, body_timeout=1.0, max_connections=48)
    with live_agent(tmp_path, limits=limits) as agent:
        started = time.monotonic()
        attackers: list[socket.socket] = []
        try:
            for i in range(120):                  # far more than the socket budget
                s = socket.create_connection(("127.0.0.1", agent.port))
                if i % 3 == 1:                    # a head that never ends
                    s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                elif i % 3 == 2:                  # a body that never comes
                    s.sendall(b"POST /v1/demo/card HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                              b"Content-Type: application/json\r\nContent-Length: 100\r\n"
                              b"\r\n{" % agent.port)
                attackers.append(s)
            # The page, while all of that is open: answered at once, not after a timeout.
            asked = time.monotonic()
            answer = agent.get("/api/smartcard/read?readImageFlag=true",
                               headers={"Origin": NHSO_PAGE})
            assert answer.status == 200 and answer.json()["pid"]
            assert time.monotonic() - asked < 1.5
            # Every slow socket is cut: by the cap at once, or by its timeout.
            cut = [closed_by_server(s, 4.0) for s in attackers]
            assert all(cut), f"{cut.count(False)} slow sockets still open"
        finally:
            for s in attackers:
                s.close()
        assert time.monotonic() - started < 10
        assert agent.alive() and not agent.log.tracebacks()


@pytest.mark.timeout(30)
def test_a_trickled_body_gets_408(tmp_path):
    limits = ServerLimits(body_timeout=0.5)
    with live_agent(tmp_path, limits=limits) as agent:
        with socket.create_connection(("127.0.0.1", agent.port)) as s:
            s.sendall(b"POST /v1/demo/card HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
                      % agent.port)
            s.settimeout(5)
            head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 408") and b"request_timeout" in head


@pytest.mark.timeout(30)
def test_one_origin_cannot_take_every_websocket(tmp_path):
    limits = ServerLimits(websockets_per_page=3)
    with live_agent(tmp_path, limits=limits) as agent:
        url = f"ws://127.0.0.1:{agent.port}/v1/events?photo=0"
        with ExitStack() as held:
            for _ in range(3):
                held.enter_context(websockets.sync.client.connect(url, origin=HIS))
            with pytest.raises(InvalidStatus) as info, \
                    websockets.sync.client.connect(url, origin=HIS):
                pass
            assert info.value.response.status_code == 429
            # Another caller (the status page, a local tool) still gets its own.
            with websockets.sync.client.connect(url) as other:
                assert other.recv(timeout=5)
        with websockets.sync.client.connect(url, origin=HIS) as again:   # freed on close
            assert again.recv(timeout=5)


def test_caps_count_per_caller():
    limits = ClientLimits(max_requests=2, max_websockets=1, max_local=5)
    with limits.hold("https://a.test", websocket=False) as first, \
            limits.hold("https://a.test", websocket=False) as second, \
            limits.hold("https://a.test", websocket=False) as third, \
            limits.hold("https://b.test", websocket=False) as other:
        assert (first, second, third, other) == (True, True, False, True)
    assert not limits.requests
    with limits.hold("https://a.test", websocket=True) as ws1, \
            limits.hold("https://a.test", websocket=True) as ws2:
        assert (ws1, ws2) == (True, False)


def test_the_socket_budget_follows_the_descriptor_limit():
    assert ServerLimits().connections(256) == 192          # macOS's default of 256
    assert ServerLimits().connections(1_000_000) == 1024
    assert ServerLimits(max_connections=10).connections(256) == 10
    assert ServerLimits().client_limits(256).max_local == 96   # local programs: half



@pytest.mark.timeout(30)
def test_a_head_trickled_byte_by_byte_is_cut_at_the_head_timeout(tmp_path):
    """Bytes that keep coming do not extend the deadline: the whole head must be there."""
    with live_agent(tmp_path, limits=ServerLimits(head_timeout=1.0)) as agent:
        head = b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
        with socket.create_connection(("127.0.0.1", agent.port)) as s:
            started = time.monotonic()
            cut_at = None
            for byte in head:
                try:
                    s.sendall(bytes([byte]))
                except OSError:
                    cut_at = time.monotonic() - started
                    break
                if closed_by_server(s, 0.05):
                    cut_at = time.monotonic() - started
                    break
            assert cut_at is not None and cut_at < 3.0, cut_at
        assert agent.alive()


@pytest.mark.timeout(30)
def test_a_caller_hanging_up_mid_body_leaves_no_traceback(tmp_path):
    with live_agent(tmp_path) as agent:
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", agent.port)) as s:
                s.sendall(b"POST /v1/demo/card HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
                          % agent.port)
                time.sleep(0.02)                  # the handler is reading the body now
        time.sleep(0.2)
        assert agent.alive() and not agent.log.tracebacks()
