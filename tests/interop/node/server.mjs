// Shared pieces of the Node interop suite: one tickwire-server process on free loopback
// ports with a test configuration, `/negotiate`, and bounded waits. Every wait here ends
// after WAIT_MS; nothing sleeps to assert.

import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as https from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** The key every default configuration ships: may join and leave groups, may not publish. */
export const DEMO_KEY = "tickwire-demo-key";
/** A key the test configuration adds, allowed to publish to groups as well. */
export const PUBLISHER_KEY = "tickwire-interop-publisher-key";
/** A key with the admin role (the admin API) that may also publish. */
export const OPERATOR_KEY = "tickwire-interop-operator-key";
/** Debian's Chromium, which scripts/test installs (playwright-core downloads no browser). */
export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
/**
 * The machine may have no network at all: no first-run, sync, update, field-trial or QUIC
 * traffic, so that every request a page makes is one it asked for.
 */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Upper bound of every wait of the suite, in milliseconds. */
export const WAIT_MS = 20_000;

const TEST_CONFIG = `# Written by the interop suite: the demo key plus a key that may publish.
[[api_keys]]
name = "demo"
key = "${DEMO_KEY}"
roles = ["webpubsub.joinLeaveGroup"]

[[api_keys]]
name = "interop-publisher"
key = "${PUBLISHER_KEY}"
roles = ["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"]

[[api_keys]]
name = "interop-operator"
key = "${OPERATOR_KEY}"
roles = ["admin", "publish"]
`;

/**
 * Short periods, so that what the JSON feeds send every few seconds arrives within a test:
 * signals of the synthetic market every second, `server_status` on /ws every second, the
 * automatic `pong` of /stream every second. Tables only: it is appended after the keys.
 */
export const FAST_FEEDS_CONFIG = `
[synthetic]
signal_interval_ms = 1000
book_interval_ms = 500

[ws]
status_interval_secs = 1

[stream]
heartbeat_secs = 1
`;

function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

/** Rejects with `what` when `promise` has not settled within `ms`. */
export async function within(promise, what, ms = WAIT_MS) {
  const timeout = new AbortController();
  try {
    return await Promise.race([
      promise,
      delay(ms, undefined, { signal: timeout.signal }).then(() => {
        throw new Error(`no ${what} within ${ms} ms`);
      }),
    ]);
  } finally {
    timeout.abort();
  }
}

/**
 * One tickwire-server process on 127.0.0.1, started from the repository root.
 *
 * Every listener is on a free loopback port: the main one (`http`, `ws`), the market-data
 * proxy's own (`proxyWs`, `--proxy-listen`) and the ZeroMQ bus (`zmqEndpoint`,
 * `--zmq-bind`). `extraConfig` is appended to the test configuration; `env` adds
 * `TICKWIRE_*` variables (the caller's own are never passed on), or is a function of the
 * server that returns them once its ports are chosen.
 */
export class TickwireServer {
  /**
   * `tls`: `{ cert, key }` (PEM files) to serve `https://` and `wss://` on every listener; the
   * certificate must be self-signed (it is its own trust anchor for the readiness check).
   */
  constructor({ extraConfig = "", env = {}, tls } = {}) {
    this.workDir = mkdtempSync(join(tmpdir(), "tickwire-interop-node-"));
    this.logPath = join(this.workDir, "tickwire-server.log");
    this.tls = tls;
    this.extraConfig = tls ? `${extraConfig}\n[tls]\ncert = "${tls.cert}"\nkey = "${tls.key}"\n` : extraConfig;
    this.extraEnv = env;
    this.child = undefined;
  }

  async start() {
    const binary = process.env.TICKWIRE_BIN || join(REPO_ROOT, "target", "debug", "tickwire-server");
    if (!existsSync(binary)) {
      throw new Error(`server binary ${binary} not found: run \`cargo build -p tickwire-server\` or set TICKWIRE_BIN`);
    }
    this.port = await freePort();
    this.proxyPort = await freePort();
    this.zmqPort = await freePort();
    const [http, ws] = this.tls ? ["https", "wss"] : ["http", "ws"];
    this.http = `${http}://127.0.0.1:${this.port}`;
    this.ws = `${ws}://127.0.0.1:${this.port}`;
    this.proxyWs = `${ws}://127.0.0.1:${this.proxyPort}`;
    this.zmqEndpoint = `tcp://127.0.0.1:${this.zmqPort}`;
    const configPath = join(this.workDir, "tickwire-interop.toml");
    writeFileSync(configPath, TEST_CONFIG + this.extraConfig);
    // The server reads TICKWIRE_* variables as configuration: keep the caller's out.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("TICKWIRE_")));
    // `env` may be a function of the server, for what names its own ports.
    Object.assign(env, typeof this.extraEnv === "function" ? this.extraEnv(this) : this.extraEnv);
    env.RUST_LOG ??= "info";
    const log = createWriteStream(this.logPath);
    await new Promise((ok) => log.once("open", ok));
    const args = [
      "--config",
      configPath,
      "--listen",
      `127.0.0.1:${this.port}`,
      "--proxy-listen",
      `127.0.0.1:${this.proxyPort}`,
      "--zmq-bind",
      this.zmqEndpoint,
    ];
    this.child = spawn(binary, args, {
      cwd: REPO_ROOT,
      env,
      stdio: ["ignore", log, log],
    });
    this.exited = new Promise((ok) => this.child.once("exit", (code, signal) => ok({ code, signal })));
    try {
      await this.#waitReady();
    } catch (err) {
      await this.stop({ keepLog: true });
      throw new Error(`${err.message}\n${this.logTail()}`);
    }
  }

