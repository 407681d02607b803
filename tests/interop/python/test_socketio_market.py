"""Seed 003's Socket.IO channel, the `/market` namespace, driven by the Python Socket.IO
client (`python-socketio`) over each transport: the greeting, the key in the handshake's
`auth` or in `Authorization`, refusals as `connect_error` with a reason, and the heartbeat
the seed configures (a ping every 5 s, 10 s to answer), which closes a client that stops
answering.
"""

from __future__ import annotations

import json
import queue
import time

import pytest
import requests
import socketio
import websocket

from interop_support import DEMO_KEY, WAIT_SECONDS, TickwireServer, scrape, value


def connect(server: TickwireServer, transports: list[str], **kwargs) -> tuple[socketio.Client, queue.Queue]:
    """A client connected to `/market`, and the queue of the events it received."""
    client = socketio.Client(reconnection=False)
    events: queue.Queue = queue.Queue()
    client.on("connected", lambda data: events.put(("connected", data)), namespace="/market")
    client.connect(
        server.http,
        namespaces=["/market"],
        transports=transports,
        wait_timeout=WAIT_SECONDS,
        **kwargs,
    )
    return client, events


def another_client_is_greeted(server: TickwireServer) -> None:
    """The server carries on: a new client joins `/market` and is greeted."""
    other, events = connect(server, ["websocket"], auth={"api_key": DEMO_KEY})
    try:
        assert events.get(timeout=WAIT_SECONDS)[0] == "connected"
    finally:
        other.disconnect()


@pytest.mark.parametrize("transports", [["websocket"], ["polling"], ["polling", "websocket"]])
def test_a_client_with_the_key_in_auth_is_greeted(server: TickwireServer, transports: list[str]) -> None:
    client, events = connect(server, transports, auth={"api_key": DEMO_KEY})
    try:
        assert events.get(timeout=WAIT_SECONDS) == ("connected", {"status": "ok"})
        if transports == ["polling", "websocket"]:
            # The client upgrades from long-polling to a WebSocket.
            deadline = time.monotonic() + WAIT_SECONDS
            while client.transport() != "websocket":
                assert time.monotonic() < deadline, "no upgrade to websocket"
                time.sleep(0.05)
        else:
            assert client.transport() == transports[0]
    finally:
        client.disconnect()


def test_the_key_may_come_in_authorization(server: TickwireServer) -> None:
    client, events = connect(server, ["websocket"], headers={"Authorization": f"Bearer {DEMO_KEY}"})
    try:
        assert events.get(timeout=WAIT_SECONDS) == ("connected", {"status": "ok"})
    finally:
        client.disconnect()


@pytest.mark.parametrize(
    ("auth", "reason"),
    [({"api_key": "not-a-key"}, "invalid api key"), (None, "missing api key")],
)
def test_a_refused_client_gets_connect_error_with_the_reason(
    server: TickwireServer, auth: dict | None, reason: str
) -> None:
    client = socketio.Client(reconnection=False)
    errors: queue.Queue = queue.Queue()
    client.on("connect_error", lambda data: errors.put(data), namespace="/market")
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(
            server.http, namespaces=["/market"], transports=["websocket"], auth=auth, wait_timeout=WAIT_SECONDS
        )
    error = errors.get(timeout=WAIT_SECONDS)
    assert reason in error["message"], error
    # The server carries on: another client is greeted.
    another_client_is_greeted(server)


def test_the_handshake_gives_the_seeds_heartbeat(server: TickwireServer) -> None:
    resp = requests.get(f"{server.http}/socket.io/", params={"EIO": "4", "transport": "polling"}, timeout=WAIT_SECONDS)
    assert resp.status_code == 200
    assert resp.text.startswith("0"), resp.text
    handshake = json.loads(resp.text[1:])
    assert (handshake["pingInterval"], handshake["pingTimeout"]) == (5000, 10000), handshake
    assert "websocket" in handshake["upgrades"]
    # A WebSocket opened as the transport (the gateway's own session) says the same, with no
    # upgrade to offer.
    ws = websocket.create_connection(f"{server.ws}/socket.io/?EIO=4&transport=websocket", timeout=WAIT_SECONDS)
    try:
        opened = ws.recv()
        assert opened.startswith("0"), opened
        handshake = json.loads(opened[1:])
        assert (handshake["pingInterval"], handshake["pingTimeout"]) == (5000, 10000), handshake
        assert handshake["upgrades"] == [] and handshake["sid"], handshake
    finally:
        ws.close()


