//! Decoding client requests (seed 003, "WebSocket Protocol"; the reference server's
//! dispatch for the variants its clients send).

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tickwire_model::Instrument;

use crate::{Depth, Mode, ProxyError};

/// The longest client-supplied text echoed back in an error message.
const MAX_ECHO: usize = 64;

/// A decoded client request.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Request {
    /// `authenticate` (or `auth`) with `api_key` (or `apikey`).
    Authenticate {
        /// The key to verify.
        api_key: String,
    },
    /// `subscribe`.
    Subscribe(Subscribe),
    /// `unsubscribe` or `unsubscribe_all`.
    Unsubscribe(Unsubscribe),
    /// `ping`.
    Ping(Ping),
    /// `get_supported_brokers` (allowed before authentication).
    GetSupportedBrokers,
    /// `get_broker_info`.
    GetBrokerInfo,
}

/// A `subscribe` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    /// The instruments, in request order; entries without a string `symbol` and
    /// `exchange` are skipped, as the reference server does.
    pub instruments: Vec<Instrument>,
    /// The mode (default Quote).
    pub mode: Mode,
    /// The depth levels (default 5; only meaningful for Depth).
    pub depth: Depth,
    /// The client's `request_id`, echoed in the reply.
    pub request_id: Option<RawJson>,
}

/// An `unsubscribe` or `unsubscribe_all` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsubscribe {
    /// `unsubscribe_all`: drop every subscription of the connection (`targets` is then empty).
    pub all: bool,
    /// The subscriptions to drop. `None` as the mode (no `mode` on the entry nor on the
    /// request) drops every mode of the instrument this connection holds.
    pub targets: Vec<(Instrument, Option<Mode>)>,
    /// Entries with an invalid `mode`, and why: reported in the reply's `failed` list.
    pub rejected: Vec<(Instrument, String)>,
    /// The client's `request_id`, echoed in the reply.
    pub request_id: Option<RawJson>,
}

/// A JSON value exactly as the client wrote it, echoed back verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(Box<str>);

impl RawJson {
    /// Checks that `json` is one JSON value and keeps its text, surrounding whitespace
    /// trimmed, for a request to carry (`request_id`, a ping's `timestamp` and
    /// `_pingId`). `null` is sent as written but reads back as no value at all.
    ///
    /// ```
    /// use tickwire_proxy::RawJson;
    ///
    /// assert_eq!(RawJson::new(" \"r-1\" ")?.as_str(), "\"r-1\"");
    /// assert!(RawJson::new("{").is_err());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn new(json: &str) -> Result<RawJson, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(json)?;
        Ok(RawJson::of(raw))
    }

    /// The text of a value the parser has already checked.
    pub(crate) fn of(raw: &RawValue) -> RawJson {
        RawJson(raw.get().into())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `ping` request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ping {
    /// The client's `timestamp`, echoed as `client_timestamp`.
    pub client_timestamp: Option<RawJson>,
    /// The client's `_pingId`, echoed.
    pub ping_id: Option<RawJson>,
}

impl Request {
    /// Whether the request needs an authenticated connection.
    pub fn needs_auth(&self) -> bool {
        matches!(
            self,
            Request::Subscribe(_) | Request::Unsubscribe(_) | Request::GetBrokerInfo
        )
    }
}

/// The keys of a request, each kept as raw JSON and interpreted on demand.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Fields<'a> {
    #[serde(borrow)]
    action: Option<&'a RawValue>,
    #[serde(borrow, rename = "type")]
    ty: Option<&'a RawValue>,
    #[serde(borrow)]
    api_key: Option<&'a RawValue>,
    #[serde(borrow)]
    apikey: Option<&'a RawValue>,
    #[serde(borrow)]
    symbols: Option<&'a RawValue>,
    #[serde(borrow)]
    symbol: Option<&'a RawValue>,
    #[serde(borrow)]
    exchange: Option<&'a RawValue>,
    #[serde(borrow)]
    mode: Option<&'a RawValue>,
    #[serde(borrow)]
    depth: Option<&'a RawValue>,
    #[serde(borrow)]
    depth_level: Option<&'a RawValue>,
    #[serde(borrow)]
    request_id: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, rename = "_pingId")]
    ping_id: Option<&'a RawValue>,
}

