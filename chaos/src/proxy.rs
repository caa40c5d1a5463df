//! A fault-injecting TCP proxy for delay: this kernel has no `netem`, so delay between
//! members is added in user space.
//!
//! One listener per ordered pair of hosts (i → j), on the harness's address. While a
//! delay fault is on, each host's outgoing connections to a peer's server port are
//! redirected (iptables DNAT in the host's namespace) to the pair's listener, which
//! forwards to the peer and holds every chunk for the configured delay plus random
//! jitter. Order within a connection is kept (it is TCP); chunks of different
//! connections overtake each other when the jitter says so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::net::{in_ns, Net, SERVER_PORT};

/// The listener port of pair (from → to).
fn pair_port(from: usize, to: usize) -> u16 {
    17_000 + (from * 16 + to) as u16
}

#[derive(Default)]
struct Shared {
    delay_ms: AtomicU64,
    jitter_ms: AtomicU64,
    connections: Mutex<Vec<JoinHandle<()>>>,
}

/// The proxies of one campaign.
pub struct DelayProxy {
    shared: Arc<Shared>,
    listeners: Vec<JoinHandle<()>>,
}

impl DelayProxy {
    /// Listen for every ordered pair of hosts (idle until [`DelayProxy::delay`]).
    pub async fn start(net: &Net) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared::default());
        let mut listeners = Vec::new();
        for from in &net.hosts {
            for to in net.hosts.iter().filter(|h| h.index != from.index) {
                let listener =
                    TcpListener::bind((net.harness_ip.as_str(), pair_port(from.index, to.index)))
                        .await?;
                let target = format!("{}:{SERVER_PORT}", to.ip);
                listeners.push(tokio::spawn(accept(listener, target, shared.clone())));
            }
        }
        Ok(Self { shared, listeners })
    }

    /// Delay all traffic between members by `delay` ± `jitter`: redirect new
    /// connections through the proxy and reset the direct ones.
    pub fn delay(&self, net: &Net, delay: Duration, jitter: Duration) -> anyhow::Result<()> {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
        self.shared
            .jitter_ms
            .store(jitter.as_millis() as u64, Ordering::Relaxed);
        let port = SERVER_PORT.to_string();
        for from in &net.hosts {
            for to in net.hosts.iter().filter(|h| h.index != from.index) {
                let via = format!("{}:{}", net.harness_ip, pair_port(from.index, to.index));
                in_ns(
                    &from.ns,
                    &[
                        "iptables",
                        "-t",
                        "nat",
                        "-A",
                        "OUTPUT",
                        "-p",
                        "tcp",
                        "-d",
                        &to.ip,
                        "--dport",
                        &port,
                        "-j",
                        "DNAT",
                        "--to-destination",
                        &via,
                    ],
                )?;
                // Established direct connections still carry the peer's address: reset
                // them, so the members reconnect through the proxy.
                in_ns(
                    &from.ns,
                    &[
                        "iptables",
                        "-A",
                        "OUTPUT",
                        "-p",
                        "tcp",
                        "-d",
                        &to.ip,
                        "--dport",
                        &port,
                        "-j",
                        "REJECT",
                        "--reject-with",
                        "tcp-reset",
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Stop delaying: remove the redirects and close the proxied connections, so the
    /// members reconnect directly (and later partitions apply to them).
    pub fn clear(&self, net: &Net) -> anyhow::Result<()> {
        for h in &net.hosts {
            in_ns(&h.ns, &["iptables", "-t", "nat", "-F"])?;
        }
        self.shared.delay_ms.store(0, Ordering::Relaxed);
        self.shared.jitter_ms.store(0, Ordering::Relaxed);
        self.close_connections();
        Ok(())
    }
}

impl DelayProxy {
    fn close_connections(&self) {
        let mut conns = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for c in conns.drain(..) {
            c.abort();
        }
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
        self.close_connections();
    }
}

async fn accept(listener: TcpListener, target: String, shared: Arc<Shared>) {
    while let Ok((inbound, _)) = listener.accept().await {
        let (target, s) = (target.clone(), shared.clone());
        let task = tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::join!(pump(ri, wo, s.clone()), pump(ro, wi, s));
        });
        shared
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }
}

/// Copy one direction, holding each chunk until its delivery time.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    s: Arc<Shared>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut last = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = s.delay_ms.load(Ordering::Relaxed);
            let jitter = s.jitter_ms.load(Ordering::Relaxed);
            let extra = if jitter > 0 {
                rand::thread_rng().gen_range(0..=jitter)
            } else {
                0
            };
            // Never before an earlier chunk of this connection: TCP keeps order.
            last = last.max(Instant::now() + Duration::from_millis(delay + extra));
            if tx.send((last, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}