@pytest.mark.parametrize(
    ("send", "reason"),
    [
        (lambda ws: ws.send_binary(b"\x04hello"), "binary packets are not taken here"),
        (lambda ws: ws.send("9"), "unknown Engine.IO packet type"),
        (lambda ws: ws.send("4x"), "unknown Socket.IO packet type"),
        (lambda ws: ws.send('451-/market,["subscribe",{"_placeholder":true,"num":0}]'), "binary Socket.IO packets"),
        (lambda ws: ws.send('42/market,{"not":"an array"}'), "not a JSON array"),
    ],
)
def test_bad_input_on_a_websocket_session_closes_it_with_the_reason(
    server: TickwireServer, send, reason: str
) -> None:
    """What a `/market` session cannot read closes it with 1003 and a reason the log repeats;
    the server carries on."""
    ws = websocket.create_connection(f"{server.ws}/socket.io/?EIO=4&transport=websocket", timeout=WAIT_SECONDS)
    try:
        assert next_packet(ws).startswith("0")
        ws.send("40/market," + json.dumps({"api_key": DEMO_KEY}))
        assert next_packet(ws).startswith("40/market,")
        send(ws)
        while True:
            opcode, frame = ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
        code = int.from_bytes(frame[:2], "big")
        assert (code, reason in frame[2:].decode()) == (1003, True), (code, frame)
        assert reason in server.log_tail(50)
    finally:
        ws.close()
    another_client_is_greeted(server)


def test_a_namespace_other_than_market_is_refused_and_the_session_carries_on(server: TickwireServer) -> None:
    ws = websocket.create_connection(f"{server.ws}/socket.io/?EIO=4&transport=websocket", timeout=WAIT_SECONDS)
    try:
        assert next_packet(ws).startswith("0")
        ws.send("40")
        assert next_packet(ws) == '44{"message":"Invalid namespace"}'
        ws.send('40/admin,{}')
        assert next_packet(ws) == '44/admin,{"message":"Invalid namespace"}'
        # An event before joining is not answered; then the namespace is joined as usual.
        ws.send('42/market,1["get_ltp",{"symbol":"BTC/USD","exchange":"CRYPTO"}]')
        ws.send("40/market," + json.dumps({"api_key": DEMO_KEY}))
        assert next_packet(ws).startswith("40/market,")
        assert next_packet(ws) == '42/market,["connected",{"status":"ok"}]'
        ws.send('42/market,2["get_ltp",{"symbol":"","exchange":"CRYPTO"}]')
        reply = next_packet(ws)
        assert reply.startswith("43/market,2["), reply
        assert json.loads(reply[len("43/market,2"):])[0]["status"] == "error", reply
    finally:
        ws.close()


def test_a_client_that_stops_answering_pings_is_closed(server: TickwireServer) -> None:
    """An Engine.IO client that reads but never answers a ping is closed within the ping
    interval plus the timeout (15 s), not held."""
    ws = websocket.create_connection(
        f"{server.ws}/socket.io/?EIO=4&transport=websocket", timeout=WAIT_SECONDS + 10
    )
    opened = time.monotonic()
    try:
        assert ws.recv().startswith("0")  # the Engine.IO open packet
        pings = 0
        while True:
            try:
                frame = ws.recv()
            except websocket.WebSocketConnectionClosedException:
                break
            if frame == "":
                break
            pings += frame == "2"
        elapsed = time.monotonic() - opened
        assert pings >= 1, "no ping before the close"
        assert 10 <= elapsed <= 15 + 5, elapsed
    finally:
        ws.close()


@pytest.mark.parametrize(("event", "mode"), [("get_ltp", "LTP"), ("get_quote", "Quote"), ("get_depth", "Depth")])
def test_polls_answer_from_the_cache_through_the_ack(server: TickwireServer, event: str, mode: str) -> None:
    client, events = connect(server, ["websocket"], auth={"api_key": DEMO_KEY})
    try:
        events.get(timeout=WAIT_SECONDS)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            reply = client.call(event, {"symbol": "RELIANCE", "exchange": "NSE"}, namespace="/market", timeout=WAIT_SECONDS)
            if reply["status"] == "success" or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # the synthetic market's first tick of RELIANCE, bounded by WAIT_SECONDS
        assert reply["status"] == "success", reply
        data = reply["data"]
        assert data["type"] == "market_data" and data["symbol"] == "RELIANCE" and data["exchange"] == "NSE", data
        assert data["data"]["ltp"] > 0, data
        if mode == "Depth":
            assert "depth" in data["data"], data
    finally:
        client.disconnect()


