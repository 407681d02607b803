// The operators' dashboard in a real browser, Debian's headless Chromium driven by
// `playwright-core`: the page loads from the server alone with no console error, its figures
// follow what the test does (connections by endpoint, deliveries per second, an instrument
// published), the market view streams prices over /ws, and a screenshot is saved.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import WebSocket from "ws";

import { FAST_FEEDS_CONFIG, OPERATOR_KEY, TickwireServer, WAIT_MS, browser, within } from "./server.mjs";

const server = new TickwireServer({ extraConfig: FAST_FEEDS_CONFIG });
before(() => server.start());
after(() => server.stop());

/** Opens a /ws client subscribed to the prices of `symbols`. */
async function priceClient(symbols) {
  const ws = new WebSocket(`${server.ws}/ws`);
  await within(new Promise((ok, fail) => { ws.once("open", ok); ws.once("error", fail); }), "a /ws client to connect");
  ws.send(JSON.stringify({ type: "subscribe", symbols, channels: ["price"] }));
  return ws;
}

test("the dashboard shows live figures that follow the clients and the market", { timeout: 4 * WAIT_MS }, async (t) => {
  const chromium = await browser("dashboard", { width: 1280, height: 900 });
  const clients = [];
  try {
    const page = chromium.page;
    const consoleErrors = [];
    const requests = [];
    page.on("console", (msg) => msg.type() === "error" && consoleErrors.push(msg.text()));
    page.on("pageerror", (err) => consoleErrors.push(String(err)));
    page.on("request", (req) => requests.push(req.url()));

    // `/` links to the dashboard.
    await page.goto(`${server.http}/`, { waitUntil: "load", timeout: WAIT_MS });
    await page.click('a[href="/dashboard"]');
    await page.waitForURL(`${server.http}/dashboard`, { timeout: WAIT_MS });

    const text = (id) => page.evaluate((id) => document.getElementById(id).textContent, id);
    const number = async (id) => Number((await text(id)).replaceAll(",", ""));
    const waitFor = (what, predicate, arg) =>
      within(page.waitForFunction(predicate, arg, { timeout: WAIT_MS, polling: 100 }), what);

    // The page's own market view is a /ws client: one connection, and prices on screen.
    await waitFor("the page's figures", () => document.getElementById("status").textContent.startsWith("live"));
    await waitFor("the market view's prices", () => document.querySelectorAll("#market tbody tr").length >= 2);
    await waitFor("the page's own /ws connection", () => document.getElementById("connections-total").textContent === "1");
    const btcBefore = await page.evaluate(() => document.querySelector("#market tbody tr td:nth-child(2)").textContent);

    // Five clients more: the total and the /ws row follow, and deliveries per second rise.
    for (let i = 0; i < 5; i++) clients.push(await priceClient(["btc", "eth", "sol"]));
    await waitFor("six connections", () => document.getElementById("connections-total").textContent === "6");
    const wsRow = await page.evaluate(() =>
      [...document.querySelectorAll("#connections tbody tr")].map((tr) => tr.textContent).join(" "),
    );
    assert.match(wsRow, /^ws6$/, wsRow);
    await waitFor("deliveries per second", () => Number(document.getElementById("rate").textContent.replaceAll(",", "")) > 0);
    await waitFor("the busiest topic to have the clients", () =>
      [...document.querySelectorAll("#topics tbody tr")].some(
        (tr) => tr.cells[0].textContent === "ws:price:CRYPTO:BTC/USD" && tr.cells[2].textContent === "6",
      ),
    );

    // An instrument published through the API is counted.
    const instruments = await number("instruments");
    const resp = await fetch(`${server.http}/api/v1/publish`, {
      method: "POST",
      headers: { Authorization: `Bearer ${OPERATOR_KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify([{ kind: "tick", symbol: "DASH/TEST", exchange: "CRYPTO", price: 12.5 }]),
      signal: AbortSignal.timeout(WAIT_MS),
    });
    assert.ok(resp.ok, `publish answered ${resp.status}`);
    await waitFor("the published instrument", (n) => Number(document.getElementById("instruments").textContent.replaceAll(",", "")) === n + 1, instruments);

    // The prices move on screen, and the adapters are shown with their state.
    await waitFor("a new BTC price", (before) => document.querySelector("#market tbody tr td:nth-child(2)").textContent !== before, btcBefore);
    const adapters = await text("adapters");
    assert.match(adapters, /syntheticrunning/, adapters);

    // The clients leave: the figures come back down.
    for (const ws of clients.splice(0)) ws.close();
    await waitFor("one connection again", () => document.getElementById("connections-total").textContent === "1");

    t.diagnostic(`screenshot: ${await chromium.shot("dashboard.png")}`);

    assert.deepEqual(consoleErrors, [], "the page logged errors");
    const origin = new URL(server.http).origin;
    const wsOrigin = new URL(server.ws).origin;
    const elsewhere = requests.filter(
      (u) => !u.startsWith(`${origin}/`) && !u.startsWith(`${wsOrigin}/`) && !u.startsWith("data:"),
    );
    assert.deepEqual(elsewhere, [], "the page loaded URLs outside the server");
  } finally {
    for (const ws of clients) ws.close();
    await chromium.close();
  }
});
