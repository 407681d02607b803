"""The real Python SDK of the market-data proxy, PyPI `openalgo`, against tickwire-server.

The SDK's feed client (`openalgo/feed.py`) opens `ws_url` with `websocket-client`, sends
`{"action":"authenticate","api_key":K}` and waits up to 5 s for a reply of type `auth`; it
then subscribes one instrument per message with an integer `mode` and dispatches
`market_data` to the callback of its mode. It needs the reference server's reply names, so
the server runs with `TICKWIRE_PROXY__REPLY_STYLE=openalgo`. The data is the synthetic
market's NSE RELIANCE, on by default.
"""

from __future__ import annotations

import threading
from typing import Any

import openalgo
import pytest

from interop_support import DEMO_KEY, WAIT_SECONDS, TickwireServer

RELIANCE = [{"exchange": "NSE", "symbol": "RELIANCE"}]


class Collected:
    """The callback of one mode: what it received, and an event set by the first call."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.arrived = threading.Event()

    def __call__(self, data: dict[str, Any]) -> None:
        self.messages.append(data)
        self.arrived.set()

    def first(self, what: str) -> dict[str, Any]:
        assert self.arrived.wait(WAIT_SECONDS), f"no {what} within {WAIT_SECONDS}s"
        return self.messages[0]


@pytest.fixture()
def client(openalgo_server: TickwireServer):
    sdk = openalgo.api(
        api_key=DEMO_KEY, host=openalgo_server.http, ws_url=openalgo_server.proxy_ws
    )
    assert sdk.connect(), "the SDK did not connect and authenticate"
    yield sdk
    sdk.disconnect()


def test_sdk_authenticates(client) -> None:
    assert client.connected and client.authenticated


def test_sdk_receives_ltp_quote_and_depth(client) -> None:
    ltp, quote, depth = Collected(), Collected(), Collected()
    assert client.subscribe_ltp(RELIANCE, on_data_received=ltp)
    assert client.subscribe_quote(RELIANCE, on_data_received=quote)
    assert client.subscribe_depth(RELIANCE, on_data_received=depth)

    msg = ltp.first("LTP")
    assert (msg["type"], msg["symbol"], msg["exchange"], msg["mode"]) == (
        "market_data", "RELIANCE", "NSE", 1,
    )
    assert isinstance(msg["data"]["ltp"], float) and msg["data"]["ltp"] > 0
    assert msg["data"]["timestamp"] > 1_000_000_000_000  # milliseconds

    msg = quote.first("Quote")
    assert (msg["symbol"], msg["exchange"], msg["mode"]) == ("RELIANCE", "NSE", 2)
    data = msg["data"]
    for field in ("open", "high", "low", "close", "ltp"):
        assert data[field] > 0, (field, data)
    assert data["low"] <= data["ltp"] <= data["high"], data
    assert data["volume"] >= 0

    msg = depth.first("Depth")
    assert (msg["symbol"], msg["exchange"], msg["mode"]) == ("RELIANCE", "NSE", 3)
    book = msg["data"]["depth"]
    assert 0 < len(book["buy"]) <= 5 and 0 < len(book["sell"]) <= 5, book
    for level in book["buy"] + book["sell"]:
        assert set(level) >= {"price", "quantity", "orders"}, level
        assert level["price"] > 0 and level["quantity"] > 0
    bids = [lvl["price"] for lvl in book["buy"]]
    asks = [lvl["price"] for lvl in book["sell"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks), book
    assert bids[0] < asks[0], book

    # The SDK's own stores, filled from the same messages.
    assert client.get_ltp()["ltp"]["NSE"]["RELIANCE"]["ltp"] > 0
    assert client.get_quotes()["quote"]["NSE"]["RELIANCE"]["high"] > 0
    assert client.get_depth()["depth"]["NSE"]["RELIANCE"]["buyBook"]["1"]["price"] > 0

    assert client.unsubscribe_ltp(RELIANCE)
    assert client.unsubscribe_quote(RELIANCE)
    assert client.unsubscribe_depth(RELIANCE)


def test_sdk_refuses_an_unknown_key(openalgo_server: TickwireServer) -> None:
    sdk = openalgo.api(
        api_key="not-a-key", host=openalgo_server.http, ws_url=openalgo_server.proxy_ws
    )
    try:
        # The SDK waits its fixed 5 s for a successful `auth` reply, then gives up.
        assert sdk.connect() is False
        assert not sdk.authenticated
    finally:
        sdk.disconnect()
