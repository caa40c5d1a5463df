//! Every command and event variant survives protobuf both ways, and the names the
//! domain gives event types are the schema's, the ones filters and the store's type
//! index use. A variant added to the schema or the domain without a sample here fails
//! the coverage checks below; one added to the domain without a conversion does not
//! compile.

use std::collections::{BTreeMap, BTreeSet};

use cairn_domain::authz::Role;
use cairn_domain::cron::{CronCommand, CronEvent};
use cairn_domain::deployment::{
    DeploymentCommand, DeploymentEvent, ServingPlacement, ServingReport,
};
use cairn_domain::job::{JobCommand, JobEvent, Placement, ReplicaExit, ReplicaId};
use cairn_domain::member::MemberEvent;
use cairn_domain::model::{
    Held, Lineage, ModelCommand, ModelEvent, NewVersion, RunOutputs, Stage, VersionStatus,
};
use cairn_domain::namespace::{NamespaceCommand, NamespaceEvent};
use cairn_domain::node::{
    GpuHealth, GpuInfo, GpuLink, NodeCommand, NodeEvent, NodeInventory, PcieLevel,
};
use cairn_domain::projection::{ProjectionCommand, ProjectionEvent};
use cairn_domain::queue::{QueueCommand, QueueEvent};
use cairn_domain::token::{TokenCommand, TokenEvent};
use cairn_domain::{Command, CommandBody, EntityKey, Event, EventPayload};
use cairn_proto as pb;
use prost::Message;

use super::{FromPb, ToPb};

fn labels() -> BTreeMap<String, String> {
    (0..5).map(|i| (format!("k{i}"), format!("v{i}"))).collect()
}

fn inventory() -> NodeInventory {
    NodeInventory {
        hostname: "gpu-1".into(),
        labels: labels(),
        cpu_millis: 64_000,
        memory_bytes: 1 << 40,
        gpus: vec![
            GpuInfo {
                index: 0,
                uuid: "GPU-0".into(),
                name: "H100".into(),
                numa_node: 1,
                ..GpuInfo::default()
            },
            GpuInfo {
                index: 1,
                uuid: "GPU-1".into(),
                ..GpuInfo::default()
            },
        ],
        links: vec![GpuLink {
            a: 0,
            b: 1,
            nvlinks: 18,
            pcie: PcieLevel::SingleSwitch,
        }],
        port_range_start: 20000,
        port_range_end: 20099,
        gpu_provider: "sim".into(),
        ..NodeInventory::default()
    }
}

fn job_doc() -> Box<cairn_domain::job::JobDocument> {
    let json = r#"{"apiVersion": "cairn.dev/v1", "kind": "TrainingJob",
        "metadata": {"name": "mnist", "labels": {"team": "vision"}},
        "spec": {"framework": "pytorch", "roles": {"worker": {"replicas": 2, "gpus": 1, "command": ["python", "train.py"]}}}}"#;
    Box::new(cairn_domain::job::parse(json).expect("a valid job"))
}

fn deployment_doc() -> Box<cairn_domain::deployment::DeploymentDocument> {
    let json = r#"{"apiVersion": "cairn.dev/v1", "kind": "ModelDeployment", "metadata": {"name": "svc"},
        "spec": {"model": {"name": "resnet", "alias": "champion"}, "replicas": 2,
                 "template": {"command": ["serve"], "gpus": 1},
                 "readinessProbe": {"httpGet": {"path": "/healthz"}},
                 "canary": {"steps": [{"weight": 10, "pause": "5m"}, {"weight": 50}]}}}"#;
    Box::new(cairn_domain::deployment::parse(json).expect("a valid deployment"))
}

fn cron_doc() -> Box<cairn_domain::cron::CronDocument> {
    let json = r#"{"apiVersion": "cairn.dev/v1", "kind": "TrainingCron", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"framework": "generic", "roles": {"run": {"replicas": 1, "command": ["true"]}}}}}"#;
    Box::new(cairn_domain::cron::parse(json).expect("a valid cron"))
}

fn outputs() -> RunOutputs {
    RunOutputs {
        metrics: BTreeMap::from([("accuracy".into(), "0.93".into())]),
        params: BTreeMap::from([("lr".into(), "0.001".into())]),
    }
}

fn replica() -> ReplicaId {
    ReplicaId {
        role: "worker".into(),
        index: 1,
    }
}

fn health() -> GpuHealth {
    GpuHealth {
        uuid: "GPU-1".into(),
        healthy: false,
        reason: "xid 79".into(),
        xid: 79,
    }
}

