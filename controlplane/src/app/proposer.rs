//! Group commit: the leader coalesces concurrent commands into one Raft entry.
//!
//! openraft 0.9 appends (and fsyncs) each `client_write` separately, so one entry per
//! command would cost one fsync per command. Instead every command goes into a queue;
//! the proposer takes everything queued (up to a batch's limits), stamps the leader's
//! time into each command, proposes the batch as one entry and fans the per-command
//! outcomes back to the callers. A few batches may be in flight at once, so the next
//! batch fills while the last one commits.
//!
//! A batch holds its place in the pipeline only while this member leads the term it was
//! proposed in. openraft 0.9 never answers a write whose entry was replaced by an
//! installed snapshot (a cut-off leader's uncommitted entries, say): such a write would
//! keep its place for good, and the member would take no write when it next leads. So
//! once that leadership ends the batch gives its place up, and its callers learn the
//! outcome if it arrives within [`ORPHAN_GRACE`], or that it is unknown.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_proto as pb;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use prost::Message;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::error::AppError;
use crate::metrics::{self, Stage};
use crate::raft::{Batch, Outcome, Raft};

/// How long a batch proposed in a leadership that has since ended may still take to be
/// answered (committed by the next leader, or truncated) before its callers are told
/// that its outcome is unknown.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// Limits of one batch and of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_commands: usize,
    pub max_bytes: usize,
    pub max_inflight: usize,
}

struct Pending {
    cmd: pb::Command,
    reply: oneshot::Sender<Result<Outcome, AppError>>,
    queued: Instant,
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
    pub async fn submit(&self, cmd: pb::Command) -> Result<Outcome, AppError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                cmd,
                reply,
                queued: Instant::now(),
            })
            .await
            .map_err(|_| AppError::Unavailable("the server is shutting down".into()))?;
        rx.await
            .map_err(|_| AppError::Indeterminate("the proposal was dropped (shutdown?)".into()))?
    }
}

pub fn now_ms() -> i64 {
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
            metrics::stage_since(Stage::Queue, p.queued);
            p.cmd.timestamp_ms = last_ts;
            commands.push(p.cmd);
            replies.push(p.reply);
        }
        let encoded = pb::CommandBatch { commands }.encode_to_vec();
        let raft = raft.clone();
        tokio::spawn(async move {
            let proposed = Instant::now();
            let batch = Batch {
                encoded,
                proposed: Some(proposed),
            };
            let result = write(&raft, batch, permit).await;
            metrics::stage_since(Stage::Raft, proposed);
            fan_out(result, replies);
        });
    }
}

/// Propose `batch`, holding `permit` while this member leads the term it proposed in.
async fn write(
    raft: &Raft,
    batch: Batch,
    permit: OwnedSemaphorePermit,
) -> Result<WriteResponse, AppError> {
    let mut server = raft.server_metrics();
    let (vote, leading) = {
        let m = server.borrow_and_update();
        (m.vote, m.state == ServerState::Leader)
    };
    let pending = raft.client_write(batch);
    tokio::pin!(pending);
    let leadership_ended = async {
        loop {
            {
                let m = server.borrow_and_update();
                if m.vote != vote || m.state != ServerState::Leader {
                    return;
                }
            }
            if server.changed().await.is_err() {
                return; // Raft stopped: the write answers at once
            }
        }
    };
    let answered = tokio::select! {
        result = &mut pending => Some(result),
        () = leadership_ended => None,
    };
    drop(permit);
    let result = match answered {
        Some(result) => {
            if let Ok(r) = &result {
                metrics::marks().answered(r.log_id.index);
            }
            result
        }
        None => tokio::time::timeout(ORPHAN_GRACE, pending)
            .await
            .map_err(|_| {
                AppError::Indeterminate(format!(
                    "the leadership this write was proposed in ended, and its outcome did \
                     not arrive within {ORPHAN_GRACE:?}: it may or may not be applied"
                ))
            })?,
    };
    result.map_err(|e| match e {
        // Proposed while leading, so most likely appended, then truncated here by the
        // next leader: with more than three voters, another member that holds the
        // entry may still be elected and commit it.
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) if leading => {
            AppError::Indeterminate(
                "this member stopped leading before the write committed; it may or may not \
                 be applied"
                    .into(),
            )
        }
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => AppError::NotLeader {
            leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            AppError::Internal(c.to_string())
        }
        RaftError::Fatal(f) => AppError::Indeterminate(format!("the Raft node stopped: {f}")),
    })
}

type WriteResponse = openraft::raft::ClientWriteResponse<crate::raft::TypeConfig>;

fn fan_out(
    result: Result<WriteResponse, AppError>,
    replies: Vec<oneshot::Sender<Result<Outcome, AppError>>>,
) {
    let outcomes = result.and_then(|resp| {
        let outcomes = resp.data.outcomes;
        if outcomes.len() == replies.len() {
            Ok(outcomes)
        } else {
            Err(AppError::Internal(format!(
                "a batch of {} commands produced {} outcomes",
                replies.len(),
                outcomes.len()
            )))
        }
    });
    match outcomes {
        Ok(outcomes) => {
            for (r, o) in replies.into_iter().zip(outcomes) {
                let _ = r.send(Ok(o));
            }
        }
        Err(e) => {
            for r in replies {
                let _ = r.send(Err(e.clone()));
            }
        }
    }
}
