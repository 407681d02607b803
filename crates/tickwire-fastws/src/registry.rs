//! The operation table, and the dispatcher derived from it.
//!
//! FastWS declares an operation with a decorator (`@router.send("subscribe",
//! reply="subscribe.response")`, `@router.recv("update")`) whose payload and reply types
//! are pydantic models. Here each operation is one row of a static table, [`OPERATIONS`]:
//! its type, direction, payload schema, reply and (for client operations) decoder. The
//! dispatcher ([`Registry::decode`]), the replies ([`Registry::reply`]) and the AsyncAPI
//! document ([`Registry::asyncapi`](crate::Registry::asyncapi)) all read that one table.

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::bars::{self, ClientOp};
use crate::wire::{object_fields, present, string};
use crate::{Error, FrameKind};

/// Who sends an operation's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The client sends it (FastWS `SEND`; AsyncAPI `publish`): decoded by
    /// [`Registry::decode`], optionally answered with a reply.
    ClientToServer,
    /// The server sends it (FastWS `RECEIVE`; AsyncAPI `subscribe`): a reply or a
    /// broadcast to a topic's subscribers.
    ServerToClient,
}

/// A named JSON Schema (draft 7, the dialect of AsyncAPI 2.4.0 schema objects) of a payload.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The key under `components.schemas`; operations sharing a payload share the name.
    pub name: &'static str,
    /// Builds the schema (refer to other payload schemas as `#/components/schemas/Name`).
    pub build: fn() -> serde_json::Value,
}

/// Turns the raw `payload` of an envelope (`None` when absent or `null`) into a
/// [`ClientOp`].
pub type Decoder = fn(Option<&RawValue>) -> Result<ClientOp, Error>;

/// One operation: a message type, who sends it, what it carries and what answers it.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// The envelope's `type`: `bars.subscribe`.
    pub type_name: &'static str,
    /// Who sends it.
    pub direction: Direction,
    /// A short machine name (AsyncAPI message `name`).
    pub name: &'static str,
    /// A human title (AsyncAPI message `title`).
    pub title: &'static str,
    /// One line saying what it does.
    pub summary: &'static str,
    /// A longer description (CommonMark).
    pub description: &'static str,
    /// Tags grouping operations (FastWS router tags).
    pub tags: &'static [&'static str],
    /// The schema of its payload.
    pub payload: Schema,
    /// The `type` of the server's reply to it, for a client operation that has one.
    pub reply: Option<&'static str>,
    /// The payload decoder of a client operation; `None` for server operations.
    pub decode: Option<Decoder>,
    /// A complete example frame (`{"type":...,"payload":...}`), shown in the document.
    pub example: &'static str,
}

