// Native TLS (`[tls]`) with a certificate generated for the test (`selfsigned`): the official
// JavaScript Azure Web PubSub client negotiates over `https://`, is handed `wss://` URLs, and
// receives replayed records over them; a client that does not trust the certificate is
// refused, and the server carries on.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import selfsigned from "selfsigned";
import WebSocket from "ws";

import { DEMO_KEY, TickwireServer, WAIT_MS, runClient, within } from "./server.mjs";

const dir = mkdtempSync(join(tmpdir(), "tickwire-tls-"));
const cert = join(dir, "cert.pem");
const key = join(dir, "key.pem");
let server;

before(async () => {
  const pems = await selfsigned.generate([{ name: "commonName", value: "127.0.0.1" }], {
    keyType: "ec",
    algorithm: "sha256",
    extensions: [
      { name: "basicConstraints", cA: true },
      { name: "subjectAltName", altNames: [{ type: 7, ip: "127.0.0.1" }, { type: 2, value: "localhost" }] },
    ],
  });
  writeFileSync(cert, pems.cert);
  writeFileSync(key, pems.private);
  server = new TickwireServer({ tls: { cert, key } });
  await server.start();
});

after(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("the Azure JS SDK negotiates over https and receives over wss", { timeout: 3 * WAIT_MS }, async () => {
  assert.ok(server.http.startsWith("https://"));
  const run = await runClient("azure_wss_client.mjs", {
    env: {
      NODE_EXTRA_CA_CERTS: cert,
      SERVER_HTTP: server.http,
      API_KEY: DEMO_KEY,
      GROUP_SUFFIX: "ES_SPX_classic_gex_one",
      MESSAGES: "2",
    },
  });
  assert.equal(run.code, 0, `client failed: ${run.stderr.join("\n")}\n${run.stdout.join("\n")}\n${server.logTail()}`);
  assert.ok(run.stdout.includes(`@@url wss://127.0.0.1:${server.port}/ws/classic`), run.stdout.join("\n"));
  assert.ok(run.stdout.some((l) => l.startsWith("@@connected ")), run.stdout.join("\n"));
  const messages = run.stdout.filter((l) => l.startsWith("@@message "));
  assert.equal(messages.length, 2, run.stdout.join("\n"));
  for (const line of messages) {
    const [, group, dataType, bytes] = line.split(" ");
    assert.match(group, /_ES_SPX_classic_gex_one$/);
    assert.equal(dataType, "binary");
    assert.ok(Number(bytes) > 0);
  }
});

test("a client that does not trust the certificate is refused; others carry on", { timeout: 2 * WAIT_MS }, async () => {
  const refused = await within(
    new Promise((ok) => {
      const ws = new WebSocket(`${server.ws}/ws`);
      ws.once("open", () => ok("open"));
      ws.once("error", (err) => ok(err.code ?? String(err)));
    }),
    "the untrusting client",
  );
  assert.match(refused, /SELF_SIGNED|UNABLE_TO_VERIFY|DEPTH_ZERO/);
  const trusted = await within(
    new Promise((ok, fail) => {
      const ws = new WebSocket(`${server.ws}/ws`, { ca: [readCert()] });
      ws.once("open", () => {
        ws.close();
        ok("open");
      });
      ws.once("error", fail);
    }),
    "a trusting client",
  );
  assert.equal(trusted, "open");
});

function readCert() {
  return readFileSync(cert);
}
