//! Commands, both ways: what a client sends becomes a domain command at the edge, and a
//! domain command (a client's, or one a leader worker proposes) becomes the protobuf
//! that travels through Raft. Both matches cover every variant.

use cairn_domain::authz::Role;
use cairn_domain::cron::CronCommand;
use cairn_domain::deployment::DeploymentCommand;
use cairn_domain::job::{JobCommand, ReplicaExit};
use cairn_domain::model::ModelCommand;
use cairn_domain::namespace::NamespaceCommand;
use cairn_domain::node::{GpuHealth, NodeCommand};
use cairn_domain::projection::ProjectionCommand;
use cairn_domain::queue::QueueCommand;
use cairn_domain::token::TokenCommand;
use cairn_domain::{Command, CommandBody};
use cairn_proto as pb;
use pb::command::Body;

use super::deployment::{command_to_pb as deployment_to_pb, report};
use super::job::{replica_id, submitted};
use super::model::{outputs, outputs_to_pb, stage};
use super::node::inventory;
use super::{entity, FromPb, Malformed, ToPb};

impl FromPb for Command {
    type Pb = pb::Command;

    /// Only the shape is checked here (and submitted documents parsed, once);
    /// `Command::problems` and `decide` judge the content.
    fn from_pb(c: &pb::Command) -> Result<Self, Malformed> {
        let token = || c.token_digest.clone();
        let body = match &c.body {
            None => return Err(Malformed::one("command.body: required")),
            // namespaces and notes
            Some(Body::CreateNamespace(x)) => CommandBody::Namespace(NamespaceCommand::Create {
                name: x.name.clone(),
                labels: x.labels.clone(),
            }),
            Some(Body::SetNamespaceLabels(x)) => {
                CommandBody::Namespace(NamespaceCommand::SetLabels {
                    name: x.name.clone(),
                    set: x.set.clone(),
                    remove: x.remove.clone(),
                    replace: x.replace,
                })
            }
            Some(Body::DeleteNamespace(x)) => CommandBody::Namespace(NamespaceCommand::Delete {
                name: x.name.clone(),
            }),
            Some(Body::AddNote(x)) => CommandBody::AddNote {
                entity: entity(&x.entity, "add_note.entity")?,
                text: x.text.clone(),
            },
            // members
            Some(Body::ReconcileMembers(_)) => CommandBody::ReconcileMembers,
            // nodes and port leases
            Some(Body::RegisterNode(x)) => CommandBody::Node(NodeCommand::Register {
                node: x.node.clone(),
                inventory: Box::new(inventory(x.inventory.as_ref(), "register_node.inventory")?),
                token_digest: token(),
            }),
            Some(Body::ReportGpuHealth(x)) => CommandBody::Node(NodeCommand::ReportGpuHealth {
                node: x.node.clone(),
                gpus: x
                    .gpus
                    .iter()
                    .map(GpuHealth::from_pb)
                    .collect::<Result<_, _>>()?,
                token_digest: token(),
            }),
            Some(Body::MarkNodeLost(x)) => CommandBody::Node(NodeCommand::MarkLost {
                node: x.node.clone(),
                last_heartbeat_ms: x.last_heartbeat_ms,
                grace_ms: x.grace_ms,
            }),
            Some(Body::MarkNodeRecovered(x)) => CommandBody::Node(NodeCommand::MarkRecovered {
                node: x.node.clone(),
            }),
            Some(Body::CordonNode(x)) => CommandBody::Node(NodeCommand::Cordon {
                node: x.node.clone(),
                gpu_uuid: some(&x.gpu_uuid),
                reason: x.reason.clone(),
                drain: x.drain,
            }),
            Some(Body::UncordonNode(x)) => CommandBody::Node(NodeCommand::Uncordon {
                node: x.node.clone(),
                gpu_uuid: some(&x.gpu_uuid),
            }),
            Some(Body::AcquirePortLeases(x)) => CommandBody::Node(NodeCommand::AcquirePortLeases {
                node: x.node.clone(),
                holder: x.holder.clone(),
                count: x.count,
                ttl_ms: x.ttl_ms,
            }),
            Some(Body::RenewPortLeases(x)) => CommandBody::Node(NodeCommand::RenewPortLeases {
                node: x.node.clone(),
                ttl_ms: x.ttl_ms,
                token_digest: token(),
            }),
            Some(Body::ReleasePortLeases(x)) => CommandBody::Node(NodeCommand::ReleasePortLeases {
                node: x.node.clone(),
                holder: x.holder.clone(),
            }),
            Some(Body::ExpirePortLeases(_)) => CommandBody::Node(NodeCommand::ExpirePortLeases),
            Some(Body::ReportPortViolation(x)) => {
                CommandBody::Node(NodeCommand::ReportPortViolation {
                    node: x.node.clone(),
                    port: x.port,
                    pid: x.pid,
                    process: x.process.clone(),
                    token_digest: token(),
                })
            }
            // queues
            Some(Body::SetQueueQuota(x)) => CommandBody::Queue(QueueCommand::SetQuota {
                queue: x.queue.clone(),
                gpus: x.gpus,
            }),
            // tokens
            Some(Body::CreateToken(x)) => CommandBody::Token(TokenCommand::Create {
                name: x.name.clone(),
                user: x.user.clone(),
                role: Role::parse(&x.role).ok_or_else(|| {
                    Malformed::one(format!(
                        "create_token.role: unknown role {:?} (known: viewer, operator, admin)",
                        x.role
                    ))
                })?,
                digest: x.digest.clone(),
                expires_ms: x.expires_ms,
            }),
            Some(Body::RevokeToken(x)) => CommandBody::Token(TokenCommand::Revoke {
                name: x.name.clone(),
            }),
            // projections
            Some(Body::CheckpointProjection(x)) => {
                CommandBody::Projection(ProjectionCommand::Checkpoint {
                    name: x.name.clone(),
                    sequence: x.sequence,
                })
            }
            Some(Body::ResyncProjection(x)) => CommandBody::Projection(ProjectionCommand::Resync {
                name: x.name.clone(),
            }),
            // jobs
            Some(Body::SubmitJob(x)) => CommandBody::Job(JobCommand::Submit {
                doc: submitted(&x.spec_json)?,
            }),
            Some(Body::CancelJob(x)) => CommandBody::Job(JobCommand::Cancel {
                name: x.name.clone(),
                reason: x.reason.clone(),
            }),
            Some(Body::ScheduleJobs(_)) => CommandBody::Job(JobCommand::Schedule),
            Some(Body::EnforceJobDeadline(x)) => CommandBody::Job(JobCommand::EnforceDeadline {
                name: x.name.clone(),
            }),
            Some(Body::ReportReplica(x)) => CommandBody::Job(JobCommand::ReportReplica {
                node: x.node.clone(),
                job: x.job.clone(),
                replica: replica_id(&x.role, x.index),
                attempt: x.attempt,
                pid: x.pid,
                exit: x.exited.then_some(ReplicaExit {
                    code: x.exit_code,
                    signal: x.signal,
                    oom: x.oom,
                }),
                outputs: outputs(&x.outputs),
                token_digest: token(),
            }),
            // crons
            Some(Body::SubmitCron(x)) => CommandBody::Cron(CronCommand::Submit {
                doc: submitted(&x.spec_json)?,
            }),
            Some(Body::DeleteCron(x)) => CommandBody::Cron(CronCommand::Delete {
                name: x.name.clone(),
            }),
            Some(Body::TriggerCron(x)) => CommandBody::Cron(CronCommand::Trigger {
                name: x.name.clone(),
                scheduled_ms: x.scheduled_ms,
            }),
            // models
            Some(Body::CreateModel(x)) => CommandBody::Model(ModelCommand::Create {
                name: x.name.clone(),
                description: x.description.clone(),
                tags: x.tags.clone(),
            }),
            Some(Body::UpdateModel(x)) => CommandBody::Model(ModelCommand::Update {
                name: x.name.clone(),
                description: x.description.clone(),
            }),
            Some(Body::SetModelTag(x)) => CommandBody::Model(ModelCommand::SetTag {
                name: x.name.clone(),
                key: x.key.clone(),
                value: x.value.clone(),
            }),
            Some(Body::DeleteModelTag(x)) => CommandBody::Model(ModelCommand::DeleteTag {
                name: x.name.clone(),
                key: x.key.clone(),
            }),
            Some(Body::RenameModel(x)) => CommandBody::Model(ModelCommand::Rename {
                name: x.name.clone(),
                new_name: x.new_name.clone(),
            }),
            Some(Body::DeleteModel(x)) => CommandBody::Model(ModelCommand::Delete {
                name: x.name.clone(),
            }),
            Some(Body::CreateModelVersion(x)) => CommandBody::Model(ModelCommand::CreateVersion {
                name: x.name.clone(),
                source: x.source.clone(),
                run_id: x.run_id.clone(),
                description: x.description.clone(),
                tags: x.tags.clone(),
                create_model: x.create_model,
            }),
            Some(Body::UpdateModelVersion(x)) => CommandBody::Model(ModelCommand::UpdateVersion {
                name: x.name.clone(),
                version: x.version,
                description: x.description.clone(),
            }),
            Some(Body::SetModelVersionTag(x)) => CommandBody::Model(ModelCommand::SetVersionTag {
                name: x.name.clone(),
                version: x.version,
                key: x.key.clone(),
                value: x.value.clone(),
            }),
            Some(Body::DeleteModelVersionTag(x)) => {
                CommandBody::Model(ModelCommand::DeleteVersionTag {
                    name: x.name.clone(),
                    version: x.version,
                    key: x.key.clone(),
                })
            }
            Some(Body::DeleteModelVersion(x)) => CommandBody::Model(ModelCommand::DeleteVersion {
                name: x.name.clone(),
                version: x.version,
            }),
            Some(Body::TransitionModelStage(x)) => CommandBody::Model(ModelCommand::Transition {
                name: x.name.clone(),
                version: x.version,
                stage: stage(x.stage, "transition_model_stage.stage")?,
                expected: x
                    .expected_stage
                    .map(|s| stage(s, "transition_model_stage.expected_stage"))
                    .transpose()?,
                expected_in_target: x
                    .expected_in_target
                    .as_ref()
                    .map(|e| e.versions.iter().copied().collect()),
                archive_existing: x.archive_existing,
                reason: x.reason.clone(),
            }),
            Some(Body::SetModelAlias(x)) => CommandBody::Model(ModelCommand::SetAlias {
                name: x.name.clone(),
                alias: x.alias.clone(),
                version: x.version,
                expected: x.expected_version.map(|v| (v != 0).then_some(v)),
                reason: x.reason.clone(),
            }),
            Some(Body::DeleteModelAlias(x)) => CommandBody::Model(ModelCommand::DeleteAlias {
                name: x.name.clone(),
                alias: x.alias.clone(),
                reason: x.reason.clone(),
            }),
            Some(Body::ProtectModel(x)) => {
                let (target, allowed) =
                    super::model::protected(&x.protection, "protect_model.protection")?;
                CommandBody::Model(ModelCommand::Protect {
                    name: x.name.clone(),
                    target,
                    allowed,
                })
            }
            // deployments
            Some(Body::ApplyDeployment(x)) => CommandBody::Deployment(DeploymentCommand::Apply {
                doc: submitted(&x.spec_json)?,
            }),
            Some(Body::DeleteDeployment(x)) => CommandBody::Deployment(DeploymentCommand::Delete {
                name: x.name.clone(),
            }),
            Some(Body::ScaleDeployment(x)) => CommandBody::Deployment(DeploymentCommand::Scale {
                name: x.name.clone(),
                replicas: x.replicas,
                reason: x.reason.clone(),
                load: x.load.as_ref().map(super::deployment::load_from_pb),
            }),
            Some(Body::PauseDeployment(x)) => CommandBody::Deployment(DeploymentCommand::Pause {
                name: x.name.clone(),
                reason: x.reason.clone(),
            }),
            Some(Body::ResumeDeployment(x)) => CommandBody::Deployment(DeploymentCommand::Resume {
                name: x.name.clone(),
            }),
            Some(Body::PromoteDeployment(x)) => {
                CommandBody::Deployment(DeploymentCommand::Promote {
                    name: x.name.clone(),
                })
            }
            Some(Body::RollbackDeployment(x)) => {
                CommandBody::Deployment(DeploymentCommand::Rollback {
                    name: x.name.clone(),
                    reason: x.reason.clone(),
                })
            }
            Some(Body::AdvanceDeployment(x)) => {
                CommandBody::Deployment(DeploymentCommand::Advance {
                    name: x.name.clone(),
                })
            }
            Some(Body::ReportServing(x)) => {
                CommandBody::Deployment(DeploymentCommand::ReportServing {
                    node: x.node.clone(),
                    name: x.name.clone(),
                    revision: x.revision,
                    index: x.index,
                    attempt: x.attempt,
                    report: report(x)?,
                    token_digest: token(),
                })
            }
        };
        let role = match c.role.as_str() {
            "" => None,
            r => Some(Role::parse(r).ok_or_else(|| {
                Malformed::one(format!(
                    "command.role: unknown role {r:?} (known: viewer, operator, admin)"
                ))
            })?),
        };
        Ok(Command {
            timestamp_ms: c.timestamp_ms,
            actor: c.actor.clone(),
            role,
            bearer: c.bearer_digest.clone(),
            correlation_id: c.correlation_id.clone(),
            expected_revision: c.expected_revision,
            body,
        })
    }
}