/// The operations of `/api/v1/ws`, declared once: the bar subscription protocol.
pub static OPERATIONS: [Operation; 5] = [
    Operation {
        type_name: "bars.subscribe",
        direction: Direction::ClientToServer,
        name: "subscribe",
        title: "Subscribe",
        summary: "Subscribe to real-time bar updates",
        description: "Subscribe to real-time OHLC bar updates for a symbol and a resolution. \
                      Updates then arrive as `bars.update` messages for the topic \
                      `bars:{SYMBOL}:{RESOLUTION}`. The resolution defaults to `1`; it may be \
                      given as `params.resolution` or, in the later shape, as `resolution`.",
        tags: &["datafeed"],
        payload: bars::SUBSCRIPTION_REQUEST,
        reply: Some("bars.subscribe.response"),
        decode: Some(bars::decode_subscribe),
        example: r#"{"type":"bars.subscribe","payload":{"symbol":"AAPL","params":{"resolution":"1"}}}"#,
    },
    Operation {
        type_name: "bars.subscribe.response",
        direction: Direction::ServerToClient,
        name: "subscribe_response",
        title: "Subscribe Response",
        summary: "The outcome of a subscription",
        description: "The reply to `bars.subscribe`, with the topic subscribed to.",
        tags: &["datafeed"],
        payload: bars::SUBSCRIPTION_RESPONSE,
        reply: None,
        decode: None,
        example: r#"{"type":"bars.subscribe.response","payload":{"status":"ok","symbol":"AAPL","message":"Subscribed to AAPL","topic":"bars:AAPL:1"}}"#,
    },
    Operation {
        type_name: "bars.unsubscribe",
        direction: Direction::ClientToServer,
        name: "unsubscribe",
        title: "Unsubscribe",
        summary: "Unsubscribe from bar updates",
        description: "Remove the subscription to bar updates of a symbol and resolution. \
                      The payload is that of `bars.subscribe`.",
        tags: &["datafeed"],
        payload: bars::SUBSCRIPTION_REQUEST,
        reply: Some("bars.unsubscribe.response"),
        decode: Some(bars::decode_unsubscribe),
        example: r#"{"type":"bars.unsubscribe","payload":{"symbol":"AAPL","params":{"resolution":"1"}}}"#,
    },
    Operation {
        type_name: "bars.unsubscribe.response",
        direction: Direction::ServerToClient,
        name: "unsubscribe_response",
        title: "Unsubscribe Response",
        summary: "The outcome of an unsubscription",
        description: "The reply to `bars.unsubscribe`, with the topic left.",
        tags: &["datafeed"],
        payload: bars::SUBSCRIPTION_RESPONSE,
        reply: None,
        decode: None,
        example: r#"{"type":"bars.unsubscribe.response","payload":{"status":"ok","symbol":"AAPL","message":"Unsubscribed from AAPL","topic":"bars:AAPL:1"}}"#,
    },
    Operation {
        type_name: "bars.update",
        direction: Direction::ServerToClient,
        name: "update",
        title: "Update",
        summary: "A bar changed",
        description: "Real-time OHLC bar data, broadcast to the subscribers of the topic \
                      `bars:{SYMBOL}:{RESOLUTION}` on every trade. A bar with the same \
                      `time` as the previous one replaces it; a later `time` starts a new bar.",
        tags: &["datafeed"],
        payload: bars::BAR,
        reply: None,
        decode: None,
        example: r#"{"type":"bars.update","payload":{"time":1697097600000,"open":150.0,"high":151.0,"low":149.5,"close":150.5,"volume":1000000}}"#,
    },
];

/// The registry of the seed protocol, over [`OPERATIONS`].
pub static BARS: Registry = Registry::new(&OPERATIONS);

/// A table of operations and what is derived from it: dispatch, replies, the document.
#[derive(Debug, Clone, Copy)]
pub struct Registry {
    operations: &'static [Operation],
}

/// The longest unknown `type` kept in an error.
const MAX_ECHOED_TYPE: usize = 64;

impl Registry {
    /// A registry over `operations`. See [`Registry::check`] for what a table must satisfy.
    pub const fn new(operations: &'static [Operation]) -> Registry {
        Registry { operations }
    }

