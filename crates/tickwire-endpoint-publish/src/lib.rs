//! The publish API: `POST /api/v1/publish` injects updates into the fan-out
//! as if an adapter had produced them.
//!
//! The request carries `Authorization: Bearer <key>` of a key with the role
//! `publish` (and the `publish` endpoint) and a JSON body of items (ticks,
//! books, signals, raw group payloads), parsed by [`tickwire_json::publish`]
//! with this gateway's group prefix and symbol table.
//!
//! Answers: 202 `{"accepted": n}`; 400 naming the item and field at fault
//! (nothing of a bad batch is published); 401 without a valid key; 403 for a
//! key without the role; 405 for another method; 413 for a body over
//! `publish.max_body_bytes`; 422 when the batch names more new instruments
//! than `max_instruments` leaves room for (nothing of it is published); 503
//! while shutting down, or when a cluster's bus cannot take the updates.

use std::sync::Arc;

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tickwire_config::PublishConfig;
use tickwire_core::dispatch::Ingest;
use tickwire_core::http::{Body, json, json_error};
use tickwire_json::publish::parse;
use tickwire_model::Update;
use tickwire_services::{Context, KeyRejection};
use tracing::{debug, warn};

/// The route of the publish API.
pub const PATH: &str = "/api/v1/publish";

/// What the publish API needs beside the gateway's [`Context`].
pub struct Publish {
    /// `[publish]` of the configuration.
    pub config: PublishConfig,
    /// The group prefix raw group payloads are checked against.
    pub prefix: String,
    /// Where the updates enter: this node's fan-out, or a cluster's bus.
    pub ingest: Arc<dyn Ingest<Update>>,
}

impl std::fmt::Debug for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publish")
            .field("config", &self.config)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Answers one request to [`PATH`].
pub async fn handle(
    req: Request<Incoming>,
    publish: &Publish,
    context: &Context,
) -> Response<Body> {
    if req.method() != Method::POST {
        let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match context.keys.check_bearer(header, None) {
        Ok(p) if p.may_publish() => debug!(user = p.user_id, "publish request"),
        Ok(p) => {
            return json_error(
                StatusCode::FORBIDDEN,
                &format!(
                    "api key {:?} may not publish: it needs the role \"publish\" and the endpoint \"publish\"",
                    p.user_id
                ),
            );
        }
        Err(KeyRejection::Missing) => {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "missing authorization: send Authorization: Bearer <API key>",
            );
        }
        Err(KeyRejection::Invalid) => {
            return json_error(StatusCode::UNAUTHORIZED, "invalid api key");
        }
    }
    let max = publish.config.max_body_bytes;
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than {max} bytes"),
        )
    };
    // Refuse a declared oversize body before reading any of it.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("the body could not be read: {e}"),
            );
        }
    };
    let parsed = {
        let known = |symbol: &str| context.market.by_symbol(symbol);
        let parsing = tickwire_json::publish::Context {
            prefix: &publish.prefix,
            known: &known,
            now: tickwire_model::now_millis(),
        };
        parse(&body, &parsing)
    };
    let updates = match parsed {
        Ok(updates) => updates,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    // New instruments beyond the table's limit: refuse the whole batch, so
    // that nothing of it is half applied.
    let new = {
        let mut new: Vec<&tickwire_model::Instrument> = updates
            .iter()
            .filter_map(Update::instrument)
            .filter(|i| !context.market.contains(i))
            .collect();
        new.sort_unstable_by(|a, b| (&a.exchange, &a.symbol).cmp(&(&b.exchange, &b.symbol)));
        new.dedup();
        new.len()
    };
    if new > context.market.room() {
        debug!(
            new,
            room = context.market.room(),
            "publish refused: instrument table full"
        );
        return json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "the gateway tracks at most {} instruments (max_instruments); this request names {} new ones and there is room for {}",
                context.market.limit(),
                new,
                context.market.room()
            ),
        );
    }
    if *context.shutdown.borrow() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        );
    }
    let accepted = updates.len();
    // On a single node, delivered here on this request's task: the answer
    // means every subscriber's outbox has the updates. In a cluster, it
    // means the bus has them.
    if let Err(why) = publish.ingest.ingest(updates).await {
        warn!(error = %why, "publish request not taken");
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the updates could not be delivered: {why}"),
        );
    }
    json(StatusCode::ACCEPTED, &Accepted { accepted })
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
}
