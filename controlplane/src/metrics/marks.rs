//! When each recent Raft entry reached a point of its timeline on this member (appended
//! to the log, applied), by log index: what lets stages that openraft runs in its own
//! tasks be timed from the outside — from the append to sending it to a follower, to
//! applying it, and from the apply to the proposer's answer.
//!
//! A ring of the last [`SLOTS`] indexes; an index overwritten before it is asked for
//! is simply not timed.

use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use super::{stage, stage_since, Stage};

const SLOTS: usize = 4096;

#[derive(Clone, Copy)]
struct Slot {
    index: u64,
    appended: Option<Instant>,
    applied: Option<Instant>,
}

pub struct Marks {
    slots: Mutex<Vec<Slot>>,
}

static MARKS: LazyLock<Marks> = LazyLock::new(Marks::new);

/// This process's marks.
pub fn marks() -> &'static Marks {
    &MARKS
}

impl Marks {
    fn new() -> Self {
        let empty = Slot {
            index: u64::MAX,
            appended: None,
            applied: None,
        };
        Self {
            slots: Mutex::new(vec![empty; SLOTS]),
        }
    }

    fn with<T>(&self, index: u64, f: impl FnOnce(&mut Slot) -> T) -> T {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut slots[(index % SLOTS as u64) as usize])
    }

    /// Entry `index` is being appended to this member's log now; `proposed`, when this
    /// member proposed it.
    pub fn appending(&self, index: u64, proposed: Option<Instant>, now: Instant) {
        if let Some(p) = proposed {
            stage(Stage::ToLog, now.saturating_duration_since(p));
        }
        self.with(index, |s| {
            *s = Slot {
                index,
                appended: Some(now),
                applied: None,
            }
        });
    }

    fn appended(&self, index: u64) -> Option<Instant> {
        self.with(index, |s| {
            (s.index == index).then_some(s.appended).flatten()
        })
    }

    /// Entries from `index` on are being sent to a follower now.
    pub fn sending(&self, index: u64) {
        if let Some(at) = self.appended(index) {
            stage_since(Stage::ToFollower, at);
        }
    }

    /// Entry `index` is being applied now.
    pub fn applying(&self, index: u64, now: Instant) {
        if let Some(at) = self.appended(index) {
            stage(Stage::ToApply, now.saturating_duration_since(at));
        }
    }

    /// Entry `index` has been applied.
    pub fn applied(&self, index: u64) {
        let now = Instant::now();
        self.with(index, |s| {
            if s.index == index {
                s.applied = Some(now);
            }
        });
    }

    /// The proposer holds the answer for entry `index`.
    pub fn answered(&self, index: u64) {
        let applied = self.with(index, |s| (s.index == index).then_some(s.applied).flatten());
        if let Some(at) = applied {
            stage_since(Stage::ToReply, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_index_is_timed_only_while_its_slot_holds_it() {
        let m = Marks::new();
        let t = Instant::now();
        m.appending(7, None, t);
        assert_eq!(m.appended(7), Some(t));
        // The index a ring further on takes the slot: 7 is no longer known.
        m.appending(7 + SLOTS as u64, None, t + Duration::from_millis(1));
        assert_eq!(m.appended(7), None);
        assert!(m.appended(7 + SLOTS as u64).is_some());
        // An apply is remembered for the index it was made for only.
        m.applied(7);
        assert!(m.with(7 + SLOTS as u64, |s| s.applied).is_none());
    }
}
