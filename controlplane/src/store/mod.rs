//! Storage on sled: the event store and its indexes, the state machine, snapshots, and
//! the durability rules that tie them to the disk.
//!
//! One sled database per server (`<data-dir>/db`) holds the Raft log (see
//! `raft::log_store`) and the state machine. Snapshot files live in
//! `<data-dir>/snapshots`.

pub mod durable;
pub mod events;
pub mod snapshot;
pub mod state_machine;

use std::path::Path;

use durable::Flusher;
use state_machine::StateMachine;

use crate::raft::log_store::LogStore;

/// sled's page cache (its default is 1 GiB).
const CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// Open (or create) the storage of a server in `data_dir`.
pub fn open(data_dir: &Path) -> anyhow::Result<(LogStore, StateMachine)> {
    use anyhow::Context;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let db_dir = data_dir.join("db");
    let db = sled::Config::new()
        .path(&db_dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(CACHE_BYTES)
        .open()
        .with_context(|| format!("opening the sled database in {}", db_dir.display()))?;
    let flusher = Flusher::start(db.clone(), &db_dir).context("starting the flusher")?;
    let log = LogStore::open(&db, flusher.clone()).context("opening the Raft log")?;
    let sm = StateMachine::open(&db, flusher, data_dir.join("snapshots"))
        .context("opening the state machine")?;
    Ok((log, sm))
}
