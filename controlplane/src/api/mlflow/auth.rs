//! The facade over TLS: HTTPS with the member's certificate (reloaded like the gRPC
//! port's), and the caller of each request — a client certificate of the cluster's CA,
//! or `Authorization: Bearer <token>` — recorded as the actor of what it writes and
//! judged by its role, as on the gRPC port. Without TLS requests are recorded as
//! `mlflow/anonymous` (the facade then listens on loopback only).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use cairn_proto::tls::server::{identity_in, incoming, role_in, ServerTls};
use cairn_proto::tls::Identity;
use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use super::error::MlflowError;
use crate::app::App;
use crate::auth::limit::RateLimits;
use crate::auth::{self, Caller};

/// TLS connections, handshaken side by side under a deadline.
pub struct TlsListener {
    accepted: tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: Arc<ServerTls>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            accepted: incoming(listener, tls),
            local,
        })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.accepted.next().await {
                Some(Ok(s)) => {
                    let Ok(addr) = s.get_ref().0.peer_addr() else {
                        continue;
                    };
                    return (s, addr);
                }
                Some(Err(_)) => continue,
                // The accept loop ended: nothing more will come.
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The identity (and certificate role) of a connection's client certificate, if any.
#[derive(Debug, Clone)]
pub struct Peer(Option<Result<(Identity, Option<String>), String>>);

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let certs = stream.io().get_ref().1.peer_certificates();
        Peer(
            certs
                .and_then(|c| c.first())
                .map(|leaf| identity_in(leaf).map(|id| (id, role_in(leaf)))),
        )
    }
}

fn unauthenticated(why: impl std::fmt::Display) -> Response {
    MlflowError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", why.to_string()).into_response()
}

/// What the authentication layer needs: the member, and the callers' request budgets
/// (shared with the gRPC port: one budget per caller, wherever it calls).
#[derive(Clone)]
pub struct Gate {
    pub app: App,
    pub rate: Arc<RateLimits>,
}

/// Every request over TLS: its caller, from the bearer token or the certificate, or
/// 401; a caller over its request rate gets 429.
pub async fn authenticate(
    State(Gate { app, rate }): State<Gate>,
    mut req: Request,
    next: Next,
) -> Response {
    let bearer = match req.headers().get(axum::http::header::AUTHORIZATION) {
        None => None,
        Some(v) => match v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            Some(secret) if !secret.trim().is_empty() => Some(secret.trim().to_string()),
            _ => return unauthenticated("Authorization: expected `Bearer <token>`"),
        },
    };
    let caller = match bearer {
        Some(secret) => {
            let digest = auth::digest(secret.as_bytes());
            auth::learn_token(&app, &digest).await;
            auth::token_caller(&app, digest)
        }
        None => match req.extensions().get::<ConnectInfo<Peer>>().map(|c| &c.0 .0) {
            Some(Some(Ok((id, role)))) => auth::certificate_caller(id.clone(), role.as_deref()),
            Some(Some(Err(why))) => return unauthenticated(why),
            _ => return unauthenticated("no client certificate and no bearer token"),
        },
    };
    let caller = match caller {
        Ok(c) => c,
        Err(s) => return unauthenticated(s.message()),
    };
    if !matches!(caller.identity, Identity::Member(_)) {
        if let Err(s) = rate.check(&caller.identity.to_string()) {
            let code = "REQUEST_LIMIT_EXCEEDED";
            return MlflowError::new(StatusCode::TOO_MANY_REQUESTS, code, s.message().to_string())
                .into_response();
        }
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Who a request is recorded as (none: the facade serves plain HTTP).
#[derive(Debug, Clone)]
pub struct Who(pub Option<Caller>);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = MlflowError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, MlflowError> {
        Ok(Who(parts.extensions.get::<Caller>().cloned()))
    }
}
