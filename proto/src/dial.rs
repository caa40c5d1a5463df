//! The one gRPC channel builder: the CLI, agents, members (Raft, forwarding, probes),
//! tests and the chaos harness all dial through it, so connection settings (and, with
//! TLS, the client identity) are decided in one place.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::tls::TlsFiles;

/// An address that is not a valid endpoint, or TLS files that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("bad endpoint {addr:?}: {source}")]
pub struct BadEndpoint {
    pub addr: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// How to reach another process: lazily connected, `TCP_NODELAY` (small HTTP/2 frames
/// must not wait for delayed ACKs), over mutual TLS when given the files of an identity.
#[derive(Debug, Clone)]
pub struct Dial {
    connect_timeout: Duration,
    timeout: Option<Duration>,
    keep_alive: Option<Duration>,
    tls: Option<Arc<TlsFiles>>,
}

impl Default for Dial {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            timeout: None,
            keep_alive: None,
            tls: None,
        }
    }
}

impl Dial {
    pub fn new() -> Self {
        Self::default()
    }

    /// How long establishing the connection may take.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long each call may take (none by default: streams stay open).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// HTTP/2 pings every `d` (and as long to wait for the answer), so a peer that went
    /// away is noticed on an idle connection.
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = Some(d);
        self
    }

    /// Mutual TLS as the identity in `files` (none: plaintext). The files are read
    /// whenever a channel is made.
    pub fn tls(mut self, files: Option<Arc<TlsFiles>>) -> Self {
        self.tls = files;
        self
    }

    /// A lazily connected channel to `addr`: `host:port`, or a URI.
    pub fn channel(&self, addr: &str) -> Result<Channel, BadEndpoint> {
        let host_port = addr.split_once("://").map_or(addr, |(_, rest)| rest);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let bad = |source: Box<dyn std::error::Error + Send + Sync>| BadEndpoint {
            addr: addr.to_string(),
            source,
        };
        let mut e = Endpoint::from_shared(format!("{scheme}://{host_port}"))
            .map_err(|e| bad(e.into()))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if let Some(files) = &self.tls {
            let config = files.client_config().map_err(|e| bad(e.into()))?;
            e = e.tls_config(config).map_err(|e| bad(e.into()))?;
        }
        if let Some(t) = self.timeout {
            e = e.timeout(t);
        }
        if let Some(k) = self.keep_alive {
            e = e.http2_keep_alive_interval(k).keep_alive_timeout(k);
        }
        Ok(e.connect_lazy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_with_and_without_a_scheme_dial_and_garbage_is_refused() {
        assert!(Dial::new().channel("127.0.0.1:7420").is_ok());
        assert!(Dial::new().channel("http://127.0.0.1:7420").is_ok());
        let err = Dial::new().channel("not a host:port").unwrap_err();
        assert!(err.to_string().contains("not a host:port"), "{err}");
    }
}
