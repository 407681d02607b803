"""A Python `websockets` broadcast server of the seed 001 `/ws` price feed.

The Python reference that tickwire is compared with (see ../README.md). On one port:

- ``GET /ws``: a WebSocket speaking seed 001 ``subscribe``, ``unsubscribe`` and ``ping``
  (answered by ``pong``); subscribers of a symbol receive its ``price_update`` messages.
  Any symbol is valid; symbols are case-insensitive.
- ``POST /api/v1/publish`` with ``Authorization: Bearer <key>`` and a JSON body of one item
  or an array of items; every ``kind: tick`` item becomes one ``price_update`` of the
  lower-case base of its symbol (``LT0001/USD`` -> ``lt0001``), serialized once and sent to
  that symbol's subscribers with ``websockets.broadcast()``. Answers 202 ``{"accepted": n}``.

websockets serves only the GET of a WebSocket handshake (it refuses request bodies), so a
connection whose first bytes are ``POST `` is answered here, as HTTP/1.1 with keep-alive,
through websockets' documented ``create_connection`` hook; every other connection is
websockets' own.

Usage: python server.py [--listen 127.0.0.1:9002] [--publish-key lt-key]
(or COMPARE_LISTEN, COMPARE_PUBLISH_KEY).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

PUBLISH_PATH = "/api/v1/publish"
MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024
MAX_SUBSCRIPTIONS = 100  # seed 001 "Rate Limits"

# symbol -> the connections subscribed to it
topics: dict[str, set[ServerConnection]] = {}
authorization = ""


def symbol_key(symbol: str) -> str:
    """The /ws spelling of a symbol: the base of a BASE/QUOTE pair, lower case."""
    return symbol.split("/", 1)[0].lower()


def error(code: str, message: str) -> str:
    return json.dumps({"type": "error", "code": code, "message": message})


async def handler(ws: ServerConnection) -> None:
    """One /ws connection: applies its commands until it closes."""
    symbols: set[str] = set()
    try:
        async for message in ws:
            try:
                command = json.loads(message)
                kind = command["type"]
                requested = command.get("symbols", [])
                if not isinstance(requested, list) or not all(isinstance(s, str) for s in requested):
                    raise ValueError("symbols")
            except (ValueError, KeyError, TypeError, AttributeError):
                await ws.send(error("invalid_message", "Malformed JSON or missing required fields"))
                continue
            if kind == "subscribe":
                new = {symbol_key(s) for s in requested} - symbols
                if len(symbols) + len(new) > MAX_SUBSCRIPTIONS:
                    await ws.send(error("subscription_limit", "Maximum subscriptions exceeded"))
                    continue
                for symbol in new:
                    topics.setdefault(symbol, set()).add(ws)
                symbols |= new
            elif kind == "unsubscribe":
                for symbol in {symbol_key(s) for s in requested} & symbols:
                    unsubscribe(symbol, ws)
                    symbols.discard(symbol)
            elif kind == "ping":
                await ws.send(f'{{"type":"pong","timestamp":{int(time.time() * 1000)}}}')
            else:
                await ws.send(error("invalid_message", "Unknown message type"))
    except ConnectionClosed:
        pass
    finally:
        for symbol in symbols:
            unsubscribe(symbol, ws)


def unsubscribe(symbol: str, ws: ServerConnection) -> None:
    subscribers = topics.get(symbol)
    if subscribers is not None:
        subscribers.discard(ws)
        if not subscribers:
            del topics[symbol]


def publish(body: bytes) -> tuple[int, dict]:
    """Fans the ticks of a publish body out; the HTTP status and answer."""
    try:
        items = json.loads(body)
    except ValueError as e:
        return 400, {"error": f"invalid body: {e}"}
    if not isinstance(items, list):
        items = [items]
    ticks = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return 400, {"error": f"item {i}: not an object"}
        if item.get("kind") != "tick":
            continue
        symbol, price = item.get("symbol"), item.get("price")
        if not isinstance(symbol, str) or not isinstance(price, (int, float)):
            return 400, {"error": f"item {i}: a tick needs `symbol` and `price`"}
        ticks.append(item)
    now = int(time.time() * 1000)
    for tick in ticks:
        symbol = symbol_key(tick["symbol"])
        subscribers = topics.get(symbol)
        if not subscribers:
            continue
        # One serialization per update; broadcast() encodes it once and writes it to each.
        message = json.dumps(
            {
                "type": "price_update",
                "symbol": symbol,
                "price": tick["price"],
                "change_24h": tick.get("change_24h", 0),
                "volume_24h": tick.get("volume"),
                "timestamp": tick.get("timestamp", now),
            },
            separators=(",", ":"),
        )
        broadcast(subscribers, message)
    return 202, {"accepted": len(items)}


class Connection(ServerConnection):
    """websockets' connection, except that a connection opening with ``POST `` is served as
    HTTP/1.1 (Content-Length bodies, keep-alive) by :meth:`_http`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._first = b""  # the first bytes, until they tell which protocol this is
        self._http: bytearray | None = None  # HTTP mode: the unparsed input
        self._is_http = False

    def data_received(self, data: bytes) -> None:
        if self._http is not None:
            self._http += data
            self._http_requests()
            return
        if self._first is not None:
            self._first += data
            if len(self._first) < 5 and b"POST ".startswith(self._first):
                return
            data, self._first = self._first, None
            if data.startswith(b"POST "):
                self._is_http = True
                self._http = bytearray(data)
                self._http_requests()
                return
        super().data_received(data)

    async def handshake(self, *args, **kwargs) -> None:
        try:
            await super().handshake(*args, **kwargs)
        except Exception:
            if not (self._is_http or self._first == b""):
                raise
            # A publish connection (or one that never sent a byte, like a port probe) ended
            # without a WebSocket handshake, as it may: end websockets' connection handler
            # without logging a failed handshake.
            raise asyncio.CancelledError from None

    def eof_received(self) -> bool | None:
        if self._http is not None:
            return None  # close the transport
        return super().eof_received()

    def _http_requests(self) -> None:
        """Answers every complete request buffered."""
        buf = self._http
        while buf is not None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._http_answer(431, {"error": "request head too large"}, close=True)
                return
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if len(parts) != 3 or "transfer-encoding" in headers or not 0 <= length <= MAX_BODY:
                self._http_answer(400, {"error": "bad request"}, close=True)
                return
            if len(buf) < end + 4 + length:
                return
            body = bytes(buf[end + 4 : end + 4 + length])
            del buf[: end + 4 + length]
            method, target = parts[0], parts[1]
            if target.split("?", 1)[0] != PUBLISH_PATH:
                status, answer = 404, {"error": "no such route"}
            elif method != "POST":
                status, answer = 405, {"error": "use POST"}
            elif headers.get("authorization") != authorization:
                status, answer = 401, {"error": "a valid publish key is required"}
            else:
                status, answer = publish(body)
            close = headers.get("connection", "").lower() == "close"
            self._http_answer(status, answer, close=close)
            if close:
                return

    def _http_answer(self, status: int, answer: dict, close: bool) -> None:
        reasons = {202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                   405: "Method Not Allowed", 431: "Request Header Fields Too Large"}
        body = json.dumps(answer).encode()
        head = (
            f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n"
        )
        self.transport.write(head.encode() + body)
        if close:
            self._http = None
            self.transport.close()


async def main() -> None:
    global authorization
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", default=os.environ.get("COMPARE_LISTEN", "127.0.0.1:9002"))
    parser.add_argument("--publish-key", default=os.environ.get("COMPARE_PUBLISH_KEY", "lt-key"))
    args = parser.parse_args()
    authorization = f"Bearer {args.publish_key}"
    host, _, port = args.listen.rpartition(":")

    async def route(connection: ServerConnection, request):
        if request.path.split("?", 1)[0] != "/ws":
            return connection.respond(404, "no such route\n")
        return None

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
    async with serve(
        handler,
        host,
        int(port),
        create_connection=Connection,
        process_request=route,
        compression=None,  # a broadcast server sends the same bytes to all: no per-connection deflate
        open_timeout=None,  # a publish connection never completes a WebSocket handshake
        backlog=1024,
    ) as server:
        print(f"python websockets server listening on {args.listen}", flush=True)
        try:
            await stop
        except asyncio.CancelledError:
            pass
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
