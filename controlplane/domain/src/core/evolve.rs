//! `evolve`: fold one event into the state. Every payload variant is matched: a new
//! event that nobody folds does not compile.

use super::event::{Event, EventPayload};
use super::state::State;
use crate::entity::At;
use crate::{cron, deployment, job, member, model, namespace, node, projection, queue, token};

impl State {
    /// Fold one event into the state. Events must arrive in sequence order, each
    /// exactly once; a gap is a bug in the caller and panics.
    pub fn evolve(&mut self, event: &Event) {
        assert_eq!(
            event.sequence,
            self.next_sequence(),
            "events must be folded in sequence order"
        );
        self.next_sequence = event.sequence + 1;
        let at = At {
            sequence: event.sequence,
            timestamp_ms: event.timestamp_ms,
            actor: &event.actor,
        };
        let e = self.entities.entry(event.entity.clone()).or_default();
        e.revision = event.entity_revision;
        e.sequence = event.sequence;
        e.updated_ms = event.timestamp_ms;
        let name = &event.entity.name;
        match &event.payload {
            EventPayload::Member(ev) => member::evolve(&mut self.members, e, ev, at),
            EventPayload::Namespace(ev) => namespace::evolve(e, ev, at),
            EventPayload::Node(ev) => node::evolve(&mut self.nodes, e, name, ev, at),
            EventPayload::Queue(ev) => queue::evolve(&mut self.quotas, e, name, ev, at),
            EventPayload::Token(ev) => token::evolve(&mut self.tokens, e, name, ev, at),
            EventPayload::Job(ev) => job::evolve(&mut self.jobs, &mut self.nodes, e, name, ev, at),
            EventPayload::Cron(ev) => cron::evolve(&mut self.crons, e, name, ev, at),
            EventPayload::Model(ev) => model::evolve(&mut self.models, e, name, ev, at),
            EventPayload::Deployment(ev) => {
                deployment::evolve(&mut self.deployments, &mut self.nodes, e, name, ev, at)
            }
            EventPayload::Projection(ev) => {
                projection::evolve(&mut self.projections, e, name, ev, at)
            }
            EventPayload::NoteAdded { .. } => e.notes += 1,
        }
    }
}