def test_a_poll_without_ack_is_answered_by_an_event(server: TickwireServer) -> None:
    client, events = connect(server, ["polling"], auth={"api_key": DEMO_KEY})
    client.on("ltp", lambda data: events.put(("ltp", data)), namespace="/market")
    try:
        events.get(timeout=WAIT_SECONDS)
        client.emit("get_ltp", {"symbol": "BTC/USD", "exchange": "CRYPTO"}, namespace="/market")
        name, reply = events.get(timeout=WAIT_SECONDS)
        assert name == "ltp" and reply["status"] == "success", reply
        assert reply["data"]["symbol"] == "BTC/USD"
    finally:
        client.disconnect()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"symbol": "RELIANCE"}, "exchange"),
        ("not an object", "symbol"),
        ({"symbol": "NOPE", "exchange": "NSE"}, "no ltp data for"),
        ({"symbol": "", "exchange": "NSE"}, "Invalid symbol: empty"),
        ({"symbol": "RELIANCE", "exchange": "NSE", "depth": 7}, "depth must be 5, 20 or 30"),
    ],
)
def test_a_bad_poll_gets_an_error_and_the_connection_carries_on(
    server: TickwireServer, payload: object, message: str
) -> None:
    client, events = connect(server, ["websocket"], auth={"api_key": DEMO_KEY})
    try:
        events.get(timeout=WAIT_SECONDS)
        reply = client.call("get_ltp", payload, namespace="/market", timeout=WAIT_SECONDS)
        assert reply["status"] == "error" and message in reply["message"], reply
        # Still connected and served.
        again = client.call("get_ltp", {"symbol": "BTC/USD", "exchange": "CRYPTO"}, namespace="/market", timeout=WAIT_SECONDS)
        assert again["status"] == "success", again
    finally:
        client.disconnect()


def market_client(server: TickwireServer, transports: list[str]) -> tuple[socketio.Client, queue.Queue]:
    """A greeted `/market` client whose `market_data` events are queued."""
    client = socketio.Client(reconnection=False)
    events: queue.Queue = queue.Queue()
    client.on("connected", lambda data: events.put(("connected", data)), namespace="/market")
    client.on("market_data", lambda data: events.put(("market_data", data)), namespace="/market")
    client.on("subscribed", lambda data: events.put(("subscribed", data)), namespace="/market")
    client.connect(
        server.http,
        namespaces=["/market"],
        transports=transports,
        auth={"api_key": DEMO_KEY},
        wait_timeout=WAIT_SECONDS,
    )
    assert events.get(timeout=WAIT_SECONDS)[0] == "connected"
    return client, events


def next_market_data(events: queue.Queue) -> dict:
    while True:
        name, data = events.get(timeout=WAIT_SECONDS)
        if name == "market_data":
            return data


