//! MLflow's errors: `{"error_code": "...", "message": "..."}` with its HTTP status, and
//! the one mapping from the application layer's errors (and from the statuses of a
//! request forwarded to the leader).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cairn_domain::Rejection;

use crate::app::AppError;

/// An MLflow error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl MlflowError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", message)
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error_code": self.code, "message": self.message});
        (self.status, Json(body)).into_response()
    }
}

impl From<AppError> for MlflowError {
    fn from(e: AppError) -> Self {
        let message = e.to_string();
        match e {
            AppError::Invalid(_) => Self::invalid(message),
            AppError::Rejected(r) => match r {
                Rejection::InvalidArgument(_) => Self::invalid(message),
                Rejection::NotFound(_) => Self::not_found(message),
                Rejection::AlreadyExists(_) => {
                    Self::new(StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS", message)
                }
                Rejection::FailedPrecondition(_) | Rejection::WrongRevision { .. } => {
                    Self::new(StatusCode::BAD_REQUEST, "INVALID_STATE", message)
                }
                Rejection::PermissionDenied(_) => {
                    Self::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", message)
                }
            },
            // Nothing was proposed: MLflow's client retries a 503.
            AppError::NotLeader { .. } | AppError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TEMPORARILY_UNAVAILABLE",
                message,
            ),
            AppError::Indeterminate(_) | AppError::Internal(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
            }
        }
    }
}

impl From<tonic::Status> for MlflowError {
    /// The answer of the leader to a forwarded request.
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let message = s.message().to_string();
        match s.code() {
            Code::InvalidArgument | Code::OutOfRange => Self::invalid(message),
            Code::NotFound => Self::not_found(message),
            Code::AlreadyExists => {
                Self::new(StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS", message)
            }
            Code::FailedPrecondition | Code::Aborted => {
                Self::new(StatusCode::BAD_REQUEST, "INVALID_STATE", message)
            }
            Code::PermissionDenied => {
                Self::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", message)
            }
            Code::Unavailable if cairn_proto::certainly_not_applied(&s) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "TEMPORARILY_UNAVAILABLE",
                message,
            ),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_mlflows_codes_and_statuses() {
        let cases = [
            (
                AppError::Invalid(vec!["x".into()]),
                400,
                "INVALID_PARAMETER_VALUE",
            ),
            (
                Rejection::NotFound("m".into()).into(),
                404,
                "RESOURCE_DOES_NOT_EXIST",
            ),
            (
                Rejection::AlreadyExists("m".into()).into(),
                400,
                "RESOURCE_ALREADY_EXISTS",
            ),
            (
                Rejection::FailedPrecondition("m".into()).into(),
                400,
                "INVALID_STATE",
            ),
            (
                AppError::NotLeader { leader: None },
                503,
                "TEMPORARILY_UNAVAILABLE",
            ),
            (AppError::Indeterminate("x".into()), 500, "INTERNAL_ERROR"),
        ];
        for (e, status, code) in cases {
            let m = MlflowError::from(e);
            assert_eq!((m.status.as_u16(), m.code), (status, code));
        }
        let forwarded = MlflowError::from(tonic::Status::already_exists("model/m"));
        assert_eq!(forwarded.code, "RESOURCE_ALREADY_EXISTS");
    }
}
