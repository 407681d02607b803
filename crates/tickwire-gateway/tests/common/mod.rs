//! Helpers of the integration tests: a gateway on 127.0.0.1:0 fed by a
//! `MemoryAdapter`, a gateway with the market-data proxy on a listener of its own,
//! a raw HTTP client, and a WebSocket client (tokio-tungstenite) that speaks both
//! wire formats.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use prost::Message as _;
use serde_json::Value;
use tickwire_adapter::{
    AdapterError, BoxFuture, BrokerAdapter, MemoryAdapter, MemoryHandle, UpdateStream,
};
use tickwire_gateway::{AdapterStates, Config, GatewayError, RunOptions};
use tickwire_model::{
    GexRecord, Hub, Instrument, Level, OrderBook, PriceTick, Signal, SignalDirection, Update,
};
use tickwire_pipeline::Record;
use tickwire_proto::webpubsub::{self as pb, downstream_message as down, upstream_message as up};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound of any single wait, so a broken test fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub const DEMO: &str = "tickwire-demo-key";

pub const JSON: &str = "json.webpubsub.azure.v1";
pub const JSON_RELIABLE: &str = "json.reliable.webpubsub.azure.v1";
pub const PROTOBUF: &str = "protobuf.webpubsub.azure.v1";
pub const PROTOBUF_RELIABLE: &str = "protobuf.reliable.webpubsub.azure.v1";
pub const ALL_PROTOCOLS: [&str; 4] = [JSON, JSON_RELIABLE, PROTOBUF, PROTOBUF_RELIABLE];

