//! A model as the log tells it: its versions, stages, aliases and tags, and the timeline
//! of every stage transition and alias move (who, when, why), from which "which version
//! held Production at 14:00" is answered without reading the log.

use std::collections::BTreeMap;

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
    /// Every stage transition and alias move, in log order.
    pub timeline: Vec<Move>,
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

/// What is asked of the timeline: a stage or an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// The versions that held `what` at `at_ms` (leader time, inclusive), by number:
    /// the timeline folded up to then. Several versions may hold a stage; an alias has
    /// at most one.
    pub fn held(&self, what: &Held, at_ms: i64) -> Vec<Holding> {
        let mut holders: BTreeMap<u64, Holding> = BTreeMap::new();
        for m in self.timeline.iter().filter(|m| m.at_ms <= at_ms) {
            let holding = |version| Holding {
                version,
                since_ms: m.at_ms,
                actor: m.actor.clone(),
                reason: m.reason.clone(),
                sequence: m.sequence,
            };
            match (&m.change, what) {
                (Change::Stage { version, from, to }, Held::Stage(stage)) => {
                    if to == stage {
                        holders.entry(*version).or_insert_with(|| holding(*version));
                    } else if from == stage {
                        holders.remove(version);
                    }
                }
                (Change::Deleted { version }, _) => {
                    holders.remove(version);
                }
                (Change::Alias { alias, to, .. }, Held::Alias(asked)) if alias == asked => {
                    holders.clear();
                    if let Some(v) = to {
                        holders.insert(*v, holding(*v));
                    }
                }
                (Change::Alias { .. }, _) | (Change::Stage { .. }, Held::Alias(_)) => {}
            }
        }
        holders.into_values().collect()
    }
}
