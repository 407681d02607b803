//! The four client subprotocols and their negotiation (RFC 6455 §4.2.2, `Sec-WebSocket-Protocol`).

use std::fmt;

use crate::Error;

/// How messages are serialized on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireFormat {
    /// One JSON object per text frame.
    Json,
    /// One protobuf message per binary frame, without a length prefix.
    Protobuf,
}

impl WireFormat {
    /// Both formats, for encoding a broadcast once per format.
    pub const ALL: [WireFormat; 2] = [WireFormat::Json, WireFormat::Protobuf];

    /// The WebSocket frame kind that carries this format.
    pub const fn frame_kind(self) -> FrameKind {
        match self {
            WireFormat::Json => FrameKind::Text,
            WireFormat::Protobuf => FrameKind::Binary,
        }
    }
}

/// The kind of a WebSocket data frame (RFC 6455 §5.6: opcode 0x1 text, 0x2 binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A text frame (UTF-8 payload).
    Text,
    /// A binary frame.
    Binary,
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::Text => "text",
            FrameKind::Binary => "binary",
        })
    }
}

/// One of the Azure Web PubSub client subprotocols.
///
/// The reliable variants add per-connection `sequenceId`s on data messages, a
/// `reconnectionToken` in the connected message, client `sequenceAck`s and session recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subprotocol {
    /// `json.webpubsub.azure.v1`
    Json,
    /// `json.reliable.webpubsub.azure.v1`
    JsonReliable,
    /// `protobuf.webpubsub.azure.v1`
    Protobuf,
    /// `protobuf.reliable.webpubsub.azure.v1`
    ProtobufReliable,
}

impl Subprotocol {
    /// Every supported subprotocol.
    pub const ALL: [Subprotocol; 4] = [
        Subprotocol::Json,
        Subprotocol::JsonReliable,
        Subprotocol::Protobuf,
        Subprotocol::ProtobufReliable,
    ];

    /// The name sent in `Sec-WebSocket-Protocol`.
    pub const fn name(self) -> &'static str {
        match self {
            Subprotocol::Json => "json.webpubsub.azure.v1",
            Subprotocol::JsonReliable => "json.reliable.webpubsub.azure.v1",
            Subprotocol::Protobuf => "protobuf.webpubsub.azure.v1",
            Subprotocol::ProtobufReliable => "protobuf.reliable.webpubsub.azure.v1",
        }
    }

    /// The subprotocol with this exact name (subprotocol tokens are compared
    /// case-sensitively, RFC 6455 §4.1 and §11.5).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Whether this is one of the reliable subprotocols.
    pub const fn is_reliable(self) -> bool {
        matches!(
            self,
            Subprotocol::JsonReliable | Subprotocol::ProtobufReliable
        )
    }

    /// The wire format of this subprotocol.
    pub const fn format(self) -> WireFormat {
        match self {
            Subprotocol::Json | Subprotocol::JsonReliable => WireFormat::Json,
            Subprotocol::Protobuf | Subprotocol::ProtobufReliable => WireFormat::Protobuf,
        }
    }
}

