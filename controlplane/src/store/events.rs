//! The event store: the append-only log of events and its query indexes, in one sled
//! tree with the applied record, which is written after the events of its batch (see
//! [`EventStore::commit`]).
//!
//! Events are stored in **chunks**: the consecutive events of one applied batch (up to
//! [`CHUNK_BYTES`]) are one record, keyed by the sequence number of the first, and the
//! indexes point at chunks, once per chunk however many of its events they cover. A
//! group-committed batch of a hundred commands is then a handful of sled inserts rather
//! than three hundred; every sled insert costs a copy of a tree node and a record in
//! sled's log, and they were most of a member's work per write.
//!
//! Key layout (all integers big-endian, so byte order is numeric order):
//!
//! | prefix | key                            | value                                   |
//! |--------|--------------------------------|-----------------------------------------|
//! | `E`    | first-seq                      | the chunk: length-delimited `Event`s    |
//! | `N`    | kind 0x00 name 0x00 first-seq  | (empty): the chunk holds the entity's   |
//! | `T`    | type 0x00 first-seq            | (empty): the chunk holds the type       |
//! | `C`    | timestamp first-seq            | last-seq: a run of one leader timestamp |
//! | `M`    | name                           | metadata                                |
//!
//! A chunk's events have the sequence numbers `first..first + count`, so the chunk of
//! event `s` is the last `E` key at or before `s`. Queries go through the most
//! selective index, read the chunks it names, filter their events, and never scan the
//! whole log.

use std::collections::BTreeSet;
use std::ops::Bound;

use cairn_domain as domain;
use cairn_proto as pb;
use prost::Message;

use crate::convert::ToPb;

/// A chunk is closed once it holds this many bytes (well below the size at which sled
/// moves a value to a blob file of its own).
pub const CHUNK_BYTES: usize = 8 * 1024;

/// The layout above; a store written in another layout is refused at open.
const FORMAT: &[u8] = b"chunks-2";

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
    /// Only events with this actor (no index: the other fields choose the scan).
    pub actor: Option<String>,
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
            && self.actor.as_deref().is_none_or(|a| a == e.actor)
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

fn meta_key(name: &str) -> Vec<u8> {
    prefixed(b'M', &[name.as_bytes()])
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

/// The encoded events of the chunk stored under `key`, with their sequence numbers.
fn split_chunk(key: &[u8], chunk: &sled::IVec) -> Result<Vec<(u64, sled::IVec)>, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        key: key.to_vec(),
        why,
    };
    let first = seq_suffix(key)?;
    let mut out = Vec::new();
    let mut rest: &[u8] = chunk;
    while !rest.is_empty() {
        let len = prost::encoding::decode_varint(&mut rest)
            .map_err(|e| corrupt(format!("chunk entry length: {e}")))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= rest.len())
            .ok_or_else(|| corrupt(format!("chunk entry of {len} bytes overruns the chunk")))?;
        let at = chunk.len() - rest.len();
        out.push((first + out.len() as u64, chunk.subslice(at, len)));
        rest = &rest[len..];
    }
    Ok(out)
}