/// One of every command.
fn every_command() -> Vec<CommandBody> {
    let token = b"digest".to_vec();
    vec![
        CommandBody::Namespace(NamespaceCommand::Create {
            name: "research".into(),
            labels: labels(),
        }),
        CommandBody::Namespace(NamespaceCommand::SetLabels {
            name: "research".into(),
            set: labels(),
            remove: vec!["old".into()],
            replace: true,
        }),
        CommandBody::Namespace(NamespaceCommand::Delete {
            name: "research".into(),
        }),
        CommandBody::AddNote {
            entity: EntityKey::new("job", "mnist"),
            text: "hello".into(),
        },
        CommandBody::ReconcileMembers,
        CommandBody::Node(NodeCommand::Register {
            node: "gpu-1".into(),
            inventory: Box::new(inventory()),
            token_digest: token.clone(),
        }),
        CommandBody::Node(NodeCommand::ReportGpuHealth {
            node: "gpu-1".into(),
            gpus: vec![health()],
            token_digest: token.clone(),
        }),
        CommandBody::Node(NodeCommand::MarkLost {
            node: "gpu-1".into(),
            last_heartbeat_ms: 5,
            grace_ms: 10_000,
        }),
        CommandBody::Node(NodeCommand::MarkRecovered {
            node: "gpu-1".into(),
        }),
        CommandBody::Node(NodeCommand::Cordon {
            node: "gpu-1".into(),
            gpu_uuid: Some("GPU-0".into()),
            reason: "fan".into(),
            drain: true,
        }),
        CommandBody::Node(NodeCommand::Uncordon {
            node: "gpu-1".into(),
            gpu_uuid: None,
        }),
        CommandBody::Node(NodeCommand::AcquirePortLeases {
            node: "gpu-1".into(),
            holder: "job-a/0".into(),
            count: 2,
            ttl_ms: 60_000,
        }),
        CommandBody::Node(NodeCommand::RenewPortLeases {
            node: "gpu-1".into(),
            ttl_ms: 30_000,
            token_digest: token.clone(),
        }),
        CommandBody::Node(NodeCommand::ReleasePortLeases {
            node: "gpu-1".into(),
            holder: "job-a/0".into(),
        }),
        CommandBody::Node(NodeCommand::ExpirePortLeases),
        CommandBody::Node(NodeCommand::ReportPortViolation {
            node: "gpu-1".into(),
            port: 20001,
            pid: 42,
            process: "nc".into(),
            token_digest: token.clone(),
        }),
        CommandBody::Queue(QueueCommand::SetQuota {
            queue: "research".into(),
            gpus: Some(16),
        }),
        CommandBody::Token(TokenCommand::Create {
            name: "ci".into(),
            user: "carol".into(),
            role: Role::Operator,
            digest: vec![7; 32],
            expires_ms: Some(1_800_000_000_000),
        }),
        CommandBody::Token(TokenCommand::Revoke { name: "ci".into() }),
        CommandBody::Projection(ProjectionCommand::Checkpoint {
            name: "kubernetes".into(),
            sequence: 41,
        }),
        CommandBody::Projection(ProjectionCommand::Resync {
            name: "kubernetes".into(),
        }),
        CommandBody::Job(JobCommand::Submit { doc: job_doc() }),
        CommandBody::Job(JobCommand::Cancel {
            name: "mnist".into(),
            reason: "done".into(),
        }),
        CommandBody::Job(JobCommand::Schedule),
        CommandBody::Job(JobCommand::EnforceDeadline {
            name: "mnist".into(),
        }),
        CommandBody::Job(JobCommand::ReportReplica {
            node: "gpu-1".into(),
            job: "mnist".into(),
            replica: replica(),
            attempt: 2,
            pid: 77,
            exit: Some(ReplicaExit {
                code: 137,
                signal: 9,
                oom: true,
            }),
            outputs: outputs(),
            token_digest: token,
        }),
        CommandBody::Cron(CronCommand::Submit { doc: cron_doc() }),
        CommandBody::Cron(CronCommand::Delete {
            name: "nightly".into(),
        }),
        CommandBody::Cron(CronCommand::Trigger {
            name: "nightly".into(),
            scheduled_ms: 1_795_428_000_000,
        }),
        CommandBody::Model(ModelCommand::Create {
            name: "resnet".into(),
            description: "d".into(),
            tags: labels(),
        }),
        CommandBody::Model(ModelCommand::Update {
            name: "resnet".into(),
            description: "e".into(),
        }),
        CommandBody::Model(ModelCommand::Protect {
            name: "resnet".into(),
            target: Held::Alias("champion".into()),
            allowed: ["user/alice".to_string()].into(),
        }),
        CommandBody::Model(ModelCommand::SetTag {
            name: "resnet".into(),
            key: "k".into(),
            value: "v".into(),
        }),
        CommandBody::Model(ModelCommand::DeleteTag {
            name: "resnet".into(),
            key: "k".into(),
        }),
        CommandBody::Model(ModelCommand::Rename {
            name: "resnet".into(),
            new_name: "resnet-2".into(),
        }),
        CommandBody::Model(ModelCommand::Delete {
            name: "resnet".into(),
        }),
        CommandBody::Model(ModelCommand::CreateVersion {
            name: "resnet".into(),
            source: "s3://b/m".into(),
            run_id: "mnist".into(),
            description: "d".into(),
            tags: labels(),
            create_model: true,
        }),
        CommandBody::Model(ModelCommand::UpdateVersion {
            name: "resnet".into(),
            version: 2,
            description: "d".into(),
        }),
        CommandBody::Model(ModelCommand::SetVersionTag {
            name: "resnet".into(),
            version: 2,
            key: "k".into(),
            value: "v".into(),
        }),
        CommandBody::Model(ModelCommand::DeleteVersionTag {
            name: "resnet".into(),
            version: 2,
            key: "k".into(),
        }),
        CommandBody::Model(ModelCommand::DeleteVersion {
            name: "resnet".into(),
            version: 2,
        }),
        CommandBody::Model(ModelCommand::Transition {
            name: "resnet".into(),
            version: 2,
            stage: Stage::Production,
            expected: Some(Stage::Staging),
            expected_in_target: Some([1, 4].into()),
            archive_existing: true,
            reason: "r".into(),
        }),
        CommandBody::Model(ModelCommand::SetAlias {
            name: "resnet".into(),
            alias: "champion".into(),
            version: 2,
            expected: Some(None),
            reason: "r".into(),
        }),
        CommandBody::Model(ModelCommand::SetAlias {
            name: "resnet".into(),
            alias: "canary".into(),
            version: 2,
            expected: Some(Some(1)),
            reason: String::new(),
        }),
        CommandBody::Model(ModelCommand::DeleteAlias {
            name: "resnet".into(),
            alias: "champion".into(),
            reason: "r".into(),
        }),
        CommandBody::Deployment(DeploymentCommand::Apply {
            doc: deployment_doc(),
        }),
        CommandBody::Deployment(DeploymentCommand::Delete { name: "svc".into() }),
        CommandBody::Deployment(DeploymentCommand::Scale {
            name: "svc".into(),
            replicas: 3,
            reason: "load".into(),
            load: Some(cairn_domain::deployment::ScaleLoad {
                in_flight_milli: 7_250,
                ready: 2,
                target_in_flight: 2,
            }),
        }),
        CommandBody::Deployment(DeploymentCommand::Scale {
            name: "svc".into(),
            replicas: 2,
            reason: "by hand".into(),
            load: None,
        }),
        CommandBody::Deployment(DeploymentCommand::Pause {
            name: "svc".into(),
            reason: "r".into(),
        }),
        CommandBody::Deployment(DeploymentCommand::Resume { name: "svc".into() }),
        CommandBody::Deployment(DeploymentCommand::Promote { name: "svc".into() }),
        CommandBody::Deployment(DeploymentCommand::Rollback {
            name: "svc".into(),
            reason: "r".into(),
        }),
        CommandBody::Deployment(DeploymentCommand::Advance { name: "svc".into() }),
        CommandBody::Deployment(DeploymentCommand::ReportServing {
            node: "gpu-1".into(),
            name: "svc".into(),
            revision: 2,
            index: 1,
            attempt: 3,
            report: ServingReport::NotReady {
                reason: "503".into(),
            },
            token_digest: b"digest".to_vec(),
        }),
    ]
}

