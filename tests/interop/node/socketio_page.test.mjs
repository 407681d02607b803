// The watchlist page the binary serves (`/watchlist`), in Debian's headless Chromium driven by
// `playwright-core`: it loads `socket.io-client` from the server (nothing from a CDN),
// connects to `/market`, subscribes, and prices change on screen; a screenshot is saved.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { TickwireServer, WAIT_MS, browser, within } from "./server.mjs";

const server = new TickwireServer();
before(() => server.start());
after(() => server.stop());

test("the watchlist streams prices over Socket.IO in a browser", { timeout: 3 * WAIT_MS }, async (t) => {
  const chromium = await browser("watchlist", { width: 1000, height: 420 });
  try {
    const page = chromium.page;
    const consoleErrors = [];
    const requests = [];
    page.on("console", (msg) => msg.type() === "error" && consoleErrors.push(msg.text()));
    page.on("pageerror", (err) => consoleErrors.push(String(err)));
    page.on("request", (req) => requests.push(req.url()));
    await page.goto(`${server.http}/watchlist`, { waitUntil: "load", timeout: WAIT_MS });
    const waitFor = (what, predicate, arg) =>
      within(page.waitForFunction(predicate, arg, { timeout: WAIT_MS, polling: 100 }), what);
    await waitFor("streaming", () => document.getElementById("status").textContent.startsWith("streaming"));
    const btc = () => page.evaluate(() => document.querySelector('tr[data-symbol="BTC/USD"] .last').textContent);
    await waitFor("a BTC price", () => document.querySelector('tr[data-symbol="BTC/USD"] .last').textContent !== "–");
    const first = await btc();
    await waitFor("the BTC price to change", (before) => document.querySelector('tr[data-symbol="BTC/USD"] .last').textContent !== before, first);
    await waitFor("updates of three instruments", () =>
      [...document.querySelectorAll("#watchlist tbody .count")].filter((td) => Number(td.textContent) > 1).length >= 3,
    );
    t.diagnostic(`screenshot: ${await chromium.shot("watchlist.png")}`);
    assert.deepEqual(consoleErrors, [], "the page logged errors");
    const origin = new URL(server.http).origin;
    const elsewhere = requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith("ws://127.0.0.1") && !u.startsWith("data:"));
    assert.deepEqual(elsewhere, [], "the page loaded URLs outside the server");
    assert.ok(requests.includes(`${origin}/watchlist/socket.io.min.js`), requests.join("\n"));
  } finally {
    await chromium.close();
  }
});
