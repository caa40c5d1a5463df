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
/// branches only on calls that change the register.
pub fn check(calls: &[Call], initial: Register, budget: usize) -> Result<(), Option<Violation>> {
    let n = calls.len();
    let words = n.div_ceil(64).max(1);
    let is_set = |bits: &[u64], i: usize| bits[i / 64] & (1 << (i % 64)) != 0;
    let set = |bits: &mut Vec<u64>, i: usize| bits[i / 64] |= 1 << (i % 64);
    // The order found so far, as a tree of (parent, call) so frames stay small.
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
    let mut seen: HashSet<u128> = HashSet::new();
    let mut stack = vec![(vec![0u64; words], initial, usize::MAX, 0usize)];
    let mut best: Option<Violation> = None;
    while let Some((mut bits, state, mut node, mut depth)) = stack.pop() {
        // Place every consistent call without effect, as far as possible.
        loop {
            let horizon = (0..n)
                .filter(|&i| !is_set(&bits, i))
                .filter_map(|i| calls[i].end)
                .min()
                .unwrap_or(u64::MAX);
            let next = (0..n).find(|&i| {
                !is_set(&bits, i)
                    && calls[i].start <= horizon
                    && !effectful(calls[i].ret)
                    && state.step(calls[i].op, calls[i].ret).is_some()
            });
            match next {
                Some(i) => {
                    set(&mut bits, i);
                    arena.push((node, i));
                    node = arena.len() - 1;
                    depth += 1;
                }
                None => break,
            }
        }
        let remaining: Vec<usize> = (0..n).filter(|&i| !is_set(&bits, i)).collect();
        if remaining.iter().all(|&i| calls[i].end.is_none()) {
            return Ok(());
        }
        if seen.len() >= budget {
            return Err(None);
        }
        let horizon = remaining
            .iter()
            .filter_map(|&i| calls[i].end)
            .min()
            .unwrap_or(u64::MAX);
        let mut pushed = false;
        for &i in &remaining {
            let c = &calls[i];
            if c.start > horizon || !effectful(c.ret) {
                continue;
            }
            if let Some(next) = state.step(c.op, c.ret) {
                let mut nb = bits.clone();
                set(&mut nb, i);
                if seen.insert(fingerprint(&nb, next)) {
                    arena.push((node, i));
                    stack.push((nb, next, arena.len() - 1, depth + 1));
                    pushed = true;
                }
            }
        }
        if !pushed && best.as_ref().is_none_or(|b| depth > b.linearized.len()) {
            best = Some(Violation {
                stuck: remaining
                    .into_iter()
                    .filter(|&i| calls[i].start <= horizon)
                    .collect(),
                linearized: order_of(&arena, node),
                state,
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
