//! The one outbound HTTP client: pooled keep-alive connections, HTTP/2 where the upstream offers
//! it (ALPN), TCP_NODELAY, rustls with Mozilla's roots, and every destination checked by the
//! SSRF policy after DNS resolution.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::netguard::{GuardedResolver, NetPolicy};

pub type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;
pub type HttpClient = Client<Connector, Full<Bytes>>;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 256,
        }
    }
}

pub fn build(policy: Arc<NetPolicy>, opts: &ClientOptions) -> HttpClient {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(policy));
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(opts.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let tls = tls_config();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(opts.pool_idle_timeout)
        .pool_max_idle_per_host(opts.pool_max_idle_per_host)
        .build(https)
}

fn webpki_roots_store() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// rustls with the ring provider and Mozilla's roots.
pub fn tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b
            .with_root_certificates(webpki_roots_store())
            .with_no_client_auth(),
        // ring implements every safe default protocol version; this cannot happen.
        Err(e) => panic!("rustls rejected its default protocol versions: {e}"),
    }
}

/// The same TLS configuration restricted to HTTP/1.1 (WebSocket handshakes).
pub fn tls_config_http1() -> rustls::ClientConfig {
    let mut c = tls_config();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c
}
