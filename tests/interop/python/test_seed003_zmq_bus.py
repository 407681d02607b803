"""A broker adapter's ZeroMQ publisher (`pyzmq`) drives the proxy, as in the seed's architecture.

The publisher is the seed's `BaseBrokerWebSocketAdapter` publishing side: a PUB socket with a
high-water mark and a linger, connected to the SUB socket the server binds (`--zmq-bind`),
sending two-frame `[topic, json]` messages. A proxy client (`websocket-client`, the
documented reply style) subscribes and must receive exactly what was published; then the
publisher goes away and a new one comes, and data flows again without a server restart.

ZeroMQ PUB/SUB drops what is sent before the subscription reaches the publisher (the
"slow joiner"), so each step republishes, with fresh values, until the client sees one of
them, within the suite's bound.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any, Callable

import pytest
import requests
import websocket
import zmq

from interop_support import DEMO_KEY, WAIT_SECONDS, RawClient, TickwireServer

# Republishing interval of a bounded wait (ZeroMQ drops messages before the connection is up).
REPUBLISH_SECONDS = 0.05


class BusPublisher:
    """The publishing half of the seed's broker adapter base class."""

    def __init__(self, endpoint: str) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.SNDHWM, 1000)  # High water mark
        self.socket.setsockopt(zmq.LINGER, 1000)  # 1 second linger
        self.socket.connect(endpoint)

    def publish_market_data(self, topic: str, data: dict) -> None:
        """Publish market data to ZeroMQ subscribers"""
        self.socket.send_multipart([topic.encode("utf-8"), json.dumps(data).encode("utf-8")])

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


def now_ms() -> int:
    return int(time.time() * 1000)


class ProxyClient(RawClient):
    """A proxy WebSocket client speaking the documented protocol."""

    def __init__(self, url: str) -> None:
        super().__init__(url, None)

    def request(self, message: dict, reply_type: str) -> dict:
        self.send_json(message)
        return self.recv_json_until(lambda m: m.get("type") == reply_type, reply_type)

    def authenticate(self) -> None:
        reply = self.request({"action": "authenticate", "api_key": DEMO_KEY}, "auth_response")
        assert reply["status"] == "success", reply

    def subscribe(self, symbol: str, exchange: str, mode: str, **extra: Any) -> dict:
        reply = self.request(
            {
                "action": "subscribe",
                "symbols": [{"symbol": symbol, "exchange": exchange}],
                "mode": mode,
                **extra,
            },
            "subscribe_response",
        )
        assert reply["status"] == "success", reply
        return reply

    def market_data_within(self, seconds: float, predicate: Callable[[dict], bool]) -> dict | None:
        """The first `market_data` within `seconds` that `predicate` accepts, else None."""
        end = time.monotonic() + seconds
        while True:
            try:
                msg = self.recv_json(end)
            except (TimeoutError, websocket.WebSocketTimeoutException):
                return None
            if msg.get("type") == "market_data" and predicate(msg):
                return msg


def publish_until_received(
    publisher: BusPublisher,
    client: ProxyClient,
    make: Callable[[int], tuple[str, dict]],
    matches: Callable[[dict, dict], bool],
    what: str,
) -> tuple[dict, dict]:
    """Publish `make(i)` for i = 0, 1, ... until the client gets a message matching one sent.

    Returns the published payload and the `market_data` it became.
    """
    sent: list[dict] = []
    deadline = time.monotonic() + WAIT_SECONDS
    for i in itertools.count():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: nothing published arrived within {WAIT_SECONDS}s")
        topic, payload = make(i)
        publisher.publish_market_data(topic, payload)
        sent.append(payload)
        msg = client.market_data_within(
            REPUBLISH_SECONDS, lambda m: any(matches(p, m) for p in sent)
        )
        if msg is not None:
            payload = next(p for p in sent if matches(p, msg))
            return payload, msg
    raise AssertionError("unreachable")


@pytest.fixture()
def proxy(server: TickwireServer):
    with ProxyClient(server.proxy_ws) as client:
        client.authenticate()
        yield client


@pytest.fixture()
def publisher(server: TickwireServer):
    pub = BusPublisher(server.zmq_endpoint)
    yield pub
    pub.close()


def ltp_of(base: float) -> Callable[[int], tuple[str, dict]]:
    # Prices far from the synthetic market's RELIANCE (about 2,900), each one distinct.
    return lambda i: ("NSE_RELIANCE_LTP", {"ltp": round(base + i / 100, 2), "timestamp": now_ms()})


def same_ltp(payload: dict, msg: dict) -> bool:
    return msg["symbol"] == "RELIANCE" and msg["data"].get("ltp") == payload["ltp"]


