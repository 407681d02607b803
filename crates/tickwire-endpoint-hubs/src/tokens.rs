//! Access tokens and the roles they carry.
//!
//! `/negotiate` trades an API key for one access token per hub. The tokens
//! are HS256 JWTs of the shape Azure Web PubSub issues (`aud` = the hub's
//! `http(s)://host/client/hubs/{hub}` URL, `sub` = the user id, `role` = the
//! roles, `iat`, `exp`), so its client SDKs accept them. A token never holds
//! the API key.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use tickwire_config::PublicUrl;
use tickwire_model::Hub;

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
    /// Not before, seconds since the Unix epoch (checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// The roles of the connection.
    #[serde(default)]
    pub role: Vec<String>,
}

/// Issues and checks access tokens.
pub struct Tokens {
    /// The audience's `scheme://authority` when the gateway's public URL is
    /// configured: a token minted for another host is refused.
    origin: Option<String>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("ttl_secs", &self.ttl_secs)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens signed with `secret` (32 random bytes when none is given:
    /// tokens then do not survive a restart) that live `ttl_secs`; with
    /// `public`, the gateway's public URL, only tokens whose audience is one
    /// of its hubs are valid.
    pub fn new(secret: Option<&str>, ttl_secs: u64, public: Option<&PublicUrl>) -> Tokens {
        let secret = match secret {
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
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        let origin = public.map(|url| {
            let scheme = if url.tls { "https" } else { "http" };
            format!("{scheme}://{}", url.authority.to_ascii_lowercase())
        });
        Tokens {
            origin,
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            ttl_secs,
        }
    }

    /// Issues a token for `user_id` with `roles`, whose audience is
    /// `audience` (`http(s)://host/client/hubs/{hub}`).
    pub fn issue(&self, user_id: &str, roles: &[String], audience: String) -> String {
        let now = unix_now();
        let claims = Claims {
            aud: audience,
            sub: user_id.to_owned(),
            iat: now,
            nbf: Some(now),
            exp: now + self.ttl_secs,
            role: roles.to_vec(),
        };
        // HS256 over serialisable claims cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// The claims of `token` if it is a valid, unexpired token of `hub`.
    pub fn verify(&self, token: &str, hub: Hub) -> Option<Claims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        let (origin, tail) = data.claims.aud.split_once("/client/hubs/")?;
        if let Some(own) = &self.origin {
            if !origin.eq_ignore_ascii_case(own) {
                return None;
            }
        }
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
pub struct Permissions {
    join_all: bool,
    send_all: bool,
    event: bool,
    /// The groups named one by one; boxed, and absent for the usual keys
    /// that name none (every session keeps its permissions).
    scoped: Option<Box<Scoped>>,
}

/// Groups a connection may join or send to by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Scoped {
    join: HashSet<String>,
    send: HashSet<String>,
}

impl Permissions {
    /// The permissions `roles` grant (`webpubsub.joinLeaveGroup`,
    /// `webpubsub.sendToGroup`, their `.{group}` forms, and the event role);
    /// unknown roles grant nothing.
    pub fn from_roles(roles: &[String]) -> Permissions {
        let mut p = Permissions::default();
        for role in roles {
            match role.as_str() {
                ROLE_JOIN_LEAVE => p.join_all = true,
                ROLE_SEND => p.send_all = true,
                ROLE_EVENT => p.event = true,
                other => {
                    if let Some(g) = scoped(other, ROLE_JOIN_LEAVE) {
                        p.scoped.get_or_insert_default().join.insert(g.to_owned());
                    } else if let Some(g) = scoped(other, ROLE_SEND) {
                        p.scoped.get_or_insert_default().send.insert(g.to_owned());
                    }
                }
            }
        }
        p
    }

    /// May join or leave `group`.
    pub fn can_join(&self, group: &str) -> bool {
        self.join_all || self.scoped.as_ref().is_some_and(|s| s.join.contains(group))
    }

    /// May send to `group`.
    pub fn can_send(&self, group: &str) -> bool {
        self.send_all || self.scoped.as_ref().is_some_and(|s| s.send.contains(group))
    }

    /// May send events.
    pub fn can_send_events(&self) -> bool {
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

    #[test]
    fn tokens_are_bound_to_their_hub() {
        let auth = Tokens::new(None, 600, None);
        let roles = [ROLE_JOIN_LEAVE.to_owned()];
        let token = auth.issue("demo", &roles, "http://h:1/client/hubs/classic".into());
        let claims = auth.verify(&token, Hub::Classic).unwrap();
        assert_eq!(claims.sub, "demo");
        assert_eq!(claims.role, vec![ROLE_JOIN_LEAVE.to_owned()]);
        assert!(auth.verify(&token, Hub::Orderflow).is_none());
        assert!(auth.verify("garbage", Hub::Classic).is_none());
        // Another secret's token is refused.
        assert!(
            Tokens::new(None, 600, None)
                .verify(&token, Hub::Classic)
                .is_none()
        );
        // A configured secret survives a restart; another one does not.
        let a = Tokens::new(Some("s3cret"), 600, None);
        let token = a.issue("demo", &roles, "https://h/client/hubs/classic/".into());
        assert!(
            Tokens::new(Some("s3cret"), 600, None)
                .verify(&token, Hub::Classic)
                .is_some()
        );
        assert!(
            Tokens::new(Some("other"), 600, None)
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

    #[test]
    fn with_a_public_url_only_its_own_hubs_are_audiences() {
        let public = PublicUrl::parse("https://gex.example.com").unwrap();
        let tokens = Tokens::new(Some("s3cret"), 600, Some(&public));
        let roles = [ROLE_JOIN_LEAVE.to_owned()];
        let own = tokens.issue(
            "u",
            &roles,
            "https://GEX.example.com/client/hubs/classic".into(),
        );
        assert!(tokens.verify(&own, Hub::Classic).is_some());
        for forged in [
            "https://evil.example/client/hubs/classic",
            "http://gex.example.com/client/hubs/classic",
            "https://gex.example.com.evil/client/hubs/classic",
        ] {
            let token = tokens.issue("u", &roles, forged.into());
            assert!(tokens.verify(&token, Hub::Classic).is_none(), "{forged}");
        }
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let tokens = Tokens::new(Some("s3cret"), 600, None);
        let now = unix_now();
        let claims = Claims {
            aud: "http://h/client/hubs/classic".into(),
            sub: "u".into(),
            iat: now,
            nbf: Some(now + 3600),
            exp: now + 7200,
            role: Vec::new(),
        };
        let early = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &tokens.encoding)
            .unwrap();
        assert!(tokens.verify(&early, Hub::Classic).is_none());
        let claims = Claims {
            nbf: Some(now),
            ..claims
        };
        let ready = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &tokens.encoding)
            .unwrap();
        assert!(tokens.verify(&ready, Hub::Classic).is_some());
    }
}
