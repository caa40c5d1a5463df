//! The Cairn chaos harness (`cairn-chaos`).
//!
//! A campaign runs a real Cairn cluster across hosts simulated with network namespaces
//! ([`net`]; the servers in them, started through the `cairn-tests` harness, in
//! [`cluster`], their disks in [`disk`]), drives recorded workloads against it
//! ([`workload`]), and injects faults on a schedule drawn from a printed seed
//! ([`campaign`]): partitions (the leader alone, random halves), packet loss (iptables
//! `statistic`), bandwidth limits (`tc tbf`), delay with jitter (a user-space TCP proxy,
//! [`proxy`]: this kernel has no netem), SIGKILL and restart of the leader or any
//! member, SIGSTOP/SIGCONT pauses, a full disk (data on a small ext4 loop-device disk,
//! filled up), a slow disk (that disk's writes throttled by a blkio cgroup: a few writes
//! per second), and membership changes (a follower removed, then added back and
//! promoted). After healing it checks that no acknowledged creation was lost or
//! duplicated, that every register history is linearizable ([`checker`]), that event
//! streams were gapless, and that every member holds the same log.
//!
//! Before anything else it checks that the machine has what a campaign needs: root, the
//! programs it runs and the server binary ([`prerequisites`]).
//!
//! Not covered: reordering within a connection (TCP forbids it; the proxy's jitter
//! reorders only across connections), and clock jumps (a time namespace cannot move
//! `CLOCK_REALTIME`, and libfaketime breaks `clock_nanosleep` here).

pub mod campaign;
pub mod checker;
pub mod cluster;
pub mod disk;
pub mod net;
pub mod prerequisites;
pub mod proxy;
pub mod workload;
