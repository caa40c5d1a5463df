//! What Kubernetes should hold, as a pure function of Cairn's state: one object per live
//! entity of a projected kind, each stamped with the log sequence of the entity's latest
//! event (`cairn.dev/seq`) and its revision (`cairn.dev/revision`). The projector applies
//! the objects whose stamp differs from what it last applied, and deletes the objects of
//! entities that are gone.

use std::collections::BTreeMap;

use cairn_controlplane::views;
use cairn_domain::{EntityKey, State};
use cairn_proto as pb;
use serde_json::{json, Value};

use crate::{crd, intake};

/// The label on every object Cairn projected (and only on those).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "cairn");
/// The annotation with the sequence of the entity's latest event.
pub const SEQ: &str = "cairn.dev/seq";
/// The annotation with the entity's revision.
pub const REVISION: &str = "cairn.dev/revision";
/// The annotation with the entity's name in Cairn, where the object's name differs.
pub const CAIRN_NAME: &str = "cairn.dev/name";
/// The label with the name of the object a derived object belongs to (a deployment's
/// Services, EndpointSlices and HTTPRoute).
pub const OWNER: &str = "cairn.dev/owner";

/// A projected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    TrainingJob,
    TrainingCron,
    GpuNode,
    PortLease,
    Model,
    ModelVersion,
    ModelDeployment,
    /// A deployment's revision, as a Service without a selector.
    Service,
    /// The ready replicas of a revision's Service.
    EndpointSlice,
    /// A deployment's split of requests between its revisions (Gateway API).
    HttpRoute,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::TrainingJob,
        Kind::TrainingCron,
        Kind::GpuNode,
        Kind::PortLease,
        Kind::Model,
        Kind::ModelVersion,
        Kind::ModelDeployment,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::HttpRoute,
    ];

    /// Its API group (empty: the core group).
    pub fn group(self) -> &'static str {
        match self {
            Kind::TrainingJob
            | Kind::TrainingCron
            | Kind::GpuNode
            | Kind::PortLease
            | Kind::Model
            | Kind::ModelVersion
            | Kind::ModelDeployment => "cairn.dev",
            Kind::Service => "",
            Kind::EndpointSlice => "discovery.k8s.io",
            Kind::HttpRoute => "gateway.networking.k8s.io",
        }
    }

    /// The versions Cairn can write, preferred first: an api-server serves one of them,
    /// or the kind is not projected there (the Gateway API is installed apart).
    pub fn versions(self) -> &'static [&'static str] {
        match self.is_cairns() || self.group().is_empty() {
            true => &["v1"],
            false => &["v1", "v1beta1"],
        }
    }

    /// One of Cairn's own kinds (its CRDs, which Cairn installs).
    pub fn is_cairns(self) -> bool {
        self.group() == "cairn.dev"
    }

    /// `apiVersion` of its objects in `version`.
    pub fn api_version(self, version: &str) -> String {
        match self.group() {
            "" => version.to_string(),
            g => format!("{g}/{version}"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::TrainingJob => "TrainingJob",
            Kind::TrainingCron => "TrainingCron",
            Kind::GpuNode => "GpuNode",
            Kind::PortLease => "PortLease",
            Kind::Model => "Model",
            Kind::ModelVersion => "ModelVersion",
            Kind::ModelDeployment => "ModelDeployment",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::HttpRoute => "HTTPRoute",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::TrainingJob => "trainingjobs",
            Kind::TrainingCron => "trainingcrons",
            Kind::GpuNode => "gpunodes",
            Kind::PortLease => "portleases",
            Kind::Model => "models",
            Kind::ModelVersion => "modelversions",
            Kind::ModelDeployment => "modeldeployments",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::HttpRoute => "httproutes",
        }
    }

    /// Whether its status is a subresource, written apart from the object. Only the
    /// kinds users write have one; the others take spec and status in one write.
    pub fn status_subresource(self) -> bool {
        !crd::STATUS_IN_OBJECT.contains(&self.name())
    }

    /// The kinds an entity of `entity_kind` is projected as: its own, and the kinds of
    /// the objects it owns (a node's port leases, a model's versions, a deployment's
    /// Services, EndpointSlices and HTTPRoute).
    pub fn of_entity(entity_kind: &str) -> (Option<Kind>, &'static [Kind]) {
        use cairn_domain::{cron, deployment, job, model, node};
        match entity_kind {
            job::KIND => (Some(Kind::TrainingJob), &[]),
            cron::KIND => (Some(Kind::TrainingCron), &[]),
            node::KIND => (Some(Kind::GpuNode), &[Kind::PortLease]),
            model::KIND => (Some(Kind::Model), &[Kind::ModelVersion]),
            deployment::KIND => (
                Some(Kind::ModelDeployment),
                &[Kind::Service, Kind::EndpointSlice, Kind::HttpRoute],
            ),
            _ => (None, &[]),
        }
    }

    pub fn namespaced(self) -> bool {
        match self {
            Kind::GpuNode => false,
            Kind::TrainingJob
            | Kind::TrainingCron
            | Kind::PortLease
            | Kind::Model
            | Kind::ModelVersion
            | Kind::ModelDeployment
            | Kind::Service
            | Kind::EndpointSlice
            | Kind::HttpRoute => true,
        }
    }
}

