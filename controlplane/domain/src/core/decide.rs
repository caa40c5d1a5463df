//! `decide`: the verdict on a command, given the state at its place in the log. It
//! dispatches to the aggregate the command belongs to (every variant matched: a new
//! command that nobody decides does not compile), and stamps what they emit.

use super::command::{Command, CommandBody};
use super::event::{Event, EventPayload};
use super::state::State;
use crate::cron::{self, CronEvent};
use crate::deployment::{self, DeploymentEvent};
use crate::emit::Emit;
use crate::entity::{EntityKey, Issued, Position};
use crate::job::{self, JobEvent};
use crate::member::{self, MemberEvent};
use crate::model::{self, ModelEvent};
use crate::namespace::{self, NamespaceEvent};
use crate::node::{self, NodeEvent};
use crate::projection::{self, ProjectionEvent};
use crate::queue::{self, QueueEvent};
use crate::rejection::Rejection;
use crate::token::{self, TokenEvent};

/// Decide `cmd` against `state`: the events it appends, or why it is rejected.
///
/// Pure and deterministic: the same state, command and position give the same result on
/// every replica. The events come fully stamped (sequence, entity revision, position).
pub fn decide(state: &State, cmd: &Command, pos: Position) -> Result<Vec<Event>, Rejection> {
    let problems = cmd.problems();
    if !problems.is_empty() {
        return Err(Rejection::InvalidArgument(problems.join("; ")));
    }
    super::authz::authorize(cmd)?;
    super::authz::check_bearer(&state.tokens, cmd)?;
    if let (Some(expected), Some(target)) = (cmd.expected_revision, cmd.body.target()) {
        let actual = state.revision(&target);
        if expected != actual {
            return Err(Rejection::WrongRevision {
                entity: target.to_string(),
                expected,
                actual,
            });
        }
    }
    let issued = Issued {
        timestamp_ms: cmd.timestamp_ms,
        actor: &cmd.actor,
    };
    let mut out = Emitter {
        state,
        cmd,
        pos,
        events: Vec::new(),
    };
    match &cmd.body {
        CommandBody::Namespace(c) => {
            let key = EntityKey::new(namespace::KIND, c.target());
            namespace::decide(state.entity(&key), c, &mut out)?
        }
        CommandBody::Node(c) => {
            let disruptions = node::decide(&state.nodes, c, issued, &mut out)?;
            job::react(&state.jobs, &disruptions, &mut out);
            deployment::react(&state.deployments, &disruptions, &mut out);
        }
        CommandBody::Queue(c) => queue::decide(&state.quotas, c, &mut out)?,
        CommandBody::Token(c) => token::decide(&state.tokens, c, &mut out)?,
        CommandBody::Job(c) => job::decide(state.job_context(), c, issued, &mut out)?,
        CommandBody::Cron(c) => {
            cron::decide(&state.crons, state.job_context(), c, issued, &mut out)?
        }
        CommandBody::Model(c) => {
            model::check_protection(&state.models, c, &cmd.actor, cmd.role)?;
            model::decide(&state.models, c, &mut out)?
        }
        CommandBody::Deployment(c) => {
            deployment::decide(state.deployment_context(), c, issued, &mut out)?
        }
        CommandBody::Projection(c) => {
            projection::decide(&state.projections, state.last_sequence(), c, &mut out)?
        }
        CommandBody::AddNote { entity, text } => {
            if !state.is_live(entity) {
                return Err(Rejection::NotFound(entity.to_string()));
            }
            out.push(
                entity.clone(),
                EventPayload::NoteAdded { text: text.clone() },
            );
        }
        CommandBody::ReconcileMembers => member::reconcile(&state.members, &mut out),
    }
    Ok(out.events)
}

/// Stamps events with sequence numbers and entity revisions as a command emits them.
struct Emitter<'a> {
    state: &'a State,
    cmd: &'a Command,
    pos: Position,
    events: Vec<Event>,
}

impl Emitter<'_> {
    fn push(&mut self, entity: EntityKey, payload: EventPayload) {
        let earlier = self.events.iter().filter(|e| e.entity == entity).count() as u64;
        let entity_revision = self.state.revision(&entity) + earlier + 1;
        self.events.push(Event {
            sequence: self.state.next_sequence() + self.events.len() as u64,
            raft_index: self.pos.raft_index,
            raft_term: self.pos.raft_term,
            timestamp_ms: self.cmd.timestamp_ms,
            entity,
            entity_revision,
            actor: self.cmd.actor.clone(),
            correlation_id: self.cmd.correlation_id.clone(),
            payload,
        });
    }
}

/// Each aggregate's events go in as the payload variant of its kind.
macro_rules! emit_as {
    ($event:ty, $kind:expr, $variant:ident) => {
        impl Emit<$event> for Emitter<'_> {
            fn emit(&mut self, name: &str, event: $event) {
                self.push(EntityKey::new($kind, name), EventPayload::$variant(event));
            }
        }
    };
}

emit_as!(MemberEvent, member::KIND, Member);
emit_as!(NamespaceEvent, namespace::KIND, Namespace);
emit_as!(NodeEvent, node::KIND, Node);
emit_as!(QueueEvent, queue::KIND, Queue);
emit_as!(TokenEvent, token::KIND, Token);
emit_as!(JobEvent, job::KIND, Job);
emit_as!(CronEvent, cron::KIND, Cron);
emit_as!(ModelEvent, model::KIND, Model);
emit_as!(DeploymentEvent, deployment::KIND, Deployment);
emit_as!(ProjectionEvent, projection::KIND, Projection);
