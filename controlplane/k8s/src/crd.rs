//! The custom resources Cairn projects into Kubernetes, group `cairn.dev`, version `v1`.
//!
//! A user-written kind (`TrainingJob`, `TrainingCron`, `ModelDeployment`) carries Cairn's
//! own document `spec` as it was accepted: Cairn's domain is the one validator, so the
//! schema keeps the spec's fields (`x-kubernetes-preserve-unknown-fields`) instead of
//! restating every rule. The status of every kind is typed, with the figures the printer
//! columns show. `kubectl get cairn` lists them all.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// A document's `spec` as Cairn accepted it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(transparent)]
pub struct Document(pub serde_json::Map<String, serde_json::Value>);

/// An object whose fields Kubernetes keeps as they are.
fn preserve_unknown() -> Schema {
    json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

macro_rules! document_spec {
    ($($t:ident),*) => {$(
        impl JsonSchema for $t {
            fn schema_name() -> Cow<'static, str> {
                stringify!($t).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                preserve_unknown()
            }
        }
    )*};
}

/// A `TrainingJob`: its spec is Cairn's `TrainingJob` spec.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "cairn.dev",
    version = "v1",
    kind = "TrainingJob",
    plural = "trainingjobs",
    namespaced,
    status = "TrainingJobStatus",
    shortname = "tj",
    category = "cairn",
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus"}"#,
    printcolumn = r#"{"name": "Nodes", "type": "string", "jsonPath": ".status.nodes"}"#,
    printcolumn = r#"{"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(transparent)]
pub struct TrainingJobSpec(pub Document);

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// GPUs placed.
    #[serde(default)]
    pub gpus: u32,
    /// The nodes it runs on, comma-separated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nodes: String,
    #[serde(default)]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub submitted: String,
    /// Cairn's verdict on a job applied with kubectl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake: Option<Intake>,
}

/// What became of an object a user applied with kubectl.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Intake {
    pub accepted: bool,
    /// Where the submission is in Cairn's log.
    #[serde(default)]
    pub sequence: u64,
    /// The `metadata.generation` judged.
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A `TrainingCron`: its spec is Cairn's `TrainingCron` spec.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "cairn.dev",
    version = "v1",
    kind = "TrainingCron",
    plural = "trainingcrons",
    namespaced,
    status = "TrainingCronStatus",
    shortname = "tc",
    category = "cairn",
    printcolumn = r#"{"name": "Schedule", "type": "string", "jsonPath": ".status.schedule"}"#,
    printcolumn = r#"{"name": "Suspended", "type": "boolean", "jsonPath": ".status.suspended"}"#,
    printcolumn = r#"{"name": "Active", "type": "integer", "jsonPath": ".status.active"}"#,
    printcolumn = r#"{"name": "Last run", "type": "string", "jsonPath": ".status.lastRun"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(transparent)]
pub struct TrainingCronSpec(pub Document);

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingCronStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub schedule: String,
    #[serde(default)]
    pub suspended: bool,
    /// Runs not yet finished.
    #[serde(default)]
    pub active: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_run: String,
    /// Cairn's verdict on a cron applied with kubectl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake: Option<Intake>,
}