/// One object as Kubernetes should hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub kind: Kind,
    pub name: String,
    /// The sequence of the latest event it reflects.
    pub seq: u64,
    /// apiVersion, kind, metadata and spec: what is applied to the object.
    pub body: Value,
    /// What is applied to its status subresource (none for kinds without one).
    pub status: Option<Value>,
    /// A user applied it with kubectl: its spec is theirs, and it carries no
    /// managed-by label (Cairn writes its spec only to restore it).
    pub user: bool,
}

impl Object {
    /// A kind without a status subresource carries its status in the object.
    fn fold_status(&mut self) {
        if self.kind.status_subresource() {
            return;
        }
        if let Some(mut st) = self.status.take() {
            self.body["status"] = st["status"].take();
        }
    }

    /// What to apply to an object that exists: the user's spec left alone.
    pub fn update_body(&self) -> Value {
        let mut body = self.body.clone();
        if self.user {
            if let Some(o) = body.as_object_mut() {
                o.remove("spec");
            }
        }
        body
    }
}

/// A Kubernetes object name for a Cairn name: the name itself when it is a valid DNS
/// subdomain, else a lowercase form of it with a hash of the original, so two names
/// never meet.
pub fn object_name(name: &str) -> String {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        return name.to_string();
    }
    let mut s: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(200);
    let s = s.trim_matches('-');
    // FNV-1a: stable across builds and members.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    if s.is_empty() {
        format!("x-{:08x}", hash as u32)
    } else {
        format!("{s}-{:08x}", hash as u32)
    }
}

fn rfc3339(ms: i64) -> String {
    if ms <= 0 {
        return String::new();
    }
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The stamps of entity `key` in `state`: (sequence, revision).
fn stamps(state: &State, key: &EntityKey) -> (u64, u64) {
    state
        .entity(key)
        .map_or((0, 0), |e| (e.sequence, e.revision))
}

fn body(
    kind: Kind,
    name: &str,
    cairn_name: &str,
    namespace: &str,
    (seq, revision): (u64, u64),
    spec: Value,
    user: bool,
) -> Value {
    let mut annotations = BTreeMap::from([
        (SEQ.to_string(), seq.to_string()),
        (REVISION.to_string(), revision.to_string()),
    ]);
    if cairn_name != name {
        annotations.insert(CAIRN_NAME.to_string(), cairn_name.to_string());
    }
    let mut metadata = json!({
        "name": name,
        "annotations": annotations,
    });
    if !user {
        metadata["labels"] = json!({MANAGED_BY.0: MANAGED_BY.1});
    }
    if kind.namespaced() {
        metadata["namespace"] = json!(namespace);
    }
    json!({
        "apiVersion": kind.api_version(kind.versions()[0]),
        "kind": kind.name(),
        "metadata": metadata,
        "spec": spec,
    })
}

/// The `spec` of a Cairn document, as accepted.
fn document_spec(spec_json: &str) -> Value {
    serde_json::from_str::<Value>(spec_json)
        .ok()
        .and_then(|d| d.get("spec").cloned())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}))
}

fn status<T: serde::Serialize>(kind: Kind, name: &str, namespace: &str, status: T) -> Value {
    let mut v = json!({
        "apiVersion": "cairn.dev/v1",
        "kind": kind.name(),
        "metadata": {"name": name},
        "status": status,
    });
    if kind.namespaced() {
        v["metadata"]["namespace"] = json!(namespace);
    }
    v
}

