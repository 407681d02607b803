//! A client of the GEX hubs, in Rust: negotiate, connect over `protobuf.webpubsub.azure.v1`,
//! join a group, and decode each record with `tickwire-pipeline`.
//!
//! ```text
//! cargo run --release &                     # the server, on the demo data
//! cargo run -p tickwire-examples --example gex_client -- blue_SPX_state_gex_zero
//! ```
//!
//! Environment: `TICKWIRE_URL` (default `http://127.0.0.1:8080`), `TICKWIRE_KEY` (default the
//! demo key). It prints five records and leaves.

#![allow(clippy::print_stdout)] // an example client prints what it receives

use std::error::Error;

use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tickwire_proto::webpubsub::downstream_message::{self, system_message};
use tickwire_proto::webpubsub::message_data::Data;
use tickwire_proto::webpubsub::upstream_message::{self, JoinGroupMessage};
use tickwire_proto::webpubsub::{DownstreamMessage, UpstreamMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let base = std::env::var("TICKWIRE_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let key = std::env::var("TICKWIRE_KEY").unwrap_or_else(|_| "tickwire-demo-key".into());
    let group = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "blue_SPX_state_gex_zero".into());
    let hub =
        hub_of(&group).ok_or("the group names no hub (…_orderflow_…, _classic_, _state_…)")?;

    // 1. Negotiate: one plain HTTP/1.1 GET, so the example needs no HTTP client crate.
    let negotiate = http_get(&base, "/negotiate", &key).await?;
    let negotiate: serde_json::Value = serde_json::from_str(&negotiate)?;
    let url = negotiate["websocket_urls"][hub]
        .as_str()
        .ok_or("negotiate gave no URL for the hub")?;

    // 2. Connect, asking for the protobuf subprotocol.
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("protobuf.webpubsub.azure.v1"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;

    // 3. Join the group, with an ackId so the server acknowledges it.
    let join = UpstreamMessage {
        message: Some(upstream_message::Message::JoinGroupMessage(
            JoinGroupMessage {
                group: group.clone(),
                ack_id: Some(1),
            },
        )),
    };
    ws.send(Message::Binary(join.encode_to_vec().into()))
        .await?;

    // 4. Read: connected, the ack, then one record a second.
    let mut records = 0;
    while let Some(message) = ws.next().await {
        let Message::Binary(bytes) = message? else {
            continue;
        };
        match DownstreamMessage::decode(bytes)?.message {
            Some(downstream_message::Message::SystemMessage(system)) => {
                if let Some(system_message::Message::ConnectedMessage(c)) = system.message {
                    println!("connected as {}", c.connection_id);
                }
            }
            Some(downstream_message::Message::AckMessage(ack)) => {
                println!(
                    "ack {}: success={} {:?}",
                    ack.ack_id, ack.success, ack.error
                );
                if !ack.success {
                    return Ok(());
                }
            }
            Some(downstream_message::Message::DataMessage(data)) => {
                let Some(Data::ProtobufData(any)) = data.data.and_then(|d| d.data) else {
                    continue;
                };
                let kind = tickwire_pipeline::RecordKind::from_type_url(&any.type_url)
                    .ok_or("unknown record type")?;
                let record = tickwire_pipeline::decompress(kind, &any.value)?;
                let json = tickwire_pipeline::to_json(&record);
                println!("{} {} spot={}", any.type_url, record.ticker(), json["spot"]);
                records += 1;
                if records == 5 {
                    break;
                }
            }
            other => println!("{other:?}"),
        }
    }
    ws.close(None).await?;
    Ok(())
}

/// The hub whose groups look like `group`.
fn hub_of(group: &str) -> Option<&'static str> {
    tickwire_model::Hub::ALL.into_iter().find_map(|hub| {
        let prefix = group.split('_').next()?;
        tickwire_model::GroupName::parse(prefix, hub, group).map(|_| hub.name())
    })
}

/// `GET path` with `Authorization: Basic key`; the body of a 200.
async fn http_get(base: &str, path: &str, key: &str) -> Result<String, Box<dyn Error>> {
    let host = base
        .strip_prefix("http://")
        .ok_or("TICKWIRE_URL must be http://HOST:PORT")?
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {key}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8(response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("negotiate failed: {}", head.lines().next().unwrap_or("")).into());
    }
    Ok(body.to_owned())
}
