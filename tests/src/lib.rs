//! End-to-end test support: fake providers speaking each real wire format (and failing on
//! demand), the control plane and data-plane nodes as separate processes, and the official
//! Python SDKs in a virtualenv.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::result_large_err)]

pub mod browser;
pub mod fake;
pub mod python;
pub mod relay;
pub mod sse;
pub mod stack;
