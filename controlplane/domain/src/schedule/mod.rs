//! Placement of work on GPUs, run inside `decide`: deterministic given the state. It
//! knows nodes, not jobs: a caller describes what it needs as a [`Demand`] (a training
//! job's replicas today, a deployment's tomorrow) and gets a [`Slot`] per replica.
//!
//! - **Gang**: every replica of a demand is placed, or none is.
//! - **Interconnect**: on a node, the GPUs chosen for a replica maximise the sum of their
//!   pairwise scores: 100 per NVLink, then the PCIe path (same board 60, one switch 50,
//!   several switches 40, host bridge 30, same NUMA node 20, across sockets 10), the
//!   numbers NVIDIA's device plugin uses.
//! - **Packing**: a replica goes to the node with the fewest free GPUs that still fits it
//!   (best fit), so whole nodes stay free for large jobs.
//! - **Health**: lost or cordoned nodes, and unhealthy, cordoned or allocated GPUs, are
//!   never chosen.
//! - **Quota**: a demand from a queue with a GPU quota takes no more than is left of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use crate::node::{NodeState, Nodes, PcieLevel};

/// What one replica needs on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub gpus: usize,
    pub cpu_millis: i64,
    pub memory_mib: i64,
}

/// Replicas to place together, each named by a key of the caller's (`K`).
#[derive(Debug, Clone)]
pub struct Demand<'a, K> {
    /// The queue whose quota applies, if any.
    pub queue: &'a str,
    /// All or nothing.
    pub gang: bool,
    /// Host-network ports each replica leases.
    pub ports_per_replica: usize,
    pub replicas: Vec<(K, Need)>,
}

/// Where one replica goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot<K> {
    pub replica: K,
    pub node: String,
    /// GPU UUIDs.
    pub gpus: Vec<String>,
    pub ports: Vec<u32>,
    /// Why these GPUs: the interconnect score of the set.
    pub score: u32,
}

fn pcie_score(l: PcieLevel) -> u32 {
    match l {
        PcieLevel::SameBoard => 60,
        PcieLevel::SingleSwitch => 50,
        PcieLevel::MultipleSwitches => 40,
        PcieLevel::HostBridge => 30,
        PcieLevel::SameNuma => 20,
        PcieLevel::CrossSocket => 10,
        PcieLevel::Unknown => 0,
    }
}

/// Free capacity of one node during a scheduling pass.
#[derive(Debug, Clone)]
struct NodeFree {
    /// Free GPUs: (index, uuid), by index.
    gpus: Vec<(u32, String)>,
    cpu_millis: i64,
    memory_mib: i64,
    /// Ports taken (leased or chosen in this pass).
    ports_taken: BTreeSet<u32>,
    port_range: (u32, u32),
    /// Pair scores by GPU index.
    scores: BTreeMap<(u32, u32), u32>,
}

impl NodeFree {
    fn of(n: &NodeState) -> Option<Self> {
        if n.lost || n.cordon.is_some() {
            return None;
        }
        let gpus = n
            .inventory
            .gpus
            .iter()
            .filter(|g| {
                n.gpu_health(&g.uuid).healthy
                    && !n.cordoned_gpus.contains(&g.uuid)
                    && !n.allocated_gpus.contains_key(&g.uuid)
            })
            .map(|g| (g.index, g.uuid.clone()))
            .collect();
        let scores = n
            .inventory
            .links
            .iter()
            .map(|l| ((l.a, l.b), l.nvlinks * 100 + pcie_score(l.pcie)))
            .collect();
        Some(Self {
            gpus,
            cpu_millis: n.inventory.cpu_millis as i64 - n.allocated_cpu_millis,
            memory_mib: (n.inventory.memory_bytes >> 20) as i64 - n.allocated_memory_mib,
            ports_taken: n.leases.keys().copied().collect(),
            port_range: (n.inventory.port_range_start, n.inventory.port_range_end),
            scores,
        })
    }

    fn score(&self, set: &[usize]) -> u32 {
        let mut s = 0;
        for (i, a) in set.iter().enumerate() {
            for b in &set[i + 1..] {
                let (x, y) = (self.gpus[*a].0, self.gpus[*b].0);
                s += self.scores.get(&(x.min(y), x.max(y))).copied().unwrap_or(0);
            }
        }
        s
    }

