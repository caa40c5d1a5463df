//! Events, both ways: the store and the API hold protobuf events; the fold (at start,
//! and when a snapshot is installed) reads them back into the domain. Both matches
//! cover every variant. A recorded document is decoded as it was accepted, and what
//! this build cannot read at all is an error naming the event, never a silent skip.

use cairn_domain::authz::Role;
use cairn_domain::cron::CronEvent;
use cairn_domain::deployment::DeploymentEvent;
use cairn_domain::job::{JobEvent, Placement};
use cairn_domain::member::MemberEvent;
use cairn_domain::model::{Lineage, ModelEvent, NewVersion};
use cairn_domain::namespace::NamespaceEvent;
use cairn_domain::node::{GpuHealth, NodeEvent};
use cairn_domain::projection::ProjectionEvent;
use cairn_domain::queue::QueueEvent;
use cairn_domain::token::TokenEvent;
use cairn_domain::{Event, EventPayload};
use cairn_proto as pb;
use pb::event::Payload;

use super::deployment::{event_to_pb as deployment, placement};
use super::job::{recorded, replica_id};
use super::model::{outputs, outputs_to_pb, stage, status};
use super::node::inventory;
use super::{entity, FromPb, Malformed, ToPb};

impl ToPb for Event {
    type Pb = pb::Event;

    fn to_pb(&self) -> pb::Event {
        let payload = match &self.payload {
            EventPayload::Member(e) => member(e),
            EventPayload::Namespace(e) => namespace(e),
            EventPayload::Node(e) => node(e),
            EventPayload::Token(e) => match e {
                TokenEvent::Created {
                    user,
                    role,
                    digest,
                    expires_ms,
                } => Payload::TokenCreated(pb::TokenCreated {
                    user: user.clone(),
                    role: role.as_str().to_string(),
                    digest: digest.clone(),
                    expires_ms: *expires_ms,
                }),
                TokenEvent::Revoked => Payload::TokenRevoked(pb::TokenRevoked {}),
            },
            EventPayload::Queue(QueueEvent::QuotaSet { gpus }) => {
                Payload::QueueQuotaSet(pb::QueueQuotaSet { gpus: *gpus })
            }
            EventPayload::Job(e) => job(e),
            EventPayload::Cron(e) => cron(e),
            EventPayload::Model(e) => model(e),
            EventPayload::Deployment(e) => deployment(e),
            EventPayload::Projection(e) => match e {
                ProjectionEvent::Checkpointed { sequence } => {
                    Payload::ProjectionCheckpointed(pb::ProjectionCheckpointed {
                        sequence: *sequence,
                    })
                }
                ProjectionEvent::ResyncRequested => {
                    Payload::ProjectionResyncRequested(pb::ProjectionResyncRequested {})
                }
            },
            EventPayload::NoteAdded { text } => {
                Payload::NoteAdded(pb::NoteAdded { text: text.clone() })
            }
        };
        pb::Event {
            sequence: self.sequence,
            raft_index: self.raft_index,
            raft_term: self.raft_term,
            timestamp_ms: self.timestamp_ms,
            entity: Some(self.entity.to_pb()),
            entity_revision: self.entity_revision,
            actor: self.actor.clone(),
            correlation_id: self.correlation_id.clone(),
            payload: Some(payload),
        }
    }
}

fn member(e: &MemberEvent) -> Payload {
    match e {
        MemberEvent::Added {
            node_id,
            address,
            voter,
        } => Payload::MemberAdded(pb::MemberAdded {
            node_id: *node_id,
            address: address.clone(),
            voter: *voter,
        }),
        MemberEvent::Promoted { node_id } => {
            Payload::MemberPromoted(pb::MemberPromoted { node_id: *node_id })
        }
        MemberEvent::Removed { node_id } => {
            Payload::MemberRemoved(pb::MemberRemoved { node_id: *node_id })
        }
    }
}