/// Decodes one client text frame.
///
/// `authenticated` tells whether the connection has authenticated: a request that
/// needs it is then refused with [`ProxyError::NotAuthenticated`] before its
/// parameters are checked, as the reference server does. Dispatch is on `action`,
/// or `type` when `action` is absent or empty. Unknown keys are ignored. Bad input
/// never panics; every error is answered with [`encode_error`](crate::encode_error)
/// and the connection stays usable.
///
/// ```
/// use tickwire_proxy::{decode_request, Mode, ProxyError, Request};
///
/// let req = decode_request(br#"{"action":"subscribe","symbol":"TCS","exchange":"NSE","mode":"ltp"}"#, true)?;
/// let Request::Subscribe(sub) = req else { unreachable!() };
/// assert_eq!(sub.mode, Mode::Ltp);
/// assert_eq!(&*sub.instruments[0].symbol, "TCS");
///
/// let err = decode_request(br#"{"action":"subscribe","symbols":[]}"#, false).unwrap_err();
/// assert_eq!(err, ProxyError::NotAuthenticated);
/// # Ok::<(), ProxyError>(())
/// ```
pub fn decode_request(payload: &[u8], authenticated: bool) -> Result<Request, ProxyError> {
    // A derived struct would also accept a JSON array, field by field: refuse it first.
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ProxyError::InvalidJson {
            reason: "not a JSON object".into(),
        });
    }
    let fields: Fields<'_> =
        serde_json::from_slice(payload).map_err(|e| ProxyError::InvalidJson {
            reason: e.to_string(),
        })?;

    let action = value(fields.action)
        .filter(truthy)
        .or_else(|| value(fields.ty))
        .unwrap_or(Value::Null);
    let name = action.as_str().unwrap_or_default();
    let needs_auth = matches!(
        name,
        "subscribe" | "unsubscribe" | "unsubscribe_all" | "get_broker_info"
    );
    if needs_auth && !authenticated {
        return Err(ProxyError::NotAuthenticated);
    }
    match name {
        "authenticate" | "auth" => authenticate(&fields),
        "subscribe" => subscribe(&fields).map(Request::Subscribe),
        "unsubscribe" | "unsubscribe_all" => unsubscribe(&fields).map(Request::Unsubscribe),
        "ping" => Ok(Request::Ping(Ping {
            client_timestamp: raw(fields.timestamp),
            ping_id: raw(fields.ping_id),
        })),
        "get_supported_brokers" => Ok(Request::GetSupportedBrokers),
        "get_broker_info" => Ok(Request::GetBrokerInfo),
        _ => Err(ProxyError::InvalidAction {
            action: python_str(&action),
        }),
    }
}

fn authenticate(fields: &Fields<'_>) -> Result<Request, ProxyError> {
    let key = value(fields.api_key)
        .filter(truthy)
        .or_else(|| value(fields.apikey))
        .filter(truthy);
    match key {
        None => Err(ProxyError::Authentication {
            message: "API key is required".into(),
        }),
        Some(Value::String(api_key)) => Ok(Request::Authenticate { api_key }),
        // A number or an object is no key the server can know.
        Some(_) => Err(ProxyError::invalid_api_key()),
    }
}

fn subscribe(fields: &Fields<'_>) -> Result<Subscribe, ProxyError> {
    let mode = match value(fields.mode) {
        None => Mode::Quote,
        Some(v) => parse_mode(&v)?,
    };
    let mut instruments = symbol_list(fields)?
        .iter()
        .filter_map(|entry| instrument(entry.get("symbol"), entry.get("exchange")))
        .collect::<Vec<_>>();
    if instruments.is_empty() && fields.symbols.is_none_or(|s| !truthy(&value_of(s))) {
        instruments.extend(single(fields));
    }
    if instruments.is_empty() && !has_entries(fields) {
        return Err(ProxyError::InvalidParameters {
            message: "At least one symbol must be specified".into(),
        });
    }
    let depth = match value(fields.depth).or_else(|| value(fields.depth_level)) {
        None => Depth::Five,
        Some(v) => v.as_i64().and_then(Depth::from_levels).ok_or_else(|| {
            ProxyError::InvalidParameters {
                message: format!("Invalid depth {}; expected 5, 20 or 30", python_repr(&v)),
            }
        })?,
    };
    Ok(Subscribe {
        instruments,
        mode,
        depth,
        request_id: raw(fields.request_id),
    })
}

