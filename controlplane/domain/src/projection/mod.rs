//! Projections of the log into another system (Kubernetes): how far the leader's
//! projector has brought it, so a new leader resumes there, and the full resyncs
//! operators asked for. `projection/kubernetes` is the only one.

use std::collections::BTreeMap;

use crate::emit::Emit;
use crate::entity::{At, EntityState};
use crate::rejection::Rejection;

pub const KIND: &str = "projection";
/// The projections there are.
pub const NAMES: &[&str] = &["kubernetes"];

/// One projection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    /// Every event through this sequence is reflected in the target.
    pub checkpoint: u64,
    /// Full resyncs asked for so far: the projector runs one when this grows.
    pub resyncs: u64,
}

/// Projections by name.
pub type Projections = BTreeMap<String, Projection>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionCommand {
    /// The leader's projector: the target reflects every event through `sequence`.
    Checkpoint { name: String, sequence: u64 },
    /// An operator: compare everything the target holds with the log, now.
    Resync { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionEvent {
    Checkpointed { sequence: u64 },
    ResyncRequested,
}

impl ProjectionCommand {
    pub fn target(&self) -> &str {
        match self {
            ProjectionCommand::Checkpoint { name, .. } | ProjectionCommand::Resync { name } => name,
        }
    }

    /// Only the leader's projector checkpoints.
    pub fn leader_only(&self) -> bool {
        match self {
            ProjectionCommand::Checkpoint { .. } => true,
            ProjectionCommand::Resync { .. } => false,
        }
    }

    pub fn problems(&self, p: &mut Vec<String>) {
        let (field, name) = match self {
            ProjectionCommand::Checkpoint { name, .. } => ("checkpoint_projection.name", name),
            ProjectionCommand::Resync { name } => ("resync_projection.name", name),
        };
        if !NAMES.contains(&name.as_str()) {
            p.push(format!(
                "{field}: unknown projection {name:?} (known: {})",
                NAMES.join(", ")
            ));
        }
    }
}

impl ProjectionEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            ProjectionEvent::Checkpointed { .. } => "projection_checkpointed",
            ProjectionEvent::ResyncRequested => "projection_resync_requested",
        }
    }
}

/// A checkpoint must be of the log as it is (not ahead of it) and move forward; one
/// that does not is a no-op (a new leader's projector may repeat its predecessor's).
pub fn decide(
    projections: &Projections,
    last_sequence: u64,
    cmd: &ProjectionCommand,
    out: &mut impl Emit<ProjectionEvent>,
) -> Result<(), Rejection> {
    match cmd {
        ProjectionCommand::Checkpoint { name, sequence } => {
            if *sequence > last_sequence {
                return Err(Rejection::InvalidArgument(format!(
                    "checkpoint_projection.sequence: {sequence} is past the log's last event, {last_sequence}"
                )));
            }
            let current = projections.get(name).map_or(0, |p| p.checkpoint);
            if *sequence > current {
                out.emit(
                    name,
                    ProjectionEvent::Checkpointed {
                        sequence: *sequence,
                    },
                );
            }
        }
        ProjectionCommand::Resync { name } => out.emit(name, ProjectionEvent::ResyncRequested),
    }
    Ok(())
}

pub fn evolve(
    projections: &mut Projections,
    e: &mut EntityState,
    name: &str,
    event: &ProjectionEvent,
    at: At<'_>,
) {
    if e.created_ms == 0 {
        e.created_ms = at.timestamp_ms;
    }
    let p = projections.entry(name.to_string()).or_default();
    match event {
        ProjectionEvent::Checkpointed { sequence } => p.checkpoint = *sequence,
        ProjectionEvent::ResyncRequested => p.resyncs += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CommandBody, State};
    use crate::testkit::{apply, cmd};

    fn checkpoint(sequence: u64) -> crate::Command {
        cmd(CommandBody::Projection(ProjectionCommand::Checkpoint {
            name: "kubernetes".into(),
            sequence,
        }))
    }

    #[test]
    fn a_checkpoint_moves_forward_and_never_past_the_log() {
        let mut s = State::new();
        let resync = cmd(CommandBody::Projection(ProjectionCommand::Resync {
            name: "kubernetes".into(),
        }));
        apply(&mut s, &resync).expect("a resync");
        assert_eq!(s.projection("kubernetes").resyncs, 1);
        // The log's last event is 1: a checkpoint at 2 is of a future it cannot vouch for.
        assert!(matches!(
            apply(&mut s, &checkpoint(2)),
            Err(Rejection::InvalidArgument(_))
        ));
        assert_eq!(apply(&mut s, &checkpoint(1)).expect("checkpoint").len(), 1);
        assert_eq!(s.projection("kubernetes").checkpoint, 1);
        // Repeating it, or going back, changes nothing.
        assert!(apply(&mut s, &checkpoint(1)).expect("again").is_empty());
        assert_eq!(apply(&mut s, &checkpoint(2)).expect("forward").len(), 1);
        assert!(apply(&mut s, &checkpoint(1)).expect("back").is_empty());
        assert_eq!(s.projection("kubernetes").checkpoint, 2);
        let unknown = cmd(CommandBody::Projection(ProjectionCommand::Resync {
            name: "elsewhere".into(),
        }));
        assert!(matches!(
            apply(&mut s, &unknown),
            Err(Rejection::InvalidArgument(_))
        ));
    }
}