/// A running gateway.
pub struct Server {
    pub addr: SocketAddr,
    pub feed: MemoryHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), GatewayError>>>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        Server::start_with(config, Vec::new()).await
    }

    /// A gateway whose adapter lists `instruments` as its universe.
    pub async fn start_with(mut config: Config, instruments: Vec<Instrument>) -> Server {
        config.token_secret = Some("test-secret-test-secret-test-secret".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let memory = MemoryAdapter::new("memory");
        let feed = memory.handle();
        let adapters: Vec<Arc<dyn BrokerAdapter>> = vec![Arc::new(Universe {
            inner: memory,
            instruments,
        })];
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(tickwire_gateway::run(listener, config, adapters, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            feed,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn default() -> Server {
        Server::start(Config::default()).await
    }

    /// Starts the shutdown; `finish` waits for `run` to return.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn finish(mut self) -> Result<(), GatewayError> {
        self.begin_shutdown();
        let task = self.task.take().unwrap();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("run returns")
            .unwrap()
    }

    pub async fn push(&self, record: GexRecord) {
        self.feed.push(Update::Gex(record)).await.unwrap();
    }

    /// The access URL of `hub` from `/negotiate` with the demo key.
    pub async fn url(&self, hub: Hub) -> String {
        let (status, _, body) = http_get(
            self.addr,
            "/negotiate",
            &[("Authorization", "Basic tickwire-demo-key")],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["websocket_urls"][hub.name()].as_str().unwrap().to_owned()
    }

    pub async fn connect(&self, hub: Hub, protocol: &str) -> Client {
        let url = self.url(hub).await;
        Client::connect(&url, Some(protocol)).await.unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A `MemoryAdapter` that lists a universe of instruments.
struct Universe {
    inner: MemoryAdapter,
    instruments: Vec<Instrument>,
}

impl BrokerAdapter for Universe {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn connect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.inner.connect()
    }
    fn subscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.inner.subscribe(keys)
    }
    fn unsubscribe<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.inner.unsubscribe(keys)
    }
    fn disconnect(&self) -> BoxFuture<'_, Result<(), AdapterError>> {
        self.inner.disconnect()
    }
    fn updates(&self) -> Result<UpdateStream, AdapterError> {
        self.inner.updates()
    }
    fn instruments(&self) -> Vec<Instrument> {
        self.instruments.clone()
    }
}

/// The universe of the JSON-feed tests.
pub fn universe() -> Vec<Instrument> {
    vec![
        Instrument::crypto("BTC/USD"),
        Instrument::crypto("ETH/USD"),
        Instrument::crypto("SOL/USD"),
        Instrument::new("AAPL", "NASDAQ"),
    ]
}

/// A tick of `instrument` at `price`, stamped 1700000000000 (2023-11-14T22:13:20.000Z).
pub fn tick(instrument: Instrument, price: f64) -> PriceTick {
    PriceTick {
        instrument,
        price,
        last_quantity: 0.5,
        bid: price - 0.5,
        bid_quantity: 1.0,
        ask: price + 0.5,
        ask_quantity: 1.0,
        open: price,
        high: price,
        low: price,
        prev_close: price,
        change_24h_pct: 2.34,
        volume_24h: Some(28_500_000_000.0),
        session_volume: 1.0,
        source: "coinbase".into(),
        timestamp_ms: 1_700_000_000_000,
    }
}

/// A book of `instrument` with two levels a side.
pub fn book(instrument: Instrument) -> OrderBook {
    let level = |price, quantity| Level {
        price,
        quantity,
        orders: 1,
    };
    OrderBook {
        instrument,
        bids: vec![level(67230.0, 1.5), level(67225.0, 2.3)],
        asks: vec![level(67235.0, 0.8), level(67240.0, 1.2)],
        source: "coinbase".into(),
        timestamp_ms: 1_700_000_000_000,
    }
}

/// An RSI buy signal of `instrument`.
pub fn signal(instrument: Instrument) -> Signal {
    Signal {
        instrument,
        indicator: "rsi".into(),
        direction: SignalDirection::Buy,
        value: 28.5,
        confidence: 0.85,
        timestamp_ms: 1_700_000_000_000,
    }
}

/// A client of the JSON feeds (`/ws`, `/stream`): text frames in and out.
pub struct FeedClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a JSON-feed client read.
#[derive(Debug, Clone, PartialEq)]
pub enum Feed {
    /// A text message.
    Text(String),
    /// The close frame (code, reason), or `None` when the stream ended without one.
    Close(Option<(u16, String)>),
}

impl FeedClient {
    /// Connects to `path` of `server` with extra request `headers`; an
    /// upgrade refused with an HTTP answer gives its status and body.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<FeedClient, (u16, String)> {
        let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
        for (k, v) in headers {
            request.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
            .await
            .expect("handshake")
        {
            Ok((ws, _)) => Ok(FeedClient { ws }),
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((response.status().as_u16(), body))
            }
            Err(e) => panic!("handshake failed: {e}"),
        }
    }

    /// `/ws` of `server`, public.
    pub async fn ws(server: &Server) -> FeedClient {
        FeedClient::connect(server.addr, "/ws", &[]).await.unwrap()
    }

    /// `/stream` of `server` with `Authorization: Bearer <key>`.
    pub async fn stream(server: &Server, key: &str) -> FeedClient {
        FeedClient::connect(
            server.addr,
            "/stream",
            &[("Authorization", &format!("Bearer {key}"))],
        )
        .await
        .unwrap()
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next text message or the close (WebSocket pings and pongs skipped).
    pub async fn next(&mut self) -> Feed {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a message in time");
            return match next {
                None | Some(Err(_)) => Feed::Close(None),
                Some(Ok(Message::Text(t))) => Feed::Text(t.as_str().to_owned()),
                Some(Ok(Message::Close(c))) => {
                    Feed::Close(c.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())))
                }
                Some(Ok(Message::Binary(b))) => panic!("binary frame {b:?}"),
                Some(Ok(_)) => continue,
            };
        }
    }

    /// The next text message; panics on a close.
    pub async fn text(&mut self) -> String {
        match self.next().await {
            Feed::Text(t) => t,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next message, parsed.
    pub async fn json(&mut self) -> serde_json::Value {
        let text = self.text().await;
        serde_json::from_str(&text).unwrap()
    }

    /// The next message whose `type` is not one of `skip`.
    pub async fn json_skipping(&mut self, skip: &[&str]) -> serde_json::Value {
        loop {
            let v = self.json().await;
            if !skip.contains(&v["type"].as_str().unwrap_or("")) {
                return v;
            }
        }
    }

    /// Reads until the close frame and returns its code (messages before it
    /// are skipped).
    pub async fn close_code(&mut self) -> u16 {
        loop {
            if let Feed::Close(frame) = self.next().await {
                return frame.map_or(1005, |(code, _)| code);
            }
        }
    }

    /// Sends `{"type":"ping"}` and reads up to its `pong`: everything before
    /// it has been handled by the server. Returns the messages read before
    /// the pong.
    pub async fn sync(&mut self) -> Vec<serde_json::Value> {
        self.send(r#"{"type":"ping"}"#).await;
        let mut before = Vec::new();
        loop {
            let v = self.json().await;
            if v["type"] == "pong" {
                return before;
            }
            before.push(v);
        }
    }
}

/// A running gateway with the market-data proxy (seed 003) on a listener of its
/// own as well as at `/proxy` of the main one.
pub struct ProxyGateway {
    /// The main listener.
    pub addr: SocketAddr,
    /// The proxy's own listener (every path upgrades).
    pub proxy_addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), GatewayError>>,
}

impl ProxyGateway {
    /// Serves `config` with `adapters`, whose states `get_broker_info` reports
    /// from `adapter_states`.
    pub async fn start(
        config: Config,
        adapters: Vec<Arc<dyn BrokerAdapter>>,
        adapter_states: AdapterStates,
    ) -> ProxyGateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy_addr = proxy_listener.local_addr().unwrap();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let options = RunOptions {
            proxy_listener: Some(proxy_listener),
            adapter_states,
        };
        let task = tokio::spawn(tickwire_gateway::run_with(
            listener,
            options,
            config,
            adapters,
            async {
                let _ = stopped.await;
            },
        ));
        ProxyGateway {
            addr,
            proxy_addr,
            shutdown,
            task,
        }
    }

    /// A client on the proxy's own listener, at `/`.
    pub async fn own(&self) -> FeedClient {
        FeedClient::connect(self.proxy_addr, "/", &[])
            .await
            .unwrap()
    }

    /// A client at `/proxy` of the main listener.
    pub async fn main(&self) -> FeedClient {
        FeedClient::connect(self.addr, "/proxy", &[]).await.unwrap()
    }

    /// Shuts the gateway down and waits for `run_with` to return `Ok`.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the gateway stops")
            .unwrap()
            .unwrap();
    }
}

