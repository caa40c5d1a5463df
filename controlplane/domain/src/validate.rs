//! Syntactic checks shared by the API edge (early, precise errors) and `decide`
//! (the authority). Each returns every problem with its field path.

use std::collections::BTreeMap;

use crate::command::{Command, CommandBody};
use crate::event::EntityKey;
use crate::node;

/// Longest name of an entity (a DNS label).
pub const MAX_NAME_LEN: usize = 63;
/// Longest label key or value.
pub const MAX_LABEL_LEN: usize = 63;
/// Most labels on one entity.
pub const MAX_LABELS: usize = 64;
/// Longest note, in bytes.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Longest actor or correlation id.
pub const MAX_ID_LEN: usize = 256;

/// Every problem found in `cmd`, as `field: message`. Empty when valid.
pub fn command_problems(cmd: &Command) -> Vec<String> {
    let mut p = Vec::new();
    if cmd.actor.len() > MAX_ID_LEN {
        p.push(format!("actor: longer than {MAX_ID_LEN} bytes"));
    }
    if cmd.correlation_id.len() > MAX_ID_LEN {
        p.push(format!("correlation_id: longer than {MAX_ID_LEN} bytes"));
    }
    match &cmd.body {
        CommandBody::CreateNamespace { name, labels } => {
            name_problems("create_namespace.name", name, &mut p);
            label_problems("create_namespace.labels", labels, &mut p);
        }
        CommandBody::SetNamespaceLabels {
            name, set, remove, ..
        } => {
            name_problems("set_namespace_labels.name", name, &mut p);
            label_problems("set_namespace_labels.set", set, &mut p);
            for (i, k) in remove.iter().enumerate() {
                if let Some(why) = label_key_problem(k) {
                    p.push(format!("set_namespace_labels.remove[{i}]: {why}"));
                }
            }
        }
        CommandBody::DeleteNamespace { name } => {
            name_problems("delete_namespace.name", name, &mut p)
        }
        CommandBody::AddNote { entity, text } => {
            entity_problems("add_note.entity", entity, &mut p);
            if text.trim().is_empty() {
                p.push("add_note.text: must not be empty".into());
            } else if text.len() > MAX_NOTE_BYTES {
                p.push(format!(
                    "add_note.text: {} bytes, at most {MAX_NOTE_BYTES}",
                    text.len()
                ));
            }
        }
        CommandBody::ReconcileMembers
        | CommandBody::ExpirePortLeases
        | CommandBody::ScheduleJobs => {}
        CommandBody::SubmitJob { spec_json } => {
            if let Err(problems) = crate::job::parse(spec_json) {
                p.extend(problems);
            }
        }
        CommandBody::SubmitCron { spec_json } => {
            if let Err(problems) = crate::cron::parse(spec_json) {
                p.extend(problems);
            }
        }
        CommandBody::EnforceJobDeadline { name } => name_problems("job.name", name, &mut p),
        CommandBody::SetQueueQuota { queue, .. } => {
            name_problems("set_queue_quota.queue", queue, &mut p)
        }
        CommandBody::DeleteCron { name } | CommandBody::TriggerCron { name, .. } => {
            name_problems("cron.name", name, &mut p)
        }
        CommandBody::ReportReplica { node, job, .. } => {
            node_name_problems("report_replica.node", node, &mut p);
            name_problems("report_replica.job", job, &mut p);
        }
        CommandBody::CancelJob { name, reason } => {
            name_problems("cancel_job.name", name, &mut p);
            if reason.len() > MAX_ID_LEN {
                p.push(format!("cancel_job.reason: longer than {MAX_ID_LEN} bytes"));
            }
        }
        CommandBody::RegisterNode {
            node, inventory, ..
        } => {
            node_name_problems("register_node.node", node, &mut p);
            inventory_problems("register_node.inventory", inventory, &mut p);
        }
        CommandBody::ReportGpuHealth { node, gpus, .. } => {
            node_name_problems("report_gpu_health.node", node, &mut p);
            if gpus.len() > node::MAX_GPUS {
                p.push(format!(
                    "report_gpu_health.gpus: {} entries, at most {}",
                    gpus.len(),
                    node::MAX_GPUS
                ));
            }
            for (i, g) in gpus.iter().enumerate() {
                if g.reason.len() > MAX_ID_LEN {
                    p.push(format!(
                        "report_gpu_health.gpus[{i}].reason: longer than {MAX_ID_LEN} bytes"
                    ));
                }
            }
        }
        CommandBody::MarkNodeLost { node, .. } | CommandBody::MarkNodeRecovered { node } => {
            node_name_problems("node", node, &mut p)
        }
        CommandBody::CordonNode { node, reason, .. } => {
            node_name_problems("cordon_node.node", node, &mut p);
            if reason.len() > MAX_ID_LEN {
                p.push(format!(
                    "cordon_node.reason: longer than {MAX_ID_LEN} bytes"
                ));
            }
        }
        CommandBody::UncordonNode { node, .. } => {
            node_name_problems("uncordon_node.node", node, &mut p)
        }
        CommandBody::AcquirePortLeases {
            node,
            holder,
            count,
            ttl_ms,
        } => {
            node_name_problems("acquire_port_leases.node", node, &mut p);
            holder_problems("acquire_port_leases.holder", holder, &mut p);
            if *count == 0 || *count > node::MAX_PORTS_PER_LEASE {
                p.push(format!(
                    "acquire_port_leases.count: must be 1..={}",
                    node::MAX_PORTS_PER_LEASE
                ));
            }
            if *ttl_ms > node::MAX_LEASE_TTL_MS {
                p.push(format!(
                    "acquire_port_leases.ttl_ms: at most {}",
                    node::MAX_LEASE_TTL_MS
                ));
            }
        }
        CommandBody::RenewPortLeases { node, ttl_ms, .. } => {
            node_name_problems("renew_port_leases.node", node, &mut p);
            if *ttl_ms > node::MAX_LEASE_TTL_MS {
                p.push(format!(
                    "renew_port_leases.ttl_ms: at most {}",
                    node::MAX_LEASE_TTL_MS
                ));
            }
        }
        CommandBody::ReleasePortLeases { node, holder } => {
            node_name_problems("release_port_leases.node", node, &mut p);
            holder_problems("release_port_leases.holder", holder, &mut p);
        }
        CommandBody::ReportPortViolation {
            node,
            port,
            process,
            ..
        } => {
            node_name_problems("report_port_violation.node", node, &mut p);
            if *port == 0 || *port > 65535 {
                p.push("report_port_violation.port: must be 1..=65535".into());
            }
            if process.len() > MAX_ID_LEN {
                p.push(format!(
                    "report_port_violation.process: longer than {MAX_ID_LEN} bytes"
                ));
            }
        }
    }
    p
}

