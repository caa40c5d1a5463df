//! Serializable views of the wire types, as `-o json|yaml` shows them.

use std::collections::BTreeMap;

use cairn_proto as pb;
use serde::Serialize;

use crate::output::time;

#[derive(Debug, Serialize)]
pub struct EventView {
    pub sequence: u64,
    pub time: String,
    pub timestamp_ms: i64,
    pub entity: String,
    pub entity_revision: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: String,
    pub correlation_id: String,
    pub raft_index: u64,
    pub raft_term: u64,
    pub payload: serde_json::Value,
}

impl From<&pb::Event> for EventView {
    fn from(e: &pb::Event) -> Self {
        use pb::event::Payload as P;
        let payload =
            match &e.payload {
                Some(P::MemberAdded(x)) => serde_json::to_value(x),
                Some(P::MemberPromoted(x)) => serde_json::to_value(x),
                Some(P::MemberRemoved(x)) => serde_json::to_value(x),
                Some(P::NamespaceCreated(x)) => serde_json::to_value(x.labels.clone())
                    .map(|l| serde_json::json!({ "labels": l })),
                Some(P::NamespaceLabelsChanged(x)) => serde_json::to_value(x.labels.clone())
                    .map(|l| serde_json::json!({ "labels": l })),
                Some(P::NamespaceDeleted(x)) => serde_json::to_value(x),
                Some(P::NoteAdded(x)) => serde_json::to_value(x),
                Some(P::NodeRegistered(x)) => {
                    let inv = x.inventory.clone().unwrap_or_default();
                    Ok(serde_json::json!({
                        "hostname": inv.hostname,
                        "gpus": inv.gpus.len(),
                        "gpu_provider": inv.gpu_provider,
                        "port_range": format!("{}-{}", inv.port_range_start, inv.port_range_end),
                    }))
                }
                Some(other) => serde_json::to_value(other).map(|v| match v {
                    // The oneof serializes as {"Variant": payload}: keep the payload.
                    serde_json::Value::Object(m) => m
                        .into_iter()
                        .next()
                        .map_or(serde_json::Value::Null, |(_, v)| v),
                    v => v,
                }),
                None => Ok(serde_json::Value::Null),
            }
            .unwrap_or(serde_json::Value::Null);
        Self {
            sequence: e.sequence,
            time: time(e.timestamp_ms),
            timestamp_ms: e.timestamp_ms,
            entity: e.entity.as_ref().map(|r| r.to_string()).unwrap_or_default(),
            entity_revision: e.entity_revision,
            kind: e.type_name().to_string(),
            actor: e.actor.clone(),
            correlation_id: e.correlation_id.clone(),
            raft_index: e.raft_index,
            raft_term: e.raft_term,
            payload,
        }
    }
}

impl EventView {
    /// The payload on one line, for tables.
    pub fn details(&self) -> String {
        match &self.payload {
            serde_json::Value::Object(m) if m.is_empty() => String::new(),
            serde_json::Value::Null => String::new(),
            v => {
                let s = v.to_string();
                if s.chars().count() > 80 {
                    format!("{}…", s.chars().take(79).collect::<String>())
                } else {
                    s
                }
            }
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EntityView {
    pub entity: String,
    pub revision: u64,
    pub created: String,
    pub updated: String,
    pub deleted: bool,
    pub labels: BTreeMap<String, String>,
    pub notes: u64,
}

impl From<&pb::Entity> for EntityView {
    fn from(e: &pb::Entity) -> Self {
        Self {
            entity: e.r#ref.as_ref().map(|r| r.to_string()).unwrap_or_default(),
            revision: e.revision,
            created: time(e.created_ms),
            updated: time(e.updated_ms),
            deleted: e.deleted,
            labels: e.labels.clone(),
            notes: e.notes,
        }
    }
}

pub fn labels_line(l: &BTreeMap<String, String>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
