"""The `/stream` document's Python client (PyPI `websockets`) against tickwire-server.

`stream_prices` below is the document's "Python Client", word for word but for three
things: the URI and the key are arguments, the key may travel in `?api_key=` instead of the
header, and the endless `async for` stops once the client has seen `subscribed`, a few
`price_update`s and the server's automatic `pong` (every second in the test configuration).
It keeps what it received so the test can check every message's shape.
"""

from __future__ import annotations

import asyncio
import datetime
import http.client
import json
import re

import pytest
import websockets

from interop_support import DEMO_KEY, WAIT_SECONDS, TickwireServer

# ISO 8601 in UTC with milliseconds, as the document's examples: 2025-10-10T14:30:00.000Z.
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PRICE_UPDATES = 3


async def stream_prices(uri: str, api_key: str, key_in_query: bool = False) -> list[dict]:
    received: list[dict] = []
    if key_in_query:
        uri = f"{uri}?api_key={api_key}"
        headers = {}
    else:
        headers = {'Authorization': f'Bearer {api_key}'}

    async with websockets.connect(
        uri,
        extra_headers=headers
    ) as websocket:
        print('✅ Connected to Project Chrono')

        # Subscribe to symbols
        await websocket.send(json.dumps({
            'type': 'subscribe',
            'symbols': ['BTC/USD', 'ETH/USD']
        }))

        # Listen for messages
        async for message in websocket:
            data = json.loads(message)
            received.append(data)

            if data['type'] == 'subscribed':
                print(f"📡 Subscribed to: {', '.join(data['symbols'])}")

            elif data['type'] == 'price_update':
                print(f"💰 {data['symbol']}: ${data['price']:.2f} from {data['source']}")

            elif data['type'] == 'pong':
                print('💓 Heartbeat')

            elif data['type'] == 'error':
                print(f"❌ Error: {data['message']}")

            types = [m['type'] for m in received]
            if types.count('price_update') >= PRICE_UPDATES and 'pong' in types:
                break
    return received


def run_client(uri: str, api_key: str, key_in_query: bool = False) -> list[dict]:
    return asyncio.run(
        asyncio.wait_for(stream_prices(uri, api_key, key_in_query), timeout=WAIT_SECONDS)
    )


def assert_iso(ts: str) -> None:
    assert ISO_UTC.match(ts), f"timestamp {ts!r} is not ISO 8601 UTC with milliseconds"
    parsed = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - parsed).total_seconds()) < 3600, f"timestamp {ts} is not recent"


def check_session(received: list[dict], capsys: pytest.CaptureFixture[str]) -> None:
    assert received[0] == {
        "type": "subscribed",
        "symbols": ["BTC/USD", "ETH/USD"],
        "timestamp": received[0]["timestamp"],
    }
    assert_iso(received[0]["timestamp"])
    assert not [m for m in received if m["type"] == "error"], received
    updates = [m for m in received if m["type"] == "price_update"]
    assert len(updates) >= PRICE_UPDATES
    for update in updates:
        assert list(update) == ["type", "symbol", "price", "volume", "timestamp", "source"]
        assert update["symbol"] in ("BTC/USD", "ETH/USD")
        assert isinstance(update["price"], (int, float)) and not isinstance(update["price"], bool)
        assert update["price"] > 0
        assert update["volume"] is None or isinstance(update["volume"], (int, float))
        assert_iso(update["timestamp"])
        assert update["source"] == "synthetic"
    pongs = [m for m in received if m["type"] == "pong"]
    assert pongs and all(list(p) == ["type", "timestamp"] for p in pongs)
    for pong in pongs:
        assert_iso(pong["timestamp"])
    # The document's own output: the price formatted with :.2f, which needs a number.
    out = capsys.readouterr().out
    assert "📡 Subscribed to: BTC/USD, ETH/USD" in out
    assert re.search(r"💰 (BTC|ETH)/USD: \$\d+\.\d\d from synthetic", out), out
    assert "💓 Heartbeat" in out


def test_document_client_with_bearer_header(server: TickwireServer, capsys) -> None:
    check_session(run_client(f"{server.ws}/stream", DEMO_KEY), capsys)


def test_document_client_with_api_key_query(server: TickwireServer, capsys) -> None:
    check_session(run_client(f"{server.ws}/stream", DEMO_KEY, key_in_query=True), capsys)


@pytest.mark.parametrize("key_in_query", [False, True], ids=["header", "query"])
def test_unknown_key_is_refused_with_401(server: TickwireServer, key_in_query: bool) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatusCode) as refused:
        run_client(f"{server.ws}/stream", "not-a-key", key_in_query=key_in_query)
    assert refused.value.status_code == 401


@pytest.mark.parametrize(
    "target, headers",
    [
        ("/stream", {}),
        ("/stream", {"Authorization": "Bearer not-a-key"}),
        ("/stream?api_key=not-a-key", {}),
    ],
    ids=["no-key", "bad-bearer", "bad-query"],
)
def test_refused_upgrade_has_the_unauthorized_body(
    server: TickwireServer, target: str, headers: dict[str, str]
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT_SECONDS)
    try:
        conn.request(
            "GET",
            target,
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                **headers,
            },
        )
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 401
    assert body["type"] == "error"
    assert body["code"] == "UNAUTHORIZED"
    assert body["message"] == "Authentication failed"
    assert_iso(body["timestamp"])


def test_ping_is_answered_with_pong(openalgo_server: TickwireServer) -> None:
    # This server keeps the default 30 s heartbeat, so the pong is the answer to the ping.
    async def ping() -> dict:
        async with websockets.connect(
            f"{openalgo_server.ws}/stream", extra_headers={"Authorization": f"Bearer {DEMO_KEY}"}
        ) as websocket:
            await websocket.send(json.dumps({"type": "ping"}))
            return json.loads(await websocket.recv())

    pong = asyncio.run(asyncio.wait_for(ping(), timeout=WAIT_SECONDS))
    assert list(pong) == ["type", "timestamp"] and pong["type"] == "pong"
    assert_iso(pong["timestamp"])
