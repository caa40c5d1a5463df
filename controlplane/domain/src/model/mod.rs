//! The model registry: models, their versions (numbered from 1, never reused), stages
//! (None, Staging, Production, Archived) and aliases, each change an event with its
//! actor — so "which version held Production at 14:00 on 3 March, who put it there, and
//! which job trained it" is answered from the fold.
//!
//! - [`values`]: stages, statuses, lineage, what a run wrote; limits on tags, aliases.
//! - [`state`]: a model in the fold, with the timeline of its stage and alias moves.
//! - [`command`], [`event`], [`decide`](decide()), [`evolve`](evolve()).
//! - `guard`: protected stages and aliases, and who may move them.
//!
//! Deleting is soft: a deleted model leaves listings, its events stay, and its name may
//! be taken again by a new model (told apart by the sequence of its creation). Renaming
//! moves the model to a new stream, linked both ways (`model_renamed`,
//! `model_renamed_from`). A training job that names a model registers a version of it
//! when it succeeds (the job aggregate calls [`register`]).

pub mod command;
mod decide;
pub mod event;
mod evolve;
mod guard;
pub mod state;
#[cfg(test)]
mod tests;
pub mod values;

pub use command::ModelCommand;
pub use decide::{decide, live, register};
pub use event::{ModelEvent, NewVersion};
pub use evolve::evolve;
pub use guard::check as check_protection;
pub use state::{Change, Held, Holding, ModelState, Models, Move, Timeline, VersionState};
pub use values::{Lineage, RunOutputs, Stage, VersionStatus};

pub const KIND: &str = "model";
