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

use super::{decode, encode, Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::store::durable::Flusher;

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

    /// Remove the entries whose keys fall in `range`, in one batch.
    fn remove(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), StorageIOError<NodeId>> {
        let mut batch = sled::Batch::default();
        for kv in self.log.range(range) {
            let (k, _) = kv.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))
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
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            batch.insert(&key(entry.log_id.index), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        self.flusher
            .after_sync(move |r| callback.log_io_completed(r));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.remove(key(log_id.index)..)?;
        self.sync().await?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash midway leaves entries below it, never a
        // log whose first entry is unexplained.
        self.write_meta(LAST_PURGED, &log_id)?;
        self.remove(..=key(log_id.index))?;
        self.sync().await?;
        Ok(())
    }
}
