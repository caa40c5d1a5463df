//! Who is calling: the identity a peer's TLS certificate names (`cairn_proto::tls`),
//! the role a user's certificate grants, and the caller every request is judged and
//! recorded as ([`Caller`]).
//!
//! Without TLS a member listens on loopback only (unless started `insecure`) and takes
//! the actor a client names on trust; with TLS the actor is the authenticated identity,
//! stamped here at the edge, and a client cannot choose it.

use cairn_domain::authz::Role;
use cairn_proto as pb;
use cairn_proto::tls::server::{identity_and_role_of, identity_of};
use cairn_proto::tls::Identity;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// Who a request comes from, as the member's edge established it. Present in a
/// request's extensions only when the member serves TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub identity: Identity,
    /// A user's role (a user whose certificate names none is a viewer); none for
    /// members and agents.
    pub role: Option<Role>,
}

fn unauthenticated(what: &str, why: impl std::fmt::Display) -> Status {
    Status::unauthenticated(format!("{what}: {why}"))
}

/// The caller a request is made by: the peer itself, or the caller a member forwards
/// it for.
fn caller_of(req: &Request<()>) -> Result<Caller, Status> {
    let (peer, role) = identity_and_role_of(req)?;
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
    let role = match &identity {
        Identity::User(_) => Some(match role.as_deref() {
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
    Ok(Caller { identity, role })
}

/// The interceptor of the client API: with TLS, every request gets its [`Caller`] or
/// is refused.
pub fn client_api(tls: bool) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        if tls {
            let caller = caller_of(&req)?;
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
}
