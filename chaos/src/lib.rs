//! The Cairn chaos harness (`cairn-chaos`).
//!
//! It will run a real Cairn cluster across hosts simulated with network namespaces,
//! inject faults (partitions, packet loss, delay, crashes, full disks) from a printed,
//! replayable seed, and check the recorded histories: no acknowledged write lost,
//! linearizable reads, gapless identical event streams. This version only carries the
//! binary's command line.

/// What this version of the harness can do.
pub const STATUS: &str = "fault injection and history checking are not implemented in this version";
