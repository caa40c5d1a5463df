//! Raft: openraft's type configuration, the sled log store, and the gRPC network.
//!
//! The concrete types are fixed once, in [`TypeConfig`]. A Raft entry's application
//! payload is a [`Batch`]: the protobuf encoding of a `cairn.v1.CommandBatch`, so the
//! durable log is versioned by protobuf field numbers like the events are. openraft's own
//! records around it (log ids, votes, membership) are encoded with bincode.
//!
//! - [`network`]: the client side of the `RaftTransport` gRPC service (its server side
//!   is an adapter in `api::grpc`).
//! - [`snapshot_file`]: the snapshot as openraft streams it.
//!
//! The storage behind openraft's traits (the log, the state machine) is in `store`.

pub mod network;
pub mod snapshot_file;

use serde::{Deserialize, Serialize};

use snapshot_file::SnapshotFile;

pub type NodeId = u64;
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// Cairn's Raft types.
    pub TypeConfig:
        D = Batch,
        R = BatchOutcome,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;

/// The application payload of one Raft entry: a protobuf-encoded `CommandBatch`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Batch {
    #[serde(with = "serde_bytes")]
    pub encoded: Vec<u8>,
    /// When this member proposed it, while it is in this process's memory (never sent
    /// or stored): where its write's timeline starts.
    #[serde(skip)]
    pub proposed: Option<std::time::Instant>,
}

/// Two batches are the same batch when they hold the same commands.
impl PartialEq for Batch {
    fn eq(&self, other: &Self) -> bool {
        self.encoded == other.encoded
    }
}

impl Eq for Batch {}

/// The result of applying one entry: one outcome per command of the batch, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutcome {
    pub outcomes: Vec<Outcome>,
}

/// What became of one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Accepted: the protobuf-encoded events it appended, and the target's revision.
    Applied {
        events: Vec<serde_bytes::ByteBuf>,
        entity_revision: u64,
        raft_index: u64,
    },
    Rejected(cairn_domain::Rejection),
}

/// bincode, as used for every openraft record on disk and on the wire.
pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::serialize(v)
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(b)
}

/// An io::Error from anything displayable (for `StorageIOError`).
pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
