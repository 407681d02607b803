//! The subscriber side of each protocol: negotiating, subscribing and
//! waiting for the server to confirm, before any update is measured.
//!
//! - pubsub (Azure Web PubSub client protocol): `GET /negotiate` with
//!   `Authorization: Basic <key>` gives the `state_gex` hub's URL with an
//!   access token. The connection goes to that URL's host and port, which
//!   need not be the node asked (a cluster's `/negotiate` names its
//!   least-loaded node), offers `protobuf.webpubsub.azure.v1` or
//!   `json.webpubsub.azure.v1` and sends one `joinGroup` with an `ackId` per
//!   group, then waits for every ack.
//! - `/ws`: one `subscribe` naming every symbol, then a `ping`; replies come
//!   in order, so the `pong` confirms the subscription (an `error` before it
//!   refuses it).
//! - `/stream`: `subscribe` with at most 10 symbols at a time, each answered
//!   by `subscribed` listing them.
//! - `/proxy`: `authenticate` with the key, answered with a `success` status
//!   (`auth_response`, or `auth` in the `openalgo` reply style), then one
//!   `subscribe` of every instrument in mode 2 (Quote), answered with status
//!   `success` (any instrument refused makes it `partial`).
//! - `/api/v1/ws`: `bars.subscribe` of the one symbol at resolution `1`,
//!   answered by `bars.subscribe.response` with status `ok`; the same
//!   message, repeated, is the keepalive FastWS needs every 30 s.
//! - Socket.IO `/market`: Engine.IO v4 straight over WebSocket (no
//!   long-polling first); after the open packet, a namespace connect with
//!   `{"api_key"}` in its `auth` payload, then one `subscribe` of every
//!   instrument in Quote mode with an acknowledgement id, answered by the
//!   acknowledgement with status `success`. Pings (`2`) are answered (`3`)
//!   all along, as the heartbeat requires.
//!
//! Confirmations are parsed in full (they happen once per connection); the
//! updates that follow are not (see [`crate::stamp`]).

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocket};
use hyper::Method;
use prost::Message as _;
use serde::Deserialize;
use tickwire_proto::webpubsub::{
    DownstreamMessage, UpstreamMessage, downstream_message, upstream_message,
};

use crate::Error;
use crate::cli::Target;
use crate::net::{HttpClient, Prefixed};
use crate::topics::{EXCHANGE, PUBSUB_HUB};

/// A subscriber's WebSocket.
pub type Ws = WebSocket<Prefixed>;

/// The subprotocol of the JSON pubsub wire format.
pub const JSON_SUBPROTOCOL: &str = "json.webpubsub.azure.v1";
/// The subprotocol of the protobuf pubsub wire format.
pub const PROTOBUF_SUBPROTOCOL: &str = "protobuf.webpubsub.azure.v1";
/// Symbols per `/stream` subscribe (seed 002: at most 10 per message).
const STREAM_SYMBOLS_PER_MESSAGE: usize = 10;

/// What `/negotiate` gives a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The group prefix.
    pub prefix: String,
    /// The `state_gex` hub's URL (with its token).
    pub hub: HubUrl,
}

/// A hub's URL as `/negotiate` gives it: where to connect, and what to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrl {
    /// The node the URL names (its address and `Host` header): the node
    /// asked, or another one (a cluster's least-loaded node).
    pub target: Target,
    /// Path and query (`/ws/state_gex?access_token=…`).
    pub path: String,
}

#[derive(Deserialize)]
struct NegotiateBody {
    websocket_urls: std::collections::HashMap<String, String>,
    prefix: String,
}

/// Trades `key` for the `state_gex` hub's URL and the group prefix, at the
/// node `http` talks to.
pub async fn negotiate(http: &mut HttpClient, key: &str) -> Result<Negotiated, Error> {
    let answer = http
        .request(
            Method::GET,
            "/negotiate",
            &format!("Basic {key}"),
            Bytes::new(),
        )
        .await?;
    if answer.status != 200 {
        return Err(Error::Http {
            what: "negotiate",
            status: answer.status,
            body: answer.body_text(),
            hint: "",
        });
    }
    let bad = |why: String| Error::Http {
        what: "negotiate",
        status: answer.status,
        body: why,
        hint: "",
    };
    let body: NegotiateBody =
        serde_json::from_slice(&answer.body).map_err(|e| bad(format!("unreadable answer: {e}")))?;
    let url = body
        .websocket_urls
        .get(PUBSUB_HUB)
        .ok_or_else(|| bad(format!("no URL for hub {PUBSUB_HUB}")))?;
    let hub = hub_url(http.target(), url)
        .await
        .map_err(|why| bad(format!("bad hub URL {url:?}: {why}")))?;
    Ok(Negotiated {
        prefix: body.prefix,
        hub,
    })
}

