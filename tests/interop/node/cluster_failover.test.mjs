// A cluster node killed under the official JavaScript client, `@azure/web-pubsub-client`.
//
// Two tickwire-server nodes share a real `nats-server` (Debian's, with JetStream). The client
// gets its URL from `/negotiate` (asked of whichever node answers, as a load balancer in front
// would), which sends it to the least-loaded node; a group's numbered messages are published on
// the other node's publish API and reach it through NATS. Its node is then killed (SIGKILL: no
// close frame, no leaving entry in the registry). The SDK reconnects on its own, asks for a URL
// again, is sent to the surviving node (the node answering `/negotiate` asks the one it would
// hand out whether it is up, through NATS), joins its group again and receives what is published
// from then on, every message once and in order.

import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { test } from "node:test";

import { WebPubSubClient, WebPubSubJsonProtocol } from "@azure/web-pubsub-client";
import WebSocket from "ws";

import { DEMO_KEY, TickwireServer, WAIT_MS, within } from "./server.mjs";

const PUBLISH_KEY = "tickwire-cluster-publish-key";
const PUBLISH_CONFIG = `
[[api_keys]]
name = "cluster-publisher"
key = "${PUBLISH_KEY}"
roles = ["publish"]
`;

function natsBinary() {
  const candidates = [process.env.TICKWIRE_NATS_SERVER, "/usr/sbin/nats-server", "/usr/bin/nats-server"];
  for (const c of candidates) {
    if (c && existsSync(c)) {
      return c;
    }
  }
  try {
    return execFileSync("sh", ["-c", "command -v nats-server"]).toString().trim();
  } catch {
    throw new Error("nats-server not found: install Debian's nats-server (scripts/test does)");
  }
}

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

async function startNats() {
  const port = await freePort();
  const store = mkdtempSync(join(tmpdir(), "tickwire-nats-node-"));
  const child = spawn(natsBinary(), ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", store], {
    stdio: "ignore",
  });
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const up = await new Promise((ok) => {
      const sock = createConnection({ host: "127.0.0.1", port }, () => {
        sock.end();
        ok(true);
      });
      sock.once("error", () => ok(false));
    });
    if (up) {
      break;
    }
    assert.ok(Date.now() < deadline, "nats-server listens");
    await delay(50); // polling interval of a bounded readiness wait
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    stop() {
      child.kill("SIGKILL");
      rmSync(store, { recursive: true, force: true });
    },
  };
}

/** The `state_gex` URL `/negotiate` hands out, asked of the first node that answers. */
async function negotiated(nodes) {
  for (const node of nodes) {
    try {
      const resp = await fetch(`${node.http}/negotiate`, {
        headers: { Authorization: `Basic ${DEMO_KEY}` },
        signal: AbortSignal.timeout(2000),
      });
      if (resp.status === 200) {
        return await resp.json();
      }
    } catch {
      // this node is gone: the next
    }
  }
  throw new Error("no node answers /negotiate");
}

function clientAccessUrl(hubUrl) {
  const url = new URL(hubUrl);
  url.pathname = "/client/hubs/state_gex";
  return url.toString();
}

async function until(what, condition, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `${what} within ${ms} ms`);
    await delay(50); // polling interval of a bounded wait
  }
}

