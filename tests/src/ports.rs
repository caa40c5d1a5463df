//! Loopback ports for servers and relays, chosen so that nothing else takes them.

use std::sync::atomic::{AtomicU32, Ordering};

/// A loopback port free a moment ago, for a server to listen on.
///
/// Ports come from 24000-31999, below the kernel's ephemeral range (32768-60999): a
/// port the kernel handed out from that range could be taken by any outgoing
/// connection before the server binds it, and a cluster whose first member cannot bind
/// never forms. (The agent tests lease ports in 21000-23999.) Each process starts at
/// its own offset and never hands out a port twice.
///
/// # Panics
///
/// When every port of the range is taken.
pub fn free_port() -> u16 {
    const LO: u32 = 24_000;
    const SPAN: u32 = 8_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id().wrapping_mul(97) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LO + (offset + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LO}-{}", LO + SPAN - 1)
}
