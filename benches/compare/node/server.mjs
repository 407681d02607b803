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

import http from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';

const PUBLISH_PATH = '/api/v1/publish';
const MAX_BODY = 4 * 1024 * 1024;
const MAX_SUBSCRIPTIONS = 100; // seed 001 "Rate Limits"
const TEXT = { binary: false };

const { values: args } = parseArgs({
  options: {
    listen: { type: 'string', default: process.env.COMPARE_LISTEN ?? '127.0.0.1:9001' },
    'publish-key': { type: 'string', default: process.env.COMPARE_PUBLISH_KEY ?? 'lt-key' },
  },
});
const authorization = `Bearer ${args['publish-key']}`;
const at = args.listen.lastIndexOf(':');
const host = args.listen.slice(0, at);
const port = Number(args.listen.slice(at + 1));

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

/** Fans the ticks of a publish body out; the HTTP status and answer. */
function publish(body) {
  let items;
  try {
    items = JSON.parse(body);
  } catch (e) {
    return [400, { error: `invalid body: ${e.message}` }];
  }
  if (!Array.isArray(items)) items = [items];
  const ticks = [];
  for (const [i, item] of items.entries()) {
    if (item === null || typeof item !== 'object') return [400, { error: `item ${i}: not an object` }];
    if (item.kind !== 'tick') continue;
    if (typeof item.symbol !== 'string' || typeof item.price !== 'number') {
      return [400, { error: `item ${i}: a tick needs \`symbol\` and \`price\`` }];
    }
    ticks.push(item);
  }
  const now = Date.now();
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
  return [202, { accepted: items.length }];
}

function answer(res, status, body) {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
  });
  res.end(payload);
}

const server = http.createServer((req, res) => {
  if (req.url.split('?', 1)[0] !== PUBLISH_PATH) return answer(res, 404, { error: 'no such route' });
  if (req.method !== 'POST') return answer(res, 405, { error: 'use POST' });
  if (req.headers.authorization !== authorization) {
    req.resume();
    return answer(res, 401, { error: 'a valid publish key is required' });
  }
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      answer(res, 413, { error: 'body too large' });
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on('end', () => {
    const [status, body] = publish(Buffer.concat(chunks).toString('utf8'));
    answer(res, status, body);
  });
});

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

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}

server.listen({ host, port, backlog: 1024 }, () => {
  console.log(`node ws server listening on ${host}:${port}`);
});
