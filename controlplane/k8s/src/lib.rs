//! Cairn in Kubernetes terms: the custom resources the log is projected into
//! ([`crd`], generated from these Rust types; `crdgen` writes `deploy/crds/`), what
//! Kubernetes should hold for a state ([`project`], pure), and the leader's
//! [`projector`] that makes it so and restores it when the api-server loses it, and
//! takes in what users apply with kubectl ([`intake`]).

pub mod crd;
pub mod intake;
pub mod project;
pub mod projector;
