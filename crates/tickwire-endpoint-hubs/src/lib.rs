//! The Azure Web PubSub hubs of a tickwire gateway (seed 000): `/negotiate`,
//! the access tokens, the WebSocket routes of the five GEX hubs and the four
//! client subprotocols (`json`/`protobuf`, plain or `reliable`) over the
//! codec of [`tickwire_pubsub`].
//!
//! - [`routes`]: `GET /negotiate` and the handshake of `/ws/{hub}` and
//!   `/client/hubs/{hub}`;
//! - [`tokens`]: the HS256 access tokens and the roles they carry;
//! - the sessions: what a connection's messages mean, its groups, and the
//!   sequence ids and unacked buffer of the reliable subprotocols, plugged
//!   into the core's `Sequencer` hook;
//! - [`GroupShares`]: each key's share of the group table;
//! - [`GexFeed`]: the hubs' part of the fan-out.
//!
//! The endpoint depends on the core, the shared services and its codec,
//! never on another endpoint.

mod groups;
pub mod routes;
mod session;
pub mod tokens;

pub use groups::GroupShares;
pub use routes::{HubRoutes, NEGOTIATE_PATH, Placement, hub_of, negotiate, websocket};
pub use session::{DEFAULT_MAX_PARKED_PER_KEY, GexFeed, Hubs, ParkedSessions, RecoveryCounts};
pub use tokens::{Claims, ROLE_EVENT, ROLE_JOIN_LEAVE, ROLE_SEND, Tokens};
