//! The dispatcher and the AsyncAPI document are both derived from the operation table.

use std::collections::BTreeSet;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use tickwire_bars::{Bar, Resolution};
use tickwire_fastws::{
    BARS, ClientOp, Direction, Error, FrameKind, Info, OPERATIONS, Operation, Registry,
    Subscription, encode_update, envelope_schema_name,
};

fn refs(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .expect("a oneOf list")
        .iter()
        .map(|r| r["$ref"].as_str().expect("a $ref").to_owned())
        .collect()
}

fn message_refs(ops: &[Operation], direction: Direction) -> BTreeSet<String> {
    ops.iter()
        .filter(|op| op.direction == direction)
        .map(|op| format!("#/components/messages/{}", op.type_name))
        .collect()
}

/// Checks that `doc` describes exactly the operations of `ops`.
fn assert_document_matches(doc: &Value, ops: &[Operation]) {
    assert_eq!(doc["asyncapi"], "2.4.0");
    assert_eq!(doc["defaultContentType"], "application/json");
    let channels = doc["channels"].as_object().unwrap();
    assert_eq!(channels.keys().collect::<Vec<_>>(), ["/"]);
    let channel = &doc["channels"]["/"];
    assert_eq!(
        refs(&channel["publish"]["message"]["oneOf"]),
        message_refs(ops, Direction::ClientToServer)
    );
    assert_eq!(
        refs(&channel["subscribe"]["message"]["oneOf"]),
        message_refs(ops, Direction::ServerToClient)
    );

    let messages = doc["components"]["messages"].as_object().unwrap();
    let declared: BTreeSet<&str> = ops.iter().map(|op| op.type_name).collect();
    assert_eq!(
        messages.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        declared
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for op in ops {
        let msg = &messages[op.type_name];
        assert_eq!(msg["messageId"], op.type_name);
        assert_eq!(msg["summary"], op.summary);
        assert_eq!(msg["contentType"], "application/json");
        match op.reply {
            Some(reply) => assert_eq!(
                msg["x-response"],
                json!({ "$ref": format!("#/components/messages/{reply}") })
            ),
            None => assert!(msg.get("x-response").is_none(), "{}", op.type_name),
        }
        // The message payload is the envelope, whose payload is the declared schema.
        let envelope = envelope_schema_name(op.type_name);
        assert_eq!(
            msg["payload"]["$ref"],
            format!("#/components/schemas/{envelope}")
        );
        let envelope = &schemas[&envelope];
        assert_eq!(envelope["properties"]["type"]["const"], op.type_name);
        assert_eq!(
            envelope["properties"]["payload"]["$ref"],
            format!("#/components/schemas/{}", op.payload.name)
        );
        assert_eq!(schemas[op.payload.name], (op.payload.build)());
        assert_eq!(msg["examples"][0]["payload"]["type"], op.type_name);
    }
    // Every local reference resolves.
    let mut pending = vec![doc];
    while let Some(v) = pending.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    assert!(doc.pointer(&r[1..]).is_some(), "dangling {r}");
                }
                pending.extend(map.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
}

#[test]
fn the_seed_table_is_consistent_and_documented() {
    BARS.check().unwrap();
    let doc = BARS.asyncapi(&Info::default());
    assert_document_matches(&doc, &OPERATIONS);
    assert_eq!(doc["info"]["title"], "Trading WebSockets");
    assert_eq!(doc["info"]["version"], "1.0.0");
    let types: Vec<_> = OPERATIONS.iter().map(|op| op.type_name).collect();
    assert_eq!(
        types,
        [
            "bars.subscribe",
            "bars.subscribe.response",
            "bars.unsubscribe",
            "bars.unsubscribe.response",
            "bars.update"
        ]
    );
    // The resolution enum is the aggregator's.
    let request = &doc["components"]["schemas"]["SubscriptionRequest"];
    assert_eq!(
        request["properties"]["params"]["properties"]["resolution"]["enum"],
        json!(["1", "5", "15", "30", "60", "D", "W", "M"])
    );
    assert_eq!(request["properties"]["resolution"]["default"], "1");
    assert_eq!(request["required"], json!(["symbol"]));
    let response = &doc["components"]["schemas"]["SubscriptionResponse"];
    assert_eq!(
        response["required"],
        json!(["status", "symbol", "message", "topic"])
    );
    let bar = &doc["components"]["schemas"]["Bar"];
    assert_eq!(
        bar["required"],
        json!(["time", "open", "high", "low", "close", "volume"])
    );
}

#[test]
fn examples_are_real_frames() {
    // Client examples decode; server examples are what the encoders write.
    let subscribe = BARS.get("bars.subscribe").unwrap();
    let op = BARS
        .decode(FrameKind::Text, subscribe.example.as_bytes())
        .unwrap();
    assert_eq!(
        &BARS.reply(&op).unwrap()[..],
        BARS.get("bars.subscribe.response")
            .unwrap()
            .example
            .as_bytes()
    );
    let unsubscribe = BARS.get("bars.unsubscribe").unwrap();
    let op = BARS
        .decode(FrameKind::Text, unsubscribe.example.as_bytes())
        .unwrap();
    assert_eq!(
        &BARS.reply(&op).unwrap()[..],
        BARS.get("bars.unsubscribe.response")
            .unwrap()
            .example
            .as_bytes()
    );
    let bar = Bar {
        time: 1_697_097_600_000,
        open: 150.0,
        high: 151.0,
        low: 149.5,
        close: 150.5,
        volume: 1e6,
    };
    assert_eq!(
        &encode_update(&bar)[..],
        BARS.get("bars.update").unwrap().example.as_bytes()
    );
}

static WITHOUT_UNSUBSCRIBE: [Operation; 3] = [OPERATIONS[0], OPERATIONS[1], OPERATIONS[4]];

#[test]
fn removing_an_operation_removes_it_from_dispatch_and_document() {
    let registry = Registry::new(&WITHOUT_UNSUBSCRIBE);
    registry.check().unwrap();
    let frame = br#"{"type":"bars.unsubscribe","payload":{"symbol":"AAPL"}}"#;
    assert!(BARS.decode(FrameKind::Text, frame).is_ok());
    let err = registry.decode(FrameKind::Text, frame).unwrap_err();
    assert_eq!(err.reason(), "No matching type");
    let doc = registry.asyncapi(&Info::default());
    assert_document_matches(&doc, &WITHOUT_UNSUBSCRIBE);
    assert!(
        doc["components"]["messages"]
            .get("bars.unsubscribe")
            .is_none()
    );
    assert!(
        doc["components"]["schemas"]
            .get("BarsUnsubscribeMessage")
            .is_none()
    );
}

fn decode_ping(payload: Option<&RawValue>) -> Result<ClientOp, Error> {
    match payload {
        None => Ok(ClientOp::Subscribe(Subscription {
            symbol: "PING".into(),
            resolution: Resolution::Min1,
        })),
        Some(_) => Err(Error::InvalidField {
            field: "payload",
            reason: "expected none",
        }),
    }
}

fn empty_schema() -> Value {
    json!({ "type": "object", "title": "Empty" })
}

static WITH_PING: [Operation; 7] = [
    OPERATIONS[0],
    OPERATIONS[1],
    OPERATIONS[2],
    OPERATIONS[3],
    OPERATIONS[4],
    Operation {
        type_name: "ping",
        direction: Direction::ClientToServer,
        name: "ping",
        title: "Ping",
        summary: "Keep the connection alive",
        description: "Counts as a heartbeat.",
        tags: &[],
        payload: tickwire_fastws::Schema {
            name: "Empty",
            build: empty_schema,
        },
        reply: Some("pong"),
        decode: Some(decode_ping),
        example: r#"{"type":"ping"}"#,
    },
    Operation {
        type_name: "pong",
        direction: Direction::ServerToClient,
        name: "pong",
        title: "Pong",
        summary: "The answer to a ping",
        description: "",
        tags: &[],
        payload: tickwire_fastws::Schema {
            name: "Empty",
            build: empty_schema,
        },
        reply: None,
        decode: None,
        example: r#"{"type":"pong"}"#,
    },
];

#[test]
fn adding_an_operation_adds_it_to_dispatch_and_document() {
    let registry = Registry::new(&WITH_PING);
    registry.check().unwrap();
    assert_eq!(
        BARS.decode(FrameKind::Text, br#"{"type":"ping"}"#)
            .unwrap_err()
            .reason(),
        "No matching type"
    );
    let op = registry
        .decode(FrameKind::Text, br#"{"type":"ping"}"#)
        .unwrap();
    assert_eq!(op.subscription().symbol, "PING");
    let doc = registry.asyncapi(&Info::default());
    assert_document_matches(&doc, &WITH_PING);
    assert_eq!(
        doc["components"]["messages"]["ping"]["x-response"]["$ref"],
        "#/components/messages/pong"
    );
    assert_eq!(doc["components"]["schemas"]["Empty"], empty_schema());
}

static BROKEN_REPLY: [Operation; 1] = [OPERATIONS[0]];
static SERVER_WITH_DECODER: [Operation; 1] = [Operation {
    decode: Some(decode_ping),
    ..OPERATIONS[4]
}];
static TWICE: [Operation; 2] = [OPERATIONS[4], OPERATIONS[4]];

#[test]
fn inconsistent_tables_are_caught() {
    assert!(Registry::new(&BROKEN_REPLY).check().is_err());
    assert!(Registry::new(&SERVER_WITH_DECODER).check().is_err());
    assert!(Registry::new(&TWICE).check().is_err());
}

#[test]
fn envelope_names() {
    assert_eq!(
        envelope_schema_name("bars.subscribe"),
        "BarsSubscribeMessage"
    );
    assert_eq!(
        envelope_schema_name("bars.unsubscribe.response"),
        "BarsUnsubscribeResponseMessage"
    );
    assert_eq!(envelope_schema_name("ping"), "PingMessage");
}