def test_ltp_published_on_the_bus_reaches_an_ltp_subscriber(proxy, publisher) -> None:
    reply = proxy.subscribe("RELIANCE", "NSE", "LTP")
    assert reply["subscriptions"][0]["symbol"] == "RELIANCE"
    payload, msg = publish_until_received(publisher, proxy, ltp_of(1111.0), same_ltp, "LTP")
    assert msg["exchange"] == "NSE" and msg["mode"] == 1
    assert msg["data"] == {"ltp": payload["ltp"], "timestamp": payload["timestamp"]}


def test_quote_published_on_the_bus_reaches_quote_and_ltp_subscribers(proxy, publisher) -> None:
    proxy.subscribe("TCS", "NSE", "Quote")

    def quote(i: int) -> tuple[str, dict]:
        return "NSE_TCS_QUOTE", {
            "ltp": round(2222.0 + i / 100, 2),
            "open": 2200.0,
            "high": 2300.0,
            "low": 2100.0,
            "close": 2210.5,
            "volume": 424242 + i,
            "bid": 2221.95,
            "ask": 2222.05,
            "bid_qty": 500,
            "ask_qty": 750,
            "timestamp": now_ms(),
        }

    def same_quote(payload: dict, msg: dict) -> bool:
        return msg["symbol"] == "TCS" and msg["data"].get("volume") == payload["volume"]

    payload, msg = publish_until_received(publisher, proxy, quote, same_quote, "Quote")
    assert msg["exchange"] == "NSE" and msg["mode"] == 2
    data = msg["data"]
    for field in ("ltp", "open", "high", "low", "close", "volume", "bid", "ask", "bid_qty",
                  "ask_qty", "timestamp"):
        assert data[field] == payload[field], (field, data, payload)


def test_index_depth_with_broker_prefix_reaches_a_depth_subscriber(proxy, publisher) -> None:
    # A broker-prefixed topic, a two-part exchange and a symbol with `_`, as in the seed.
    reply = proxy.subscribe("NIFTY_50", "NSE_INDEX", "Depth", depth=5)
    assert reply["subscriptions"][0]["exchange"] == "NSE_INDEX"

    def depth(i: int) -> tuple[str, dict]:
        return "dhan_NSE_INDEX_NIFTY_50_DEPTH", {
            "ltp": 22000.0 + i,
            "depth": {
                "buy": [{"price": 21999.5 - k, "quantity": 10 + k, "orders": 1 + k} for k in range(6)],
                "sell": [{"price": 22000.5 + k, "quantity": 20 + k, "orders": 2 + k} for k in range(6)],
            },
            "timestamp": now_ms(),
        }

    def same_depth(payload: dict, msg: dict) -> bool:
        return msg["symbol"] == "NIFTY_50" and msg["data"].get("ltp") == payload["ltp"]

    payload, msg = publish_until_received(publisher, proxy, depth, same_depth, "Depth")
    assert msg["exchange"] == "NSE_INDEX" and msg["mode"] == 3
    book = msg["data"]["depth"]
    # Six levels a side were published; the subscription asked for five.
    assert book["buy"] == payload["depth"]["buy"][:5]
    assert book["sell"] == payload["depth"]["sell"][:5]


def test_a_restarted_publisher_is_taken_up_without_a_server_restart(
    server: TickwireServer, proxy
) -> None:
    proxy.subscribe("RELIANCE", "NSE", "LTP")
    first = BusPublisher(server.zmq_endpoint)
    try:
        publish_until_received(first, proxy, ltp_of(3333.0), same_ltp, "LTP of the first publisher")
    finally:
        first.close()  # the peer goes away: socket and context closed

    second = BusPublisher(server.zmq_endpoint)
    try:
        payload, msg = publish_until_received(
            second, proxy, ltp_of(4444.0), same_ltp, "LTP of the restarted publisher"
        )
        assert msg["data"]["ltp"] == payload["ltp"]
    finally:
        second.close()


def test_proxy_is_also_served_on_the_main_listener(server: TickwireServer) -> None:
    with ProxyClient(f"{server.ws}/proxy") as client:
        client.send_json({"action": "subscribe", "symbol": "RELIANCE", "exchange": "NSE"})
        err = client.recv_json_until(lambda m: m.get("status") == "error", "error")
        assert err["code"] == "NOT_AUTHENTICATED"
        client.authenticate()
        client.subscribe("TCS", "NSE", "Quote")
        msg = client.recv_json_until(lambda m: m.get("type") == "market_data", "market_data")
        assert msg["symbol"] == "TCS" and msg["mode"] == 2
        assert msg["data"]["bid"] < msg["data"]["ask"]


