//! The protocol adapters over the application layer (`app`): today gRPC; the MLflow
//! REST facade and the Kubernetes intake come as siblings of [`grpc`].

pub mod grpc;