fn namespace(e: &NamespaceEvent) -> Payload {
    match e {
        NamespaceEvent::Created { labels } => Payload::NamespaceCreated(pb::NamespaceCreated {
            labels: labels.clone(),
        }),
        NamespaceEvent::LabelsChanged { labels } => {
            Payload::NamespaceLabelsChanged(pb::NamespaceLabelsChanged {
                labels: labels.clone(),
            })
        }
        NamespaceEvent::Deleted => Payload::NamespaceDeleted(pb::NamespaceDeleted {}),
    }
}

fn node(e: &NodeEvent) -> Payload {
    match e {
        NodeEvent::Registered {
            inventory,
            token_digest,
        } => Payload::NodeRegistered(pb::NodeRegistered {
            inventory: Some(inventory.to_pb()),
            token_digest: token_digest.clone(),
        }),
        NodeEvent::Lost {
            last_heartbeat_ms,
            grace_ms,
        } => Payload::NodeLost(pb::NodeLost {
            last_heartbeat_ms: *last_heartbeat_ms,
            grace_ms: *grace_ms,
        }),
        NodeEvent::Recovered => Payload::NodeRecovered(pb::NodeRecovered {}),
        NodeEvent::GpuHealthChanged { health } => Payload::GpuHealthChanged(pb::GpuHealthChanged {
            health: Some(health.to_pb()),
        }),
        NodeEvent::Cordoned {
            gpu_uuid,
            reason,
            drain,
        } => Payload::NodeCordoned(pb::NodeCordoned {
            gpu_uuid: gpu_uuid.clone(),
            reason: reason.clone(),
            drain: *drain,
        }),
        NodeEvent::Uncordoned { gpu_uuid } => Payload::NodeUncordoned(pb::NodeUncordoned {
            gpu_uuid: gpu_uuid.clone(),
        }),
        NodeEvent::PortLeaseGranted {
            holder,
            ports,
            expires_ms,
        } => Payload::PortLeaseGranted(pb::PortLeaseGranted {
            holder: holder.clone(),
            ports: ports.clone(),
            expires_ms: *expires_ms,
        }),
        NodeEvent::PortLeasesRenewed { expires_ms } => {
            Payload::PortLeasesRenewed(pb::PortLeasesRenewed {
                expires_ms: *expires_ms,
            })
        }
        NodeEvent::PortLeaseReleased {
            holder,
            ports,
            reason,
        } => Payload::PortLeaseReleased(pb::PortLeaseReleased {
            holder: holder.clone(),
            ports: ports.clone(),
            reason: reason.clone(),
        }),
        NodeEvent::PortLeaseViolation {
            port,
            holder,
            pid,
            process,
        } => Payload::PortLeaseViolation(pb::PortLeaseViolation {
            port: *port,
            holder: holder.clone(),
            pid: *pid,
            process: process.clone(),
        }),
    }
}

fn job(e: &JobEvent) -> Payload {
    match e {
        JobEvent::Submitted { doc } => Payload::JobSubmitted(pb::JobSubmitted {
            spec_json: doc.to_json(),
        }),
        JobEvent::Waiting { reason } => Payload::JobWaiting(pb::JobWaiting {
            reason: reason.clone(),
        }),
        JobEvent::Scheduled { placements } => Payload::JobScheduled(pb::JobScheduled {
            placements: placements.iter().map(ToPb::to_pb).collect(),
        }),
        JobEvent::Cancelled { reason } => Payload::JobCancelled(pb::JobCancelled {
            reason: reason.clone(),
        }),
        JobEvent::Running => Payload::JobRunning(pb::JobRunning {}),
        JobEvent::Succeeded => Payload::JobSucceeded(pb::JobSucceeded {}),
        JobEvent::Failed { reason } => Payload::JobFailed(pb::JobFailed {
            reason: reason.clone(),
        }),
        JobEvent::ReplicaStarted {
            replica,
            attempt,
            node,
            pid,
        } => Payload::ReplicaStarted(pb::ReplicaStarted {
            role: replica.role.clone(),
            index: replica.index,
            attempt: *attempt,
            node: node.clone(),
            pid: *pid,
        }),
        JobEvent::ReplicaExited {
            replica,
            attempt,
            exit_code,
            signal,
            oom,
            outputs,
        } => Payload::ReplicaExited(pb::ReplicaExited {
            role: replica.role.clone(),
            index: replica.index,
            attempt: *attempt,
            exit_code: *exit_code,
            signal: *signal,
            oom: *oom,
            outputs: outputs_to_pb(outputs),
        }),
        JobEvent::ReplicaRestarting {
            replica,
            attempt,
            reason,
        } => Payload::ReplicaRestarting(pb::ReplicaRestarting {
            role: replica.role.clone(),
            index: replica.index,
            attempt: *attempt,
            reason: reason.clone(),
        }),
        JobEvent::Requeued { reason } => Payload::JobRequeued(pb::JobRequeued {
            reason: reason.clone(),
        }),
    }
}

