//! The subscriber side of each protocol: negotiating, subscribing and
//! waiting for the server to confirm, before any update is measured.
//!
//! - pubsub (Azure Web PubSub client protocol): `GET /negotiate` with
//!   `Authorization: Basic <key>` gives the `state_gex` hub's URL with an
//!   access token; the connection offers `protobuf.webpubsub.azure.v1` or
//!   `json.webpubsub.azure.v1` and sends one `joinGroup` with an `ackId` per
//!   group, then waits for every ack.
//! - `/ws`: one `subscribe` naming every symbol, then a `ping`; replies come
//!   in order, so the `pong` confirms the subscription (an `error` before it
//!   refuses it).
//! - `/stream`: `subscribe` with at most 10 symbols at a time, each answered
//!   by `subscribed` listing them.
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
use crate::net::{HttpClient, Prefixed};
use crate::topics::PUBSUB_HUB;

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
    /// Path and query of the `state_gex` hub's URL (with its token).
    pub hub_path: String,
}

#[derive(Deserialize)]
struct NegotiateBody {
    websocket_urls: std::collections::HashMap<String, String>,
    prefix: String,
}

/// Trades `key` for the `state_gex` hub's URL and the group prefix.
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
    Ok(Negotiated {
        prefix: body.prefix,
        hub_path: path_of(url)
            .ok_or_else(|| bad(format!("bad hub URL {url:?}")))?
            .to_owned(),
    })
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

fn json_error(what: &str, value: &serde_json::Value) -> String {
    format!(
        "{what}: {} {}",
        value["code"].as_str().unwrap_or_default(),
        value["message"].as_str().unwrap_or_default()
    )
}

fn text(s: String) -> Frame<'static> {
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
    fn close_reasons() {
        assert_eq!(close_reason(b"\x03\xf0bye"), "1008 bye");
        assert_eq!(close_reason(b""), "no code");
    }
}