@pytest.mark.parametrize(
    ("mode", "transports"),
    [("LTP", ["websocket"]), ("Quote", ["polling"]), ("Depth", ["polling", "websocket"])],
)
def test_subscribe_streams_market_data_with_a_snapshot_first(
    server: TickwireServer, mode: str, transports: list[str]
) -> None:
    client, events = market_client(server, transports)
    try:
        # The value is known (the cache has it) before the client subscribes.
        deadline = time.monotonic() + WAIT_SECONDS
        while client.call("get_ltp", {"symbol": "BTC/USD", "exchange": "CRYPTO"}, namespace="/market")["status"] != "success":
            assert time.monotonic() < deadline
            time.sleep(0.1)  # the synthetic market's first BTC tick, bounded by WAIT_SECONDS
        reply = client.call(
            "subscribe",
            {"symbols": [{"symbol": "BTC/USD", "exchange": "CRYPTO"}, {"symbol": "", "exchange": "CRYPTO"}], "mode": mode},
            namespace="/market",
            timeout=WAIT_SECONDS,
        )
        assert reply["status"] == "partial" and reply["mode"] == mode, reply
        assert reply["subscribed"] == [{"symbol": "BTC/USD", "exchange": "CRYPTO"}], reply
        assert reply["refused"][0]["message"] == "Invalid symbol: empty", reply
        # The snapshot, then live updates, all in the mode asked for.
        first = next_market_data(events)
        seen = [first] + [next_market_data(events) for _ in range(3)]
        for msg in seen:
            assert msg["type"] == "market_data" and msg["symbol"] == "BTC/USD", msg
            assert msg["data"]["ltp"] > 0, msg
            if mode == "Depth":
                assert "depth" in msg["data"], msg
        # Unsubscribe: the stream stops (nothing but what was already on its way).
        reply = client.call(
            "unsubscribe", {"symbols": [{"symbol": "BTC/USD", "exchange": "CRYPTO"}], "mode": mode}, namespace="/market"
        )
        assert reply["status"] == "success", reply
        time.sleep(0.5)  # what was in flight at the unsubscribe arrives within this
        while not events.empty():
            events.get_nowait()
        with pytest.raises(queue.Empty):
            next_data = events.get(timeout=2.0)
            assert next_data[0] != "market_data", next_data
            raise queue.Empty
    finally:
        client.disconnect()


def test_two_members_of_a_room_receive_the_same_messages(server: TickwireServer) -> None:
    a, a_events = market_client(server, ["websocket"])
    b, b_events = market_client(server, ["polling"])
    try:
        for client in (a, b):
            reply = client.call(
                "subscribe", {"symbols": [{"symbol": "ETH/USD", "exchange": "CRYPTO"}], "mode": "Quote"}, namespace="/market"
            )
            assert reply["status"] == "success", reply
        # The room's live updates after b joined (past b's snapshot) reach a too, the same.
        b_live = [next_market_data(b_events) for _ in range(3)][1:]
        a_seen: list[dict] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while not all(msg in a_seen for msg in b_live):
            assert time.monotonic() < deadline, (b_live, a_seen)
            a_seen.append(next_market_data(a_events))
    finally:
        a.disconnect()
        b.disconnect()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"symbols": [{"symbol": "BTC/USD", "exchange": "CRYPTO"}], "mode": "Trades"}, "unknown mode"),
        ({"symbols": "BTC/USD"}, "subscribe takes"),
        ("nonsense", "subscribe takes"),
        ({"symbols": [{"symbol": "BTC/USD", "exchange": "CRYPTO"}], "mode": "Depth", "depth": 7}, "depth must be"),
    ],
)
def test_a_bad_subscribe_gets_an_error_and_the_connection_carries_on(
    server: TickwireServer, payload: object, message: str
) -> None:
    client, events = market_client(server, ["websocket"])
    try:
        reply = client.call("subscribe", payload, namespace="/market", timeout=WAIT_SECONDS)
        assert reply["status"] == "error" and message in reply["message"], reply
        ok = client.call(
            "subscribe", {"symbols": [{"symbol": "BTC/USD", "exchange": "CRYPTO"}], "mode": "LTP"}, namespace="/market"
        )
        assert ok["status"] == "success", ok
        assert next_market_data(events)["symbol"] == "BTC/USD"
    finally:
        client.disconnect()


def test_a_subscribe_without_ack_is_answered_by_an_event(server: TickwireServer) -> None:
    client, events = market_client(server, ["polling"])
    try:
        client.emit("subscribe", {"symbols": [{"symbol": "SOL/USD", "exchange": "CRYPTO"}]}, namespace="/market")
        while True:
            name, data = events.get(timeout=WAIT_SECONDS)
            if name == "subscribed":
                break
        assert data["status"] == "success" and data["mode"] == "Quote", data
        assert next_market_data(events)["symbol"] == "SOL/USD"
    finally:
        client.disconnect()