fn cron(e: &CronEvent) -> Payload {
    match e {
        CronEvent::Submitted { doc } => Payload::CronSubmitted(pb::CronSubmitted {
            spec_json: doc.to_json(),
        }),
        CronEvent::Deleted => Payload::CronDeleted(pb::CronDeleted {}),
        CronEvent::Triggered { scheduled_ms, job } => Payload::CronTriggered(pb::CronTriggered {
            scheduled_ms: *scheduled_ms,
            job: job.clone(),
        }),
        CronEvent::Skipped {
            scheduled_ms,
            reason,
        } => Payload::CronSkipped(pb::CronSkipped {
            scheduled_ms: *scheduled_ms,
            reason: reason.clone(),
        }),
    }
}

fn model(e: &ModelEvent) -> Payload {
    match e {
        ModelEvent::Created { description, tags } => Payload::ModelCreated(pb::ModelCreated {
            description: description.clone(),
            tags: tags.clone(),
        }),
        ModelEvent::Updated { description } => Payload::ModelUpdated(pb::ModelUpdated {
            description: description.clone(),
        }),
        ModelEvent::TagSet { key, value } => Payload::ModelTagSet(pb::ModelTagSet {
            key: key.clone(),
            value: value.clone(),
        }),
        ModelEvent::TagDeleted { key } => {
            Payload::ModelTagDeleted(pb::ModelTagDeleted { key: key.clone() })
        }
        ModelEvent::Renamed { to } => Payload::ModelRenamed(pb::ModelRenamed { to: to.clone() }),
        ModelEvent::RenamedFrom { from } => {
            Payload::ModelRenamedFrom(pb::ModelRenamedFrom { from: from.clone() })
        }
        ModelEvent::Deleted => Payload::ModelDeleted(pb::ModelDeleted {}),
        ModelEvent::VersionCreated(v) => Payload::ModelVersionCreated(pb::ModelVersionCreated {
            version: v.version,
            source: v.source.clone(),
            storage_location: v.storage_location.clone(),
            run_id: v.run_id.clone(),
            description: v.description.clone(),
            tags: v.tags.clone(),
            status: v.status.to_pb() as i32,
            lineage: v.lineage.as_ref().map(ToPb::to_pb),
            outputs: outputs_to_pb(&v.outputs),
        }),
        ModelEvent::VersionUpdated {
            version,
            description,
        } => Payload::ModelVersionUpdated(pb::ModelVersionUpdated {
            version: *version,
            description: description.clone(),
        }),
        ModelEvent::VersionTagSet {
            version,
            key,
            value,
        } => Payload::ModelVersionTagSet(pb::ModelVersionTagSet {
            version: *version,
            key: key.clone(),
            value: value.clone(),
        }),
        ModelEvent::VersionTagDeleted { version, key } => {
            Payload::ModelVersionTagDeleted(pb::ModelVersionTagDeleted {
                version: *version,
                key: key.clone(),
            })
        }
        ModelEvent::VersionDeleted { version } => {
            Payload::ModelVersionDeleted(pb::ModelVersionDeleted { version: *version })
        }
        ModelEvent::StageChanged {
            version,
            from,
            to,
            reason,
        } => Payload::ModelVersionStageChanged(pb::ModelVersionStageChanged {
            version: *version,
            from: from.to_pb() as i32,
            to: to.to_pb() as i32,
            reason: reason.clone(),
        }),
        ModelEvent::AliasSet {
            alias,
            version,
            previous,
            reason,
        } => Payload::ModelAliasSet(pb::ModelAliasSet {
            alias: alias.clone(),
            version: *version,
            previous: previous.unwrap_or(0),
            reason: reason.clone(),
        }),
        ModelEvent::AliasDeleted {
            alias,
            version,
            reason,
        } => Payload::ModelAliasDeleted(pb::ModelAliasDeleted {
            alias: alias.clone(),
            version: *version,
            reason: reason.clone(),
        }),
        ModelEvent::Protected { target, allowed } => Payload::ModelProtected(pb::ModelProtected {
            protection: Some(super::model::protection(target, allowed)),
        }),
    }
}

