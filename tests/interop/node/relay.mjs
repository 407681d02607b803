// A small TCP relay the tests control, between a client and tickwire-server on loopback:
// it forwards bytes both ways until told to cut every connection through it, either with
// a reset at once, or as a dead link (bytes are swallowed both ways for a while, as a
// broken network does, then the connections are reset).

import { connect, createServer } from "node:net";
import { setTimeout as delay } from "node:timers/promises";

export class Relay {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
    this.dead = false;
    this.swallowed = 0;
    this.server = createServer((client) => this.#pipe(client));
  }

  /** Listens on a free loopback port; resolves to it. */
  listen() {
    return new Promise((ok, fail) => {
      this.server.once("error", fail);
      this.server.listen(0, "127.0.0.1", () => {
        this.port = this.server.address().port;
        ok(this.port);
      });
    });
  }

  #pipe(client) {
    const upstream = connect(this.targetPort, "127.0.0.1");
    const pair = { client, upstream };
    this.pairs.add(pair);
    const forward = (from, to) =>
      from.on("data", (bytes) => {
        if (this.dead) {
          this.swallowed += bytes.length;
        } else {
          to.write(bytes);
        }
      });
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on("error", end);
      s.on("close", end);
    }
  }

  /** Resets every connection through the relay, both sides. */
  reset() {
    for (const { client, upstream } of this.pairs) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.pairs.clear();
  }

  /** Swallows every byte for `ms`, then resets the connections. */
  async deadLink(ms) {
    this.dead = true;
    await delay(ms);
    this.reset();
    this.dead = false;
  }

  close() {
    this.reset();
    return new Promise((ok) => this.server.close(() => ok()));
  }
}