fn unsubscribe(fields: &Fields<'_>) -> Result<Unsubscribe, ProxyError> {
    let all = [fields.action, fields.ty]
        .into_iter()
        .any(|f| value(f).is_some_and(|v| v == "unsubscribe_all"));
    let mut out = Unsubscribe {
        all,
        targets: Vec::new(),
        rejected: Vec::new(),
        request_id: raw(fields.request_id),
    };
    if all {
        return Ok(out);
    }
    // The request's own mode applies to entries without one.
    let request_mode = value(fields.mode);
    let entries = symbol_list(fields)?;
    if entries.is_empty() {
        if let Some(instrument) = single(fields) {
            let mode = match &request_mode {
                None => None,
                Some(v) => Some(parse_mode(v)?),
            };
            out.targets.push((instrument, mode));
        }
    }
    for entry in &entries {
        let Some(instrument) = instrument(entry.get("symbol"), entry.get("exchange")) else {
            continue;
        };
        match entry.get("mode").or(request_mode.as_ref()) {
            None => out.targets.push((instrument, None)),
            Some(v) => match parse_mode(v) {
                Ok(mode) => out.targets.push((instrument, Some(mode))),
                Err(e) => out.rejected.push((instrument, e.to_string())),
            },
        }
    }
    if out.targets.is_empty() && out.rejected.is_empty() && !has_entries(fields) {
        return Err(ProxyError::InvalidParameters {
            message: "Either symbols or unsubscribe_all is required".into(),
        });
    }
    Ok(out)
}

/// The `symbols` list: absent, `null` or empty is an empty list; anything else that
/// is not a list of objects is an error.
fn symbol_list(fields: &Fields<'_>) -> Result<Vec<serde_json::Map<String, Value>>, ProxyError> {
    match value(fields.symbols) {
        None => Ok(Vec::new()),
        Some(v) if !truthy(&v) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items
            .into_iter()
            .filter_map(|item| match item {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .collect()),
        Some(_) => Err(ProxyError::InvalidParameters {
            message: "symbols must be a list of {symbol, exchange} objects".into(),
        }),
    }
}

/// Whether `symbols` held entries (all of which may have been skipped as invalid).
fn has_entries(fields: &Fields<'_>) -> bool {
    matches!(value(fields.symbols), Some(Value::Array(items)) if !items.is_empty())
}

/// The single `symbol` + `exchange` form.
fn single(fields: &Fields<'_>) -> Option<Instrument> {
    instrument(
        value(fields.symbol).as_ref(),
        value(fields.exchange).as_ref(),
    )
}

fn instrument(symbol: Option<&Value>, exchange: Option<&Value>) -> Option<Instrument> {
    match (symbol?, exchange?) {
        (Value::String(s), Value::String(e)) if !s.is_empty() && !e.is_empty() => {
            Some(Instrument::new(s.as_str(), e.as_str()))
        }
        _ => None,
    }
}

/// A mode: 1, 2, 3 or `LTP`/`Quote`/`Depth` in any case (the reference's `normalize_mode`).
fn parse_mode(v: &Value) -> Result<Mode, ProxyError> {
    let message = match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => match Mode::from_number(i) {
                Some(mode) => return Ok(mode),
                None => format!("Invalid mode {i}; expected 1 (LTP), 2 (Quote), or 3 (Depth)"),
            },
            None => "Mode must be int or str, got float".to_owned(),
        },
        Value::String(s) => match Mode::from_label(s) {
            Some(mode) => return Ok(mode),
            None => format!(
                "Invalid mode {}; expected 'LTP', 'Quote', or 'Depth' (case-insensitive)",
                python_repr(v)
            ),
        },
        Value::Bool(b) => format!(
            "Mode must be int or str, got bool ({})",
            if *b { "True" } else { "False" }
        ),
        Value::Null => "Mode must be int or str, got NoneType".to_owned(),
        Value::Array(_) => "Mode must be int or str, got list".to_owned(),
        Value::Object(_) => "Mode must be int or str, got dict".to_owned(),
    };
    Err(ProxyError::InvalidMode { message })
}

fn value(raw: Option<&RawValue>) -> Option<Value> {
    raw.map(value_of)
}

fn value_of(raw: &RawValue) -> Value {
    // A RawValue is valid JSON; a value nested too deep parses as null.
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

fn raw(raw: Option<&RawValue>) -> Option<RawJson> {
    raw.filter(|r| r.get() != "null").map(RawJson::of)
}

/// Python truthiness, as the reference's `a or b` applies it.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `str(value)` as the reference prints it in messages, cut to [`MAX_ECHO`] characters.
fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => cut(s),
        _ => python_repr(v),
    }
}