/// A node name is a DNS subdomain: dot-separated DNS labels, at most 253 characters.
pub fn node_name_problems(field: &str, name: &str, p: &mut Vec<String>) {
    if name.len() > 253 {
        p.push(format!("{field}: longer than 253 characters"));
        return;
    }
    if name.is_empty() {
        p.push(format!("{field}: must not be empty"));
        return;
    }
    if let Some(why) = name
        .split('.')
        .find_map(|label| dns_label_problem(label, MAX_NAME_LEN))
    {
        p.push(format!("{field}: {name:?}: {why}"));
    }
}

/// A lease holder names a job replica (`job/replica`), or anything an operator uses:
/// 1-253 of letters, digits, `-`, `_`, `.`, `/`.
fn holder_problems(field: &str, holder: &str, p: &mut Vec<String>) {
    if holder.is_empty() || holder.len() > 253 {
        p.push(format!("{field}: must be 1-253 characters"));
    } else if !holder
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        p.push(format!(
            "{field}: {holder:?} may only hold letters, digits, '-', '_', '.', '/'"
        ));
    }
}

fn inventory_problems(field: &str, inv: &node::NodeInventory, p: &mut Vec<String>) {
    label_problems(&format!("{field}.labels"), &inv.labels, p);
    if inv.hostname.len() > 253 {
        p.push(format!("{field}.hostname: longer than 253 characters"));
    }
    if inv.gpus.len() > node::MAX_GPUS {
        p.push(format!(
            "{field}.gpus: {} GPUs, at most {}",
            inv.gpus.len(),
            node::MAX_GPUS
        ));
    }
    let (lo, hi) = (inv.port_range_start, inv.port_range_end);
    if lo == 0 || hi > 65535 || lo > hi {
        p.push(format!(
            "{field}.port_range: {lo}-{hi} is not a range within 1-65535"
        ));
    }
    let mut uuids = std::collections::BTreeSet::new();
    let mut indexes = std::collections::BTreeSet::new();
    for (i, g) in inv.gpus.iter().enumerate() {
        if g.uuid.is_empty() || g.uuid.len() > MAX_ID_LEN {
            p.push(format!(
                "{field}.gpus[{i}].uuid: must be 1-{MAX_ID_LEN} bytes"
            ));
        }
        if !uuids.insert(g.uuid.as_str()) {
            p.push(format!(
                "{field}.gpus[{i}].uuid: {:?} appears twice",
                g.uuid
            ));
        }
        if !indexes.insert(g.index) {
            p.push(format!(
                "{field}.gpus[{i}].index: {} appears twice",
                g.index
            ));
        }
    }
    for (i, l) in inv.links.iter().enumerate() {
        if l.a >= l.b || !indexes.contains(&l.a) || !indexes.contains(&l.b) {
            p.push(format!(
                "{field}.links[{i}]: {}-{} is not a pair of known GPU indexes a < b",
                l.a, l.b
            ));
        }
    }
}

