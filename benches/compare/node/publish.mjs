// What the Node reference servers share: their command line, and tickwire's publish API
// (`POST /api/v1/publish` with `Authorization: Bearer <key>` and a JSON body of one item or an
// array of items, answered 202 `{"accepted":n}`, 400, 401, 404, 405 or 413), which hands the
// body's `kind: tick` items (each with a string `symbol` and a number `price`) to the server's
// fan-out. Other kinds are accepted and ignored.

import http from 'node:http';
import { parseArgs } from 'node:util';

const PUBLISH_PATH = '/api/v1/publish';
const MAX_BODY = 4 * 1024 * 1024;

/** `--listen HOST:PORT` and `--publish-key KEY` (or COMPARE_LISTEN, COMPARE_PUBLISH_KEY). */
export function options() {
  const { values: args } = parseArgs({
    options: {
      listen: { type: 'string', default: process.env.COMPARE_LISTEN ?? '127.0.0.1:9001' },
      'publish-key': { type: 'string', default: process.env.COMPARE_PUBLISH_KEY ?? 'lt-key' },
    },
  });
  const at = args.listen.lastIndexOf(':');
  return { host: args.listen.slice(0, at), port: Number(args.listen.slice(at + 1)), key: args['publish-key'] };
}

/** The ticks of a publish body and how many items it had, or `{ error }`. */
function ticksOf(body) {
  let items;
  try {
    items = JSON.parse(body);
  } catch (e) {
    return { error: `invalid body: ${e.message}` };
  }
  if (!Array.isArray(items)) items = [items];
  const ticks = [];
  for (const [i, item] of items.entries()) {
    if (item === null || typeof item !== 'object') return { error: `item ${i}: not an object` };
    if (item.kind !== 'tick') continue;
    if (typeof item.symbol !== 'string' || typeof item.price !== 'number') {
      return { error: `item ${i}: a tick needs \`symbol\` and \`price\`` };
    }
    ticks.push(item);
  }
  return { ticks, accepted: items.length };
}

function answer(res, status, body) {
  const payload = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
  res.end(payload);
}

/** An HTTP server of the publish API guarded by `key`; `onTicks(ticks, nowMs)` fans them out. */
export function publishServer(key, onTicks) {
  const authorization = `Bearer ${key}`;
  return http.createServer((req, res) => {
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
      const { ticks, accepted, error } = ticksOf(Buffer.concat(chunks).toString('utf8'));
      if (error !== undefined) return answer(res, 400, { error });
      onTicks(ticks, Date.now());
      answer(res, 202, { accepted });
    });
  });
}

/** Listens, says so, and exits on SIGINT or SIGTERM. */
export function listen(server, { host, port }, name) {
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => process.exit(0));
  }
  server.listen({ host, port, backlog: 1024 }, () => {
    console.log(`${name} listening on ${host}:${port}`);
  });
}
