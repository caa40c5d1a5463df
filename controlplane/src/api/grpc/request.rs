//! What every handler of the client API shares: reading a request's fields into the
//! application layer's terms (every enum and filter checked, naming the field), and
//! forwarding to the leader.

use std::future::Future;
use std::time::Duration;

use cairn_domain::kinds;
use cairn_proto as pb;
use futures::future::BoxFuture;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use cairn_proto::tls::Identity;

use crate::app::{AppError, Consistency, ReadPoint};
use crate::auth;
use crate::convert::FromPb;
use crate::store::events::Filter;

/// Metadata marking a request a member already forwarded (it is not forwarded again).
const FORWARDED: &str = "x-cairn-forwarded";
/// How long a member waits for the leader to answer a forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a member forwarded this request here.
pub fn is_forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().get(FORWARDED).is_some()
}

/// `req` as this member forwards it to the leader: marked forwarded, with the agent's
/// token if it carried one, on behalf of its authenticated caller if it has one.
pub fn forwarded<T>(req: Request<T>) -> Request<T> {
    let token = req.metadata().get(pb::NODE_TOKEN).cloned();
    let caller = auth::caller(&req);
    let mut req = Request::new(req.into_inner());
    req.metadata_mut()
        .insert(FORWARDED, MetadataValue::from_static("1"));
    if let Some(t) = token {
        req.metadata_mut().insert(pb::NODE_TOKEN, t);
    }
    auth::on_behalf_of(&mut req, caller.as_ref());
    req
}

/// What the edge, never the client, puts on the commands of a request: the
/// authenticated caller as the actor, and the digest of the agent's credential (its
/// certificate identity under TLS, its node token without).
#[derive(Debug, Clone)]
pub struct Stamp {
    caller: Option<auth::Caller>,
    pub token_digest: Vec<u8>,
}

impl Stamp {
    pub fn of<T>(req: &Request<T>) -> Self {
        let caller = auth::caller(req);
        let token_digest = match caller.as_ref().map(|c| &c.identity) {
            Some(id @ Identity::Agent(_)) => auth::digest(id.urn().as_bytes()),
            Some(Identity::Member(_) | Identity::User(_)) => Vec::new(),
            None => match req.metadata().get(pb::NODE_TOKEN) {
                Some(t) => auth::digest(t.as_bytes()),
                None => Vec::new(),
            },
        };
        Self {
            caller,
            token_digest,
        }
    }
}

/// A command as a client sent it, in the domain's terms, stamped by the edge, and
/// authorised (the same check `decide` makes again).
pub fn command(mut cmd: pb::Command, stamp: &Stamp) -> Result<cairn_domain::Command, AppError> {
    cmd.token_digest = stamp.token_digest.clone();
    match stamp.caller.as_ref() {
        // A member is trusted with the actor it names: its own facades (MLflow) and
        // workers submit through the leader as the users they serve.
        None
        | Some(auth::Caller {
            identity: Identity::Member(_),
            ..
        }) => {}
        Some(caller) => {
            cmd.actor = caller.identity.to_string();
            cmd.role = caller
                .role
                .map(|r| r.as_str().to_string())
                .unwrap_or_default();
            cmd.bearer_digest = caller.bearer.clone().unwrap_or_default();
        }
    }
    let cmd = cairn_domain::Command::from_pb(&cmd).map_err(|m| AppError::Invalid(m.0))?;
    cairn_domain::authz::authorize(&cmd).map_err(AppError::Rejected)?;
    Ok(cmd)
}

/// A read's consistency: one of the enum's values, or an error naming the field.
pub fn consistency(v: i32) -> Result<Consistency, AppError> {
    match pb::ReadConsistency::try_from(v) {
        Ok(pb::ReadConsistency::Linearizable) => Ok(Consistency::Linearizable),
        Ok(pb::ReadConsistency::Stale) => Ok(Consistency::Stale),
        Err(_) => Err(AppError::Invalid(vec![format!(
            "consistency: unknown value {v} (known: {} linearizable, {} stale)",
            pb::ReadConsistency::Linearizable as i32,
            pb::ReadConsistency::Stale as i32
        )])),
    }
}

/// How far a read had got, as the API reports it.
pub fn read_info(p: ReadPoint) -> pb::ReadInfo {
    pb::ReadInfo {
        applied_index: p.applied_index,
        last_sequence: p.last_sequence,
        consistency: match p.consistency {
            Consistency::Linearizable => pb::ReadConsistency::Linearizable,
            Consistency::Stale => pb::ReadConsistency::Stale,
        } as i32,
        served_by: p.served_by,
    }
}

