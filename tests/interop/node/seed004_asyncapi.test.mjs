// The AsyncAPI side of /api/v1/ws (seed 004): the document validates with the official
// parser, `@asyncapi/parser`, and the docs page renders the operations in a real browser,
// Debian's headless Chromium driven by `playwright-core`, loading nothing but the server.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { DiagnosticSeverity, Parser } from "@asyncapi/parser";

import { TickwireServer, WAIT_MS, browser } from "./server.mjs";


const server = new TickwireServer();
before(() => server.start());
after(() => server.stop());

async function fetchDocument() {
  const resp = await fetch(`${server.http}/api/v1/ws/asyncapi.json`, { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(resp.status, 200);
  assert.match(resp.headers.get("content-type"), /^application\/json/);
  return resp.text();
}

describe("the AsyncAPI document", () => {
  test("validates with @asyncapi/parser", async () => {
    const { document, diagnostics } = await new Parser().parse(await fetchDocument());
    const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
    assert.deepEqual(errors.map((d) => `${d.code}: ${d.message} at ${d.path.join(".")}`), []);
    assert.ok(document, "no document parsed");
    assert.equal(document.version(), "2.4.0");

    const channels = document.channels().all().map((c) => c.address());
    assert.deepEqual(channels, ["/"]);
    const ops = Object.fromEntries(
      document.operations().all().map((op) => [op.action(), op.messages().all().map((m) => m.id()).sort()]),
    );
    // publish: what the client sends; subscribe: what the server sends.
    assert.deepEqual(ops.publish, ["bars.subscribe", "bars.unsubscribe"]);
    assert.deepEqual(ops.subscribe, ["bars.subscribe.response", "bars.unsubscribe.response", "bars.update"]);

    // Each request names its reply with x-response.
    const replyOf = (id) => document.components().messages().get(id).extensions().get("x-response")?.value();
    assert.equal(replyOf("bars.subscribe")?.messageId, "bars.subscribe.response");
    assert.equal(replyOf("bars.unsubscribe")?.messageId, "bars.unsubscribe.response");
    assert.equal(document.defaultContentType(), "application/json");
  });
});

describe("the AsyncAPI page in headless Chromium", () => {
  test("shows the operations and loads nothing from elsewhere", { timeout: 3 * WAIT_MS }, async (t) => {
    const chromium = await browser("asyncapi-page", { width: 1200, height: 900 });
    const context = chromium.context;
    try {
      const requests = [];
      const failed = [];
      const consoleErrors = [];
      context.on("request", (req) => requests.push(req.url()));
      context.on("requestfailed", (req) => failed.push(`${req.url()} ${req.failure()?.errorText}`));
      // The browser asks for /favicon.ico on its own; the page does not reference one.
      const isFavicon = (url) => new URL(url).pathname === "/favicon.ico";
      const errorResponses = [];
      context.on("response", (r) => r.status() >= 400 && !isFavicon(r.url()) && errorResponses.push(`${r.status()} ${r.url()}`));
      const page = chromium.page;
      page.on("console", (msg) => {
        if (msg.type() === "error" && !(msg.location()?.url && isFavicon(msg.location().url))) {
          consoleErrors.push(`${msg.text()} (${msg.location()?.url})`);
        }
      });
      page.on("pageerror", (err) => consoleErrors.push(String(err)));

      const resp = await page.goto(`${server.http}/api/v1/ws/asyncapi`, { waitUntil: "load", timeout: WAIT_MS });
      assert.equal(resp.status(), 200);
      // The page renders the document with its own script: wait for the operations' text.
      await page.waitForFunction(
        () => ["bars.subscribe", "bars.unsubscribe", "bars.update"].every((op) => document.body.innerText.includes(op)),
        undefined,
        { timeout: WAIT_MS },
      );
      await page.waitForLoadState("networkidle", { timeout: WAIT_MS });
      const text = await page.evaluate(() => document.body.innerText);
      for (const op of ["bars.subscribe", "bars.unsubscribe", "bars.update", "bars.subscribe.response"]) {
        assert.ok(text.includes(op), `${op} not shown`);
      }
      assert.match(text, /bars:\{?SYMBOL\}?:\{?RESOLUTION\}?|bars:AAPL:1/, "the topic is not shown");

      t.diagnostic(`screenshot: ${await chromium.shot("asyncapi.png")}`);

      assert.deepEqual(consoleErrors, [], "the page logged errors");
      assert.deepEqual(failed, [], "requests failed");
      assert.deepEqual(errorResponses, [], "requests answered with an error");
      const origin = new URL(server.http).origin;
      const elsewhere = requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith("data:"));
      assert.deepEqual(elsewhere, [], "the page loaded URLs outside the server");
      assert.ok(requests.includes(`${origin}/api/v1/ws/asyncapi`));
    } finally {
      await chromium.close();
    }
  });
});
