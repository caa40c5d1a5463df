//! Snapshots: a file holding every event up to the snapshot's last applied entry.
//!
//! The state is a fold of the events, so the events are the whole snapshot: a new or
//! far-behind member that installs one gets the full history, and Raft log compaction
//! never loses an event. Format: the magic `CAIRNSN1`, the event count (u64 BE), then
//! each event as a u32 BE length and its protobuf bytes.
//!
//! openraft streams the file in chunks (`snapshot_max_chunk_size`) and the receiver
//! writes the chunks into a new file, so neither side holds a snapshot in memory.
//!
//! A member keeps one file, [`HISTORY`], and every snapshot it builds is a prefix of it
//! (its [`Extent`]): a new snapshot appends the events applied since the last one, in
//! place, so building one costs only the new part however long the history is. A
//! snapshot handed to openraft is a read-only view of its prefix with its own header,
//! so appending for the next one never changes what a transfer in progress reads.

use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::raft::snapshot_file::{header, HEADER_LEN, MAGIC};
pub use crate::raft::snapshot_file::{Extent, SnapshotFile};

/// The file, in the snapshot directory, whose prefixes are this member's snapshots.
pub const HISTORY: &str = "events.snap";

/// How much lower than the server's other threads a snapshot's thread runs (a nice
/// value). A snapshot of ~785,000 new events competed with the write path at the same
/// priority: at 128 clients the round it landed in had p99 42 ms (29-34 ms at nice 10,
/// 13-17 ms without a snapshot).
const BACKGROUND_NICE: i32 = 10;

/// Run `work` (blocking) on a thread of its own at a lower CPU priority.
pub async fn in_background<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cairn-snapshot".into())
        .spawn(move || {
            // Per thread on Linux; where it fails the snapshot is only less polite.
            let tid = rustix::thread::gettid();
            if let Err(e) = rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE) {
                tracing::debug!(error = %e, "could not lower the snapshot thread's priority");
            }
            let _ = tx.send(work());
        })?;
    rx.await
        .unwrap_or_else(|_| Err(io::Error::other("the snapshot thread panicked")))
}

/// Write a snapshot of `count` events to `path`, durably, replacing the file there
/// (views of the old one keep reading it). Blocking: run it off the async runtime.
pub fn write(
    path: &Path,
    count: u64,
    events: impl Iterator<Item = io::Result<Vec<u8>>>,
) -> io::Result<Extent> {
    let tmp = path.with_extension("tmp");
    let result = write_file(&tmp, count, events);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let extent = result?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(extent)
}

fn write_file(
    tmp: &Path,
    count: u64,
    events: impl Iterator<Item = io::Result<Vec<u8>>>,
) -> io::Result<Extent> {
    let mut file = std::fs::File::create(tmp)?;
    file.write_all(&header(0))?;
    append(
        file,
        Extent {
            events: 0,
            bytes: HEADER_LEN,
        },
        count,
        events,
    )
}

/// Whether the history file at `path` is whole up to `extent`.
pub fn holds(path: &Path, extent: Extent) -> bool {
    std::fs::File::open(path).is_ok_and(|mut f| check_prefix(&mut f, extent).is_ok())
}

/// A snapshot file at least as long as `extent`, or an error saying why not.
fn check_prefix(file: &mut std::fs::File, extent: Extent) -> io::Result<()> {
    read_header(file)?;
    if file.metadata()?.len() < extent.bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the history file is shorter than its last snapshot ({} bytes)",
                extent.bytes
            ),
        ));
    }
    Ok(())
}

/// Extend the history file at `path`, whose prefix `base` is the last snapshot, to a
/// snapshot of `count` events: drop whatever follows the prefix (a build a crash cut
/// short), append `events` (those after the base, in order), and sync. Views of
/// earlier prefixes are undisturbed. Blocking: run it off the async runtime.
pub fn extend(
    path: &Path,
    base: Extent,
    count: u64,
    events: impl Iterator<Item = io::Result<Vec<u8>>>,
) -> io::Result<Extent> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    check_prefix(&mut file, base)?;
    file.set_len(base.bytes)?;
    file.seek(io::SeekFrom::Start(base.bytes))?;
    append(file, base, count, events)
}

/// Append `events` to `file` (positioned at the end of `base`) up to `count`, record
/// the count in the header, and sync.
fn append(
    file: std::fs::File,
    base: Extent,
    count: u64,
    events: impl Iterator<Item = io::Result<Vec<u8>>>,
) -> io::Result<Extent> {
    let mut w = io::BufWriter::new(SyncEvery::new(file));
    let (mut written, mut bytes) = (base.events, base.bytes);
    for e in events {
        let e = e?;
        let len =
            u32::try_from(e.len()).map_err(|_| io::Error::other("event larger than 4 GiB"))?;
        w.write_all(&len.to_be_bytes())?;
        w.write_all(&e)?;
        written += 1;
        bytes += 4 + e.len() as u64;
    }
    if written != count {
        return Err(io::Error::other(format!(
            "snapshot expected {count} events, the store yielded {written}"
        )));
    }
    let file = w.into_inner().map_err(|e| e.into_error())?.file;
    // The whole file reads as the newest snapshot; views carry their own header.
    file.write_all_at(&count.to_be_bytes(), 8)?;
    file.sync_all()?;
    Ok(Extent {
        events: count,
        bytes,
    })
}

