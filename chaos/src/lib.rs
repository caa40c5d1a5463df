//! The Cairn chaos harness (`cairn-chaos`).
//!
//! A campaign runs a real Cairn cluster across hosts simulated with network namespaces
//! ([`net`], [`cluster`]), drives recorded workloads against it ([`workload`]), and
//! injects faults on a schedule drawn from a printed seed ([`campaign`]): partitions
//! (the leader alone, random halves), packet loss (iptables `statistic`), SIGKILL and
//! restart of the leader or any member, SIGSTOP/SIGCONT pauses. After healing it checks
//! that no acknowledged creation was lost or duplicated, that every register history is
//! linearizable ([`checker`]), that event streams were gapless, and that every member
//! holds the same log.
//!
//! Not covered yet: delay and reordering (no netem on this kernel: they need a
//! fault-injecting TCP proxy), bandwidth limits, full and slow disks, clock jumps, and
//! membership changes during faults.

pub mod campaign;
pub mod checker;
pub mod cluster;
pub mod net;
pub mod workload;
