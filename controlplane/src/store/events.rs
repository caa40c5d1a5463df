//! The event store: the append-only log of events and its query indexes, in one sled
//! tree so that an applied batch (events, indexes and the applied log id) lands
//! atomically.
//!
//! Key layout (all integers big-endian, so byte order is numeric order):
//!
//! | prefix | key                          | value             |
//! |--------|------------------------------|-------------------|
//! | `E`    | seq                          | protobuf `Event`  |
//! | `N`    | kind 0x00 name 0x00 seq      | (empty)           |
//! | `T`    | type 0x00 seq                | (empty)           |
//! | `C`    | timestamp first-seq          | last-seq          |
//! | `M`    | name                         | bincode metadata  |
//!
//! Every sled insert costs a copy of a tree node, so an event carries only the index
//! entries that need one per event (entity, type). The time index holds one entry per
//! run of consecutive events with the same leader timestamp (a whole group-committed
//! batch shares one), and kind queries walk the entity index under the kind's prefix.
//! Queries go through the most selective index and never scan the whole log.

use std::ops::Bound;

use cairn_domain as domain;
use cairn_proto as pb;
use prost::Message;

/// Which events a query wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub kind: Option<String>,
    /// Only with `kind`.
    pub name: Option<String>,
    /// Any of these type names (empty: all).
    pub types: Vec<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub after_sequence: u64,
}

