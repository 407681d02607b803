//! The routes of the endpoint and the page that renders its AsyncAPI document.
//!
//! The page is self-contained: a small HTML shell with its styles ([`DOCS_HTML`]) and a
//! dependency-free script ([`DOCS_JS`]) that fetches the document from
//! [`ASYNCAPI_JSON_PATH`] and renders the channel, each operation's messages, their
//! payload schemas (references resolved) and the request-to-reply links. It loads
//! nothing from the internet. Serve:
//!
//! | Route                              | Body                           | Content-Type                       |
//! |------------------------------------|--------------------------------|------------------------------------|
//! | `GET` [`ASYNCAPI_DOCS_PATH`]       | [`DOCS_HTML`]                  | `text/html; charset=utf-8`         |
//! | `GET` [`ASYNCAPI_JS_PATH`]         | [`DOCS_JS`]                    | `text/javascript; charset=utf-8`   |
//! | `GET` [`ASYNCAPI_JSON_PATH`]       | [`Registry::asyncapi`](crate::Registry::asyncapi) | `application/json` |

/// The WebSocket endpoint of the envelope protocol.
pub const WS_PATH: &str = "/api/v1/ws";

/// The route of the rendered documentation page ([`DOCS_HTML`]).
pub const ASYNCAPI_DOCS_PATH: &str = "/api/v1/ws/asyncapi";

/// The route of the AsyncAPI document, which the page fetches.
pub const ASYNCAPI_JSON_PATH: &str = "/api/v1/ws/asyncapi.json";

/// The route of the page's script ([`DOCS_JS`]), which the page loads.
pub const ASYNCAPI_JS_PATH: &str = "/api/v1/ws/asyncapi.js";

/// The documentation page: serve at [`ASYNCAPI_DOCS_PATH`] as `text/html; charset=utf-8`.
/// It loads [`ASYNCAPI_JS_PATH`], which fetches [`ASYNCAPI_JSON_PATH`].
pub const DOCS_HTML: &str = include_str!("../assets/asyncapi.html");

/// The page's renderer: serve at [`ASYNCAPI_JS_PATH`] as `text/javascript; charset=utf-8`.
pub const DOCS_JS: &str = include_str!("../assets/asyncapi.js");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_the_routes() {
        assert!(DOCS_HTML.contains(&format!("src=\"{ASYNCAPI_JS_PATH}\"")));
        assert!(DOCS_HTML.contains(&format!("data-src=\"{ASYNCAPI_JSON_PATH}\"")));
        assert!(ASYNCAPI_DOCS_PATH.starts_with(WS_PATH));
        // No remote resources: the page works offline.
        for page in [DOCS_HTML, DOCS_JS] {
            assert!(!page.contains("http://") && !page.contains("https://"));
            assert!(
                !page.contains("innerHTML"),
                "text goes in through textContent only"
            );
        }
    }
}