test("a killed node's client moves to another node through /negotiate", { timeout: 6 * WAIT_MS }, async () => {
  const nats = await startNats();
  const secret = Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join("");
  const node = (name) =>
    new TickwireServer({
      extraConfig: PUBLISH_CONFIG,
      env: (srv) => ({
        TICKWIRE_CLUSTER__NATS_URL: nats.url,
        TICKWIRE_CLUSTER__NODE_NAME: name,
        TICKWIRE_PUBLIC_URL: `http://127.0.0.1:${srv.port}`,
        TICKWIRE_TOKEN_SECRET: secret,
      }),
    });
  const a = node("a");
  const b = node("b");
  const busy = [];
  let client;
  let publishing = true;
  try {
    await a.start();
    await b.start();
    const nodes = [a, b];
    // b is the busier node, so /negotiate (of either node) sends new clients to a.
    for (let i = 0; i < 3; i++) {
      const ws = new WebSocket(`${b.ws}/ws`);
      await within(new Promise((ok, fail) => ws.once("open", ok).once("error", fail)), "a /ws connection");
      busy.push(ws);
    }
    await until("both nodes sending new clients to a", async () => {
      for (const n of nodes) {
        const resp = await fetch(`${n.http}/negotiate`, { headers: { Authorization: `Basic ${DEMO_KEY}` } });
        if (!(await resp.json()).websocket_urls.state_gex.includes(`:${a.port}/`)) {
          return false;
        }
      }
      return true;
    });

    const handedOut = [];
    client = new WebPubSubClient(
      {
        getClientAccessUrl: async () => {
          const url = clientAccessUrl((await negotiated(nodes)).websocket_urls.state_gex);
          handedOut.push(url);
          return url;
        },
      },
      {
        protocol: WebPubSubJsonProtocol(),
        autoReconnect: true,
        autoRejoinGroups: true,
        // The SDK's keep-alive check outlives stop() by a third of this: keep it short so the
        // test process can end (the default 120 s holds it for 40 s).
        keepAliveIntervalInMs: 1000,
        keepAliveTimeoutInMs: 6000,
      },
    );
    const { prefix } = await negotiated([b]);
    const group = `${prefix}_FAILJS_state_gex_zero`;
    const got = [];
    client.on("group-message", (e) => {
      if (e.message.group === group) {
        got.push([Number(e.message.data), Date.now()]);
      }
    });
    let stopped = false;
    const stoppedEvent = new Promise((ok) => client.on("stopped", ok));
    client.on("stopped", () => (stopped = true));
    await within(client.start(), "start");
    await within(client.joinGroup(group), "joinGroup");
    assert.ok(handedOut.at(-1).includes(`:${a.port}/`), String(handedOut));

    let n = 0;
    const publisher = (async () => {
      while (publishing) {
        n += 1;
        const resp = await fetch(`${b.http}/api/v1/publish`, {
          method: "POST",
          headers: { Authorization: `Bearer ${PUBLISH_KEY}`, "Content-Type": "application/json" },
          body: JSON.stringify({ kind: "raw", group, data_type: "text", data: String(n) }),
        });
        assert.equal(resp.status, 202, await resp.text());
        await delay(50); // the publishing rate: 20 a second
      }
    })();

    // Published on b, delivered by a through NATS.
    await until("messages from b on a", () => got.length >= 20);
    a.child.kill("SIGKILL");
    const killedAt = Date.now();
    const lastBefore = got.at(-1)[0];
    await until(
      "messages again after the node was killed",
      () => got.some(([m, t]) => t > killedAt && m > lastBefore + 5),
      3 * WAIT_MS,
    );
    const firstAfter = got.find(([m, t]) => t > killedAt && m > lastBefore)[1];
    assert.ok(handedOut.at(-1).includes(`:${b.port}/`), `sent to the surviving node: ${handedOut}`);
    assert.equal(stopped, false, "the client never gave up");
    const after = got.filter(([, t]) => t >= firstAfter).map(([m]) => m);
    assert.deepEqual(after, after.map((_, i) => after[0] + i), "every message once, in order");
    console.log(
      `node killed; messages again after ${firstAfter - killedAt} ms, through ${handedOut.length} negotiated URLs`,
    );
    publishing = false;
    await publisher;
    client.stop();
    await within(stoppedEvent, "stopped event");
    client = undefined;
  } finally {
    publishing = false;
    client?.stop();
    for (const ws of busy) {
      ws.terminate();
    }
    await a.stop();
    await b.stop();
    nats.stop();
  }
});
