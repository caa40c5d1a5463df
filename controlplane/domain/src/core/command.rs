//! Commands: requests to change state, decided in log order. The envelope (who, when,
//! which request, which revision the caller expects) around one aggregate's command.

use crate::cron::{self, CronCommand};
use crate::deployment::{self, DeploymentCommand};
use crate::entity::EntityKey;
use crate::job::{self, JobCommand};
use crate::model::{self, ModelCommand};
use crate::namespace::{self, NamespaceCommand};
use crate::node::{self, NodeCommand};
use crate::projection::{self, ProjectionCommand};
use crate::queue::{self, QueueCommand};
use crate::token::{self, TokenCommand};
use crate::validate;

/// A command as proposed by the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Stamped by the leader when it proposes the command.
    pub timestamp_ms: i64,
    pub actor: String,
    /// The role of an authenticated user, stamped at the edge with the actor (none:
    /// a member, the leader's workers, an agent or a plaintext client).
    pub role: Option<crate::role::Role>,
    /// The SHA-256 of the bearer token the command came with, stamped at the edge
    /// (empty: none); `decide` refuses it unless the token is still valid then.
    pub bearer: Vec<u8>,
    pub correlation_id: String,
    /// The revision the caller expects the target entity to have (0: must not exist).
    pub expected_revision: Option<u64>,
    pub body: CommandBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    Namespace(NamespaceCommand),
    Node(NodeCommand),
    Queue(QueueCommand),
    Token(TokenCommand),
    Job(JobCommand),
    Cron(CronCommand),
    Model(ModelCommand),
    Deployment(DeploymentCommand),
    Projection(ProjectionCommand),
    /// An operator's note on any live entity.
    AddNote {
        entity: EntityKey,
        text: String,
    },
    /// Record the applied Raft membership as member events.
    ReconcileMembers,
}

impl CommandBody {
    /// The entity the command is about, if it has a single target.
    pub fn target(&self) -> Option<EntityKey> {
        let key = |kind: &str, name: &str| Some(EntityKey::new(kind, name));
        match self {
            CommandBody::Namespace(c) => key(namespace::KIND, c.target()),
            CommandBody::Node(c) => c.target().and_then(|n| key(node::KIND, n)),
            CommandBody::Queue(c) => key(queue::KIND, c.target()),
            CommandBody::Token(c) => key(token::KIND, c.target()),
            CommandBody::Job(c) => c.target().and_then(|n| key(job::KIND, n)),
            CommandBody::Cron(c) => key(cron::KIND, c.target()),
            CommandBody::Model(c) => key(model::KIND, c.target()),
            CommandBody::Deployment(c) => key(deployment::KIND, c.target()),
            CommandBody::Projection(c) => key(projection::KIND, c.target()),
            CommandBody::AddNote { entity, .. } => Some(entity.clone()),
            CommandBody::ReconcileMembers => None,
        }
    }

    /// Commands only the leader proposes; clients may not submit them.
    pub fn leader_only(&self) -> bool {
        match self {
            CommandBody::Namespace(_)
            | CommandBody::Queue(_)
            | CommandBody::Token(_)
            | CommandBody::Model(_)
            | CommandBody::AddNote { .. } => false,
            CommandBody::Node(c) => c.leader_only(),
            CommandBody::Job(c) => c.leader_only(),
            CommandBody::Cron(c) => c.leader_only(),
            CommandBody::Deployment(c) => c.leader_only(),
            CommandBody::Projection(c) => c.leader_only(),
            CommandBody::ReconcileMembers => true,
        }
    }
}

impl Command {
    /// Every problem found in the command, as `field: message`. Empty when valid.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        validate::short_text_problems("actor", &self.actor, &mut p);
        validate::short_text_problems("correlation_id", &self.correlation_id, &mut p);
        match &self.body {
            CommandBody::Namespace(c) => c.problems(&mut p),
            CommandBody::Node(c) => c.problems(&mut p),
            CommandBody::Queue(c) => c.problems(&mut p),
            CommandBody::Token(c) => c.problems(&mut p),
            CommandBody::Job(c) => c.problems(&mut p),
            CommandBody::Cron(c) => c.problems(&mut p),
            CommandBody::Model(c) => c.problems(&mut p),
            CommandBody::Deployment(c) => c.problems(&mut p),
            CommandBody::Projection(c) => c.problems(&mut p),
            CommandBody::AddNote { entity, text } => {
                super::kinds::entity_problems("add_note.entity", entity, &mut p);
                if text.trim().is_empty() {
                    p.push("add_note.text: must not be empty".into());
                } else if text.len() > validate::MAX_NOTE_BYTES {
                    p.push(format!(
                        "add_note.text: {} bytes, at most {}",
                        text.len(),
                        validate::MAX_NOTE_BYTES
                    ));
                }
            }
            CommandBody::ReconcileMembers => {}
        }
        p
    }
}
