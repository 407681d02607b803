//! Engine.IO v4 and Socket.IO v5 packets as they travel in WebSocket text
//! frames: what a `/market` session over the gateway's own transport reads
//! and writes.
//!
//! An Engine.IO packet is its type's digit and its data (`4` and a
//! Socket.IO packet, `2` a ping, `3` a pong). A Socket.IO packet is its
//! type's digit, the number of binary attachments and a `-` (binary types
//! only), the namespace and a `,` (unless it is `/`), the acknowledgement id
//! if any, and the JSON payload: `42/market,7["get_ltp",{...}]`.

use bytes::{BufMut as _, Bytes, BytesMut};

/// An Engine.IO packet read from a text frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// `1`: the client closes the session.
    Close,
    /// `2`: a ping (with its data, answered in the pong).
    Ping(&'a str),
    /// `3`: the answer to the server's ping.
    Pong,
    /// `4`: a message, a Socket.IO packet.
    Message(&'a str),
    /// `5`: the client takes this transport up; `6`: a no-op. Neither
    /// means anything on a connection that started as a WebSocket.
    Upgrade,
    /// `6`: nothing.
    Noop,
}

/// A Socket.IO packet's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0`: joins a namespace (the payload: the `auth` object).
    Connect,
    /// `1`: leaves a namespace.
    Disconnect,
    /// `2`: an event, `["name", ...arguments]`.
    Event,
    /// `3`: the acknowledgement of an event the server sent.
    Ack,
}

/// A Socket.IO packet read from an Engine.IO message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Its type.
    pub kind: Kind,
    /// Its namespace (`/` when the packet names none).
    pub namespace: &'a str,
    /// The acknowledgement the sender asks for, if any.
    pub ack: Option<u64>,
    /// The JSON payload (empty when there is none).
    pub data: &'a str,
}

/// Why a packet could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The message was empty.
    #[error("an empty packet")]
    Empty,
    /// The first character is no Engine.IO packet type.
    #[error("unknown Engine.IO packet type {0:?}")]
    EngineType(char),
    /// The `open` packet is the server's.
    #[error("an Engine.IO open packet from the client")]
    Open,
    /// The first character is no Socket.IO packet type.
    #[error("unknown Socket.IO packet type {0:?}")]
    SocketType(char),
    /// A `connect_error` is the server's.
    #[error("a Socket.IO connect_error from the client")]
    ConnectError,
    /// A packet with binary attachments: `/market` takes JSON only.
    #[error("binary Socket.IO packets are not taken here")]
    Binary,
    /// The acknowledgement id is too large.
    #[error("an acknowledgement id out of range")]
    AckId,
}

/// Reads an Engine.IO packet from the text of a frame.
pub fn engine(text: &str) -> Result<EnginePacket<'_>, PacketError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(PacketError::Empty)?;
    let data = chars.as_str();
    Ok(match kind {
        '0' => return Err(PacketError::Open),
        '1' => EnginePacket::Close,
        '2' => EnginePacket::Ping(data),
        '3' => EnginePacket::Pong,
        '4' => EnginePacket::Message(data),
        '5' => EnginePacket::Upgrade,
        '6' => EnginePacket::Noop,
        other => return Err(PacketError::EngineType(other)),
    })
}

/// Reads a Socket.IO packet from an Engine.IO message.
pub fn socket(text: &str) -> Result<Packet<'_>, PacketError> {
    let mut chars = text.chars();
    let kind = match chars.next().ok_or(PacketError::Empty)? {
        '0' => Kind::Connect,
        '1' => Kind::Disconnect,
        '2' => Kind::Event,
        '3' => Kind::Ack,
        '4' => return Err(PacketError::ConnectError),
        '5' | '6' => return Err(PacketError::Binary),
        other => return Err(PacketError::SocketType(other)),
    };
    let rest = chars.as_str();
    let (namespace, rest) = if rest.starts_with('/') {
        rest.split_once(',').unwrap_or((rest, ""))
    } else {
        ("/", rest)
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (ack, data) = rest.split_at(digits);
    let ack = if ack.is_empty() {
        None
    } else {
        Some(ack.parse().map_err(|_| PacketError::AckId)?)
    };
    Ok(Packet {
        kind,
        namespace,
        ack,
        data,
    })
}

/// The Engine.IO ping the server sends every ping interval.
pub const PING: &[u8] = b"2";

/// The Engine.IO `open` packet: the session's id, the transports it may
/// upgrade to (none for a WebSocket; `websocket` for long-polling), its
/// heartbeat, the largest message taken.
pub fn open(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: usize,
) -> Bytes {
    let handshake = serde_json::json!({
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": ping_interval_ms,
        "pingTimeout": ping_timeout_ms,
        "maxPayload": max_payload,
    });
    let mut out = BytesMut::with_capacity(128);
    out.put_u8(b'0');
    out.extend_from_slice(handshake.to_string().as_bytes());
    out.freeze()
}

/// The answer to a ping: a pong with the ping's data.
pub fn pong(data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + data.len());
    out.put_u8(b'3');
    out.extend_from_slice(data.as_bytes());
    out.freeze()
}

/// The start of a Socket.IO packet of type `kind` (a digit) in `namespace`,
/// inside an Engine.IO message.
fn head(kind: u8, namespace: &str, room: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(3 + namespace.len() + room);
    out.put_u8(b'4');
    out.put_u8(kind);
    if namespace != "/" {
        out.extend_from_slice(namespace.as_bytes());
        out.put_u8(b',');
    }
    out
}