fn object(
    state: &State,
    kind: Kind,
    key: EntityKey,
    namespace: &str,
    spec: Value,
    st: Option<Value>,
    user: bool,
) -> Object {
    let name = object_name(&key.name);
    let stamps = stamps(state, &key);
    Object {
        kind,
        seq: stamps.0,
        body: body(kind, &name, &key.name, namespace, stamps, spec, user),
        status: st,
        user,
        name,
    }
}

/// Every object Kubernetes should hold for `state`, namespaced ones in `namespace`;
/// deployments' HTTPRoutes attach to the Gateway `gateway` there.
pub fn objects(state: &State, namespace: &str, gateway: &str) -> Vec<Object> {
    let mut out = Vec::new();
    let jobs = views::jobs(state, "", "");
    let ended: std::collections::BTreeSet<&str> = jobs
        .iter()
        .filter(|j| matches!(j.phase.as_str(), "Succeeded" | "Failed" | "Cancelled"))
        .map(|j| j.name.as_str())
        .collect();
    for j in &jobs {
        let user = intake::from_intake(&j.spec_json);
        if user && j.phase == "Cancelled" && j.reason.contains(intake::DELETED_REASON) {
            // Its user deleted it: it stays deleted.
            continue;
        }
        let name = object_name(&j.name);
        let nodes: std::collections::BTreeSet<&str> =
            j.placements.iter().map(|p| p.node.as_str()).collect();
        let st = crd::TrainingJobStatus {
            phase: j.phase.clone(),
            reason: j.reason.clone(),
            gpus: j.placements.iter().map(|p| p.gpus.len() as u32).sum(),
            nodes: nodes.into_iter().collect::<Vec<_>>().join(","),
            restarts: j.restarts,
            submitted: rfc3339(j.submitted_ms),
            intake: None,
        };
        let key = EntityKey::new(cairn_domain::job::KIND, &j.name);
        let st = status(Kind::TrainingJob, &name, namespace, st);
        out.push(object(
            state,
            Kind::TrainingJob,
            key,
            namespace,
            document_spec(&j.spec_json),
            Some(st),
            user,
        ));
    }
    for c in views::crons(state, "") {
        let name = object_name(&c.name);
        let st = crd::TrainingCronStatus {
            schedule: c.schedule.clone(),
            suspended: c.suspend,
            active: c
                .runs
                .iter()
                .filter(|r| !ended.contains(r.job.as_str()))
                .count() as u32,
            last_run: rfc3339(c.last_scheduled_ms),
            intake: None,
        };
        let key = EntityKey::new(cairn_domain::cron::KIND, &c.name);
        let st = status(Kind::TrainingCron, &name, namespace, st);
        out.push(object(
            state,
            Kind::TrainingCron,
            key,
            namespace,
            document_spec(&c.spec_json),
            Some(st),
            intake::from_intake(&c.spec_json),
        ));
    }
    for n in views::nodes(state, "") {
        out.extend(node_objects(state, &n, namespace));
    }
    for m in views::models(state, "", false) {
        out.extend(model_objects(state, &m, namespace));
    }
    for d in views::deployments(state, "", false) {
        let name = object_name(&d.name);
        let ready = d
            .revisions
            .iter()
            .filter(|r| d.weights.get(&r.revision).is_some_and(|w| *w > 0))
            .flat_map(|r| &r.replicas)
            .filter(|x| x.phase == "Ready")
            .count();
        let traffic: Vec<String> = d
            .weights
            .iter()
            .filter(|(_, w)| **w > 0)
            .map(|(r, w)| format!("r{r} {w}%"))
            .collect();
        let spec = document_spec(&d.spec_json);
        let model = &spec["model"];
        let model = match (model["version"].as_u64(), model["alias"].as_str()) {
            (Some(v), _) => format!("{}:{v}", model["name"].as_str().unwrap_or("")),
            (None, Some(a)) => format!("{}@{a}", model["name"].as_str().unwrap_or("")),
            (None, None) => String::new(),
        };
        let st = crd::ModelDeploymentStatus {
            model,
            ready: format!("{ready}/{}", d.replicas),
            traffic: traffic.join(", "),
            weights: d.weights.iter().map(|(r, w)| (r.to_string(), *w)).collect(),
            urls: d
                .routed_on
                .iter()
                .map(|(node, port)| {
                    let host = state
                        .node(node)
                        .map(|n| n.inventory.address.clone())
                        .filter(|a| !a.is_empty())
                        .unwrap_or_else(|| node.clone());
                    format!("http://{host}:{port}")
                })
                .collect(),
            status: if d.waiting.is_empty() {
                "serving".into()
            } else {
                d.waiting.clone()
            },
            intake: None,
        };
        out.extend(serving_objects(state, &d, namespace, gateway));
        let key = EntityKey::new(cairn_domain::deployment::KIND, &d.name);
        let st = status(Kind::ModelDeployment, &name, namespace, st);
        out.push(object(
            state,
            Kind::ModelDeployment,
            key,
            namespace,
            spec,
            Some(st),
            intake::from_intake(&d.spec_json),
        ));
    }
    for o in &mut out {
        o.fold_status();
    }
    out
}

