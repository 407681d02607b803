// The official JavaScript client, `@azure/web-pubsub-client`, over `wss://`, in a process of
// its own so that Node trusts the test's certificate (NODE_EXTRA_CA_CERTS is read at start).
//
// It asks SERVER_HTTP's `/negotiate` (https) with API_KEY for the `classic` hub's URL, starts
// the client with it, joins GROUP, prints each group message as
// `@@message <group> <dataType> <bytes>`, and stops after MESSAGES of them.

import { WebPubSubClient } from "@azure/web-pubsub-client";

const { SERVER_HTTP, API_KEY, GROUP_SUFFIX } = process.env;
const MESSAGES = Number(process.env.MESSAGES ?? 2);

const resp = await fetch(`${SERVER_HTTP}/negotiate`, { headers: { Authorization: `Basic ${API_KEY}` } });
if (resp.status !== 200) {
  console.error(`/negotiate answered ${resp.status}`);
  process.exit(1);
}
const { websocket_urls: urls, prefix } = await resp.json();
const url = new URL(urls.classic);
console.log(`@@url ${url.protocol}//${url.host}${url.pathname}`);
url.pathname = "/client/hubs/classic";

const client = new WebPubSubClient(url.toString(), { autoReconnect: false });
let seen = 0;
const done = new Promise((ok) => {
  client.on("group-message", (e) => {
    const data = e.message.data;
    const bytes = data instanceof ArrayBuffer ? data.byteLength : JSON.stringify(data).length;
    console.log(`@@message ${e.message.group} ${e.message.dataType} ${bytes}`);
    seen += 1;
    if (seen >= MESSAGES) ok();
  });
});
client.on("connected", (e) => console.log(`@@connected ${e.connectionId}`));
await client.start();
const group = `${prefix}_${GROUP_SUFFIX}`;
await client.joinGroup(group);
console.log(`@@joined ${group}`);
await done;
client.stop();
process.exit(0);
