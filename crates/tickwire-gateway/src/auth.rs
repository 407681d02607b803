//! API keys, access tokens and roles.
//!
//! `/negotiate` trades an API key for one access token per hub. The tokens
//! are HS256 JWTs of the shape Azure Web PubSub issues (`aud` = the hub's
//! `http(s)://host/client/hubs/{hub}` URL, `sub` = the user id, `role` = the
//! roles, `iat`, `exp`), so its client SDKs accept them. A token never holds
//! the API key.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tickwire_model::Hub;

use crate::GatewayError;
use crate::config::Config;

/// The role that lets a connection join and leave every group.
pub const ROLE_JOIN_LEAVE: &str = "webpubsub.joinLeaveGroup";
/// The role that lets a connection send to every group.
pub const ROLE_SEND: &str = "webpubsub.sendToGroup";
/// The role that lets a connection send events.
pub const ROLE_EVENT: &str = "webpubsub.event";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The hub's URL, `http(s)://host/client/hubs/{hub}`.
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// The roles of the connection.
    #[serde(default)]
    pub role: Vec<String>,
}

/// A configured key, as the key ring keeps it.
#[derive(Debug)]
struct Key {
    name: String,
    digest: [u8; 32],
    roles: Vec<String>,
}

/// The identity an API key grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal<'a> {
    /// The user id (the key's name).
    pub(crate) user_id: &'a str,
    /// The key's roles.
    pub(crate) roles: &'a [String],
}

/// Why an `Authorization` header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRejection {
    /// There is no usable `Authorization: Basic` header.
    Missing,
    /// The key is not one of the configured ones.
    Invalid,
}

/// Issues and checks access tokens; checks API keys.
pub(crate) struct Auth {
    keys: Vec<Key>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field(
                "keys",
                &self.keys.iter().map(|k| &k.name).collect::<Vec<_>>(),
            )
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Builds the key ring and token keys of `config` (drawing a random
    /// secret when none is configured).
    pub(crate) fn new(config: &Config) -> Result<Auth, GatewayError> {
        let keys = config
            .api_keys
            .iter()
            .map(|k| {
                Ok(Key {
                    name: k.name.clone(),
                    digest: k.digest()?,
                    roles: k.roles.clone(),
                })
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        let secret = match &config.token_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => {
                let mut secret = vec![0u8; 32];
                rand::rng().fill_bytes(&mut secret);
                secret
            }
        };
        let mut validation = Validation::new(Algorithm::HS256);
        // The audience names the hub; it is checked against the route by
        // `verify`, whatever host the client used.
        validation.validate_aud = false;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        Ok(Auth {
            keys,
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            ttl_secs: config.token_ttl_secs,
        })
    }

    /// The principal of an `Authorization` header value: `Basic <KEY>` with
    /// the raw key (seed 000), or `Basic base64(KEY:)` as HTTP Basic has it.
    pub(crate) fn check_basic(&self, header: Option<&[u8]>) -> Result<Principal<'_>, KeyRejection> {
        let header = header.ok_or(KeyRejection::Missing)?;
        let header = std::str::from_utf8(header).map_err(|_| KeyRejection::Invalid)?;
        let (scheme, credentials) = header.trim().split_once(' ').ok_or(KeyRejection::Missing)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(KeyRejection::Missing);
        }
        let credentials = credentials.trim();
        if credentials.is_empty() {
            return Err(KeyRejection::Missing);
        }
        if let Some(p) = self.find(credentials.as_bytes()) {
            return Ok(p);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .map_err(|_| KeyRejection::Invalid)?;
        // `user:password` with the key as user and an empty password.
        let user = match decoded.iter().position(|&b| b == b':') {
            Some(colon) => &decoded[..colon],
            None => &decoded[..],
        };
        self.find(user).ok_or(KeyRejection::Invalid)
    }

    fn find(&self, key: &[u8]) -> Option<Principal<'_>> {
        let digest: [u8; 32] = Sha256::digest(key).into();
        // Compare every key in full so timing says nothing about which matched.
        let mut found = None;
        for k in &self.keys {
            let diff = k
                .digest
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 && found.is_none() {
                found = Some(Principal {
                    user_id: &k.name,
                    roles: &k.roles,
                });
            }
        }
        found
    }