def test_an_ltp_bus_message_does_not_become_an_empty_quote(
    server: TickwireServer, publisher
) -> None:
    # INFY: no other test publishes it, and the synthetic market quotes it in full.
    with ProxyClient(server.proxy_ws) as ltp_client, ProxyClient(server.proxy_ws) as quote_client:
        ltp_client.authenticate()
        quote_client.authenticate()
        ltp_client.subscribe("INFY", "NSE", "LTP")
        quote_client.subscribe("INFY", "NSE", "Quote")
        # The synthetic market's first quote of INFY (the snapshot, or its next tick).
        first = quote_client.recv_json_until(
            lambda m: m.get("type") == "market_data" and m["symbol"] == "INFY", "a quote of INFY"
        )
        assert first["mode"] == 2 and first["data"]["bid"] > 0, first

        def ltp(i: int) -> tuple[str, dict]:
            return "NSE_INFY_LTP", {"ltp": round(777.0 + i / 100, 2), "timestamp": now_ms()}

        def same(payload: dict, msg: dict) -> bool:
            return msg["symbol"] == "INFY" and msg["data"].get("ltp") == payload["ltp"]

        publish_until_received(publisher, ltp_client, ltp, same, "LTP of INFY")
        # The quote cache must still be a quote: a price from the bus does not blank it.
        resp = requests.get(
            f"{server.http}/api/v1/quote",
            params={"symbol": "INFY", "exchange": "NSE"},
            headers={"Authorization": f"Bearer {DEMO_KEY}"},
            timeout=WAIT_SECONDS,
        )
        assert resp.status_code == 200, resp.text
        cached = resp.json()["data"]
        assert cached["bid"] > 0 and cached["ask"] > 0 and cached["open"] > 0, cached
        # What the Quote subscriber got so far holds no such empty quote either.
        empty = quote_client.market_data_within(
            REPUBLISH_SECONDS, lambda m: m["mode"] == 2 and m["data"]["bid"] == 0
        )
        assert empty is None, empty


@pytest.fixture()
def lone_server(tmp_path):
    """A server of its own, whose memory and log only this test touches."""
    server = TickwireServer(tmp_path)
    server.start()
    yield server
    server.stop()


def same_wipro_ltp(payload: dict, msg: dict) -> bool:
    return msg["symbol"] == "WIPRO" and msg["data"].get("ltp") == payload["ltp"]


def test_oversized_and_bad_bus_messages_are_skipped_with_few_log_lines_and_no_memory_kept(
    lone_server: TickwireServer,
) -> None:
    publisher = BusPublisher(lone_server.zmq_endpoint)
    try:
        with ProxyClient(lone_server.proxy_ws) as client:
            client.authenticate()
            # WIPRO: no other test publishes it.
            client.subscribe("WIPRO", "NSE", "LTP")
            publish_until_received(
                publisher, client,
                lambda i: ("NSE_WIPRO_LTP", {"ltp": round(300 + i / 100, 2)}),
                same_wipro_ltp, "before",
            )
            rss_before = lone_server.rss_kib()
            # Four messages of 64 MiB (the default limit is 1 MiB).
            big = b"x" * (64 << 20)
            for _ in range(4):
                publisher.socket.send_multipart([b"NSE_WIPRO_LTP", big])
            # A flood of malformed messages and values no market has.
            for i in range(100_000):
                publisher.socket.send_multipart([b"NSE_WIPRO_LTP", b"{not json"])
            for payload in (b'{"ltp":0}', b'{"ltp":-5}', b'{"ltp":1e309}'):
                publisher.socket.send_multipart([b"NSE_WIPRO_LTP", payload])
            _, after = publish_until_received(
                publisher, client,
                lambda i: ("NSE_WIPRO_LTP", {"ltp": round(400 + i / 100, 2)}),
                same_wipro_ltp, "after",
            )
            assert after["data"]["ltp"] >= 400
            bad = client.market_data_within(REPUBLISH_SECONDS, lambda m: m["data"]["ltp"] <= 0)
            assert bad is None, bad
            grown_mib = (lone_server.rss_kib() - rss_before) / 1024
            assert grown_mib < 32, f"RSS grew {grown_mib:.1f} MiB"
    finally:
        publisher.close()
    log = lone_server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "zmq message over max_message_bytes skipped" in log
    lines = [l for l in log.splitlines() if "zmq message" in l and "skipped" in l]
    # The first of a stretch at once, then one line per ten seconds: a handful, not 100,000.
    assert 2 <= len(lines) <= 6, "\n".join(lines[:10])