/// `namespace` joined: the socket's id in it.
pub fn connected(namespace: &str, sid: &str) -> Bytes {
    let mut out = head(b'0', namespace, 12 + sid.len());
    out.extend_from_slice(serde_json::json!({ "sid": sid }).to_string().as_bytes());
    out.freeze()
}

/// `namespace` refused, for `message`.
pub fn connect_error(namespace: &str, message: &str) -> Bytes {
    let mut out = head(b'4', namespace, 16 + message.len());
    out.extend_from_slice(
        serde_json::json!({ "message": message })
            .to_string()
            .as_bytes(),
    );
    out.freeze()
}

/// The event `name` with one argument, `data` (JSON).
pub fn event(namespace: &str, name: &str, data: &str) -> Bytes {
    let name = serde_json::Value::from(name).to_string();
    let mut out = head(b'2', namespace, 3 + name.len() + data.len());
    out.put_u8(b'[');
    out.extend_from_slice(name.as_bytes());
    out.put_u8(b',');
    out.extend_from_slice(data.as_bytes());
    out.put_u8(b']');
    out.freeze()
}

/// The acknowledgement `id` of a client's event, with one argument, `data`
/// (JSON).
pub fn ack(namespace: &str, id: u64, data: &str) -> Bytes {
    let mut id_text = itoa::Buffer::new();
    let id_text = id_text.format(id);
    let mut out = head(b'3', namespace, 2 + id_text.len() + data.len());
    out.extend_from_slice(id_text.as_bytes());
    out.put_u8(b'[');
    out.extend_from_slice(data.as_bytes());
    out.put_u8(b']');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: &Bytes) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn engine_packets_read_by_type() {
        assert_eq!(engine("3"), Ok(EnginePacket::Pong));
        assert_eq!(engine("2probe"), Ok(EnginePacket::Ping("probe")));
        assert_eq!(engine("1"), Ok(EnginePacket::Close));
        assert_eq!(
            engine("40/market,{}"),
            Ok(EnginePacket::Message("0/market,{}"))
        );
        assert_eq!(engine("6"), Ok(EnginePacket::Noop));
        assert_eq!(engine(""), Err(PacketError::Empty));
        assert_eq!(engine("0{}"), Err(PacketError::Open));
        assert_eq!(engine("x"), Err(PacketError::EngineType('x')));
    }

    #[test]
    fn socket_packets_read_namespace_ack_and_data() {
        assert_eq!(
            socket(r#"0/market,{"api_key":"k"}"#),
            Ok(Packet {
                kind: Kind::Connect,
                namespace: "/market",
                ack: None,
                data: r#"{"api_key":"k"}"#,
            })
        );
        assert_eq!(
            socket(r#"2/market,17["get_ltp",{"symbol":"A"}]"#),
            Ok(Packet {
                kind: Kind::Event,
                namespace: "/market",
                ack: Some(17),
                data: r#"["get_ltp",{"symbol":"A"}]"#,
            })
        );
        // The main namespace is not named; a packet may have no payload.
        assert_eq!(
            socket("0"),
            Ok(Packet {
                kind: Kind::Connect,
                namespace: "/",
                ack: None,
                data: "",
            })
        );
        assert_eq!(socket("1/market,").map(|p| p.namespace), Ok("/market"));
        assert_eq!(socket("1/market").map(|p| p.namespace), Ok("/market"));
        assert_eq!(
            socket(r#"51-/market,["x",{"_placeholder":true,"num":0}]"#),
            Err(PacketError::Binary)
        );
        assert_eq!(socket("4/market,{}"), Err(PacketError::ConnectError));
        assert_eq!(socket("9"), Err(PacketError::SocketType('9')));
        assert_eq!(
            socket("2/market,99999999999999999999999[]"),
            Err(PacketError::AckId)
        );
    }

    #[test]
    fn what_the_server_writes_reads_back() {
        let open = open("abc", &[], 5000, 10000, 100_000);
        assert!(text(&open).starts_with('0'));
        let handshake: serde_json::Value = serde_json::from_str(&text(&open)[1..]).unwrap();
        assert_eq!(handshake["sid"], "abc");
        assert_eq!(handshake["upgrades"], serde_json::json!([]));
        let polling = super::open("abc", &["websocket"], 5000, 10000, 100_000);
        let polling: serde_json::Value = serde_json::from_str(&text(&polling)[1..]).unwrap();
        assert_eq!(polling["upgrades"], serde_json::json!(["websocket"]));
        assert_eq!(
            (&handshake["pingInterval"], &handshake["pingTimeout"]),
            (&serde_json::json!(5000), &serde_json::json!(10000))
        );
        assert_eq!(text(&pong("probe")), "3probe");
        assert_eq!(
            text(&connected("/market", "s1")),
            r#"40/market,{"sid":"s1"}"#
        );
        assert_eq!(
            text(&connect_error("/market", "invalid \"key\"")),
            r#"44/market,{"message":"invalid \"key\""}"#
        );
        assert_eq!(
            text(&connect_error("/", "Invalid namespace")),
            r#"44{"message":"Invalid namespace"}"#
        );
        let event = event("/market", "market_data", r#"{"ltp":1}"#);
        assert_eq!(text(&event), r#"42/market,["market_data",{"ltp":1}]"#);
        let read = socket(
            engine(text(&event))
                .map(|p| match p {
                    EnginePacket::Message(m) => m,
                    other => panic!("{other:?}"),
                })
                .unwrap(),
        )
        .unwrap();
        assert_eq!((read.kind, read.namespace), (Kind::Event, "/market"));
        assert_eq!(
            text(&ack("/market", 12, r#"{"status":"success"}"#)),
            r#"43/market,12[{"status":"success"}]"#
        );
    }
}
