//! The server side of mutual TLS 1.3: the member's certificate and the cluster CA,
//! reloaded when their files change (rotation without a restart), and an accept loop
//! whose handshakes run side by side under a deadline, so a client that connects and
//! never speaks holds nothing but its own socket for that long; and the identity a
//! peer's certificate names.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::{Request, Status};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Identity, TlsFiles};

/// The protocol of gRPC servers.
pub const H2: &[u8] = b"h2";
/// The protocol of HTTP/1.1 servers.
pub const HTTP1: &[u8] = b"http/1.1";

/// How long a client has to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The files are looked at (their modification times) at most this often.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// A member's TLS: the current configuration and where it came from.
pub struct ServerTls {
    files: TlsFiles,
    alpn: Vec<&'static [u8]>,
    current: Mutex<Current>,
}

struct Current {
    config: Arc<ServerConfig>,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [&files.ca, &files.cert, &files.key]
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading the certificates in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate", path.display());
    Ok(certs)
}

/// A server configuration from the files: TLS 1.3 only, the `alpn` protocols, a client
/// certificate of
/// the CA verified when one is presented. A client without one is let through the
/// handshake to authenticate with a bearer token instead; every service refuses a
/// request that brings neither.
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(&files.ca)? {
        roots
            .add(ca)
            .with_context(|| format!("{}: not a CA certificate", files.ca.display()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("the client certificate verifier")?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&files.cert)?, key)
        .with_context(|| {
            format!(
                "{} and {} are not a certificate and its key",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

impl ServerTls {
    /// Load the files now (an error here stops the start), for a server speaking the
    /// `alpn` protocols (`h2` for gRPC, `http/1.1` for the MLflow facade).
    pub fn load(files: TlsFiles, alpn: &[&'static [u8]]) -> anyhow::Result<Arc<Self>> {
        let config = Arc::new(server_config(&files, alpn)?);
        let current = Current {
            config,
            stamps: stamps(&files),
            checked: Instant::now(),
        };
        Ok(Arc::new(Self {
            files,
            alpn: alpn.to_vec(),
            current: Mutex::new(current),
        }))
    }

    /// The configuration for the next handshake: reloaded first if a file changed. A
    /// change that does not load (a key written before its certificate) keeps the last
    /// good configuration and is tried again at the next check.
    pub fn config(&self) -> Arc<ServerConfig> {
        let mut c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if c.checked.elapsed() >= RELOAD_CHECK {
            c.checked = Instant::now();
            let now = stamps(&self.files);
            if now != c.stamps {
                match server_config(&self.files, &self.alpn) {
                    Ok(config) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                        c.config = Arc::new(config);
                        c.stamps = now;
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "the changed TLS files do not load; keeping the previous ones")
                    }
                }
            }
        }
        c.config.clone()
    }
}

/// TLS handshakes this process refused or gave up on (a wrong CA, an expired
/// certificate, plaintext, a peer that never finished): its metrics report them.
pub static HANDSHAKE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// The TLS connections accepted on `listener`: each handshake runs in its own task
/// under [`HANDSHAKE_TIMEOUT`]; failed ones are logged, counted and dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServerTls>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.config());
            if tx.is_closed() {
                return;
            }
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => {
                        HANDSHAKE_FAILURES.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "TLS handshake timed out")
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The identity in a DER certificate, or why it names none.
pub fn identity_in(der: &[u8]) -> Result<Identity, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("an unreadable certificate: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("an unreadable subject alternative name: {e}"))?
        .ok_or("a certificate without subject alternative names")?;
    let mut found = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) if u.starts_with("urn:cairn:") => Some(*u),
        _ => None,
    });
    match (found.next(), found.next()) {
        (Some(urn), None) => {
            Identity::from_urn(urn).ok_or_else(|| format!("{urn:?} is not a Cairn identity"))
        }
        (None, _) => Err("a certificate that names no urn:cairn: identity".into()),
        (Some(_), Some(_)) => Err("a certificate that names more than one identity".into()),
    }
}

/// The role a user's certificate grants: its subject's organization `cairn:<role>`
/// (none when it names none, or more than one).
pub fn role_in(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut roles = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok()?.strip_prefix(ROLE_PREFIX));
    match (roles.next(), roles.next()) {
        (Some(r), None) => Some(r.to_string()),
        _ => None,
    }
}

/// The prefix of a role in a certificate's subject organization.
pub const ROLE_PREFIX: &str = "cairn:";

/// The identity of the peer of a TLS connection a request came on.
pub fn identity_of<T>(req: &Request<T>) -> Result<Identity, Status> {
    identity_and_role_of(req).map(|(id, _)| id)
}

/// The identity of the peer, and the role its certificate grants.
pub fn identity_and_role_of<T>(req: &Request<T>) -> Result<(Identity, Option<String>), Status> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
    named_by(leaf).map_err(Status::unauthenticated)
}

/// The most certificates [`named_by`] remembers; it forgets them all when full.
const NAMED_CERTIFICATES: usize = 4096;

/// What a certificate names (identity and role), parsed once per certificate: every
/// request on a connection presents the same one. A pure function of the bytes, so
/// remembering it is always right; the handshake has already judged its validity.
fn named_by(der: &[u8]) -> Result<(Identity, Option<String>), String> {
    type Named = std::collections::HashMap<Vec<u8>, Result<(Identity, Option<String>), String>>;
    static NAMED: std::sync::LazyLock<Mutex<Named>> = std::sync::LazyLock::new(Default::default);
    if let Some(known) = NAMED.lock().unwrap_or_else(|p| p.into_inner()).get(der) {
        return known.clone();
    }
    let named = identity_in(der).map(|id| (id, role_in(der)));
    let mut all = NAMED.lock().unwrap_or_else(|p| p.into_inner());
    if all.len() >= NAMED_CERTIFICATES {
        all.clear();
    }
    all.insert(der.to_vec(), named.clone());
    named
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::{identity_in, named_by, role_in, ROLE_PREFIX};
    use crate::tls::Identity;

    fn certificate(urn: Option<&str>, role: Option<&str>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        if let Some(role) = role {
            params
                .distinguished_name
                .push(DnType::OrganizationName, format!("{ROLE_PREFIX}{role}"));
        }
        if let Some(urn) = urn {
            params.subject_alt_names = vec![SanType::URI(urn.try_into().expect("uri"))];
        }
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("sign").der().to_vec()
    }

    /// Each certificate is answered with what it names, asked once or again, in any
    /// order, and a certificate that names nobody stays refused.
    #[test]
    fn a_remembered_certificate_names_what_it_names() {
        let alice = certificate(Some("urn:cairn:user:alice"), Some("viewer"));
        let bob = certificate(Some("urn:cairn:user:bob"), Some("admin"));
        let agent = certificate(Some("urn:cairn:agent:n1"), None);
        let nobody = certificate(None, Some("admin"));
        for _ in 0..3 {
            for (der, expected) in [
                (
                    &alice,
                    (Identity::User("alice".into()), Some("viewer".into())),
                ),
                (&bob, (Identity::User("bob".into()), Some("admin".into()))),
                (&agent, (Identity::Agent("n1".into()), None)),
            ] {
                assert_eq!(named_by(der), Ok(expected.clone()));
                assert_eq!(identity_in(der).map(|id| (id, role_in(der))), Ok(expected));
            }
            assert!(named_by(&nobody).is_err());
        }
    }
}
