//! `/negotiate`, `/healthz` and the WebSocket handshake, over real sockets.

mod common;

use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tickwire_gateway::{ApiKey, Claims, Config, Endpoint};
use tickwire_model::Hub;

#[tokio::test]
async fn negotiate_returns_five_urls_with_hub_tokens() {
    let server = Server::default().await;
    let (status, head, body) = http_get(
        server.addr,
        "/negotiate",
        &[("Authorization", "Basic tickwire-demo-key")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert!(!body.contains(DEMO), "the key never appears in the answer");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["prefix"], "blue");
    let urls = v["websocket_urls"].as_object().unwrap();
    assert_eq!(urls.len(), 5);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false;
    let key = DecodingKey::from_secret(b"test-secret-test-secret-test-secret");
    for hub in Hub::ALL {
        let url = urls[hub.name()].as_str().unwrap();
        let prefix = format!("ws://{}/ws/{}?access_token=", server.addr, hub.name());
        let token = url.strip_prefix(&prefix).unwrap_or_else(|| panic!("{url}"));
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .unwrap()
            .claims;
        assert_eq!(
            claims.aud,
            format!("http://{}/client/hubs/{}", server.addr, hub.name())
        );
        assert_eq!(claims.sub, "demo");
        assert_eq!(claims.role, ["webpubsub.joinLeaveGroup"]);
        assert_eq!(claims.exp - claims.iat, 600);
        // The payload holds no key.
        let payload = token.split('.').nth(1).unwrap();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        assert!(!String::from_utf8(payload).unwrap().contains(DEMO));
    }
}

#[tokio::test]
async fn negotiate_accepts_base64_basic_credentials_and_public_url() {
    let server = Server::start(Config {
        public_url: Some("https://gex.example.com".into()),
        ..Config::default()
    })
    .await;
    let b64 = base64::engine::general_purpose::STANDARD.encode("tickwire-demo-key:");
    let (status, _, body) = http_get(
        server.addr,
        "/negotiate",
        &[("Authorization", &format!("Basic {b64}"))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let url = v["websocket_urls"]["classic"].as_str().unwrap();
    assert!(
        url.starts_with("wss://gex.example.com/ws/classic?access_token="),
        "{url}"
    );
}

#[tokio::test]
async fn negotiate_refuses_missing_and_wrong_keys() {
    let server = Server::default().await;
    let (status, head, body) = http_get(server.addr, "/negotiate", &[]).await;
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    assert_eq!(body, r#"{"error":"missing authorization"}"#);
    let (status, _, body) = http_get(
        server.addr,
        "/negotiate",
        &[("Authorization", "Basic wrong")],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body, r#"{"error":"invalid api key"}"#);
}

#[tokio::test]
async fn healthz_and_unknown_paths() {
    let server = Server::default().await;
    let (status, _, body) = http_get(server.addr, "/healthz", &[]).await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        health,
        serde_json::json!({
            "status": "ok",
            "connections": 0,
            "slow_consumers": {"disconnected": 0, "dropped_oldest": 0, "conflated": 0,
                "burst_conflated": 0, "write_timeouts": 0, "write_errors": 0},
            "instruments": {"known": health["instruments"]["known"], "refused": 0, "forgotten": 0},
            "recovery": {"parked": 0, "resumed": 0, "ended": 0, "not_kept": 0, "refused": 0},
        })
    );
    assert!(health["instruments"]["known"].is_u64(), "{body}");
    assert_eq!(http_get(server.addr, "/nope", &[]).await.0, 404);
}

fn ws_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]
}

#[tokio::test]
async fn websocket_handshake_refusals() {
    let server = Server::default().await;
    // No token.
    assert_eq!(
        http_get(server.addr, "/ws/classic", &ws_headers()).await.0,
        401
    );
    // A bad token.
    assert_eq!(
        http_get(server.addr, "/ws/classic?access_token=abc", &ws_headers())
            .await
            .0,
        401
    );
    // Unknown hub.
    assert_eq!(
        http_get(server.addr, "/ws/nohub", &ws_headers()).await.0,
        404
    );
    assert_eq!(
        http_get(server.addr, "/client/hubs/nohub", &ws_headers())
            .await
            .0,
        404
    );

    let url = server.url(Hub::Classic).await;
    let query = url.split_once('?').unwrap().1;
    // A token of another hub.
    assert_eq!(
        http_get(
            server.addr,
            &format!("/ws/orderflow?{query}"),
            &ws_headers()
        )
        .await
        .0,
        401
    );
    // Only unsupported subprotocols.
    let mut headers = ws_headers();
    headers.push(("Sec-WebSocket-Protocol", "mqtt, wamp"));
    let (status, _, body) = http_get(server.addr, &format!("/ws/classic?{query}"), &headers).await;
    assert_eq!(status, 400);
    for p in ALL_PROTOCOLS {
        assert!(body.contains(p), "{body}");
    }
    // The token also works as a bearer header, and on the Azure route.
    let token = query.strip_prefix("access_token=").unwrap();
    let bearer = format!("Bearer {token}");
    let mut headers = ws_headers();
    headers.push(("Authorization", &bearer));
    let (status, head) = http_head(server.addr, "/client/hubs/classic", &headers).await;
    assert_eq!(status, 101, "{head}");
    assert!(
        !head.contains("Sec-WebSocket-Protocol"),
        "nothing offered, nothing echoed"
    );
}

#[tokio::test]
async fn each_subprotocol_is_echoed() {
    let server = Server::default().await;
    let url = server.url(Hub::StateGex).await;
    for p in ALL_PROTOCOLS {
        let mut client = Client::connect(&url, Some(p)).await.unwrap();
        assert_eq!(client.protocol.as_deref(), Some(p));
        assert!(matches!(client.recv().await, Down::Connected { .. }));
    }
    // The first supported one of several wins.
    let mut client = Client::connect(&url, Some(&format!("mqtt, {JSON}, {PROTOBUF}")))
        .await
        .unwrap();
    assert_eq!(client.protocol.as_deref(), Some(JSON));
    assert!(matches!(client.recv().await, Down::Connected { .. }));
    // No preference: protobuf, and no echo.
    let mut client = Client::connect(&url, None).await.unwrap();
    assert_eq!(client.protocol, None);
    assert!(matches!(client.recv().await, Down::Connected { .. }));
}

#[tokio::test]
async fn recovery_attempts_are_closed_with_1008() {
    let server = Server::default().await;
    let url = server.url(Hub::Classic).await;
    // An expired token in the URL does not matter: recovery is checked first.
    let base = url.split_once('?').unwrap().0;
    let url =
        format!("{base}?access_token=expired&awps_connection_id=c1&awps_reconnection_token=t1");
    let mut client = Client::connect(&url, Some(JSON_RELIABLE)).await.unwrap();
    assert_eq!(client.protocol.as_deref(), Some(JSON_RELIABLE));
    assert_eq!(client.close_code().await, 1008);
}

#[tokio::test]
async fn negotiate_refuses_keys_without_the_pubsub_endpoint() {
    let mut config = Config::default();
    config.api_keys.push(ApiKey {
        endpoints: Some(vec![Endpoint::Stream]),
        ..ApiKey::new("feeds-only", "feeds-only-key")
    });
    let server = Server::start(config).await;
    let (status, _, body) = http_get(
        server.addr,
        "/negotiate",
        &[("Authorization", "Basic feeds-only-key")],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("/negotiate"), "{body}");
}

#[tokio::test]
async fn an_oversized_request_head_is_refused_and_the_server_carries_on() {
    let server = Server::default().await;
    let huge = "x".repeat(100 * 1024);
    let (status, _) = http_head(server.addr, "/healthz", &[("X-Padding", &huge)]).await;
    assert_eq!(status, 431);
    assert_eq!(http_get(server.addr, "/healthz", &[]).await.0, 200);
}

/// The value of the response header `name` in `head` (lower-case match).
fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn any_origin_by_default_for_cors_and_websockets() {
    let server = Server::default().await;
    let origin = ("Origin", "http://app.example");
    let (status, head, _) = http_get(
        server.addr,
        "/negotiate",
        &[("Authorization", "Basic tickwire-demo-key"), origin],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&head, "access-control-allow-origin"), Some("*"));
    let (status, head, _) = http_request(
        server.addr,
        "OPTIONS",
        "/api/v1/publish",
        &[
            origin,
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 204, "{head}");
    assert_eq!(header_of(&head, "access-control-allow-origin"), Some("*"));
    assert!(
        header_of(&head, "access-control-allow-headers")
            .is_some_and(|h| h.contains("Authorization")),
        "{head}"
    );
    assert!(
        FeedClient::connect(server.addr, "/ws", &[origin])
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn only_the_allowed_origins_when_listed() {
    let server = Server::start(Config {
        allowed_origins: vec!["http://allowed.example".into()],
        ..Config::default()
    })
    .await;
    let allowed = ("Origin", "http://allowed.example");
    let other = ("Origin", "http://evil.example");
    // CORS: the allowed origin is echoed (and Vary says so); another gets
    // no permission, and its preflight a 403.
    let poll = "/api/v1/ltp?symbol=BTC/USD&exchange=CRYPTO";
    let auth = ("Authorization", "Bearer tickwire-demo-key");
    let (_, head, _) = http_get(server.addr, poll, &[auth, allowed]).await;
    assert_eq!(
        header_of(&head, "access-control-allow-origin"),
        Some("http://allowed.example")
    );
    assert_eq!(header_of(&head, "vary"), Some("Origin"));
    let (_, head, _) = http_get(server.addr, poll, &[auth, other]).await;
    assert_eq!(
        header_of(&head, "access-control-allow-origin"),
        None,
        "{head}"
    );
    for (origin, status) in [(allowed, 204), (other, 403)] {
        let headers = [origin, ("Access-Control-Request-Method", "GET")];
        let (got, head, _) =
            http_request(server.addr, "OPTIONS", "/negotiate", &headers, b"").await;
        assert_eq!(got, status, "{origin:?}: {head}");
    }
    // WebSockets: a page of another origin is refused, the allowed one and
    // a client that names no origin (not a browser) are not.
    for path in [
        "/ws",
        "/stream?api_key=tickwire-demo-key",
        "/api/v1/ws",
        "/proxy",
    ] {
        match FeedClient::connect(server.addr, path, &[other]).await {
            Err((status, body)) => {
                assert_eq!(status, 403, "{path}");
                assert!(body.contains("evil.example"), "{path}: {body}");
            }
            Ok(_) => panic!("{path}: another origin's upgrade accepted"),
        }
        assert!(
            FeedClient::connect(server.addr, path, &[allowed])
                .await
                .is_ok(),
            "{path}"
        );
        assert!(
            FeedClient::connect(server.addr, path, &[]).await.is_ok(),
            "{path}"
        );
    }
    let url = server.url(Hub::Classic).await;
    let hub_path = url
        .trim_start_matches(&format!("ws://{}", server.addr))
        .to_owned();
    let refused = FeedClient::connect(server.addr, &hub_path, &[other]).await;
    assert!(
        matches!(refused, Err((403, _))),
        "a hub upgrade of another origin"
    );
}

#[tokio::test]
async fn the_proxys_own_listener_refuses_other_origins_too() {
    let config = Config {
        allowed_origins: vec!["http://allowed.example".into()],
        ..Config::default()
    };
    let adapters: Vec<std::sync::Arc<dyn tickwire_adapter::BrokerAdapter>> =
        vec![std::sync::Arc::new(tickwire_adapter::MemoryAdapter::new(
            "memory",
        ))];
    let gw =
        ProxyGateway::start(config, adapters, tickwire_gateway::AdapterStates::default()).await;
    let refused =
        FeedClient::connect(gw.proxy_addr, "/", &[("Origin", "http://evil.example")]).await;
    assert!(
        matches!(refused, Err((403, ref body)) if body.contains("evil.example")),
        "{:?}",
        refused.err()
    );
    let allowed = [("Origin", "http://allowed.example")];
    assert!(
        FeedClient::connect(gw.proxy_addr, "/", &allowed)
            .await
            .is_ok()
    );
    assert!(FeedClient::connect(gw.proxy_addr, "/", &[]).await.is_ok());
}
