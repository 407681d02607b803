//! The load generator of tickwire: many subscriber connections, stamped
//! updates published at a steady rate, and what arrived, how late.
//!
//! A run opens `N` WebSocket connections at a controlled rate over one of
//! the server's protocols (the Azure Web PubSub subprotocols in protobuf or
//! JSON, `/ws`, `/stream`, the market-data proxy at `/proxy`, the FastWS
//! bars at `/api/v1/ws`), each subscribed to `K` of `T` synthetic topics
//! of its own (`LT0001/USD`, `blue_LT0001_state_gex_zero`, …). It then
//! publishes updates to every topic through `POST /api/v1/publish`, each
//! stamped with its topic, a per-topic sequence number and the send time
//! ([`stamp`]), and measures at the subscribers: publish-to-receive latency
//! (HDR histogram), delivered messages per second, drops (gaps in the
//! sequence numbers, and what never came), duplicates, disconnects, connect
//! times, and — given the server's pid — its resident memory per connection.
//!
//! The server may be a cluster: `--url` then names its nodes
//! (comma-separated), connection `i` goes to node `i mod N` whichever
//! worker opens it, pubsub connections negotiate at their node and connect
//! to the node its `/negotiate` names (in a cluster the least-loaded one),
//! updates are published to one node (`--publish-url`, the first by
//! default) and reach the others over the cluster's bus, and
//! `--server-pid` takes the nodes' pids, whose figures the report sums and
//! gives one by one ([`Report::servers`]), with the connections each
//! address ended up with ([`Report::connected_by_node`]).
//!
//! Connections are bound to several loopback source addresses so that
//! ephemeral ports do not run out, the open-file soft limit is raised to the
//! hard one, and the connections can be spread over worker processes
//! ([`worker`]). The receive path parses no JSON or protobuf: it scans each
//! frame for the stamp.
//!
//! What it does not do: TLS, or measure anything but its own updates (the
//! server's other traffic on the same connections is counted and ignored).
//!
//! ```no_run
//! use clap::Parser as _;
//! use tickwire_loadtest::{Args, Settings};
//!
//! # async fn demo() -> Result<(), tickwire_loadtest::Error> {
//! let args = Args::parse_from([
//!     "tickwire-loadtest", "--protocol", "ws", "--connections", "1000",
//!     "--topics", "100", "--rate", "10", "--duration", "10", "--publish-key", "lt-key",
//! ]);
//! let report = tickwire_loadtest::run(Settings::from_args(&args)?).await?;
//! println!("p99 {} µs, {} delivered/s", report.latency_us.p99, report.delivered_per_sec);
//! # Ok(())
//! # }
//! ```

pub mod cli;
pub mod client;
mod coordinator;
mod error;
pub mod net;
pub mod publisher;
pub mod report;
pub mod seq;
pub mod stamp;
pub mod system;
pub mod thresholds;
pub mod topics;
pub mod worker;

pub use cli::{Args, Protocol, Settings};
pub use coordinator::run;
pub use error::Error;
pub use report::Report;
