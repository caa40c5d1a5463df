//! Who is calling: the identity a peer's TLS certificate names (`cairn_proto::tls`),
//! the role a user's certificate grants, and the caller every request is judged and
//! recorded as ([`Caller`]).
//!
//! Without TLS a member listens on loopback only (unless started `insecure`) and takes
//! the actor a client names on trust; with TLS the actor is the authenticated identity,
//! stamped here at the edge, and a client cannot choose it.

pub mod limit;

use std::sync::Arc;

use cairn_domain::authz::Role;
use cairn_proto as pb;
use cairn_proto::tls::server::{identity_and_role_of, identity_of};
use cairn_proto::tls::Identity;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use crate::app::App;

/// Who a request comes from, as the member's edge established it. Present in a
/// request's extensions only when the member serves TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub identity: Identity,
    /// A user's role (a user whose certificate names none is a viewer); none for
    /// members and agents.
    pub role: Option<Role>,
    /// The SHA-256 of the bearer token it authenticated with (none: a certificate).
    pub bearer: Option<Vec<u8>>,
}

/// The secret of an `authorization: Bearer <secret>` header, if the request has one.
fn bearer_secret<T>(req: &Request<T>) -> Result<Option<String>, Status> {
    let Some(v) = req.metadata().get(pb::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| unauthenticated("authorization", "not ASCII"))?;
    match v.strip_prefix("Bearer ") {
        Some(secret) if !secret.trim().is_empty() => Ok(Some(secret.trim().to_string())),
        _ => Err(unauthenticated(
            "authorization",
            "expected `Bearer <token>`",
        )),
    }
}

/// SHA-256 of a credential (a token's secret, an agent's token or identity), as the
/// log keeps it.
pub fn digest(credential: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, credential)
        .as_ref()
        .to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether this member has never seen a token with this digest (one revoked or expired
/// is known).
fn unknown_token(app: &App, digest: &[u8]) -> bool {
    app.with_state(|s| !s.tokens().values().any(|t| t.digest == digest))
}

/// A token this member does not know may have been created a moment ago through another
/// member: before it is judged, this member catches up with the leader (read index),
/// so a token is accepted on every member as soon as its creation was acknowledged. A
/// token still unknown then is refused.
pub(crate) async fn learn_token(app: &App, digest: &[u8]) {
    if unknown_token(app, digest) {
        if let Err(e) = app.catch_up().await {
            tracing::debug!(error = %e, "could not catch up to judge a bearer token");
        }
    }
}

/// The digest of the token a request presents. (A token a member forwards is not
/// looked for: the member knew it, and the leader it forwards to applies first.)
fn presented_token(headers: &http::HeaderMap) -> Option<Vec<u8>> {
    let secret = headers
        .get(pb::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    Some(digest(secret.as_bytes()))
}

/// The client service, with [`learn_token`] before its interceptor judges a token.
#[derive(Clone)]
pub struct LearnTokens<S> {
    inner: S,
    app: App,
    tls: bool,
}

impl<S> LearnTokens<S> {
    pub fn new(inner: S, app: App, tls: bool) -> Self {
        Self { inner, app, tls }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for LearnTokens<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower_service::Service<http::Request<B>> for LearnTokens<S>
where
    S: tower_service::Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        futures::future::BoxFuture<'static, Result<S::Response, S::Error>>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let unknown = match self.tls {
            true => presented_token(req.headers()).filter(|d| unknown_token(&self.app, d)),
            false => None,
        };
        let Some(digest) = unknown else {
            return futures::future::Either::Left(self.inner.call(req));
        };
        // The service made ready is the one that takes the request.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        let app = self.app.clone();
        futures::future::Either::Right(Box::pin(async move {
            learn_token(&app, &digest).await;
            ready.call(req).await
        }))
    }
}

/// The user a token's digest authenticates now, judged on this member's state.
pub(crate) fn token_caller(app: &App, digest: Vec<u8>) -> Result<Caller, Status> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (user, role) = app
        .with_state(|s| {
            cairn_domain::token::valid(s.tokens(), &digest, now)
                .map(|(_, t)| (t.user.clone(), t.role))
        })
        .map_err(|why| unauthenticated("the bearer token", why))?;
    Ok(Caller {
        identity: Identity::User(user),
        role: Some(role),
        bearer: Some(digest),
    })
}

fn unauthenticated(what: &str, why: impl std::fmt::Display) -> Status {
    Status::unauthenticated(format!("{what}: {why}"))
}

