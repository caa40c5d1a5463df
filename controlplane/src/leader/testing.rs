//! States for the workers' tests, made the only way a state is made: by deciding
//! commands and folding their events.

use cairn_domain::cron::CronCommand;
use cairn_domain::job::JobCommand;
use cairn_domain::node::{GpuInfo, NodeCommand, NodeInventory};
use cairn_domain::{decide, Command, CommandBody, Position, State};

/// Leader time of the commands these states are made of.
pub const T0: i64 = 1_795_428_000_000;

pub fn apply(mut state: State, body: CommandBody) -> State {
    let cmd = Command {
        timestamp_ms: T0,
        actor: "test".into(),
        role: None,
        bearer: Vec::new(),
        correlation_id: "c".into(),
        expected_revision: None,
        body,
    };
    let pos = Position {
        raft_index: state.last_sequence() + 1,
        raft_term: 1,
    };
    for e in decide(&state, &cmd, pos).expect("accepted") {
        state.evolve(&e);
    }
    state
}

/// A state with one registered node (one GPU, ports 20000-20009).
pub fn with_node(node: &str) -> State {
    let inventory = NodeInventory {
        hostname: node.into(),
        gpus: vec![GpuInfo {
            uuid: format!("{node}-gpu0"),
            ..GpuInfo::default()
        }],
        port_range_start: 20000,
        port_range_end: 20009,
        ..NodeInventory::default()
    };
    apply(
        State::new(),
        CommandBody::Node(NodeCommand::Register {
            node: node.into(),
            inventory: Box::new(inventory),
            token_digest: b"token".to_vec(),
        }),
    )
}

/// `state` with `node` recorded lost.
pub fn lose(state: State, node: &str) -> State {
    apply(
        state,
        CommandBody::Node(NodeCommand::MarkLost {
            node: node.into(),
            last_heartbeat_ms: 0,
            grace_ms: 1,
        }),
    )
}

/// `state` with a port lease for `holder` on `node`, and when it expires.
pub fn lease(state: State, node: &str, holder: &str) -> (State, i64) {
    let state = apply(
        state,
        CommandBody::Node(NodeCommand::AcquirePortLeases {
            node: node.into(),
            holder: holder.into(),
            count: 1,
            ttl_ms: 60_000,
        }),
    );
    (state, T0 + 60_000)
}

/// A state with one job, `j`, waiting (no node to run on); `spec` adds fields to its
/// spec (`"key": value, ...`).
pub fn job(spec: &str) -> State {
    let extra = if spec.is_empty() {
        String::new()
    } else {
        format!(", {spec}")
    };
    let json = format!(
        r#"{{"apiVersion": "cairn.dev/v1", "kind": "TrainingJob", "metadata": {{"name": "j"}},
            "spec": {{"framework": "generic", "roles": {{"run": {{"replicas": 1, "gpus": 1, "command": ["true"]}}}}{extra}}}}}"#
    );
    let doc = cairn_domain::job::parse(&json).expect("a valid job");
    apply(
        State::new(),
        CommandBody::Job(JobCommand::Submit { doc: Box::new(doc) }),
    )
}

/// When job `name` was submitted.
pub fn submitted_at(state: &State, name: &str) -> i64 {
    state.job(name).expect("the job").submitted_ms
}

/// A state with one cron, `c`, and when it was created.
pub fn cron(schedule: &str, suspend: bool) -> (State, i64) {
    let json = format!(
        r#"{{"apiVersion": "cairn.dev/v1", "kind": "TrainingCron", "metadata": {{"name": "c"}},
            "spec": {{"schedule": "{schedule}", "suspend": {suspend},
                      "jobTemplate": {{"framework": "generic", "roles": {{"run": {{"replicas": 1, "command": ["true"]}}}}}}}}}}"#
    );
    let doc = cairn_domain::cron::parse(&json).expect("a valid cron");
    let state = apply(
        State::new(),
        CommandBody::Cron(CronCommand::Submit { doc: Box::new(doc) }),
    );
    (state, T0)
}

/// `state` with model `m` (version 1) and deployment `svc` of it (one replica, no GPU).
pub fn deployment(state: State) -> State {
    let json = r#"{"apiVersion": "cairn.dev/v1", "kind": "ModelDeployment", "metadata": {"name": "svc"},
        "spec": {"model": {"name": "m", "version": 1}, "replicas": 1, "template": {"command": ["serve"]}}}"#;
    deployment_from(state, json)
}

/// `state` with model `m` (version 1) and the deployment `json` (of `m`).
pub fn deployment_from(state: State, json: &str) -> State {
    use cairn_domain::deployment::DeploymentCommand;
    use cairn_domain::model::ModelCommand;
    let state = apply(
        state,
        CommandBody::Model(ModelCommand::CreateVersion {
            name: "m".into(),
            source: "/models/m.json".into(),
            run_id: String::new(),
            description: String::new(),
            tags: Default::default(),
            create_model: true,
        }),
    );
    let doc = cairn_domain::deployment::parse(json).expect("a valid deployment");
    apply(
        state,
        CommandBody::Deployment(DeploymentCommand::Apply { doc: Box::new(doc) }),
    )
}
