//! A sans-IO codec of the broker-adapter market-data proxy protocol (seed 003).
//!
//! Clients authenticate with an API key, subscribe to instruments in one of three
//! modes — LTP (1), Quote (2), Depth (3, with 5, 20 or 30 levels) — and receive
//! `market_data` messages. This crate
//!
//! - decodes client frames into typed [`Request`]s ([`decode_request`]), answering bad
//!   input with a [`ProxyError`] that carries the reference server's error code;
//! - encodes every reply, byte for byte, in two [`ReplyStyle`]s: as the seed document
//!   shows (the default) or exactly as the reference server sends (for its Python SDK);
//! - keeps an instrument's last price, quote and book ([`MarketState`], the last-value
//!   cache), merging an LTP-only trade into the quote rather than replacing it, and
//!   encodes a `market_data` message once per topic ([`encode_market_data`]);
//! - routes updates to topics with the higher-mode rule ([`topics_fed`]): a trade feeds
//!   LTP subscribers only, a quote LTP and Quote, a book the Depth subscribers;
//! - conflates LTP updates to one per window per instrument ([`Throttle`]), so the last
//!   tick of a burst always arrives;
//! - counts subscribers per key so the upstream adapter is subscribed by the first
//!   client and unsubscribed when the last one leaves ([`UpstreamRefs`]);
//! - and, for clients, encodes requests ([`encode_request`], which [`decode_request`]
//!   reads back as the same [`Request`]) and decodes every reply of either style into a
//!   typed [`Reply`] ([`decode_reply`]; see *Client* below).
//!
//! It does no I/O and keeps no clock: sockets, tasks, timers, API-key checks and the
//! adapters belong to the gateway (or the client), which passes the time in.
//!
//! # Example
//!
//! ```
//! use tickwire_model::{Instrument, PriceTick, Update};
//! use tickwire_proxy::{
//!     decode_request, encode_market_data, topics_fed, Joined, MarketState, ReplyStyle,
//!     Request, SubKey, UpstreamRefs,
//! };
//!
//! let style = ReplyStyle::Openalgo;
//! let mut refs = UpstreamRefs::new();
//!
//! // Client 7 subscribes to LTP (it authenticated before).
//! let frame = br#"{"action":"subscribe","symbol":"TCS","exchange":"NSE","mode":1}"#;
//! let Request::Subscribe(sub) = decode_request(frame, true)? else { unreachable!() };
//! let key = SubKey::new(sub.instruments[0].clone(), sub.mode, sub.depth);
//! assert_eq!(refs.subscribe(7, key.clone()), Joined::First); // tell the adapter
//!
//! // A tick arrives: store it, encode each topic it feeds once, send to its clients.
//! let tcs = Instrument::new("TCS", "NSE");
//! let mut state = MarketState::default();
//! let tick = PriceTick {
//!     instrument: tcs.clone(), price: 4100.5, last_quantity: 10.0, bid: 4100.0,
//!     bid_quantity: 50.0, ask: 4101.0, ask_quantity: 20.0, open: 4080.0, high: 4110.0,
//!     low: 4075.0, prev_close: 4090.0, change_24h_pct: 0.26, volume_24h: None,
//!     session_volume: 120000.0, source: "zmq".into(), timestamp_ms: 1_700_000_000_000,
//! };
//! let kind = state.apply(&Update::Tick(tick)).unwrap();
//! for topic in topics_fed(kind) {
//!     let key = SubKey { instrument: tcs.clone(), topic: *topic };
//!     if refs.subscribers(&key).next().is_none() { continue; }
//!     let bytes = encode_market_data(style, &tcs, topic.mode(), topic.depth(), &state).unwrap();
//!     assert_eq!(
//!         &bytes[..],
//!         br#"{"type":"market_data","symbol":"TCS","exchange":"NSE","mode":1,"data":{"ltp":4100.5,"ltt":1700000000000,"timestamp":1700000000000},"broker":"zmq"}"#
//!     );
//! }
//! # Ok::<(), tickwire_proxy::ProxyError>(())
//! ```
//!
//! # Client
//!
//! A client writes its requests with [`encode_request`] and reads each frame it receives
//! with [`decode_reply`]; the socket is its own (the repository's `examples/proxy_client.rs`
//! runs this over `tokio-tungstenite`).
//!
//! ```
//! use tickwire_model::Instrument;
//! use tickwire_proxy::{decode_reply, encode_request, Mode, Reply, Request, Status, Subscribe};
//!
//! let mut sent = vec![encode_request(&Request::authenticate("tickwire-demo-key"))];
//! let nse = |s| Instrument::new(s, "NSE");
//! sent.push(encode_request(&Subscribe::new([nse("RELIANCE"), nse("TCS")], Mode::Quote).into()));
//!
//! // The frames that come back, as a server in the documented style sends them.
//! let received: [&[u8]; 3] = [
//!     br#"{"type":"auth_response","status":"success","message":"Authentication successful"}"#,
//!     br#"{"type":"subscribe_response","status":"partial","subscriptions":[{"symbol":"RELIANCE","exchange":"NSE","status":"success","mode":"Quote","depth":5,"broker":"tickwire"},{"symbol":"TCS","exchange":"NSE","status":"error","message":"No adapter carries NSE:TCS","broker":"tickwire"}],"message":"Subscription processing complete","broker":"tickwire"}"#,
//!     br#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":2,"data":{"ltp":2850.5,"open":2820.0,"high":2860.0,"low":2815.0,"close":2848.25,"volume":1500000,"bid":2850.45,"ask":2850.55,"bid_qty":500,"ask_qty":750,"timestamp":1748353658856}}"#,
//! ];
//! for frame in received {
//!     match decode_reply(frame)? {
//!         Reply::Auth(_) => {}
//!         Reply::Subscribed(reply) => {
//!             assert_eq!(reply.status, Status::Partial);
//!             assert!(reply.subscriptions[1].result.is_err());
//!         }
//!         Reply::MarketData(md) => {
//!             assert_eq!((md.mode(), md.ltp()), (Mode::Quote, Some(2850.5)));
//!         }
//!         other => panic!("unexpected {other:?}"),
//!     }
//! }
//! # Ok::<(), tickwire_proxy::ReplyError>(())
//! ```

mod client;
mod error;
mod json;
mod market;
mod mode;
mod refs;
mod reply;
mod request;
mod throttle;

pub use client::{
    Authenticated, BrokerDetails, DepthData, LtpData, MarketData, MarketFields, Pong, QuoteData,
    Reply, ReplyError, Status, Subscribed, Subscription, Unsubscribed, decode_reply,
    encode_request,
};
pub use error::ProxyError;
pub use market::{MarketState, encode_market_data};
pub use mode::{Depth, Mode, SubKey, Topic, UpdateKind, topics_fed};
pub use refs::{Joined, Left, UpstreamRefs};
pub use reply::{
    AuthOk, BrokerInfo, ReplyStyle, SubscribeOutcome, SubscribeReply, UnsubscribeReply,
    encode_auth_ok, encode_broker_info, encode_error, encode_pong, encode_subscribe,
    encode_supported_brokers, encode_unsubscribe,
};
pub use request::{
    MAX_NAME_BYTES, Ping, RawJson, Request, Subscribe, Unsubscribe, check_instrument,
    decode_request,
};
pub use throttle::Throttle;
