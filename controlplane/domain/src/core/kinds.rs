//! The entity kinds the domain knows.

use crate::entity::EntityKey;
use crate::{
    cron, deployment, job, member, model, namespace, node, projection, queue, token, validate,
};

pub const NAMESPACE: &str = namespace::KIND;
pub const MEMBER: &str = member::KIND;
pub const NODE: &str = node::KIND;
pub const JOB: &str = job::KIND;
pub const CRON: &str = cron::KIND;
pub const QUEUE: &str = queue::KIND;
pub const MODEL: &str = model::KIND;
pub const DEPLOYMENT: &str = deployment::KIND;
pub const TOKEN: &str = token::KIND;
pub const PROJECTION: &str = projection::KIND;
/// Every kind, in the order listings show them.
pub const ALL: &[&str] = &[
    NAMESPACE, MEMBER, NODE, JOB, CRON, QUEUE, MODEL, DEPLOYMENT, TOKEN, PROJECTION,
];

/// Problems with an entity reference: a known kind and a well-formed name.
pub fn entity_problems(field: &str, e: &EntityKey, p: &mut Vec<String>) {
    kind_problems(&format!("{field}.kind"), &e.kind, p);
    validate::name_problems(&format!("{field}.name"), &e.name, p);
}

/// A known kind.
pub fn kind_problems(field: &str, kind: &str, p: &mut Vec<String>) {
    if !ALL.contains(&kind) {
        p.push(format!(
            "{field}: unknown kind {kind:?} (known: {})",
            ALL.join(", ")
        ));
    }
}