    /// The operations, in declaration order.
    pub fn operations(&self) -> &'static [Operation] {
        self.operations
    }

    /// The operation whose type is `type_name`.
    pub fn get(&self, type_name: &str) -> Option<&'static Operation> {
        self.operations.iter().find(|op| op.type_name == type_name)
    }

    /// Checks the table's consistency: unique types, client operations with a decoder and
    /// server ones without, every reply a declared server operation, payload schemas of
    /// the same name built identically, every example a JSON object of its own type.
    pub fn check(&self) -> Result<(), String> {
        for (i, op) in self.operations.iter().enumerate() {
            let ty = op.type_name;
            if self.operations[..i].iter().any(|o| o.type_name == ty) {
                return Err(format!("`{ty}` is declared twice"));
            }
            match (op.direction, op.decode, op.reply) {
                (Direction::ClientToServer, None, _) => {
                    return Err(format!("client operation `{ty}` has no decoder"));
                }
                (Direction::ServerToClient, Some(_), _)
                | (Direction::ServerToClient, _, Some(_)) => {
                    return Err(format!("server operation `{ty}` has a decoder or a reply"));
                }
                _ => {}
            }
            if let Some(reply) = op.reply {
                match self.get(reply) {
                    Some(r) if r.direction == Direction::ServerToClient => {}
                    _ => return Err(format!("reply `{reply}` of `{ty}` is no server operation")),
                }
            }
            for other in &self.operations[..i] {
                if other.payload.name == op.payload.name
                    && (other.payload.build)() != (op.payload.build)()
                {
                    return Err(format!("two different schemas named `{}`", op.payload.name));
                }
            }
            let example: serde_json::Value = serde_json::from_str(op.example)
                .map_err(|e| format!("example of `{ty}` is not JSON: {e}"))?;
            if example.get("type").and_then(|t| t.as_str()) != Some(ty) {
                return Err(format!("example of `{ty}` has another type"));
            }
        }
        Ok(())
    }

    /// Decodes one client frame into the operation it requests, as FastWS does:
    ///
    /// 1. the frame must be text holding a JSON object with a string `type` (else
    ///    [`Error::BinaryFrame`], [`Error::InvalidJson`], [`Error::MissingType`],
    ///    [`Error::InvalidField`]); other keys are ignored;
    /// 2. `type` must name a [`Direction::ClientToServer`] operation (else
    ///    [`Error::UnknownType`], even when the payload is also bad);
    /// 3. that operation's decoder validates `payload` (a missing or `null` payload is
    ///    refused by operations that need one).
    ///
    /// Every error closes the connection: send [`Error::close`]. Call
    /// [`Timers::on_receive`](crate::Timers::on_receive) for every data frame, before
    /// decoding.
    pub fn decode(&self, kind: FrameKind, frame: &[u8]) -> Result<ClientOp, Error> {
        if kind == FrameKind::Binary {
            return Err(Error::BinaryFrame);
        }
        // Text frames are UTF-8 (RFC 6455 §5.6); the WebSocket layer may not have checked.
        let text = std::str::from_utf8(frame).map_err(|e| Error::InvalidJson {
            reason: format!("not UTF-8: {e}"),
        })?;
        let [ty, payload] =
            object_fields(text, ["type", "payload"]).map_err(|e| Error::InvalidJson {
                reason: e.to_string(),
            })?;
        let ty = string(present(ty).ok_or(Error::MissingType)?, "type")?;
        let decode = self
            .operations
            .iter()
            .find(|op| op.direction == Direction::ClientToServer && op.type_name == ty)
            .and_then(|op| op.decode)
            .ok_or_else(|| {
                let mut end = ty.len().min(MAX_ECHOED_TYPE);
                while !ty.is_char_boundary(end) {
                    end -= 1;
                }
                Error::UnknownType {
                    type_name: ty[..end].to_owned(),
                }
            })?;
        decode(present(payload))
    }

    /// The frame answering `op` with status `ok`, of the reply type its operation declares
    /// (`bars.subscribe.response` for `bars.subscribe`); `None` for an operation with no
    /// reply, which FastWS answers with nothing.
    pub fn reply(&self, op: &ClientOp) -> Option<Bytes> {
        let reply = self.get(op.type_name())?.reply?;
        Some(op.encode_response(reply, bars::Status::Ok, &op.ok_message()))
    }

    /// The frame answering `op` with status `error` and `message`, for a server that
    /// refuses a request it could decode (an unknown symbol, a subscription limit).
    pub fn error_reply(&self, op: &ClientOp, message: &str) -> Option<Bytes> {
        let reply = self.get(op.type_name())?.reply?;
        Some(op.encode_response(reply, bars::Status::Error, message))
    }
}

impl Default for Registry {
    fn default() -> Registry {
        BARS
    }
}

/// Decodes one client frame with the seed protocol's table: [`BARS`]`.decode(kind, frame)`.
pub fn decode(kind: FrameKind, frame: &[u8]) -> Result<ClientOp, Error> {
    BARS.decode(kind, frame)
}

/// Fields of an object payload, for decoders.
pub(crate) fn payload_fields<'a, const N: usize>(
    raw: &'a RawValue,
    field: &'static str,
    names: [&'static str; N],
) -> Result<[Option<&'a RawValue>; N], Error> {
    object_fields(raw.get(), names).map_err(|_| Error::InvalidField {
        field,
        reason: "expected an object",
    })
}