LIMITED_KEY = "tickwire-sio-limited-key"
LIMITED_CONFIG = f"""
[[api_keys]]
name = "sio-limited"
key = "{LIMITED_KEY}"
max_connections = 2
rate_per_minute = 4
"""


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory):
    srv = TickwireServer(tmp_path_factory.mktemp("tickwire-server-sio-limits"), extra_config=LIMITED_CONFIG)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_a_keys_connection_limit_and_rate_hold_on_market(limited_server: TickwireServer) -> None:
    server = limited_server

    def open_one() -> tuple[socketio.Client | None, str | None]:
        client = socketio.Client(reconnection=False)
        errors: queue.Queue = queue.Queue()
        greeted: queue.Queue = queue.Queue()
        client.on("connect_error", lambda data: errors.put(data), namespace="/market")
        client.on("connected", lambda data: greeted.put(data), namespace="/market")
        try:
            client.connect(
                server.http, namespaces=["/market"], transports=["websocket"],
                auth={"api_key": LIMITED_KEY}, wait_timeout=WAIT_SECONDS,
            )
        except socketio.exceptions.ConnectionError:
            return None, errors.get(timeout=WAIT_SECONDS)["message"]
        greeted.get(timeout=WAIT_SECONDS)
        return client, None

    first, _ = open_one()  # one request of the key's rate
    second, _ = open_one()  # two
    assert first is not None and second is not None
    refused, message = open_one()  # three: over max_connections
    assert refused is None and "at most 2 connections per API key" in (message or ""), message
    samples = requests.get(f"{server.http}/metrics", timeout=WAIT_SECONDS).text
    assert 'tickwire_connections{endpoint="socketio",format="json"} 2' in samples, samples
    assert 'tickwire_auth_refusals_total{endpoint="socketio",reason="connection_limit"} 1' in samples
    # A slot comes back when a connection leaves.
    second.disconnect()
    deadline = time.monotonic() + WAIT_SECONDS
    gauge = 'tickwire_connections{endpoint="socketio",format="json"} 1'
    while gauge not in requests.get(f"{server.http}/metrics", timeout=WAIT_SECONDS).text:
        assert time.monotonic() < deadline, "the closed connection stayed counted"
        time.sleep(0.05)
    third = None
    while third is None:
        assert time.monotonic() < deadline, "the slot was not released"
        third, message = open_one()  # four (and more while the slot is still held)
        if third is None and "request rate" in (message or ""):
            pytest.fail(f"the rate ran out before the slot came back: {message}")
    # The key's requests for this minute are spent: a subscribe is refused, saying why.
    reply = third.call(
        "subscribe", {"symbols": [{"symbol": "BTC/USD", "exchange": "CRYPTO"}]}, namespace="/market", timeout=WAIT_SECONDS
    )
    assert reply["status"] == "error" and "over its request rate" in reply["message"], reply
    for client in (first, third):
        client.disconnect()


def next_packet(ws: websocket.WebSocket) -> str:
    """The next Engine.IO packet that is not a ping, answering pings on the way: the server's
    heartbeat runs from the open packet on and may come before any reply."""
    while True:
        packet = ws.recv()
        if packet != "2":
            return packet
        ws.send("3")


def test_a_client_that_vanishes_leaves_its_rooms(server: TickwireServer) -> None:
    """An Engine.IO client that subscribes, then drops its TCP connection without a word:
    its room empties, and the proxy's key (the adapters' subscription) goes with it."""
    from interop_support import OPERATOR_KEY

    def topics(index: str) -> dict[str, int]:
        resp = requests.get(
            f"{server.http}/admin/topics", headers={"Authorization": f"Bearer {OPERATOR_KEY}"}, timeout=WAIT_SECONDS
        )
        assert resp.status_code == 200, resp.text
        return {t["topic"]: t["subscribers"] for t in resp.json() if t["index"] == index}

    def proxy_topics() -> dict[str, int]:
        return topics("proxy")

    key = "CRYPTO:ATOM/USD:LTP"
    assert key not in proxy_topics()
    ws = websocket.create_connection(f"{server.ws}/socket.io/?EIO=4&transport=websocket", timeout=WAIT_SECONDS)
    assert next_packet(ws).startswith("0")
    ws.send('40/market,' + json.dumps({"api_key": DEMO_KEY}))
    assert next_packet(ws).startswith("40/market,")
    ws.send('42/market,' + json.dumps(["subscribe", {"symbols": [{"symbol": "ATOM/USD", "exchange": "CRYPTO"}], "mode": "LTP"}]))
    deadline = time.monotonic() + WAIT_SECONDS
    while proxy_topics().get(key) != 1:  # the room: one member of the key, whatever its size
        assert time.monotonic() < deadline, proxy_topics()
        time.sleep(0.05)
    # The operators see the room, with its one session, in the endpoint's own index.
    room = "market_data:LTP:CRYPTO:ATOM/USD"
    assert topics("socketio").get(room) == 1, topics("socketio")
    # Vanish: the socket is closed under the client, no close frame, no disconnect packet.
    ws.sock.shutdown(2)
    ws.sock.close()
    # Gone at once (the read fails) or at the latest when the heartbeat gives up (15 s).
    deadline = time.monotonic() + 20
    while key in proxy_topics():
        assert time.monotonic() < deadline, "the vanished client's room was kept"
        time.sleep(0.1)
    assert room not in topics("socketio")



