"""Engine.IO long-polling on seed 003's `/market`, at the wire, and the upgrade from it to a
WebSocket: the session the standard clients start on. What a client that polls is promised
(answers and updates in order, across the upgrade too), and what happens when it misbehaves or
vanishes: an Engine.IO error with its reason, the session ended and its rooms left, the server
and every other client carrying on.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import websocket

from interop_support import DEMO_KEY, OPERATOR_KEY, WAIT_SECONDS, TickwireServer, scrape, value
from test_socketio_market import (
    another_client_is_greeted,
    flood,
    flood_until,
    next_packet,
    reader_gets_the_last,
    reading_member,
    slow_consumers,
)


def base(server: TickwireServer) -> str:
    return f"{server.http}/socket.io/"


class Polling:
    """An Engine.IO client on long-polling, request by request."""

    def __init__(self, server: TickwireServer) -> None:
        self.server = server
        opened = requests.get(base(server), params={"EIO": "4", "transport": "polling"}, timeout=WAIT_SECONDS)
        assert opened.status_code == 200, opened.text
        assert opened.text.startswith("0"), opened.text
        self.handshake = json.loads(opened.text[1:])
        self.sid = self.handshake["sid"]
        self.params = {"EIO": "4", "transport": "polling", "sid": self.sid}

    def post(self, *packets: str) -> requests.Response:
        return requests.post(base(self.server), params=self.params, data="\x1e".join(packets), timeout=WAIT_SECONDS)

    def get(self, timeout: float = WAIT_SECONDS) -> requests.Response:
        return requests.get(base(self.server), params=self.params, timeout=timeout)

    def poll(self) -> list[str]:
        """The packets of one poll; pings among them are answered."""
        resp = self.get()
        assert resp.status_code == 200, resp.text
        packets = resp.text.split("\x1e")
        for packet in packets:
            if packet == "2":
                assert self.post("3").text == "ok"
        return [p for p in packets if p != "2"]

    def until(self, done) -> list[str]:
        """Polls until a packet satisfies `done`; returns every packet read."""
        seen: list[str] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while not any(done(p) for p in seen):
            assert time.monotonic() < deadline, seen
            seen += self.poll()
        return seen

    def join(self) -> None:
        assert self.post("40/market," + json.dumps({"api_key": DEMO_KEY})).text == "ok"
        self.until(lambda p: p.startswith("40/market,"))

    def subscribe(self, symbol: str, ack: int = 1) -> list[str]:
        """Subscribes to `symbol` in Quote mode; returns the packets read up to the answer (the
        last value's snapshot among them)."""
        request = {"symbols": [{"symbol": symbol, "exchange": "CRYPTO"}], "mode": "Quote"}
        assert self.post(f"42/market,{ack}" + json.dumps(["subscribe", request])).text == "ok"
        replies = self.until(lambda p: p.startswith(f"43/market,{ack}"))
        reply = next(p for p in replies if p.startswith(f"43/market,{ack}"))
        assert json.loads(reply[len(f"43/market,{ack}"):])[0]["status"] == "success", reply
        return replies


def error_of(resp: requests.Response) -> tuple[int, int, str]:
    body = resp.json()
    return resp.status_code, body["code"], body["message"]


def price_of(packet: str) -> float | None:
    """The last price of a `market_data` event, if the packet is one."""
    head = '42/market,["market_data",'
    if not packet.startswith(head):
        return None
    return json.loads(packet[len("42/market,"):])[1]["data"]["ltp"]


def socketio_topics(server: TickwireServer) -> dict[str, int]:
    resp = requests.get(
        f"{server.http}/admin/topics", headers={"Authorization": f"Bearer {OPERATOR_KEY}"}, timeout=WAIT_SECONDS
    )
    assert resp.status_code == 200, resp.text
    return {t["topic"]: t["subscribers"] for t in resp.json() if t["index"] == "socketio"}


def test_the_polling_handshake_offers_the_upgrade_and_counts_the_session(server: TickwireServer) -> None:
    before = value(scrape(server), "tickwire_connections", endpoint="socketio", format="json")
    client = Polling(server)
    assert client.handshake["upgrades"] == ["websocket"], client.handshake
    # The sid is the credential of every request of the session: 128 random bits, so that no
    # client can name another's session by counting.
    other = Polling(server)
    assert len(client.sid) == len(other.sid) == 32, (client.sid, other.sid)
    assert abs(int(client.sid, 16) - int(other.sid, 16)) > 2**64, (client.sid, other.sid)
    assert other.post("1").text == "ok"
    assert (client.handshake["pingInterval"], client.handshake["pingTimeout"]) == (5000, 10000)
    assert client.handshake["maxPayload"] == 100_000
    assert value(scrape(server), "tickwire_connections", endpoint="socketio", format="json") == before + 1
    # The client closes it: the session ends, and is no longer counted.
    assert client.post("1").text == "ok"
    assert error_of(client.get()) == (400, 1, "Session ID unknown")
    assert value(scrape(server), "tickwire_connections", endpoint="socketio", format="json") == before


def test_an_unknown_session_and_a_second_waiting_poll_get_engine_io_errors(server: TickwireServer) -> None:
    stranger = requests.get(
        base(server), params={"EIO": "4", "transport": "polling", "sid": "00000000000000ff"}, timeout=WAIT_SECONDS
    )
    assert error_of(stranger) == (400, 1, "Session ID unknown")
    client = Polling(server)
    client.join()
    # A poll waits (nothing is queued); a second one while it waits ends the session, and the
    # first is answered with the close packet.
    first: dict = {}
    waiting = threading.Thread(target=lambda: first.update(resp=client.get()))
    waiting.start()
    time.sleep(0.3)
    assert error_of(client.get()) == (400, 3, "Bad request")
    waiting.join(WAIT_SECONDS)
    assert first["resp"].text.split("\x1e")[-1] == "1", first["resp"].text
    assert error_of(client.get()) == (400, 1, "Session ID unknown")
    assert "a second poll while one waits" in server.log_tail(50)
    another_client_is_greeted(server)


def test_an_oversized_or_unreadable_payload_ends_the_session_with_the_reason(server: TickwireServer) -> None:
    big = Polling(server)
    big.join()
    resp = big.post("4" + "x" * 100_000)
    assert error_of(resp) == (413, 3, "Payload too large")
    assert error_of(big.get()) == (400, 1, "Session ID unknown")
    assert "a payload over maxPayload" in server.log_tail(50)
    for packet, reason in [("9", "unknown Engine.IO packet type"), ('42/market,{"a":1}', "not a JSON array")]:
        bad = Polling(server)
        bad.join()
        code, engine_code, message = error_of(bad.post(packet))
        assert (code, engine_code) == (400, 3) and reason in message, message
        assert error_of(bad.get()) == (400, 1, "Session ID unknown")
    another_client_is_greeted(server)


def test_a_polling_client_that_vanishes_is_closed_and_leaves_its_rooms(server: TickwireServer) -> None:
    """A client that subscribes over long-polling and then neither polls nor answers: it is
    closed at the heartbeat's timeout (15 s) and its room is left."""
    symbol = "VANISH/USD"
    flood(server, symbol, 0, 1)
    client = Polling(server)
    client.join()
    client.subscribe(symbol)
    room = f"market_data:Quote:CRYPTO:{symbol}"
    assert socketio_topics(server).get(room) == 1, socketio_topics(server)
    deadline = time.monotonic() + 20
    while room in socketio_topics(server):
        assert time.monotonic() < deadline, "the vanished polling client's room was kept"
        time.sleep(0.2)
    assert "polling session closed: ping timeout" in server.log_tail(100)
    assert error_of(client.get()) == (400, 1, "Session ID unknown")


def test_a_polling_session_that_stops_polling_meets_the_slow_consumer_policy(server: TickwireServer) -> None:
    """A client that subscribes over long-polling and stops polling while its instrument floods:
    its queue (the gateway's send buffer) fills and the policy (`disconnect`) ends it, counted;
    a client reading the same room keeps receiving."""
    symbol = "FLOOD3/USD"
    flood(server, symbol, 0, 1)
    before = slow_consumers(server)
    client = Polling(server)
    client.join()
    client.subscribe(symbol)
    request = {"symbols": [{"symbol": symbol, "exchange": "CRYPTO"}], "mode": "Quote"}
    reader, received = reading_member(server, request)
    try:
        sent = flood_until(
            server, symbol, lambda: slow_consumers(server)["disconnected"] > before["disconnected"],
            "the polling session that stopped polling was not dropped",
        )
        reader_gets_the_last(server, received, symbol, sent + 1)
        # Its next poll finds it gone (the sweep ends it within a second).
        deadline = time.monotonic() + 5
        while client.get().status_code == 200:
            assert time.monotonic() < deadline, "the dropped session still polls"
        assert error_of(client.get()) == (400, 1, "Session ID unknown")
        drops = value(scrape(server), "tickwire_slow_consumer_actions_total", policy="disconnect", cause="queue_full")
        assert drops >= 1, drops
        assert "polling session closed: its queue is full" in server.log_tail(200)
    finally:
        reader.disconnect()


def test_what_was_queued_on_long_polling_comes_first_after_the_upgrade(server: TickwireServer) -> None:
    """Updates queued for a polling session when it upgrades are written on the WebSocket before
    anything newer, and updates published while the upgrade is under way are neither lost nor
    reordered: the client sees every price once, in order."""
    symbol = "ORDER/USD"
    flood(server, symbol, 0, 1)
    client = Polling(server)
    client.join()
    replies = client.subscribe(symbol)
    if not any(price_of(p) == 1 for p in replies):
        replies += client.until(lambda p: price_of(p) == 1)
    seen = [p for p in map(price_of, replies) if p is not None]
    assert seen == [1], replies
    # 2..60 are queued while the client does not poll.
    flood(server, symbol, 1, 59)
    ws = websocket.create_connection(
        f"{server.ws}/socket.io/?EIO=4&transport=websocket&sid={client.sid}", timeout=WAIT_SECONDS
    )
    try:
        ws.send("2probe")
        assert next_packet(ws) == "3probe"
        # 61..120 while the session moves.
        during = threading.Thread(target=flood, args=(server, symbol, 60, 60))
        during.start()
        ws.send("5")
        during.join(WAIT_SECONDS)
        flood(server, symbol, 120, 60)
        deadline = time.monotonic() + WAIT_SECONDS
        while not seen or seen[-1] != 180:
            assert time.monotonic() < deadline, seen[-5:]
            price = price_of(next_packet(ws))
            if price is not None:
                seen.append(price)
        assert seen == list(range(1, 181)), seen
        # The room's member is the WebSocket now, once; the polling session is gone.
        assert socketio_topics(server).get(f"market_data:Quote:CRYPTO:{symbol}") == 1
        assert error_of(client.get()) == (400, 1, "Session ID unknown")
    finally:
        ws.close()


def test_another_engine_io_version_or_transport_gets_engine_io_errors(server: TickwireServer) -> None:
    old = requests.get(base(server), params={"EIO": "3", "transport": "polling"}, timeout=WAIT_SECONDS)
    assert error_of(old) == (400, 5, "Unsupported protocol version")
    odd = requests.get(base(server), params={"EIO": "4", "transport": "carrier-pigeon"}, timeout=WAIT_SECONDS)
    assert error_of(odd) == (400, 0, "Transport unknown")
    another_client_is_greeted(server)


def test_a_failed_upgrade_leaves_the_session_polling_and_it_may_upgrade_again(server: TickwireServer) -> None:
    """A WebSocket that names a polling session but does not probe is closed with 1003 and the
    reason; while one probes, a second is refused; the session goes on polling, and a proper
    upgrade afterwards takes it over."""
    client = Polling(server)
    client.join()
    url = f"{server.ws}/socket.io/?EIO=4&transport=websocket&sid={client.sid}"
    wrong = websocket.create_connection(url, timeout=WAIT_SECONDS)
    wrong.send('42/market,["subscribe",{}]')
    while True:
        opcode, frame = wrong.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
    assert int.from_bytes(frame[:2], "big") == 1003, frame
    assert "expected the upgrade's probe" in frame[2:].decode(), frame
    assert "upgrade closed: a packet before the upgrade's probe" in server.log_tail(50)
    wrong.close()
    # Still polling: a packet sent now is answered on the poll.
    assert client.post('42/market,7["get_ltp",{"symbol":"BTC/USD","exchange":"CRYPTO"}]').text == "ok"
    client.until(lambda p: p.startswith("43/market,7"))
    # One WebSocket probes (once the failed one is let go: its close ends it on the server's
    # side a moment after the client sees it); a second one at the same time is refused.
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            ws = websocket.create_connection(url, timeout=WAIT_SECONDS)
            break
        except websocket.WebSocketBadStatusException:
            assert time.monotonic() < deadline, "the failed upgrade was not let go"
            time.sleep(0.05)
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, timeout=WAIT_SECONDS)
        assert refused.value.status_code == 400
        ws.send("2probe")
        assert next_packet(ws) == "3probe"
        ws.send("5")
        ws.send('42/market,8["get_ltp",{"symbol":"BTC/USD","exchange":"CRYPTO"}]')
        while not next_packet(ws).startswith("43/market,8"):
            pass
        assert error_of(client.get()) == (400, 1, "Session ID unknown")
    finally:
        ws.close()