    /// The best `count` free GPUs (positions in `self.gpus`) and their score.
    fn best_gpus(&self, count: usize) -> Option<(Vec<usize>, u32)> {
        let n = self.gpus.len();
        if count > n {
            return None;
        }
        if count == 0 {
            return Some((Vec::new(), 0));
        }
        if count == n || count == 1 {
            return Some((
                (0..count).collect(),
                self.score(&(0..count).collect::<Vec<_>>()),
            ));
        }
        if combinations(n, count) <= 5_000 {
            let mut best: Option<(Vec<usize>, u32)> = None;
            let mut set: Vec<usize> = (0..count).collect();
            loop {
                let s = self.score(&set);
                if best.as_ref().is_none_or(|b| s > b.1) {
                    best = Some((set.clone(), s));
                }
                if !next_combination(&mut set, n) {
                    break;
                }
            }
            return best;
        }
        // Greedy: start from the best pair, add the GPU closest to the chosen ones.
        let mut chosen: Vec<usize> = Vec::new();
        let mut best_pair = (0, 1, 0);
        for a in 0..n {
            for b in a + 1..n {
                let s = self.score(&[a, b]);
                if s > best_pair.2 {
                    best_pair = (a, b, s);
                }
            }
        }
        chosen.push(best_pair.0);
        chosen.push(best_pair.1);
        while chosen.len() < count {
            let next = (0..n).filter(|c| !chosen.contains(c)).max_by_key(|c| {
                (
                    chosen.iter().map(|x| self.score(&[*x, *c])).sum::<u32>(),
                    n - c,
                )
            })?;
            chosen.push(next);
        }
        chosen.sort_unstable();
        let s = self.score(&chosen);
        Some((chosen, s))
    }

    fn free_ports(&self, count: usize) -> Option<Vec<u32>> {
        let mut out = Vec::with_capacity(count);
        for p in self.port_range.0..=self.port_range.1 {
            if out.len() == count {
                break;
            }
            if !self.ports_taken.contains(&p) {
                out.push(p);
            }
        }
        (out.len() == count).then_some(out)
    }
}

fn combinations(n: usize, k: usize) -> u64 {
    let k = k.min(n - k) as u64;
    let mut c = 1u64;
    for i in 0..k {
        c = c.saturating_mul(n as u64 - i) / (i + 1);
    }
    c
}

