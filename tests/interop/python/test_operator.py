"""What an operator watches and does: `/metrics` read with the Prometheus project's own
parser while real clients (`websockets`) connect, receive and leave, and the admin API
(list connections and topics, disconnect one) with a key of the `admin` role.

The server is the module's own (`quiet_server`), so every figure is this module's clients'.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Callable

import websockets

from interop_support import DEMO_KEY, OPERATOR_KEY, WAIT_SECONDS, TickwireServer, scrape, value

def request(server: TickwireServer, method: str, path: str, key: str | None = None, body: bytes | None = None):
    """`(status, parsed JSON body)` of one request."""
    req = urllib.request.Request(f"{server.http}{path}", method=method, data=body)
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=WAIT_SECONDS) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def price_updates(ws, n: int) -> int:
    """Reads until `n` `price_update`s arrived; returns how many."""
    seen = 0
    while seen < n:
        msg = json.loads(await asyncio.wait_for(ws.recv(), WAIT_SECONDS))
        seen += msg.get("type") == "price_update"
    return seen


def test_metrics_move_as_clients_connect_receive_and_leave(quiet_server: TickwireServer) -> None:
    server = quiet_server

    async def run() -> None:
        before = scrape(server)
        assert value(before, "tickwire_connections", endpoint="ws", format="json") == 0
        assert value(before, "process_resident_memory_bytes") > 0
        assert value(before, "process_open_fds") > 0
        assert value(before, "tickwire_adapter_up", adapter="synthetic", state="running") == 1

        clients = [await websockets.connect(f"{server.ws}/ws") for _ in range(3)]
        try:
            for ws in clients:
                await ws.send(json.dumps({"type": "subscribe", "symbols": ["btc", "eth"], "channels": ["price"]}))
            for ws in clients:
                await price_updates(ws, 3)
            during = scrape(server)
            assert value(during, "tickwire_connections", endpoint="ws", format="json") == 3
            assert value(during, "tickwire_connections_accepted_total", endpoint="ws", format="json") == 3
            delivered = value(during, "tickwire_messages_delivered_total", endpoint="ws", format="json")
            assert delivered >= 9, delivered
            assert value(during, "tickwire_delivered_bytes_total", endpoint="ws", format="json") > delivered * 50
            assert value(during, "tickwire_subscriptions", endpoint="ws") == 6
            assert value(during, "tickwire_topics", index="feeds") >= 2
            assert value(during, "tickwire_fanout_duration_seconds_count") > 0
            writes = value(during, "tickwire_publish_to_write_seconds_count")
            assert writes > 0
            assert value(during, "tickwire_publish_to_write_seconds_bucket", le="+Inf") == writes
            assert value(during, "tickwire_updates_ingested_total", adapter="synthetic") > value(
                before, "tickwire_updates_ingested_total", adapter="synthetic"
            )
            # Still receiving: the delivered count keeps moving.
            for ws in clients:
                await price_updates(ws, 2)
            later = scrape(server)
            assert value(later, "tickwire_messages_delivered_total", endpoint="ws", format="json") > delivered
        finally:
            for ws in clients:
                await ws.close()

        await until(
            lambda: value(scrape(server), "tickwire_connections", endpoint="ws", format="json") == 0,
            "the closed connections to leave the gauge",
        )
        after = scrape(server)
        assert value(after, "tickwire_connections_accepted_total", endpoint="ws", format="json") == 3
        assert value(after, "tickwire_subscriptions", endpoint="ws") == 0

    asyncio.run(run())


def test_refusals_and_publish_requests_are_counted(quiet_server: TickwireServer) -> None:
    server = quiet_server
    before = scrape(server)

    async def refused_stream() -> int:
        try:
            async with websockets.connect(f"{server.ws}/stream?api_key=not-a-key"):
                return 101
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code

    assert asyncio.run(refused_stream()) == 401
    tick = json.dumps([{"kind": "tick", "symbol": "BTC/USD", "exchange": "CRYPTO", "price": 67000.5}]).encode()
    assert request(server, "POST", "/api/v1/publish", None, tick)[0] == 401
    assert request(server, "POST", "/api/v1/publish", DEMO_KEY, tick)[0] == 403
    status, _ = request(server, "POST", "/api/v1/publish", OPERATOR_KEY, tick)
    assert status in (200, 202), status

    after = scrape(server)
    grew = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert grew("tickwire_auth_refusals_total", endpoint="stream", reason="unauthorized") == 1
    assert grew("tickwire_auth_refusals_total", endpoint="publish", reason="unauthorized") == 1
    assert grew("tickwire_auth_refusals_total", endpoint="publish", reason="forbidden") == 1
    assert grew("tickwire_publish_requests_total", status="401") == 1
    assert grew("tickwire_publish_requests_total", status="403") == 1
    assert grew("tickwire_publish_requests_total", status=str(status)) == 1
    assert grew("tickwire_updates_ingested_total", adapter="synthetic") >= 0


def test_admin_api_lists_connections_and_topics_and_disconnects_one(quiet_server: TickwireServer) -> None:
    server = quiet_server
    assert request(server, "GET", "/admin/connections")[0] == 401
    assert request(server, "GET", "/admin/connections", "wrong-key")[0] == 401
    status, body = request(server, "GET", "/admin/connections", DEMO_KEY)
    assert status == 403 and "admin" in body["error"], body

    async def run() -> None:
        public = [await websockets.connect(f"{server.ws}/ws") for _ in range(2)]
        keyed = await websockets.connect(f"{server.ws}/stream", extra_headers={"Authorization": f"Bearer {DEMO_KEY}"})
        try:
            for ws in public:
                await ws.send(json.dumps({"type": "subscribe", "symbols": ["btc"], "channels": ["price"]}))
                await price_updates(ws, 1)
            await keyed.send(json.dumps({"type": "subscribe", "symbols": ["BTC/USD", "ETH/USD"]}))

            def listed() -> list[dict]:
                status, body = request(server, "GET", "/admin/connections", OPERATOR_KEY)
                assert status == 200, body
                return body

            await until(lambda: any(c["endpoint"] == "stream" and c["subscriptions"] == 2 for c in listed()), "/stream's subscriptions")
            conns = listed()
            assert len(conns) == 3, conns
            ws_conns = [c for c in conns if c["endpoint"] == "ws"]
            local_ports = sorted(ws.local_address[1] for ws in public)
            assert sorted(int(c["remote"].rsplit(":", 1)[1]) for c in ws_conns) == local_ports, conns
            for c in ws_conns:
                assert c["format"] == "json" and c["key"] is None and c["subscriptions"] == 1, c
                assert 0 <= c["queue_depth"] <= c["queue_capacity"] and c["age_secs"] > 0, c
            (stream_conn,) = [c for c in conns if c["endpoint"] == "stream"]
            assert stream_conn["key"] == "demo", stream_conn

            status, topics = request(server, "GET", "/admin/topics", OPERATOR_KEY)
            assert status == 200
            btc = [t for t in topics if t["topic"] == "ws:price:CRYPTO:BTC/USD"]
            assert btc == [{"index": "feeds", "topic": "ws:price:CRYPTO:BTC/USD", "subscribers": 2}], topics
            counts = [t["subscribers"] for t in topics]
            assert counts == sorted(counts, reverse=True), topics

            # Disconnect the first /ws client: it gets 1008 and the reason; the other carries on.
            victim = next(c for c in ws_conns if int(c["remote"].rsplit(":", 1)[1]) == public[0].local_address[1])
            assert request(server, "DELETE", f"/admin/connections/{victim['id']}", DEMO_KEY)[0] == 403
            status, body = request(server, "DELETE", f"/admin/connections/{victim['id']}", OPERATOR_KEY)
            assert (status, body) == (202, {"disconnected": victim["id"]})
            try:
                while True:
                    await asyncio.wait_for(public[0].recv(), WAIT_SECONDS)
            except websockets.exceptions.ConnectionClosed as closed:
                assert closed.rcvd is not None, closed
                assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "disconnected by an operator")
            await price_updates(public[1], 2)
            await until(lambda: len(listed()) == 2, "the disconnected client to leave the list")
            assert request(server, "DELETE", f"/admin/connections/{victim['id']}", OPERATOR_KEY)[0] == 404
            assert request(server, "DELETE", "/admin/connections/nope", OPERATOR_KEY)[0] == 400
            assert request(server, "GET", "/admin/nothing", OPERATOR_KEY)[0] == 404
        finally:
            for ws in [*public, keyed]:
                await ws.close()

    asyncio.run(run())
    after = scrape(server)
    assert value(after, "tickwire_auth_refusals_total", endpoint="admin", reason="forbidden") >= 2