/// An optional string field: empty means none.
fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl ToPb for Command {
    type Pb = pb::Command;

    fn to_pb(&self) -> pb::Command {
        let mut token_digest = Vec::new();
        let body = match &self.body {
            CommandBody::Namespace(c) => match c {
                NamespaceCommand::Create { name, labels } => {
                    Body::CreateNamespace(pb::CreateNamespace {
                        name: name.clone(),
                        labels: labels.clone(),
                    })
                }
                NamespaceCommand::SetLabels {
                    name,
                    set,
                    remove,
                    replace,
                } => Body::SetNamespaceLabels(pb::SetNamespaceLabels {
                    name: name.clone(),
                    set: set.clone(),
                    remove: remove.clone(),
                    replace: *replace,
                }),
                NamespaceCommand::Delete { name } => {
                    Body::DeleteNamespace(pb::DeleteNamespace { name: name.clone() })
                }
            },
            CommandBody::AddNote { entity, text } => Body::AddNote(pb::AddNote {
                entity: Some(entity.to_pb()),
                text: text.clone(),
            }),
            CommandBody::ReconcileMembers => Body::ReconcileMembers(pb::ReconcileMembers {}),
            CommandBody::Node(c) => node_to_pb(c, &mut token_digest),
            CommandBody::Token(c) => match c {
                TokenCommand::Create {
                    name,
                    user,
                    role,
                    digest,
                    expires_ms,
                } => Body::CreateToken(pb::CreateToken {
                    name: name.clone(),
                    user: user.clone(),
                    role: role.as_str().to_string(),
                    digest: digest.clone(),
                    expires_ms: *expires_ms,
                }),
                TokenCommand::Revoke { name } => {
                    Body::RevokeToken(pb::RevokeToken { name: name.clone() })
                }
            },
            CommandBody::Projection(c) => match c {
                ProjectionCommand::Checkpoint { name, sequence } => {
                    Body::CheckpointProjection(pb::CheckpointProjection {
                        name: name.clone(),
                        sequence: *sequence,
                    })
                }
                ProjectionCommand::Resync { name } => {
                    Body::ResyncProjection(pb::ResyncProjection { name: name.clone() })
                }
            },
            CommandBody::Queue(QueueCommand::SetQuota { queue, gpus }) => {
                Body::SetQueueQuota(pb::SetQueueQuota {
                    queue: queue.clone(),
                    gpus: *gpus,
                })
            }
            CommandBody::Job(c) => job_to_pb(c, &mut token_digest),
            CommandBody::Model(c) => model_to_pb(c),
            CommandBody::Deployment(c) => deployment_to_pb(c, &mut token_digest),
            CommandBody::Cron(c) => match c {
                CronCommand::Submit { doc } => Body::SubmitCron(pb::SubmitCron {
                    spec_json: doc.to_json(),
                }),
                CronCommand::Delete { name } => {
                    Body::DeleteCron(pb::DeleteCron { name: name.clone() })
                }
                CronCommand::Trigger { name, scheduled_ms } => Body::TriggerCron(pb::TriggerCron {
                    name: name.clone(),
                    scheduled_ms: *scheduled_ms,
                }),
            },
        };
        pb::Command {
            timestamp_ms: self.timestamp_ms,
            actor: self.actor.clone(),
            role: self
                .role
                .map(|r| r.as_str().to_string())
                .unwrap_or_default(),
            bearer_digest: self.bearer.clone(),
            correlation_id: self.correlation_id.clone(),
            expected_revision: self.expected_revision,
            body: Some(body),
            token_digest,
        }
    }
}

