//! End-to-end: the control plane and data-plane nodes as separate processes, fake providers on
//! loopback, real HTTP (and the official Python SDKs) on the client side.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod failover;
mod features;
mod ha;
mod hostile;
mod hygiene;
mod logging;
mod proxy;
mod sdk;
mod standalone;
mod streaming;
mod sync;
mod tls;
mod traces;
mod translation;
mod web_admin;