impl Filter {
    pub fn matches(&self, e: &pb::Event) -> bool {
        let (kind, name) = e
            .entity
            .as_ref()
            .map_or(("", ""), |r| (r.kind.as_str(), r.name.as_str()));
        e.sequence > self.after_sequence
            && self.kind.as_deref().is_none_or(|k| k == kind)
            && self.name.as_deref().is_none_or(|n| n == name)
            && (self.types.is_empty() || self.types.iter().any(|t| t == e.type_name()))
            && self.since_ms.is_none_or(|s| e.timestamp_ms >= s)
            && self.until_ms.is_none_or(|u| e.timestamp_ms < u)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt event store record {key:?}: {why}")]
    Corrupt { key: Vec<u8>, why: String },
}

/// The tree whose `current` key names the event store in use.
const POINTER_TREE: &str = "state_machine_pointer";
/// The first event store's tree; later generations are `state_machine.<id>`.
const FIRST_TREE: &str = "state_machine";

/// The event log and its indexes.
///
/// A snapshot install fills a new generation beside the current one and then switches
/// the pointer with one write, so a crash midway leaves the old store whole.
#[derive(Clone)]
pub struct EventStore {
    db: sled::Db,
    name: String,
    tree: sled::Tree,
}

fn seq_key(seq: u64) -> [u8; 9] {
    let mut k = [b'E'; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn prefixed(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![tag];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Timestamps as sortable unsigned bytes (negative before positive).
fn ts_bytes(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn seq_suffix(key: &[u8]) -> Result<u64, StoreError> {
    let tail = key
        .len()
        .checked_sub(8)
        .map(|at| &key[at..])
        .ok_or_else(|| StoreError::Corrupt {
            key: key.to_vec(),
            why: "index key too short".into(),
        })?;
    let mut b = [0u8; 8];
    b.copy_from_slice(tail);
    Ok(u64::from_be_bytes(b))
}

impl EventStore {
    /// The event store the pointer names; leftovers of an unfinished install go.
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        let name = match db.open_tree(POINTER_TREE)?.get("current")? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => FIRST_TREE.to_string(),
        };
        for t in db.tree_names() {
            if t.starts_with(FIRST_TREE.as_bytes())
                && t.as_ref() != name.as_bytes()
                && t.as_ref() != POINTER_TREE.as_bytes()
            {
                db.drop_tree(&t)?;
            }
        }
        Ok(Self {
            db: db.clone(),
            tree: db.open_tree(&name)?,
            name,
        })
    }

    /// A new, empty generation beside this one, for a snapshot to fill.
    pub fn next_generation(&self) -> Result<Self, sled::Error> {
        let name = format!("{FIRST_TREE}.{}", self.db.generate_id()?);
        let tree = self.db.open_tree(&name)?;
        tree.clear()?;
        Ok(Self {
            db: self.db.clone(),
            name,
            tree,
        })
    }

    /// Point at this generation from now on (one write; make it durable before
    /// dropping the old one).
    pub fn make_current(&self) -> Result<(), sled::Error> {
        self.db
            .open_tree(POINTER_TREE)?
            .insert("current", self.name.as_bytes())?;
        Ok(())
    }

    /// Remove this generation (once another is current).
    pub fn drop_generation(self) -> Result<(), sled::Error> {
        self.db.drop_tree(self.name.as_bytes())?;
        Ok(())
    }

    /// Stage one event and its index entries into `batch`; returns its encoding.
    /// The time index is staged through `times`, which the caller finishes.
    pub fn stage(batch: &mut sled::Batch, times: &mut TimeRuns, e: &domain::Event) -> Vec<u8> {
        let encoded = crate::convert::event_to_pb(e).encode_to_vec();
        let seq = e.sequence.to_be_bytes();
        let (kind, name) = (e.entity.kind.as_bytes(), e.entity.name.as_bytes());
        batch.insert(&seq_key(e.sequence), encoded.as_slice());
        batch.insert(prefixed(b'N', &[kind, &[0], name, &[0], &seq]), &[]);
        batch.insert(
            prefixed(b'T', &[e.payload.type_name().as_bytes(), &[0], &seq]),
            &[],
        );
        times.add(batch, e.timestamp_ms, e.sequence);
        encoded
    }

    /// Stage a metadata record.
    pub fn stage_meta(batch: &mut sled::Batch, name: &str, value: Vec<u8>) {
        batch.insert(prefixed(b'M', &[name.as_bytes()]), value);
    }

    pub fn meta(&self, name: &str) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.tree.get(prefixed(b'M', &[name.as_bytes()]))?)
    }

    pub fn apply(&self, batch: sled::Batch) -> Result<(), StoreError> {
        Ok(self.tree.apply_batch(batch)?)
    }

    pub fn get(&self, seq: u64) -> Result<Option<pb::Event>, StoreError> {
        self.tree
            .get(seq_key(seq))?
            .map(|v| decode_event(&seq_key(seq), &v))
            .transpose()
    }

    /// Encoded events with a sequence number in `from..=to`, in order.
    pub fn raw_range(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> + '_ {
        self.tree.range(seq_key(from)..=seq_key(to)).map(|kv| {
            let (k, v) = kv?;
            Ok((seq_suffix(&k)?, v))
        })
    }

    /// Up to `limit` events matching `f`, in sequence order, and whether more match.
    pub fn query(&self, f: &Filter, limit: usize) -> Result<(Vec<pb::Event>, bool), StoreError> {
        let mut out = Vec::new();
        let mut more = false;
        let mut visit = |seq: u64| -> Result<bool, StoreError> {
            if let Some(e) = self.get(seq)? {
                if f.matches(&e) {
                    if out.len() == limit {
                        more = true;
                        return Ok(false);
                    }
                    out.push(e);
                }
            }
            Ok(true)
        };
        let after = f.after_sequence.saturating_add(1).to_be_bytes();
        match (&f.kind, &f.name) {
            (Some(kind), Some(name)) => {
                let prefix = prefixed(b'N', &[kind.as_bytes(), &[0], name.as_bytes(), &[0]]);
                self.walk_index(&prefix, &after, &mut visit)?;
            }
            (Some(kind), None) => {
                // Entities of the kind, each in sequence order: gather and sort.
                let prefix = prefixed(b'N', &[kind.as_bytes(), &[0]]);
                let mut seqs = Vec::new();
                for kv in self.tree.scan_prefix(&prefix) {
                    let s = seq_suffix(&kv?.0)?;
                    if s > f.after_sequence {
                        seqs.push(s);
                    }
                }
                seqs.sort_unstable();
                for s in seqs {
                    if !visit(s)? {
                        break;
                    }
                }
            }
            _ if !f.types.is_empty() => {
                // Each type's index is in sequence order; merge them.
                let mut seqs = Vec::new();
                for t in &f.types {
                    let prefix = prefixed(b'T', &[t.as_bytes(), &[0]]);
                    let mut n = 0;
                    self.walk_index(&prefix, &after, &mut |s| {
                        seqs.push(s);
                        n += 1;
                        Ok(n <= limit)
                    })?;
                }
                seqs.sort_unstable();
                seqs.dedup();
                for s in seqs {
                    if !visit(s)? {
                        break;
                    }
                }
            }
            _ if f.since_ms.is_some() || f.until_ms.is_some() => {
                let lo = prefixed(b'C', &[&ts_bytes(f.since_ms.unwrap_or(i64::MIN))]);
                let hi = match f.until_ms {
                    Some(u) => Bound::Excluded(prefixed(b'C', &[&ts_bytes(u)])),
                    None => Bound::Excluded(vec![b'C' + 1]),
                };
                // Runs of sequence numbers, ordered by time; visit them in sequence order.
                let mut runs = Vec::new();
                for kv in self.tree.range((Bound::Included(lo), hi)) {
                    let (k, v) = kv?;
                    let (first, last) = (seq_suffix(&k)?, seq_suffix(&v)?);
                    if last > f.after_sequence {
                        runs.push((first.max(f.after_sequence + 1), last));
                    }
                }
                runs.sort_unstable();
                'runs: for (first, last) in runs {
                    for s in first..=last {
                        if !visit(s)? {
                            break 'runs;
                        }
                    }
                }
            }
            _ => {
                for kv in self
                    .tree
                    .range(seq_key(f.after_sequence.saturating_add(1))..)
                {
                    let (k, v) = kv?;
                    if k.first() != Some(&b'E') {
                        break;
                    }
                    let e = decode_event(&k, &v)?;
                    if f.matches(&e) {
                        if out.len() == limit {
                            more = true;
                            break;
                        }
                        out.push(e);
                    }
                }
            }
        }
        Ok((out, more))
    }

