//! Serializable views of the wire types, as `-o json|yaml` shows them (events, entities,
//! a node's GPUs), and the event and entity tables that several commands print.

use std::collections::BTreeMap;

use cairn_proto as pb;
use serde::Serialize;

use crate::output::{table, time};

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

/// A model stage's name.
pub fn stage_name(v: i32) -> &'static str {
    match pb::ModelStage::try_from(v) {
        Ok(pb::ModelStage::None) => "None",
        Ok(pb::ModelStage::Staging) => "Staging",
        Ok(pb::ModelStage::Production) => "Production",
        Ok(pb::ModelStage::Archived) => "Archived",
        Err(_) => "?",
    }
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
                Some(P::ModelVersionStageChanged(x)) => Ok(serde_json::json!({
                    "version": x.version,
                    "from": stage_name(x.from),
                    "to": stage_name(x.to),
                    "reason": x.reason,
                })),
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

/// Events as a table: what `events list` and every change print.
pub fn events_table(views: &[EventView]) -> comfy_table::Table {
    let mut t = table(&["SEQ", "TIME", "ENTITY", "REV", "TYPE", "ACTOR", "DETAILS"]);
    for v in views {
        t.add_row(vec![
            v.sequence.to_string(),
            v.time.clone(),
            v.entity.clone(),
            v.entity_revision.to_string(),
            v.kind.clone(),
            v.actor.clone(),
            v.details(),
        ]);
    }
    t
}

/// Entities as a table: what `get`, `ns get` and `ns list` print.
pub fn entities_table(views: &[EntityView]) -> comfy_table::Table {
    let mut t = table(&[
        "ENTITY", "REV", "CREATED", "UPDATED", "LABELS", "NOTES", "DELETED",
    ]);
    for v in views {
        t.add_row(vec![
            v.entity.clone(),
            v.revision.to_string(),
            v.created.clone(),
            v.updated.clone(),
            labels_line(&v.labels),
            v.notes.to_string(),
            v.deleted.to_string(),
        ]);
    }
    t
}

/// One GPU of a node, with its health and cordon (`node get` and `gpu list`).
#[derive(Serialize, Clone)]
pub struct GpuOut {
    pub node: String,
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub memory_total_mib: u64,
    pub compute_capability: String,
    pub numa_node: i32,
    pub cpu_affinity: String,
    pub mig_enabled: bool,
    pub healthy: bool,
    pub reason: String,
    pub cordoned: bool,
}

pub fn gpus_of(n: &pb::NodeView) -> Vec<GpuOut> {
    let inv = n.inventory.clone().unwrap_or_default();
    inv.gpus
        .iter()
        .map(|g| {
            let h = n.health.iter().find(|h| h.uuid == g.uuid);
            GpuOut {
                node: n.name.clone(),
                index: g.index,
                uuid: g.uuid.clone(),
                name: g.name.clone(),
                pci_bus_id: g.pci_bus_id.clone(),
                memory_total_mib: g.memory_total_mib,
                compute_capability: g.compute_capability.clone(),
                numa_node: g.numa_node,
                cpu_affinity: g.cpu_affinity.clone(),
                mig_enabled: g.mig_enabled,
                healthy: h.is_none_or(|h| h.healthy),
                reason: h.map(|h| h.reason.clone()).unwrap_or_default(),
                cordoned: n.cordoned || n.cordoned_gpus.contains(&g.uuid),
            }
        })
        .collect()
}
