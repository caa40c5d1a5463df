//! Group commit: the leader coalesces concurrent commands into one Raft entry.
//!
//! openraft 0.9 appends (and fsyncs) each `client_write` separately, so one entry per
//! command would cost one fsync per command. Instead every command goes into a queue;
//! the proposer takes everything queued (up to a batch's limits), stamps the leader's
//! time into each command, proposes the batch as one entry and fans the per-command
//! outcomes back to the callers. A few batches may be in flight at once, so the next
//! batch fills while the last one commits.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_proto as pb;
use openraft::error::{ClientWriteError, RaftError};
use prost::Message;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::error::ApiError;
use crate::raft::{Batch, Outcome, Raft};

/// Limits of one batch and of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_commands: usize,
    pub max_bytes: usize,
    pub max_inflight: usize,
}

struct Pending {
    cmd: pb::Command,
    reply: oneshot::Sender<Result<Outcome, ApiError>>,
}

/// Handle to the proposer task.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    pub fn start(raft: Raft, limits: BatchLimits) -> Self {
        let (tx, rx) = mpsc::channel(limits.max_commands * 4);
        tokio::spawn(run(raft, limits, rx));
        Self { tx }
    }

    /// Propose `cmd`; resolves once it is committed, durable on a quorum and applied.
    pub async fn submit(&self, cmd: pb::Command) -> Result<Outcome, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { cmd, reply })
            .await
            .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?;
        rx.await
            .map_err(|_| ApiError::Indeterminate("the proposal was dropped (shutdown?)".into()))?
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn run(raft: Raft, limits: BatchLimits, mut rx: mpsc::Receiver<Pending>) {
    let inflight = Arc::new(Semaphore::new(limits.max_inflight.max(1)));
    // Timestamps never go backwards within one proposer.
    let mut last_ts = 0i64;
    loop {
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut bytes = first.cmd.encoded_len();
        let mut batch = vec![first];
        while batch.len() < limits.max_commands && bytes < limits.max_bytes {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.cmd.encoded_len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        last_ts = last_ts.max(now_ms());
        let mut commands = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for mut p in batch {
            p.cmd.timestamp_ms = last_ts;
            commands.push(p.cmd);
            replies.push(p.reply);
        }
        let encoded = pb::CommandBatch { commands }.encode_to_vec();
        let raft = raft.clone();
        tokio::spawn(async move {
            let result = raft.client_write(Batch { encoded }).await;
            drop(permit);
            fan_out(result, replies);
        });
    }
}

type WriteResult = Result<
    openraft::raft::ClientWriteResponse<crate::raft::TypeConfig>,
    RaftError<u64, ClientWriteError<u64, openraft::BasicNode>>,
>;

fn fan_out(result: WriteResult, replies: Vec<oneshot::Sender<Result<Outcome, ApiError>>>) {
    match result {
        Ok(resp) => {
            let outcomes = resp.data.outcomes;
            if outcomes.len() != replies.len() {
                let e = ApiError::Internal(format!(
                    "a batch of {} commands produced {} outcomes",
                    replies.len(),
                    outcomes.len()
                ));
                for r in replies {
                    let _ = r.send(Err(e.clone()));
                }
                return;
            }
            for (r, o) in replies.into_iter().zip(outcomes) {
                let _ = r.send(Ok(o));
            }
        }
        Err(e) => {
            let err = match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ApiError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
                },
                RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                    ApiError::Internal(c.to_string())
                }
                RaftError::Fatal(f) => {
                    ApiError::Indeterminate(format!("the Raft node stopped: {f}"))
                }
            };
            for r in replies {
                let _ = r.send(Err(err.clone()));
            }
        }
    }
}
