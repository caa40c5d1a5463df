//! The event log: pages of a query, the stored bytes of a range, and watches that
//! follow new events as they are applied.

use std::time::Duration;

use cairn_proto as pb;
use tokio::sync::mpsc;

use super::{App, AppError, Result};
use crate::store::events::Filter;

/// Events a watch has not handed out yet, as they come.
pub type Watch = mpsc::Receiver<Result<pb::Event>>;

/// Events a watch reads from the store at a time, and holds for its reader at most: a
/// reader that does not keep up costs the member these, whatever is written meanwhile
/// (the watch reads on from the store as the reader takes them).
const WATCH_PAGE: usize = 16;
/// A reader that takes no event for this long while its buffer is full is let go, with
/// an error that says so (the CLI's tail resumes after the last event it printed).
const WATCH_STALL: Duration = Duration::from_secs(30);

fn store(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(e.to_string())
}

impl App {
    /// Up to `limit` events matching `filter` with a sequence number up to `upto` (the
    /// read point, so a page and its read point agree), and the sequence to read on from
    /// when more match (0: none).
    pub fn list_events(
        &self,
        filter: &Filter,
        limit: usize,
        upto: u64,
    ) -> Result<(Vec<pb::Event>, u64)> {
        let (events, more) = self.shared().events().query(filter, limit).map_err(store)?;
        let events: Vec<pb::Event> = events.into_iter().filter(|e| e.sequence <= upto).collect();
        let next = if more {
            events.last().map_or(0, |e| e.sequence)
        } else {
            0
        };
        Ok((events, next))
    }

    /// The stored bytes of up to `limit` events after `after`, up to `upto`, and the
    /// sequence to read on from (0: none left).
    pub fn list_stored(&self, after: u64, limit: usize, upto: u64) -> Result<(Vec<Vec<u8>>, u64)> {
        if after >= upto || limit == 0 {
            return Ok((Vec::new(), 0));
        }
        let last = upto.min(after.saturating_add(limit as u64));
        let events = self.shared().events();
        let raw = events
            .raw_range(after + 1, last)
            .map(|r| r.map(|(_, bytes)| bytes.to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(store)?;
        let next = if last < upto { last } else { 0 };
        Ok((raw, next))
    }

    /// The events matching `filter`, then every new one as it is applied, until the
    /// receiver is dropped.
    pub fn watch(&self, mut filter: Filter) -> Watch {
        let shared = self.shared().clone();
        let (tx, rx) = mpsc::channel(WATCH_PAGE + 1);
        tokio::spawn(async move {
            let mut applied = shared.applied();
            loop {
                // Scan up to what has been applied; remember how far we looked.
                let upto = applied.borrow_and_update().last_sequence;
                let (events, more) = match shared.events().query(&filter, WATCH_PAGE) {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(store(e))).await;
                        return;
                    }
                };
                for e in events {
                    // Two free places before each event, so one is always left for
                    // the error that ends a stalled reader's watch.
                    match tokio::time::timeout(WATCH_STALL, tx.reserve_many(2)).await {
                        Ok(Ok(mut permits)) => {
                            filter.after_sequence = e.sequence;
                            if let Some(p) = permits.next() {
                                p.send(Ok(e));
                            }
                        }
                        Ok(Err(_)) => return, // The reader went away.
                        Err(_) => {
                            let _ = tx.try_send(Err(AppError::Unavailable(format!(
                                "the reader took no event for {WATCH_STALL:?}; its watch is closed after sequence {} (resume from there)",
                                filter.after_sequence
                            ))));
                            return;
                        }
                    }
                }
                if !more {
                    filter.after_sequence = filter.after_sequence.max(upto);
                    tokio::select! {
                        changed = applied.changed() => if changed.is_err() { return },
                        _ = tx.closed() => return,
                    }
                }
            }
        });
        rx
    }
}
