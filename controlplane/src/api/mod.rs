//! The protocol adapters over the application layer (`app`): [`grpc`] (the client and
//! member-to-member services), [`mlflow`] (MLflow's model-registry REST API) and
//! [`metrics`] (what `/metrics` reads from a member). The Kubernetes intake comes as a
//! sibling.

pub mod grpc;
pub mod metrics;
pub mod mlflow;
