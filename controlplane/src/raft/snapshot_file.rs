//! The snapshot as openraft streams it ([`SnapshotFile`], the type configuration's
//! `SnapshotData`): a file that is read, written and seeked, and that knows its path so
//! the state machine can move a received one into place.
//!
//! A snapshot is the magic `CAIRNSN1`, the event count (u64 BE), then each event as a
//! u32 BE length and its protobuf bytes. A snapshot of this member's own is a read-only
//! *view* of a prefix ([`Extent`]) of its history file under a header of its own, so
//! appending to the file for the next snapshot never changes what a transfer in
//! progress reads. The history file itself is the store's (`store::snapshot`).

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

pub const MAGIC: &[u8; 8] = b"CAIRNSN1";
pub const HEADER_LEN: u64 = 16;

/// A snapshot's header: the magic, then the event count.
pub fn header(count: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&count.to_be_bytes());
    h
}

/// Where a snapshot ends in the history file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    pub events: u64,
    /// Length of the prefix, header included.
    pub bytes: u64,
}

/// A snapshot file, as openraft's `SnapshotData`: readable, writable and seekable,
/// and it knows its path so the state machine can move it into place. A snapshot of
/// this member's own is a view of a prefix of the history file, and read-only.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
    file: tokio::fs::File,
    view: Option<View>,
}

/// A prefix of the history file under a header of its own.
#[derive(Debug)]
struct View {
    header: [u8; HEADER_LEN as usize],
    len: u64,
    pos: u64,
}

impl SnapshotFile {
    /// The snapshot that is the prefix `extent` of the history file at `path`.
    pub async fn view(path: PathBuf, extent: Extent) -> io::Result<Self> {
        use tokio::io::AsyncSeekExt;
        let mut file = tokio::fs::File::open(&path).await?;
        file.seek(io::SeekFrom::Start(HEADER_LEN)).await?;
        Ok(Self {
            path,
            file,
            view: Some(View {
                header: header(extent.events),
                len: extent.bytes,
                pos: 0,
            }),
        })
    }

    /// A new file to receive a snapshot into.
    pub async fn create(path: PathBuf) -> io::Result<Self> {
        let file = tokio::fs::File::create(&path).await?;
        Ok(Self {
            path,
            file,
            view: None,
        })
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
        let this = &mut *self;
        let Some(v) = this.view.as_mut() else {
            return Pin::new(&mut this.file).poll_read(cx, buf);
        };
        if v.pos < HEADER_LEN {
            let from = v.pos as usize;
            let n = (HEADER_LEN as usize - from).min(buf.remaining());
            buf.put_slice(&v.header[from..from + n]);
            v.pos += n as u64;
            return Poll::Ready(Ok(()));
        }
        // Never past the prefix: the file may have grown since.
        let left = v.len.saturating_sub(v.pos);
        let want = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        if want == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut part = ReadBuf::new(buf.initialize_unfilled_to(want));
        ready!(Pin::new(&mut this.file).poll_read(cx, &mut part))?;
        let n = part.filled().len();
        buf.advance(n);
        v.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.view.is_some() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a snapshot of the history file is read-only",
            )));
        }
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
        let this = &mut *self;
        let Some(v) = this.view.as_mut() else {
            return Pin::new(&mut this.file).start_seek(position);
        };
        let target = match position {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(d) => v.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => v.pos.checked_add_signed(d),
        };
        v.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        // The header is served from memory; past it, the view and the file agree.
        Pin::new(&mut this.file).start_seek(io::SeekFrom::Start(v.pos.max(HEADER_LEN)))
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = &mut *self;
        let at = ready!(Pin::new(&mut this.file).poll_complete(cx))?;
        Poll::Ready(Ok(this.view.as_ref().map_or(at, |v| v.pos)))
    }
}
