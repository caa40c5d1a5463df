//! A linearizability checker for registers with compare-and-set, in the manner of
//! Wing & Gong (as Knossos does it): search for an order of the operations that respects
//! real time (an operation that completed before another began comes first) and that a
//! sequential register would produce, memoizing (linearized set, register state).
//!
//! Indeterminate operations (the client gave up, the connection broke) may have taken
//! effect at any point after they began, or never: they have no completion time and may
//! be left out of the order entirely.

use std::collections::HashSet;

/// What a client asked of one register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Read,
    Write(u64),
    /// Write `value` if the register's revision is `expected`.
    Cas {
        expected: u64,
        value: u64,
    },
}

/// What the client saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    /// A read: the value (None before the first write) and the revision.
    Read { value: Option<u64>, revision: u64 },
    /// A write or compare-and-set took effect; the revision after it.
    Ok { revision: u64 },
    /// A compare-and-set was refused: the revision did not match. Definitely no effect.
    Refused,
    /// No answer: it may or may not have taken effect.
    Unknown,
}

/// One operation of a history, times in any monotonic unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub client: u32,
    pub start: u64,
    /// `None` for an indeterminate call.
    pub end: Option<u64>,
    pub op: Op,
    pub ret: Ret,
}

/// The register as a sequential object: its value and revision (one per change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Register {
    pub value: Option<u64>,
    pub revision: u64,
}

impl Register {
    /// The state after `op` if it can return `ret` from this state.
    fn step(self, op: Op, ret: Ret) -> Option<Register> {
        let write = |v: u64| {
            if self.value == Some(v) {
                self
            } else {
                Register {
                    value: Some(v),
                    revision: self.revision + 1,
                }
            }
        };
        match (op, ret) {
            (Op::Read, Ret::Read { value, revision }) => {
                (self.value == value && self.revision == revision).then_some(self)
            }
            (Op::Write(v), Ret::Ok { revision }) => {
                Some(write(v)).filter(|s| s.revision == revision)
            }
            (Op::Write(v), Ret::Unknown) => Some(write(v)),
            (Op::Cas { expected, value }, Ret::Ok { revision }) => (self.revision == expected)
                .then(|| write(value))
                .filter(|s| s.revision == revision),
            (Op::Cas { expected, value }, Ret::Unknown) => {
                (self.revision == expected).then(|| write(value))
            }
            (Op::Cas { expected, .. }, Ret::Refused) => (self.revision != expected).then_some(self),
            _ => None,
        }
    }
}

/// Why a history is not linearizable: the longest order found, and the calls that
/// could not follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub linearized: Vec<usize>,
    pub stuck: Vec<usize>,
    pub state: Register,
}

/// Whether `op` changes the register when it returns `ret` (a read or a refused
/// compare-and-set never does).
fn effectful(ret: Ret) -> bool {
    matches!(ret, Ret::Ok { .. } | Ret::Unknown)
}

/// A 128-bit fingerprint of (linearized set, state), so the memo stays small.
fn fingerprint(bits: &[u64], state: Register) -> u128 {
    use std::hash::{Hash, Hasher};
    let mut a = std::collections::hash_map::DefaultHasher::new();
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0xA5u8.hash(&mut b);
    for h in [&mut a, &mut b] {
        bits.hash(h);
        state.hash(h);
    }
    ((a.finish() as u128) << 64) | b.finish() as u128
}

