//! Where a request is served, and how fresh a read is.
//!
//! Reads are linearizable by default: the leader confirms its leadership with a quorum
//! (openraft's read index) and waits until it has applied up to that index, raised to
//! its term's floor; a follower sends such a read to the leader. A stale read is served
//! from this member's own applied state, and its [`ReadPoint`] says how far that was.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::oneshot;

use super::{App, AppError, Result};

/// How long a linearizable read waits for the leader to apply up to its read index.
const READ_BARRIER_WAIT: Duration = Duration::from_secs(5);
/// How long a request waits for a leader to be known.
const LEADER_WAIT: Duration = Duration::from_secs(3);

/// Linearizable reads waiting for a round, and whether one is under way.
#[derive(Default)]
pub(super) struct Rounds {
    waiting: Vec<oneshot::Sender<Result<u64>>>,
    running: bool,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed with a quorum through the leader (read index).
    Linearizable,
    /// Served from this member's applied state.
    Stale,
}

/// Where a request is to be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// On this member.
    Here,
    /// On the leader, at this address.
    Leader(String),
}

/// How far the state a read was served from had got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPoint {
    /// The applied log index the answer was read at.
    pub applied_index: u64,
    /// The sequence number of the last event applied at that point.
    pub last_sequence: u64,
    pub consistency: Consistency,
    pub served_by: u64,
}

