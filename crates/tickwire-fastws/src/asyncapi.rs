//! The AsyncAPI 2.4.0 document derived from the operation table.
//!
//! Its shape is FastWS's (`fastws/docs.py`, `get_asyncapi`): one channel `/` whose
//! `publish` operation lists the messages the client sends and whose `subscribe`
//! operation lists those the server sends (replies and broadcasts); `components.messages`
//! keyed by operation type, each request linking its reply with `x-response`;
//! `components.schemas` holding the payload schemas and one envelope schema per message
//! (`{"type": <const>, "payload": <payload schema>}`).
//! AsyncAPI 2.4.0: <https://www.asyncapi.com/docs/reference/specification/v2.4.0>.

use serde_json::{Map, Value, json};

use crate::{Direction, Operation, Registry};

/// The document's `info` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info<'a> {
    /// The API's title.
    pub title: &'a str,
    /// The API's version (not AsyncAPI's).
    pub version: &'a str,
    /// What the API does (CommonMark).
    pub description: &'a str,
}

impl Default for Info<'static> {
    /// The seed's settings: `Trading WebSockets`, version `1.0.0`.
    fn default() -> Info<'static> {
        Info {
            title: "Trading WebSockets",
            version: "1.0.0",
            description: "Real-time OHLC bar streaming over one WebSocket. Every message is \
                          a JSON envelope `{\"type\": ..., \"payload\": ...}`. A frame that \
                          does not validate closes the connection with 1003 `Could not \
                          validate payload`, an unknown type with 1003 `No matching type`. \
                          Clients must send a message at least every heartbeat interval; a \
                          connection lives at most the maximum lifespan.",
        }
    }
}

/// The AsyncAPI version the document declares.
pub const ASYNCAPI_VERSION: &str = "2.4.0";

const MESSAGES: &str = "#/components/messages/";
const SCHEMAS: &str = "#/components/schemas/";

/// The `components.schemas` key of the envelope of `type_name`:
/// `bars.subscribe.response` -> `BarsSubscribeResponseMessage`.
pub fn envelope_schema_name(type_name: &str) -> String {
    let mut name = String::with_capacity(type_name.len() + 7);
    for word in type_name.split(['.', '_', '-']).filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name.push_str("Message");
    name
}

impl Registry {
    /// The AsyncAPI 2.4.0 document of the registry's operations, as served at
    /// `GET /api/v1/ws/asyncapi.json`.
    pub fn asyncapi(&self, info: &Info<'_>) -> Value {
        let ops = self.operations();
        let refs = |direction: Direction| -> Vec<Value> {
            ops.iter()
                .filter(|op| op.direction == direction)
                .map(|op| json!({ "$ref": format!("{MESSAGES}{}", op.type_name) }))
                .collect()
        };

        let mut channel = Map::new();
        let publish = refs(Direction::ClientToServer);
        if !publish.is_empty() {
            channel.insert(
                "publish".into(),
                json!({
                    "operationId": "sendMessage",
                    "summary": "The API user can send a given message to the server.",
                    "message": { "oneOf": publish },
                }),
            );
        }
        let subscribe = refs(Direction::ServerToClient);
        if !subscribe.is_empty() {
            channel.insert(
                "subscribe".into(),
                json!({
                    "operationId": "processMessage",
                    "summary": "The API user can receive a given message from the server.",
                    "message": { "oneOf": subscribe },
                }),
            );
        }

        let mut schemas = Map::new();
        let mut messages = Map::new();
        for op in ops {
            schemas
                .entry(op.payload.name)
                .or_insert_with(|| (op.payload.build)());
            schemas.insert(envelope_schema_name(op.type_name), envelope_schema(op));
            messages.insert(op.type_name.into(), message(op));
        }

        json!({
            "asyncapi": ASYNCAPI_VERSION,
            "info": {
                "title": info.title,
                "version": info.version,
                "description": info.description,
            },
            "defaultContentType": "application/json",
            "channels": { "/": channel },
            "components": { "schemas": schemas, "messages": messages },
        })
    }
}

fn envelope_schema(op: &Operation) -> Value {
    json!({
        "type": "object",
        "title": envelope_schema_name(op.type_name),
        "properties": {
            "type": { "type": "string", "const": op.type_name, "title": "Type" },
            "payload": { "$ref": format!("{SCHEMAS}{}", op.payload.name) },
        },
        "required": ["type", "payload"],
    })
}

fn message(op: &Operation) -> Value {
    let tags: Vec<Value> = op.tags.iter().map(|t| json!({ "name": t })).collect();
    let mut msg = json!({
        "messageId": op.type_name,
        "name": op.name,
        "title": op.title,
        "summary": op.summary,
        "description": op.description,
        "contentType": "application/json",
        "payload": { "$ref": format!("{SCHEMAS}{}", envelope_schema_name(op.type_name)) },
        "tags": tags,
    });
    if let Ok(example) = serde_json::from_str::<Value>(op.example) {
        msg["examples"] = json!([{ "name": op.name, "payload": example }]);
    }
    if let Some(reply) = op.reply {
        msg["x-response"] = json!({ "$ref": format!("{MESSAGES}{reply}") });
    }
    msg
}