/// An event filter, every problem with its field path.
pub fn filter(f: Option<pb::EventFilter>) -> Result<Filter, AppError> {
    let f = f.unwrap_or_default();
    let mut problems = Vec::new();
    let (kind, name) = match f.entity {
        None => (None, None),
        Some(e) => {
            kinds::kind_problems("filter.entity.kind", &e.kind, &mut problems);
            (Some(e.kind), (!e.name.is_empty()).then_some(e.name))
        }
    };
    for (i, t) in f.types.iter().enumerate() {
        if !pb::EVENT_TYPES.contains(&t.as_str()) {
            problems.push(format!(
                "filter.types[{i}]: unknown event type {t:?} (known: {})",
                pb::EVENT_TYPES.join(", ")
            ));
        }
    }
    if let (Some(s), Some(u)) = (f.since_ms, f.until_ms) {
        if s >= u {
            problems.push("filter: since must be before until".into());
        }
    }
    cairn_domain::validate::short_text_problems("filter.actor", &f.actor, &mut problems);
    if !problems.is_empty() {
        return Err(AppError::Invalid(problems));
    }
    Ok(Filter {
        kind,
        name,
        types: f.types,
        since_ms: f.since_ms,
        until_ms: f.until_ms,
        after_sequence: f.after_sequence,
        actor: (!f.actor.is_empty()).then_some(f.actor),
    })
}

/// A name field, if given.
pub fn optional_name(field: &str, name: &str, node: bool) -> Result<(), AppError> {
    if name.is_empty() {
        return Ok(());
    }
    let mut problems = Vec::new();
    if node {
        cairn_domain::validate::node_name_problems(field, name, &mut problems);
    } else {
        cairn_domain::validate::name_problems(field, name, &mut problems);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AppError::Invalid(problems))
    }
}

/// A forwarded call, on the heap: a client call's future is several kilobytes, and a
/// handler that held it inline would move that much with every request it serves, most
/// of which are never forwarded.
pub type Forwarded<'a, T> = BoxFuture<'a, Result<Response<T>, Status>>;

/// Forward a write to the leader. A leader that does not answer in time (it may be cut
/// off from its quorum) leaves the write indeterminate.
pub fn forward_write<'a, T: 'a>(
    call: impl Future<Output = Result<Response<T>, Status>> + Send + 'a,
) -> Forwarded<'a, T> {
    Box::pin(async move {
        match tokio::time::timeout(FORWARD_TIMEOUT, call).await {
            Ok(r) => forwarded_write(r),
            Err(_) => Err(AppError::Indeterminate(format!(
                "the leader did not answer the forwarded request within {FORWARD_TIMEOUT:?}"
            ))
            .into()),
        }
    })
}

/// Forward a read to the leader; a leader that does not answer in time is unavailable.
pub fn forward_read<'a, T: 'a>(
    call: impl Future<Output = Result<Response<T>, Status>> + Send + 'a,
) -> Forwarded<'a, T> {
    Box::pin(async move {
        match tokio::time::timeout(FORWARD_TIMEOUT, call).await {
            Ok(r) => r,
            Err(_) => Err(AppError::Unavailable(format!(
                "the leader did not answer the forwarded read within {FORWARD_TIMEOUT:?}"
            ))
            .into()),
        }
    })
}

/// The answer to a forwarded write: a failure that does not say "not applied" may hide
/// an applied command (the leader went away mid-request), so it is indeterminate.
pub fn forwarded_write<T>(r: Result<Response<T>, Status>) -> Result<Response<T>, Status> {
    r.map_err(|s| {
        if s.code() == tonic::Code::Unavailable && !cairn_proto::certainly_not_applied(&s) {
            AppError::Indeterminate(format!(
                "the leader did not answer the forwarded request: {}",
                s.message()
            ))
            .into()
        } else {
            s
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_write_that_lost_its_leader_is_indeterminate() {
        // The leader answered "not the leader": nothing happened, the client may retry.
        let not_leader: Status = AppError::NotLeader { leader: None }.into();
        let s = forwarded_write::<()>(Err(not_leader)).unwrap_err();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(cairn_proto::certainly_not_applied(&s));
        // The connection to the leader broke mid-request: it may have applied it.
        let s = forwarded_write::<()>(Err(Status::unavailable("transport error"))).unwrap_err();
        assert_eq!(s.code(), tonic::Code::DeadlineExceeded);
        assert!(!cairn_proto::certainly_not_applied(&s));
        // The leader could not even be reached: nothing was sent.
        let s = forwarded_write::<()>(Err(Status::unavailable("tcp connect error"))).unwrap_err();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        // Rejections pass through unchanged.
        let s = forwarded_write::<()>(Err(Status::not_found("namespace/x"))).unwrap_err();
        assert_eq!(s.code(), tonic::Code::NotFound);
    }

    #[test]
    fn filters_are_validated_with_field_paths() {
        let err = filter(Some(pb::EventFilter {
            entity: Some(pb::EntityRef {
                kind: "gadget".into(),
                name: String::new(),
            }),
            types: vec!["note_added".into(), "exploded".into()],
            since_ms: Some(10),
            until_ms: Some(5),
            after_sequence: 0,
            actor: String::new(),
        }))
        .unwrap_err();
        let AppError::Invalid(problems) = err else {
            panic!("expected an invalid-argument error, got {err:?}");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("filter.entity.kind"));
        assert!(problems[1].starts_with("filter.types[1]"));
        assert!(problems[2].contains("since must be before until"));
    }

    #[test]
    fn an_unknown_consistency_is_refused_naming_the_field() {
        assert_eq!(consistency(0).unwrap(), Consistency::Linearizable);
        assert_eq!(consistency(1).unwrap(), Consistency::Stale);
        let AppError::Invalid(p) = consistency(99).unwrap_err() else {
            panic!("expected an invalid argument");
        };
        assert!(p[0].starts_with("consistency: unknown value 99"), "{p:?}");
    }
}
