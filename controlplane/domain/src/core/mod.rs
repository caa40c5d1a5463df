//! The core: the command and event envelopes, the state they fold into, and the two
//! functions every member runs in log order — [`decide`] and [`State::evolve`]. Both
//! dispatch to the aggregates with a `match` over every variant and no catch-all, so a
//! new command or event that is not handled fails to compile.

pub mod authz;
mod command;
mod decide;
mod event;
mod evolve;
pub mod kinds;
mod state;
#[cfg(test)]
mod tests;

pub use command::{Command, CommandBody};
pub use decide::decide;
pub use event::{Event, EventPayload};
pub use state::State;
