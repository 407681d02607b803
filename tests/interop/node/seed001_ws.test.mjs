// The /ws JSON feed (seed 001) with the protocol document's own JavaScript client, run by
// Node with the `ws` package (clients/seed001_ws_client.mjs), and with `ws` clients that
// use the `channels` extension. The synthetic market is the data source.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import WebSocket from "ws";

import { FAST_FEEDS_CONFIG, TickwireServer, WAIT_MS, runClient, within } from "./server.mjs";

const server = new TickwireServer({ extraConfig: FAST_FEEDS_CONFIG });
before(() => server.start());
after(() => server.stop());

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
const isMillis = (v) => Number.isInteger(v) && Math.abs(v - Date.now()) < 3_600_000;

function checkPriceUpdate(m) {
  assert.deepEqual(Object.keys(m), ["type", "symbol", "price", "change_24h", "volume_24h", "timestamp"]);
  assert.ok(isNumber(m.price) && m.price > 0, `price ${m.price}`);
  assert.ok(isNumber(m.change_24h), `change_24h ${m.change_24h}`);
  assert.ok(m.volume_24h === null || isNumber(m.volume_24h), `volume_24h ${m.volume_24h}`);
  assert.ok(isMillis(m.timestamp), `timestamp ${m.timestamp}`);
}

function checkSignalUpdate(m) {
  assert.deepEqual(Object.keys(m), ["type", "symbol", "indicator", "signal", "value", "confidence", "timestamp"]);
  assert.ok(["rsi", "ema_cross", "macd"].includes(m.indicator), `indicator ${m.indicator}`);
  assert.ok(["buy", "sell", "neutral"].includes(m.signal), `signal ${m.signal}`);
  assert.ok(isNumber(m.value));
  if (m.indicator === "rsi") {
    assert.ok(m.value >= 0 && m.value <= 100, `RSI ${m.value}`);
  }
  assert.ok(isNumber(m.confidence) && m.confidence >= 0 && m.confidence <= 1);
  assert.ok(isMillis(m.timestamp));
}

/** A `ws` client that keeps every message and waits for one matching a predicate. */
class FeedClient {
  static async open(url) {
    const c = new FeedClient(url);
    await within(new Promise((ok, fail) => {
      c.ws.once("open", ok);
      c.ws.once("error", fail);
    }), "open");
    return c;
  }

  constructor(url) {
    this.ws = new WebSocket(url);
    this.messages = [];
    this.waiters = [];
    this.ws.on("message", (data) => {
      this.messages.push(JSON.parse(data.toString()));
      for (const w of this.waiters) w();
    });
  }

  send(message) {
    this.ws.send(JSON.stringify(message));
  }

  /** The first message (kept or new) for which `predicate` holds. */
  waitFor(predicate, what) {
    return within(new Promise((ok) => {
      const check = () => {
        const found = this.messages.find(predicate);
        if (found) {
          this.waiters = this.waiters.filter((w) => w !== check);
          ok(found);
        }
      };
      this.waiters.push(check);
      check();
    }), what);
  }

  close() {
    this.ws.close();
  }
}