/// The kinds a new leader lists to find objects that must go, having applied every
/// object changed after `checkpoint`: the kind of each entity deleted after it, and the
/// owned kind (versions, leases) of each entity changed after it. An entity changed
/// at or before the checkpoint is in Kubernetes as the log has it.
pub fn kinds_to_list_since(state: &State, checkpoint: u64) -> std::collections::BTreeSet<Kind> {
    use cairn_domain::{cron, deployment, job, model, node};
    let mut kinds = std::collections::BTreeSet::new();
    for entity_kind in [
        job::KIND,
        cron::KIND,
        node::KIND,
        model::KIND,
        deployment::KIND,
    ] {
        let (own, owned) = Kind::of_entity(entity_kind);
        for (_, e) in state.entities_of_kind(entity_kind) {
            if e.sequence <= checkpoint {
                continue;
            }
            if e.deleted {
                kinds.extend(own);
            }
            kinds.extend(owned.iter().copied());
        }
    }
    kinds
}

/// The port a revision's Service exposes; its EndpointSlices map it, by name, to each
/// replica's own port.
pub const SERVICE_PORT: u16 = 80;

/// The Service of a deployment's revision: a DNS label (at most 63 characters, a
/// letter first), so a long or unusual deployment name gets a shortened form with a
/// hash of it.
pub fn service_name(deployment: &str, revision: u32) -> String {
    let suffix = format!("-r{revision}");
    let plain = format!("{deployment}{suffix}");
    let valid = plain.len() <= 63
        && plain.starts_with(|c: char| c.is_ascii_lowercase())
        && plain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        return plain;
    }
    let mut short = object_name(deployment).replace('.', "-");
    short.truncate(40);
    let hash = deployment.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("d-{}-{:08x}{suffix}", short.trim_matches('-'), hash as u32)
}

/// The kind of address Kubernetes is to take `address` for.
fn address_type(address: &str) -> &'static str {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => "IPv4",
        Ok(std::net::IpAddr::V6(_)) => "IPv6",
        Err(_) => "FQDN",
    }
}

