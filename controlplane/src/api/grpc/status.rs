//! The one mapping from [`AppError`] to a gRPC status, with the metadata clients act
//! on: the leader hint on not-leader errors, and whether a failed request certainly
//! changed nothing (so it may be sent again, elsewhere).

use cairn_domain::Rejection;
use cairn_proto::{LEADER_HINT, LEADER_ID_HINT, NOT_APPLIED};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::app::AppError;

pub fn status(e: AppError) -> Status {
    let msg = e.to_string();
    match e {
        AppError::Invalid(_) => Status::invalid_argument(msg),
        AppError::Rejected(r) => {
            let code = match r {
                Rejection::InvalidArgument(_) => Code::InvalidArgument,
                Rejection::AlreadyExists(_) => Code::AlreadyExists,
                Rejection::NotFound(_) => Code::NotFound,
                Rejection::FailedPrecondition(_) => Code::FailedPrecondition,
                Rejection::WrongRevision { .. } => Code::Aborted,
                Rejection::PermissionDenied(_) => Code::PermissionDenied,
            };
            Status::new(code, msg)
        }
        AppError::NotLeader { leader } => {
            let mut s = not_applied(Status::unavailable(msg));
            if let Some((id, addr)) = leader {
                if let Ok(v) = addr.parse() {
                    s.metadata_mut().insert(LEADER_HINT, v);
                }
                if let Ok(v) = id.to_string().parse() {
                    s.metadata_mut().insert(LEADER_ID_HINT, v);
                }
            }
            s
        }
        AppError::Unavailable(_) => not_applied(Status::unavailable(msg)),
        AppError::Indeterminate(_) => Status::deadline_exceeded(msg),
        AppError::Internal(_) => Status::internal(msg),
    }
}

fn not_applied(mut s: Status) -> Status {
    s.metadata_mut()
        .insert(NOT_APPLIED, MetadataValue::from_static("1"));
    s
}

impl From<AppError> for Status {
    fn from(e: AppError) -> Status {
        status(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_map_to_their_grpc_codes() {
        let cases = [
            (
                Rejection::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (Rejection::AlreadyExists("x".into()), Code::AlreadyExists),
            (Rejection::NotFound("x".into()), Code::NotFound),
            (
                Rejection::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (
                Rejection::WrongRevision {
                    entity: "namespace/a".into(),
                    expected: 1,
                    actual: 2,
                },
                Code::Aborted,
            ),
            (
                Rejection::PermissionDenied("x".into()),
                Code::PermissionDenied,
            ),
        ];
        for (r, code) in cases {
            assert_eq!(status(AppError::Rejected(r)).code(), code);
        }
    }

    #[test]
    fn not_leader_carries_the_leader_hint() {
        let s = status(AppError::NotLeader {
            leader: Some((2, "127.0.0.1:7422".into())),
        });
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            s.metadata().get(LEADER_HINT).and_then(|v| v.to_str().ok()),
            Some("127.0.0.1:7422")
        );
        assert!(s.message().contains("node 2"));
        assert!(cairn_proto::certainly_not_applied(&s));
        let lost = status(AppError::Indeterminate("connection lost".into()));
        assert!(!cairn_proto::certainly_not_applied(&lost));
    }
}