/// The hub URL `url` that node `asked` answered: the node asked when the
/// URL names its host (as the request's `Host` header gave it), else the
/// node the URL names, resolved.
async fn hub_url(asked: &Target, url: &str) -> Result<HubUrl, String> {
    let (scheme, _) = url.split_once("://").ok_or("no scheme")?;
    if !(scheme.eq_ignore_ascii_case("ws") || scheme.eq_ignore_ascii_case("http")) {
        return Err(format!("scheme {scheme:?} is not supported (no TLS)"));
    }
    let path = path_of(url).ok_or("no path")?.to_owned();
    let target = match authority_of(url) {
        Some(host) if host.eq_ignore_ascii_case(&asked.host) => asked.clone(),
        _ => Target::resolve(url, asked.addr).await?,
    };
    Ok(HubUrl { target, path })
}

/// `host:port` of `ws://host:port/path`.
fn authority_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    rest.split(['/', '?']).next()
}

/// `/ws/state_gex?access_token=…` of `ws://host:port/ws/state_gex?access_token=…`.
fn path_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let slash = rest.find('/')?;
    Some(&rest[slash..])
}

/// Joins `groups` and waits for every ack.
pub async fn join_groups(ws: &mut Ws, protobuf: bool, groups: &[String]) -> Result<(), String> {
    for (i, group) in groups.iter().enumerate() {
        let ack_id = i as u64 + 1;
        let frame = if protobuf {
            let message = UpstreamMessage {
                message: Some(upstream_message::Message::JoinGroupMessage(
                    upstream_message::JoinGroupMessage {
                        group: group.clone(),
                        ack_id: Some(ack_id),
                    },
                )),
            };
            Frame::binary(Payload::Owned(message.encode_to_vec()))
        } else {
            let text = serde_json::json!({"type": "joinGroup", "group": group, "ackId": ack_id});
            Frame::text(Payload::Owned(text.to_string().into_bytes()))
        };
        send(ws, frame).await?;
    }
    let mut acked = vec![false; groups.len()];
    let mut left = groups.len();
    while left > 0 {
        let payload = next_message(ws).await?;
        let ack = if protobuf {
            protobuf_ack(&payload)?
        } else {
            json_ack(&payload)?
        };
        let Some((ack_id, result)) = ack else {
            continue;
        };
        result.map_err(|why| format!("joinGroup refused: {why}"))?;
        let slot = usize::try_from(ack_id)
            .ok()
            .and_then(|id| id.checked_sub(1))
            .and_then(|i| acked.get_mut(i));
        match slot {
            Some(done) if !*done => {
                *done = true;
                left -= 1;
            }
            _ => return Err(format!("unexpected ack {ack_id}")),
        }
    }
    Ok(())
}

type Ack = Option<(u64, Result<(), String>)>;

fn protobuf_ack(payload: &[u8]) -> Result<Ack, String> {
    let message =
        DownstreamMessage::decode(payload).map_err(|e| format!("undecodable message: {e}"))?;
    Ok(match message.message {
        Some(downstream_message::Message::AckMessage(ack)) => Some((
            ack.ack_id,
            if ack.success {
                Ok(())
            } else {
                Err(ack
                    .error
                    .map(|e| format!("{}: {}", e.name, e.message))
                    .unwrap_or_default())
            },
        )),
        Some(downstream_message::Message::SystemMessage(system)) => {
            use downstream_message::system_message::Message;
            if let Some(Message::DisconnectedMessage(d)) = system.message {
                return Err(format!("disconnected: {}", d.reason));
            }
            None
        }
        _ => None,
    })
}