/// A deployment in Kubernetes' serving terms: per revision a Service without a
/// selector, with an EndpointSlice of its ready replicas per address type and port (a
/// slice's endpoints share both), and an HTTPRoute that splits requests between the
/// revisions' Services by their weights, attached to the Gateway `gateway`.
fn serving_objects(
    state: &State,
    d: &pb::DeploymentView,
    namespace: &str,
    gateway: &str,
) -> Vec<Object> {
    let key = EntityKey::new(cairn_domain::deployment::KIND, &d.name);
    let stamps_of = stamps;
    let stamps = stamps_of(state, &key);
    let owner = object_name(&d.name);
    let object = |kind: Kind, name: String, spec: Value| Object {
        kind,
        seq: stamps.0,
        body: {
            let mut b = body(kind, &name, &name, namespace, stamps, spec, false);
            b["metadata"]["labels"][OWNER] = json!(owner);
            b
        },
        status: None,
        user: false,
        name,
    };
    let mut out = Vec::new();
    for r in &d.revisions {
        let service = service_name(&d.name, r.revision);
        out.push(object(
            Kind::Service,
            service.clone(),
            json!({"ports": [{"name": "http", "port": SERVICE_PORT, "protocol": "TCP"}]}),
        ));
        // (address type, port) → the addresses, and the latest sequence among the
        // deployment and the nodes they come from: a node's new address is news too.
        let mut slices: BTreeMap<(&str, u32), (Vec<String>, u64)> = BTreeMap::new();
        for x in r.replicas.iter().filter(|x| x.phase == "Ready") {
            let address = state
                .node(&x.node)
                .map(|n| n.inventory.address.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| x.node.clone());
            let node_seq = stamps_of(state, &EntityKey::new(cairn_domain::node::KIND, &x.node)).0;
            let slice = slices
                .entry((address_type(&address), x.port))
                .or_insert_with(|| (Vec::new(), stamps.0));
            slice.0.push(address);
            slice.1 = slice.1.max(node_seq);
        }
        for ((address_type, port), (mut addresses, seq)) in slices {
            addresses.sort();
            addresses.dedup();
            let name = format!("{service}-{}-{port}", address_type.to_ascii_lowercase());
            let mut o = object(Kind::EndpointSlice, name, Value::Null);
            o.seq = seq;
            o.body["metadata"]["annotations"][SEQ] = json!(seq.to_string());
            // An EndpointSlice has no spec: its fields are at the top.
            if let Some(b) = o.body.as_object_mut() {
                b.remove("spec");
                b.insert("addressType".into(), json!(address_type));
                b.insert(
                    "endpoints".into(),
                    addresses
                        .iter()
                        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}}))
                        .collect(),
                );
                b.insert(
                    "ports".into(),
                    json!([{"name": "http", "port": port, "protocol": "TCP"}]),
                );
            }
            o.body["metadata"]["labels"]["kubernetes.io/service-name"] = json!(service);
            o.body["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] =
                json!("cairn.dev");
            out.push(o);
        }
    }
    let backends: Vec<Value> = d
        .weights
        .iter()
        .map(|(revision, weight)| {
            json!({
                "name": service_name(&d.name, *revision),
                "port": SERVICE_PORT,
                "weight": weight,
            })
        })
        .collect();
    out.push(object(
        Kind::HttpRoute,
        owner.clone(),
        json!({
            "parentRefs": [{"name": gateway}],
            "rules": [{"backendRefs": backends}],
        }),
    ));
    out
}

fn node_objects(state: &State, n: &pb::NodeView, namespace: &str) -> Vec<Object> {
    let key = EntityKey::new(cairn_domain::node::KIND, &n.name);
    let inv = n.inventory.clone().unwrap_or_default();
    let name = object_name(&n.name);
    let unhealthy: BTreeMap<String, String> = n
        .health
        .iter()
        .filter(|h| !h.healthy)
        .map(|h| (h.uuid.clone(), h.reason.clone()))
        .collect();
    let topology = {
        let nvlink = inv.links.iter().filter(|l| l.nvlinks > 0).count();
        format!(
            "{nvlink} NVLink pairs, {} PCIe-only pairs",
            inv.links.len() - nvlink
        )
    };
    let spec = crd::GpuNodeSpec {
        hostname: inv.hostname.clone(),
        address: inv.address.clone(),
        gpus: inv.gpus.len() as u32,
        inventory: inv
            .gpus
            .iter()
            .map(|g| crd::Gpu {
                index: g.index,
                uuid: g.uuid.clone(),
                model: g.name.clone(),
                memory_mib: g.memory_total_mib,
            })
            .collect(),
        topology,
        labels: inv.labels.clone().into_iter().collect(),
    };
    let st = crd::GpuNodeStatus {
        state: if n.state == "lost" { "Lost" } else { "Ready" }.into(),
        cordoned: n.cordoned,
        draining: n.draining,
        healthy_gpus: inv.gpus.len().saturating_sub(unhealthy.len()) as u32,
        unhealthy,
        leases: n.leases.len() as u32,
    };
    let spec = serde_json::to_value(spec).unwrap_or_default();
    let st = status(Kind::GpuNode, &name, namespace, st);
    let mut out = vec![object(
        state,
        Kind::GpuNode,
        key.clone(),
        namespace,
        spec,
        Some(st),
        false,
    )];
    // Leases change with their node: they carry the node's stamps.
    for l in &n.leases {
        let spec = crd::PortLeaseSpec {
            node: n.name.clone(),
            port: l.port,
            holder: l.holder.clone(),
            expires: if l.expires_ms >= i64::MAX / 2 {
                String::new()
            } else {
                rfc3339(l.expires_ms)
            },
        };
        let lease_name = object_name(&format!("{}.{}", n.name, l.port));
        let stamps = stamps(state, &key);
        out.push(Object {
            kind: Kind::PortLease,
            seq: stamps.0,
            body: body(
                Kind::PortLease,
                &lease_name,
                &lease_name,
                namespace,
                stamps,
                serde_json::to_value(spec).unwrap_or_default(),
                false,
            ),
            status: None,
            user: false,
            name: lease_name,
        });
    }
    out
}

