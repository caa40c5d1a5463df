//! Making sled's writes durable.
//!
//! `sled::Db::flush` writes its log buffers and `fdatasync`s them (a change of the
//! vendored sled: upstream's `sync_file_range` reached neither the drive's cache nor the
//! file's size), but sled never syncs the blob files it writes for large values. So a
//! flush here is: `sled::Db::flush`, then `fdatasync` of any new blob file and an
//! `fsync` of the blob directory.
//!
//! All requests go to one flusher thread, which coalesces every request that arrived
//! while it was busy into a single flush (group commit at the storage level) and answers
//! them in arrival order.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// A request for durability: called back once everything written before it is on disk.
type Waiter = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// Handle to the flusher thread.
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Waiter>,
}

impl Flusher {
    /// Start the flusher thread for the sled database at `dir`.
    pub fn start(db: sled::Db, dir: &Path) -> std::io::Result<Self> {
        let mut disk = SledFiles::open(db, dir)?;
        let (tx, rx) = mpsc::channel::<Waiter>();
        std::thread::Builder::new()
            .name("cairn-flusher".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiters = vec![first];
                    waiters.extend(rx.try_iter());
                    let result = disk.sync();
                    for w in waiters {
                        w(result.as_ref().map(|_| ()).map_err(clone_err));
                    }
                }
            })?;
        Ok(Self { tx })
    }

    /// Call `done` once everything written so far is durable.
    pub fn after_sync(&self, done: impl FnOnce(std::io::Result<()>) + Send + 'static) {
        if let Err(mpsc::SendError(w)) = self.tx.send(Box::new(done)) {
            w(Err(std::io::Error::other("the flusher thread has stopped")));
        }
    }

    /// Wait until everything written so far is durable.
    pub async fn sync(&self) -> std::io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.after_sync(move |r| {
            let _ = tx.send(r);
        });
        rx.await
            .unwrap_or_else(|_| Err(std::io::Error::other("the flusher thread has stopped")))
    }
}

fn clone_err(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

/// The files of one sled database that a flush must sync.
struct SledFiles {
    db: sled::Db,
    blobs: PathBuf,
    synced_blobs: HashSet<std::ffi::OsString>,
}

impl SledFiles {
    fn open(db: sled::Db, dir: &Path) -> std::io::Result<Self> {
        // The database's files were just created: make their directory entries durable.
        File::open(dir)?.sync_all()?;
        if let Some(parent) = dir.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(Self {
            db,
            blobs: dir.join("blobs"),
            synced_blobs: HashSet::new(),
        })
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let start = std::time::Instant::now();
        let bytes = self.db.flush().map_err(std::io::Error::other)?;
        self.sync_new_blobs()?;
        let m = crate::metrics::get();
        m.fsync_seconds.observe(start.elapsed().as_secs_f64());
        m.flushed_bytes.inc_by(bytes as u64);
        Ok(())
    }

    fn sync_new_blobs(&mut self) -> std::io::Result<()> {
        let mut present = HashSet::new();
        let mut new = false;
        for entry in std::fs::read_dir(&self.blobs)? {
            let name = entry?.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(self.blobs.join(&name)) {
                    // sled collected it meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    f => f?.sync_data()?,
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            File::open(&self.blobs)?.sync_all()?;
        }
        // Forget blobs sled has collected.
        self.synced_blobs = present;
        Ok(())
    }
}