def flood(server: TickwireServer, symbol: str, start: int, n: int) -> None:
    """Publishes `n` ticks of `symbol` whose prices count up from `start + 1`."""
    from interop_support import OPERATOR_KEY

    ticks = [
        {"kind": "tick", "symbol": symbol, "exchange": "CRYPTO", "price": start + i + 1, "volume": 1}
        for i in range(n)
    ]
    resp = requests.post(
        f"{server.http}/api/v1/publish", json=ticks,
        headers={"Authorization": f"Bearer {OPERATOR_KEY}"}, timeout=WAIT_SECONDS,
    )
    assert resp.status_code == 202, resp.text


def slow_consumers(server: TickwireServer) -> dict:
    return requests.get(f"{server.http}/healthz", timeout=WAIT_SECONDS).json()["slow_consumers"]


def upgraded_client(server: TickwireServer, **kwargs) -> websocket.WebSocket:
    """An Engine.IO client that starts on long-polling, joins `/market` there, and upgrades to a
    WebSocket (`2probe`, `3probe`, `5`): the session moves to the WebSocket."""
    base = f"{server.http}/socket.io/"
    opened = requests.get(base, params={"EIO": "4", "transport": "polling"}, timeout=WAIT_SECONDS)
    sid = json.loads(opened.text[1:])["sid"]
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    joined = requests.post(base, params=params, data="40/market," + json.dumps({"api_key": DEMO_KEY}), timeout=WAIT_SECONDS)
    assert joined.text == "ok", joined.text
    # The join's answer, on a later poll if a heartbeat ping comes first (a slow machine can take
    # the ping interval between the open and the first poll); each ping is answered.
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        packets = requests.get(base, params=params, timeout=WAIT_SECONDS).text.split("\x1e")
        if any(packet.startswith("40/market,") for packet in packets):
            break
        assert all(packet == "2" for packet in packets), packets
        assert time.monotonic() < deadline, "no answer to the join"
        for _ in packets:
            requests.post(base, params=params, data="3", timeout=WAIT_SECONDS)
    ws = websocket.create_connection(
        f"{server.ws}/socket.io/?EIO=4&transport=websocket&sid={sid}", timeout=WAIT_SECONDS, **kwargs
    )
    ws.send("2probe")
    assert next_packet(ws) == "3probe"
    ws.send("5")
    return ws


def stall(ws: websocket.WebSocket, request: dict) -> None:
    """Subscribes `ws` with `request`, waits for the acknowledgement, and from then on reads
    nothing (not even pings)."""
    ws.send("42/market,1" + json.dumps(["subscribe", request]))
    while not next_packet(ws).startswith("43/market,1"):
        pass


def closed_under(ws: websocket.WebSocket) -> bool:
    """Whether the server closed or reset `ws`, which its client sees once it reads again."""
    ws.settimeout(WAIT_SECONDS)
    try:
        while True:
            if ws.recv() == "":
                return True
    except (websocket.WebSocketConnectionClosedException, ConnectionResetError, OSError):
        return True


def reader_gets_the_last(server: TickwireServer, received: queue.Queue, symbol: str, last: int) -> int:
    """Publishes tick `last`, waits until the reader has it, and returns how many it read."""
    flood(server, symbol, last - 1, 1)
    got, seen = 0, None
    deadline = time.monotonic() + WAIT_SECONDS
    while seen != last:
        assert time.monotonic() < deadline, f"the reader stopped at {seen}, the last sent was {last}"
        seen = received.get(timeout=WAIT_SECONDS)
        got += 1
    return got


def reading_member(server: TickwireServer, request: dict) -> tuple[socketio.Client, queue.Queue]:
    """A client on a WebSocket transport subscribed with `request`, and the queue of the last
    prices it receives."""
    reader, _ = connect(server, ["websocket"], auth={"api_key": DEMO_KEY})
    received: queue.Queue = queue.Queue()
    reader.on("market_data", lambda data: received.put(data["data"]["ltp"]), namespace="/market")
    assert reader.call("subscribe", request, namespace="/market", timeout=WAIT_SECONDS)["status"] == "success"
    return reader, received