fn model_objects(state: &State, m: &pb::ModelView, namespace: &str) -> Vec<Object> {
    let key = EntityKey::new(cairn_domain::model::KIND, &m.name);
    let stamps = stamps(state, &key);
    let name = object_name(&m.name);
    let live: Vec<&pb::ModelVersionView> = m.versions.iter().collect();
    let spec = crd::ModelSpec {
        name: m.name.clone(),
        description: m.description.clone(),
        tags: m.tags.clone().into_iter().collect(),
    };
    let st = crd::ModelStatus {
        latest_version: live.iter().map(|v| v.version).max().unwrap_or(0),
        versions: live.len() as u32,
        aliases: m
            .aliases
            .iter()
            .map(|(a, v)| format!("{a}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    };
    let mut out = vec![Object {
        kind: Kind::Model,
        seq: stamps.0,
        body: body(
            Kind::Model,
            &name,
            &m.name,
            namespace,
            stamps,
            serde_json::to_value(spec).unwrap_or_default(),
            false,
        ),
        status: Some(status(Kind::Model, &name, namespace, st)),
        user: false,
        name: name.clone(),
    }];
    // Versions change with their model: they carry the model's stamps.
    for v in live {
        let vname = format!("{name}-v{}", v.version);
        let spec = crd::ModelVersionSpec {
            model: m.name.clone(),
            version: v.version,
            source: v.source.clone(),
            job: v.run_id.clone(),
        };
        let st = crd::ModelVersionStatus {
            stage: stage(v.stage).into(),
            status: match pb::ModelVersionStatus::try_from(v.status) {
                Ok(pb::ModelVersionStatus::Ready) => "ready",
                Ok(pb::ModelVersionStatus::Failed) => "failed",
                _ => "pending",
            }
            .into(),
            aliases: v.aliases.join(","),
        };
        out.push(Object {
            kind: Kind::ModelVersion,
            seq: stamps.0,
            body: body(
                Kind::ModelVersion,
                &vname,
                &format!("{}:{}", m.name, v.version),
                namespace,
                stamps,
                serde_json::to_value(spec).unwrap_or_default(),
                false,
            ),
            status: Some(status(Kind::ModelVersion, &vname, namespace, st)),
            user: false,
            name: vname,
        });
    }
    out
}

fn stage(s: i32) -> &'static str {
    match pb::ModelStage::try_from(s) {
        Ok(pb::ModelStage::Staging) => "Staging",
        Ok(pb::ModelStage::Production) => "Production",
        Ok(pb::ModelStage::Archived) => "Archived",
        _ => "None",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_dns_subdomains_and_never_collide() {
        assert_eq!(object_name("resnet-50"), "resnet-50");
        let a = object_name("My Model");
        let b = object_name("my_model");
        assert!(a.starts_with("my-model-"), "{a}");
        assert_ne!(a, b);
        assert_eq!(object_name("My Model"), a, "stable");
        assert!(object_name("___").starts_with("x-"));
    }

    #[test]
    fn service_names_are_dns_labels_and_never_collide() {
        assert_eq!(service_name("linear", 3), "linear-r3");
        let label = |n: &str| {
            n.len() <= 63
                && n.starts_with(|c: char| c.is_ascii_lowercase())
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        let long = "a".repeat(80);
        let names = [
            service_name("fraud.v2", 1),
            service_name("Fraud", 1),
            service_name("fraud", 1),
            service_name("7-up", 1),
            service_name(&long, 1),
            service_name(&long, 2),
        ];
        for n in &names {
            assert!(label(n), "{n}");
        }
        let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        assert_eq!(address_type("10.0.0.7"), "IPv4");
        assert_eq!(address_type("fd00::7"), "IPv6");
        assert_eq!(address_type("gpu-7.example"), "FQDN");
    }
}