/// Problems with an entity reference: a known kind and a well-formed name.
pub fn entity_problems(field: &str, e: &EntityKey, p: &mut Vec<String>) {
    if !crate::kinds::ALL.contains(&e.kind.as_str()) {
        p.push(format!(
            "{field}.kind: unknown kind {:?} (known: {})",
            e.kind,
            crate::kinds::ALL.join(", ")
        ));
    }
    name_problems(&format!("{field}.name"), &e.name, p);
}

/// A name is a DNS label: 1-63 of `a-z`, `0-9`, `-`, starting and ending alphanumeric.
pub fn name_problems(field: &str, name: &str, p: &mut Vec<String>) {
    if let Some(why) = dns_label_problem(name, MAX_NAME_LEN) {
        p.push(format!("{field}: {why}"));
    }
}

pub(crate) fn label_problems(field: &str, labels: &BTreeMap<String, String>, p: &mut Vec<String>) {
    if labels.len() > MAX_LABELS {
        p.push(format!(
            "{field}: {} labels, at most {MAX_LABELS}",
            labels.len()
        ));
    }
    for (k, v) in labels {
        if let Some(why) = label_key_problem(k) {
            p.push(format!("{field}[{k:?}]: {why}"));
        }
        if v.len() > MAX_LABEL_LEN {
            p.push(format!("{field}[{k:?}]: value longer than {MAX_LABEL_LEN}"));
        } else if v.chars().any(|c| c.is_control()) {
            p.push(format!("{field}[{k:?}]: value has control characters"));
        }
    }
}

/// Label keys: 1-63 of `a-z A-Z 0-9 - _ . /`, starting alphanumeric.
fn label_key_problem(k: &str) -> Option<String> {
    if k.is_empty() {
        return Some("key must not be empty".into());
    }
    if k.len() > MAX_LABEL_LEN {
        return Some(format!("key longer than {MAX_LABEL_LEN}"));
    }
    if !k.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some(format!("key {k:?} must start with a letter or digit"));
    }
    if !k
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return Some(format!(
            "key {k:?} may only hold letters, digits, '-', '_', '.', '/'"
        ));
    }
    None
}

pub(crate) fn dns_label_problem(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > max {
        return Some(format!("{:?} is longer than {max} characters", s));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some(format!(
            "{s:?} may only hold lowercase letters, digits and '-'"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some(format!("{s:?} must start and end with a letter or digit"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(body: CommandBody) -> Command {
        Command {
            timestamp_ms: 0,
            actor: "t".into(),
            correlation_id: "c".into(),
            expected_revision: None,
            body,
        }
    }

    #[test]
    fn names_must_be_dns_labels() {
        for bad in ["", "-a", "a-", "Abc", "a_b", &"x".repeat(64)] {
            let p = command_problems(&cmd(CommandBody::DeleteNamespace { name: bad.into() }));
            assert_eq!(p.len(), 1, "{bad:?} should be rejected");
            assert!(p[0].starts_with("delete_namespace.name: "), "{p:?}");
        }
        for good in ["a", "ml-team-7", &"x".repeat(63)] {
            let p = command_problems(&cmd(CommandBody::DeleteNamespace { name: good.into() }));
            assert!(p.is_empty(), "{good:?}: {p:?}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let labels = BTreeMap::from([
            ("".to_string(), "v".to_string()),
            ("ok".to_string(), "x".repeat(64)),
        ]);
        let p = command_problems(&cmd(CommandBody::CreateNamespace {
            name: "Bad".into(),
            labels,
        }));
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.iter().any(|s| s.starts_with("create_namespace.name")));
        assert!(p.iter().any(|s| s.contains("key must not be empty")));
        assert!(p.iter().any(|s| s.contains("value longer than 63")));
    }

    #[test]
    fn notes_need_text_and_a_known_kind() {
        let p = command_problems(&cmd(CommandBody::AddNote {
            entity: EntityKey::new("gadget", "x"),
            text: " ".into(),
        }));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("unknown kind \"gadget\""));
        assert!(p[1].contains("must not be empty"));
    }
}
