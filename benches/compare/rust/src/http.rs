//! The publish API (`POST /api/v1/publish`) over hyper.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::Shared;
use crate::feed::{self, Update};

/// The publish API's route.
pub const PUBLISH_PATH: &str = "/api/v1/publish";
/// The WebSocket route.
pub const WS_PATH: &str = "/ws";
/// Largest publish body read.
const MAX_BODY: usize = 4 << 20;

/// Answers one request of the publish API: each tick's `price_update` is
/// made into one message `M` by `message` and queued to the symbol's
/// subscribers.
pub async fn publish<M: Clone>(
    req: Request<Incoming>,
    shared: Arc<Shared<M>>,
    message: fn(&Update) -> M,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != PUBLISH_PATH {
        return Ok(answer(StatusCode::NOT_FOUND, error_body("no such route")));
    }
    if req.method() != Method::POST {
        return Ok(answer(
            StatusCode::METHOD_NOT_ALLOWED,
            error_body("use POST"),
        ));
    }
    let authorized = req
        .headers()
        .get(AUTHORIZATION)
        .is_some_and(|value| value.as_bytes() == shared.authorization.as_bytes());
    if !authorized {
        return Ok(answer(
            StatusCode::UNAUTHORIZED,
            error_body("a valid publish key is required"),
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                error_body("body too large or cut short"),
            ));
        }
    };
    let (updates, accepted) = match feed::parse_publish(&body) {
        Ok(parsed) => parsed,
        Err(e) => return Ok(answer(StatusCode::BAD_REQUEST, error_body(&e))),
    };
    shared
        .registry
        .publish(updates.iter().map(|u| (u.symbol.as_str(), message(u))));
    Ok(answer(
        StatusCode::ACCEPTED,
        format!(r#"{{"accepted":{accepted}}}"#),
    ))
}

/// A JSON answer.
pub fn answer(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"error":"…"}`.
pub fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}