    /// Visit the sequence numbers under `prefix`, from `start`, while `visit` says go on.
    fn walk_index(
        &self,
        prefix: &[u8],
        start: &[u8; 8],
        visit: &mut dyn FnMut(u64) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut from = prefix.to_vec();
        from.extend_from_slice(start);
        for kv in self.tree.range(from..) {
            let (k, _) = kv?;
            if !k.starts_with(prefix) || k.len() != prefix.len() + 8 {
                break;
            }
            if !visit(seq_suffix(&k)?)? {
                break;
            }
        }
        Ok(())
    }
}

/// Builds the time index: one entry per run of consecutive events with one timestamp.
#[derive(Debug, Default)]
pub struct TimeRuns {
    /// (timestamp, first sequence, last sequence) of the run being built.
    run: Option<(i64, u64, u64)>,
}

impl TimeRuns {
    fn add(&mut self, batch: &mut sled::Batch, ts: i64, seq: u64) {
        match &mut self.run {
            Some((t, _, last)) if *t == ts && *last + 1 == seq => *last = seq,
            _ => {
                self.flush(batch);
                self.run = Some((ts, seq, seq));
            }
        }
    }

    fn flush(&mut self, batch: &mut sled::Batch) {
        if let Some((ts, first, last)) = self.run.take() {
            batch.insert(
                prefixed(b'C', &[&ts_bytes(ts), &first.to_be_bytes()]),
                &last.to_be_bytes(),
            );
        }
    }

    /// Stage the last run. A run cut by a batch boundary is simply two entries.
    pub fn finish(mut self, batch: &mut sled::Batch) {
        self.flush(batch);
    }
}