/// The caller a request is made by: the bearer of a token, the peer itself, or the
/// caller a member forwards it for.
fn caller_of(app: &App, req: &Request<()>) -> Result<Caller, Status> {
    if let Some(secret) = bearer_secret(req)? {
        return token_caller(app, digest(secret.as_bytes()));
    }
    let (peer, role) = identity_and_role_of(req)?;
    if let (Identity::Member(_), Some(t)) = (&peer, req.metadata().get(pb::ON_BEHALF_OF_TOKEN)) {
        let forwarded = t
            .to_str()
            .ok()
            .and_then(unhex)
            .ok_or_else(|| unauthenticated(pb::ON_BEHALF_OF_TOKEN, "not a hex digest"))?;
        return token_caller(app, forwarded);
    }
    let forwarded_for = req.metadata().get(pb::ON_BEHALF_OF);
    let (identity, role) = match (&peer, forwarded_for) {
        (Identity::Member(_), Some(urn)) => {
            let id = urn
                .to_str()
                .ok()
                .and_then(Identity::from_urn)
                .ok_or_else(|| unauthenticated(pb::ON_BEHALF_OF, "not a Cairn identity"))?;
            let role = req
                .metadata()
                .get(pb::ON_BEHALF_OF_ROLE)
                .and_then(|r| r.to_str().ok())
                .map(str::to_string);
            (id, role)
        }
        (_, Some(_)) => {
            return Err(Status::permission_denied(format!(
                "only a member may forward a request for someone else; {peer} is not one"
            )))
        }
        (_, None) => (peer, role),
    };
    certificate_caller(identity, role.as_deref())
}

/// The caller a certificate names, with the role its subject grants a user (a user
/// whose certificate names none is a viewer).
pub(crate) fn certificate_caller(identity: Identity, role: Option<&str>) -> Result<Caller, Status> {
    let role = match &identity {
        Identity::User(_) => Some(match role {
            None => Role::Viewer,
            Some(r) => Role::parse(r).ok_or_else(|| {
                unauthenticated(
                    "the certificate's role",
                    format!("{r:?} is none of viewer, operator, admin"),
                )
            })?,
        }),
        Identity::Member(_) | Identity::Agent(_) => None,
    };
    Ok(Caller {
        identity,
        role,
        bearer: None,
    })
}

/// The interceptor of the client API: with TLS, every request gets its [`Caller`] or
/// is refused, and is counted against its caller's rate limit.
pub fn client_api(
    app: App,
    tls: bool,
    limits: Arc<limit::RateLimits>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        if tls {
            let caller = caller_of(&app, &req)?;
            if !matches!(caller.identity, Identity::Member(_)) {
                limits.check(&caller.identity.to_string())?;
            }
            req.extensions_mut().insert(caller);
        }
        Ok(req)
    }
}

/// The interceptor of the Raft transport: with TLS, only members may speak Raft.
pub fn raft(tls: bool) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        if !tls {
            return Ok(req);
        }
        match identity_of(&req)? {
            Identity::Member(_) => Ok(req),
            other => Err(Status::permission_denied(format!(
                "only members speak Raft; {other} is not a member"
            ))),
        }
    }
}

/// The authenticated caller of a request (none without TLS).
pub fn caller<T>(req: &Request<T>) -> Option<Caller> {
    req.extensions().get::<Caller>().cloned()
}

/// Refused unless the caller may administer the cluster (membership changes): a
/// member, an admin, or anyone on a plaintext (loopback) member.
pub fn require_admin<T>(req: &Request<T>) -> Result<(), Status> {
    match caller(req) {
        None => Ok(()),
        Some(Caller {
            identity: Identity::Member(_),
            ..
        }) => Ok(()),
        Some(Caller {
            role: Some(Role::Admin),
            ..
        }) => Ok(()),
        Some(c) => Err(Status::permission_denied(format!(
            "{} may not change the membership; it needs the role admin",
            c.identity
        ))),
    }
}

/// Mark a request this member forwards as made on behalf of its caller.
pub fn on_behalf_of<T>(req: &mut Request<T>, caller: Option<&Caller>) {
    let Some(c) = caller else { return };
    if let Ok(v) = MetadataValue::try_from(c.identity.urn()) {
        req.metadata_mut().insert(pb::ON_BEHALF_OF, v);
    }
    if let Some(role) = c.role {
        req.metadata_mut().insert(
            pb::ON_BEHALF_OF_ROLE,
            MetadataValue::from_static(role.as_str()),
        );
    }
    if let Some(d) = &c.bearer {
        if let Ok(v) = MetadataValue::try_from(hex(d)) {
            req.metadata_mut().insert(pb::ON_BEHALF_OF_TOKEN, v);
        }
    }
}
