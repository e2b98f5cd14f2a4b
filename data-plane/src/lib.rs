//! AI Proxy data-plane node: a stateless proxy serving model traffic from the last
//! configuration snapshot it received from the control plane.

pub mod auth;
pub mod balance;
pub mod cache;
pub mod config;
pub mod eligibility;
pub mod entry;
pub mod envconf;
pub mod error;
pub mod httpclient;
pub mod listen;
pub mod logship;
pub mod metrics;
pub mod netguard;
pub mod node;
pub mod observe;
pub mod otlp;
pub mod payload;
pub mod proxy;
pub mod record;
pub mod reqbody;
pub mod routes;
pub mod routing;
pub mod seal;
pub mod secret;
pub mod server;
pub mod sigv4;
pub mod snapshot;
pub mod spool;
pub mod sync;
pub mod tempcred;
pub mod upstream;