fn json_ack(payload: &[u8]) -> Result<Ack, String> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("unreadable message: {e}"))?;
    match value["type"].as_str() {
        Some("ack") => {
            let id = value["ackId"].as_u64().ok_or("an ack without ackId")?;
            let result = if value["success"] == true {
                Ok(())
            } else {
                Err(format!(
                    "{}: {}",
                    value["error"]["name"].as_str().unwrap_or_default(),
                    value["error"]["message"].as_str().unwrap_or_default()
                ))
            };
            Ok(Some((id, result)))
        }
        Some("system") if value["event"] == "disconnected" => Err(format!(
            "disconnected: {}",
            value["message"].as_str().unwrap_or_default()
        )),
        _ => Ok(None),
    }
}

/// Subscribes a `/ws` connection to `symbols` and waits for the `pong` that
/// follows the subscription.
pub async fn subscribe_ws(ws: &mut Ws, symbols: &[String]) -> Result<(), String> {
    let subscribe = serde_json::json!({"type": "subscribe", "symbols": symbols});
    send(ws, text(subscribe.to_string())).await?;
    send(ws, ws_ping()).await?;
    loop {
        let payload = next_message(ws).await?;
        let value: serde_json::Value =
            serde_json::from_slice(&payload).map_err(|e| format!("unreadable message: {e}"))?;
        match value["type"].as_str() {
            Some("pong") => return Ok(()),
            Some("error") => return Err(json_error("subscribe refused", &value)),
            _ => {}
        }
    }
}

/// A `/ws` `ping` message (it keeps the connection from being idle).
pub fn ws_ping() -> Frame<'static> {
    text(r#"{"type":"ping"}"#.to_owned())
}

