// The "Complete Example" JavaScript client of the /stream protocol document, run by Node
// with the `ws` package (CommonJS, `require("ws")`, as the document writes it).
//
// Only the key and the URL changed: CLIENT_API_KEY and CLIENT_URL instead of the
// document's development key and ws://localhost:3000/stream. The client runs until it gets
// SIGINT; its own handler then unsubscribes and closes, and the process ends.

const WebSocket = require("ws");

const apiKey = process.env.CLIENT_API_KEY;
const ws = new WebSocket(process.env.CLIENT_URL, {
  headers: {
    Authorization: `Bearer ${apiKey}`,
  },
});

ws.on("open", () => {
  console.log("✅ Connected to Project Chrono WebSocket");

  // Subscribe to Bitcoin and Ethereum
  ws.send(
    JSON.stringify({
      type: "subscribe",
      symbols: ["BTC/USD", "ETH/USD"],
    }),
  );
});

ws.on("message", (data) => {
  const message = JSON.parse(data.toString());

  switch (message.type) {
    case "subscribed":
      console.log(`📡 Subscribed to: ${message.symbols.join(", ")}`);
      break;

    case "price_update":
      console.log(
        `💰 ${message.symbol}: $${message.price.toFixed(2)} ` +
          `(${message.source}) at ${message.timestamp}`,
      );
      break;

    case "pong":
      console.log("💓 Heartbeat received");
      break;

    case "error":
      console.error(`❌ Error: ${message.message}`);
      break;

    default:
      console.log("📨 Message:", message);
  }
});

ws.on("error", (error) => {
  console.error("❌ WebSocket error:", error.message);
});

ws.on("close", () => {
  console.log("🔌 Disconnected from WebSocket");
});

// Graceful shutdown
process.on("SIGINT", () => {
  console.log("\n🛑 Closing connection...");
  ws.send(JSON.stringify({ type: "unsubscribe" }));
  setTimeout(() => ws.close(), 100);
});