/// One of every event.
fn every_event() -> Vec<EventPayload> {
    vec![
        EventPayload::Member(MemberEvent::Added {
            node_id: 2,
            address: "10.0.0.2:7420".into(),
            voter: false,
        }),
        EventPayload::Member(MemberEvent::Promoted { node_id: 2 }),
        EventPayload::Member(MemberEvent::Removed { node_id: 2 }),
        EventPayload::Namespace(NamespaceEvent::Created { labels: labels() }),
        EventPayload::Namespace(NamespaceEvent::LabelsChanged { labels: labels() }),
        EventPayload::Namespace(NamespaceEvent::Deleted),
        EventPayload::NoteAdded {
            text: "hello".into(),
        },
        EventPayload::Node(NodeEvent::Registered {
            inventory: inventory(),
            token_digest: b"digest".to_vec(),
        }),
        EventPayload::Node(NodeEvent::Lost {
            last_heartbeat_ms: 5,
            grace_ms: 10_000,
        }),
        EventPayload::Node(NodeEvent::Recovered),
        EventPayload::Node(NodeEvent::GpuHealthChanged { health: health() }),
        EventPayload::Node(NodeEvent::Cordoned {
            gpu_uuid: String::new(),
            reason: "fan".into(),
            drain: true,
        }),
        EventPayload::Node(NodeEvent::Uncordoned {
            gpu_uuid: "GPU-0".into(),
        }),
        EventPayload::Node(NodeEvent::PortLeaseGranted {
            holder: "job-a/0".into(),
            ports: vec![20000, 20001],
            expires_ms: 99,
        }),
        EventPayload::Node(NodeEvent::PortLeasesRenewed { expires_ms: 100 }),
        EventPayload::Node(NodeEvent::PortLeaseReleased {
            holder: "job-a/0".into(),
            ports: vec![20000],
            reason: "expired".into(),
        }),
        EventPayload::Node(NodeEvent::PortLeaseViolation {
            port: 20000,
            holder: "job-a/0".into(),
            pid: 42,
            process: "nc".into(),
        }),
        EventPayload::Queue(QueueEvent::QuotaSet { gpus: None }),
        EventPayload::Token(TokenEvent::Created {
            user: "carol".into(),
            role: Role::Admin,
            digest: vec![7; 32],
            expires_ms: None,
        }),
        EventPayload::Token(TokenEvent::Revoked),
        EventPayload::Projection(ProjectionEvent::Checkpointed { sequence: 41 }),
        EventPayload::Projection(ProjectionEvent::ResyncRequested),
        EventPayload::Job(JobEvent::Submitted { doc: job_doc() }),
        EventPayload::Job(JobEvent::Waiting {
            reason: "needs 8 GPUs".into(),
        }),
        EventPayload::Job(JobEvent::Scheduled {
            placements: vec![Placement {
                replica: replica(),
                node: "gpu-1".into(),
                gpus: vec!["GPU-0".into()],
                ports: vec![20003],
                score: 100,
            }],
        }),
        EventPayload::Job(JobEvent::Cancelled {
            reason: "by alice".into(),
        }),
        EventPayload::Job(JobEvent::Running),
        EventPayload::Job(JobEvent::Succeeded),
        EventPayload::Job(JobEvent::Failed {
            reason: "backoff".into(),
        }),
        EventPayload::Job(JobEvent::ReplicaStarted {
            replica: replica(),
            attempt: 1,
            node: "gpu-1".into(),
            pid: 77,
        }),
        EventPayload::Job(JobEvent::ReplicaExited {
            replica: replica(),
            attempt: 1,
            exit_code: 137,
            signal: 9,
            oom: true,
            outputs: outputs(),
        }),
        EventPayload::Job(JobEvent::ReplicaRestarting {
            replica: replica(),
            attempt: 2,
            reason: "exited with signal 9".into(),
        }),
        EventPayload::Job(JobEvent::Requeued {
            reason: "GPU lost".into(),
        }),
        EventPayload::Cron(CronEvent::Submitted { doc: cron_doc() }),
        EventPayload::Cron(CronEvent::Deleted),
        EventPayload::Cron(CronEvent::Triggered {
            scheduled_ms: 1,
            job: "nightly-1".into(),
        }),
        EventPayload::Cron(CronEvent::Skipped {
            scheduled_ms: 2,
            reason: "Forbid".into(),
        }),
        EventPayload::Model(ModelEvent::Created {
            description: "d".into(),
            tags: labels(),
        }),
        EventPayload::Model(ModelEvent::Updated {
            description: "e".into(),
        }),
        EventPayload::Model(ModelEvent::TagSet {
            key: "k".into(),
            value: "v".into(),
        }),
        EventPayload::Model(ModelEvent::TagDeleted { key: "k".into() }),
        EventPayload::Model(ModelEvent::Renamed { to: "b".into() }),
        EventPayload::Model(ModelEvent::RenamedFrom { from: "a".into() }),
        EventPayload::Model(ModelEvent::Deleted),
        EventPayload::Model(ModelEvent::VersionCreated(Box::new(NewVersion {
            version: 3,
            source: "/models/r".into(),
            storage_location: "file://gpu-1/models/r".into(),
            run_id: "mnist".into(),
            description: "d".into(),
            tags: labels(),
            status: VersionStatus::Pending,
            lineage: Some(Lineage {
                job: "mnist".into(),
                nodes: vec!["gpu-1".into()],
                gpus: vec!["GPU-0".into(), "GPU-1".into()],
                code: "git https://example.com/r.git@v1".into(),
            }),
            outputs: outputs(),
        }))),
        EventPayload::Model(ModelEvent::VersionUpdated {
            version: 3,
            description: "d".into(),
        }),
        EventPayload::Model(ModelEvent::VersionTagSet {
            version: 3,
            key: "k".into(),
            value: "v".into(),
        }),
        EventPayload::Model(ModelEvent::VersionTagDeleted {
            version: 3,
            key: "k".into(),
        }),
        EventPayload::Model(ModelEvent::VersionDeleted { version: 3 }),
        EventPayload::Model(ModelEvent::StageChanged {
            version: 3,
            from: Stage::Staging,
            to: Stage::Archived,
            reason: "r".into(),
        }),
        EventPayload::Model(ModelEvent::AliasSet {
            alias: "champion".into(),
            version: 3,
            previous: Some(2),
            reason: "r".into(),
        }),
        EventPayload::Model(ModelEvent::AliasDeleted {
            alias: "champion".into(),
            version: 3,
            reason: "r".into(),
        }),
        EventPayload::Model(ModelEvent::Protected {
            target: Held::Stage(Stage::Production),
            allowed: ["user/alice".to_string(), "user/bob".to_string()].into(),
        }),
        EventPayload::Deployment(DeploymentEvent::Applied {
            doc: deployment_doc(),
        }),
        EventPayload::Deployment(DeploymentEvent::RevisionCreated {
            revision: 2,
            model_version: 7,
            model_uri: "s3://b/m/7".into(),
            reason: "r".into(),
        }),
        EventPayload::Deployment(DeploymentEvent::Routed {
            port: 20000,
            nodes: vec!["gpu-1".into(), "gpu-2".into()],
        }),
        EventPayload::Deployment(DeploymentEvent::ReplicasPlaced {
            revision: 2,
            placements: vec![ServingPlacement {
                index: 0,
                node: "gpu-1".into(),
                gpus: vec!["GPU-0".into()],
                port: 20001,
            }],
        }),
        EventPayload::Deployment(DeploymentEvent::ReplicaStarted {
            revision: 2,
            index: 0,
            attempt: 1,
            pid: 42,
        }),
        EventPayload::Deployment(DeploymentEvent::ReplicaReady {
            revision: 2,
            index: 0,
        }),
        EventPayload::Deployment(DeploymentEvent::ReplicaNotReady {
            revision: 2,
            index: 0,
            reason: "r".into(),
        }),
        EventPayload::Deployment(DeploymentEvent::ReplicaRestarting {
            revision: 2,
            index: 0,
            attempt: 2,
            reason: "r".into(),
        }),
        EventPayload::Deployment(DeploymentEvent::ReplicaDoomed {
            revision: 2,
            index: 0,
            reason: "r".into(),
        }),
        EventPayload::Deployment(DeploymentEvent::ReplicasRemoved {
            revision: 1,
            indexes: vec![0, 3],
            reason: "r".into(),
        }),
        EventPayload::Deployment(DeploymentEvent::TrafficShifted {
            weights: BTreeMap::from([(1, 90), (2, 10)]),
            reason: "r".into(),
        }),
        EventPayload::Deployment(DeploymentEvent::CanaryStep { step: 1 }),
        EventPayload::Deployment(DeploymentEvent::RolloutCompleted { revision: 2 }),
        EventPayload::Deployment(DeploymentEvent::RollbackStarted {
            to: 1,
            reason: "r".into(),
        }),
        EventPayload::Deployment(DeploymentEvent::Promoted),
        EventPayload::Deployment(DeploymentEvent::Paused { reason: "r".into() }),
        EventPayload::Deployment(DeploymentEvent::Resumed),
        EventPayload::Deployment(DeploymentEvent::Waiting { reason: "r".into() }),
        EventPayload::Deployment(DeploymentEvent::Scaled {
            replicas: 4,
            reason: "r".into(),
            load: Some(cairn_domain::deployment::ScaleLoad {
                in_flight_milli: 3_500,
                ready: 1,
                target_in_flight: 1,
            }),
        }),
        EventPayload::Deployment(DeploymentEvent::Deleted),
    ]
}

