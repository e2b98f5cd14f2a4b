//! gRPC wire types and services shared by the control plane and data-plane nodes.

#![allow(clippy::all, clippy::unwrap_used, clippy::expect_used)]

pub mod codec;

pub mod v1 {
    tonic::include_proto!("aiproxy.v1");
}
