//! The routing table of a stable endpoint: which revision and which backend each request
//! goes to, and what each backend and revision has in flight. Plain synchronous code; the
//! router holds it behind a mutex for the moment of a choice or of a count.
//!
//! Revisions are chosen by smooth weighted round robin, as nginx does: each choice adds
//! every eligible revision's weight to its running score, takes the highest score and
//! subtracts the total weight from it. Over any run of requests each revision's share
//! stays within one request of its weight, and the choices interleave (5/1/1 gives
//! `a a b a c a a`) rather than coming in bursts. Within a revision the backend with the
//! fewest requests in flight wins, ties going round robin.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// One revision of a deployment, as the router sends traffic to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The revision's number, returned to clients in `x-cairn-revision`.
    pub revision: u64,
    /// Its share of the traffic relative to the other revisions' weights; 0 sends it nothing.
    pub weight: u32,
    /// Its ready replicas.
    pub backends: Vec<SocketAddr>,
}

/// The load on one revision, the figures autoscaling works from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevisionLoad {
    pub revision: u64,
    /// Requests sent to it whose responses have not yet been streamed back in full.
    pub in_flight: u64,
    /// Requests it has answered since it entered the table.
    pub served: u64,
    /// The time its finished requests took, summed, in microseconds: over an interval,
    /// its growth divided by the interval's length is the average number of requests in
    /// flight (Little's law).
    pub busy_us: u64,
}

/// The routes and the counts of requests in flight.
#[derive(Default)]
pub(super) struct Table {
    revisions: Vec<Revision>,
    /// Requests in flight per backend, kept for backends that left the table (they are
    /// draining); a backend with none has no entry.
    in_flight: HashMap<SocketAddr, u64>,
    /// The revisions in the table, and those that left it with requests still in flight.
    load: BTreeMap<u64, RevisionLoad>,
}

/// A route with its round-robin state.
struct Revision {
    route: Route,
    /// The smooth weighted round-robin score.
    score: i64,
    /// Where the next tie between its backends starts looking.
    next: usize,
}

impl Revision {
    fn has_backend_besides(&self, avoid: Option<SocketAddr>) -> bool {
        self.route.backends.iter().any(|b| Some(*b) != avoid)
    }
}

impl Table {
    /// Replaces the routes. A revision that stays keeps its score, so a table that only
    /// changes backends does not restart the interleaving.
    pub fn set(&mut self, routes: Vec<Route>) {
        let old = std::mem::take(&mut self.revisions);
        self.revisions = routes
            .into_iter()
            .map(|route| {
                let score = old
                    .iter()
                    .find(|r| r.route.revision == route.revision)
                    .map_or(0, |r| r.score);
                Revision {
                    route,
                    score,
                    next: 0,
                }
            })
            .collect();
        let revisions = &self.revisions;
        self.load.retain(|number, load| {
            load.in_flight > 0 || revisions.iter().any(|r| r.route.revision == *number)
        });
        for r in &self.revisions {
            let revision = r.route.revision;
            self.load.entry(revision).or_insert(RevisionLoad {
                revision,
                in_flight: 0,
                served: 0,
                busy_us: 0,
            });
        }
    }

    /// Chooses the revision and backend of a new request, never `avoid`, and counts the
    /// request in flight there. `None`: no revision with weight has a backend.
    pub fn pick(&mut self, avoid: Option<SocketAddr>) -> Option<(u64, SocketAddr)> {
        let mut total = 0;
        let mut best: Option<usize> = None;
        for i in 0..self.revisions.len() {
            let r = &mut self.revisions[i];
            if r.route.weight == 0 || !r.has_backend_besides(avoid) {
                continue;
            }
            r.score += i64::from(r.route.weight);
            total += i64::from(r.route.weight);
            if best.is_none_or(|b| self.revisions[i].score > self.revisions[b].score) {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.revisions[chosen].score -= total;
        self.start_on(chosen, avoid)
    }

    /// Chooses where to send again a request that could not connect to `failed`: another
    /// backend of its revision if it has one, else another revision.
    pub fn pick_again(&mut self, revision: u64, failed: SocketAddr) -> Option<(u64, SocketAddr)> {
        let same = self.revisions.iter().position(|r| {
            r.route.revision == revision
                && r.route.weight > 0
                && r.has_backend_besides(Some(failed))
        });
        match same {
            Some(i) => self.start_on(i, Some(failed)),
            None => self.pick(Some(failed)),
        }
    }

    /// Counts a request in flight on the least busy backend of revision `i` but `avoid`.
    fn start_on(&mut self, i: usize, avoid: Option<SocketAddr>) -> Option<(u64, SocketAddr)> {
        let in_flight = &self.in_flight;
        let r = &mut self.revisions[i];
        let n = r.route.backends.len();
        let (offset, backend) = (0..n)
            .map(|k| (k, r.route.backends[(r.next + k) % n]))
            .filter(|(_, b)| Some(*b) != avoid)
            .min_by_key(|(_, b)| in_flight.get(b).copied().unwrap_or(0))?;
        r.next = (r.next + offset + 1) % n;
        let revision = r.route.revision;
        *self.in_flight.entry(backend).or_default() += 1;
        if let Some(load) = self.load.get_mut(&revision) {
            load.in_flight += 1;
        }
        Some((revision, backend))
    }

    /// Ends a request that [`pick`](Self::pick) started `took` ago; `answered` if the
    /// backend responded. True when this leaves `backend` drained.
    pub fn finish(
        &mut self,
        revision: u64,
        backend: SocketAddr,
        answered: bool,
        took: std::time::Duration,
    ) -> bool {
        if let Some(n) = self.in_flight.get_mut(&backend) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(&backend);
            }
        }
        let in_table = self.revisions.iter().any(|r| r.route.revision == revision);
        if let Some(load) = self.load.get_mut(&revision) {
            load.in_flight -= 1;
            load.served += u64::from(answered);
            load.busy_us += took.as_micros() as u64;
            if load.in_flight == 0 && !in_table {
                self.load.remove(&revision);
            }
        }
        self.is_drained(backend)
    }