describe("the document's JavaScript client", () => {
  test("subscribes and receives price updates, signals and pongs", { timeout: 2 * WAIT_MS }, async () => {
    const run = await runClient("seed001_ws_client.mjs", {
      env: { CLIENT_URL: `${server.ws}/ws`, CLIENT_PING_MS: "500", CLIENT_EXIT_AFTER: "3" },
    });
    assert.equal(run.timedOut, false, `the client did not finish:\n${run.stdout.join("\n")}`);
    assert.equal(run.code, 0, run.stderr.join("\n"));
    assert.deepEqual(run.stderr, [], "the client reported errors");

    const received = run.stdout.filter((l) => l.startsWith("@@recv ")).map((l) => JSON.parse(l.slice(7)));
    const printed = run.stdout.filter((l) => !l.startsWith("@@recv "));
    assert.equal(printed[0], "Connected to Haunt WebSocket");
    assert.equal(printed.at(-1), "Disconnected from Haunt WebSocket");

    const prices = received.filter((m) => m.type === "price_update");
    assert.ok(prices.length >= 3);
    prices.forEach(checkPriceUpdate);
    assert.ok(prices.every((m) => ["btc", "eth", "sol"].includes(m.symbol)), "a symbol not subscribed");
    // The document's own output for them: `btc: $67234.56`.
    assert.ok(printed.some((l) => /^(btc|eth|sol): \$\d+(\.\d+)?$/.test(l)), printed.join("\n"));

    const signals = received.filter((m) => m.type === "signal_update");
    assert.ok(signals.length >= 1);
    signals.forEach(checkSignalUpdate);
    assert.ok(printed.some((l) => /^Signal: (rsi|ema_cross|macd) (buy|sell|neutral)$/.test(l)));

    const pongs = received.filter((m) => m.type === "pong");
    assert.ok(pongs.length >= 1);
    for (const p of pongs) {
      assert.deepEqual(Object.keys(p), ["type", "timestamp"]);
      assert.ok(isMillis(p.timestamp));
    }
    // Subscribed without `channels`: price and signal only, never a book.
    assert.equal(received.filter((m) => m.type === "orderbook_update").length, 0);
    assert.equal(received.filter((m) => m.type === "error").length, 0);
  });
});

describe("channels, status and errors", () => {
  test("the orderbook channel brings sorted books", { timeout: 2 * WAIT_MS }, async () => {
    const c = await FeedClient.open(`${server.ws}/ws`);
    try {
      c.send({ type: "subscribe", symbols: ["btc"], channels: ["price", "orderbook", "signal"] });
      const book = await c.waitFor((m) => m.type === "orderbook_update", "orderbook_update");
      assert.deepEqual(Object.keys(book), ["type", "symbol", "bids", "asks", "timestamp"]);
      assert.equal(book.symbol, "btc");
      assert.ok(book.bids.length > 0 && book.asks.length > 0);
      for (const level of [...book.bids, ...book.asks]) {
        assert.deepEqual(Object.keys(level), ["price", "quantity"]);
        assert.ok(level.price > 0 && level.quantity > 0);
      }
      const bids = book.bids.map((l) => l.price);
      const asks = book.asks.map((l) => l.price);
      assert.deepEqual(bids, [...bids].sort((a, b) => b - a), "bids best first");
      assert.deepEqual(asks, [...asks].sort((a, b) => a - b), "asks best first");
      assert.ok(bids[0] < asks[0], "crossed book");
      checkPriceUpdate(await c.waitFor((m) => m.type === "price_update", "price_update"));
      checkSignalUpdate(await c.waitFor((m) => m.type === "signal_update", "signal_update"));
    } finally {
      c.close();
    }
  });

  test("server_status carries the server's figures", async () => {
    const c = await FeedClient.open(`${server.ws}/ws`);
    try {
      const status = await c.waitFor((m) => m.type === "server_status", "server_status");
      assert.deepEqual(Object.keys(status), [
        "type", "connected_peers", "active_sources", "symbols_tracked", "uptime_seconds",
      ]);
      assert.ok(status.connected_peers >= 1, "this connection counts");
      assert.ok(status.active_sources >= 1 && status.symbols_tracked >= 20);
      assert.ok(Number.isInteger(status.uptime_seconds) && status.uptime_seconds >= 0);
    } finally {
      c.close();
    }
  });

  test("an unknown symbol gets invalid_symbol and the rest still applies", async () => {
    const c = await FeedClient.open(`${server.ws}/ws`);
    try {
      c.send({ type: "subscribe", symbols: ["xyz", "eth"] });
      const err = await c.waitFor((m) => m.type === "error", "error");
      assert.deepEqual(err, { type: "error", code: "invalid_symbol", message: "Symbol 'xyz' not found" });
      const price = await c.waitFor((m) => m.type === "price_update", "price_update");
      assert.equal(price.symbol, "eth");
    } finally {
      c.close();
    }
  });
});