/// The events of [`every_event`], stamped as `decide` would.
pub(crate) fn every_stamped_event() -> Vec<Event> {
    every_event()
        .into_iter()
        .enumerate()
        .map(|(i, payload)| Event {
            sequence: i as u64 + 1,
            raft_index: 10 + i as u64,
            raft_term: 3,
            timestamp_ms: 1_795_428_000_000 + i as i64,
            entity: EntityKey::new(payload.kind().unwrap_or("job"), "x"),
            entity_revision: 1,
            actor: "alice".into(),
            correlation_id: format!("req-{i}"),
            payload,
        })
        .collect()
}

#[test]
fn every_command_round_trips_through_protobuf() {
    let samples = every_command();
    let mut seen = BTreeSet::new();
    for body in samples {
        let cmd = Command {
            timestamp_ms: 7,
            actor: "alice".into(),
            role: Some(Role::Operator),
            bearer: vec![9; 32],
            correlation_id: "req-1".into(),
            expected_revision: Some(3),
            body,
        };
        let wire = cmd.to_pb();
        seen.insert(wire.type_name());
        let bytes = wire.encode_to_vec();
        let back = pb::Command::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(
            Command::from_pb(&back).as_ref(),
            Ok(&cmd),
            "{}",
            wire.type_name()
        );
    }
    let all: BTreeSet<&str> = pb::COMMAND_TYPES.iter().copied().collect();
    assert_eq!(seen, all, "a command type has no sample here");
}

