//! `cairn token`: bearer tokens for users who authenticate without a certificate (an
//! admin's commands). The secret is made here and shown once; the cluster keeps only
//! its SHA-256.

use std::collections::BTreeMap;

use anyhow::Context;
use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;
use ring::rand::SecureRandom;
use serde::Serialize;

use crate::ctx::{Ctx, ReadArgs};
use crate::output::{emit, table};

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Make a token for a user with a role; prints its secret, once.
    Create {
        /// The token's name (never reused, even after a revocation).
        name: String,
        /// Who it authenticates: recorded as `user/<user>`.
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "viewer", value_parser = ["viewer", "operator", "admin"])]
        role: String,
        /// How long it authenticates (default: until revoked), e.g. `30d`.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// Every token: its user, role, expiry, and who created and revoked it.
    List {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Revoke a token: from that event on it authenticates nobody, on every member.
    Revoke { name: String },
}

#[derive(Serialize, Default)]
struct TokenView {
    name: String,
    user: String,
    role: String,
    expires_ms: Option<i64>,
    created_by: String,
    revoked_by: Option<String>,
}

fn secret() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("no randomness from the system"))?;
    Ok(format!(
        "cairn_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

pub async fn run(ctx: &mut Ctx, c: TokenCmd) -> anyhow::Result<()> {
    match c {
        TokenCmd::Create {
            name,
            user,
            role,
            ttl,
        } => {
            let secret = secret()?;
            let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
            let expires_ms = match ttl {
                Some(t) => Some(
                    (std::time::SystemTime::now() + t)
                        .duration_since(std::time::UNIX_EPOCH)
                        .context("the clock")?
                        .as_millis() as i64,
                ),
                None => None,
            };
            ctx.submit(
                Body::CreateToken(pb::CreateToken {
                    name: name.clone(),
                    user,
                    role,
                    digest: digest.as_ref().to_vec(),
                    expires_ms,
                }),
                None,
            )
            .await?;
            println!("{secret}");
            eprintln!("token/{name}: keep this secret; it is not shown again. Use it with --token (or CAIRN_TOKEN) and --ca.");
            Ok(())
        }
        TokenCmd::List { read } => {
            let events = ctx.events_of("token", "", &read).await?;
            let mut tokens: BTreeMap<String, TokenView> = BTreeMap::new();
            for e in events {
                let Some(r) = &e.entity else { continue };
                match &e.payload {
                    Some(pb::event::Payload::TokenCreated(t)) => {
                        tokens.insert(
                            r.name.clone(),
                            TokenView {
                                name: r.name.clone(),
                                user: t.user.clone(),
                                role: t.role.clone(),
                                expires_ms: t.expires_ms,
                                created_by: e.actor.clone(),
                                revoked_by: None,
                            },
                        );
                    }
                    Some(pb::event::Payload::TokenRevoked(_)) => {
                        if let Some(t) = tokens.get_mut(&r.name) {
                            t.revoked_by = Some(e.actor.clone());
                        }
                    }
                    _ => {}
                }
            }
            let tokens: Vec<TokenView> = tokens.into_values().collect();
            emit(ctx.format, &tokens, || {
                let mut t = table(&[
                    "NAME",
                    "USER",
                    "ROLE",
                    "EXPIRES",
                    "CREATED BY",
                    "REVOKED BY",
                ]);
                for v in &tokens {
                    t.add_row(vec![
                        v.name.clone(),
                        v.user.clone(),
                        v.role.clone(),
                        v.expires_ms.map_or("never".into(), crate::output::time),
                        v.created_by.clone(),
                        v.revoked_by.clone().unwrap_or_else(|| "-".into()),
                    ]);
                }
                t
            })
        }
        TokenCmd::Revoke { name } => {
            ctx.submit_and_print(Body::RevokeToken(pb::RevokeToken { name }), None)
                .await
        }
    }
}