/// A GPU node as its agent reports it (cluster-scoped; written by Cairn only).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cairn.dev",
    version = "v1",
    kind = "GpuNode",
    plural = "gpunodes",
    status = "GpuNodeStatus",
    shortname = "gn",
    category = "cairn",
    printcolumn = r#"{"name": "State", "type": "string", "jsonPath": ".status.state"}"#,
    printcolumn = r#"{"name": "GPUs", "type": "integer", "jsonPath": ".spec.gpus"}"#,
    printcolumn = r#"{"name": "Healthy", "type": "integer", "jsonPath": ".status.healthyGpus"}"#,
    printcolumn = r#"{"name": "Cordoned", "type": "boolean", "jsonPath": ".status.cordoned"}"#,
    printcolumn = r#"{"name": "Leases", "type": "integer", "jsonPath": ".status.leases"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GpuNodeSpec {
    pub hostname: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    pub gpus: u32,
    /// Each GPU: index, UUID, model and memory.
    #[serde(default)]
    pub inventory: Vec<Gpu>,
    /// The links between GPUs: NVLink, NVSwitch or PCIe counts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub topology: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gpu {
    pub index: u32,
    pub uuid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    #[serde(default)]
    pub memory_mib: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuNodeStatus {
    /// `Ready` or `Lost`.
    pub state: String,
    #[serde(default)]
    pub cordoned: bool,
    #[serde(default)]
    pub draining: bool,
    #[serde(default)]
    pub healthy_gpus: u32,
    /// UUID → why it is unhealthy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unhealthy: BTreeMap<String, String>,
    /// Port leases held.
    #[serde(default)]
    pub leases: u32,
}

/// A host-network port leased on a node.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cairn.dev",
    version = "v1",
    kind = "PortLease",
    plural = "portleases",
    namespaced,
    shortname = "pl",
    category = "cairn",
    printcolumn = r#"{"name": "Node", "type": "string", "jsonPath": ".spec.node"}"#,
    printcolumn = r#"{"name": "Port", "type": "integer", "jsonPath": ".spec.port"}"#,
    printcolumn = r#"{"name": "Holder", "type": "string", "jsonPath": ".spec.holder"}"#,
    printcolumn = r#"{"name": "Expires", "type": "string", "jsonPath": ".spec.expires"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PortLeaseSpec {
    pub node: String,
    pub port: u32,
    pub holder: String,
    /// RFC 3339; empty: held until released.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub expires: String,
}

/// A registered model.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cairn.dev",
    version = "v1",
    kind = "Model",
    plural = "models",
    namespaced,
    status = "ModelStatus",
    shortname = "cm",
    category = "cairn",
    printcolumn = r#"{"name": "Latest", "type": "integer", "jsonPath": ".status.latestVersion"}"#,
    printcolumn = r#"{"name": "Versions", "type": "integer", "jsonPath": ".status.versions"}"#,
    printcolumn = r#"{"name": "Aliases", "type": "string", "jsonPath": ".status.aliases"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// The model's name in Cairn (object names are limited to DNS labels).
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    #[serde(default)]
    pub latest_version: u64,
    /// Versions not deleted.
    #[serde(default)]
    pub versions: u32,
    /// `alias=version`, comma-separated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub aliases: String,
}

/// One version of a registered model.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "cairn.dev",
    version = "v1",
    kind = "ModelVersion",
    plural = "modelversions",
    namespaced,
    status = "ModelVersionStatus",
    shortname = "mv",
    category = "cairn",
    printcolumn = r#"{"name": "Model", "type": "string", "jsonPath": ".spec.model"}"#,
    printcolumn = r#"{"name": "Version", "type": "integer", "jsonPath": ".spec.version"}"#,
    printcolumn = r#"{"name": "Stage", "type": "string", "jsonPath": ".status.stage"}"#,
    printcolumn = r#"{"name": "Aliases", "type": "string", "jsonPath": ".status.aliases"}"#,
    printcolumn = r#"{"name": "Job", "type": "string", "jsonPath": ".spec.job"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ModelVersionSpec {
    pub model: String,
    pub version: u64,
    pub source: String,
    /// The job that produced it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelVersionStatus {
    pub stage: String,
    /// pending, ready or failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub aliases: String,
}

/// A model deployment: its spec is Cairn's `ModelDeployment` spec.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "cairn.dev",
    version = "v1",
    kind = "ModelDeployment",
    plural = "modeldeployments",
    namespaced,
    status = "ModelDeploymentStatus",
    shortname = "md",
    category = "cairn",
    printcolumn = r#"{"name": "Model", "type": "string", "jsonPath": ".status.model"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.ready"}"#,
    printcolumn = r#"{"name": "Traffic", "type": "string", "jsonPath": ".status.traffic"}"#,
    printcolumn = r#"{"name": "Status", "type": "string", "jsonPath": ".status.status"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(transparent)]