/// The verdict on a history that starts from `initial`, or `Err(None)` when the search
/// exceeded `budget` states.
///
/// Calls without effect (reads, refused compare-and-sets) are placed as soon as they are
/// consistent with the state: that never changes the state and only loosens the
/// real-time constraints on the rest, so it cannot hide a valid order. The search
/// branches only on calls that change the register. Calls are visited in order of
/// their start, and a scan stops at the first call that starts after the earliest
/// pending completion, so each step looks at a window, not the whole history.
// Positions in start order index the bitset and `by_start` alike.
#[allow(clippy::needless_range_loop)]
pub fn check(calls: &[Call], initial: Register, budget: usize) -> Result<(), Option<Violation>> {
    let n = calls.len();
    // Visit in start order; `by_start[k]` is an index into `calls`.
    let mut by_start: Vec<usize> = (0..n).collect();
    by_start.sort_by_key(|&i| (calls[i].start, i));
    let c = |k: usize| &calls[by_start[k]];
    let words = n.div_ceil(64).max(1);
    let is_set = |bits: &[u64], k: usize| bits[k / 64] & (1 << (k % 64)) != 0;
    let set = |bits: &mut Vec<u64>, k: usize| bits[k / 64] |= 1 << (k % 64);
    let definite = (0..n).filter(|&k| c(k).end.is_some()).count();

    /// One search state.
    struct Frame {
        bits: Vec<u64>,
        state: Register,
        /// Tip of the order found so far, in `arena`.
        node: usize,
        depth: usize,
        /// No call before this (in start order) is left.
        lo: usize,
        /// Calls with a definite answer still to place.
        definite_left: usize,
    }
    // Orders as a tree of (parent, call) so frames stay small.
    let mut arena: Vec<(usize, usize)> = Vec::new();
    let order_of = |arena: &[(usize, usize)], mut node: usize| {
        let mut out = Vec::new();
        while node != usize::MAX {
            out.push(arena[node].1);
            node = arena[node].0;
        }
        out.reverse();
        out
    };
    // The earliest completion among the calls left, scanning only while it can shrink.
    let horizon = |bits: &[u64], lo: usize| {
        let mut h = u64::MAX;
        for k in lo..n {
            if c(k).start > h {
                break;
            }
            if !is_set(bits, k) {
                if let Some(e) = c(k).end {
                    h = h.min(e);
                }
            }
        }
        h
    };
    let mut seen: HashSet<u128> = HashSet::new();
    let mut stack = vec![Frame {
        bits: vec![0u64; words],
        state: initial,
        node: usize::MAX,
        depth: 0,
        lo: 0,
        definite_left: definite,
    }];
    let mut best: Option<Violation> = None;
    while let Some(mut f) = stack.pop() {
        // Place every consistent call without effect, pass after pass.
        loop {
            while f.lo < n && is_set(&f.bits, f.lo) {
                f.lo += 1;
            }
            let h = horizon(&f.bits, f.lo);
            let mut placed = false;
            for k in f.lo..n {
                if c(k).start > h {
                    break;
                }
                if !is_set(&f.bits, k)
                    && !effectful(c(k).ret)
                    && f.state.step(c(k).op, c(k).ret).is_some()
                {
                    set(&mut f.bits, k);
                    arena.push((f.node, by_start[k]));
                    f.node = arena.len() - 1;
                    f.depth += 1;
                    f.definite_left -= usize::from(c(k).end.is_some());
                    placed = true;
                }
            }
            if !placed {
                break;
            }
        }
        if f.definite_left == 0 {
            return Ok(());
        }
        if seen.len() >= budget {
            return Err(None);
        }
        let h = horizon(&f.bits, f.lo);
        let mut pushed = false;
        for k in f.lo..n {
            if c(k).start > h {
                break;
            }
            if is_set(&f.bits, k) || !effectful(c(k).ret) {
                continue;
            }
            if let Some(next) = f.state.step(c(k).op, c(k).ret) {
                let mut nb = f.bits.clone();
                set(&mut nb, k);
                if seen.insert(fingerprint(&nb, next)) {
                    arena.push((f.node, by_start[k]));
                    stack.push(Frame {
                        bits: nb,
                        state: next,
                        node: arena.len() - 1,
                        depth: f.depth + 1,
                        lo: f.lo,
                        definite_left: f.definite_left - usize::from(c(k).end.is_some()),
                    });
                    pushed = true;
                }
            }
        }
        if !pushed && best.as_ref().is_none_or(|b| f.depth > b.linearized.len()) {
            let stuck = (f.lo..n)
                .take_while(|&k| c(k).start <= h)
                .filter(|&k| !is_set(&f.bits, k))
                .map(|k| by_start[k])
                .collect();
            best = Some(Violation {
                stuck,
                linearized: order_of(&arena, f.node),
                state: f.state,
            });
        }
    }
    Err(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(client: u32, start: u64, end: Option<u64>, op: Op, ret: Ret) -> Call {
        Call {
            client,
            start,
            end,
            op,
            ret,
        }
    }

    fn read(v: Option<u64>, rev: u64) -> Ret {
        Ret::Read {
            value: v,
            revision: rev,
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            call(0, 0, Some(1), Op::Write(1), Ret::Ok { revision: 1 }),
            call(0, 2, Some(3), Op::Read, read(Some(1), 1)),
            call(
                0,
                4,
                Some(5),
                Op::Cas {
                    expected: 1,
                    value: 2,
                },
                Ret::Ok { revision: 2 },
            ),
            call(
                0,
                6,
                Some(7),
                Op::Cas {
                    expected: 1,
                    value: 3,
                },
                Ret::Refused,
            ),
            call(0, 8, Some(9), Op::Read, read(Some(2), 2)),
        ];
        assert_eq!(check(&h, Register::default(), 100_000), Ok(()));
    }

    #[test]
    fn concurrent_calls_may_take_effect_in_either_order() {
        // Two overlapping writes; a later read sees the one that went second.
        let h = vec![
            call(0, 0, Some(10), Op::Write(1), Ret::Ok { revision: 2 }),
            call(1, 1, Some(9), Op::Write(2), Ret::Ok { revision: 1 }),
            call(2, 11, Some(12), Op::Read, read(Some(1), 2)),
        ];
        assert_eq!(check(&h, Register::default(), 100_000), Ok(()));
    }

    #[test]
    fn a_stale_read_is_caught() {
        // The write completed before the read began, yet the read missed it.
        let h = vec![
            call(0, 0, Some(1), Op::Write(1), Ret::Ok { revision: 1 }),
            call(1, 2, Some(3), Op::Read, read(None, 0)),
        ];
        let v = check(&h, Register::default(), 100_000)
            .expect_err("not linearizable")
            .expect("a witness");
        assert_eq!(v.linearized, vec![0]);
        assert_eq!(v.stuck, vec![1]);
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let h = vec![
            call(0, 0, Some(1), Op::Write(1), Ret::Ok { revision: 1 }),
            call(0, 2, Some(3), Op::Write(2), Ret::Ok { revision: 2 }),
            call(1, 4, Some(5), Op::Read, read(Some(1), 1)),
        ];
        assert!(check(&h, Register::default(), 100_000).is_err());
    }

    #[test]
    fn indeterminate_writes_may_or_may_not_have_happened() {
        // An unanswered write, then reads that see it...
        let seen = vec![
            call(0, 0, None, Op::Write(7), Ret::Unknown),
            call(1, 5, Some(6), Op::Read, read(Some(7), 1)),
        ];
        assert_eq!(check(&seen, Register::default(), 100_000), Ok(()));
        // ...or do not see it.
        let unseen = vec![
            call(0, 0, None, Op::Write(7), Ret::Unknown),
            call(1, 5, Some(6), Op::Read, read(None, 0)),
        ];
        assert_eq!(check(&unseen, Register::default(), 100_000), Ok(()));
        // But it cannot take effect before it began.
        let early = vec![
            call(1, 0, Some(1), Op::Read, read(Some(7), 1)),
            call(0, 2, None, Op::Write(7), Ret::Unknown),
        ];
        assert!(check(&early, Register::default(), 100_000).is_err());
    }

    /// A long history that is linearizable by construction (each call takes effect at a
    /// point inside its window) is accepted: the search stays on one path.
    #[test]
    fn long_generated_histories_are_checked_in_one_pass() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut reg = Register::default();
        let mut calls = Vec::new();
        for i in 0..20_000u64 {
            let at = 10 * i + 20;
            let (start, end) = (at - rng.gen_range(0..15), at + rng.gen_range(0..15));
            let op = match rng.gen_range(0..3) {
                0 => Op::Read,
                1 => Op::Write(i),
                _ => Op::Cas {
                    expected: reg.revision + rng.gen_range(0..2),
                    value: i,
                },
            };
            let ret = match op {
                Op::Read => Ret::Read {
                    value: reg.value,
                    revision: reg.revision,
                },
                Op::Cas { expected, .. } if expected != reg.revision => Ret::Refused,
                Op::Write(v) | Op::Cas { value: v, .. } => {
                    reg = Register {
                        value: Some(v),
                        revision: reg.revision + 1,
                    };
                    Ret::Ok {
                        revision: reg.revision,
                    }
                }
            };
            calls.push(Call {
                client: (i % 4) as u32,
                start,
                end: Some(end),
                op,
                ret,
            });
        }
        assert_eq!(check(&calls, Register::default(), 1_000_000), Ok(()));
        // Swap two acknowledged revisions: no order explains it any more.
        let writes: Vec<usize> = (0..calls.len())
            .filter(|&i| matches!(calls[i].ret, Ret::Ok { .. }))
            .collect();
        let (a, b) = (writes[100], writes[101]);
        let (ra, rb) = (calls[a].ret, calls[b].ret);
        calls[a].ret = rb;
        calls[b].ret = ra;
        calls[b].start = calls[a].end.unwrap_or(0) + 1000;
        calls[b].end = Some(calls[b].start + 1);
        assert!(check(&calls, Register::default(), 1_000_000).is_err());
    }

    #[test]
    fn refused_cas_means_the_revision_differed() {
        let h = vec![
            call(0, 0, Some(1), Op::Write(1), Ret::Ok { revision: 1 }),
            // Refused although the revision was 1: impossible.
            call(
                1,
                2,
                Some(3),
                Op::Cas {
                    expected: 1,
                    value: 5,
                },
                Ret::Refused,
            ),
        ];
        assert!(check(&h, Register::default(), 100_000).is_err());
    }
}
