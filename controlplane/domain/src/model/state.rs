//! A model as the log tells it: its versions, stages, aliases and tags, and the timeline
//! of every stage transition and alias move (who, when, why), from which "which version
//! held Production at 14:00" is answered without reading the log.

use std::collections::{BTreeMap, BTreeSet};

use super::values::{Lineage, RunOutputs, Stage, VersionStatus};

/// Models by their current name; a deleted model stays until the name is taken again.
pub type Models = BTreeMap<String, ModelState>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelState {
    pub description: String,
    pub tags: BTreeMap<String, String>,
    /// Alias → version.
    pub aliases: BTreeMap<String, u64>,
    /// Every version, deleted ones included (their numbers are never reused).
    pub versions: BTreeMap<u64, VersionState>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub creator: String,
    /// The sequence of its creation: tells two models of one name apart.
    pub created_sequence: u64,
    pub deleted: bool,
    /// Earlier names, oldest first.
    pub former_names: Vec<String>,
    /// Every stage transition and alias move, in log order, with checkpoints.
    pub timeline: Timeline,
    /// Protected stages and aliases, each with the actors who may move it.
    pub protections: BTreeMap<Held, BTreeSet<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionState {
    pub source: String,
    pub storage_location: String,
    /// The job that produced it (MLflow's run id).
    pub run_id: String,
    pub description: String,
    pub tags: BTreeMap<String, String>,
    pub stage: Stage,
    pub status: VersionStatus,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub creator: String,
    pub created_sequence: u64,
    pub lineage: Option<Lineage>,
    pub outputs: RunOutputs,
    pub deleted: bool,
}

/// One stage transition or alias move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub sequence: u64,
    pub at_ms: i64,
    pub actor: String,
    pub reason: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A version entered `to` from `from` (a new version enters None from None).
    Stage {
        version: u64,
        from: Stage,
        to: Stage,
    },
    /// A version was deleted: it holds nothing from then on.
    Deleted { version: u64 },
    /// An alias moved from one version to another (None: it did not exist / was
    /// deleted).
    Alias {
        alias: String,
        from: Option<u64>,
        to: Option<u64>,
    },
}

/// A stage or an alias: what the timeline is asked about, or what a protection guards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Held {
    Stage(Stage),
    Alias(String),
}

/// A version that held a stage or alias at some time, since when and set by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub version: u64,
    pub since_ms: i64,
    pub actor: String,
    pub reason: String,
    pub sequence: u64,
}

impl Held {
    /// "stage Production", "alias champion".
    pub fn describe(&self) -> String {
        match self {
            Held::Stage(s) => format!("stage {}", s.name()),
            Held::Alias(a) => format!("alias {a}"),
        }
    }
}

impl ModelState {
    /// The live (not deleted) versions, by number.
    pub fn live_versions(&self) -> impl Iterator<Item = (&u64, &VersionState)> {
        self.versions.iter().filter(|(_, v)| !v.deleted)
    }

    /// The live version `n`.
    pub fn version(&self, n: u64) -> Option<&VersionState> {
        self.versions.get(&n).filter(|v| !v.deleted)
    }

    /// The number the next version gets: one more than any version ever made.
    pub fn next_version(&self) -> u64 {
        self.versions.keys().next_back().map_or(1, |v| v + 1)
    }

    /// The aliases pointing at version `n`.
    pub fn aliases_of(&self, n: u64) -> Vec<String> {
        self.aliases
            .iter()
            .filter(|(_, v)| **v == n)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// The versions that held `what` at `at_ms` (leader time, inclusive), by number.
    /// Several versions may hold a stage; an alias has at most one.
    pub fn held(&self, what: &Held, at_ms: i64) -> Vec<Holding> {
        self.timeline.held(what, at_ms)
    }
}

/// Moves between checkpoints: a question about the past folds at most this many.
const CHECKPOINT_EVERY: usize = 1024;

/// Every stage transition and alias move of a model, in log order (the leader's clock
/// orders them too), and who held what after every [`CHECKPOINT_EVERY`]th, so "who held
/// it then" costs a binary search and a short fold however long the history is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timeline {
    moves: Vec<Move>,
    /// `checkpoints[i]`: the holders after the first `(i + 1) * CHECKPOINT_EVERY` moves.
    checkpoints: Vec<Holders>,
}