/// Subscribes a `/stream` connection to `symbols`, at most 10 per message,
/// each confirmed by `subscribed`.
pub async fn subscribe_stream(ws: &mut Ws, symbols: &[String]) -> Result<(), String> {
    for chunk in symbols.chunks(STREAM_SYMBOLS_PER_MESSAGE) {
        let subscribe = serde_json::json!({"type": "subscribe", "symbols": chunk});
        send(ws, text(subscribe.to_string())).await?;
        loop {
            let payload = next_message(ws).await?;
            let value: serde_json::Value =
                serde_json::from_slice(&payload).map_err(|e| format!("unreadable message: {e}"))?;
            match value["type"].as_str() {
                Some("subscribed") => {
                    let confirmed = value["symbols"].as_array().map_or(0, Vec::len);
                    if confirmed < chunk.len() {
                        return Err(format!(
                            "subscribed to {confirmed} of {} symbols",
                            chunk.len()
                        ));
                    }
                    break;
                }
                Some("error") => return Err(json_error("subscribe refused", &value)),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Path and query of a Socket.IO connection over the WebSocket transport.
pub const SOCKETIO_PATH: &str = "/socket.io/?EIO=4&transport=websocket";
/// Path and query of a Socket.IO session on long-polling.
pub const SOCKETIO_POLLING_PATH: &str = "/socket.io/?EIO=4&transport=polling";
/// An Engine.IO ping packet.
pub const ENGINEIO_PING: &[u8] = b"2";
/// The prefix of `/market` namespace packets: an event, a connect reply.
const SOCKETIO_EVENT: &str = "42/market,";
const SOCKETIO_CONNECTED: &[u8] = b"40/market,";
const SOCKETIO_REFUSED: &[u8] = b"44/market,";
/// The acknowledgement of the `subscribe` (its id is 1).
const SOCKETIO_SUBSCRIBE_ACK: &[u8] = b"43/market,1";

/// An Engine.IO pong packet, the answer to [`ENGINEIO_PING`].
pub fn engineio_pong() -> Frame<'static> {
    text("3".to_owned())
}

/// Connects a Socket.IO connection to the `/market` namespace with `key` and
/// subscribes it to `symbols` in Quote mode, waiting for the
/// acknowledgement; pings on the way are answered.
pub async fn subscribe_socketio(ws: &mut Ws, key: &str, symbols: &[String]) -> Result<(), String> {
    let open = next_socketio(ws).await?;
    if !open.starts_with(b"0") {
        return Err(format!(
            "expected the Engine.IO open packet, got {}",
            String::from_utf8_lossy(&open)
        ));
    }
    send(ws, text(socketio_join(key))).await?;
    loop {
        let packet = next_socketio(ws).await?;
        if packet.starts_with(SOCKETIO_CONNECTED) {
            break;
        }
        if let Some(why) = packet.strip_prefix(SOCKETIO_REFUSED) {
            return Err(format!("connect refused: {}", String::from_utf8_lossy(why)));
        }
    }
    subscribe_socketio_joined(ws, symbols).await
}

/// The namespace connect packet carrying `key`.
fn socketio_join(key: &str) -> String {
    let auth = serde_json::json!({"api_key": key});
    format!("40/market,{auth}")
}

/// Subscribes a connection that joined `/market` to `symbols` in Quote mode,
/// waiting for the acknowledgement.
async fn subscribe_socketio_joined(ws: &mut Ws, symbols: &[String]) -> Result<(), String> {
    let symbols: Vec<serde_json::Value> = symbols
        .iter()
        .map(|s| serde_json::json!({"symbol": s, "exchange": EXCHANGE}))
        .collect();
    let subscribe = serde_json::json!(["subscribe", {"symbols": symbols, "mode": "Quote"}]);
    send(ws, text(format!("{SOCKETIO_EVENT}1{subscribe}"))).await?;
    loop {
        let packet = next_socketio(ws).await?;
        let Some(ack) = packet.strip_prefix(SOCKETIO_SUBSCRIBE_ACK) else {
            continue;
        };
        let value: serde_json::Value =
            serde_json::from_slice(ack).map_err(|e| format!("unreadable acknowledgement: {e}"))?;
        let reply = &value[0];
        return match reply["status"].as_str() {
            Some("success") => Ok(()),
            _ => Err(format!("subscribe refused: {reply}")),
        };
    }
}

/// Opens an Engine.IO session on long-polling through `http` and joins
/// `/market` there with `key`; returns the session's id, for the upgrade.
pub async fn socketio_polling_join(http: &mut HttpClient, key: &str) -> Result<String, String> {
    let bearer = format!("Bearer {key}");
    let mut request = async |method: Method, path: &str, body: Bytes, what: &str| {
        let answer = http
            .request(method, path, &bearer, body)
            .await
            .map_err(|e| e.to_string())?;
        if answer.status == 200 {
            Ok(answer.body)
        } else {
            Err(format!(
                "{what} refused: {} {}",
                answer.status,
                answer.body_text()
            ))
        }
    };
    let opened = request(Method::GET, SOCKETIO_POLLING_PATH, Bytes::new(), "open").await?;
    let handshake: serde_json::Value = match opened.strip_prefix(b"0") {
        Some(json) => serde_json::from_slice(json).map_err(|e| e.to_string())?,
        None => {
            let body = String::from_utf8_lossy(&opened);
            return Err(format!("no Engine.IO open packet: {body}"));
        }
    };
    let sid = handshake["sid"].as_str().ok_or("no sid")?.to_owned();
    let path = format!("{SOCKETIO_POLLING_PATH}&sid={sid}");
    request(Method::POST, &path, Bytes::from(socketio_join(key)), "join").await?;
    loop {
        let polled = request(Method::GET, &path, Bytes::new(), "poll").await?;
        for packet in polled.split(|b| *b == 0x1e) {
            if packet == ENGINEIO_PING {
                request(Method::POST, &path, Bytes::from_static(b"3"), "pong").await?;
            } else if packet.starts_with(SOCKETIO_CONNECTED) {
                return Ok(sid);
            } else if let Some(why) = packet.strip_prefix(SOCKETIO_REFUSED) {
                return Err(format!("connect refused: {}", String::from_utf8_lossy(why)));
            }
        }
    }
}

/// Upgrades the polling session of `ws` (opened with its `sid`) to the
/// WebSocket: the probe, then `5`; then subscribes to `symbols` as
/// [`subscribe_socketio`] does.
pub async fn upgrade_socketio(ws: &mut Ws, symbols: &[String]) -> Result<(), String> {
    send(ws, text("2probe".to_owned())).await?;
    let probe = next_socketio(ws).await?;
    if probe != b"3probe" {
        return Err(format!(
            "expected 3probe, got {}",
            String::from_utf8_lossy(&probe)
        ));
    }
    send(ws, text("5".to_owned())).await?;
    subscribe_socketio_joined(ws, symbols).await
}

/// The next Engine.IO packet that is not a ping, answering pings.
async fn next_socketio(ws: &mut Ws) -> Result<Vec<u8>, String> {
    loop {
        let packet = next_message(ws).await?;
        if packet != ENGINEIO_PING {
            return Ok(packet);
        }
        send(ws, engineio_pong()).await?;
    }
}

/// The proxy's `authenticate` request.
pub fn proxy_authenticate(key: &str) -> String {
    serde_json::json!({"action": "authenticate", "api_key": key}).to_string()
}

/// The proxy's `subscribe` request of `symbols` on [`EXCHANGE`] in mode 2
/// (Quote: every tick is a message; the LTP throttle of mode 1 conflates).
pub fn proxy_subscribe(symbols: &[String]) -> String {
    let symbols: Vec<serde_json::Value> = symbols
        .iter()
        .map(|s| serde_json::json!({"symbol": s, "exchange": EXCHANGE}))
        .collect();
    serde_json::json!({"action": "subscribe", "symbols": symbols, "mode": 2}).to_string()
}

/// Authenticates a `/proxy` connection with `key` and subscribes it to
/// `symbols` in Quote mode, waiting for each reply.
pub async fn subscribe_proxy(ws: &mut Ws, key: &str, symbols: &[String]) -> Result<(), String> {
    send(ws, text(proxy_authenticate(key))).await?;
    while !proxy_reply(
        &next_message(ws).await?,
        &["auth_response", "auth"],
        "authenticate",
    )? {}
    send(ws, text(proxy_subscribe(symbols))).await?;
    while !proxy_reply(
        &next_message(ws).await?,
        &["subscribe_response", "subscribe"],
        "subscribe",
    )? {}
    Ok(())
}

/// Whether `payload` is the successful reply of type `types` (either reply
/// style's name); `Err` for an error reply (errors of the `openalgo` style
/// have no `type`), `Ok(false)` for other messages.
fn proxy_reply(payload: &[u8], types: &[&str], what: &str) -> Result<bool, String> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("unreadable message: {e}"))?;
    let status = value["status"].as_str();
    if status == Some("error") && value.get("code").is_some() {
        return Err(json_error(&format!("{what} refused"), &value));
    }
    if !value["type"].as_str().is_some_and(|t| types.contains(&t)) {
        return Ok(false);
    }
    match status {
        Some("success") => Ok(true),
        _ => {
            // The first instrument refused says why.
            let refused = value["subscriptions"]
                .as_array()
                .and_then(|all| all.iter().find(|s| s["status"] != "success"));
            let why = refused.map_or(&value["message"], |s| &s["message"]);
            Err(format!(
                "{what} refused: {} {}",
                status.unwrap_or_default(),
                why.as_str().unwrap_or_default()
            ))
        }
    }
}

/// The FastWS `bars.subscribe` of `symbol`'s 1-minute bars.
pub fn fastws_subscribe(symbol: &str) -> String {
    serde_json::json!({
        "type": "bars.subscribe",
        "payload": {"symbol": symbol, "params": {"resolution": "1"}},
    })
    .to_string()
}

/// Subscribes an `/api/v1/ws` connection to `symbol`'s 1-minute bars and
/// waits for the reply.
pub async fn subscribe_fastws(ws: &mut Ws, symbol: &str) -> Result<(), String> {
    send(ws, text(fastws_subscribe(symbol))).await?;
    while !fastws_reply(&next_message(ws).await?)? {}
    Ok(())
}

/// Whether `payload` is a successful `bars.subscribe.response`; `Err` for
/// a refusal, `Ok(false)` for other messages.
fn fastws_reply(payload: &[u8]) -> Result<bool, String> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("unreadable message: {e}"))?;
    if value["type"] != "bars.subscribe.response" {
        return Ok(false);
    }
    match value["payload"]["status"].as_str() {
        Some("ok") => Ok(true),
        _ => Err(format!(
            "bars.subscribe refused: {}",
            value["payload"]["message"].as_str().unwrap_or_default()
        )),
    }
}