fn node_to_pb(c: &NodeCommand, token_digest: &mut Vec<u8>) -> Body {
    match c {
        NodeCommand::Register {
            node,
            inventory,
            token_digest: t,
        } => {
            token_digest.clone_from(t);
            Body::RegisterNode(pb::RegisterNode {
                node: node.clone(),
                inventory: Some(inventory.to_pb()),
            })
        }
        NodeCommand::ReportGpuHealth {
            node,
            gpus,
            token_digest: t,
        } => {
            token_digest.clone_from(t);
            Body::ReportGpuHealth(pb::ReportGpuHealth {
                node: node.clone(),
                gpus: gpus.iter().map(ToPb::to_pb).collect(),
            })
        }
        NodeCommand::MarkLost {
            node,
            last_heartbeat_ms,
            grace_ms,
        } => Body::MarkNodeLost(pb::MarkNodeLost {
            node: node.clone(),
            last_heartbeat_ms: *last_heartbeat_ms,
            grace_ms: *grace_ms,
        }),
        NodeCommand::MarkRecovered { node } => {
            Body::MarkNodeRecovered(pb::MarkNodeRecovered { node: node.clone() })
        }
        NodeCommand::Cordon {
            node,
            gpu_uuid,
            reason,
            drain,
        } => Body::CordonNode(pb::CordonNode {
            node: node.clone(),
            gpu_uuid: gpu_uuid.clone().unwrap_or_default(),
            reason: reason.clone(),
            drain: *drain,
        }),
        NodeCommand::Uncordon { node, gpu_uuid } => Body::UncordonNode(pb::UncordonNode {
            node: node.clone(),
            gpu_uuid: gpu_uuid.clone().unwrap_or_default(),
        }),
        NodeCommand::AcquirePortLeases {
            node,
            holder,
            count,
            ttl_ms,
        } => Body::AcquirePortLeases(pb::AcquirePortLeases {
            node: node.clone(),
            holder: holder.clone(),
            count: *count,
            ttl_ms: *ttl_ms,
        }),
        NodeCommand::RenewPortLeases {
            node,
            ttl_ms,
            token_digest: t,
        } => {
            token_digest.clone_from(t);
            Body::RenewPortLeases(pb::RenewPortLeases {
                node: node.clone(),
                ttl_ms: *ttl_ms,
            })
        }
        NodeCommand::ReleasePortLeases { node, holder } => {
            Body::ReleasePortLeases(pb::ReleasePortLeases {
                node: node.clone(),
                holder: holder.clone(),
            })
        }
        NodeCommand::ExpirePortLeases => Body::ExpirePortLeases(pb::ExpirePortLeases {}),
        NodeCommand::ReportPortViolation {
            node,
            port,
            pid,
            process,
            token_digest: t,
        } => {
            token_digest.clone_from(t);
            Body::ReportPortViolation(pb::ReportPortViolation {
                node: node.clone(),
                port: *port,
                pid: *pid,
                process: process.clone(),
            })
        }
    }
}

