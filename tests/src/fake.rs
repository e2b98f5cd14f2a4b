//! Fake upstream providers. Each speaks its provider's real wire format (paths, auth, status
//! codes, error bodies, stream framing) as described in provider-wire-formats.md, records what
//! it received, and plays scripted replies: answers, errors, hangs, cut streams.

pub mod openai;
pub mod otlp;
pub mod providers;
pub mod realtime;

use std::net::SocketAddr;

/// Binds a loopback listener on port 0.
pub async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: http::HeaderMap,
    pub body: serde_json::Value,
    pub raw: bytes::Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
