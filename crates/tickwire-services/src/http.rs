//! Helpers of the endpoints' handshakes and sessions.

use std::borrow::Cow;

use hyper::Request;
use hyper::header::{self, HeaderValue};
use tickwire_core::http::start_session;
use tickwire_core::session::{Protocol, Transport};
use tickwire_core::{Subscriber, Tracker};
use tickwire_websocket::OpCode;

use crate::Context;
use crate::keys::{KeyRejection, KeyRing, Principal};

/// What a JSON endpoint's connection is: the endpoint's name (for the
/// meters and the roster), its largest message, its slow-consumer policy
/// (`None`: the context's), and the client's address.
#[derive(Debug, Clone, Copy)]
pub struct JsonTransport {
    /// The endpoint's name.
    pub endpoint: &'static str,
    /// The largest message a client may send.
    pub max_message_bytes: usize,
    /// The endpoint's slow-consumer policy, if it has its own.
    pub slow_consumer: Option<tickwire_config::SlowConsumer>,
    /// The client's address.
    pub remote: Option<std::net::SocketAddr>,
}

/// Runs a session of a JSON endpoint on an upgraded connection: one variant,
/// text replies, and the limits of `json`. `make` builds the endpoint's
/// protocol around the connection, which is set up when this is called
/// (see [`start_session`]).
pub fn json_session<P, M>(
    upgraded: hyper::upgrade::Upgraded,
    context: &Context,
    json: JsonTransport,
    make: M,
    tracker: Tracker,
) -> impl std::future::Future<Output = ()> + use<P, M>
where
    P: Protocol,
    M: FnOnce(Subscriber) -> P,
{
    let transport = Transport {
        variant: 0,
        reply_opcode: OpCode::Text,
        max_message_bytes: json.max_message_bytes,
        slow_consumer: json
            .slow_consumer
            .map_or(context.slow_consumer, crate::slow_consumer),
        queue_capacity: None,
        endpoint: json.endpoint,
        format: "json",
        peer: tickwire_core::Peer {
            remote: json.remote,
        },
    };
    start_session(
        upgraded,
        context.connections.clone(),
        transport,
        make,
        tracker,
    )
}

/// The API key of a JSON-feed handshake: `Authorization: Bearer <key>`, or
/// else the `api_key` query parameter (seed 002).
pub fn feed_key<'k, B>(req: &Request<B>, keys: &'k KeyRing) -> Result<Principal<'k>, KeyRejection> {
    let query = req.uri().query().unwrap_or("");
    let api_key = query_param(query, "api_key");
    keys.check_bearer(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        api_key.as_deref(),
    )
}

/// The decoded value of the first `name=` parameter of `query`
/// (`application/x-www-form-urlencoded`: `%XX` and `+`).
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    form_urlencoded::parse(query.as_bytes()).find_map(|(key, value)| (key == name).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let q = "a=1&access_token=x.y%2Dz&flag&sp=a+b&bad=%zz&end=%4";
        assert_eq!(query_param(q, "access_token").as_deref(), Some("x.y-z"));
        assert_eq!(query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(query_param(q, "sp").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "bad").as_deref(), Some("%zz"));
        assert_eq!(query_param(q, "end").as_deref(), Some("%4"));
        assert_eq!(query_param(q, "missing"), None);
    }
}

/// The web origins whose pages may use the gateway (`allowed_origins`):
/// which browsers' WebSocket upgrades are taken, and who gets CORS.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    any: bool,
    listed: Vec<String>,
}

impl Origins {
    /// The origins of `allowed` (`*`: any).
    pub fn new(allowed: &[String]) -> Origins {
        Origins {
            any: allowed.iter().any(|o| o == "*"),
            listed: allowed.iter().filter(|o| *o != "*").cloned().collect(),
        }
    }

    /// Whether any origin is allowed.
    pub fn any(&self) -> bool {
        self.any
    }

    /// Whether a page of `origin` may use the gateway.
    pub fn allows(&self, origin: &str) -> bool {
        self.any || self.listed.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// The refusal (403, naming the origin, and a log line) of `req` when it
    /// is a WebSocket upgrade from a page of an origin not allowed; `None`
    /// for anything else (a request without `Origin` is not a browser's).
    pub fn refuse_upgrade<B>(
        &self,
        req: &Request<B>,
    ) -> Option<hyper::Response<tickwire_core::http::Body>> {
        let origin = req
            .headers()
            .get(header::ORIGIN)?
            .to_str()
            .unwrap_or("(not text)");
        let upgrade = req
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        if !upgrade || self.allows(origin) {
            return None;
        }
        tracing::warn!(%origin, path = req.uri().path(), "WebSocket upgrade from an origin not in allowed_origins: refused");
        Some(tickwire_core::http::json_error(
            hyper::StatusCode::FORBIDDEN,
            &format!("origin {origin} is not allowed"),
        ))
    }
}
