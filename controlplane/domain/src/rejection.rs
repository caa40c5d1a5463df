//! Typed, deterministic rejections of a command.

use thiserror::Error;

/// Why `decide` refused a command. Every replica reaches the same verdict, so a
/// rejection is an answer to the caller, not a failure of the node.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
pub enum Rejection {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("wrong expected revision for {entity}: expected {expected}, current {actual}")]
    WrongRevision {
        entity: String,
        expected: u64,
        actual: u64,
    },
}