impl EventStore {
    /// The event store the pointer names; leftovers of an unfinished install go.
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
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
        Self::with_tree(db, name)
    }

    /// The store in tree `name`, stamped with this layout when new, refused when it was
    /// written in another.
    fn with_tree(db: &sled::Db, name: String) -> Result<Self, StoreError> {
        let tree = db.open_tree(&name)?;
        match tree.get(meta_key("format"))? {
            Some(f) if f.as_ref() == FORMAT => {}
            None if tree.is_empty() => {
                tree.insert(meta_key("format"), FORMAT)?;
            }
            found => {
                return Err(StoreError::Corrupt {
                    key: meta_key("format"),
                    why: format!(
                        "the event store is in layout {:?}, this server reads {:?}: \
                         start it on an empty data directory and let it catch up from \
                         the cluster",
                        found.map(|f| String::from_utf8_lossy(&f).into_owned()),
                        String::from_utf8_lossy(FORMAT)
                    ),
                })
            }
        }
        Ok(Self {
            db: db.clone(),
            name,
            tree,
        })
    }

    /// A new, empty generation beside this one, for a snapshot to fill.
    pub fn next_generation(&self) -> Result<Self, StoreError> {
        let name = format!("{FIRST_TREE}.{}", self.db.generate_id()?);
        self.db.open_tree(&name)?.clear()?;
        Self::with_tree(&self.db, name)
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

    pub fn meta(&self, name: &str) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.tree.get(meta_key(name))?)
    }

    /// Write everything staged: chunks and index entries first, metadata last.
    ///
    /// One insert at a time, in that order, not a `sled::Batch`: sled's `apply_batch`
    /// takes a process-wide write lock that waits for any flush in progress, which cost
    /// 70-220 µs per batch and serialised appends, applies and flushes. sled recovers a
    /// prefix of the writes it was given, so after a crash the metadata (the applied
    /// record, written last) is either there with every event of its batch, or missing;
    /// then [`EventStore::drop_events_after`] removes the batch's events at the next
    /// start and Raft applies the batch again. Index entries left behind point at chunks
    /// that are gone or rewritten identically; queries filter what they read, so they
    /// cost nothing but a lookup.
    pub fn commit(&self, staged: Staging) -> Result<(), StoreError> {
        for (k, v) in staged.finish() {
            self.tree.insert(k, v)?;
        }
        Ok(())
    }

    /// Remove the chunks of events applied from Raft entries after `index` (the
    /// applied record says `index` was the last applied). Chunks never span two applied
    /// batches, so a chunk's first event tells which batch it belongs to.
    pub fn drop_events_after(&self, index: u64) -> Result<u64, StoreError> {
        let mut dropped = 0;
        while let Some(kv) = self.tree.range(seq_key(0)..=seq_key(u64::MAX)).next_back() {
            let (k, v) = kv?;
            let Some((_, first)) = split_chunk(&k, &v)?.into_iter().next() else {
                break;
            };
            if decode_event(&k, &first)?.raft_index <= index {
                break;
            }
            self.tree.remove(k)?;
            dropped += 1;
        }
        if dropped > 0 {
            tracing::info!(
                dropped,
                applied = index,
                "removed the events of an unfinished apply"
            );
        }
        Ok(dropped)
    }

    /// The first sequence number of the chunk that holds (or would hold) `seq`.
    fn chunk_of(&self, seq: u64) -> Result<Option<u64>, StoreError> {
        match self.tree.range(seq_key(0)..=seq_key(seq)).next_back() {
            Some(kv) => Ok(Some(seq_suffix(&kv?.0)?)),
            None => Ok(None),
        }
    }

    /// Where index walks for events after `after` start: the chunk holding `after + 1`.
    fn first_chunk_after(&self, after: u64) -> Result<u64, StoreError> {
        let next = after.saturating_add(1);
        Ok(self.chunk_of(next)?.unwrap_or(next))
    }

    fn chunk(&self, first: u64) -> Result<Vec<(u64, sled::IVec)>, StoreError> {
        let key = seq_key(first);
        match self.tree.get(key)? {
            Some(v) => split_chunk(&key, &v),
            None => Ok(Vec::new()),
        }
    }

    pub fn get(&self, seq: u64) -> Result<Option<pb::Event>, StoreError> {
        let Some(first) = self.chunk_of(seq)? else {
            return Ok(None);
        };
        self.chunk(first)?
            .into_iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, v)| decode_event(&seq_key(seq), &v))
            .transpose()
    }

    /// Encoded events with a sequence number in `from..=to`, in order.
    pub fn raw_range(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = Result<(u64, sled::IVec), StoreError>> + '_> {
        let start = match self.chunk_of(from) {
            Ok(first) => first.unwrap_or(from),
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        Box::new(
            self.tree
                .range(seq_key(start)..=seq_key(to))
                .flat_map(move |kv| {
                    let events = kv
                        .map_err(StoreError::from)
                        .and_then(|(k, v)| split_chunk(&k, &v));
                    match events {
                        Ok(events) => events
                            .into_iter()
                            .filter(|(s, _)| (from..=to).contains(s))
                            .map(Ok)
                            .collect(),
                        Err(e) => vec![Err(e)],
                    }
                }),
        )
    }

    /// Up to `limit` events matching `f`, in sequence order, and whether more match.
    pub fn query(&self, f: &Filter, limit: usize) -> Result<(Vec<pb::Event>, bool), StoreError> {
        let mut out = Vec::new();
        let mut more = false;
        // Read one chunk; false once the page is full and one more match was seen.
        let mut visit = |first: u64| -> Result<bool, StoreError> {
            for (seq, bytes) in self.chunk(first)? {
                if seq <= f.after_sequence {
                    continue;
                }
                let e = decode_event(&seq_key(seq), &bytes)?;
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
        let start = self.first_chunk_after(f.after_sequence)?;
        let from = start.to_be_bytes();
        match (&f.kind, &f.name) {
            (Some(kind), Some(name)) => {
                let prefix = prefixed(b'N', &[kind.as_bytes(), &[0], name.as_bytes(), &[0]]);
                self.walk_index(&prefix, &from, &mut visit)?;
            }
            (Some(kind), None) => {
                // Entities of the kind, each in sequence order: gather and merge.
                let prefix = prefixed(b'N', &[kind.as_bytes(), &[0]]);
                let mut chunks = BTreeSet::new();
                for kv in self.tree.scan_prefix(&prefix) {
                    let first = seq_suffix(&kv?.0)?;
                    if first >= start {
                        chunks.insert(first);
                    }
                }
                visit_all(chunks, &mut visit)?;
            }
            _ if !f.types.is_empty() => {
                // Each type's index is in sequence order. Every chunk it names after
                // the first holds a match, so `limit + 2` chunks per type are enough
                // to find the page and whether more follow.
                let mut chunks = BTreeSet::new();
                for t in &f.types {
                    let prefix = prefixed(b'T', &[t.as_bytes(), &[0]]);
                    let mut n = 0;
                    self.walk_index(&prefix, &from, &mut |first| {
                        chunks.insert(first);
                        n += 1;
                        Ok(n < limit.saturating_add(2))
                    })?;
                }
                visit_all(chunks, &mut visit)?;
            }
            _ if f.since_ms.is_some() || f.until_ms.is_some() => {
                let lo = prefixed(b'C', &[&ts_bytes(f.since_ms.unwrap_or(i64::MIN))]);
                let hi = match f.until_ms {
                    Some(u) => Bound::Excluded(prefixed(b'C', &[&ts_bytes(u)])),
                    None => Bound::Excluded(vec![b'C' + 1]),
                };
                // Runs of sequence numbers, ordered by time: the chunks they cover.
                let mut chunks = BTreeSet::new();
                for kv in self.tree.range((Bound::Included(lo), hi)) {
                    let (k, v) = kv?;
                    let (first, last) = (seq_suffix(&k)?, seq_suffix(&v)?);
                    if last < start {
                        continue;
                    }
                    let lo = self.chunk_of(first.max(start))?.unwrap_or(first);
                    for kv in self.tree.range(seq_key(lo)..=seq_key(last)) {
                        chunks.insert(seq_suffix(&kv?.0)?);
                    }
                }
                visit_all(chunks, &mut visit)?;
            }
            _ => {
                for kv in self.tree.range(seq_key(start)..=seq_key(u64::MAX)) {
                    if !visit(seq_suffix(&kv?.0)?)? {
                        break;
                    }
                }
            }
        }
        Ok((out, more))
    }

    /// Visit the chunks under `prefix`, from `start`, while `visit` says go on.
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

fn visit_all(
    chunks: BTreeSet<u64>,
    visit: &mut dyn FnMut(u64) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    for first in chunks {
        if !visit(first)? {
            break;
        }
    }
    Ok(())
}

/// What one applied batch writes: its events in chunks, their index entries, the time
/// runs and metadata, written in that order by [`EventStore::commit`].
pub struct Staging {
    writes: Vec<(Vec<u8>, Vec<u8>)>,
    metas: Vec<(Vec<u8>, Vec<u8>)>,
    chunk_bytes: usize,
    /// The chunk being filled: its first sequence number, events and index keys
    /// (without the sequence suffix).
    first: u64,
    count: u64,
    chunk: Vec<u8>,
    index: BTreeSet<Vec<u8>>,
    /// (timestamp, first sequence, last sequence) of the time run being built.
    run: Option<(i64, u64, u64)>,
}

impl Default for Staging {
    fn default() -> Self {
        Self::with_chunk_bytes(CHUNK_BYTES)
    }
}

impl Staging {
    /// Staging that closes chunks at `chunk_bytes` (tests use small chunks).
    pub fn with_chunk_bytes(chunk_bytes: usize) -> Self {
        Self {
            writes: Vec::new(),
            metas: Vec::new(),
            chunk_bytes,
            first: 0,
            count: 0,
            chunk: Vec::new(),
            index: BTreeSet::new(),
            run: None,
        }
    }

    /// Stage one event (the next in sequence); returns its encoding.
    pub fn event(&mut self, e: &domain::Event) -> Vec<u8> {
        let encoded = e.to_pb().encode_to_vec();
        if self.count > 0
            && (self.first + self.count != e.sequence || self.chunk.len() >= self.chunk_bytes)
        {
            self.close_chunk();
        }
        if self.count == 0 {
            self.first = e.sequence;
        }
        prost::encoding::encode_varint(encoded.len() as u64, &mut self.chunk);
        self.chunk.extend_from_slice(&encoded);
        self.count += 1;
        let (kind, name) = (e.entity.kind.as_bytes(), e.entity.name.as_bytes());
        self.index.insert(prefixed(b'N', &[kind, &[0], name, &[0]]));
        self.index
            .insert(prefixed(b'T', &[e.payload.type_name().as_bytes(), &[0]]));
        match &mut self.run {
            Some((t, _, last)) if *t == e.timestamp_ms && *last + 1 == e.sequence => {
                *last = e.sequence
            }
            _ => {
                self.close_run();
                self.run = Some((e.timestamp_ms, e.sequence, e.sequence));
            }
        }
        encoded
    }

    /// Stage a metadata record.
    pub fn meta(&mut self, name: &str, value: Vec<u8>) {
        self.metas.push((meta_key(name), value));
    }

    fn close_chunk(&mut self) {
        if self.count == 0 {
            return;
        }
        let first = self.first.to_be_bytes();
        self.writes.push((
            seq_key(self.first).to_vec(),
            std::mem::take(&mut self.chunk),
        ));
        for mut k in std::mem::take(&mut self.index) {
            k.extend_from_slice(&first);
            self.writes.push((k, Vec::new()));
        }
        self.count = 0;
    }

    /// A run cut by a batch boundary is simply two entries.
    fn close_run(&mut self) {
        if let Some((ts, first, last)) = self.run.take() {
            self.writes.push((
                prefixed(b'C', &[&ts_bytes(ts), &first.to_be_bytes()]),
                last.to_be_bytes().to_vec(),
            ));
        }
    }

    /// Everything staged, in write order: chunks and index entries, then metadata.
    fn finish(mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.close_chunk();
        self.close_run();
        self.writes.append(&mut self.metas);
        self.writes
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
                domain::EventPayload::Namespace(domain::namespace::NamespaceEvent::Created {
                    labels: BTreeMap::new(),
                })
            },
        }
    }

    /// An empty event store in a new sled database (keep the directory alive).
    fn fresh_store() -> (tempfile::TempDir, sled::Db, EventStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("sled");
        let store = EventStore::open(&db).expect("store");
        (dir, db, store)
    }

    /// Stage `events` with their indexes and commit them as one batch.
    fn apply_events(store: &EventStore, events: &[domain::Event]) {
        apply_events_in_chunks(store, events, CHUNK_BYTES);
    }

    /// The same, closing chunks at `chunk_bytes`.
    fn apply_events_in_chunks(store: &EventStore, events: &[domain::Event], chunk_bytes: usize) {
        let mut staged = Staging::with_chunk_bytes(chunk_bytes);
        for e in events {
            staged.event(e);
        }
        store.commit(staged).expect("commit");
    }

    /// Found by a chaos campaign: a member killed while it replaced its event store
    /// with a snapshot's restarted with the front of its log deleted.
    #[test]
    fn every_event_type_is_found_through_the_type_index_under_its_schema_name() {
        let (_dir, _db, store) = fresh_store();
        let events = crate::convert::tests::every_stamped_event();
        // Small chunks: most types get chunks of their own.
        apply_events_in_chunks(&store, &events, 64);
        for e in &events {
            let name = e.payload.type_name();
            assert!(pb::EVENT_TYPES.contains(&name), "{name}");
            let filter = Filter {
                types: vec![name.to_string()],
                ..Filter::default()
            };
            let (found, _) = store.query(&filter, 100).expect("query");
            let found: Vec<u64> = found.iter().map(|e| e.sequence).collect();
            assert_eq!(found, [e.sequence], "the index of {name}");
        }
    }

    #[test]
    fn regression_interrupted_snapshot_install_keeps_the_old_event_store() {
        let (_dir, db, store) = fresh_store();
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

    /// Every index answers exactly what a scan of all events with the filter would,
    /// whether each event is a chunk of its own, chunks hold a few, or one batch is one
    /// chunk.
    #[test]
    fn index_queries_agree_with_a_full_scan() {
        for chunk_bytes in [1, 150, CHUNK_BYTES] {
            queries_agree_with_a_full_scan(chunk_bytes);
        }
    }

    fn queries_agree_with_a_full_scan(chunk_bytes: usize) {
        let (_dir, _db, store) = fresh_store();
        let mut all = Vec::new();
        // Three applied batches; timestamps repeat within a batch and go back once
        // (a new leader with a slower clock).
        let stamps = [1000, 1000, 1000, 2000, 2000, 1500, 1500, 3000];
        let mut seq = 0;
        for batch in stamps.chunks(3) {
            let mut staged = Staging::with_chunk_bytes(chunk_bytes);
            for &ts in batch {
                for (kind, name) in [("namespace", "a"), ("namespace", "b"), ("member", "1")] {
                    seq += 1;
                    let e = event(seq, ts, kind, name, seq % 2 == 0);
                    staged.event(&e);
                    all.push(e.to_pb());
                }
            }
            store.commit(staged).expect("commit");
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
        // Events come back by sequence number, one or a range.
        for e in &all {
            assert_eq!(store.get(e.sequence).expect("get").as_ref(), Some(e));
        }
        assert_eq!(store.get(0).expect("get"), None);
        assert_eq!(store.get(999).expect("get"), None);
        for (from, to) in [(1, 24), (5, 9), (7, 7), (20, 99)] {
            let got: Vec<u64> = store
                .raw_range(from, to)
                .map(|r| r.expect("range").0)
                .collect();
            let want: Vec<u64> = (from..=to.min(24)).collect();
            assert_eq!(
                got, want,
                "range {from}..={to}, chunks of {chunk_bytes} bytes"
            );
        }
    }

    /// A batch of events about one entity is one chunk and one entry per index.
    #[test]
    fn a_batch_is_one_chunk_with_one_entry_per_index() {
        let (_dir, _db, store) = fresh_store();
        let events: Vec<_> = (1..=100)
            .map(|seq| event(seq, 1000, "namespace", "a", true))
            .collect();
        apply_events(&store, &events);
        let count = |tag: u8| store.tree.scan_prefix([tag]).count();
        assert_eq!(
            (count(b'E'), count(b'N'), count(b'T'), count(b'C')),
            (1, 1, 1, 1)
        );
        assert_eq!(store.get(57).expect("get").map(|e| e.sequence), Some(57));
    }

    /// After a crash between an applied batch's events and its applied record, the
    /// events of the unfinished batch are removed at start; the rest stay.
    #[test]
    fn events_of_an_unfinished_apply_are_dropped() {
        let (_dir, _db, store) = fresh_store();
        // event(seq, ..) comes from Raft entry `seq`.
        let done: Vec<_> = (1..=5)
            .map(|s| event(s, 1000, "namespace", "a", true))
            .collect();
        apply_events(&store, &done);
        let unfinished: Vec<_> = (6..=8)
            .map(|s| event(s, 1000, "namespace", "a", true))
            .collect();
        apply_events_in_chunks(&store, &unfinished, 120);
        assert!(store.get(8).expect("get").is_some());

        assert!(store.drop_events_after(5).expect("drop") >= 1);
        let seqs: Vec<u64> = store
            .raw_range(1, u64::MAX)
            .map(|r| r.expect("range").0)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(store.drop_events_after(5).expect("drop again"), 0);
        // A query by entity still answers exactly (its index entries for the dropped
        // chunks lead nowhere).
        let (events, more) = store
            .query(
                &Filter {
                    kind: Some("namespace".into()),
                    name: Some("a".into()),
                    ..Filter::default()
                },
                100,
            )
            .expect("query");
        assert_eq!((events.len(), more), (5, false));
    }

    /// A store in another layout is refused with a message that says what to do,
    /// rather than misread.
    #[test]
    fn a_store_in_another_layout_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("sled");
        db.open_tree(FIRST_TREE)
            .expect("tree")
            .insert(seq_key(1), b"an event of the old layout".as_slice())
            .expect("insert");
        let err = EventStore::open(&db).err().expect("refused");
        assert!(err.to_string().contains("empty data directory"), "{err}");
    }
}
