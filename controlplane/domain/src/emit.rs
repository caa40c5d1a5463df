//! How an aggregate's `decide` hands over the events it decides on.
//!
//! An aggregate knows only its own event type (and those of the aggregates below it, e.g.
//! a cron starts jobs); the core's emitter stamps each event with its sequence number,
//! entity revision and position. In an aggregate's own tests a plain `Vec` collects them.

/// Takes the events of one kind, in order, each about the entity `name` of that kind.
pub trait Emit<E> {
    fn emit(&mut self, name: &str, event: E);
}

impl<E> Emit<E> for Vec<(String, E)> {
    fn emit(&mut self, name: &str, event: E) {
        self.push((name.to_string(), event));
    }
}
