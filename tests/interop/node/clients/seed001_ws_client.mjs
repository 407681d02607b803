// The "Example Client" (JavaScript) of the /ws protocol document, run by Node with the `ws`
// package, whose WebSocket has the browser API the example uses (onopen, onmessage,
// event.data, readyState, WebSocket.OPEN).
//
// Harness, above the marked block: the document's URL (ws://localhost:3000/ws) is pointed
// at CLIENT_URL, each received frame is also printed as `@@recv <json>` so the test can
// check its shape, and the client exits once it has seen CLIENT_EXIT_AFTER price updates,
// a signal update and a pong. The document pings every 30 s; CLIENT_PING_MS shortens that.
// Inside the block, only the ping interval's number became PING_INTERVAL_MS.

import WS from "ws";

const PING_INTERVAL_MS = Number(process.env.CLIENT_PING_MS ?? 30000);
const EXIT_AFTER = Number(process.env.CLIENT_EXIT_AFTER ?? 3);
const seen = { price_update: 0, signal_update: 0, pong: 0 };
let closing = false;

class WebSocket extends WS {
  constructor(_documentUrl) {
    super(process.env.CLIENT_URL);
    this.addEventListener("message", (event) => {
      console.log(`@@recv ${event.data}`);
      const { type } = JSON.parse(event.data);
      if (type in seen) {
        seen[type] += 1;
      }
      if (!closing && seen.price_update >= EXIT_AFTER && seen.signal_update >= 1 && seen.pong >= 1) {
        closing = true;
        this.addEventListener("close", () => process.exit(0));
        this.close();
      }
    });
  }
}

// ---- The document's example, as written. ----

const ws = new WebSocket('ws://localhost:3000/ws');

ws.onopen = () => {
  console.log('Connected to Haunt WebSocket');

  // Subscribe to symbols
  ws.send(JSON.stringify({
    type: 'subscribe',
    symbols: ['btc', 'eth', 'sol']
  }));
};

ws.onmessage = (event) => {
  const message = JSON.parse(event.data);

  switch (message.type) {
    case 'price_update':
      console.log(`${message.symbol}: $${message.price}`);
      break;
    case 'signal_update':
      console.log(`Signal: ${message.indicator} ${message.signal}`);
      break;
    case 'error':
      console.error(`Error: ${message.message}`);
      break;
  }
};

ws.onerror = (error) => {
  console.error('WebSocket error:', error);
};

ws.onclose = () => {
  console.log('Disconnected from Haunt WebSocket');
};

// Keep connection alive with periodic pings
setInterval(() => {
  if (ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ type: 'ping' }));
  }
}, PING_INTERVAL_MS);
