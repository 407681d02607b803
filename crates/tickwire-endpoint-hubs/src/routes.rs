//! The hubs' HTTP routes: `GET /negotiate` and the WebSocket handshake of
//! `/ws/{hub}` and `/client/hubs/{hub}`.
//!
//! The handshake of a hub route is checked in this order, so that every
//! refusal is an HTTP answer the client can read before any upgrade:
//!
//! 1. unknown hub → 404;
//! 2. a recovery attempt of a reliable client (`awps_connection_id` and
//!    `awps_reconnection_token` in the query) is checked before the access
//!    token, which may have expired since, as the Azure Web PubSub client
//!    SDKs expect: a session that waits for its client (same hub, same
//!    subprotocol, its token) is resumed on the new connection; any other is
//!    accepted and then closed with 1008, "session cannot be recovered",
//!    which tells the SDKs to start a new one;
//! 3. no, invalid or expired access token, or a token of another hub → 401;
//! 4. not a valid WebSocket upgrade request → 400;
//! 5. only unsupported subprotocols offered → 400 naming the supported ones.
//!
//! The chosen subprotocol is echoed in `Sec-WebSocket-Protocol`.

use futures_util::future::Either;
use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use tickwire_config::{Endpoint, PublicUrl};
use tickwire_core::Tracker;
use tickwire_core::http::{
    Body, handshake, handshake_refusal, json, json_error, refuse, start_session, upgrade_with,
};
use tickwire_model::Hub;
use tickwire_services::http::query_param;
use tickwire_services::{Context, KeyRejection};
use tickwire_websocket::close_code;
use tracing::debug;

use crate::session::{Hubs, Session, SessionParams, transport};
use crate::tokens::Tokens;

/// The route of `/negotiate`.
pub const NEGOTIATE_PATH: &str = "/negotiate";

/// Where `/negotiate` sends new clients: in a cluster, the least-loaded
/// live node (any node's tokens are good on every node, which share the
/// token secret).
pub trait Placement: Send + Sync + std::fmt::Debug {
    /// The public URL of the node a new client should use; `None`: this one.
    /// It may ask the cluster (whether the node it picks is up).
    fn pick(&self) -> Pin<Box<dyn Future<Output = Option<PublicUrl>> + Send + '_>>;
}

/// What the hubs' routes need beside the gateway's [`Context`].
#[derive(Debug)]
pub struct HubRoutes {
    /// The hubs' own state, shared by their sessions.
    pub hubs: Arc<Hubs>,
    /// The access tokens `/negotiate` issues and the handshakes check.
    pub tokens: Tokens,
    /// Where clients reach the gateway, for the URLs `/negotiate` hands
    /// out; `None`: the request's `Host`.
    pub public_url: Option<PublicUrl>,
    /// The gateway's listen address: the URLs' host when the request has no
    /// usable `Host`.
    pub listen: SocketAddr,
    /// The listener speaks TLS: without a `public_url`, the URLs are
    /// `wss://` and the tokens' audience `https://`.
    pub tls: bool,
    /// Where new clients go when not to this node (a cluster's).
    pub placement: Option<Arc<dyn Placement>>,
}

/// The hub a path names: `/ws/{hub}` or `/client/hubs/{hub}` (a trailing
/// slash allowed); `Some(Err(name))` for an unknown hub's name.
pub fn hub_of(path: &str) -> Option<Result<Hub, &str>> {
    let name = path
        .strip_prefix("/ws/")
        .or_else(|| path.strip_prefix("/client/hubs/"))?
        .trim_end_matches('/');
    Some(Hub::from_name(name).ok_or(name))
}

/// The `/negotiate` answer (seed 000).
#[derive(Serialize)]
struct Negotiate<'a> {
    websocket_urls: HubUrls,
    prefix: &'a str,
}

/// `{hub name: URL}` in the order of [`Hub::ALL`].
struct HubUrls(Vec<(Hub, String)>);

impl Serialize for HubUrls {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(hub, url)| (hub.name(), url)))
    }
}