fn job_to_pb(c: &JobCommand, token_digest: &mut Vec<u8>) -> Body {
    match c {
        JobCommand::Submit { doc } => Body::SubmitJob(pb::SubmitJob {
            spec_json: doc.to_json(),
        }),
        JobCommand::Cancel { name, reason } => Body::CancelJob(pb::CancelJob {
            name: name.clone(),
            reason: reason.clone(),
        }),
        JobCommand::Schedule => Body::ScheduleJobs(pb::ScheduleJobs {}),
        JobCommand::EnforceDeadline { name } => {
            Body::EnforceJobDeadline(pb::EnforceJobDeadline { name: name.clone() })
        }
        JobCommand::ReportReplica {
            node,
            job,
            replica,
            attempt,
            pid,
            exit,
            outputs,
            token_digest: t,
        } => {
            token_digest.clone_from(t);
            let x = exit.unwrap_or(ReplicaExit {
                code: 0,
                signal: 0,
                oom: false,
            });
            Body::ReportReplica(pb::ReportReplica {
                node: node.clone(),
                job: job.clone(),
                role: replica.role.clone(),
                index: replica.index,
                attempt: *attempt,
                pid: *pid,
                exited: exit.is_some(),
                exit_code: x.code,
                signal: x.signal,
                oom: x.oom,
                outputs: outputs_to_pb(outputs),
            })
        }
    }
}

