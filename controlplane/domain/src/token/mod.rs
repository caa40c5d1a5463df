//! API tokens: a bearer credential for a user with a role, created and revoked by an
//! admin. The log keeps the SHA-256 of the secret, never the secret (the CLI makes it
//! and shows it once). A revocation is an event, so it takes effect on every member at
//! the same point of the log; an expiry is compared with the leader's timestamp.

use std::collections::BTreeMap;

use crate::emit::Emit;
use crate::entity::{At, EntityState};
use crate::rejection::Rejection;
use crate::role::Role;
use crate::validate;

pub const KIND: &str = "token";
/// Bytes of a digest (SHA-256).
pub const DIGEST_LEN: usize = 32;

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Who the token authenticates (`user/<user>`).
    pub user: String,
    pub role: Role,
    pub digest: Vec<u8>,
    /// Leader time after which it no longer authenticates (none: never).
    pub expires_ms: Option<i64>,
    pub revoked: bool,
}

/// Tokens by name.
pub type Tokens = BTreeMap<String, Token>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCommand {
    Create {
        name: String,
        user: String,
        role: Role,
        digest: Vec<u8>,
        expires_ms: Option<i64>,
    },
    Revoke {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEvent {
    Created {
        user: String,
        role: Role,
        digest: Vec<u8>,
        expires_ms: Option<i64>,
    },
    Revoked,
}

impl TokenCommand {
    pub fn target(&self) -> &str {
        match self {
            TokenCommand::Create { name, .. } | TokenCommand::Revoke { name } => name,
        }
    }

    pub fn problems(&self, p: &mut Vec<String>) {
        match self {
            TokenCommand::Create {
                name,
                user,
                digest,
                expires_ms,
                ..
            } => {
                validate::name_problems("create_token.name", name, p);
                validate::name_problems("create_token.user", user, p);
                if digest.len() != DIGEST_LEN {
                    p.push(format!(
                        "create_token.digest: {} bytes, a SHA-256 digest has {DIGEST_LEN}",
                        digest.len()
                    ));
                }
                if expires_ms.is_some_and(|e| e <= 0) {
                    p.push("create_token.expires_ms: must be a time after 1970".into());
                }
            }
            TokenCommand::Revoke { name } => validate::name_problems("revoke_token.name", name, p),
        }
    }
}

impl TokenEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            TokenEvent::Created { .. } => "token_created",
            TokenEvent::Revoked => "token_revoked",
        }
    }
}

pub fn decide(
    tokens: &Tokens,
    cmd: &TokenCommand,
    out: &mut impl Emit<TokenEvent>,
) -> Result<(), Rejection> {
    match cmd {
        TokenCommand::Create {
            name,
            user,
            role,
            digest,
            expires_ms,
        } => {
            if tokens.contains_key(name) {
                // Names are never reused, so an old event about a name is never
                // mistaken for the new token's.
                return Err(Rejection::AlreadyExists(format!("{KIND}/{name}")));
            }
            if tokens.values().any(|t| t.digest == *digest) {
                return Err(Rejection::AlreadyExists(
                    "a token with the same secret exists: make a new secret".into(),
                ));
            }
            out.emit(
                name,
                TokenEvent::Created {
                    user: user.clone(),
                    role: *role,
                    digest: digest.clone(),
                    expires_ms: *expires_ms,
                },
            );
        }
        TokenCommand::Revoke { name } => {
            let t = tokens
                .get(name)
                .ok_or_else(|| Rejection::NotFound(format!("{KIND}/{name}")))?;
            if !t.revoked {
                out.emit(name, TokenEvent::Revoked);
            }
        }
    }
    Ok(())
}

pub fn evolve(
    tokens: &mut Tokens,
    e: &mut EntityState,
    name: &str,
    event: &TokenEvent,
    at: At<'_>,
) {
    match event {
        TokenEvent::Created {
            user,
            role,
            digest,
            expires_ms,
        } => {
            e.created_ms = at.timestamp_ms;
            tokens.insert(
                name.to_string(),
                Token {
                    user: user.clone(),
                    role: *role,
                    digest: digest.clone(),
                    expires_ms: *expires_ms,
                    revoked: false,
                },
            );
        }
        TokenEvent::Revoked => {
            if let Some(t) = tokens.get_mut(name) {
                t.revoked = true;
            }
        }
    }
}

/// The token a secret's `digest` names, if it authenticates at `now_ms`; else why not.
pub fn valid<'a>(
    tokens: &'a Tokens,
    digest: &[u8],
    now_ms: i64,
) -> Result<(&'a str, &'a Token), String> {
    let (name, t) = tokens
        .iter()
        .find(|(_, t)| t.digest == digest)
        .ok_or("an unknown token")?;
    if t.revoked {
        return Err(format!("{KIND}/{name} is revoked"));
    }
    if t.expires_ms.is_some_and(|e| now_ms >= e) {
        return Err(format!("{KIND}/{name} has expired"));
    }
    Ok((name, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CommandBody, State};
    use crate::testkit::{apply, cmd};
    use crate::Command;

    fn create(name: &str, digest: u8, expires_ms: Option<i64>) -> Command {
        cmd(CommandBody::Token(TokenCommand::Create {
            name: name.into(),
            user: "alice".into(),
            role: Role::Viewer,
            digest: vec![digest; DIGEST_LEN],
            expires_ms,
        }))
    }

    #[test]
    fn a_token_authenticates_until_it_expires_or_is_revoked() {
        let mut s = State::default();
        apply(&mut s, &create("ci", 1, Some(10_000))).expect("created");
        let (name, t) = valid(s.tokens(), &[1; DIGEST_LEN], 9_999).expect("valid");
        assert_eq!(
            (name, t.user.as_str(), t.role),
            ("ci", "alice", Role::Viewer)
        );
        assert!(valid(s.tokens(), &[1; DIGEST_LEN], 10_000)
            .unwrap_err()
            .contains("expired"));
        assert!(valid(s.tokens(), &[2; DIGEST_LEN], 0).is_err());
        // Names and secrets are never reused.
        assert!(matches!(
            apply(&mut s, &create("ci", 3, None)),
            Err(Rejection::AlreadyExists(_))
        ));
        assert!(matches!(
            apply(&mut s, &create("other", 1, None)),
            Err(Rejection::AlreadyExists(_))
        ));
        let revoke = cmd(CommandBody::Token(TokenCommand::Revoke {
            name: "ci".into(),
        }));
        assert_eq!(apply(&mut s, &revoke).expect("revoked").len(), 1);
        assert!(valid(s.tokens(), &[1; DIGEST_LEN], 0)
            .unwrap_err()
            .contains("revoked"));
        assert!(apply(&mut s, &revoke).expect("again").is_empty());
        let short = cmd(CommandBody::Token(TokenCommand::Create {
            name: "x".into(),
            user: "alice".into(),
            role: Role::Admin,
            digest: vec![0; 3],
            expires_ms: None,
        }));
        assert!(matches!(
            apply(&mut s, &short),
            Err(Rejection::InvalidArgument(_))
        ));
    }
}
