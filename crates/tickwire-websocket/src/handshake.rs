//! The opening handshake, server side (RFC 6455 §4.2).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use sha1::{Digest as _, Sha1};

use crate::error::HandshakeError;

/// The one protocol version this server speaks (§4.1), for the
/// `Sec-WebSocket-Version` header of a refusal.
pub const VERSION: &str = "13";

/// The GUID the accept key is derived with (§1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Checks an upgrade request (§4.2.1) and returns the value of its
/// `Sec-WebSocket-Accept` header.
///
/// Required: `GET`, `Upgrade` naming `websocket`, `Connection` naming
/// `upgrade` (both lists, any case), `Sec-WebSocket-Version: 13`, and one
/// `Sec-WebSocket-Key` that decodes from base64 to 16 bytes. Subprotocols
/// and extensions are the caller's to choose.
pub fn check(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::NotGet);
    }
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(HandshakeError::NotUpgrade);
    }
    let mut versions = headers.get_all(header::SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes().trim_ascii() == VERSION.as_bytes() => {}
        _ => return Err(HandshakeError::WrongVersion),
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.as_bytes().trim_ascii(),
        _ => return Err(HandshakeError::BadKey),
    };
    // §4.2.1 item 5: "a base64-encoded value that, when decoded, is 16 bytes".
    match STANDARD.decode(key) {
        Ok(nonce) if nonce.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    Ok(accept_key(key))
}

/// Whether `name`'s comma-separated values hold `token` (any case).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The `Sec-WebSocket-Accept` value for `key` (§4.2.2 item 5.4):
/// base64(SHA-1(key ++ GUID)).
pub fn accept_key(key: &[u8]) -> HeaderValue {
    let digest = Sha1::new().chain_update(key).chain_update(GUID).finalize();
    let encoded = STANDARD.encode(digest);
    // Base64 is visible ASCII.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| unreachable!("base64 is a valid header"))
}

/// The `101 Switching Protocols` answer carrying `accept` (§4.2.2); the
/// caller adds `Sec-WebSocket-Protocol` when it chose one.
pub fn switching_protocols(accept: HeaderValue) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    const GOOD: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn the_rfc_example_is_accepted() {
        let accept = check(&Method::GET, &request(&GOOD)).unwrap();
        // §1.3's worked example.
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let response = switching_protocols(accept);
        assert_eq!(response.status(), 101);
        assert_eq!(response.headers()[header::UPGRADE], "websocket");
    }

    #[test]
    fn header_lists_and_case_are_accepted() {
        let headers = request(&[
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", " dGhlIHNhbXBsZSBub25jZQ== "),
        ]);
        assert!(check(&Method::GET, &headers).is_ok());
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let without = |name: &str| {
            let pairs: Vec<_> = GOOD.iter().copied().filter(|(n, _)| *n != name).collect();
            request(&pairs)
        };
        let with = |name: &'static str, value: &'static str| {
            let mut headers = without(name);
            headers.insert(name, HeaderValue::from_static(value));
            headers
        };
        assert_eq!(
            check(&Method::POST, &request(&GOOD)),
            Err(HandshakeError::NotGet)
        );
        assert_eq!(
            check(&Method::GET, &without("upgrade")),
            Err(HandshakeError::NotUpgrade)
        );
        assert_eq!(
            check(&Method::GET, &with("connection", "close")),
            Err(HandshakeError::NotUpgrade)
        );
        for version in ["12", "8", "13, 8", ""] {
            let headers = with("sec-websocket-version", version);
            assert_eq!(
                check(&Method::GET, &headers),
                Err(HandshakeError::WrongVersion),
                "{version}"
            );
        }
        assert_eq!(
            check(&Method::GET, &without("sec-websocket-version")),
            Err(HandshakeError::WrongVersion)
        );
        // "abc" is not base64 of 16 bytes; neither is a 15-byte nonce.
        for key in ["abc", "", "YWJjZGVmZ2hpamtsbW5v", "dGhlIHNhbXBsZSBub25jZQ"] {
            let headers = with("sec-websocket-key", key);
            assert_eq!(
                check(&Method::GET, &headers),
                Err(HandshakeError::BadKey),
                "{key}"
            );
        }
        let mut twice = request(&GOOD);
        twice.append(
            "sec-websocket-key",
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(check(&Method::GET, &twice), Err(HandshakeError::BadKey));
    }
}