/// The next k-combination of 0..n in lexicographic order; false after the last.
fn next_combination(set: &mut [usize], n: usize) -> bool {
    let k = set.len();
    for i in (0..k).rev() {
        if set[i] < n - k + i {
            set[i] += 1;
            for j in i + 1..k {
                set[j] = set[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

/// Free capacity of every schedulable node, and what each queue may still take.
pub struct Capacity {
    nodes: BTreeMap<String, NodeFree>,
    /// Queue → GPUs it may still take (queues without a quota are absent).
    quota_left: BTreeMap<String, u32>,
}

impl Capacity {
    /// The free capacity of `nodes`, with `quota_left` GPUs left to each queue that has
    /// a quota.
    pub fn new(nodes: &Nodes, quota_left: BTreeMap<String, u32>) -> Self {
        Self {
            nodes: nodes
                .iter()
                .filter_map(|(name, n)| NodeFree::of(n).map(|f| (name.clone(), f)))
                .collect(),
            quota_left,
        }
    }

    /// Place the replicas of `demand` (all or none for a gang). On success the capacity
    /// is taken; on failure, the reason, and nothing is taken.
    pub fn place<K: Ord + Clone + Display>(
        &mut self,
        demand: Demand<'_, K>,
    ) -> Result<Vec<Slot<K>>, String> {
        let Demand {
            queue,
            gang,
            ports_per_replica: ports,
            mut replicas,
        } = demand;
        // A fast refusal: not enough GPUs in all. Reasons name no counts that change
        // with every placement, so a waiting job's reason (an event when it changes)
        // stays put while its cause does.
        let needed: usize = replicas.iter().map(|r| r.1.gpus).sum();
        let mut quota_room = self.quota_left.get(queue).map(|q| *q as usize);
        if let Some(room) = quota_room {
            if gang && needed > room {
                return Err(format!(
                    "needs {needed} GPUs; queue {queue} is at its GPU quota"
                ));
            }
        }
        let free: usize = self.nodes.values().map(|f| f.gpus.len()).sum();
        if gang && needed > free {
            return Err(format!(
                "needs {needed} GPUs in all; fewer are free on schedulable nodes"
            ));
        }
        // Largest first: they are the hardest to fit.
        replicas.sort_by(|a, b| b.1.gpus.cmp(&a.1.gpus).then_with(|| a.0.cmp(&b.0)));
        let mut trial = self.nodes.clone();
        let mut out = Vec::new();
        let mut first_refusal: Option<String> = None;
        for (replica, role) in replicas {
            let need = role.gpus;
            if quota_room.is_some_and(|room| need > room) {
                let why = format!("{replica} needs {need} GPUs; queue {queue} is at its GPU quota");
                if gang {
                    return Err(why);
                }
                first_refusal.get_or_insert(why);
                continue;
            }
            let fits = |f: &NodeFree| {
                f.gpus.len() >= need
                    && f.cpu_millis >= role.cpu_millis
                    && f.memory_mib >= role.memory_mib
                    && (ports == 0 || f.free_ports(ports).is_some())
            };
            // Best fit: the fewest free GPUs that still fit; then the best interconnect.
            let fewest = trial
                .values()
                .filter(|f| fits(f))
                .map(|f| f.gpus.len())
                .min();
            let Some(fewest) = fewest else {
                let why = format!(
                    "{replica} needs {need} GPUs on one node (with {}m CPU, {} MiB, {ports} ports); no schedulable node has that much free",
                    role.cpu_millis, role.memory_mib
                );
                // A gang is all or nothing; other demands take what fits now.
                if gang {
                    return Err(why);
                }
                first_refusal.get_or_insert(why);
                continue;
            };
            let mut best: Option<(String, Vec<usize>, u32)> = None;
            for (name, f) in trial
                .iter()
                .filter(|(_, f)| fits(f) && f.gpus.len() == fewest)
            {
                if let Some((set, score)) = f.best_gpus(need) {
                    if best.as_ref().is_none_or(|b| score > b.2) {
                        best = Some((name.clone(), set, score));
                    }
                }
            }
            let Some((node, set, score)) = best else {
                return Err(format!("{replica}: no GPU set found"));
            };
            let Some(f) = trial.get_mut(&node) else {
                return Err(format!("{replica}: no GPU set found"));
            };
            let gpus: Vec<String> = set.iter().map(|i| f.gpus[*i].1.clone()).collect();
            let chosen_ports = if ports > 0 {
                f.free_ports(ports).unwrap_or_default()
            } else {
                Vec::new()
            };
            f.ports_taken.extend(chosen_ports.iter().copied());
            let taken: BTreeSet<usize> = set.into_iter().collect();
            f.gpus = f
                .gpus
                .iter()
                .enumerate()
                .filter(|(i, _)| !taken.contains(i))
                .map(|(_, g)| g.clone())
                .collect();
            f.cpu_millis -= role.cpu_millis;
            f.memory_mib -= role.memory_mib;
            if let Some(room) = quota_room.as_mut() {
                *room -= need;
            }
            out.push(Slot {
                replica,
                node,
                gpus,
                ports: chosen_ports,
                score,
            });
        }
        if out.is_empty() {
            return Err(first_refusal.unwrap_or_else(|| "nothing to place".into()));
        }
        out.sort_by(|a, b| a.replica.cmp(&b.replica));
        self.nodes = trial;
        let taken: usize = out.iter().map(|p| p.gpus.len()).sum();
        if let Some(left) = self.quota_left.get_mut(queue) {
            *left = left.saturating_sub(taken as u32);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_are_enumerated_in_order() {
        let mut set = vec![0, 1];
        let mut all = vec![set.clone()];
        while next_combination(&mut set, 4) {
            all.push(set.clone());
        }
        assert_eq!(all.len(), 6);
        assert_eq!(all.last(), Some(&vec![2, 3]));
        assert_eq!(combinations(8, 4), 70);
        assert!(combinations(64, 32) > 5_000);
    }
}