/// A client at `/proxy` of the main listener `addr`, authenticated with the demo key.
pub async fn proxy_client(addr: SocketAddr) -> FeedClient {
    let mut client = FeedClient::connect(addr, "/proxy", &[]).await.unwrap();
    assert_eq!(authenticate(&mut client, DEMO).await["status"], "success");
    client
}

/// Sends the proxy `request` and returns the next message, parsed.
pub async fn ask(client: &mut FeedClient, request: &str) -> Value {
    client.send(request).await;
    client.json().await
}

/// Sends the proxy's `authenticate` with `key` and returns the reply.
pub async fn authenticate(client: &mut FeedClient, key: &str) -> Value {
    ask(
        client,
        &format!(r#"{{"action":"authenticate","api_key":"{key}"}}"#),
    )
    .await
}

/// A raw HTTP/1.1 GET with `Authorization: Bearer <key>` when `key` is given;
/// returns status and body.
pub async fn http_get_bearer(addr: SocketAddr, path: &str, key: Option<&str>) -> (u16, String) {
    let authorization = key.map(|key| format!("Bearer {key}"));
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|value| ("Authorization", value.as_str()))
        .collect();
    let (status, _, body) = http_get(addr, path, &headers).await;
    (status, body)
}

/// A raw HTTP/1.1 request with a body; returns status, raw head and body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    // A server may answer before reading all of a large body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("response");
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// A GEX record of `hub` (classic or state_gex) whose timestamp is `ts`.
pub fn gex(hub: Hub, ticker: &str, category: &'static str, ts: i64) -> GexRecord {
    gex_with_strikes(hub, ticker, category, ts, 2)
}

/// A GEX record with `strikes` strikes (to make big messages).
pub fn gex_with_strikes(
    hub: Hub,
    ticker: &str,
    category: &'static str,
    ts: i64,
    strikes: usize,
) -> GexRecord {
    let rows: Vec<String> = (0..strikes)
        .map(|i| {
            let x = (i as u64).wrapping_mul(2_654_435_761) % 100_000;
            let strike = 4000 + i as u64;
            format!(
                "[{strike}.{:02},{}.{},-{}.{},[{},{}]]",
                x % 100,
                x % 977,
                x % 9,
                x % 10,
                x % 513,
                x % 7,
                x % 3 + i as u64
            )
        })
        .collect();
    let json = format!(
        r#"{{"timestamp":{ts},"ticker":"{ticker}","min_dte":0,"sec_min_dte":1,"spot":4800.11,"zero_gamma":4800.15,"major_pos_vol":4800.19,"major_pos_oi":4800.23,"major_neg_vol":4800.36,"major_neg_oi":1.16,"strikes":[{}],"sum_gex_vol":1.005,"sum_gex_oi":-2.046,"delta_risk_reversal":-1.023}}"#,
        rows.join(",")
    );
    GexRecord {
        hub,
        ticker: ticker.into(),
        category,
        json: Bytes::from(json),
    }
}

