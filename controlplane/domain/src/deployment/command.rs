//! Commands about model deployments.

use super::event::ScaleLoad;
use super::spec::DeploymentDocument;
use super::spec::MAX_REPLICAS;
use crate::validate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentCommand {
    /// Create a deployment, or change one: a new model version or replica template is a
    /// new revision, rolled out by the strategy; a new replica count scales.
    Apply {
        doc: Box<DeploymentDocument>,
    },
    Delete {
        name: String,
    },
    /// A new replica count: from a person, or from the leader's autoscaler with the load
    /// that called for it.
    Scale {
        name: String,
        replicas: u32,
        reason: String,
        load: Option<ScaleLoad>,
    },
    /// Stop moving traffic and replicas until resumed.
    Pause {
        name: String,
        reason: String,
    },
    Resume {
        name: String,
    },
    /// Skip the canary steps left.
    Promote {
        name: String,
    },
    /// Roll back: to the revision serving before the rollout under way, or before the
    /// last one completed.
    Rollback {
        name: String,
        reason: String,
    },
    /// Proposed by the leader: take the steps that are due (place, shift traffic,
    /// remove replicas, restart the stuck, follow a moved alias).
    Advance {
        name: String,
    },
    /// An agent reports a serving replica of its node.
    ReportServing {
        node: String,
        name: String,
        revision: u32,
        index: u32,
        attempt: u32,
        report: ServingReport,
        token_digest: Vec<u8>,
    },
}

/// What an agent saw of a serving replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServingReport {
    Started { pid: u32 },
    Ready,
    NotReady { reason: String },
    Exited { code: i32, signal: i32 },
}

impl DeploymentCommand {
    /// The deployment the command is about.
    pub fn target(&self) -> &str {
        match self {
            DeploymentCommand::Apply { doc } => &doc.metadata.name,
            DeploymentCommand::Delete { name }
            | DeploymentCommand::Scale { name, .. }
            | DeploymentCommand::Pause { name, .. }
            | DeploymentCommand::Resume { name }
            | DeploymentCommand::Promote { name }
            | DeploymentCommand::Rollback { name, .. }
            | DeploymentCommand::Advance { name }
            | DeploymentCommand::ReportServing { name, .. } => name,
        }
    }

    /// Commands only the leader proposes.
    pub fn leader_only(&self) -> bool {
        match self {
            DeploymentCommand::Advance { .. } => true,
            DeploymentCommand::Apply { .. }
            | DeploymentCommand::Delete { .. }
            | DeploymentCommand::Scale { .. }
            | DeploymentCommand::Pause { .. }
            | DeploymentCommand::Resume { .. }
            | DeploymentCommand::Promote { .. }
            | DeploymentCommand::Rollback { .. }
            | DeploymentCommand::ReportServing { .. } => false,
        }
    }

    /// Every problem with the command's fields (a document is checked again whole).
    pub fn problems(&self, p: &mut Vec<String>) {
        match self {
            DeploymentCommand::Apply { doc } => p.extend(doc.problems()),
            DeploymentCommand::Delete { name }
            | DeploymentCommand::Resume { name }
            | DeploymentCommand::Promote { name }
            | DeploymentCommand::Advance { name } => {
                validate::name_problems("deployment.name", name, p)
            }
            DeploymentCommand::Scale {
                name,
                replicas,
                reason,
                load: _,
            } => {
                validate::name_problems("scale_deployment.name", name, p);
                if !(1..=MAX_REPLICAS as u32).contains(replicas) {
                    p.push(format!(
                        "scale_deployment.replicas: must be 1-{MAX_REPLICAS}"
                    ));
                }
                validate::short_text_problems("scale_deployment.reason", reason, p);
            }
            DeploymentCommand::Pause { name, reason }
            | DeploymentCommand::Rollback { name, reason } => {
                validate::name_problems("deployment.name", name, p);
                validate::short_text_problems("deployment.reason", reason, p);
            }
            DeploymentCommand::ReportServing {
                node, name, report, ..
            } => {
                validate::node_name_problems("report_serving.node", node, p);
                validate::name_problems("report_serving.name", name, p);
                if let ServingReport::NotReady { reason } = report {
                    validate::short_text_problems("report_serving.reason", reason, p);
                }
            }
        }
    }
}
