//! Who is calling: the identity a peer's TLS certificate names (`cairn_proto::tls`),
//! and the caller every request is judged and recorded as ([`Caller`]).
//!
//! Without TLS a member listens on loopback only (unless started `insecure`) and takes
//! the actor a client names on trust; with TLS the actor is the authenticated identity,
//! stamped here at the edge, and a client cannot choose it.

use cairn_proto as pb;
use cairn_proto::tls::server::identity_of;
use cairn_proto::tls::Identity;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// Who a request comes from, as the member's edge established it. Present in a
/// request's extensions only when the member serves TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Identity);

/// The interceptor of the client API: the caller's identity from its certificate or,
/// on a member's connection that forwards a request, the identity it forwards for.
/// A connection without a Cairn identity is refused.
pub fn client_api(tls: bool) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut req: Request<()>| {
        if !tls {
            return Ok(req);
        }
        let peer = identity_of(&req)?;
        let caller = match (&peer, req.metadata().get(pb::ON_BEHALF_OF)) {
            (Identity::Member(_), Some(urn)) => urn
                .to_str()
                .ok()
                .and_then(Identity::from_urn)
                .ok_or_else(|| {
                    Status::unauthenticated(format!("{}: not a Cairn identity", pb::ON_BEHALF_OF))
                })?,
            (Identity::Member(_), None) => peer,
            (_, Some(_)) => {
                return Err(Status::permission_denied(format!(
                    "only a member may forward a request for someone else; {peer} is not one"
                )))
            }
            (_, None) => peer,
        };
        req.extensions_mut().insert(Caller(caller));
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
pub fn caller<T>(req: &Request<T>) -> Option<Identity> {
    req.extensions().get::<Caller>().map(|c| c.0.clone())
}

/// Mark a request this member forwards as made on behalf of its caller.
pub fn on_behalf_of<T>(req: &mut Request<T>, caller: Option<&Identity>) {
    if let Some(id) = caller {
        if let Ok(v) = MetadataValue::try_from(id.urn()) {
            req.metadata_mut().insert(pb::ON_BEHALF_OF, v);
        }
    }
}
