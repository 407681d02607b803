"""The FastWS document's Python test, against a running tickwire-server.

The document tests its endpoint with FastAPI's `TestClient`, whose `websocket_connect(path)`
gives a session with `send_json` and `receive_json`. `LiveClient` offers exactly that API
over a real socket (`websocket-client`), so the document's test body below runs unchanged
against the server; only `TestClient(apiApp)` became `LiveClient(server)`.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator

import websocket

from interop_support import WAIT_SECONDS, TickwireServer


class LiveSession:
    """The `send_json` / `receive_json` half of Starlette's WebSocketTestSession."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws

    def send_json(self, data: Any) -> None:
        self.ws.send(json.dumps(data))

    def receive_json(self) -> Any:
        opcode, payload = self.ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_TEXT, f"expected a text frame, got {opcode}"
        return json.loads(payload)


class LiveClient:
    """`TestClient(app).websocket_connect(path)`, for a server that really runs."""

    def __init__(self, server: TickwireServer) -> None:
        self.base = server.ws

    @contextlib.contextmanager
    def websocket_connect(self, path: str) -> Iterator[LiveSession]:
        ws = websocket.create_connection(f"{self.base}{path}", timeout=WAIT_SECONDS)
        try:
            yield LiveSession(ws)
        finally:
            ws.close()


def test_subscribe_to_bars(server: TickwireServer) -> None:
    client = LiveClient(server)

    with client.websocket_connect("/api/v1/ws") as websocket:
        # Send subscribe message
        websocket.send_json({
            "type": "bars.subscribe",
            "payload": {
                "symbol": "AAPL",
                "params": {"resolution": "1"}
            }
        })

        # Receive response
        response = websocket.receive_json()

        # Assertions
        assert response["type"] == "bars.subscribe.response"
        assert response["payload"]["status"] == "ok"
        assert response["payload"]["symbol"] == "AAPL"
        assert response["payload"]["topic"] == "bars:AAPL:1"


def test_subscribed_client_receives_bars(server: TickwireServer) -> None:
    """After the document's subscribe, `bars.update` follow with the Bar model's fields."""
    client = LiveClient(server)
    with client.websocket_connect("/api/v1/ws") as websocket:
        # The later payload shape, without `params`: the resolution defaults to "1".
        websocket.send_json({"type": "bars.subscribe", "payload": {"symbol": "MSFT"}})
        response = websocket.receive_json()
        assert response == {
            "type": "bars.subscribe.response",
            "payload": {
                "status": "ok",
                "symbol": "MSFT",
                "message": "Subscribed to MSFT",
                "topic": "bars:MSFT:1",
            },
        }
        update = websocket.receive_json()
        assert update["type"] == "bars.update"
        bar = update["payload"]
        assert list(bar) == ["time", "open", "high", "low", "close", "volume"]
        assert isinstance(bar["time"], int) and bar["time"] % 60_000 == 0  # a minute's start
        assert bar["low"] <= min(bar["open"], bar["close"]) <= max(bar["open"], bar["close"]) <= bar["high"]
        assert bar["volume"] >= 0

        websocket.send_json(
            {"type": "bars.unsubscribe", "payload": {"symbol": "MSFT", "params": {"resolution": "1"}}}
        )
        # Updates already queued may come first; the reply follows them.
        while (reply := websocket.receive_json())["type"] == "bars.update":
            pass
        assert reply == {
            "type": "bars.unsubscribe.response",
            "payload": {
                "status": "ok",
                "symbol": "MSFT",
                "message": "Unsubscribed from MSFT",
                "topic": "bars:MSFT:1",
            },
        }


def close_frame_after(server: TickwireServer, frame: str) -> tuple[int, str]:
    """Send `frame` as the first message; the (code, reason) of the server's close frame."""
    ws = websocket.create_connection(f"{server.ws}/api/v1/ws", timeout=WAIT_SECONDS)
    try:
        ws.send(frame)
        opcode, payload = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE, f"expected a close frame, got {opcode}"
        return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8")
    finally:
        ws.close()


def test_unknown_operation_closes_with_1003_no_matching_type(server: TickwireServer) -> None:
    # The document's "Unknown Operation" example.
    frame = json.dumps({"type": "unknown.operation", "payload": {}})
    assert close_frame_after(server, frame) == (1003, "No matching type")


def test_invalid_payloads_close_with_1003_could_not_validate(server: TickwireServer) -> None:
    # The document's "Invalid Message Format" and "Validation Error" examples, and a
    # resolution outside 1, 5, 15, 30, 60, D, W, M.
    for frame in (
        "not json",
        json.dumps({"type": "bars.subscribe", "payload": {"params": {}}}),
        json.dumps({"type": "bars.subscribe", "payload": {"symbol": "AAPL", "params": {"resolution": "2"}}}),
    ):
        assert close_frame_after(server, frame) == (1003, "Could not validate payload"), frame
