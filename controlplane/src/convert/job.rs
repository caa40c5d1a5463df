//! Job values: replica ids, placements, and the documents (of jobs and crons) that
//! travel as normalised JSON.

use cairn_domain::doc::{self, Document, Spec};
use cairn_domain::job::{Placement, ReplicaId};
use cairn_proto as pb;

use super::{FromPb, Malformed, ToPb};

pub(super) fn replica_id(role: &str, index: u32) -> ReplicaId {
    ReplicaId {
        role: role.to_string(),
        index,
    }
}

impl ToPb for Placement {
    type Pb = pb::ReplicaPlacement;
    fn to_pb(&self) -> pb::ReplicaPlacement {
        pb::ReplicaPlacement {
            role: self.replica.role.clone(),
            index: self.replica.index,
            node: self.node.clone(),
            gpus: self.gpus.clone(),
            ports: self.ports.clone(),
            score: self.score,
        }
    }
}

impl FromPb for Placement {
    type Pb = pb::ReplicaPlacement;
    fn from_pb(p: &pb::ReplicaPlacement) -> Result<Self, Malformed> {
        Ok(Placement {
            replica: replica_id(&p.role, p.index),
            node: p.node.clone(),
            gpus: p.gpus.clone(),
            ports: p.ports.clone(),
            score: p.score,
        })
    }
}

/// A submitted document (a command): parsed and checked, every problem with its path.
pub(super) fn submitted<S: Spec>(json: &str) -> Result<Box<Document<S>>, Malformed> {
    doc::parse(json).map(Box::new).map_err(Malformed)
}

/// A document the log recorded (an event): decoded only, as it was accepted. What this
/// build cannot read at all names the field that holds it.
pub(super) fn recorded<S: Spec>(json: &str, field: &str) -> Result<Box<Document<S>>, Malformed> {
    doc::decode_stored(json)
        .map(Box::new)
        .map_err(|e| Malformed::one(format!("{field}: {e}")))
}
