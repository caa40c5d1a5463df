//! A write's way in: checked at the edge (every problem with its field path, so the
//! caller learns them all before anything is proposed), then proposed through the
//! leader's proposer and answered once committed on a quorum, fsynced and applied.

use std::sync::atomic::Ordering;

use cairn_domain::Command;
use cairn_proto as pb;
use prost::Message;

use super::proposer::now_ms;
use super::{App, AppError, Result};
use crate::convert::ToPb;
use crate::raft::Outcome;

/// What an accepted command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The events it appended (possibly none), as stored.
    pub events: Vec<pb::Event>,
    /// The revision of its target entity afterwards.
    pub entity_revision: u64,
    /// The Raft log index of the entry that carried it.
    pub raft_index: u64,
}

impl App {
    /// Check a command a client submitted and fill in what the server supplies: an
    /// actor (the caller's, or `anonymous`) and a correlation id.
    pub fn accept(&self, mut cmd: Command) -> Result<Command> {
        if cmd.body.leader_only() {
            return Err(AppError::Invalid(vec![
                "command.body: this command is proposed by the leader only".into(),
            ]));
        }
        let problems = cmd.problems();
        if !problems.is_empty() {
            return Err(AppError::Invalid(problems));
        }
        if cmd.actor.is_empty() {
            cmd.actor = "anonymous".into();
        }
        if cmd.correlation_id.is_empty() {
            cmd.correlation_id = self.new_correlation_id();
        }
        Ok(cmd)
    }

    /// A correlation id unique to this member's requests.
    pub fn new_correlation_id(&self) -> String {
        let n = self.inner.requests.fetch_add(1, Ordering::Relaxed);
        format!("req-{}-{}-{n}", self.id(), now_ms())
    }

    /// Propose a command on this member (the leader); resolves once it is committed,
    /// durable on a quorum and applied.
    pub async fn propose(&self, cmd: &Command) -> Result<Applied> {
        match self.inner.proposer.submit(cmd.to_pb()).await? {
            Outcome::Rejected(r) => Err(AppError::Rejected(r)),
            Outcome::Applied {
                events,
                entity_revision,
                raft_index,
            } => {
                let events = events
                    .iter()
                    .map(|b| pb::Event::decode(b.as_slice()))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| AppError::Internal(format!("decoding an applied event: {e}")))?;
                Ok(Applied {
                    events,
                    entity_revision,
                    raft_index,
                })
            }
        }
    }

    /// A command of the system (a leader worker's), proposed as `actor`.
    pub async fn propose_as(
        &self,
        actor: &str,
        body: cairn_domain::CommandBody,
    ) -> Result<Applied> {
        let cmd = Command {
            timestamp_ms: 0,
            actor: actor.into(),
            role: None,
            bearer: Vec::new(),
            correlation_id: self.new_correlation_id(),
            expected_revision: None,
            body,
        };
        self.propose(&cmd).await
    }
}