/// `repr(value)` for scalars (`'x'`, `None`, `True`), compact JSON otherwise; cut.
fn python_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => format!("'{}'", cut(s)),
        _ => cut(&v.to_string()),
    }
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_owned(),
    }
}

/// Longest symbol or exchange name a subscription may carry.
pub const MAX_NAME_BYTES: usize = 64;

/// Refuses an instrument no adapter could carry: an empty, overlong or
/// control-character symbol or exchange. The error is the reply's message.
///
/// ```
/// use tickwire_model::Instrument;
/// use tickwire_proxy::check_instrument;
///
/// assert!(check_instrument(&Instrument::new("RELIANCE", "NSE")).is_ok());
/// assert_eq!(
///     check_instrument(&Instrument::new("A\u{1}B", "NSE")),
///     Err("Invalid symbol: control characters".to_owned())
/// );
/// ```
pub fn check_instrument(instrument: &Instrument) -> Result<(), String> {
    for (what, name) in [
        ("symbol", instrument.symbol.as_ref()),
        ("exchange", instrument.exchange.as_ref()),
    ] {
        if name.trim().is_empty() {
            return Err(format!("Invalid {what}: empty"));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "Invalid {what}: longer than {MAX_NAME_BYTES} bytes"
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(format!("Invalid {what}: control characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(json: &str) -> Request {
        decode_request(json.as_bytes(), true).unwrap()
    }

    fn err(json: &str) -> ProxyError {
        decode_request(json.as_bytes(), true).unwrap_err()
    }

    fn nse(symbol: &str) -> Instrument {
        Instrument::new(symbol, "NSE")
    }

    #[test]
    fn authenticate_variants() {
        for json in [
            r#"{"action":"authenticate","api_key":"k"}"#,
            r#"{"action":"auth","apikey":"k"}"#,
            r#"{"type":"authenticate","api_key":"k"}"#,
            r#"{"action":"","type":"auth","api_key":"","apikey":"k"}"#,
        ] {
            assert_eq!(
                decode_request(json.as_bytes(), false).unwrap(),
                Request::Authenticate {
                    api_key: "k".into()
                },
                "{json}"
            );
        }
        assert_eq!(
            err(r#"{"action":"authenticate"}"#).to_string(),
            "API key is required"
        );
        assert_eq!(
            err(r#"{"action":"authenticate","api_key":7}"#),
            ProxyError::invalid_api_key()
        );
    }

    #[test]
    fn subscribe_forms_and_defaults() {
        let Request::Subscribe(sub) = ok(
            r#"{"action":"subscribe","symbols":[{"symbol":"RELIANCE","exchange":"NSE"},{"symbol":"TCS","exchange":"NSE"}],"mode":"Quote"}"#,
        ) else {
            panic!("subscribe expected");
        };
        assert_eq!(sub.instruments, [nse("RELIANCE"), nse("TCS")]);
        assert_eq!((sub.mode, sub.depth), (Mode::Quote, Depth::Five));
        assert_eq!(sub.request_id, None);

        // The SDK's form: one instrument, integer mode, depth.
        let Request::Subscribe(sub) = ok(
            r#"{"action":"subscribe","symbol":"INFY","exchange":"NSE","mode":3,"depth":20,"request_id":"r1"}"#,
        ) else {
            panic!("subscribe expected");
        };
        assert_eq!(sub.instruments, [nse("INFY")]);
        assert_eq!((sub.mode, sub.depth), (Mode::Depth, Depth::Twenty));
        assert_eq!(sub.request_id.unwrap().as_str(), "\"r1\"");

        let Request::Subscribe(sub) =
            ok(r#"{"action":"subscribe","symbol":"TCS","exchange":"NSE"}"#)
        else {
            panic!("subscribe expected");
        };
        assert_eq!(sub.mode, Mode::Quote);

        for (mode, expected) in [
            ("\"ltp\"", Mode::Ltp),
            ("\"DEPTH\"", Mode::Depth),
            ("1", Mode::Ltp),
            ("2", Mode::Quote),
        ] {
            let json = format!(
                r#"{{"action":"subscribe","symbol":"A","exchange":"NSE","mode":{mode},"depth_level":30}}"#
            );
            let Request::Subscribe(sub) = ok(&json) else {
                panic!("subscribe expected")
            };
            assert_eq!((sub.mode, sub.depth), (expected, Depth::Thirty), "{mode}");
        }

        // Invalid entries are skipped, as the reference does.
        let Request::Subscribe(sub) = ok(
            r#"{"action":"subscribe","symbols":[{"symbol":"A"},{"symbol":5,"exchange":"NSE"},"x",{"symbol":"B","exchange":"NSE"}]}"#,
        ) else {
            panic!("subscribe expected");
        };
        assert_eq!(sub.instruments, [nse("B")]);
    }

    #[test]
    fn subscribe_errors() {
        for (json, code, message) in [
            (
                r#"{"action":"subscribe","symbol":"A","exchange":"NSE","mode":"full"}"#,
                "INVALID_MODE",
                "Invalid mode 'full'; expected 'LTP', 'Quote', or 'Depth' (case-insensitive)",
            ),
            (
                r#"{"action":"subscribe","symbol":"A","exchange":"NSE","mode":4}"#,
                "INVALID_MODE",
                "Invalid mode 4; expected 1 (LTP), 2 (Quote), or 3 (Depth)",
            ),
            (
                r#"{"action":"subscribe","symbol":"A","exchange":"NSE","mode":true}"#,
                "INVALID_MODE",
                "Mode must be int or str, got bool (True)",
            ),
            (
                r#"{"action":"subscribe","symbol":"A","exchange":"NSE","mode":[]}"#,
                "INVALID_MODE",
                "Mode must be int or str, got list",
            ),
            (
                r#"{"action":"subscribe","symbol":"A","exchange":"NSE","mode":1.5}"#,
                "INVALID_MODE",
                "Mode must be int or str, got float",
            ),
            (
                r#"{"action":"subscribe","mode":1}"#,
                "INVALID_PARAMETERS",
                "At least one symbol must be specified",
            ),
            (
                r#"{"action":"subscribe","symbols":[]}"#,
                "INVALID_PARAMETERS",
                "At least one symbol must be specified",
            ),
            (
                r#"{"action":"subscribe","symbol":"A"}"#,
                "INVALID_PARAMETERS",
                "At least one symbol must be specified",
            ),
            (
                r#"{"action":"subscribe","symbols":"A"}"#,
                "INVALID_PARAMETERS",
                "symbols must be a list of {symbol, exchange} objects",
            ),
            (
                r#"{"action":"subscribe","symbol":"A","exchange":"NSE","depth":7}"#,
                "INVALID_PARAMETERS",
                "Invalid depth 7; expected 5, 20 or 30",
            ),
            (
                r#"{"action":"subscribe","symbol":"A","exchange":"NSE","depth":"5"}"#,
                "INVALID_PARAMETERS",
                "Invalid depth '5'; expected 5, 20 or 30",
            ),
        ] {
            let e = err(json);
            assert_eq!(
                (e.code(), e.to_string().as_str()),
                (code, message),
                "{json}"
            );
        }
        // The mode is checked before the symbols, as the reference does.
        assert_eq!(
            err(r#"{"action":"subscribe","mode":9}"#).code(),
            "INVALID_MODE"
        );
    }

    #[test]
    fn unsubscribe_forms() {
        let Request::Unsubscribe(u) =
            ok(r#"{"action":"unsubscribe","symbols":[{"symbol":"RELIANCE","exchange":"NSE"}]}"#)
        else {
            panic!("unsubscribe expected");
        };
        assert!(!u.all);
        assert_eq!(u.targets, [(nse("RELIANCE"), None)]);

        let Request::Unsubscribe(u) =
            ok(r#"{"action":"unsubscribe","symbol":"TCS","exchange":"NSE","mode":1}"#)
        else {
            panic!("unsubscribe expected");
        };
        assert_eq!(u.targets, [(nse("TCS"), Some(Mode::Ltp))]);

        let Request::Unsubscribe(u) = ok(
            r#"{"action":"unsubscribe","mode":"Depth","symbols":[{"symbol":"A","exchange":"NSE"},{"symbol":"B","exchange":"NSE","mode":"ltp"},{"symbol":"C","exchange":"NSE","mode":"bad"}],"request_id":7}"#,
        ) else {
            panic!("unsubscribe expected");
        };
        assert_eq!(
            u.targets,
            [(nse("A"), Some(Mode::Depth)), (nse("B"), Some(Mode::Ltp))]
        );
        assert_eq!(u.rejected.len(), 1);
        assert_eq!(u.rejected[0].0, nse("C"));
        assert_eq!(u.request_id.unwrap().as_str(), "7");

        for json in [
            r#"{"action":"unsubscribe_all"}"#,
            r#"{"type":"unsubscribe_all"}"#,
            r#"{"action":"unsubscribe","type":"unsubscribe_all"}"#,
        ] {
            let Request::Unsubscribe(u) = ok(json) else {
                panic!("unsubscribe expected")
            };
            assert!(u.all && u.targets.is_empty(), "{json}");
        }

        let e = err(r#"{"action":"unsubscribe"}"#);
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (
                "INVALID_PARAMETERS",
                "Either symbols or unsubscribe_all is required"
            )
        );
        assert_eq!(
            err(r#"{"action":"unsubscribe","symbol":"A","exchange":"NSE","mode":0}"#).code(),
            "INVALID_MODE"
        );
    }

    #[test]
    fn auth_is_checked_first() {
        for json in [
            r#"{"action":"subscribe","mode":"bad"}"#,
            r#"{"action":"unsubscribe"}"#,
            r#"{"action":"unsubscribe_all"}"#,
            r#"{"action":"get_broker_info"}"#,
        ] {
            assert_eq!(
                decode_request(json.as_bytes(), false),
                Err(ProxyError::NotAuthenticated),
                "{json}"
            );
        }
        assert_eq!(
            decode_request(br#"{"action":"get_supported_brokers"}"#, false),
            Ok(Request::GetSupportedBrokers)
        );
        assert!(matches!(
            decode_request(br#"{"action":"ping"}"#, false),
            Ok(Request::Ping(_))
        ));
        assert!(ok(r#"{"action":"get_broker_info"}"#).needs_auth());
    }

    #[test]
    fn ping_echoes_raw_values() {
        let Request::Ping(p) =
            ok(r#"{"action":"ping","timestamp":1700000000123,"_pingId":{"n":[1, 2]}}"#)
        else {
            panic!("ping expected");
        };
        assert_eq!(p.client_timestamp.unwrap().as_str(), "1700000000123");
        assert_eq!(p.ping_id.unwrap().as_str(), r#"{"n":[1, 2]}"#);
        let Request::Ping(p) = ok(r#"{"type":"ping"}"#) else {
            panic!("ping expected")
        };
        assert_eq!((p.client_timestamp, p.ping_id), (None, None));
    }

    #[test]
    fn bad_frames() {
        for json in [
            "",
            "   ",
            "[1,2]",
            "null",
            "\"x\"",
            "{",
            "{\"action\":}",
            "{\"action\":\"ping\"} x",
            "\u{feff}{}",
        ] {
            assert_eq!(err(json).code(), "INVALID_JSON", "{json:?}");
        }
        assert_eq!(
            err(r#"{"action":"ping","action":"ping"}"#).code(),
            "INVALID_JSON"
        );
        // Deep nesting never overflows the stack: ignored keys are skipped, used ones
        // beyond the parser's depth limit count as absent.
        let deep = |n| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(
            err(&format!(r#"{{"x":{},"action":"ping2"}}"#, deep(100_000))).code(),
            "INVALID_ACTION"
        );
        assert_eq!(
            err(&format!(
                r#"{{"action":"subscribe","symbols":{}}}"#,
                deep(10_000)
            ))
            .code(),
            "INVALID_PARAMETERS"
        );
        for (json, message) in [
            (r#"{}"#, "Invalid action: None"),
            (r#"{"action":"dance"}"#, "Invalid action: dance"),
            (r#"{"action":5}"#, "Invalid action: 5"),
            (r#"{"action":null,"type":false}"#, "Invalid action: False"),
            (
                r#"{"action":["subscribe"]}"#,
                "Invalid action: [\"subscribe\"]",
            ),
        ] {
            let e = err(json);
            assert_eq!(
                (e.code(), e.to_string().as_str()),
                ("INVALID_ACTION", message),
                "{json}"
            );
        }
        let long = format!(r#"{{"action":"{}"}}"#, "x".repeat(1000));
        assert_eq!(
            err(&long).to_string(),
            format!("Invalid action: {}...", "x".repeat(64))
        );
        assert_eq!(
            decode_request(&[0xff, 0xfe], true).unwrap_err().code(),
            "INVALID_JSON"
        );
    }
}
