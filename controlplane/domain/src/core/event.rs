//! Events: the facts the log records. The envelope (sequence, position, time, entity,
//! revision, actor, correlation) around one aggregate's event.

use crate::cron::{self, CronEvent};
use crate::deployment::{self, DeploymentEvent};
use crate::entity::EntityKey;
use crate::job::{self, JobEvent};
use crate::member::{self, MemberEvent};
use crate::model::{self, ModelEvent};
use crate::namespace::{self, NamespaceEvent};
use crate::node::{self, NodeEvent};
use crate::projection::{self, ProjectionEvent};
use crate::queue::{self, QueueEvent};
use crate::token::{self, TokenEvent};

/// One event of the append-only log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Global, gapless, starting at 1.
    pub sequence: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    /// The leader's clock when it proposed the command (Unix milliseconds).
    pub timestamp_ms: i64,
    pub entity: EntityKey,
    /// The entity's revision after this event, starting at 1.
    pub entity_revision: u64,
    pub actor: String,
    pub correlation_id: String,
    pub payload: EventPayload,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPayload {
    Member(MemberEvent),
    Namespace(NamespaceEvent),
    Node(NodeEvent),
    Queue(QueueEvent),
    Token(TokenEvent),
    Job(JobEvent),
    Cron(CronEvent),
    Model(ModelEvent),
    Deployment(DeploymentEvent),
    Projection(ProjectionEvent),
    /// An operator's note, on an entity of any kind.
    NoteAdded {
        text: String,
    },
}

impl EventPayload {
    /// The type name used by filters and indexes: the field name of the payload in the
    /// protobuf schema (a test holds the two together).
    pub fn type_name(&self) -> &'static str {
        match self {
            EventPayload::Member(e) => e.type_name(),
            EventPayload::Namespace(e) => e.type_name(),
            EventPayload::Node(e) => e.type_name(),
            EventPayload::Queue(e) => e.type_name(),
            EventPayload::Token(e) => e.type_name(),
            EventPayload::Job(e) => e.type_name(),
            EventPayload::Cron(e) => e.type_name(),
            EventPayload::Model(e) => e.type_name(),
            EventPayload::Deployment(e) => e.type_name(),
            EventPayload::Projection(e) => e.type_name(),
            EventPayload::NoteAdded { .. } => "note_added",
        }
    }

    /// The kind of entity the event is about (None: any kind).
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            EventPayload::Member(_) => Some(member::KIND),
            EventPayload::Namespace(_) => Some(namespace::KIND),
            EventPayload::Node(_) => Some(node::KIND),
            EventPayload::Queue(_) => Some(queue::KIND),
            EventPayload::Token(_) => Some(token::KIND),
            EventPayload::Job(_) => Some(job::KIND),
            EventPayload::Cron(_) => Some(cron::KIND),
            EventPayload::Model(_) => Some(model::KIND),
            EventPayload::Deployment(_) => Some(deployment::KIND),
            EventPayload::Projection(_) => Some(projection::KIND),
            EventPayload::NoteAdded { .. } => None,
        }
    }
}
