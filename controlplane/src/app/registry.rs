//! The registry's questions about the past: a model as it was at a time, and which
//! versions held a stage or alias then. Both are answered from the model's own stream
//! (the event store's entity index) and its timeline, never by reading the whole log.

use std::collections::BTreeMap;

use cairn_domain::model::{self, Held, Holding, ModelEvent, ModelState, Models};
use cairn_domain::{EntityState, Event, EventPayload, Rejection};

use super::{App, AppError, Result};
use crate::convert::FromPb;
use crate::store::events::Filter;

/// Events of one stream read at a time.
const PAGE: usize = 10_000;

fn store(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(e.to_string())
}

impl App {
    /// The events of `model/<name>` up to `until_ms` (inclusive) and before
    /// `before_sequence`, in order.
    fn model_stream(&self, name: &str, until_ms: i64, before_sequence: u64) -> Result<Vec<Event>> {
        let events = self.shared().events();
        let mut filter = Filter {
            kind: Some(model::KIND.into()),
            name: Some(name.into()),
            until_ms: Some(until_ms.saturating_add(1)),
            ..Filter::default()
        };
        let mut out = Vec::new();
        loop {
            let (page, more) = events.query(&filter, PAGE).map_err(store)?;
            for e in &page {
                if e.sequence >= before_sequence {
                    return Ok(out);
                }
                out.push(Event::from_pb(e).map_err(|m| AppError::Internal(m.to_string()))?);
            }
            match (more, page.last()) {
                (true, Some(last)) => filter.after_sequence = last.sequence,
                _ => return Ok(out),
            }
        }
    }

    /// Model `name` as it was at `at_ms` (leader time): its stream up to then folded
    /// anew, following renames back to the streams of its earlier names. None when no
    /// model had that name then.
    pub fn model_at(&self, name: &str, at_ms: i64) -> Result<Option<ModelState>> {
        let mut events = self.model_stream(name, at_ms, u64::MAX)?;
        // A model that was renamed to `name` brings the history of its earlier name.
        let mut i = 0;
        while i < events.len() {
            if let EventPayload::Model(ModelEvent::RenamedFrom { from }) = &events[i].payload {
                let (from, seq) = (from.clone(), events[i].sequence);
                events.extend(self.model_stream(&from, at_ms, seq)?);
            }
            i += 1;
        }
        events.sort_by_key(|e| e.sequence);
        events.dedup_by_key(|e| e.sequence);
        let mut models = Models::new();
        let mut entities: BTreeMap<String, EntityState> = BTreeMap::new();
        for e in &events {
            let EventPayload::Model(ev) = &e.payload else {
                continue;
            };
            let at = cairn_domain::entity::At {
                sequence: e.sequence,
                timestamp_ms: e.timestamp_ms,
                actor: &e.actor,
            };
            let entity = entities.entry(e.entity.name.clone()).or_default();
            model::evolve(&mut models, entity, &e.entity.name, ev, at);
        }
        Ok(models.remove(name))
    }

    /// The versions of model `name` that held `what` at `at_ms`. The model's timeline
    /// answers when the model now named so existed then; otherwise its past is folded.
    pub fn who_held(&self, name: &str, what: &Held, at_ms: i64) -> Result<Vec<Holding>> {
        let now = self.with_state(|s| {
            s.models()
                .get(name)
                // A model that came by a rename may have had another name then.
                .filter(|m| m.created_ms <= at_ms && m.former_names.is_empty())
                .map(|m| m.held(what, at_ms))
        });
        if let Some(holders) = now {
            return Ok(holders);
        }
        match self.model_at(name, at_ms)? {
            Some(m) => Ok(m.held(what, at_ms)),
            None => Err(AppError::Rejected(Rejection::NotFound(format!(
                "{}/{name} at {at_ms}",
                model::KIND
            )))),
        }
    }
}
