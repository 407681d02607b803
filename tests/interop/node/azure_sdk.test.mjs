// The official JavaScript client, `@azure/web-pubsub-client`, against tickwire-server.
//
// The SDK takes a client access URL (`ws://HOST/client/hubs/HUB?access_token=JWT`) from
// `getClientAccessUrl`, where an application calls `/negotiate`; it speaks
// `json.reliable.webpubsub.azure.v1` (its default) or `json.webpubsub.azure.v1`. Replayed
// records arrive as `dataType: "binary"`: the bytes of a `google.protobuf.Any` whose
// value is a zstd frame.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";

import {
  SendMessageError,
  WebPubSubClient,
  WebPubSubJsonProtocol,
  WebPubSubJsonReliableProtocol,
} from "@azure/web-pubsub-client";

import { DEMO_KEY, PUBLISHER_KEY, TickwireServer, WAIT_MS, within } from "./server.mjs";

const TEST_TIMEOUT_MS = 3 * WAIT_MS;
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

const server = new TickwireServer();
before(() => server.start());
after(() => server.stop());

// Every client a test opens, stopped after it whatever happened.
let opened = [];
afterEach(async () => {
  const clients = opened;
  opened = [];
  await Promise.all(clients.map((c) => c.close()));
});

/** A started SDK client with its group messages collected in order. */
class SdkClient {
  constructor(protocol, key, hub) {
    this.prefix = undefined;
    this.urlsFetched = 0;
    this.client = new WebPubSubClient(
      {
        getClientAccessUrl: async () => {
          this.urlsFetched += 1;
          return server.clientAccessUrl(hub, key);
        },
      },
      {
        protocol,
        autoReconnect: false,
        messageRetryOptions: { maxRetries: 0 },
        // Exercise the SDK's `{"type":"ping"}` keep-alive within a test's lifetime. The
        // SDK checks for a silent server every keepAliveTimeoutInMs / 3 and that last
        // wait outlives stop(): keep it short so the test process can end (the default
        // 120 s holds it for 40 s).
        keepAliveIntervalInMs: 1000,
        keepAliveTimeoutInMs: 6000,
      },
    );
    this.messages = [];
    this.wake = undefined;
    this.client.on("group-message", (e) => {
      this.messages.push(e.message);
      this.wake?.();
    });
    this.connected = new Promise((ok) => this.client.on("connected", ok));
    this.stopped = new Promise((ok) => this.client.on("stopped", ok));
    this.started = false;
  }

  static async open(protocol, { key = DEMO_KEY, hub = "state_gex" } = {}) {
    const c = new SdkClient(protocol, key, hub);
    opened.push(c);
    c.prefix = (await server.negotiate(key)).prefix;
    await within(c.client.start(), "start");
    c.started = true;
    return c;
  }

  /** The next group message matching `predicate`, taken out of the queue. */
  next(predicate, what) {
    const take = async () => {
      for (;;) {
        while (this.messages.length > 0) {
          const msg = this.messages.shift();
          if (predicate(msg)) {
            return msg;
          }
        }
        await new Promise((ok) => (this.wake = ok));
      }
    };
    return within(take(), what);
  }

  async close() {
    if (this.started) {
      this.client.stop();
      await within(this.stopped, "stopped event");
      this.started = false;
    }
  }
}

/** Reads a protobuf varint at `pos`: [value, next position]. */
function varint(bytes, pos) {
  let value = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    const b = bytes[pos++];
    assert.notEqual(b, undefined, "truncated varint");
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) {
      return [value, pos];
    }
  }
  throw new Error("varint too long");
}

/** Checks the bytes of an encoded `google.protobuf.Any`: its type URL and a zstd value. */
function assertAny(data, typeUrl) {
  assert.ok(data instanceof ArrayBuffer, `binary data should be an ArrayBuffer, is ${typeof data}`);
  const bytes = new Uint8Array(data);
  assert.ok(Buffer.from(bytes).includes(typeUrl), `the bytes do not contain ${typeUrl}`);
  assert.equal(bytes[0], 0x0a, "the first field must be Any.type_url (1, length-delimited)");
  const [urlLen, urlStart] = varint(bytes, 1);
  assert.equal(Buffer.from(bytes.subarray(urlStart, urlStart + urlLen)).toString("utf8"), typeUrl);
  let pos = urlStart + urlLen;
  assert.equal(bytes[pos], 0x12, "the second field must be Any.value (2, length-delimited)");
  const [valueLen, valueStart] = varint(bytes, pos + 1);
  pos = valueStart + valueLen;
  assert.equal(pos, bytes.length, "trailing bytes after Any.value");
  assert.deepEqual([...bytes.subarray(valueStart, valueStart + 4)], ZSTD_MAGIC, "Any.value is not a zstd frame");
}

const PROTOCOLS = [
  ["json.reliable.webpubsub.azure.v1", WebPubSubJsonReliableProtocol, true],
  ["json.webpubsub.azure.v1", WebPubSubJsonProtocol, false],
];

const FEEDS = [
  { hub: "state_gex", suffix: "SPX_state_gex_zero", typeUrl: "proto.gex" },
  { hub: "classic", suffix: "ES_SPX_classic_gex_one", typeUrl: "proto.gex" },
  { hub: "orderflow", suffix: "NDX_orderflow_orderflow", typeUrl: "proto.orderflow" },
  { hub: "state_greeks_zero", suffix: "SPX_state_charm_zero", typeUrl: "proto.greek" },
  { hub: "state_greeks_one", suffix: "ES_SPX_state_delta_one", typeUrl: "proto.greek" },
];

