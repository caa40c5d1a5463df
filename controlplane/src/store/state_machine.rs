//! The Raft state machine: decides and applies command batches, stores the events, and
//! builds and installs snapshots.
//!
//! The in-memory [`State`] is a fold of the stored events; at start it is rebuilt by
//! folding them again, after removing the events of a batch whose applied record a
//! crash kept from landing. They need no fsync of their own: the entries they
//! came from are durable in the Raft log, and every log flush (and every purge) makes
//! them durable too, before any log entry they depend on is removed.

use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use cairn_domain::{self as domain, Position, Rejection, State};
use cairn_proto as pb;
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, StorageIOError};
use prost::Message;
use tokio::sync::watch;

use super::durable::Flusher;
use super::events::{decode_event, EventStore, Staging, StoreError};
use super::snapshot::{self, Extent, SnapshotFile};
use crate::convert::FromPb;
use crate::raft::{
    decode, encode, io_err, BatchOutcome, Entry, LogId, NodeId, Outcome, SnapshotMeta,
    StorageError, StoredMembership, TypeConfig,
};

/// The last applied log id and membership, in one record: it is the last write of an
/// applied batch, so its presence says the batch's events are all there.
const APPLIED: &str = "applied";
/// The current snapshot: a [`StoredSnapshot`].
const SNAPSHOT: &str = "snapshot";

/// The current snapshot's meta and its prefix of the history file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    extent: Extent,
}

/// How far this member has applied the log: what readers and watchers wait on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub last_sequence: u64,
}

/// What the state machine has applied, shared with the API for reads.
pub struct Inner {
    pub state: State,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
}

/// State shared between the state machine (owned by openraft) and the API.
pub struct Shared {
    events: RwLock<EventStore>,
    inner: RwLock<Inner>,
    applied: watch::Sender<Applied>,
    snapshot_dir: PathBuf,
    /// Held while the history file or the current snapshot changes (build, install).
    snapshot_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The current event store (a snapshot install may replace it).
    pub fn events(&self) -> EventStore {
        self.events
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Read the applied state. Never hold the guard across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn applied(&self) -> watch::Receiver<Applied> {
        self.applied.subscribe()
    }

    fn history(&self) -> PathBuf {
        self.snapshot_dir.join(snapshot::HISTORY)
    }

    fn current_snapshot(&self) -> Result<Option<StoredSnapshot>, String> {
        let Some(bytes) = self.events().meta(SNAPSHOT).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        decode(&bytes).map(Some).map_err(|e| e.to_string())
    }

    fn mark(inner: &Inner) -> Applied {
        Applied {
            index: inner.last_applied.map_or(0, |l| l.index),
            last_sequence: inner.state.last_sequence(),
        }
    }
}

/// The state machine openraft drives.
pub struct StateMachine {
    shared: Arc<Shared>,
    flusher: Flusher,
    /// The member this is, for the spans of what it applies.
    member: u64,
}

fn sto_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

/// Fold stored or snapshotted events into a fresh state.
fn fold(state: &mut State, key: &[u8], bytes: &[u8]) -> Result<(), StoreError> {
    let e = decode_event(key, bytes)?;
    let e = domain::Event::from_pb(&e).map_err(|m| StoreError::Corrupt {
        key: key.to_vec(),
        why: m.to_string(),
    })?;
    if e.sequence != state.next_sequence() {
        return Err(StoreError::Corrupt {
            key: key.to_vec(),
            why: format!(
                "event {} where {} was due",
                e.sequence,
                state.next_sequence()
            ),
        });
    }
    state.evolve(&e);
    Ok(())
}

fn raft_members(m: &openraft::Membership<NodeId, openraft::BasicNode>) -> domain::RaftMembers {
    let addr = |id: &NodeId| m.get_node(id).map(|n| n.addr.clone()).unwrap_or_default();
    domain::RaftMembers {
        voters: m.voter_ids().map(|id| (id, addr(&id))).collect(),
        learners: m.learner_ids().map(|id| (id, addr(&id))).collect(),
    }
}

impl StateMachine {
    /// Open the state machine of `db`, rebuilding the state from the stored events.
    pub fn open(
        db: &sled::Db,
        flusher: Flusher,
        snapshot_dir: PathBuf,
        member: u64,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&snapshot_dir).map_err(|e| StoreError::Corrupt {
            key: vec![],
            why: format!("creating {}: {e}", snapshot_dir.display()),
        })?;
        let events = EventStore::open(db)?;
        let meta = |name: &str| -> Result<Option<Vec<u8>>, StoreError> {
            Ok(events.meta(name)?.map(|v| v.to_vec()))
        };
        let corrupt = |name: &str, e: bincode::Error| StoreError::Corrupt {
            key: name.as_bytes().to_vec(),
            why: e.to_string(),
        };
        let (last_applied, last_membership): (Option<LogId>, StoredMembership) =
            match meta(APPLIED)? {
                Some(b) => decode(&b).map_err(|e| corrupt(APPLIED, e))?,
                None => (None, StoredMembership::default()),
            };
        // Events of a batch whose applied record never landed (a crash midway) go:
        // Raft applies that batch again.
        events.drop_events_after(last_applied.map_or(0, |l| l.index))?;
        let mut state = State::new();
        state.set_raft_members(raft_members(last_membership.membership()));
        for kv in events.raw_range(1, u64::MAX) {
            let (seq, bytes) = kv?;
            fold(&mut state, &seq.to_be_bytes(), &bytes)?;
        }
        let inner = Inner {
            state,
            last_applied,
            last_membership,
        };
        let (applied, _) = watch::channel(Shared::mark(&inner));
        Ok(Self {
            shared: Arc::new(Shared {
                events: RwLock::new(events),
                inner: RwLock::new(inner),
                applied,
                snapshot_dir,
                snapshot_lock: tokio::sync::Mutex::new(()),
            }),
            flusher,
            member,
        })
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.shared.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, inner: &Inner) {
        self.shared.applied.send_replace(Shared::mark(inner));
    }
}