/// A raw HTTP/1.1 GET; returns status, raw head and body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("response")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

/// Sends a GET and reads only the response head (for upgrades, which keep
/// the connection open); returns the status and the head.
pub async fn http_head(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    while !raw.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("response")
            .unwrap();
        assert_eq!(n, 1, "connection closed inside the head");
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head)
}

/// A message the client sends.
#[derive(Debug, Clone)]
pub enum Up {
    Join(String, Option<u64>),
    Leave(String, Option<u64>),
    SendText {
        group: String,
        ack_id: Option<u64>,
        no_echo: bool,
        text: String,
    },
    Event(Option<u64>),
    SequenceAck(u64),
    Ping,
}

/// The payload of a data message.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Text(String),
    Binary(Vec<u8>),
    Any { type_url: String, value: Vec<u8> },
}

impl Payload {
    /// The GEX record carried by a protobuf `Any` (JSON: base64 of the `Any`).
    pub fn record(&self) -> Record {
        match self {
            Payload::Binary(any) => tickwire_pipeline::decode_any(any).unwrap(),
            Payload::Any { type_url, value } => {
                let any = prost_types::Any {
                    type_url: type_url.clone(),
                    value: value.clone(),
                };
                tickwire_pipeline::decode_any(&any.encode_to_vec()).unwrap()
            }
            Payload::Text(t) => panic!("text payload {t:?}"),
        }
    }
}

/// A message the client received, in either format.
#[derive(Debug, Clone, PartialEq)]
pub enum Down {
    Connected {
        connection_id: String,
        user_id: String,
        reconnection_token: Option<String>,
    },
    Disconnected(String),
    Ack {
        ack_id: u64,
        success: bool,
        error: Option<(String, String)>,
    },
    Pong,
    Data {
        group: Option<String>,
        sequence_id: Option<u64>,
        payload: Payload,
    },
    Close(Option<CloseFrame>),
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub json: bool,
    pub protocol: Option<String>,
}

impl Client {
    /// Connects to `url` offering `protocol` (or nothing).
    pub async fn connect(url: &str, protocol: Option<&str>) -> Result<Client, tungstenite::Error> {
        let mut request = url.into_client_request().unwrap();
        if let Some(p) = protocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
        }
        let (ws, response) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
                .await
                .expect("handshake")?;
        let echoed = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        let json = echoed.as_deref().is_some_and(|p| p.starts_with("json"));
        Ok(Client {
            ws,
            json,
            protocol: echoed,
        })
    }

    pub async fn send(&mut self, msg: Up) {
        let frame = if self.json {
            Message::text(json_up(&msg).to_string())
        } else {
            Message::binary(proto_up(&msg).encode_to_vec())
        };
        self.ws.send(frame).await.unwrap();
    }

    /// The next protocol message (WebSocket pings and pongs skipped).
    pub async fn recv(&mut self) -> Down {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a message in time");
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => panic!("websocket error: {e}"),
                None => return Down::Close(None),
            };
            return match msg {
                Message::Text(t) => parse_json_down(t.as_str()),
                Message::Binary(b) => parse_proto_down(&b),
                Message::Close(c) => Down::Close(c),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
        }
    }

    /// Joins `group` with `ack_id` and expects a successful ack.
    pub async fn join(&mut self, group: &str, ack_id: u64) {
        self.send(Up::Join(group.into(), Some(ack_id))).await;
        assert_eq!(self.recv().await, ok(ack_id));
    }

    /// Reads until the close frame, answers it, waits for the server to end
    /// the connection, and returns the close code.
    pub async fn close_code(&mut self) -> u16 {
        let code = loop {
            if let Down::Close(frame) = self.recv().await {
                break frame.map_or(1005, |f| f.code.into());
            }
        };
        // Reading on sends our close reply; the stream then ends.
        let end = tokio::time::timeout(PATIENCE, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        assert!(end.is_ok(), "the close handshake completes");
        code
    }
}

pub fn ok(ack_id: u64) -> Down {
    Down::Ack {
        ack_id,
        success: true,
        error: None,
    }
}

pub fn json_up(msg: &Up) -> serde_json::Value {
    use serde_json::json;
    match msg {
        Up::Join(g, a) => json!({"type":"joinGroup","group":g,"ackId":a}),
        Up::Leave(g, a) => json!({"type":"leaveGroup","group":g,"ackId":a}),
        Up::SendText {
            group,
            ack_id,
            no_echo,
            text,
        } => {
            json!({"type":"sendToGroup","group":group,"ackId":ack_id,"noEcho":no_echo,"dataType":"text","data":text})
        }
        Up::Event(a) => json!({"type":"event","event":"e","ackId":a,"dataType":"text","data":"x"}),
        Up::SequenceAck(s) => json!({"type":"sequenceAck","sequenceId":s}),
        Up::Ping => json!({"type":"ping"}),
    }
}

