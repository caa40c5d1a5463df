//! The protocol adapters over the application layer (`app`): [`grpc`] (the client and
//! member-to-member services) and [`mlflow`] (MLflow's model-registry REST API). The
//! Kubernetes intake comes as a sibling.

pub mod grpc;
pub mod mlflow;