pub fn decode_event(key: &[u8], v: &[u8]) -> Result<pb::Event, StoreError> {
    pb::Event::decode(v).map_err(|e| StoreError::Corrupt {
        key: key.to_vec(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn event(seq: u64, ts: i64, kind: &str, name: &str, note: bool) -> domain::Event {
        domain::Event {
            sequence: seq,
            raft_index: seq,
            raft_term: 1,
            timestamp_ms: ts,
            entity: domain::EntityKey::new(kind, name),
            entity_revision: 1,
            actor: "t".into(),
            correlation_id: "c".into(),
            payload: if note {
                domain::EventPayload::NoteAdded { text: "n".into() }
            } else {
                domain::EventPayload::NamespaceCreated {
                    labels: BTreeMap::new(),
                }
            },
        }
    }

    /// Stage `events` with their indexes and apply them as one batch.
    fn apply_events(store: &EventStore, events: &[domain::Event]) {
        let mut batch = sled::Batch::default();
        let mut times = TimeRuns::default();
        for e in events {
            EventStore::stage(&mut batch, &mut times, e);
        }
        times.finish(&mut batch);
        store.apply(batch).expect("apply");
    }

    /// Found by a chaos campaign: a member killed while it replaced its event store
    /// with a snapshot's restarted with the front of its log deleted.
    #[test]
    fn regression_interrupted_snapshot_install_keeps_the_old_event_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("sled");
        let store = EventStore::open(&db).expect("store");
        let first: Vec<_> = (1..=5)
            .map(|seq| event(seq, 1000, "namespace", "a", false))
            .collect();
        apply_events(&store, &first);

        // --- an install fills a new generation, then "crashes" before switching
        let fresh = store.next_generation().expect("generation");
        apply_events(&fresh, &[event(1, 9, "namespace", "z", false)]);
        drop((store, fresh));
        let reopened = EventStore::open(&db).expect("reopen");
        let (events, _) = reopened.query(&Filter::default(), 100).expect("query");
        assert_eq!(
            events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(
            db.tree_names().len(),
            3,
            "the unfinished generation was not removed"
        );

        // --- a finished install switches over whole
        let fresh = reopened.next_generation().expect("generation");
        apply_events(&fresh, &[event(1, 9, "namespace", "z", false)]);
        fresh.make_current().expect("switch");
        reopened.drop_generation().expect("drop");
        let after = EventStore::open(&db).expect("reopen");
        let (events, _) = after.query(&Filter::default(), 100).expect("query");
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].entity.as_ref().map(|r| r.name.as_str()),
            Some("z")
        );
    }

    /// Every index answers exactly what a scan of all events with the filter would.
    #[test]
    fn index_queries_agree_with_a_full_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("sled");
        let store = EventStore::open(&db).expect("store");
        let mut all = Vec::new();
        // Three applied batches; timestamps repeat within a batch and go back once
        // (a new leader with a slower clock).
        let stamps = [1000, 1000, 1000, 2000, 2000, 1500, 1500, 3000];
        let mut seq = 0;
        for chunk in stamps.chunks(3) {
            let mut batch = sled::Batch::default();
            let mut times = TimeRuns::default();
            for &ts in chunk {
                for (kind, name) in [("namespace", "a"), ("namespace", "b"), ("member", "1")] {
                    seq += 1;
                    let e = event(seq, ts, kind, name, seq % 2 == 0);
                    EventStore::stage(&mut batch, &mut times, &e);
                    all.push(crate::convert::event_to_pb(&e));
                }
            }
            times.finish(&mut batch);
            store.apply(batch).expect("apply");
        }
        let filters = [
            Filter::default(),
            Filter {
                kind: Some("namespace".into()),
                name: Some("a".into()),
                ..Filter::default()
            },
            Filter {
                kind: Some("namespace".into()),
                ..Filter::default()
            },
            Filter {
                types: vec!["note_added".into()],
                ..Filter::default()
            },
            Filter {
                types: vec!["note_added".into(), "namespace_created".into()],
                after_sequence: 5,
                ..Filter::default()
            },
            Filter {
                since_ms: Some(1500),
                until_ms: Some(3000),
                ..Filter::default()
            },
            Filter {
                since_ms: Some(1000),
                kind: Some("member".into()),
                after_sequence: 4,
                ..Filter::default()
            },
            Filter {
                until_ms: Some(2000),
                after_sequence: 2,
                ..Filter::default()
            },
        ];
        for f in &filters {
            let expected: Vec<_> = all.iter().filter(|e| f.matches(e)).cloned().collect();
            for limit in [1, 2, 5, 100] {
                let (got, more) = store.query(f, limit).expect("query");
                let want: Vec<_> = expected.iter().take(limit).cloned().collect();
                assert_eq!(got, want, "filter {f:?}, limit {limit}");
                assert_eq!(more, expected.len() > limit, "filter {f:?}, limit {limit}");
            }
        }
        // Events come back by sequence number, and only through the public reader.
        assert_eq!(store.get(7).expect("get").map(|e| e.sequence), Some(7));
        assert_eq!(store.get(999).expect("get"), None);
    }
}
