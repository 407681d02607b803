// Seed 003's Socket.IO channel, the `/market` namespace, driven by the npm `socket.io-client`
// (4.x) over each transport: the greeting, the key in the handshake's `auth`, the upgrade from
// long-polling to a WebSocket, and a refusal as `connect_error` with its reason.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { io } from "socket.io-client";

import { DEMO_KEY, TickwireServer, WAIT_MS, within } from "./server.mjs";

const server = new TickwireServer();
before(() => server.start());
after(() => server.stop());

/** A `/market` socket, and a promise of its first `connected` event. */
function market(options) {
  const socket = io(`${server.http}/market`, { reconnection: false, timeout: WAIT_MS, ...options });
  const greeted = new Promise((ok) => socket.once("connected", ok));
  return { socket, greeted };
}

for (const transports of [["websocket"], ["polling"]]) {
  test(`a client over ${transports[0]} is greeted`, { timeout: 2 * WAIT_MS }, async () => {
    const { socket, greeted } = market({ transports, auth: { api_key: DEMO_KEY } });
    try {
      assert.deepEqual(await within(greeted, "connected"), { status: "ok" });
      assert.equal(socket.io.engine.transport.name, transports[0]);
    } finally {
      socket.close();
    }
  });
}

test("a client that starts on long-polling upgrades to a WebSocket", { timeout: 2 * WAIT_MS }, async () => {
  const { socket, greeted } = market({ auth: { api_key: DEMO_KEY } });
  try {
    await within(greeted, "connected");
    const engine = socket.io.engine;
    if (engine.transport.name !== "websocket") {
      await within(new Promise((ok) => engine.once("upgrade", ok)), "the upgrade");
    }
    assert.equal(engine.transport.name, "websocket");
  } finally {
    socket.close();
  }
});

test("a wrong key gets connect_error with the reason; the server carries on", { timeout: 2 * WAIT_MS }, async () => {
  const { socket } = market({ transports: ["websocket"], auth: { api_key: "not-a-key" } });
  try {
    const error = await within(new Promise((ok) => socket.once("connect_error", ok)), "connect_error");
    assert.match(error.message, /invalid api key/);
  } finally {
    socket.close();
  }
  const other = market({ transports: ["websocket"], auth: { api_key: DEMO_KEY } });
  try {
    assert.deepEqual(await within(other.greeted, "connected"), { status: "ok" });
  } finally {
    other.socket.close();
  }
});

test("get_quote answers from the cache through the acknowledgement", { timeout: 2 * WAIT_MS }, async () => {
  const { socket, greeted } = market({ transports: ["polling"], auth: { api_key: DEMO_KEY } });
  try {
    await within(greeted, "connected");
    let reply;
    const deadline = Date.now() + WAIT_MS;
    do {
      reply = await within(socket.timeout(WAIT_MS).emitWithAck("get_quote", { symbol: "BTC/USD", exchange: "CRYPTO" }), "the ack");
    } while (reply.status !== "success" && Date.now() < deadline);
    assert.equal(reply.status, "success", JSON.stringify(reply));
    assert.equal(reply.data.type, "market_data");
    assert.equal(reply.data.symbol, "BTC/USD");
    assert.ok(reply.data.data.ltp > 0, JSON.stringify(reply));
  } finally {
    socket.close();
  }
});

for (const transports of [["websocket"], ["polling"]]) {
  test(`subscribe streams market_data over ${transports[0]}, snapshot first; unsubscribe stops it`, { timeout: 3 * WAIT_MS }, async () => {
    const { socket, greeted } = market({ transports, auth: { api_key: DEMO_KEY } });
    const received = [];
    let wake;
    socket.on("market_data", (msg) => {
      received.push(msg);
      wake?.();
    });
    const nextData = (count) =>
      within(
        new Promise((ok) => {
          const check = () => (received.length >= count ? ok() : (wake = check));
          check();
        }),
        `${count} market_data`,
      );
    try {
      await within(greeted, "connected");
      const reply = await within(
        socket.timeout(WAIT_MS).emitWithAck("subscribe", { symbols: [{ symbol: "BTC/USD", exchange: "CRYPTO" }], mode: "LTP" }),
        "the subscribe ack",
      );
      assert.equal(reply.status, "success", JSON.stringify(reply));
      assert.deepEqual(reply.subscribed, [{ symbol: "BTC/USD", exchange: "CRYPTO" }]);
      await nextData(3);
      for (const msg of received) {
        assert.equal(msg.type, "market_data");
        assert.equal(msg.symbol, "BTC/USD");
        assert.ok(msg.data.ltp > 0);
      }
      const left = await within(
        socket.timeout(WAIT_MS).emitWithAck("unsubscribe", { symbols: [{ symbol: "BTC/USD", exchange: "CRYPTO" }], mode: "LTP" }),
        "the unsubscribe ack",
      );
      assert.equal(left.status, "success", JSON.stringify(left));
    } finally {
      socket.close();
    }
  });
}
