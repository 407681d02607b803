// A page of another origin, in headless Chromium, uses the gateway: `/negotiate` through CORS
// (a preflight, since it sends `Authorization`) and a WebSocket to `/ws`. Allowed when the
// page's origin is in `allowed_origins`; refused by the browser (no CORS permission) and by
// the gateway (403 on the upgrade) when it is not.

import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";


import { DEMO_KEY, TickwireServer, WAIT_MS, browser } from "./server.mjs";

// The page: asks `/negotiate` of the server in its query string and opens its `/ws`, then
// writes what happened into the body as JSON.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>a page of another origin</title></head>
<body><pre id="out">working</pre>
<script>
const server = new URLSearchParams(location.search).get("server");
const result = {};
const show = () => { document.getElementById("out").textContent = JSON.stringify(result, null, 2); };
(async () => {
  try {
    const resp = await fetch(server + "/negotiate", { headers: { Authorization: "Basic ${DEMO_KEY}" } });
    const body = await resp.json();
    result.negotiate = { status: resp.status, hubs: Object.keys(body.websocket_urls).length };
  } catch (err) {
    result.negotiate = { error: String(err) };
  }
  result.websocket = await new Promise((done) => {
    const ws = new WebSocket(server.replace("http", "ws") + "/ws");
    ws.onopen = () => { ws.close(); done("open"); };
    ws.onerror = () => done("refused");
  });
  result.done = true;
  show();
})();
</script></body></html>`;

let pageServer;
let pageOrigin;
let allowing;
let refusing;

before(async () => {
  pageServer = createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(PAGE);
  });
  await new Promise((ok) => pageServer.listen(0, "127.0.0.1", ok));
  pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;
  // Top-level keys go through the environment (the suite's file ends in tables).
  allowing = new TickwireServer({ env: { TICKWIRE_ALLOWED_ORIGINS: `["${pageOrigin}"]` } });
  refusing = new TickwireServer({ env: { TICKWIRE_ALLOWED_ORIGINS: `["https://app.example.com"]` } });
  await allowing.start();
  await refusing.start();
});

after(async () => {
  await allowing?.stop();
  await refusing?.stop();
  pageServer?.close();
});

test("a page of an allowed origin negotiates and connects; another origin's cannot", { timeout: 3 * WAIT_MS }, async (t) => {
  const chromium = await browser("cors-page", { width: 900, height: 500 });
  try {
    const page = chromium.page;
    const resultFor = async (server, name) => {
      await page.goto(`${pageOrigin}/?server=${encodeURIComponent(server.http)}`, { waitUntil: "load", timeout: WAIT_MS });
      await page.waitForFunction(() => document.getElementById("out").textContent.includes('"done"'), undefined, {
        timeout: WAIT_MS,
      });
      t.diagnostic(`screenshot: ${await chromium.shot(`${name}.png`)}`);
      return JSON.parse(await page.evaluate(() => document.getElementById("out").textContent));
    };

    const allowed = await resultFor(allowing, "allowed");
    assert.deepEqual(allowed.negotiate, { status: 200, hubs: 5 }, JSON.stringify(allowed));
    assert.equal(allowed.websocket, "open");

    const refused = await resultFor(refusing, "refused");
    assert.match(refused.negotiate.error ?? "", /TypeError|Failed to fetch/, JSON.stringify(refused));
    assert.equal(refused.websocket, "refused");
    assert.match(refusing.logTail(), /origin not in allowed_origins: refused/);
  } finally {
    await chromium.close();
  }
});
