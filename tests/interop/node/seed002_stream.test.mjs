// The /stream JSON feed (seed 002) with the protocol document's JavaScript clients, run by
// Node with the `ws` package: the "Complete Example" (clients/seed002_stream_client.cjs,
// `Authorization: Bearer`) and the browser form with `?api_key=`.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import WebSocket from "ws";

import { DEMO_KEY, FAST_FEEDS_CONFIG, TickwireServer, WAIT_MS, runClient, within } from "./server.mjs";

const server = new TickwireServer({ extraConfig: FAST_FEEDS_CONFIG });
before(() => server.start());
after(() => server.stop());

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
// The example's price line: `💰 BTC/USD: $45123.50 (coinbase) at 2025-10-10T14:30:00.000Z`.
const PRICE_LINE = /^💰 (BTC|ETH)\/USD: \$\d+\.\d{2} \(synthetic\) at (\S+)$/;
const PRICE_LINES = 3;

describe("the document's Complete Example client", () => {
  test("subscribes and receives prices and heartbeats until SIGINT", { timeout: 2 * WAIT_MS }, async () => {
    const run = await runClient("seed002_stream_client.cjs", {
      env: { CLIENT_URL: `${server.ws}/stream`, CLIENT_API_KEY: DEMO_KEY },
      until: ({ stdout }) =>
        stdout.filter((l) => PRICE_LINE.test(l)).length >= PRICE_LINES && stdout.includes("💓 Heartbeat received"),
      signal: "SIGINT",
    });
    const out = run.stdout;
    assert.equal(run.timedOut, false, `the client did not finish:\n${out.join("\n")}`);
    assert.deepEqual(run.stderr, [], "the client reported errors");
    assert.equal(run.code, 0);
    assert.equal(out[0], "✅ Connected to Project Chrono WebSocket");
    assert.equal(out[1], "📡 Subscribed to: BTC/USD, ETH/USD");
    const prices = out.filter((l) => PRICE_LINE.test(l));
    assert.ok(prices.length >= PRICE_LINES, out.join("\n"));
    for (const line of prices) {
      const ts = PRICE_LINE.exec(line)[2];
      assert.match(ts, ISO_UTC);
      assert.ok(Math.abs(Date.parse(ts) - Date.now()) < 3_600_000, `timestamp ${ts}`);
    }
    assert.ok(out.includes("💓 Heartbeat received"));
    // The SIGINT handler unsubscribes from everything and closes: the server confirms,
    // which the example prints (util.inspect, over several lines) with its default branch,
    // and the connection ends.
    const tail = out.slice(out.indexOf("🛑 Closing connection...")).join("\n");
    assert.match(tail, /📨 Message: \{\s+type: 'unsubscribed',\s+symbols: \[ 'BTC\/USD', 'ETH\/USD' \],/);
    assert.equal(out.at(-1), "🔌 Disconnected from WebSocket");
  });

  test("an unknown key is refused with 401", { timeout: 2 * WAIT_MS }, async () => {
    const run = await runClient("seed002_stream_client.cjs", {
      env: { CLIENT_URL: `${server.ws}/stream`, CLIENT_API_KEY: "not-a-key" },
    });
    assert.equal(run.timedOut, false);
    assert.deepEqual(run.stderr, ["❌ WebSocket error: Unexpected server response: 401"]);
    assert.deepEqual(run.stdout, ["🔌 Disconnected from WebSocket"]);
  });
});

/** Opens a `ws` connection and collects its messages; resolves the refusal's status too. */
function connect(url, options) {
  const ws = new WebSocket(url, options);
  const messages = [];
  const wake = [];
  ws.on("message", (data) => {
    messages.push(JSON.parse(data.toString()));
    wake.splice(0).forEach((w) => w());
  });
  const opened = new Promise((ok, fail) => {
    ws.once("open", () => ok(undefined));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => (body += c));
      res.on("end", () => ok({ status: res.statusCode, body }));
    });
    ws.once("error", fail);
  });
  const next = (predicate, what) =>
    within(new Promise((ok) => {
      const check = () => {
        const i = messages.findIndex(predicate);
        if (i >= 0) {
          ok(messages.splice(i, 1)[0]);
        } else {
          wake.push(check);
        }
      };
      check();
    }), what);
  return { ws, opened, next };
}

describe("the browser form, ?api_key=", () => {
  test("subscribed, then price updates with number prices and ISO timestamps", async () => {
    const c = connect(`${server.ws}/stream?api_key=${DEMO_KEY}`);
    assert.equal(await within(c.opened, "open"), undefined);
    try {
      c.ws.send(JSON.stringify({ type: "subscribe", symbols: ["BTC/USD", "ETH/USD"] }));
      const sub = await c.next((m) => m.type === "subscribed", "subscribed");
      assert.deepEqual(Object.keys(sub), ["type", "symbols", "timestamp"]);
      assert.deepEqual(sub.symbols, ["BTC/USD", "ETH/USD"]);
      assert.match(sub.timestamp, ISO_UTC);
      const price = await c.next((m) => m.type === "price_update", "price_update");
      assert.deepEqual(Object.keys(price), ["type", "symbol", "price", "volume", "timestamp", "source"]);
      assert.ok(["BTC/USD", "ETH/USD"].includes(price.symbol));
      assert.equal(typeof price.price, "number");
      assert.ok(price.volume === null || typeof price.volume === "number");
      assert.match(price.timestamp, ISO_UTC);
      assert.equal(price.source, "synthetic");
      c.ws.send(JSON.stringify({ type: "ping" }));
      const pong = await c.next((m) => m.type === "pong", "pong");
      assert.deepEqual(Object.keys(pong), ["type", "timestamp"]);
      assert.match(pong.timestamp, ISO_UTC);
    } finally {
      c.ws.close();
    }
  });

  test("an unknown key in the query is refused with 401 and UNAUTHORIZED", async () => {
    const c = connect(`${server.ws}/stream?api_key=not-a-key`);
    const refused = await within(c.opened, "refusal");
    assert.equal(refused.status, 401);
    const body = JSON.parse(refused.body);
    assert.equal(body.type, "error");
    assert.equal(body.code, "UNAUTHORIZED");
    assert.equal(body.message, "Authentication failed");
    assert.match(body.timestamp, ISO_UTC);
  });
});
