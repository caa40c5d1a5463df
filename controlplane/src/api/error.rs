//! Every error the API returns, and its one mapping to a gRPC status.

use cairn_domain::Rejection;
use tonic::{Code, Status};

pub use cairn_proto::{LEADER_HINT, LEADER_ID_HINT, NOT_APPLIED};

/// What went wrong, grouped by what the caller does next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Fix the input: every problem with its field path.
    #[error("invalid argument: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The state machine refused the command (deterministic).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Retry on the leader (the hint says which, when known). Nothing was proposed.
    #[error("this member is not the leader{}", .leader.as_ref().map(|(id, a)| format!("; the leader is node {id} at {a}")).unwrap_or_else(|| "; no leader is known yet".into()))]
    NotLeader { leader: Option<(u64, String)> },
    /// Retry later, perhaps elsewhere. Nothing was proposed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The outcome is unknown: the command may or may not have been applied.
    #[error("indeterminate: {0}")]
    Indeterminate(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let msg = e.to_string();
        match e {
            ApiError::Invalid(_) => Status::invalid_argument(msg),
            ApiError::Rejected(r) => {
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
            ApiError::NotLeader { leader } => {
                let mut s = Status::unavailable(msg);
                s.metadata_mut().insert(
                    NOT_APPLIED,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
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
            ApiError::Unavailable(_) => {
                let mut s = Status::unavailable(msg);
                s.metadata_mut().insert(
                    NOT_APPLIED,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                s
            }
            ApiError::Indeterminate(_) => Status::deadline_exceeded(msg),
            ApiError::Internal(_) => Status::internal(msg),
        }
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
        ];
        for (r, code) in cases {
            assert_eq!(Status::from(ApiError::Rejected(r)).code(), code);
        }
    }

    #[test]
    fn not_leader_carries_the_leader_hint() {
        let s = Status::from(ApiError::NotLeader {
            leader: Some((2, "127.0.0.1:7422".into())),
        });
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            s.metadata().get(LEADER_HINT).and_then(|v| v.to_str().ok()),
            Some("127.0.0.1:7422")
        );
        assert!(s.message().contains("node 2"));
        assert!(cairn_proto::certainly_not_applied(&s));
        let lost = Status::from(ApiError::Indeterminate("connection lost".into()));
        assert!(!cairn_proto::certainly_not_applied(&lost));
    }
}