/// Bytes of a snapshot written between two syncs.
const SYNC_EVERY_BYTES: u64 = 8 * 1024 * 1024;

/// A file writer that syncs every [`SYNC_EVERY_BYTES`]. A snapshot is hundreds of
/// megabytes; left dirty until one final sync, its pages were written out inside the
/// journal commits of the Raft log's fsyncs, which stalled appends past openraft's
/// replication timeout. Syncing as it goes keeps little of it dirty at any time.
struct SyncEvery {
    file: std::fs::File,
    unsynced: u64,
}

impl SyncEvery {
    fn new(file: std::fs::File) -> Self {
        Self { file, unsynced: 0 }
    }
}

impl Write for SyncEvery {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY_BYTES {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn read_header(r: &mut impl Read) -> io::Result<u64> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a Cairn snapshot",
        ));
    }
    let mut n = [0u8; 8];
    r.read_exact(&mut n)?;
    Ok(u64::from_be_bytes(n))
}

/// Read a snapshot file: calls `each` with every encoded event, in order.
/// Blocking: run it off the async runtime.
pub fn read(path: &Path, mut each: impl FnMut(Vec<u8>) -> io::Result<()>) -> io::Result<u64> {
    let mut r = io::BufReader::new(std::fs::File::open(path)?);
    let count = read_header(&mut r)?;
    for _ in 0..count {
        let mut len = [0u8; 4];
        r.read_exact(&mut len)?;
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        r.read_exact(&mut buf)?;
        each(buf)?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_files_round_trip_and_reject_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.snap");
        let events = vec![b"one".to_vec(), Vec::new(), vec![7u8; 70_000]];
        write(&path, 3, events.clone().into_iter().map(Ok)).expect("write");
        let mut back = Vec::new();
        let n = read(&path, |e| {
            back.push(e);
            Ok(())
        })
        .expect("read");
        assert_eq!((n, back), (3, events));

        std::fs::write(&path, b"garbage!").expect("overwrite");
        let err = read(&path, |_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        // A count that does not match what the store yields is refused.
        assert!(write(&path, 5, std::iter::once(Ok(vec![1]))).is_err());
    }

    fn read_all(path: &Path) -> (u64, Vec<Vec<u8>>) {
        let mut back = Vec::new();
        let n = read(path, |e| {
            back.push(e);
            Ok(())
        })
        .expect("read");
        (n, back)
    }

    /// Everything a view yields, through openraft's access pattern: seek, then read.
    async fn read_view(mut f: SnapshotFile, chunk: usize) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut out = Vec::new();
        loop {
            f.seek(io::SeekFrom::Start(out.len() as u64))
                .await
                .expect("seek");
            let mut buf = vec![0u8; chunk];
            let n = f.read(&mut buf).await.expect("read");
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// A snapshot extends the history file in place; a view of an earlier prefix still
    /// reads exactly that snapshot, with its own count, while the file grows; what a
    /// build cut short appended is dropped by the next one.
    #[tokio::test]
    async fn a_snapshot_extends_the_history_in_place_and_views_keep_their_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(HISTORY);
        let old = vec![b"a".to_vec(), vec![9u8; 70_000], b"c".to_vec()];
        let first = write(&path, 3, old.clone().into_iter().map(Ok)).expect("write");
        assert_eq!(first.events, 3);
        let first_bytes = std::fs::read(&path).expect("read file");
        assert_eq!(first.bytes, first_bytes.len() as u64);
        let view = SnapshotFile::view(path.clone(), first).await.expect("view");

        let new = vec![b"d".to_vec(), b"e".to_vec()];
        let second = extend(&path, first, 5, new.clone().into_iter().map(Ok)).expect("extend");
        assert_eq!(read_all(&path), (5, [old.clone(), new.clone()].concat()));

        // The earlier view: byte for byte the first snapshot, header included, even
        // when its reads straddle the header.
        assert_eq!(read_view(view, 7).await, first_bytes);
        let whole = read_view(
            SnapshotFile::view(path.clone(), second)
                .await
                .expect("view"),
            1 << 16,
        )
        .await;
        assert_eq!(whole, std::fs::read(&path).expect("read file"));
        let mut w = SnapshotFile::view(path.clone(), second)
            .await
            .expect("view");
        let err = tokio::io::AsyncWriteExt::write_all(&mut w, b"x")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);

        // A build that failed midway (the store yielded too few events) leaves a tail;
        // extending from the last good snapshot drops it.
        assert!(extend(&path, second, 9, std::iter::once(Ok(b"junk".to_vec()))).is_err());
        let third = extend(&path, second, 6, std::iter::once(Ok(b"f".to_vec()))).expect("extend");
        let all = [old, new, vec![b"f".to_vec()]].concat();
        assert_eq!(read_all(&path), (6, all));
        assert_eq!(third.bytes, std::fs::metadata(&path).expect("stat").len());

        // A base longer than the file is refused.
        let bad = Extent {
            events: 6,
            bytes: third.bytes + 1,
        };
        let err = extend(&path, bad, 6, std::iter::empty()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // The builder can tell beforehand, and writes the file again instead.
        assert!(holds(&path, third) && !holds(&path, bad));
        assert!(!holds(&dir.path().join("missing.snap"), first));
    }
}