#[test]
fn every_event_round_trips_and_is_named_as_the_schema_names_it() {
    let events = every_stamped_event();
    let mut seen = BTreeSet::new();
    for e in &events {
        let wire = e.to_pb();
        assert_eq!(e.payload.type_name(), wire.type_name());
        seen.insert(wire.type_name());
        let bytes = wire.encode_to_vec();
        let back = pb::Event::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(
            Event::from_pb(&back).as_ref(),
            Ok(e),
            "{}",
            wire.type_name()
        );
        // Encoding is stable: the same event, the same bytes.
        assert_eq!(
            Event::from_pb(&back)
                .expect("decodes")
                .to_pb()
                .encode_to_vec(),
            bytes
        );
    }
    let all: BTreeSet<&str> = pb::EVENT_TYPES.iter().copied().collect();
    assert_eq!(seen, all, "an event type has no sample here");
}

#[test]
fn a_recorded_document_this_build_cannot_read_names_the_event() {
    let mut wire = every_stamped_event()
        .into_iter()
        .find(|e| e.payload.type_name() == "job_submitted")
        .expect("a job_submitted sample")
        .to_pb();
    wire.sequence = 41;
    if let Some(pb::event::Payload::JobSubmitted(j)) = &mut wire.payload {
        j.spec_json = j
            .spec_json
            .replace("\"replicas\":2", "\"replicas\":\"two\"");
    }
    let err = Event::from_pb(&wire).unwrap_err().to_string();
    assert!(
        err.starts_with("event 41: job_submitted.spec_json: spec.roles.worker.replicas"),
        "{err}"
    );
}

#[test]
fn an_unknown_pcie_level_is_refused_naming_the_link() {
    let mut cmd = Command {
        timestamp_ms: 0,
        actor: String::new(),
        role: None,
        bearer: Vec::new(),
        correlation_id: String::new(),
        expected_revision: None,
        body: CommandBody::Node(NodeCommand::Register {
            node: "gpu-1".into(),
            inventory: Box::new(inventory()),
            token_digest: Vec::new(),
        }),
    }
    .to_pb();
    if let Some(pb::command::Body::RegisterNode(r)) = &mut cmd.body {
        if let Some(inv) = &mut r.inventory {
            inv.links[0].pcie = 42;
        }
    }
    let err = Command::from_pb(&cmd).unwrap_err();
    assert_eq!(
        err.0,
        ["register_node.inventory.links[0].pcie: unknown PCIe level 42"]
    );
}

#[test]
fn a_command_without_body_is_malformed() {
    let err = Command::from_pb(&pb::Command::default()).unwrap_err();
    assert_eq!(err.0, vec!["command.body: required".to_string()]);
}