pub struct ModelDeploymentSpec(pub Document);

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelDeploymentStatus {
    /// `name:version` or `name@alias → version`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Ready replicas with traffic / replicas wanted, as `2/3`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ready: String,
    /// Revision → percent, as `r1 90%, r2 10%`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traffic: String,
    /// Revision number → percent of the requests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Cairn's verdict on a deployment applied with kubectl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake: Option<Intake>,
}

document_spec!(TrainingJobSpec, TrainingCronSpec, ModelDeploymentSpec);

/// Every kind's CRD, in a fixed order.
pub fn all(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    let mut crds = vec![
        TrainingJob::crd(),
        TrainingCron::crd(),
        GpuNode::crd(),
        PortLease::crd(),
        Model::crd(),
        ModelVersion::crd(),
        ModelDeployment::crd(),
    ];
    for crd in &mut crds {
        if STATUS_IN_OBJECT.contains(&crd.spec.names.kind.as_str()) {
            for v in &mut crd.spec.versions {
                v.subresources = None;
            }
        }
    }
    crds
}

/// Kinds only Cairn writes: their status is part of the object, not a subresource, so
/// each change is one write to the api-server instead of two (users' kinds keep the
/// subresource: their spec is theirs, the status Cairn's).
pub const STATUS_IN_OBJECT: &[&str] = &["GpuNode", "PortLease", "Model", "ModelVersion"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_is_structural_with_columns_short_names_and_the_cairn_category() {
        for crd in all() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let s = &crd.spec;
            assert_eq!(s.group, "cairn.dev", "{name}");
            assert!(name.ends_with(".cairn.dev"), "{name}");
            assert_eq!(
                s.names.categories.as_deref(),
                Some(&["cairn".to_string()][..]),
                "{name}"
            );
            assert!(
                s.names.short_names.as_ref().is_some_and(|n| !n.is_empty()),
                "{name}"
            );
            let v = &s.versions[0];
            assert!(
                v.additional_printer_columns
                    .as_ref()
                    .is_some_and(|c| c.len() >= 3),
                "{name}"
            );
            // Users' kinds have a status subresource; the kinds only Cairn writes take
            // their status with the object, in one write.
            let subresource = v.subresources.as_ref().is_some_and(|r| r.status.is_some());
            let users = !STATUS_IN_OBJECT.contains(&s.names.kind.as_str());
            assert_eq!(subresource, users, "{name}");
            let schema = serde_json::to_value(&v.schema).expect("schema as JSON");
            let text = schema.to_string();
            assert!(
                !text.contains("\"additionalProperties\":false"),
                "{name}: {text}"
            );
            let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
            assert_eq!(spec["type"], "object", "{name}: {spec}");
        }
        let scopes: Vec<(String, String)> = all()
            .into_iter()
            .map(|c| (c.spec.names.kind, c.spec.scope))
            .collect();
        assert!(scopes.contains(&("GpuNode".into(), "Cluster".into())));
        assert!(scopes.contains(&("TrainingJob".into(), "Namespaced".into())));
    }

    #[test]
    fn a_document_spec_keeps_its_fields() {
        let crd = {
            use kube::CustomResourceExt;
            TrainingJob::crd()
        };
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("JSON");
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["x-kubernetes-preserve-unknown-fields"], true, "{spec}");
        let job = TrainingJob::new(
            "j",
            TrainingJobSpec(Document(
                serde_json::json!({"framework": "pytorch"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            )),
        );
        let v = serde_json::to_value(&job).expect("JSON");
        assert_eq!(v["spec"]["framework"], "pytorch");
        assert_eq!(v["apiVersion"], "cairn.dev/v1");
    }
}