impl fmt::Display for Subprotocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of [`negotiate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The subprotocol the connection speaks.
    pub protocol: Subprotocol,
    /// The value to send back in `Sec-WebSocket-Protocol`, or `None` to send no such header.
    pub echo: Option<&'static str>,
}

/// Chooses the subprotocol of a new connection from the values of all its
/// `Sec-WebSocket-Protocol` request headers.
///
/// Each header value may be a comma-separated list; elements are trimmed and empty ones
/// skipped (RFC 6455 §4.1, §11.3.4). The first supported subprotocol wins and must be
/// echoed: browsers, Node `ws` and Python `websocket-client` abort the handshake otherwise.
/// A client that offers nothing speaks protobuf (the service's default for clients without
/// a preference) and gets no echo, since a server must not answer with a subprotocol the
/// client did not offer (RFC 6455 §4.2.2). A client that offers only unsupported
/// subprotocols gets [`Error::UnsupportedSubprotocols`].
///
/// ```
/// use tickwire_pubsub::{negotiate, Subprotocol};
///
/// let n = negotiate(["mqtt, json.reliable.webpubsub.azure.v1", "json.webpubsub.azure.v1"])?;
/// assert_eq!(n.protocol, Subprotocol::JsonReliable);
/// assert_eq!(n.echo, Some("json.reliable.webpubsub.azure.v1"));
///
/// let n = negotiate([])?;
/// assert_eq!((n.protocol, n.echo), (Subprotocol::Protobuf, None));
///
/// assert!(negotiate(["mqtt"]).is_err());
/// # Ok::<(), tickwire_pubsub::Error>(())
/// ```
pub fn negotiate<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
) -> Result<Negotiated, Error> {
    let mut requested = Vec::new();
    for value in header_values {
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if let Some(protocol) = Subprotocol::from_name(name) {
                return Ok(Negotiated {
                    protocol,
                    echo: Some(protocol.name()),
                });
            }
            requested.push(name.to_owned());
        }
    }
    if requested.is_empty() {
        Ok(Negotiated {
            protocol: Subprotocol::Protobuf,
            echo: None,
        })
    } else {
        Err(Error::UnsupportedSubprotocols { requested })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Subprotocol::ALL {
            assert_eq!(Subprotocol::from_name(p.name()), Some(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(Subprotocol::from_name("JSON.webpubsub.azure.v1"), None);
        assert_eq!(Subprotocol::from_name(""), None);
    }

    #[test]
    fn properties() {
        use Subprotocol::*;
        assert_eq!(Json.name(), "json.webpubsub.azure.v1");
        assert_eq!(JsonReliable.name(), "json.reliable.webpubsub.azure.v1");
        assert_eq!(Protobuf.name(), "protobuf.webpubsub.azure.v1");
        assert_eq!(
            ProtobufReliable.name(),
            "protobuf.reliable.webpubsub.azure.v1"
        );
        assert_eq!(
            Subprotocol::ALL.map(Subprotocol::is_reliable),
            [false, true, false, true]
        );
        assert_eq!(
            Subprotocol::ALL.map(Subprotocol::format),
            [
                WireFormat::Json,
                WireFormat::Json,
                WireFormat::Protobuf,
                WireFormat::Protobuf
            ]
        );
        assert_eq!(WireFormat::Json.frame_kind(), FrameKind::Text);
        assert_eq!(WireFormat::Protobuf.frame_kind(), FrameKind::Binary);
    }

    #[test]
    fn nothing_requested_defaults_to_protobuf_without_echo() {
        for headers in [&[][..], &[""][..], &[" , ,"][..]] {
            let n = negotiate(headers.iter().copied()).unwrap();
            assert_eq!(n.protocol, Subprotocol::Protobuf);
            assert_eq!(n.echo, None);
        }
    }

    #[test]
    fn first_supported_wins_across_headers() {
        let n = negotiate([
            "foo,  bar ",
            " protobuf.reliable.webpubsub.azure.v1 ,json.webpubsub.azure.v1",
        ])
        .unwrap();
        assert_eq!(n.protocol, Subprotocol::ProtobufReliable);
        assert_eq!(n.echo, Some("protobuf.reliable.webpubsub.azure.v1"));

        let n = negotiate(["json.webpubsub.azure.v1", "protobuf.webpubsub.azure.v1"]).unwrap();
        assert_eq!(n.protocol, Subprotocol::Json);
        assert_eq!(n.echo, Some("json.webpubsub.azure.v1"));
    }

    #[test]
    fn only_unsupported_is_an_error_naming_both_sides() {
        let err = negotiate(["mqtt, graphql-ws", "wamp"]).unwrap_err();
        assert_eq!(
            err,
            Error::UnsupportedSubprotocols {
                requested: vec!["mqtt".into(), "graphql-ws".into(), "wamp".into()]
            }
        );
        let text = err.to_string();
        assert!(text.contains("mqtt, graphql-ws, wamp"), "{text}");
        for p in Subprotocol::ALL {
            assert!(text.contains(p.name()), "{text}");
        }
        assert_eq!(err.ack_id(), None);
    }
}