/// Who holds each stage and alias.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Holders {
    stages: BTreeMap<Stage, BTreeMap<u64, Holding>>,
    aliases: BTreeMap<String, Holding>,
}

impl Holders {
    fn apply(&mut self, m: &Move) {
        let holding = |version| Holding {
            version,
            since_ms: m.at_ms,
            actor: m.actor.clone(),
            reason: m.reason.clone(),
            sequence: m.sequence,
        };
        match &m.change {
            Change::Stage { version, from, to } => {
                if from != to {
                    if let Some(h) = self.stages.get_mut(from) {
                        h.remove(version);
                    }
                }
                self.stages
                    .entry(*to)
                    .or_default()
                    .entry(*version)
                    .or_insert_with(|| holding(*version));
            }
            Change::Deleted { version } => {
                for h in self.stages.values_mut() {
                    h.remove(version);
                }
            }
            Change::Alias { alias, to, .. } => match to {
                Some(v) => {
                    self.aliases.insert(alias.clone(), holding(*v));
                }
                None => {
                    self.aliases.remove(alias);
                }
            },
        }
    }

    fn of(&self, what: &Held) -> Vec<Holding> {
        match what {
            Held::Stage(s) => self
                .stages
                .get(s)
                .map(|h| h.values().cloned().collect())
                .unwrap_or_default(),
            Held::Alias(a) => self.aliases.get(a).cloned().into_iter().collect(),
        }
    }
}

impl Timeline {
    /// Record the next move.
    pub fn push(&mut self, m: Move) {
        self.moves.push(m);
        if self.moves.len().is_multiple_of(CHECKPOINT_EVERY) {
            let mut holders = self.checkpoints.last().cloned().unwrap_or_default();
            let from = self.moves.len() - CHECKPOINT_EVERY;
            for m in &self.moves[from..] {
                holders.apply(m);
            }
            self.checkpoints.push(holders);
        }
    }

    /// Every move, in log order.
    pub fn moves(&self) -> &[Move] {
        &self.moves
    }

    /// Who held `what` after the moves made at or before `at_ms`.
    pub fn held(&self, what: &Held, at_ms: i64) -> Vec<Holding> {
        let n = self.moves.partition_point(|m| m.at_ms <= at_ms);
        let done = n / CHECKPOINT_EVERY;
        let mut holders = match done.checked_sub(1) {
            Some(i) => self.checkpoints[i].clone(),
            None => Holders::default(),
        };
        for m in &self.moves[done * CHECKPOINT_EVERY..n] {
            holders.apply(m);
        }
        holders.of(what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long timeline answers every question as a fold from the start would.
    #[test]
    fn checkpoints_answer_as_the_whole_fold_does() {
        let stages = [
            Stage::None,
            Stage::Staging,
            Stage::Production,
            Stage::Archived,
        ];
        let mut t = Timeline::default();
        let mut stage_of = BTreeMap::new();
        for i in 0..(3 * CHECKPOINT_EVERY + 17) as u64 {
            let version = i % 7 + 1;
            let change = if i % 3 == 0 {
                Change::Alias {
                    alias: format!("a{}", i % 2),
                    from: None,
                    to: (i % 5 != 0).then_some(version),
                }
            } else if i % 97 == 0 {
                stage_of.remove(&version);
                Change::Deleted { version }
            } else {
                let from = stage_of.get(&version).copied().unwrap_or(Stage::None);
                let to = stages[(i as usize / 3) % 4];
                stage_of.insert(version, to);
                Change::Stage { version, from, to }
            };
            t.push(Move {
                sequence: i + 1,
                // Several moves share a millisecond.
                at_ms: (i / 2) as i64,
                actor: format!("u{}", i % 3),
                reason: String::new(),
                change,
            });
        }
        assert_eq!(t.checkpoints.len(), 3);
        let questions = [
            Held::Stage(Stage::Production),
            Held::Stage(Stage::None),
            Held::Alias("a0".into()),
            Held::Alias("a1".into()),
        ];
        for at in [-1, 0, 511, 512, 1023, 1536, 2047, 2048, 5000] {
            for what in &questions {
                let mut naive = Holders::default();
                for m in t.moves().iter().filter(|m| m.at_ms <= at) {
                    naive.apply(m);
                }
                assert_eq!(t.held(what, at), naive.of(what), "{what:?} at {at}");
            }
        }
    }
}