    /// Whether `backend` is out of the table with nothing in flight.
    pub fn is_drained(&self, backend: SocketAddr) -> bool {
        !self.in_flight.contains_key(&backend)
            && !self
                .revisions
                .iter()
                .any(|r| r.route.backends.contains(&backend))
    }

    pub fn load(&self) -> Vec<RevisionLoad> {
        self.load.values().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn route(revision: u64, weight: u32, ports: &[u16]) -> Route {
        Route {
            revision,
            weight,
            backends: ports.iter().map(|p| addr(*p)).collect(),
        }
    }

    #[test]
    fn revisions_interleave_as_in_nginx() {
        let mut t = Table::default();
        t.set(vec![
            route(1, 5, &[1]),
            route(2, 1, &[2]),
            route(3, 1, &[3]),
        ]);
        let order: Vec<u64> = (0..7).map(|_| t.pick(None).expect("a backend").0).collect();
        assert_eq!(order, [1, 1, 2, 1, 3, 1, 1]);
    }

    #[test]
    fn the_least_busy_backend_wins_and_ties_go_round_robin() {
        let mut t = Table::default();
        t.set(vec![route(1, 1, &[1, 2, 3])]);
        // --- three requests held: one on each backend, in turn
        let held: Vec<SocketAddr> = (0..3).map(|_| t.pick(None).expect("a backend").1).collect();
        assert_eq!(held, [addr(1), addr(2), addr(3)]);
        // --- backend 2 finishes: it is the only one idle
        t.finish(1, addr(2), true, Duration::ZERO);
        assert_eq!(t.pick(None), Some((1, addr(2))));
    }

    #[test]
    fn a_backend_drains_once_out_of_the_table_and_idle() {
        let mut t = Table::default();
        t.set(vec![route(1, 1, &[1])]);
        assert_eq!(t.pick(None), Some((1, addr(1))));
        // --- removed with a request in flight
        t.set(vec![route(2, 1, &[2])]);
        assert!(!t.is_drained(addr(1)));
        assert_eq!(t.load()[0].in_flight, 1, "revision 1 is still counted");
        // --- the request ends
        assert!(t.finish(1, addr(1), true, Duration::ZERO));
        assert_eq!(
            t.load(),
            [RevisionLoad {
                revision: 2,
                in_flight: 0,
                served: 0,
                busy_us: 0
            }]
        );
    }

    #[test]
    fn finished_requests_add_their_time_to_their_revision() {
        let mut t = Table::default();
        t.set(vec![route(1, 1, &[1]), route(2, 1, &[2])]);
        let a = t.pick(None).expect("a backend");
        let b = t.pick(None).expect("a backend");
        t.finish(a.0, a.1, true, Duration::from_millis(3));
        t.finish(b.0, b.1, false, Duration::from_micros(250));
        let busy: Vec<(u64, u64, u64)> = t
            .load()
            .iter()
            .map(|l| (l.revision, l.served, l.busy_us))
            .collect();
        assert_eq!(busy, [(a.0, 1, 3_000), (b.0, 0, 250)]);
    }

    #[test]
    fn a_failed_backend_is_avoided_in_its_revision_then_across_revisions() {
        let mut t = Table::default();
        t.set(vec![route(1, 1, &[1, 2]), route(2, 1, &[3])]);
        assert_eq!(t.pick_again(1, addr(1)), Some((1, addr(2))));
        t.set(vec![route(1, 1, &[1]), route(2, 1, &[3])]);
        assert_eq!(t.pick_again(1, addr(1)), Some((2, addr(3))));
        t.set(vec![route(1, 1, &[1]), route(2, 0, &[3])]);
        assert_eq!(t.pick_again(1, addr(1)), None);
    }
}
