//! Integration tests of the control plane's admin API: a real server on port 0 with a fresh
//! database (SQLite, or Postgres when AIPROXY_TEST_POSTGRES_URL is set), driven over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod admin_grpc;
mod bootstrap;
mod errors;
mod isolation;
mod logs;
mod providers;
mod secrets;
mod sessions;
mod snapshot;
mod tenancy;
mod web_admin;
