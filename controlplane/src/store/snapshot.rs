//! Snapshots: a file holding every event up to the snapshot's last applied entry.
//!
//! The state is a fold of the events, so the events are the whole snapshot: a new or
//! far-behind member that installs one gets the full history, and Raft log compaction
//! never loses an event. Format: the magic `CAIRNSN1`, the event count (u64 BE), then
//! each event as a u32 BE length and its protobuf bytes.
//!
//! openraft streams the file in chunks (`snapshot_max_chunk_size`) and the receiver
//! writes the chunks into a new file, so neither side holds a snapshot in memory.

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

/// Write a snapshot of `events` (encoded, in sequence order) to `path`, durably.
/// Blocking: run it off the async runtime.
pub fn write(
    path: &Path,
    count: u64,
    events: impl Iterator<Item = io::Result<Vec<u8>>>,
) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut w = io::BufWriter::new(std::fs::File::create(&tmp)?);
    w.write_all(MAGIC)?;
    w.write_all(&count.to_be_bytes())?;
    let mut written = 0u64;
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
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Read a snapshot file: calls `each` with every encoded event, in order.
/// Blocking: run it off the async runtime.
pub fn read(path: &Path, mut each: impl FnMut(Vec<u8>) -> io::Result<()>) -> io::Result<u64> {
    let mut r = io::BufReader::new(std::fs::File::open(path)?);
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
    let count = u64::from_be_bytes(n);
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
}