impl App {
    /// The leader (id, address), waiting up to `wait` for one to be elected.
    pub async fn leader(&self, wait: Duration) -> Result<(u64, String)> {
        let mut rx = self.raft().metrics();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let m = rx.borrow_and_update();
                // A member can learn who leads before it has the membership entry that
                // gives the leader's address: wait for it rather than dial "".
                let leader = m.current_leader.and_then(|l| {
                    let node = m.membership_config.membership().get_node(&l)?;
                    Some((l, node.addr.clone()))
                });
                if let Some(leader) = leader {
                    return Ok(leader);
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(AppError::Unavailable("the Raft node stopped".into())),
                Err(_) => return Err(AppError::NotLeader { leader: None }),
            }
        }
    }

    /// Refuse with the leader's address unless this member leads (for calls that are
    /// never forwarded: heartbeats, streams).
    pub async fn ensure_leader(&self) -> Result<()> {
        let (leader, addr) = self.leader(LEADER_WAIT).await?;
        if leader != self.id() {
            return Err(AppError::NotLeader {
                leader: Some((leader, addr)),
            });
        }
        Ok(())
    }

    /// Where a leader-only request goes. A request a member already forwarded is not
    /// forwarded again: it is answered with the leader hint, and the client retries.
    pub async fn route(&self, forwarded: bool) -> Result<Route> {
        let (leader, addr) = self.leader(LEADER_WAIT).await?;
        if leader == self.id() {
            return Ok(Route::Here);
        }
        if forwarded {
            return Err(AppError::NotLeader {
                leader: Some((leader, addr)),
            });
        }
        Ok(Route::Leader(addr))
    }

    /// Make a read of the given consistency possible here, or say where it must go:
    /// for a linearizable read the leader confirms its leadership with a quorum, then
    /// waits until it has applied up to that index or its term's floor, whichever is
    /// higher.
    pub async fn read_barrier(&self, consistency: Consistency, forwarded: bool) -> Result<Route> {
        match consistency {
            Consistency::Stale => return Ok(Route::Here),
            Consistency::Linearizable => {}
        }
        if let Route::Leader(addr) = self.route(forwarded).await? {
            return Ok(Route::Leader(addr));
        }
        let index = self.read_index().await?;
        self.applied_through(index).await?;
        Ok(Route::Here)
    }

    /// Apply everything committed before this call, whichever member leads: the leader
    /// confirms its read index with a quorum (a follower asks it for it, as etcd's
    /// followers do), and this member waits until it has applied through that index.
    pub async fn catch_up(&self) -> Result<()> {
        let (leader, addr) = self.leader(LEADER_WAIT).await?;
        let index = if leader == self.id() {
            self.read_index().await?
        } else {
            self.leader_read_index(&addr).await?
        };
        self.applied_through(index).await
    }

    /// The read index this member confirms as leader, for a follower that catches up.
    pub async fn read_index_as_leader(&self) -> Result<u64> {
        self.ensure_leader().await?;
        self.read_index().await
    }

    /// The index a linearizable read must wait for, confirmed with a quorum. Reads that
    /// arrive together share one confirmation: a read joins the next round to start
    /// (never one already under way, which may have begun before it arrived), and one
    /// round runs at a time, so under load every round answers all the reads that
    /// arrived during the one before.
    async fn read_index(&self) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut rounds = self
                .inner
                .read_rounds
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            rounds.waiting.push(tx);
            !std::mem::replace(&mut rounds.running, true)
        };
        if start {
            let app = self.clone();
            tokio::spawn(async move { app.run_read_rounds().await });
        }
        rx.await
            .map_err(|_| AppError::Unavailable("the read round was dropped".into()))?
    }

    /// Confirm leadership for every waiting read, round after round, until none waits.
    async fn run_read_rounds(self) {
        loop {
            let waiting = {
                let mut rounds = self
                    .inner
                    .read_rounds
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if rounds.waiting.is_empty() {
                    rounds.running = false;
                    return;
                }
                std::mem::take(&mut rounds.waiting)
            };
            let index = self.confirm_leadership().await;
            for tx in waiting {
                let _ = tx.send(index.clone());
            }
        }
    }

    /// One round of openraft's read index, raised to this term's floor.
    async fn confirm_leadership(&self) -> Result<u64> {
        let floor = self.leadership_floor();
        let (read_log_id, _) = match self.raft().get_read_log_id().await {
            Ok(ids) => ids,
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                return Err(AppError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                return Err(AppError::Unavailable(format!(
                    "cannot confirm leadership: {q}"
                )))
            }
            Err(RaftError::Fatal(f)) => {
                return Err(AppError::Unavailable(format!("the Raft node stopped: {f}")))
            }
        };
        Ok(read_log_id.map_or(0, |l| l.index).max(floor))
    }

    /// Wait until this member has applied the log through `index`, the entry of a
    /// committed write: its state then holds that write and every write acknowledged
    /// before it was made (they are earlier in the log), so a read of it is linearizable
    /// with no round to the followers.
    pub async fn applied_through(&self, index: u64) -> Result<()> {
        let applied = self
            .raft()
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        if applied >= index {
            return Ok(());
        }
        self.raft()
            .wait(Some(READ_BARRIER_WAIT))
            .applied_index_at_least(Some(index), "a committed write applied")
            .await
            .map_err(|e| AppError::Unavailable(format!("not ready to read: {e}")))?;
        Ok(())
    }

    /// The log index this member must have applied to serve a linearizable read as
    /// leader of its current term: its last log index the first time it read as leader
    /// in that term (0 when it does not lead; the read index then fails with a forward).
    ///
    /// openraft 0.9's read index is the larger of the committed index the leader knows
    /// and the first entry of its term, and both can be behind writes already
    /// acknowledged: right after an election, before the blank entry of the new term is
    /// in the log; and after a restart of the whole cluster, where openraft makes the old
    /// leader leader again in its old term, with no election and no new entry, and with
    /// the committed index it last saved. Every acknowledged write is in the leader's log
    /// when it starts leading (Raft's leader completeness), so this floor is safe.
    fn leadership_floor(&self) -> u64 {
        let metrics = self.raft().metrics();
        let m = metrics.borrow();
        if m.current_leader != Some(m.id) {
            return 0;
        }
        let mut floor = self
            .inner
            .read_floor
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *floor {
            Some((term, index)) if term == m.current_term => index,
            _ => {
                let index = m.last_log_index.unwrap_or(0);
                *floor = Some((m.current_term, index));
                index
            }
        }
    }

    /// How far this member has applied, for the answer to a read.
    pub fn read_point(&self, consistency: Consistency) -> ReadPoint {
        self.read_at(consistency, |_| ()).1
    }

    /// Read the applied state, and how far it had got, under one lock (never across
    /// an await).
    pub fn read_at<T>(
        &self,
        consistency: Consistency,
        f: impl FnOnce(&cairn_domain::State) -> T,
    ) -> (T, ReadPoint) {
        let inner = self.shared().read();
        let point = ReadPoint {
            applied_index: inner.last_applied.map_or(0, |l| l.index),
            last_sequence: inner.state.last_sequence(),
            consistency,
            served_by: self.id(),
        };
        (f(&inner.state), point)
    }
}
