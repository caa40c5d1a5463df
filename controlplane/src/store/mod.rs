//! Storage on sled: the event store and its indexes, the state machine, snapshots, and
//! the durability rules that tie them to the disk.
//!
//! One sled database per server (`<data-dir>/db`) holds the Raft log ([`log`]) and the
//! state machine ([`state_machine`], with the event store and its indexes in
//! [`events`]); [`durable`] makes their writes durable before they are acknowledged.
//! Snapshot files ([`snapshot`]) live in `<data-dir>/snapshots`.

pub mod durable;
pub mod events;
pub mod log;
pub mod snapshot;
pub mod state_machine;

use std::path::Path;

use durable::Flusher;
use state_machine::StateMachine;

use log::LogStore;

/// sled's log segment size (its default is 512 KiB). A page over a quarter of a segment
/// is written to a blob file of its own, which costs a file, its fsync and a directory
/// fsync; with 512 KiB segments the Raft log's pages (a few group-committed batches)
/// crossed that line at every split.
const SEGMENT_BYTES: usize = 8 * 1024 * 1024;

/// Open (or create) the storage of member `member` in `data_dir`, with a page cache of
/// `cache_bytes`.
pub fn open(
    data_dir: &Path,
    member: u64,
    cache_bytes: u64,
) -> anyhow::Result<(LogStore, StateMachine)> {
    use anyhow::Context;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let db_dir = data_dir.join("db");
    let db = open_db(&db_dir, cache_bytes)
        .with_context(|| format!("opening the sled database in {}", db_dir.display()))?;
    let flusher = Flusher::start(db.clone(), &db_dir).context("starting the flusher")?;
    let log = LogStore::open(&db, flusher.clone()).context("opening the Raft log")?;
    let sm = StateMachine::open(&db, flusher, data_dir.join("snapshots"), member)
        .context("opening the state machine")?;
    Ok((log, sm))
}

fn open_db(db_dir: &Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    let segment_size = segment_size_of(db_dir).unwrap_or(SEGMENT_BYTES);
    if segment_size != SEGMENT_BYTES {
        tracing::info!(
            segment_size,
            "the database keeps the segment size it was created with"
        );
    }
    sled::Config::new()
        .path(db_dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(cache_bytes)
        .segment_size(segment_size)
        .open()
}

/// The segment size an existing database was created with (sled records it in `conf`
/// and refuses to open the database with another one): databases created before Cairn
/// set its own size keep sled's default.
fn segment_size_of(db_dir: &Path) -> Option<usize> {
    let conf = std::fs::read(db_dir.join("conf")).ok()?;
    String::from_utf8_lossy(&conf)
        .lines()
        .find_map(|l| l.strip_prefix("segment_size: ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::open_db;

    /// Opens a database that was just dropped. sled's background threads may still hold
    /// the previous instance's file lock for a moment after the drop, so a lock refusal
    /// is retried for up to five seconds; any other error is returned at once.
    fn reopen(path: &std::path::Path) -> sled::Db {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match open_db(path, 128 << 20) {
                Ok(db) => return db,
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("reopening {}: {e}", path.display()),
            }
        }
    }

    fn value(i: u32) -> Vec<u8> {
        let len = 200 + (i as usize * 37) % 6000;
        (0..len).map(|j| (i as usize + j) as u8).collect()
    }

    /// sled's segment buffers are reused (vendor/sled/PATCHES.md), so later segments are
    /// written from buffers that earlier segments used: what is read back after a
    /// reopen must be exactly what was written, across many segments, partial flushes
    /// and page consolidations.
    #[test]
    fn a_database_reopens_with_every_write_made_through_reused_segment_buffers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        const N: u32 = 16_000;
        {
            let db = open_db(&path, 128 << 20).expect("open");
            let tree = db.open_tree("t").expect("tree");
            for i in 0..N {
                tree.insert(i.to_be_bytes(), value(i)).expect("insert");
                if i % 200 == 0 {
                    db.flush().expect("flush");
                }
                if i % 7 == 0 && i > 0 {
                    tree.remove((i - 1).to_be_bytes()).expect("remove");
                }
            }
            db.flush().expect("flush");
            assert!(
                db.size_on_disk().expect("size") > 4 * super::SEGMENT_BYTES as u64,
                "many segments"
            );
        }
        let db = reopen(&path);
        let tree = db.open_tree("t").expect("tree");
        let mut seen = 0;
        for i in 0..N {
            let got = tree.get(i.to_be_bytes()).expect("get");
            let removed = (i + 1) % 7 == 0 && i + 1 < N;
            if removed {
                assert_eq!(got, None, "key {i} was removed");
            } else {
                assert_eq!(got.as_deref(), Some(&value(i)[..]), "key {i}");
                seen += 1;
            }
        }
        assert_eq!(tree.len(), seen);
    }

    /// The file is written a segment ahead of the log (vendor/sled/PATCHES.md, change
    /// 6): once the log is past its first segment, the file ends where the segment after
    /// the log's ends, a whole number of segments; without the fill it ends wherever
    /// the last write did.
    #[test]
    fn the_file_is_written_a_segment_ahead_of_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let db = open_db(&path, 128 << 20).expect("open");
        let tree = db.open_tree("t").expect("tree");
        let seg = super::SEGMENT_BYTES as u64;
        let (mut i, mut written) = (0u32, 0u64);
        while written < seg + seg / 2 {
            let v = value(i);
            written += v.len() as u64;
            tree.insert(i.to_be_bytes(), v).expect("insert");
            i += 1;
            if i.is_multiple_of(100) {
                db.flush().expect("flush");
            }
        }
        db.flush().expect("flush");
        let file = path.join("db");
        // The next segment's fill runs in the background.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let len = loop {
            let len = std::fs::metadata(&file).expect("metadata").len();
            if (len >= 3 * seg && len.is_multiple_of(seg)) || std::time::Instant::now() > deadline {
                break len;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(
            len >= 3 * seg && len.is_multiple_of(seg),
            "the file is {len} bytes: not whole segments past the log's"
        );
        drop(tree);
        drop(db);
        let db = reopen(&path);
        let tree = db.open_tree("t").expect("tree");
        assert_eq!(
            tree.len(),
            i as usize,
            "every write is read back after a reopen"
        );
        for k in [0, i / 2, i - 1] {
            let got = tree.get(k.to_be_bytes()).expect("get");
            assert_eq!(got.as_deref(), Some(&value(k)[..]), "key {k}");
        }
    }

    /// A database created with sled's default segment size (as Cairn's were before it
    /// set its own) opens with that size and keeps its data; a new one gets ours.
    #[test]
    fn a_database_keeps_the_segment_size_it_was_created_with() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("old");
        {
            let db = sled::Config::new()
                .path(&old)
                .open()
                .expect("open with sled's defaults");
            db.insert(b"k", b"v".as_slice()).expect("insert");
            db.flush().expect("flush");
        }
        assert_eq!(super::segment_size_of(&old), Some(512 * 1024));
        let db = reopen(&old);
        assert_eq!(db.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
        drop(db);

        let new = dir.path().join("new");
        assert_eq!(super::segment_size_of(&new), None);
        drop(open_db(&new, 128 << 20).expect("a new database"));
        assert_eq!(super::segment_size_of(&new), Some(super::SEGMENT_BYTES));
    }
}