fn model_to_pb(c: &ModelCommand) -> Body {
    match c {
        ModelCommand::Create {
            name,
            description,
            tags,
        } => Body::CreateModel(pb::CreateModel {
            name: name.clone(),
            description: description.clone(),
            tags: tags.clone(),
        }),
        ModelCommand::Update { name, description } => Body::UpdateModel(pb::UpdateModel {
            name: name.clone(),
            description: description.clone(),
        }),
        ModelCommand::SetTag { name, key, value } => Body::SetModelTag(pb::SetModelTag {
            name: name.clone(),
            key: key.clone(),
            value: value.clone(),
        }),
        ModelCommand::DeleteTag { name, key } => Body::DeleteModelTag(pb::DeleteModelTag {
            name: name.clone(),
            key: key.clone(),
        }),
        ModelCommand::Rename { name, new_name } => Body::RenameModel(pb::RenameModel {
            name: name.clone(),
            new_name: new_name.clone(),
        }),
        ModelCommand::Delete { name } => Body::DeleteModel(pb::DeleteModel { name: name.clone() }),
        ModelCommand::CreateVersion {
            name,
            source,
            run_id,
            description,
            tags,
            create_model,
        } => Body::CreateModelVersion(pb::CreateModelVersion {
            name: name.clone(),
            source: source.clone(),
            run_id: run_id.clone(),
            description: description.clone(),
            tags: tags.clone(),
            create_model: *create_model,
        }),
        ModelCommand::UpdateVersion {
            name,
            version,
            description,
        } => Body::UpdateModelVersion(pb::UpdateModelVersion {
            name: name.clone(),
            version: *version,
            description: description.clone(),
        }),
        ModelCommand::SetVersionTag {
            name,
            version,
            key,
            value,
        } => Body::SetModelVersionTag(pb::SetModelVersionTag {
            name: name.clone(),
            version: *version,
            key: key.clone(),
            value: value.clone(),
        }),
        ModelCommand::DeleteVersionTag { name, version, key } => {
            Body::DeleteModelVersionTag(pb::DeleteModelVersionTag {
                name: name.clone(),
                version: *version,
                key: key.clone(),
            })
        }
        ModelCommand::DeleteVersion { name, version } => {
            Body::DeleteModelVersion(pb::DeleteModelVersion {
                name: name.clone(),
                version: *version,
            })
        }
        ModelCommand::Transition {
            name,
            version,
            stage,
            expected,
            expected_in_target,
            archive_existing,
            reason,
        } => Body::TransitionModelStage(pb::TransitionModelStage {
            name: name.clone(),
            version: *version,
            stage: stage.to_pb() as i32,
            expected_stage: expected.map(|s| s.to_pb() as i32),
            archive_existing: *archive_existing,
            reason: reason.clone(),
            expected_in_target: expected_in_target.as_ref().map(|e| pb::ModelVersions {
                versions: e.iter().copied().collect(),
            }),
        }),
        ModelCommand::SetAlias {
            name,
            alias,
            version,
            expected,
            reason,
        } => Body::SetModelAlias(pb::SetModelAlias {
            name: name.clone(),
            alias: alias.clone(),
            version: *version,
            expected_version: expected.map(|v| v.unwrap_or(0)),
            reason: reason.clone(),
        }),
        ModelCommand::DeleteAlias {
            name,
            alias,
            reason,
        } => Body::DeleteModelAlias(pb::DeleteModelAlias {
            name: name.clone(),
            alias: alias.clone(),
            reason: reason.clone(),
        }),
        ModelCommand::Protect {
            name,
            target,
            allowed,
        } => Body::ProtectModel(pb::ProtectModel {
            name: name.clone(),
            protection: Some(super::model::protection(target, allowed)),
        }),
    }
}