for (const [name, makeProtocol, reliable] of PROTOCOLS) {
  describe(`@azure/web-pubsub-client over ${name}`, { timeout: 10 * TEST_TIMEOUT_MS }, () => {
    test("start() connects through getClientAccessUrl", { timeout: TEST_TIMEOUT_MS }, async () => {
      const c = await SdkClient.open(makeProtocol());
      const connected = await within(c.connected, "connected event");
      assert.ok(connected.connectionId, "connected event without connectionId");
      assert.equal(c.urlsFetched, 1);
    });

    for (const feed of FEEDS) {
      test(`joinGroup and replayed records of ${feed.hub}`, { timeout: TEST_TIMEOUT_MS }, async () => {
        const c = await SdkClient.open(makeProtocol(), { hub: feed.hub });
        const group = `${c.prefix}_${feed.suffix}`;
        const joined = await within(c.client.joinGroup(group), "join ack");
        assert.equal(typeof joined.ackId, "number");
        const sequenceIds = [];
        for (let i = 0; i < 2; i++) {
          const msg = await c.next((m) => m.group === group, `data message of ${group}`);
          assert.equal(msg.dataType, "binary");
          assertAny(msg.data, feed.typeUrl);
          sequenceIds.push(msg.sequenceId);
        }
        if (reliable) {
          assert.ok(sequenceIds[0] >= 1, `sequenceId ${sequenceIds[0]}`);
          assert.equal(sequenceIds[1], sequenceIds[0] + 1);
        } else {
          assert.deepEqual(sequenceIds, [undefined, undefined]);
        }
      });
    }

    test("sendToGroup round trip with the publishing key", { timeout: TEST_TIMEOUT_MS }, async () => {
      const publisher = await SdkClient.open(makeProtocol(), { key: PUBLISHER_KEY });
      const member = await SdkClient.open(makeProtocol());
      const group = `${publisher.prefix}_NDX_state_gex_one`;
      await within(publisher.client.joinGroup(group), "publisher join ack");
      await within(member.client.joinGroup(group), "member join ack");
      const tag = randomUUID();
      const own = (m) => m.group === group && m.dataType !== "binary";

      // Messages of one connection arrive in order: once the echoed text sent second is
      // in, the noEcho text sent first would have been in before it.
      await within(publisher.client.sendToGroup(group, `${tag}-silent`, "text", { noEcho: true }), "ack");
      const sent = await within(publisher.client.sendToGroup(group, `${tag}-text`, "text"), "ack");
      assert.equal(typeof sent.ackId, "number");
      await within(publisher.client.sendToGroup(group, { tag, n: 1 }, "json"), "ack");
      const payload = Uint8Array.from([0, 1, ...Buffer.from(tag)]);
      await within(publisher.client.sendToGroup(group, payload.buffer, "binary"), "ack");

      const echoed = await publisher.next(own, "the echoed text");
      assert.equal(echoed.dataType, "text");
      assert.equal(echoed.data, `${tag}-text`, "the noEcho message came back to its sender");
      const echoedJson = await publisher.next(own, "the echoed JSON");
      assert.equal(echoedJson.dataType, "json");
      assert.deepEqual(echoedJson.data, { tag, n: 1 });

      const isOwnBinary = (m) =>
        m.group === group && m.dataType === "binary" && new Uint8Array(m.data)[0] === 0 && new Uint8Array(m.data)[1] === 1;
      const echoedBinary = await publisher.next(isOwnBinary, "the echoed bytes");
      assert.deepEqual(new Uint8Array(echoedBinary.data), payload);

      // The other member gets all four, the noEcho one included, in order.
      const texts = [];
      while (texts.length < 3) {
        const m = await member.next(own, "a published message");
        texts.push(m.data);
      }
      assert.deepEqual(texts, [`${tag}-silent`, `${tag}-text`, { tag, n: 1 }]);
      const memberBinary = await member.next(isOwnBinary, "the published bytes");
      assert.deepEqual(new Uint8Array(memberBinary.data), payload);
    });

    test("sendToGroup without the send role is Forbidden", { timeout: TEST_TIMEOUT_MS }, async () => {
      const c = await SdkClient.open(makeProtocol(), { key: DEMO_KEY });
      const group = `${c.prefix}_SPX_state_gex_zero`;
      await assert.rejects(within(c.client.sendToGroup(group, "nope", "text"), "ack"), (err) => {
        assert.ok(err instanceof SendMessageError, `unexpected error ${err}`);
        assert.equal(err.errorDetail?.name, "Forbidden");
        return true;
      });
    });

    test("joinGroup of a group of another hub is refused", { timeout: TEST_TIMEOUT_MS }, async () => {
      const c = await SdkClient.open(makeProtocol());
      await assert.rejects(within(c.client.joinGroup(`${c.prefix}_SPX_orderflow_orderflow`), "ack"), (err) => {
        assert.ok(err instanceof SendMessageError, `unexpected error ${err}`);
        assert.ok(err.errorDetail?.name, "a refusal without an error name");
        return true;
      });
      // The connection survives the refusal.
      await within(c.client.joinGroup(`${c.prefix}_SPX_state_gex_zero`), "join ack");
    });

    test("stop() ends the connection", { timeout: TEST_TIMEOUT_MS }, async () => {
      const c = await SdkClient.open(makeProtocol());
      await within(c.connected, "connected event");
      c.client.stop();
      await within(c.stopped, "stopped event");
      c.started = false;
    });
  });
}