/// Answers `GET /negotiate` (`Authorization: Basic <API key>`): one access
/// URL per hub, each with its token, and the group prefix.
pub async fn negotiate(
    req: &Request<Incoming>,
    routes: &HubRoutes,
    context: &Context,
) -> Response<Body> {
    let principal = match context.keys.check_basic(
        req.headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    ) {
        Ok(p) => p,
        Err(KeyRejection::Missing) => {
            return json_error(StatusCode::UNAUTHORIZED, "missing authorization");
        }
        Err(KeyRejection::Invalid) => {
            return json_error(StatusCode::UNAUTHORIZED, "invalid api key");
        }
    };
    if !principal.allows(Endpoint::Pubsub) {
        return json_error(
            StatusCode::FORBIDDEN,
            &format!("api key {:?} may not use /negotiate", principal.user_id),
        );
    }
    let elsewhere = match &routes.placement {
        Some(placement) => placement.pick().await,
        None => None,
    };
    let (tls, authority): (bool, Cow<'_, str>) =
        match elsewhere.as_ref().or(routes.public_url.as_ref()) {
            Some(url) => (url.tls, Cow::Borrowed(&url.authority)),
            None => {
                let host = req
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .filter(|h| is_valid_authority(h));
                match host {
                    Some(host) => (routes.tls, Cow::Borrowed(host)),
                    None => (routes.tls, Cow::Owned(routes.listen.to_string())),
                }
            }
        };
    let (ws, http) = if tls {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let urls = Hub::ALL
        .into_iter()
        .map(|hub| {
            let audience = format!("{http}://{authority}/client/hubs/{hub}");
            let token = routes
                .tokens
                .issue(principal.user_id, principal.roles, audience);
            (
                hub,
                format!("{ws}://{authority}/ws/{hub}?access_token={token}"),
            )
        })
        .collect();
    debug!(user = principal.user_id, "negotiated");
    json(
        StatusCode::OK,
        &Negotiate {
            websocket_urls: HubUrls(urls),
            prefix: &routes.hubs.prefix,
        },
    )
}

/// A `Host` value safe to put into a URL: host and optional port only.
fn is_valid_authority(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        })
}

/// Answers the WebSocket handshake of `hub`'s route and runs the session.
pub fn websocket(
    mut req: Request<Incoming>,
    hub: Hub,
    routes: &HubRoutes,
    context: &Context,
    tracker: &Tracker,
) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    let recovery = query_param(query, "awps_connection_id")
        .zip(query_param(query, "awps_reconnection_token"))
        .map(|(id, token)| (id.into_owned(), token.into_owned()));
    let claims = if recovery.is_some() {
        None
    } else {
        let Some(token) = access_token(&req, query) else {
            return json_error(StatusCode::UNAUTHORIZED, "missing access token");
        };
        match routes.tokens.verify(&token, hub) {
            Some(claims) => Some(claims),
            None => return json_error(StatusCode::UNAUTHORIZED, "invalid or expired access token"),
        }
    };
    let handshake = match handshake(&req) {
        Ok(h) => h,
        Err(e) => return handshake_refusal(&e),
    };
    let offered: Vec<&str> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let negotiated = match tickwire_pubsub::negotiate(offered) {
        Ok(n) => n,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let (hubs, connections) = (routes.hubs.clone(), context.connections.clone());
    let tracker = tracker.clone();
    let protocol = negotiated.protocol;
    let remote = tickwire_core::http::remote(&req);
    let mut response = upgrade_with(&mut req, handshake, move |upgraded| {
        let transport = transport(protocol, &hubs, remote);
        let Some(claims) = claims else {
            // A recovery: it waits for the parked session first. Boxed, so
            // that this path's state is not part of every session's task.
            return Either::Right(Box::pin(async move {
                let resumption = match &recovery {
                    Some((id, token)) => {
                        let resumed = hubs.recover(id, token, hub, protocol).await;
                        if resumed.is_none() {
                            hubs.parked.refused();
                            debug!(connection_id = %id, %protocol, "recovery attempt refused");
                        }
                        resumed
                    }
                    None => None,
                };
                let Some(resumption) = resumption else {
                    let reason = "session cannot be recovered";
                    refuse(upgraded, None, close_code::POLICY, reason, tracker).await;
                    return;
                };
                let make = move |sub| Session::resume(hubs, sub, resumption);
                start_session(upgraded, connections, transport, make, tracker).await;
            }));
        };
        // A new session, the common case: set up now, so that the
        // connection's task holds only the session.
        let params = SessionParams {
            hub,
            protocol,
            user_id: claims.sub,
            roles: claims.role,
        };
        let make = move |sub| Session::new(hubs, sub, params);
        Either::Left(start_session(
            upgraded,
            connections,
            transport,
            make,
            tracker,
        ))
    });
    if let Some(echo) = negotiated.echo {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(echo),
        );
    }
    response
}

/// The access token of a handshake: the `access_token` query parameter, or
/// an `Authorization: Bearer` header.
fn access_token<'q>(req: &Request<Incoming>, query: &'q str) -> Option<Cow<'q, str>> {
    query_param(query, "access_token").or_else(|| {
        let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| Cow::Owned(token.trim().to_owned()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_routes_name_their_hub() {
        assert_eq!(hub_of("/ws/classic"), Some(Ok(Hub::Classic)));
        assert_eq!(hub_of("/client/hubs/state_gex/"), Some(Ok(Hub::StateGex)));
        assert_eq!(hub_of("/ws/nope"), Some(Err("nope")));
        assert_eq!(hub_of("/ws"), None);
        assert_eq!(hub_of("/stream"), None);
    }

    #[test]
    fn hosts_are_checked_before_use() {
        assert!(is_valid_authority("127.0.0.1:8080"));
        assert!(is_valid_authority("[::1]:80"));
        assert!(!is_valid_authority("evil.com/path?x"));
        assert!(!is_valid_authority(""));
    }
}
