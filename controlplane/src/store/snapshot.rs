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
//! A new snapshot extends the last one: it copies that file's events and appends the
//! events applied since, so building one reads only the new part of the event store.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

const MAGIC: &[u8; 8] = b"CAIRNSN1";

/// A snapshot file, as openraft's `SnapshotData`: readable, writable and seekable,
/// and it knows its path so the state machine can move it into place.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
    file: tokio::fs::File,
}

impl SnapshotFile {
    pub async fn open(path: PathBuf) -> io::Result<Self> {
        let file = tokio::fs::File::open(&path).await?;
        Ok(Self { path, file })
    }

    pub async fn create(path: PathBuf) -> io::Result<Self> {
        let file = tokio::fs::File::create(&path).await?;
        Ok(Self { path, file })
    }

    /// Flush and fsync what was written.
    pub async fn sync(&mut self) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await?;
        self.file.sync_all().await
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }
    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}

/// Write a snapshot of `count` events to `path`, durably: the events of the snapshot
/// `base` (a file and its event count) when given, then `events`, the encoded events
/// after it in sequence order. Extending the previous snapshot copies its bytes instead
/// of reading and re-encoding the whole history from the event store each time.
/// Blocking: run it off the async runtime.
pub fn write(
    path: &Path,
    count: u64,
    base: Option<(&Path, u64)>,
    events: impl Iterator<Item = io::Result<Vec<u8>>>,
) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let result = write_file(&tmp, count, base, events);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn write_file(
    tmp: &Path,
    count: u64,
    base: Option<(&Path, u64)>,
    events: impl Iterator<Item = io::Result<Vec<u8>>>,
) -> io::Result<()> {
    let mut w = io::BufWriter::new(SyncEvery::new(std::fs::File::create(tmp)?));
    w.write_all(MAGIC)?;
    w.write_all(&count.to_be_bytes())?;
    let mut written = 0u64;
    if let Some((base, base_count)) = base {
        let mut r = std::fs::File::open(base)?;
        let found = read_header(&mut r)?;
        if found != base_count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the base snapshot holds {found} events, not {base_count}"),
            ));
        }
        io::copy(&mut r, &mut w)?;
        written = base_count;
    }
    for e in events {
        let e = e?;
        let len =
            u32::try_from(e.len()).map_err(|_| io::Error::other("event larger than 4 GiB"))?;
        w.write_all(&len.to_be_bytes())?;
        w.write_all(&e)?;
        written += 1;
    }
    if written != count {
        return Err(io::Error::other(format!(
            "snapshot expected {count} events, the store yielded {written}"
        )));
    }
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.file.sync_all()
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

/// The event count of a snapshot file, from its header.
pub fn count(path: &Path) -> io::Result<u64> {
    read_header(&mut std::fs::File::open(path)?)
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
        write(&path, 3, None, events.clone().into_iter().map(Ok)).expect("write");
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
        assert!(write(&path, 5, None, std::iter::once(Ok(vec![1]))).is_err());
    }

    /// A snapshot that extends the previous one holds its events, then the new ones;
    /// a base whose header disagrees with the count it is taken for is refused.
    #[test]
    fn a_snapshot_extends_the_previous_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second) = (dir.path().join("1.snap"), dir.path().join("2.snap"));
        let old = vec![b"a".to_vec(), vec![9u8; 70_000], b"c".to_vec()];
        write(&first, 3, None, old.clone().into_iter().map(Ok)).expect("write");
        let new = vec![b"d".to_vec(), b"e".to_vec()];
        write(
            &second,
            5,
            Some((&first, 3)),
            new.clone().into_iter().map(Ok),
        )
        .expect("extend");
        assert_eq!(count(&second).expect("count"), 5);
        let mut back = Vec::new();
        read(&second, |e| {
            back.push(e);
            Ok(())
        })
        .expect("read");
        assert_eq!(back, [old, new].concat());

        let third = dir.path().join("3.snap");
        let err = write(&third, 6, Some((&first, 4)), std::iter::empty()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(!third.exists() && !third.with_extension("tmp").exists());
    }
}
