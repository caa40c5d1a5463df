//! What every Cairn process shares about TLS: the files of one identity, the client
//! side of a TLS connection, and the identity a Cairn certificate names.
//!
//! A Cairn certificate names its holder with one URI subject alternative name,
//! `urn:cairn:<kind>:<name>`: `urn:cairn:member:2`, `urn:cairn:agent:gpu-7`,
//! `urn:cairn:user:alice`. The kind says what the holder may do (only members speak
//! Raft; an agent reports only about its own node), the name is who it is.

pub mod server;

use std::fmt;
use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity};

/// The three PEM files of one identity: the cluster's CA (whose certificates are
/// trusted), this process's certificate chain, and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A TLS file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct TlsFileError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError {
        path: path.display().to_string(),
        source,
    })
}

impl TlsFiles {
    /// The files `<dir>/ca.crt`, `<dir>/<name>.crt` and `<dir>/<name>.key`, as
    /// `cairn certs` writes them.
    pub fn in_dir(dir: &Path, name: &str) -> Self {
        Self {
            ca: dir.join("ca.crt"),
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// Only the CA: a client that verifies the server but presents no certificate (it
    /// authenticates with a bearer token instead).
    pub fn ca_only(ca: PathBuf) -> Self {
        Self {
            ca,
            cert: PathBuf::new(),
            key: PathBuf::new(),
        }
    }

    /// The client side of a connection, read from the files now (so a channel dialled
    /// after the files were replaced presents the new certificate).
    pub fn client_config(&self) -> Result<ClientTlsConfig, TlsFileError> {
        let ca = read(&self.ca)?;
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if self.cert.as_os_str().is_empty() {
            return Ok(config);
        }
        let cert = read(&self.cert)?;
        let key = read(&self.key)?;
        Ok(config.identity(TlsIdentity::from_pem(cert, key)))
    }
}

/// Who holds a Cairn certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// A member of the cluster, by node id.
    Member(u64),
    /// The agent of a GPU node, by node name.
    Agent(String),
    /// A person or a program using the API, by name.
    User(String),
}

const URN_PREFIX: &str = "urn:cairn:";

impl Identity {
    /// The URI subject alternative name that carries it.
    pub fn urn(&self) -> String {
        match self {
            Identity::Member(id) => format!("{URN_PREFIX}member:{id}"),
            Identity::Agent(node) => format!("{URN_PREFIX}agent:{node}"),
            Identity::User(name) => format!("{URN_PREFIX}user:{name}"),
        }
    }

    /// The identity a URN names; `None` for anything else (a malformed one included).
    pub fn from_urn(urn: &str) -> Option<Self> {
        let rest = urn.strip_prefix(URN_PREFIX)?;
        let (kind, name) = rest.split_once(':')?;
        if name.is_empty() || name.len() > 253 || !name.bytes().all(name_byte) {
            return None;
        }
        match kind {
            "member" => match name.parse::<u64>() {
                Ok(id) if id > 0 => Some(Identity::Member(id)),
                _ => None,
            },
            "agent" => Some(Identity::Agent(name.to_string())),
            "user" => Some(Identity::User(name.to_string())),
            _ => None,
        }
    }
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'@')
}

/// As recorded as the actor of an event: `member/2`, `agent/gpu-7`, `user/alice`.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Member(id) => write!(f, "member/{id}"),
            Identity::Agent(node) => write!(f, "agent/{node}"),
            Identity::User(name) => write!(f, "user/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_survive_their_urn_and_malformed_ones_are_none() {
        for id in [
            Identity::Member(3),
            Identity::Agent("gpu-7.rack2".into()),
            Identity::User("alice@example".into()),
        ] {
            assert_eq!(Identity::from_urn(&id.urn()), Some(id.clone()), "{id}");
        }
        for bad in [
            "urn:cairn:member:0",
            "urn:cairn:member:two",
            "urn:cairn:admin:alice",
            "urn:cairn:user:",
            "urn:cairn:user:a b",
            "urn:other:user:alice",
            "urn:cairn:agent",
        ] {
            assert_eq!(Identity::from_urn(bad), None, "{bad}");
        }
        assert_eq!(Identity::Agent("n1".into()).to_string(), "agent/n1");
    }
}