fn json_error(what: &str, value: &serde_json::Value) -> String {
    format!(
        "{what}: {} {}",
        value["code"].as_str().unwrap_or_default(),
        value["message"].as_str().unwrap_or_default()
    )
}

/// A text frame of `s`.
pub fn text(s: String) -> Frame<'static> {
    Frame::text(Payload::Owned(s.into_bytes()))
}

async fn send(ws: &mut Ws, frame: Frame<'_>) -> Result<(), String> {
    ws.write_frame(frame)
        .await
        .map_err(|e| format!("send failed: {e}"))
}

/// The payload of the next text or binary message; a close is an error.
async fn next_message(ws: &mut Ws) -> Result<Vec<u8>, String> {
    loop {
        let frame = ws
            .read_frame()
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        match frame.opcode {
            OpCode::Text | OpCode::Binary => return Ok(frame.payload.to_vec()),
            OpCode::Close => {
                return Err(format!(
                    "closed by the server: {}",
                    close_reason(&frame.payload)
                ));
            }
            _ => {}
        }
    }
}

/// `1008 connection limit exceeded` of a close frame's payload.
pub fn close_reason(payload: &[u8]) -> String {
    match payload {
        [a, b, reason @ ..] => format!(
            "{} {}",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        ),
        _ => "no code".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hub_urls_name_the_node_to_connect_to() {
        let asked = Target {
            addr: "127.0.0.1:8081".parse().unwrap(),
            host: "127.0.0.1:8081".into(),
        };
        // The node asked: kept as it is (no resolution).
        let same = hub_url(&asked, "ws://127.0.0.1:8081/ws/state_gex?access_token=t")
            .await
            .unwrap();
        assert_eq!(same.target, asked);
        assert_eq!(same.path, "/ws/state_gex?access_token=t");
        // Another node of the cluster: its address and its Host header.
        let other = hub_url(&asked, "ws://127.0.0.1:8082/ws/state_gex?access_token=t")
            .await
            .unwrap();
        assert_eq!(other.target.addr, "127.0.0.1:8082".parse().unwrap());
        assert_eq!(other.target.host, "127.0.0.1:8082");
        assert_eq!(other.path, "/ws/state_gex?access_token=t");
        // No TLS, and a URL needs a path.
        assert!(
            hub_url(&asked, "wss://127.0.0.1:8082/ws/state_gex")
                .await
                .is_err()
        );
        assert!(
            hub_url(&asked, "wss://127.0.0.1:8081/ws/state_gex")
                .await
                .is_err()
        );
        assert!(hub_url(&asked, "ws://127.0.0.1:8082").await.is_err());
    }

    #[test]
    fn hub_paths() {
        assert_eq!(
            path_of("ws://127.0.0.1:8080/ws/state_gex?access_token=abc"),
            Some("/ws/state_gex?access_token=abc")
        );
        assert_eq!(path_of("ws://host"), None);
        assert_eq!(path_of("nonsense"), None);
    }

    #[test]
    fn acks_of_both_formats() {
        assert_eq!(
            json_ack(br#"{"type":"ack","ackId":3,"success":true}"#).unwrap(),
            Some((3, Ok(())))
        );
        let refused = json_ack(
            br#"{"type":"ack","ackId":1,"success":false,"error":{"name":"Forbidden","message":"no"}}"#,
        )
        .unwrap();
        assert_eq!(refused, Some((1, Err("Forbidden: no".to_owned()))));
        assert_eq!(
            json_ack(br#"{"type":"system","event":"connected","connectionId":"c"}"#).unwrap(),
            None
        );
        assert!(json_ack(br#"{"type":"system","event":"disconnected","message":"bye"}"#).is_err());
        assert!(json_ack(b"not json").is_err());

        let ack = DownstreamMessage {
            message: Some(downstream_message::Message::AckMessage(
                downstream_message::AckMessage {
                    ack_id: 2,
                    success: true,
                    error: None,
                },
            )),
        };
        assert_eq!(
            protobuf_ack(&ack.encode_to_vec()).unwrap(),
            Some((2, Ok(())))
        );
        assert!(protobuf_ack(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn proxy_requests() {
        let auth: serde_json::Value = serde_json::from_str(&proxy_authenticate("k\"1")).unwrap();
        assert_eq!(
            auth,
            serde_json::json!({"action": "authenticate", "api_key": "k\"1"})
        );
        let symbols = ["LT0001/USD".to_owned(), "LT0002/USD".to_owned()];
        let sub: serde_json::Value = serde_json::from_str(&proxy_subscribe(&symbols)).unwrap();
        assert_eq!(
            sub,
            serde_json::json!({"action": "subscribe", "mode": 2, "symbols": [
                {"symbol": "LT0001/USD", "exchange": "CRYPTO"},
                {"symbol": "LT0002/USD", "exchange": "CRYPTO"},
            ]})
        );
    }

    #[test]
    fn proxy_replies_of_both_styles() {
        let auth = ["auth_response", "auth"];
        let ok = |p: &str| proxy_reply(p.as_bytes(), &auth, "authenticate");
        assert_eq!(
            ok(
                r#"{"type":"auth_response","status":"success","message":"Authentication successful"}"#
            ),
            Ok(true)
        );
        assert_eq!(
            ok(
                r#"{"type":"auth","status":"success","message":"Authentication successful","broker":"b"}"#
            ),
            Ok(true)
        );
        assert_eq!(ok(r#"{"type":"pong","status":"success"}"#), Ok(false));
        let refused = ok(
            r#"{"type":"auth_response","status":"error","code":"AUTHENTICATION_ERROR","message":"Connection limit exceeded: at most 10 connections per API key"}"#,
        );
        assert_eq!(
            refused,
            Err("authenticate refused: AUTHENTICATION_ERROR Connection limit exceeded: at most 10 connections per API key".to_owned())
        );
        assert!(
            ok(r#"{"status":"error","code":"INVALID_API_KEY","message":"Invalid API key"}"#)
                .is_err()
        );
        assert!(ok("nonsense").is_err());

        let sub = ["subscribe_response", "subscribe"];
        let subscribed = |p: &str| proxy_reply(p.as_bytes(), &sub, "subscribe");
        assert_eq!(
            subscribed(
                r#"{"type":"subscribe_response","status":"success","subscriptions":[{"symbol":"LT0001/USD","exchange":"CRYPTO","status":"success","mode":"Quote"}],"message":"Subscription processing complete","broker":"tickwire"}"#
            ),
            Ok(true)
        );
        assert_eq!(
            subscribed(
                r#"{"type":"subscribe","status":"partial","subscriptions":[{"symbol":"A","exchange":"X","status":"success"},{"symbol":"B","exchange":"X","status":"error","message":"No adapter carries B"}]}"#
            ),
            Err("subscribe refused: partial No adapter carries B".to_owned())
        );
        // A snapshot arriving first is not the reply.
        assert_eq!(
            subscribed(
                r#"{"type":"market_data","symbol":"LT0001/USD","exchange":"CRYPTO","mode":2,"data":{"ltp":0.0}}"#
            ),
            Ok(false)
        );
    }

    #[test]
    fn fastws_subscription() {
        let sub: serde_json::Value = serde_json::from_str(&fastws_subscribe("LT0001/USD")).unwrap();
        assert_eq!(
            sub,
            serde_json::json!({"type": "bars.subscribe", "payload": {"symbol": "LT0001/USD", "params": {"resolution": "1"}}})
        );
        assert_eq!(
            fastws_reply(br#"{"type":"bars.subscribe.response","payload":{"status":"ok","symbol":"LT0001/USD","message":"Subscribed to LT0001/USD","topic":"bars:LT0001/USD:1"}}"#),
            Ok(true)
        );
        assert_eq!(
            fastws_reply(br#"{"type":"bars.subscribe.response","payload":{"status":"error","symbol":"ZZ","message":"Unknown symbol ZZ","topic":"bars:ZZ:1"}}"#),
            Err("bars.subscribe refused: Unknown symbol ZZ".to_owned())
        );
        assert_eq!(
            fastws_reply(br#"{"type":"bars.update","payload":{"time":1,"close":1.0}}"#),
            Ok(false)
        );
        assert!(fastws_reply(b"").is_err());
    }

    #[test]
    fn close_reasons() {
        assert_eq!(close_reason(b"\x03\xf0bye"), "1008 bye");
        assert_eq!(close_reason(b""), "no code");
    }
}
