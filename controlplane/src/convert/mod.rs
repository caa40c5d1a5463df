//! Conversions between the wire types (`cairn-proto`) and the domain (`cairn-domain`):
//! the only place that knows both. Read models served by the API are in `views`.
//!
//! The orphan rule keeps `From`/`TryFrom` between two foreign crates' types out of
//! reach, so the two directions are the local traits [`ToPb`] and [`FromPb`]; a wire
//! value that cannot become a domain value is [`Malformed`], with every problem and its
//! field.
//!
//! - [`command`]: commands, both ways (what enters at the edge and travels through Raft).
//! - [`event`]: events, both ways (what the store holds and the API serves).
//! - [`node`], [`job`], [`model`], [`deployment`]: the value types of those aggregates.

mod command;
mod deployment;
mod event;
mod job;
mod model;
mod node;

pub use model::protection;
#[cfg(test)]
pub(crate) mod tests;

use cairn_domain::EntityKey;
use cairn_proto as pb;

/// Why a wire message could not become a domain value: every problem, with its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct Malformed(pub Vec<String>);

impl Malformed {
    pub fn one(problem: impl Into<String>) -> Self {
        Self(vec![problem.into()])
    }
}

/// A domain value's protobuf form.
pub trait ToPb {
    type Pb;
    fn to_pb(&self) -> Self::Pb;
}

/// A domain value from its protobuf form.
pub trait FromPb: Sized {
    type Pb;
    fn from_pb(pb: &Self::Pb) -> Result<Self, Malformed>;
}

impl ToPb for EntityKey {
    type Pb = pb::EntityRef;
    fn to_pb(&self) -> pb::EntityRef {
        pb::EntityRef {
            kind: self.kind.clone(),
            name: self.name.clone(),
        }
    }
}

/// A required entity reference.
fn entity(e: &Option<pb::EntityRef>, field: &str) -> Result<EntityKey, Malformed> {
    match e {
        Some(e) => Ok(EntityKey::new(e.kind.clone(), e.name.clone())),
        None => Err(Malformed::one(format!("{field}: required"))),
    }
}