  async #waitReady() {
    const deadline = Date.now() + WAIT_MS;
    let last = "no answer";
    let exit;
    this.exited.then((e) => (exit = e));
    while (Date.now() < deadline) {
      if (exit) {
        throw new Error(`tickwire-server exited (${exit.code ?? exit.signal}) before it was ready`);
      }
      try {
        const status = this.tls
          ? await httpsStatus(`${this.http}/healthz`, readFileSync(this.tls.cert))
          : (await fetch(`${this.http}/healthz`, { signal: AbortSignal.timeout(1000) })).status;
        if (status === 200) {
          return;
        }
        last = `/healthz answered ${status}`;
      } catch (err) {
        last = String(err.cause ?? err);
      }
      await delay(100); // polling interval of a bounded readiness wait
    }
    throw new Error(`tickwire-server not ready within ${WAIT_MS} ms (${last})`);
  }

  async stop({ keepLog = false } = {}) {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const stopped = await within(this.exited, "server exit", 10_000).then(
        () => true,
        () => false,
      );
      if (!stopped) {
        child.kill("SIGKILL");
        await this.exited;
      }
    }
    if (!keepLog) {
      rmSync(this.workDir, { recursive: true, force: true });
    }
  }

  logTail(lines = 60) {
    try {
      return readFileSync(this.logPath, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no server log)";
    }
  }

  /** `GET /negotiate` with `Authorization: Basic <key>`. */
  async negotiate(key = DEMO_KEY) {
    const resp = await fetch(`${this.http}/negotiate`, {
      headers: { Authorization: `Basic ${key}` },
      signal: AbortSignal.timeout(WAIT_MS),
    });
    if (resp.status !== 200) {
      throw new Error(`/negotiate answered ${resp.status}: ${await resp.text()}`);
    }
    const body = await resp.json();
    return { urls: body.websocket_urls, prefix: body.prefix };
  }

  /** The SDKs' URL form of a hub: `ws://HOST/client/hubs/HUB?access_token=JWT`. */
  async clientAccessUrl(hub, key = DEMO_KEY) {
    const { urls } = await this.negotiate(key);
    const url = new URL(urls[hub]);
    const [ws, name] = url.pathname.split("/").filter(Boolean);
    if (ws !== "ws" || name !== hub) {
      throw new Error(`unexpected hub URL ${urls[hub]}`);
    }
    url.pathname = `/client/hubs/${hub}`;
    return url.toString();
  }
}

/**
 * A headless Chromium of its own profile, for a page test: `{ context, page, shot(name), close() }`.
 * `shot` saves a full-page screenshot and returns its path; `close` removes the profile, and the
 * screenshots unless INTEROP_KEEP_SCREENSHOTS is set.
 */
export async function browser(name, viewport) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: scripts/test installs Debian's chromium`);
  }
  const { chromium } = await import("playwright-core");
  const profile = mkdtempSync(join(tmpdir(), "tickwire-chromium-"));
  const shots = mkdtempSync(join(tmpdir(), `tickwire-${name}-`));
  const context = await within(
    chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport }),
    "Chromium start",
  );
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    async shot(file) {
      const path = join(shots, file);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
      if (!process.env.INTEROP_KEEP_SCREENSHOTS) {
        rmSync(shots, { recursive: true, force: true });
      }
    },
  };
}

/** The status of `GET url` over TLS, trusting `ca` (PEM). */
function httpsStatus(url, ca) {
  return new Promise((ok, fail) => {
    const req = https.get(url, { ca, timeout: 1000 }, (res) => {
      res.resume();
      ok(res.statusCode);
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", fail);
  });
}

/**
 * Runs a client script (`clients/NAME`) in its own Node process with `env` added, and
 * collects its output lines. `until({ stdout, stderr })` is checked after every line; once
 * it holds, `signal` (if any) is sent. The process must end by itself (or after the signal)
 * within `ms`; else it is killed and the result says `timedOut`.
 */
export async function runClient(name, { env = {}, until = () => false, signal, ms = WAIT_MS } = {}) {
  const script = join(dirname(fileURLToPath(import.meta.url)), "clients", name);
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = { stdout: [], stderr: [] };
  let signalled = false;
  const collect = (stream, lines) => {
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk) => {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop();
      lines.push(...parts);
      if (!signalled && signal && until(out)) {
        signalled = true;
        child.kill(signal);
      }
    });
    stream.on("end", () => partial && lines.push(partial));
  };
  collect(child.stdout, out.stdout);
  collect(child.stderr, out.stderr);
  const exited = new Promise((ok) => child.once("close", (code, sig) => ok({ code, signal: sig })));
  let timedOut = false;
  const status = await within(exited, `exit of ${name}`, ms).catch(async () => {
    timedOut = true;
    child.kill("SIGKILL");
    return exited;
  });
  return { ...out, ...status, timedOut };
}
