//! Route handlers that are not the generic proxied call (which lives in `proxy`).

pub mod credentials;
pub mod models;
pub mod realtime;