/// Apply one command: decide, fold in, stage the events.
fn apply_command(
    state: &mut State,
    c: &pb::Command,
    pos: Position,
    staged: &mut Staging,
) -> Outcome {
    let cmd = match domain::Command::from_pb(c) {
        Ok(cmd) => cmd,
        Err(m) => return Outcome::Rejected(Rejection::InvalidArgument(m.to_string())),
    };
    let _span = tracing::debug_span!(
        "command",
        entity = cmd.body.target().map(tracing::field::display),
        correlation_id = %cmd.correlation_id,
        actor = %cmd.actor,
    )
    .entered();
    match domain::decide(state, &cmd, pos) {
        Err(r) => Outcome::Rejected(r),
        Ok(events) => {
            let mut encoded = Vec::with_capacity(events.len());
            for e in &events {
                state.evolve(e);
                encoded.push(serde_bytes::ByteBuf::from(staged.event(e)));
            }
            Outcome::Applied {
                events: encoded,
                entity_revision: cmd.body.target().map_or(0, |t| state.revision(&t)),
                raft_index: pos.raft_index,
            }
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let inner = self.shared.read();
        Ok((inner.last_applied, inner.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let start = std::time::Instant::now();
        let mut staged = Staging::default();
        let mut results = Vec::new();
        let mut inner = self.write();
        for entry in entries {
            let log_id = entry.log_id;
            let _span = tracing::info_span!(
                "apply",
                member = self.member,
                raft_index = log_id.index,
                term = log_id.leader_id.term,
            )
            .entered();
            inner.last_applied = Some(log_id);
            crate::metrics::marks().applying(log_id.index, start);
            let pos = Position {
                raft_index: log_id.index,
                raft_term: log_id.leader_id.term,
            };
            match entry.payload {
                EntryPayload::Blank => results.push(BatchOutcome::default()),
                EntryPayload::Normal(data) => {
                    // Our own log: a batch that does not decode is corruption, and the
                    // node must stop rather than diverge.
                    let commands = pb::CommandBatch::decode(data.encoded.as_slice())
                        .map_err(|e| StorageIOError::apply(log_id, &e))?;
                    let outcomes = commands
                        .commands
                        .iter()
                        .map(|c| apply_command(&mut inner.state, c, pos, &mut staged))
                        .collect();
                    results.push(BatchOutcome { outcomes });
                }
                EntryPayload::Membership(m) => {
                    inner.state.set_raft_members(raft_members(&m));
                    inner.last_membership = StoredMembership::new(Some(log_id), m);
                    results.push(BatchOutcome::default());
                }
            }
        }
        staged.meta(
            APPLIED,
            encode(&(inner.last_applied, &inner.last_membership)).map_err(sto_err)?,
        );
        self.shared.events().commit(staged).map_err(sto_err)?;
        self.notify(&inner);
        crate::metrics::stage_since(crate::metrics::Stage::Apply, start);
        if let Some(last) = inner.last_applied {
            crate::metrics::marks().applied(last.index);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let inner = self.shared.read();
        SnapshotBuilder {
            shared: self.shared.clone(),
            last_applied: inner.last_applied,
            last_membership: inner.last_membership.clone(),
            last_sequence: inner.state.last_sequence(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = self.shared.snapshot_dir.join(format!("incoming-{n}.part"));
        let file = SnapshotFile::create(path)
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let werr = |e: &dyn std::fmt::Display| -> StorageError {
            StorageIOError::write_snapshot(Some(meta.signature()), &io_err(e)).into()
        };
        snapshot.sync().await.map_err(|e| werr(&e))?;
        let _held = self.shared.snapshot_lock.lock().await;
        let path = snapshot.path.clone();

        // Replace the event store with the snapshot's events, folding them as we go.
        // Fill a new generation of the event store, then switch to it: a crash midway
        // leaves the current one whole.
        let current = self.shared.events();
        let events = current.next_generation().map_err(|e| werr(&e))?;
        let fresh = events.clone();
        let meta_owned = meta.clone();
        let load_path = path.clone();
        let bytes = tokio::fs::metadata(&path)
            .await
            .map_err(|e| werr(&e))?
            .len();
        let state = tokio::task::spawn_blocking(move || -> Result<State, String> {
            let mut state = State::new();
            state.set_raft_members(raft_members(meta_owned.last_membership.membership()));
            let mut staged = Staging::default();
            let count = snapshot::read(&load_path, |bytes| {
                let e = pb::Event::decode(bytes.as_slice()).map_err(io_err)?;
                let e = domain::Event::from_pb(&e).map_err(io_err)?;
                if e.sequence != state.next_sequence() {
                    return Err(io_err(format!(
                        "the snapshot holds event {} where {} was due",
                        e.sequence,
                        state.next_sequence()
                    )));
                }
                state.evolve(&e);
                staged.event(&e);
                if e.sequence % 10_000 == 0 {
                    events.commit(std::mem::take(&mut staged)).map_err(io_err)?;
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?;
            staged.meta(
                APPLIED,
                encode(&(meta_owned.last_log_id, &meta_owned.last_membership))
                    .map_err(|e| e.to_string())?,
            );
            let current = StoredSnapshot {
                meta: meta_owned,
                extent: Extent {
                    events: count,
                    bytes,
                },
            };
            staged.meta(SNAPSHOT, encode(&current).map_err(|e| e.to_string())?);
            events.commit(staged).map_err(|e| e.to_string())?;
            Ok(state)
        })
        .await
        .map_err(|e| werr(&e))?
        .map_err(|e| werr(&e))?;
        self.flusher.sync().await.map_err(|e| werr(&e))?;
        // The received file becomes the history file. Until the switch below, the old
        // generation's snapshot is a prefix of it too: both hold the same committed
        // events, encoded the same way.
        let history = self.shared.history();
        tokio::fs::rename(&path, &history)
            .await
            .map_err(|e| werr(&e))?;
        tokio::fs::File::open(&self.shared.snapshot_dir)
            .await
            .map_err(|e| werr(&e))?
            .sync_all()
            .await
            .map_err(|e| werr(&e))?;
        // The switch is one durable write; only then does the old generation go.
        fresh.make_current().map_err(|e| werr(&e))?;
        self.flusher.sync().await.map_err(|e| werr(&e))?;
        *self
            .shared
            .events
            .write()
            .unwrap_or_else(|p| p.into_inner()) = fresh;
        if let Err(e) = current.drop_generation() {
            tracing::warn!(error = %e, "could not drop the replaced event store; it goes at the next start");
        }

        let mut inner = self.write();
        inner.state = state;
        inner.last_applied = meta.last_log_id;
        inner.last_membership = meta.last_membership.clone();
        self.notify(&inner);
        drop(inner);
        tracing::info!(snapshot = %meta.snapshot_id, bytes, "snapshot installed");
        crate::metrics::get().snapshots_installed.inc();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let rerr = |e: &dyn std::fmt::Display| -> StorageError {
            StorageIOError::read_snapshot(None, &io_err(e)).into()
        };
        let Some(current) = self.shared.current_snapshot().map_err(|e| rerr(&e))? else {
            return Ok(None);
        };
        let file = SnapshotFile::view(self.shared.history(), current.extent)
            .await
            .map_err(|e| rerr(&e))?;
        Ok(Some(Snapshot {
            meta: current.meta,
            snapshot: Box::new(file),
        }))
    }
}

/// Builds a snapshot of the state machine as it was when the builder was made: the
/// events up to `last_sequence` (events are append-only, so later applies do not
/// disturb it).
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    last_sequence: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (term, index) = self
            .last_applied
            .map_or((0, 0), |l| (l.leader_id.term, l.index));
        let id = format!("{term}-{index}-{}", self.last_sequence);
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id: id.clone(),
        };
        let werr = |e: &dyn std::fmt::Display| -> StorageError {
            StorageIOError::write_snapshot(Some(meta.signature()), &io_err(e)).into()
        };
        let _held = self.shared.snapshot_lock.lock().await;
        let current = self.shared.current_snapshot().map_err(|e| werr(&e))?;
        let history = self.shared.history();
        if let Some(c) = current
            .as_ref()
            .filter(|c| c.meta.last_log_id >= self.last_applied)
        {
            // Nothing applied since, or an installed snapshot overtook this build.
            let file = SnapshotFile::view(history, c.extent)
                .await
                .map_err(|e| werr(&e))?;
            return Ok(Snapshot {
                meta: c.meta.clone(),
                snapshot: Box::new(file),
            });
        }
        let events = self.shared.events();
        let count = self.last_sequence;
        let base = current.map(|c| c.extent).filter(|e| e.events <= count);
        let path = history.clone();
        let (extent, base) = snapshot::in_background(move || {
            // A history file that is gone or cut short is written again, whole.
            let base = base.filter(|b| snapshot::holds(&path, *b));
            let from = base.map_or(1, |e| e.events + 1);
            let iter = events
                .raw_range(from, count)
                .map(|r| r.map(|(_, v)| v.to_vec()).map_err(io_err));
            let extent = match base {
                Some(base) => snapshot::extend(&path, base, count, iter),
                None => snapshot::write(&path, count, iter),
            }?;
            Ok((extent, base))
        })
        .await
        .map_err(|e| werr(&e))?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            extent,
        };
        let mut staged = Staging::default();
        staged.meta(SNAPSHOT, encode(&stored).map_err(|e| werr(&e))?);
        self.shared.events().commit(staged).map_err(|e| werr(&e))?;
        tracing::info!(
            snapshot = %meta.snapshot_id,
            events = extent.events,
            bytes = extent.bytes,
            appended = extent.bytes.saturating_sub(base.map_or(0, |b| b.bytes)),
            "snapshot built"
        );
        let file = SnapshotFile::view(history, extent)
            .await
            .map_err(|e| werr(&e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored `job_submitted` event with this document (JSON).
    fn submitted(sequence: u64, name: &str, role: &str) -> Vec<u8> {
        let spec_json = format!(
            r#"{{"apiVersion":"cairn.dev/v1","kind":"TrainingJob","metadata":{{"name":"{name}"}},"spec":{{"framework":"generic","roles":{{"run":{role}}}}}}}"#
        );
        pb::Event {
            sequence,
            entity: Some(pb::EntityRef {
                kind: "job".into(),
                name: name.into(),
            }),
            entity_revision: 1,
            payload: Some(pb::event::Payload::JobSubmitted(pb::JobSubmitted {
                spec_json,
            })),
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// What the log recorded is folded as it was accepted, whatever this build's rules
    /// say of it now; what this build cannot read at all stops the fold, naming the
    /// event, instead of folding a different state from the same log.
    #[test]
    fn the_fold_keeps_recorded_documents_as_accepted_and_stops_on_unreadable_ones() {
        let mut state = State::new();
        // Accepted once, refused by today's rules (no replicas, no command).
        let refused_today = submitted(1, "old", r#"{"replicas":0,"command":[]}"#);
        assert!(cairn_domain::job::parse(
            &pb::Event::decode(refused_today.as_slice())
                .map(|e| match e.payload {
                    Some(pb::event::Payload::JobSubmitted(j)) => j.spec_json,
                    _ => String::new(),
                })
                .expect("decodes")
        )
        .is_err());
        fold(&mut state, b"k1", &refused_today).expect("folded as recorded");
        let job = state.job("old").expect("the job is in the state");
        assert_eq!(job.doc.spec.roles["run"].replicas, 0);

        let unreadable = submitted(2, "new", r#"{"replicas":"two","command":["true"]}"#);
        let err = fold(&mut state, b"k2", &unreadable)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("event 2: job_submitted.spec_json: spec.roles.run.replicas"),
            "{err}"
        );
        assert_eq!(state.last_sequence(), 1, "nothing of it was folded");
    }
}
