//! The Raft log and vote, in sled.
//!
//! Tree `raft_log`: big-endian index → bincode `Entry`. Tree `raft_meta`: the vote, the
//! committed log id and the last purged log id. Appends are acknowledged to openraft
//! only once the flusher has made them durable; votes and truncations are durable
//! before the call returns, so they take effect only once on disk.

// openraft's StorageIOError is large, and it is what these helpers must return.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};

use super::durable::Flusher;
use crate::raft::{decode, encode, Entry, LogId, NodeId, StorageError, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log store. Cheap to clone: clones share the trees.
#[derive(Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
    flusher: Flusher,
}

impl LogStore {
    pub fn open(db: &sled::Db, flusher: Flusher) -> Result<Self, sled::Error> {
        Ok(Self {
            log: db.open_tree("raft_log")?,
            meta: db.open_tree("raft_meta")?,
            flusher,
        })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageIOError<NodeId>> {
        let Some(bytes) = self.meta.get(key).map_err(|e| StorageIOError::read(&e))? else {
            return Ok(None);
        };
        decode(&bytes)
            .map(Some)
            .map_err(|e| StorageIOError::read(&e))
    }

    fn write_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        v: &T,
    ) -> Result<(), StorageIOError<NodeId>> {
        let bytes = encode(v).map_err(|e| StorageIOError::write(&e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    /// Delete the entries up to the recorded purge point, in the background. A purge
    /// covers tens of thousands of entries; deleting them on Raft's own task stalled
    /// heartbeats long enough under load to cost a leader its term. Entries at or below
    /// the purge point are never read, so they may linger until this finishes (or, after
    /// a crash, until the next start runs it again).
    pub fn collect_purged(&self) {
        let Ok(Some(purged)) = self.read_meta::<LogId>(LAST_PURGED) else {
            return;
        };
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let removed = match remove_last_first(&log, ..=key(purged.index)) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "removing purged log entries; the next start tries again");
                    return;
                }
            };
            tracing::debug!(
                removed,
                upto = purged.index,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "purged log entries removed"
            );
        });
    }

    /// The committed index last saved (0 when none).
    pub fn committed_index(&self) -> u64 {
        self.read_meta::<Option<LogId>>(COMMITTED)
            .ok()
            .flatten()
            .flatten()
            .map_or(0, |l| l.index)
    }

    async fn sync(&self) -> Result<(), StorageIOError<NodeId>> {
        self.flusher
            .sync()
            .await
            .map_err(|e| StorageIOError::write(&e))
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageIOError<NodeId>> {
        let Some((_, v)) = self.log.last().map_err(|e| StorageIOError::read_logs(&e))? else {
            return Ok(None);
        };
        let e: Entry = decode(&v).map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(Some(e.log_id))
    }
}

/// Remove the entries whose keys fall in `range`, one at a time and last first: a
/// crash midway leaves a log without a hole. Returns how many went.
fn remove_last_first(log: &sled::Tree, range: impl RangeBounds<[u8; 8]>) -> sled::Result<usize> {
    let mut removed = 0;
    for kv in log.range(range).rev() {
        log.remove(kv?.0)?;
        removed += 1;
    }
    Ok(removed)
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        // Purged entries may linger until `collect_purged` has removed them.
        let purged: Option<LogId> = self.read_meta(LAST_PURGED)?;
        let start = start.max(purged.map_or(0, |p| p.index + 1));
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(key(*i)),
            Bound::Excluded(i) => Bound::Excluded(key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for kv in self.log.range((Bound::Included(key(start)), end)) {
            let (_, v) = kv.map_err(|e| StorageIOError::read_logs(&e))?;
            out.push(decode(&v).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED)?;
        let last_log_id = match (self.last_entry_id()?, last_purged_log_id) {
            // Only lingering purged entries are left.
            (Some(last), Some(purged)) if last.index <= purged.index => Some(purged),
            (last, purged) => last.or(purged),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote)?;
        self.sync().await?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.read_meta(VOTE)?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(COMMITTED, &committed)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // One insert per entry, in index order (not a sled batch, whose process-wide
        // lock waits for flushes): sled recovers a prefix of its writes, so a crash
        // midway leaves the first entries of the append and never a hole.
        let start = std::time::Instant::now();
        for entry in entries {
            let proposed = match &entry.payload {
                openraft::EntryPayload::Normal(batch) => batch.proposed,
                _ => None,
            };
            crate::metrics::marks().appending(entry.log_id.index, proposed, start);
            let bytes = encode(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            self.log
                .insert(key(entry.log_id.index), bytes)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        self.flusher.after_sync(move |r| {
            crate::metrics::stage_since(crate::metrics::Stage::LogFlush, start);
            callback.log_io_completed(r)
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        remove_last_first(&self.log, key(log_id.index)..)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.sync().await?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The purge point is what counts: entries below it are never read again, and
        // are deleted in the background.
        self.write_meta(LAST_PURGED, &log_id)?;
        self.sync().await?;
        self.collect_purged();
        Ok(())
    }
}
