// A Node `socket.io` server of seed 003's Socket.IO channel, namespace `/market`: the Node
// reference that tickwire's `/market` is compared with (see ../README.md). On one port:
//
// - `/socket.io/`: Socket.IO v5 (Engine.IO v4, both transports), ping interval 5 s, ping
//   timeout 10 s, CORS for every origin, as the seed configures it. Namespace `/market`: the
//   connection needs the key in its `auth` payload (`{"api_key"}`) or `Authorization: Bearer`,
//   else a `connect_error`; on connect, `connected` `{"status":"ok"}`; `subscribe` and
//   `unsubscribe` `{"symbols": [{"symbol", "exchange"}], "mode": "LTP"|"Quote"|"Depth"}` join
//   and leave one room per instrument and mode, answered through the acknowledgement (or a
//   `subscribed` / `unsubscribed` event) as tickwire answers; a subscribe is followed by the
//   instrument's last `market_data` in that mode when there is one.
// - `POST /api/v1/publish` with `Authorization: Bearer <key>` and a JSON body of one item or an
//   array of items; every `kind: tick` item (`symbol`, `exchange`, `price`, optional `volume`,
//   `bid`, `ask`, `timestamp`) becomes the proxy's `market_data` message for each mode and is
//   emitted to that mode's room with `nsp.to(room).emit`: Socket.IO encodes the packet once and
//   writes it to every socket of the room. Answers 202 `{"accepted":n}`.
//
// Usage: node socketio.mjs [--listen 127.0.0.1:9001] [--publish-key lt-key]
// (or COMPARE_LISTEN, COMPARE_PUBLISH_KEY).

import { Server } from 'socket.io';

import { listen, options, publishServer } from './publish.mjs';

const MODES = { LTP: 1, QUOTE: 2, DEPTH: 3, 1: 1, 2: 2, 3: 3 };
const MODE_NAMES = { 1: 'LTP', 2: 'Quote', 3: 'Depth' };

const opts = options();
const key = opts.key;

/** `EXCHANGE:SYMBOL` -> its last tick, for the snapshots */
const last = new Map();

const room = (mode, exchange, symbol) => `market_data:${MODE_NAMES[mode]}:${exchange}:${symbol}`;

/** The proxy's `market_data` message of a tick for `mode`. */
function marketData(tick, mode, now) {
  const ltp = tick.price;
  const timestamp = tick.timestamp ?? now;
  let data;
  if (mode === 1) {
    data = { ltp, timestamp };
  } else if (mode === 2) {
    data = {
      ltp,
      open: ltp,
      high: ltp,
      low: ltp,
      close: ltp,
      volume: tick.volume ?? 0,
      bid: tick.bid ?? ltp,
      ask: tick.ask ?? ltp,
      bid_qty: 0,
      ask_qty: 0,
      timestamp,
    };
  } else {
    data = { ltp, depth: { buy: [], sell: [] }, timestamp };
  }
  return { type: 'market_data', symbol: tick.symbol, exchange: tick.exchange, mode, data };
}

/** Emits published ticks to their rooms (only rooms with members). */
function fanOut(ticks, now) {
  const rooms = market.adapter.rooms;
  for (const tick of ticks) {
    tick.exchange ??= 'CRYPTO';
    tick.timestamp ??= now;
    last.set(`${tick.exchange}:${tick.symbol}`, tick);
    for (const mode of [1, 2, 3]) {
      const name = room(mode, tick.exchange, tick.symbol);
      if (rooms.has(name)) market.to(name).emit('market_data', marketData(tick, mode, now));
    }
  }
}

const server = publishServer(key, fanOut);

const io = new Server(server, {
  pingInterval: 5000,
  pingTimeout: 10000,
  cors: { origin: '*' },
  perMessageDeflate: false,
  httpCompression: false,
});
const market = io.of('/market');

market.use((socket, next) => {
  const bearer = socket.handshake.headers.authorization?.replace(/^Bearer /, '');
  const given = socket.handshake.auth?.api_key ?? bearer;
  if (given === undefined) return next(new Error('missing api key'));
  if (given !== key) return next(new Error('invalid api key'));
  next();
});

/** The instruments and mode of a subscribe or unsubscribe payload, or an error message. */
function request(payload) {
  const mode = MODES[String(payload?.mode ?? 'Quote').toUpperCase()];
  if (mode === undefined) return { error: `unknown mode ${JSON.stringify(payload.mode)}: LTP, Quote or Depth` };
  const symbols = payload?.symbols;
  if (!Array.isArray(symbols)) return { error: 'subscribe takes {"symbols": [{"symbol", "exchange"}...], "mode"}' };
  return { mode, symbols };
}

/** Joins or leaves the rooms of a request; the reply tickwire gives. */
function change(socket, payload, joining) {
  const req = request(payload);
  if (req.error !== undefined) return { status: 'error', message: req.error };
  const subscribed = [];
  const refused = [];
  for (const s of req.symbols) {
    if (typeof s?.symbol !== 'string' || s.symbol === '' || typeof s?.exchange !== 'string' || s.exchange === '') {
      refused.push({ symbol: s?.symbol ?? null, exchange: s?.exchange ?? null, message: 'Invalid symbol' });
      continue;
    }
    const name = room(req.mode, s.exchange, s.symbol);
    if (joining) {
      const tick = last.get(`${s.exchange}:${s.symbol}`);
      if (tick !== undefined) socket.emit('market_data', marketData(tick, req.mode, tick.timestamp));
      socket.join(name);
    } else if (socket.rooms.has(name)) {
      socket.leave(name);
    } else {
      refused.push({ symbol: s.symbol, exchange: s.exchange, message: 'not subscribed' });
      continue;
    }
    subscribed.push({ symbol: s.symbol, exchange: s.exchange });
  }
  const status = refused.length === 0 ? 'success' : subscribed.length === 0 ? 'error' : 'partial';
  return { status, mode: MODE_NAMES[req.mode], subscribed, refused };
}

market.on('connection', (socket) => {
  socket.emit('connected', { status: 'ok' });
  for (const [event, joining, reply] of [
    ['subscribe', true, 'subscribed'],
    ['unsubscribe', false, 'unsubscribed'],
  ]) {
    socket.on(event, (payload, ack) => {
      const answer = change(socket, payload, joining);
      if (typeof ack === 'function') ack(answer);
      else socket.emit(reply, answer);
    });
  }
});

listen(server, opts, 'node socket.io server');
