// A Node `ws` broadcast server of the seed 001 `/ws` price feed: the Node reference that
// tickwire is compared with (see ../README.md). On one port:
//
// - `GET /ws`: a WebSocket speaking seed 001 `subscribe`, `unsubscribe` and `ping` (answered
//   by `pong`); subscribers of a symbol receive its `price_update` messages. Any symbol is
//   valid; symbols are case-insensitive.
// - `POST /api/v1/publish` with `Authorization: Bearer <key>` and a JSON body of one item or an
//   array of items; every `kind: tick` item becomes one `price_update` of the lower-case base
//   of its symbol (`LT0001/USD` -> `lt0001`), serialized once to a Buffer and sent with
//   `ws.send` to each subscriber of that symbol. Answers 202 `{"accepted":n}`.
//
// Usage: node server.mjs [--listen 127.0.0.1:9001] [--publish-key lt-key]
// (or COMPARE_LISTEN, COMPARE_PUBLISH_KEY).

import { WebSocket, WebSocketServer } from 'ws';

import { listen, options, publishServer } from './publish.mjs';

const MAX_SUBSCRIPTIONS = 100; // seed 001 "Rate Limits"
const TEXT = { binary: false };

const opts = options();

/** symbol -> the sockets subscribed to it */
const topics = new Map();

/** The /ws spelling of a symbol: the base of a BASE/QUOTE pair, lower case. */
const symbolKey = (symbol) => symbol.split('/', 1)[0].toLowerCase();

const error = (code, message) => JSON.stringify({ type: 'error', code, message });

function unsubscribe(symbol, ws) {
  const subscribers = topics.get(symbol);
  if (subscribers !== undefined) {
    subscribers.delete(ws);
    if (subscribers.size === 0) topics.delete(symbol);
  }
}

/** Fans published ticks out to their symbols' subscribers. */
function fanOut(ticks, now) {
  for (const tick of ticks) {
    const symbol = symbolKey(tick.symbol);
    const subscribers = topics.get(symbol);
    if (subscribers === undefined) continue;
    // Serialized and encoded once per update, sent as the same bytes to every subscriber.
    const data = Buffer.from(
      JSON.stringify({
        type: 'price_update',
        symbol,
        price: tick.price,
        change_24h: tick.change_24h ?? 0,
        volume_24h: tick.volume ?? null,
        timestamp: tick.timestamp ?? now,
      }),
    );
    for (const ws of subscribers) {
      if (ws.readyState === WebSocket.OPEN) ws.send(data, TEXT);
    }
  }
}

const server = publishServer(opts.key, fanOut);

const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false, clientTracking: false });

wss.on('connection', (ws) => {
  const symbols = new Set();
  ws.on('message', (data, isBinary) => {
    let command;
    try {
      command = JSON.parse(isBinary ? data : data.toString('utf8'));
    } catch {
      command = null;
    }
    const requested = command?.symbols ?? [];
    if (
      typeof command?.type !== 'string' ||
      !Array.isArray(requested) ||
      !requested.every((s) => typeof s === 'string')
    ) {
      ws.send(error('invalid_message', 'Malformed JSON or missing required fields'));
      return;
    }
    switch (command.type) {
      case 'subscribe': {
        const fresh = new Set(requested.map(symbolKey).filter((s) => !symbols.has(s)));
        if (symbols.size + fresh.size > MAX_SUBSCRIPTIONS) {
          ws.send(error('subscription_limit', 'Maximum subscriptions exceeded'));
          return;
        }
        for (const symbol of fresh) {
          let subscribers = topics.get(symbol);
          if (subscribers === undefined) topics.set(symbol, (subscribers = new Set()));
          subscribers.add(ws);
          symbols.add(symbol);
        }
        break;
      }
      case 'unsubscribe':
        for (const symbol of requested.map(symbolKey)) {
          if (symbols.delete(symbol)) unsubscribe(symbol, ws);
        }
        break;
      case 'ping':
        ws.send(`{"type":"pong","timestamp":${Date.now()}}`);
        break;
      default:
        ws.send(error('invalid_message', 'Unknown message type'));
    }
  });
  ws.on('close', () => {
    for (const symbol of symbols) unsubscribe(symbol, ws);
    symbols.clear();
  });
  ws.on('error', () => {});
});

listen(server, opts, 'node ws server');
