//! The admin API, for a key with the `admin` role (`Authorization: Bearer
//! <key>`):
//!
//! - `GET /admin/connections`: every open WebSocket connection, oldest
//!   first: its id, endpoint, wire format, key (or user), remote address,
//!   subscriptions, queue depth and capacity, and age;
//! - `GET /admin/topics`: every topic with subscribers, by index, busiest
//!   first;
//! - `DELETE /admin/connections/{id}` (or `POST .../{id}/disconnect`):
//!   closes connection `id` with 1008 "disconnected by an operator".
//!
//! It reads what the core keeps of each connection ([`tickwire_core::meter::Roster`]),
//! so it knows no endpoint's protocol.

use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tickwire_config::ROLE_ADMIN;
use tickwire_core::http::{Body, json, json_error};
use tickwire_core::writer::Control;
use tickwire_services::keys::KeyRejection;
use tracing::{info, warn};

use crate::Shared;

/// The routes' common prefix.
pub(crate) const PREFIX: &str = "/admin/";

/// The close reason of a connection an operator drops.
pub(crate) const DISCONNECT_REASON: &str = "disconnected by an operator";

/// One connection in `GET /admin/connections`.
#[derive(Debug, Serialize)]
struct Connection {
    id: u64,
    endpoint: &'static str,
    format: &'static str,
    /// The API key's name, or the user of the access token, once known.
    key: Option<String>,
    remote: Option<String>,
    subscriptions: u32,
    queue_depth: usize,
    queue_capacity: usize,
    age_secs: f64,
    /// Seconds since the Unix epoch.
    opened_at: f64,
}

/// One topic in `GET /admin/topics`.
#[derive(Debug, Serialize)]
pub(crate) struct Topic {
    /// `feeds` (`/ws`, `/stream`, FastWS), `groups` (the hubs), `proxy`, or
    /// `socketio` (the rooms of Socket.IO's WebSocket sessions).
    pub(crate) index: &'static str,
    pub(crate) topic: String,
    pub(crate) subscribers: usize,
}

/// Every topic with subscribers, busiest first.
pub(crate) fn topics(shared: &Shared) -> Vec<Topic> {
    let indexed = |index: &'static str, all: Vec<(std::sync::Arc<str>, usize)>| {
        all.into_iter().map(move |(topic, subscribers)| Topic {
            index,
            topic: topic.to_string(),
            subscribers,
        })
    };
    let mut topics: Vec<Topic> = indexed("feeds", shared.context.feeds.topics())
        .chain(indexed("groups", shared.groups.topics()))
        .collect();
    #[cfg(feature = "socketio")]
    topics.extend(indexed("socketio", shared.socketio.topics()));
    #[cfg(feature = "proxy")]
    topics.extend(
        shared
            .proxy
            .topics()
            .into_iter()
            .map(|(topic, subscribers)| Topic {
                index: "proxy",
                topic,
                subscribers,
            }),
    );
    topics.sort_by(|a, b| {
        b.subscribers
            .cmp(&a.subscribers)
            .then(a.topic.cmp(&b.topic))
    });
    topics
}

/// Answers a request under [`PREFIX`].
pub(crate) fn handle(req: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    let keys = &shared.context.keys;
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(hyper::header::HeaderValue::as_bytes);
    let principal = match keys.check_bearer(header, None) {
        Ok(p) => p,
        Err(KeyRejection::Missing) => {
            keys.refused("admin", "missing_key");
            return json_error(
                StatusCode::UNAUTHORIZED,
                "missing api key: send Authorization: Bearer <key> of a key with the admin role",
            );
        }
        Err(KeyRejection::Invalid) => {
            keys.refused("admin", "invalid_key");
            return json_error(StatusCode::UNAUTHORIZED, "invalid api key");
        }
    };
    if !principal.roles.iter().any(|r| r == ROLE_ADMIN) {
        keys.refused("admin", "forbidden");
        warn!(
            key = principal.user_id,
            path = req.uri().path(),
            "admin API refused: the key has no admin role"
        );
        return json_error(
            StatusCode::FORBIDDEN,
            &format!("api key {:?} has no admin role", principal.user_id),
        );
    }
    let path = &req.uri().path()[PREFIX.len()..];
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["connections"]) => json(StatusCode::OK, &connections(shared)),
        (&Method::GET, ["topics"]) => json(StatusCode::OK, &topics(shared)),
        (&Method::DELETE, ["connections", id])
        | (&Method::POST, ["connections", id, "disconnect"]) => {
            disconnect(shared, id, principal.user_id)
        }
        (_, ["connections" | "topics"]) | (_, ["connections", _]) => {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    }
}

fn connections(shared: &Shared) -> Vec<Connection> {
    let now = SystemTime::now();
    shared
        .context
        .connections
        .roster()
        .cards()
        .into_iter()
        .map(|card| Connection {
            id: card.id(),
            endpoint: card.endpoint(),
            format: card.format(),
            key: card.sub.principal().map(|p| p.to_string()),
            remote: card.peer.remote.map(|r| r.to_string()),
            subscriptions: card.sub.subscriptions(),
            queue_depth: card.sub.outbox().depth(),
            queue_capacity: card.sub.outbox().capacity(),
            age_secs: now
                .duration_since(card.opened_at)
                .map_or(0.0, |d| d.as_secs_f64()),
            opened_at: card
                .opened_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        })
        .collect()
}

#[derive(Serialize)]
struct Disconnected {
    disconnected: u64,
}

/// Closes connection `id`: a close frame (1008) after what is queued, or,
/// when its control queue is full (a client that does not read), a drop.
fn disconnect(shared: &Shared, id: &str, by: &str) -> Response<Body> {
    let Ok(id) = id.parse::<u64>() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!("not a connection id: {id:?}"),
        );
    };
    let Some(card) = shared.context.connections.roster().card(id) else {
        return json_error(StatusCode::NOT_FOUND, &format!("no open connection {id}"));
    };
    let close = Control::Close {
        code: tickwire_websocket::close_code::POLICY,
        reason: DISCONNECT_REASON.to_owned(),
        last: None,
    };
    if card.sub.outbox().try_send_control(close).is_err() {
        card.sub.drop_connection();
    }
    info!(
        connection = id,
        endpoint = card.endpoint(),
        by,
        "connection disconnected by an operator"
    );
    json(StatusCode::ACCEPTED, &Disconnected { disconnected: id })
}