pub fn proto_up(msg: &Up) -> pb::UpstreamMessage {
    let text = |t: &str| pb::MessageData {
        data: Some(pb::message_data::Data::TextData(t.to_owned())),
    };
    let message = match msg {
        Up::Join(group, ack_id) => up::Message::JoinGroupMessage(up::JoinGroupMessage {
            group: group.clone(),
            ack_id: *ack_id,
        }),
        Up::Leave(group, ack_id) => up::Message::LeaveGroupMessage(up::LeaveGroupMessage {
            group: group.clone(),
            ack_id: *ack_id,
        }),
        Up::SendText {
            group,
            ack_id,
            no_echo,
            text: t,
        } => up::Message::SendToGroupMessage(up::SendToGroupMessage {
            group: group.clone(),
            ack_id: *ack_id,
            data: Some(text(t)),
            no_echo: Some(*no_echo),
        }),
        Up::Event(ack_id) => up::Message::EventMessage(up::EventMessage {
            event: "e".into(),
            data: Some(text("x")),
            ack_id: *ack_id,
        }),
        Up::SequenceAck(s) => {
            up::Message::SequenceAckMessage(up::SequenceAckMessage { sequence_id: *s })
        }
        Up::Ping => up::Message::PingMessage(up::PingMessage {}),
    };
    pb::UpstreamMessage {
        message: Some(message),
    }
}

fn parse_json_down(text: &str) -> Down {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    match v["type"].as_str().unwrap() {
        "system" => match v["event"].as_str().unwrap() {
            "connected" => Down::Connected {
                connection_id: s("connectionId").unwrap(),
                user_id: s("userId").unwrap(),
                reconnection_token: s("reconnectionToken"),
            },
            "disconnected" => Down::Disconnected(s("message").unwrap()),
            other => panic!("system event {other}"),
        },
        "ack" => Down::Ack {
            ack_id: v["ackId"].as_u64().unwrap(),
            success: v["success"].as_bool().unwrap(),
            error: v.get("error").map(|e| {
                (
                    e["name"].as_str().unwrap().to_owned(),
                    e["message"].as_str().unwrap().to_owned(),
                )
            }),
        },
        "pong" => Down::Pong,
        "message" => {
            let payload = match v["dataType"].as_str().expect("dataType always present") {
                "text" => Payload::Text(s("data").unwrap()),
                "binary" => Payload::Binary(
                    base64::engine::general_purpose::STANDARD
                        .decode(v["data"].as_str().unwrap())
                        .unwrap(),
                ),
                other => panic!("dataType {other}"),
            };
            Down::Data {
                group: s("group"),
                sequence_id: v["sequenceId"].as_u64(),
                payload,
            }
        }
        other => panic!("message type {other}: {text}"),
    }
}

fn parse_proto_down(bytes: &[u8]) -> Down {
    let msg = pb::DownstreamMessage::decode(bytes).unwrap();
    match msg.message.unwrap() {
        down::Message::AckMessage(a) => Down::Ack {
            ack_id: a.ack_id,
            success: a.success,
            error: a.error.map(|e| (e.name, e.message)),
        },
        down::Message::PongMessage(_) => Down::Pong,
        down::Message::SystemMessage(s) => match s.message.unwrap() {
            down::system_message::Message::ConnectedMessage(c) => Down::Connected {
                connection_id: c.connection_id,
                user_id: c.user_id,
                reconnection_token: c.reconnection_token,
            },
            down::system_message::Message::DisconnectedMessage(d) => Down::Disconnected(d.reason),
        },
        down::Message::DataMessage(d) => {
            let payload = match d.data.unwrap().data.unwrap() {
                pb::message_data::Data::TextData(t) => Payload::Text(t),
                pb::message_data::Data::JsonData(t) => Payload::Text(t),
                pb::message_data::Data::BinaryData(b) => Payload::Binary(b.to_vec()),
                pb::message_data::Data::ProtobufData(any) => Payload::Any {
                    type_url: any.type_url,
                    value: any.value.to_vec(),
                },
            };
            Down::Data {
                group: d.group,
                sequence_id: d.sequence_id,
                payload,
            }
        }
    }
}
