// Reliable-session recovery with the official JavaScript client, `@azure/web-pubsub-client`
// (its default subprotocol, `json.reliable.webpubsub.azure.v1`): a steady stream of
// numbered messages to a group, and the member's connection cut five times through a TCP
// relay the test controls (resets, and dead links of seconds that end in a reset). The
// SDK reconnects with `awps_connection_id` and `awps_reconnection_token`; the application
// must see every message once, in order.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";

import { WebPubSubClient, WebPubSubJsonReliableProtocol } from "@azure/web-pubsub-client";

import { Relay } from "./relay.mjs";
import { DEMO_KEY, PUBLISHER_KEY, TickwireServer, WAIT_MS, within } from "./server.mjs";

const TOTAL = 600;
const RATE_PER_SECOND = 50;
const CUTS = ["reset", "dead", "reset", "dead", "reset"];
const DEAD_MS = 3000;

const server = new TickwireServer();
let relay;
before(async () => {
  await server.start();
  relay = new Relay(server.port);
  await relay.listen();
});
after(async () => {
  await relay?.close();
  await server.stop();
});

function client(key, viaRelay) {
  return new WebPubSubClient(
    {
      getClientAccessUrl: async () => {
        const url = new URL(await server.clientAccessUrl("state_gex", key));
        if (viaRelay) {
          url.port = String(relay.port);
        }
        return url.toString();
      },
    },
    {
      protocol: WebPubSubJsonReliableProtocol(),
      // A failed recovery must show, not be papered over by a new connection.
      autoReconnect: false,
      keepAliveIntervalInMs: 1000,
      keepAliveTimeoutInMs: 6000,
    },
  );
}

test("a reliable client loses nothing across five cuts of its connection", { timeout: 120_000 }, async (t) => {
  const { prefix } = await server.negotiate(DEMO_KEY);
  const group = `${prefix}_RCVR_state_gex_zero`;

  const member = client(DEMO_KEY, true);
  const got = [];
  let lastArrival = 0;
  let arrived;
  member.on("group-message", (e) => {
    if (e.message.group === group) {
      got.push(Number(e.message.data));
      lastArrival = Date.now();
      arrived?.();
    }
  });
  let stopped = false;
  member.on("stopped", () => (stopped = true));
  await within(member.start(), "member start");
  await within(member.joinGroup(group), "member join");

  const publisher = client(PUBLISHER_KEY, false);
  await within(publisher.start(), "publisher start");
  const publishing = (async () => {
    for (let n = 1; n <= TOTAL; n++) {
      await publisher.sendToGroup(group, String(n), "text", { noEcho: true, fireAndForget: true });
      await delay(1000 / RATE_PER_SECOND);
    }
  })();

  const waitFor = (count) =>
    within(
      (async () => {
        while (got.length < count) {
          await new Promise((ok) => (arrived = ok));
        }
      })(),
      `${count} messages (have ${got.length})`,
      60_000,
    );

  const resumes = [];
  for (const [i, cut] of CUTS.entries()) {
    await waitFor((i + 1) * 80);
    if (cut === "reset") {
      relay.reset();
    } else {
      await relay.deadLink(DEAD_MS);
    }
    const cutAt = Date.now();
    const before = got.length;
    await waitFor(before + 1);
    resumes.push([cut, lastArrival - cutAt]);
  }
  await publishing;
  await waitFor(TOTAL);
  // Nothing more comes: no duplicate after the last.
  await delay(500);

  const expected = Array.from({ length: TOTAL }, (_, i) => i + 1);
  assert.deepEqual(got, expected, "every message once, in order");
  assert.equal(stopped, false, "the client never gave up");
  for (const [cut, ms] of resumes) {
    t.diagnostic(`resumed after a ${cut === "dead" ? `${DEAD_MS} ms dead link` : "reset"}: first message ${ms} ms after the cut`);
  }
  t.diagnostic(`the relay swallowed ${relay.swallowed} bytes during dead links`);
  member.stop();
  publisher.stop();
});