impl FromPb for Event {
    type Pb = pb::Event;

    fn from_pb(e: &pb::Event) -> Result<Self, Malformed> {
        let named = |m: Malformed| {
            let seq = e.sequence;
            Malformed(
                m.0.into_iter()
                    .map(|p| format!("event {seq}: {p}"))
                    .collect(),
            )
        };
        let payload = payload(e.payload.as_ref()).map_err(named)?;
        Ok(Event {
            sequence: e.sequence,
            raft_index: e.raft_index,
            raft_term: e.raft_term,
            timestamp_ms: e.timestamp_ms,
            entity: entity(&e.entity, "event.entity").map_err(named)?,
            entity_revision: e.entity_revision,
            actor: e.actor.clone(),
            correlation_id: e.correlation_id.clone(),
            payload,
        })
    }
}

fn payload(p: Option<&Payload>) -> Result<EventPayload, Malformed> {
    use EventPayload as P;
    Ok(match p {
        None => return Err(Malformed::one("unknown or missing payload")),
        // members
        Some(Payload::MemberAdded(x)) => P::Member(MemberEvent::Added {
            node_id: x.node_id,
            address: x.address.clone(),
            voter: x.voter,
        }),
        Some(Payload::MemberPromoted(x)) => P::Member(MemberEvent::Promoted { node_id: x.node_id }),
        Some(Payload::MemberRemoved(x)) => P::Member(MemberEvent::Removed { node_id: x.node_id }),
        // namespaces and notes
        Some(Payload::NamespaceCreated(x)) => P::Namespace(NamespaceEvent::Created {
            labels: x.labels.clone(),
        }),
        Some(Payload::NamespaceLabelsChanged(x)) => P::Namespace(NamespaceEvent::LabelsChanged {
            labels: x.labels.clone(),
        }),
        Some(Payload::NamespaceDeleted(_)) => P::Namespace(NamespaceEvent::Deleted),
        Some(Payload::NoteAdded(x)) => P::NoteAdded {
            text: x.text.clone(),
        },
        // nodes and port leases
        Some(Payload::NodeRegistered(x)) => P::Node(NodeEvent::Registered {
            inventory: inventory(x.inventory.as_ref(), "node_registered.inventory")?,
            token_digest: x.token_digest.clone(),
        }),
        Some(Payload::NodeLost(x)) => P::Node(NodeEvent::Lost {
            last_heartbeat_ms: x.last_heartbeat_ms,
            grace_ms: x.grace_ms,
        }),
        Some(Payload::NodeRecovered(_)) => P::Node(NodeEvent::Recovered),
        Some(Payload::GpuHealthChanged(x)) => P::Node(NodeEvent::GpuHealthChanged {
            health: match &x.health {
                Some(h) => GpuHealth::from_pb(h)?,
                None => return Err(Malformed::one("gpu_health_changed.health: required")),
            },
        }),
        Some(Payload::NodeCordoned(x)) => P::Node(NodeEvent::Cordoned {
            gpu_uuid: x.gpu_uuid.clone(),
            reason: x.reason.clone(),
            drain: x.drain,
        }),
        Some(Payload::NodeUncordoned(x)) => P::Node(NodeEvent::Uncordoned {
            gpu_uuid: x.gpu_uuid.clone(),
        }),
        Some(Payload::PortLeaseGranted(x)) => P::Node(NodeEvent::PortLeaseGranted {
            holder: x.holder.clone(),
            ports: x.ports.clone(),
            expires_ms: x.expires_ms,
        }),
        Some(Payload::PortLeasesRenewed(x)) => P::Node(NodeEvent::PortLeasesRenewed {
            expires_ms: x.expires_ms,
        }),
        Some(Payload::PortLeaseReleased(x)) => P::Node(NodeEvent::PortLeaseReleased {
            holder: x.holder.clone(),
            ports: x.ports.clone(),
            reason: x.reason.clone(),
        }),
        Some(Payload::PortLeaseViolation(x)) => P::Node(NodeEvent::PortLeaseViolation {
            port: x.port,
            holder: x.holder.clone(),
            pid: x.pid,
            process: x.process.clone(),
        }),
        // tokens
        Some(Payload::TokenCreated(x)) => P::Token(TokenEvent::Created {
            user: x.user.clone(),
            role: Role::parse(&x.role).ok_or_else(|| {
                Malformed::one(format!("token_created.role: unknown role {:?}", x.role))
            })?,
            digest: x.digest.clone(),
            expires_ms: x.expires_ms,
        }),
        Some(Payload::TokenRevoked(_)) => P::Token(TokenEvent::Revoked),
        // projections
        Some(Payload::ProjectionCheckpointed(x)) => P::Projection(ProjectionEvent::Checkpointed {
            sequence: x.sequence,
        }),
        Some(Payload::ProjectionResyncRequested(_)) => {
            P::Projection(ProjectionEvent::ResyncRequested)
        }
        // queues
        Some(Payload::QueueQuotaSet(x)) => P::Queue(QueueEvent::QuotaSet { gpus: x.gpus }),
        // jobs
        Some(Payload::JobSubmitted(x)) => P::Job(JobEvent::Submitted {
            doc: recorded(&x.spec_json, "job_submitted.spec_json")?,
        }),
        Some(Payload::JobWaiting(x)) => P::Job(JobEvent::Waiting {
            reason: x.reason.clone(),
        }),
        Some(Payload::JobScheduled(x)) => P::Job(JobEvent::Scheduled {
            placements: x
                .placements
                .iter()
                .map(Placement::from_pb)
                .collect::<Result<_, _>>()?,
        }),
        Some(Payload::JobCancelled(x)) => P::Job(JobEvent::Cancelled {
            reason: x.reason.clone(),
        }),
        Some(Payload::JobRunning(_)) => P::Job(JobEvent::Running),
        Some(Payload::JobSucceeded(_)) => P::Job(JobEvent::Succeeded),
        Some(Payload::JobFailed(x)) => P::Job(JobEvent::Failed {
            reason: x.reason.clone(),
        }),
        Some(Payload::ReplicaStarted(x)) => P::Job(JobEvent::ReplicaStarted {
            replica: replica_id(&x.role, x.index),
            attempt: x.attempt,
            node: x.node.clone(),
            pid: x.pid,
        }),
        Some(Payload::ReplicaExited(x)) => P::Job(JobEvent::ReplicaExited {
            replica: replica_id(&x.role, x.index),
            attempt: x.attempt,
            exit_code: x.exit_code,
            signal: x.signal,
            oom: x.oom,
            outputs: outputs(&x.outputs),
        }),
        Some(Payload::ReplicaRestarting(x)) => P::Job(JobEvent::ReplicaRestarting {
            replica: replica_id(&x.role, x.index),
            attempt: x.attempt,
            reason: x.reason.clone(),
        }),
        Some(Payload::JobRequeued(x)) => P::Job(JobEvent::Requeued {
            reason: x.reason.clone(),
        }),
        // crons
        Some(Payload::CronSubmitted(x)) => P::Cron(CronEvent::Submitted {
            doc: recorded(&x.spec_json, "cron_submitted.spec_json")?,
        }),
        Some(Payload::CronDeleted(_)) => P::Cron(CronEvent::Deleted),
        Some(Payload::CronTriggered(x)) => P::Cron(CronEvent::Triggered {
            scheduled_ms: x.scheduled_ms,
            job: x.job.clone(),
        }),
        Some(Payload::CronSkipped(x)) => P::Cron(CronEvent::Skipped {
            scheduled_ms: x.scheduled_ms,
            reason: x.reason.clone(),
        }),
        // models
        Some(Payload::ModelCreated(x)) => P::Model(ModelEvent::Created {
            description: x.description.clone(),
            tags: x.tags.clone(),
        }),
        Some(Payload::ModelUpdated(x)) => P::Model(ModelEvent::Updated {
            description: x.description.clone(),
        }),
        Some(Payload::ModelTagSet(x)) => P::Model(ModelEvent::TagSet {
            key: x.key.clone(),
            value: x.value.clone(),
        }),
        Some(Payload::ModelTagDeleted(x)) => {
            P::Model(ModelEvent::TagDeleted { key: x.key.clone() })
        }
        Some(Payload::ModelRenamed(x)) => P::Model(ModelEvent::Renamed { to: x.to.clone() }),
        Some(Payload::ModelRenamedFrom(x)) => P::Model(ModelEvent::RenamedFrom {
            from: x.from.clone(),
        }),
        Some(Payload::ModelDeleted(_)) => P::Model(ModelEvent::Deleted),
        Some(Payload::ModelVersionCreated(x)) => {
            P::Model(ModelEvent::VersionCreated(Box::new(NewVersion {
                version: x.version,
                source: x.source.clone(),
                storage_location: x.storage_location.clone(),
                run_id: x.run_id.clone(),
                description: x.description.clone(),
                tags: x.tags.clone(),
                status: status(x.status, "model_version_created.status")?,
                lineage: x.lineage.as_ref().map(Lineage::from_pb).transpose()?,
                outputs: outputs(&x.outputs),
            })))
        }
        Some(Payload::ModelVersionUpdated(x)) => P::Model(ModelEvent::VersionUpdated {
            version: x.version,
            description: x.description.clone(),
        }),
        Some(Payload::ModelVersionTagSet(x)) => P::Model(ModelEvent::VersionTagSet {
            version: x.version,
            key: x.key.clone(),
            value: x.value.clone(),
        }),
        Some(Payload::ModelVersionTagDeleted(x)) => P::Model(ModelEvent::VersionTagDeleted {
            version: x.version,
            key: x.key.clone(),
        }),
        Some(Payload::ModelVersionDeleted(x)) => {
            P::Model(ModelEvent::VersionDeleted { version: x.version })
        }
        Some(Payload::ModelVersionStageChanged(x)) => P::Model(ModelEvent::StageChanged {
            version: x.version,
            from: stage(x.from, "model_version_stage_changed.from")?,
            to: stage(x.to, "model_version_stage_changed.to")?,
            reason: x.reason.clone(),
        }),
        Some(Payload::ModelAliasSet(x)) => P::Model(ModelEvent::AliasSet {
            alias: x.alias.clone(),
            version: x.version,
            previous: (x.previous != 0).then_some(x.previous),
            reason: x.reason.clone(),
        }),
        Some(Payload::ModelAliasDeleted(x)) => P::Model(ModelEvent::AliasDeleted {
            alias: x.alias.clone(),
            version: x.version,
            reason: x.reason.clone(),
        }),
        Some(Payload::ModelProtected(x)) => {
            let (target, allowed) =
                super::model::protected(&x.protection, "model_protected.protection")?;
            P::Model(ModelEvent::Protected { target, allowed })
        }
        // deployments
        Some(Payload::DeploymentApplied(x)) => P::Deployment(DeploymentEvent::Applied {
            doc: recorded(&x.spec_json, "deployment_applied.spec_json")?,
        }),
        Some(Payload::DeploymentRevisionCreated(x)) => {
            P::Deployment(DeploymentEvent::RevisionCreated {
                revision: x.revision,
                model_version: x.model_version,
                model_uri: x.model_uri.clone(),
                reason: x.reason.clone(),
            })
        }
        Some(Payload::DeploymentRouted(x)) => P::Deployment(DeploymentEvent::Routed {
            port: x.port,
            nodes: x.nodes.clone(),
        }),
        Some(Payload::DeploymentReplicasPlaced(x)) => {
            P::Deployment(DeploymentEvent::ReplicasPlaced {
                revision: x.revision,
                placements: x.placements.iter().map(placement).collect(),
            })
        }
        Some(Payload::DeploymentReplicaStarted(x)) => {
            P::Deployment(DeploymentEvent::ReplicaStarted {
                revision: x.revision,
                index: x.index,
                attempt: x.attempt,
                pid: x.pid,
            })
        }
        Some(Payload::DeploymentReplicaReady(x)) => P::Deployment(DeploymentEvent::ReplicaReady {
            revision: x.revision,
            index: x.index,
        }),
        Some(Payload::DeploymentReplicaNotReady(x)) => {
            P::Deployment(DeploymentEvent::ReplicaNotReady {
                revision: x.revision,
                index: x.index,
                reason: x.reason.clone(),
            })
        }
        Some(Payload::DeploymentReplicaRestarting(x)) => {
            P::Deployment(DeploymentEvent::ReplicaRestarting {
                revision: x.revision,
                index: x.index,
                attempt: x.attempt,
                reason: x.reason.clone(),
            })
        }
        Some(Payload::DeploymentReplicaDoomed(x)) => {
            P::Deployment(DeploymentEvent::ReplicaDoomed {
                revision: x.revision,
                index: x.index,
                reason: x.reason.clone(),
            })
        }
        Some(Payload::DeploymentReplicasRemoved(x)) => {
            P::Deployment(DeploymentEvent::ReplicasRemoved {
                revision: x.revision,
                indexes: x.indexes.clone(),
                reason: x.reason.clone(),
            })
        }
        Some(Payload::DeploymentTrafficShifted(x)) => {
            P::Deployment(DeploymentEvent::TrafficShifted {
                weights: x.weights.clone(),
                reason: x.reason.clone(),
            })
        }
        Some(Payload::DeploymentCanaryStep(x)) => {
            P::Deployment(DeploymentEvent::CanaryStep { step: x.step })
        }
        Some(Payload::DeploymentRolloutCompleted(x)) => {
            P::Deployment(DeploymentEvent::RolloutCompleted {
                revision: x.revision,
            })
        }
        Some(Payload::DeploymentRollbackStarted(x)) => {
            P::Deployment(DeploymentEvent::RollbackStarted {
                to: x.to,
                reason: x.reason.clone(),
            })
        }
        Some(Payload::DeploymentPromoted(_)) => P::Deployment(DeploymentEvent::Promoted),
        Some(Payload::DeploymentPaused(x)) => P::Deployment(DeploymentEvent::Paused {
            reason: x.reason.clone(),
        }),
        Some(Payload::DeploymentResumed(_)) => P::Deployment(DeploymentEvent::Resumed),
        Some(Payload::DeploymentWaiting(x)) => P::Deployment(DeploymentEvent::Waiting {
            reason: x.reason.clone(),
        }),
        Some(Payload::DeploymentScaled(x)) => P::Deployment(DeploymentEvent::Scaled {
            replicas: x.replicas,
            reason: x.reason.clone(),
            load: x.load.as_ref().map(super::deployment::load_from_pb),
        }),
        Some(Payload::DeploymentDeleted(_)) => P::Deployment(DeploymentEvent::Deleted),
    })
}