def flood_until(server: TickwireServer, symbol: str, done, why: str) -> int:
    """Floods `symbol` 2,000 ticks at a time until `done()`, for at most 30 s; returns the last
    price sent."""
    sent = 1
    deadline = time.monotonic() + 30
    while not done():
        assert time.monotonic() < deadline, why
        flood(server, symbol, sent, 2000)
        sent += 2000
    return sent


def test_a_session_that_stops_reading_meets_the_slow_consumer_policy(server: TickwireServer) -> None:
    """A `/market` client on a WebSocket transport of its own (the gateway's session) that
    subscribes and then stops reading, while its instrument floods: once its TCP buffers and its
    send buffer are full, the gateway's slow-consumer policy (here `disconnect`) drops it and
    counts it, as on every other endpoint; a client reading the same room keeps receiving."""
    import socket

    symbol = "FLOOD/USD"
    flood(server, symbol, 0, 1)  # the instrument exists before anyone subscribes
    before = slow_consumers(server)
    delivered_before = value(scrape(server), "tickwire_messages_delivered_total", endpoint="socketio", format="json")
    request = {"symbols": [{"symbol": symbol, "exchange": "CRYPTO"}], "mode": "Quote"}
    stalled = websocket.create_connection(
        f"{server.ws}/socket.io/?EIO=4&transport=websocket", timeout=WAIT_SECONDS,
        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),),
    )
    assert next_packet(stalled).startswith("0")
    stalled.send("40/market," + json.dumps({"api_key": DEMO_KEY}))
    assert next_packet(stalled).startswith("40/market,")
    stall(stalled, request)
    reader, received = reading_member(server, request)
    try:
        sent = flood_until(
            server, symbol, lambda: slow_consumers(server)["disconnected"] > before["disconnected"],
            "the stalled session was not dropped",
        )
        assert closed_under(stalled)
        got = reader_gets_the_last(server, received, symbol, sent + 1)
        samples = scrape(server)
        delivered = value(samples, "tickwire_messages_delivered_total", endpoint="socketio", format="json")
        assert delivered - delivered_before >= got, (delivered, delivered_before, got)
        drops = value(samples, "tickwire_slow_consumer_actions_total", policy="disconnect", cause="queue_full")
        assert drops >= 1, drops
        assert "Traceback" not in server.log_tail(200)
    finally:
        reader.disconnect()
        stalled.close()


def test_an_upgraded_session_that_stops_reading_meets_the_slow_consumer_policy(server: TickwireServer) -> None:
    """A `/market` client upgraded from long-polling that subscribes and then stops reading, while
    its instrument floods: the session moved to its WebSocket is the gateway's own, so once its
    TCP buffers and its send buffer are full, the slow-consumer policy (here `disconnect`) drops
    it and counts it, as for a WebSocket opened as such; a client reading the same room keeps
    receiving."""
    import socket

    symbol = "FLOOD2/USD"
    flood(server, symbol, 0, 1)
    before = slow_consumers(server)
    delivered_before = value(scrape(server), "tickwire_messages_delivered_total", endpoint="socketio", format="json")
    request = {"symbols": [{"symbol": symbol, "exchange": "CRYPTO"}], "mode": "Quote"}
    stalled = upgraded_client(server, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),))
    stall(stalled, request)
    reader, received = reading_member(server, request)
    try:
        sent = flood_until(
            server, symbol, lambda: slow_consumers(server)["disconnected"] > before["disconnected"],
            "the stalled upgraded session was not dropped",
        )
        assert closed_under(stalled)
        got = reader_gets_the_last(server, received, symbol, sent + 1)
        samples = scrape(server)
        delivered = value(samples, "tickwire_messages_delivered_total", endpoint="socketio", format="json")
        assert delivered - delivered_before >= got, (delivered, delivered_before, got)
        drops = value(samples, "tickwire_slow_consumer_actions_total", policy="disconnect", cause="queue_full")
        assert drops >= 1, drops
        assert "Traceback" not in server.log_tail(200)
    finally:
        reader.disconnect()
        stalled.close()
