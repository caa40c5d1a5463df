//! A TCP relay in front of one member, for its peers, so a test can cut it off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use crate::ports::free_port;

/// While cut, the relay closes every connection it carries and every one it accepts,
/// so nothing reaches the member, or waits in its socket buffers to arrive later, until
/// it is healed.
pub struct Relay {
    pub addr: String,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Relay a fresh loopback port to `target` (needs a Tokio runtime).
    pub fn start(target: &str) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", free_port()))?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?.to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (target, c, k) = (target.to_string(), cut.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut conns = k.lock().unwrap_or_else(|p| p.into_inner());
                conns.retain(|t| !t.is_finished());
                conns.push(task);
            }
        });
        Ok(Self {
            addr,
            cut,
            conns,
            accept,
        })
    }

    /// Close every relayed connection and refuse new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for t in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    /// Relay again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