    /// Issues a token for `principal` on `hub`, whose audience is `audience`
    /// (`http(s)://host/client/hubs/{hub}`).
    pub(crate) fn issue(&self, principal: &Principal<'_>, audience: String) -> String {
        let now = unix_now();
        let claims = Claims {
            aud: audience,
            sub: principal.user_id.to_owned(),
            iat: now,
            exp: now + self.ttl_secs,
            role: principal.roles.to_vec(),
        };
        // HS256 over serialisable claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// The claims of `token` if it is a valid, unexpired token of `hub`.
    pub(crate) fn verify(&self, token: &str, hub: Hub) -> Option<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        let path = data.claims.aud.split_once("://")?.1;
        let (_, tail) = path.split_once("/client/hubs/")?;
        (tail.trim_end_matches('/') == hub.name()).then_some(data.claims)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a connection's roles allow.
///
/// `webpubsub.joinLeaveGroup` and `webpubsub.sendToGroup` cover every group;
/// `webpubsub.joinLeaveGroup.<group>` and `webpubsub.sendToGroup.<group>`
/// one group each (Azure Web PubSub roles).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Permissions {
    join_all: bool,
    join: HashSet<String>,
    send_all: bool,
    send: HashSet<String>,
    event: bool,
}

impl Permissions {
    pub(crate) fn from_roles(roles: &[String]) -> Permissions {
        let mut p = Permissions::default();
        for role in roles {
            match role.as_str() {
                ROLE_JOIN_LEAVE => p.join_all = true,
                ROLE_SEND => p.send_all = true,
                ROLE_EVENT => p.event = true,
                other => {
                    if let Some(g) = scoped(other, ROLE_JOIN_LEAVE) {
                        p.join.insert(g.to_owned());
                    } else if let Some(g) = scoped(other, ROLE_SEND) {
                        p.send.insert(g.to_owned());
                    }
                }
            }
        }
        p
    }

    /// May join or leave `group`.
    pub(crate) fn can_join(&self, group: &str) -> bool {
        self.join_all || self.join.contains(group)
    }

    /// May send to `group`.
    pub(crate) fn can_send(&self, group: &str) -> bool {
        self.send_all || self.send.contains(group)
    }

    /// May send events.
    pub(crate) fn can_send_events(&self) -> bool {
        self.event
    }
}

fn scoped<'a>(role: &'a str, base: &str) -> Option<&'a str> {
    role.strip_prefix(base)?
        .strip_prefix('.')
        .filter(|g| !g.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKey;

    fn auth() -> Auth {
        let mut config = Config::default();
        config.api_keys.push(ApiKey {
            name: "writer".into(),
            key: Some("w-key".into()),
            key_sha256: None,
            roles: vec![ROLE_SEND.into()],
        });
        Auth::new(&config).unwrap()
    }

    #[test]
    fn basic_header_forms() {
        let auth = auth();
        let p = auth.check_basic(Some(b"Basic tickwire-demo-key")).unwrap();
        assert_eq!(p.user_id, "demo");
        let b64 = base64::engine::general_purpose::STANDARD.encode("w-key:");
        let p = auth
            .check_basic(Some(format!("basic {b64}").as_bytes()))
            .unwrap();
        assert_eq!(p.user_id, "writer");
        assert_eq!(auth.check_basic(None), Err(KeyRejection::Missing));
        assert_eq!(
            auth.check_basic(Some(b"Bearer x")),
            Err(KeyRejection::Missing)
        );
        assert_eq!(
            auth.check_basic(Some(b"Basic ")),
            Err(KeyRejection::Missing)
        );
        assert_eq!(
            auth.check_basic(Some(b"Basic nope")),
            Err(KeyRejection::Invalid)
        );
        assert_eq!(
            auth.check_basic(Some(b"Basic \xff")),
            Err(KeyRejection::Invalid)
        );
    }

    #[test]
    fn tokens_are_bound_to_their_hub() {
        let auth = auth();
        let p = auth.check_basic(Some(b"Basic tickwire-demo-key")).unwrap();
        let token = auth.issue(&p, "http://h:1/client/hubs/classic".into());
        let claims = auth.verify(&token, Hub::Classic).unwrap();
        assert_eq!(claims.sub, "demo");
        assert_eq!(claims.role, vec![ROLE_JOIN_LEAVE.to_owned()]);
        assert!(auth.verify(&token, Hub::Orderflow).is_none());
        assert!(auth.verify("garbage", Hub::Classic).is_none());
        // Another secret's token is refused.
        assert!(
            super::Auth::new(&Config::default())
                .unwrap()
                .verify(&token, Hub::Classic)
                .is_none()
        );
    }

    #[test]
    fn roles_map_to_permissions() {
        let roles = [
            "webpubsub.joinLeaveGroup.g1".to_owned(),
            "webpubsub.sendToGroup".to_owned(),
            "webpubsub.joinLeaveGroup.".to_owned(),
        ];
        let p = Permissions::from_roles(&roles);
        assert!(p.can_join("g1"));
        assert!(!p.can_join("g2"));
        assert!(p.can_send("anything"));
        assert!(!p.can_send_events());
        assert!(Permissions::from_roles(&[ROLE_EVENT.into()]).can_send_events());
    }
}
