//! What can go wrong with a request, grouped by what the caller does next. Protocol
//! adapters map it, each in one place (gRPC: `api::grpc::status`).

use cairn_domain::Rejection;

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
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

pub type Result<T, E = AppError> = std::result::Result<T, E>;
