//! AI Proxy control plane: owns all state (SQL database), serves the admin REST API, the web
//! admin and gRPC, encrypts provider secrets at rest, and pushes versioned configuration
//! snapshots to data-plane nodes.

pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod entry;
pub mod error;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod run;
pub mod service;
pub mod standalone;
pub mod state;
pub mod testing;
pub mod ui;
