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
//! | `K`    | kind 0x00 seq                | (empty)           |
//! | `T`    | type 0x00 seq                | (empty)           |
//! | `C`    | timestamp seq                | (empty)           |
//! | `M`    | name                         | bincode metadata  |
//!
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

/// The event log and its indexes.
#[derive(Clone)]
pub struct EventStore {
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
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            tree: db.open_tree("state_machine")?,
        })
    }

    /// Stage one event and its index entries into `batch`; returns its encoding.
    pub fn stage(batch: &mut sled::Batch, e: &domain::Event) -> Vec<u8> {
        let encoded = crate::convert::event_to_pb(e).encode_to_vec();
        let seq = e.sequence.to_be_bytes();
        let (kind, name) = (e.entity.kind.as_bytes(), e.entity.name.as_bytes());
        batch.insert(&seq_key(e.sequence), encoded.as_slice());
        batch.insert(prefixed(b'N', &[kind, &[0], name, &[0], &seq]), &[]);
        batch.insert(prefixed(b'K', &[kind, &[0], &seq]), &[]);
        batch.insert(
            prefixed(b'T', &[e.payload.type_name().as_bytes(), &[0], &seq]),
            &[],
        );
        batch.insert(prefixed(b'C', &[&ts_bytes(e.timestamp_ms), &seq]), &[]);
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

    /// Remove everything (before installing a snapshot).
    pub fn clear(&self) -> Result<(), StoreError> {
        Ok(self.tree.clear()?)
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
                let prefix = prefixed(b'K', &[kind.as_bytes(), &[0]]);
                self.walk_index(&prefix, &after, &mut visit)?;
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
                let mut seqs = Vec::new();
                for kv in self.tree.range((Bound::Included(lo), hi)) {
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

pub fn decode_event(key: &[u8], v: &[u8]) -> Result<pb::Event, StoreError> {
    pb::Event::decode(v).map_err(|e| StoreError::Corrupt {
        key: key.to_vec(),
        why: e.to_string(),
    })
}
