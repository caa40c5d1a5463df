//! Intake: a `TrainingJob`, `TrainingCron` or `ModelDeployment` that a user applies with
//! kubectl (an object Cairn did not write: no `app.kubernetes.io/managed-by=cairn`
//! label, no `cairn.dev/seq` stamp) becomes a command. The verdict — accepted with its
//! place in the log, or refused with the field paths — goes to `.status.intake` under the
//! field manager `cairn-intake`; the user's `spec` is never written. A later edit of the
//! spec (a new `metadata.generation`) is submitted again (the domain says what it allows).
//! Deleting an object the intake took cancels the job (deletes the cron or deployment),
//! unless the CRD itself is gone or was replaced: an api-server that lost its data is
//! restored, never taken for a user's intent.

use std::collections::BTreeMap;

use anyhow::Context;
use cairn_controlplane::app::{App, AppError};
use cairn_domain::cron::CronCommand;
use cairn_domain::deployment::DeploymentCommand;
use cairn_domain::job::JobCommand;
use cairn_domain::{Command, CommandBody};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

use crate::project::{Kind, MANAGED_BY, SEQ};

/// The field manager of the intake's verdicts.
pub const FIELD_MANAGER: &str = "cairn-intake";
/// The label Cairn puts on a document it took from Kubernetes.
pub const INTAKE_LABEL: (&str, &str) = ("cairn.dev/intake", "kubernetes");
/// Why a job whose object a user deleted was cancelled (its object is not restored).
pub const DELETED_REASON: &str = "deleted in Kubernetes";
/// The actor of the commands the intake submits.
const ACTOR: &str = "kubernetes/intake";

/// The kinds users may apply.
pub const KINDS: [Kind; 3] = [Kind::TrainingJob, Kind::TrainingCron, Kind::ModelDeployment];

/// An object the intake took: its UID, and its CRD's UID when it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Taken {
    crd_uid: String,
}

/// What the intake remembers while this member leads.
#[derive(Default)]
pub struct Intake {
    taken: BTreeMap<(Kind, String), Taken>,
}

fn crd_name(kind: Kind) -> String {
    format!("{}.cairn.dev", kind.plural())
}

/// The document Cairn reads from a user's object.
fn document(kind: Kind, o: &DynamicObject) -> String {
    let mut labels = o.metadata.labels.clone().unwrap_or_default();
    labels.insert(INTAKE_LABEL.0.into(), INTAKE_LABEL.1.into());
    json!({
        "apiVersion": "cairn.dev/v1",
        "kind": kind.name(),
        "metadata": {"name": o.metadata.name, "labels": labels},
        "spec": o.data.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
    .to_string()
}

/// The command a user's object asks for, or the problems with it.
fn command(kind: Kind, o: &DynamicObject) -> Result<CommandBody, Vec<String>> {
    let json = document(kind, o);
    Ok(match kind {
        Kind::TrainingJob => CommandBody::Job(JobCommand::Submit {
            doc: Box::new(cairn_domain::job::parse(&json)?),
        }),
        Kind::TrainingCron => CommandBody::Cron(CronCommand::Submit {
            doc: Box::new(cairn_domain::cron::parse(&json)?),
        }),
        Kind::ModelDeployment => CommandBody::Deployment(DeploymentCommand::Apply {
            doc: Box::new(cairn_domain::deployment::parse(&json)?),
        }),
        Kind::GpuNode
        | Kind::PortLease
        | Kind::Model
        | Kind::ModelVersion
        | Kind::Service
        | Kind::EndpointSlice
        | Kind::HttpRoute => return Err(vec![format!("{} is written by Cairn only", kind.name())]),
    })
}

/// The command that undoes what the intake of `name` did, if anything is left to undo.
fn undo(app: &App, kind: Kind, name: &str) -> Option<CommandBody> {
    app.with_state(|s| match kind {
        Kind::TrainingJob => s.job(name).filter(|j| !j.phase.finished()).map(|_| {
            CommandBody::Job(JobCommand::Cancel {
                name: name.into(),
                reason: DELETED_REASON.into(),
            })
        }),
        Kind::TrainingCron => s
            .crons()
            .any(|(n, _)| n == name)
            .then(|| CommandBody::Cron(CronCommand::Delete { name: name.into() })),
        Kind::ModelDeployment => s
            .deployment(name)
            .filter(|d| !d.deleted)
            .map(|_| CommandBody::Deployment(DeploymentCommand::Delete { name: name.into() })),
        Kind::GpuNode
        | Kind::PortLease
        | Kind::Model
        | Kind::ModelVersion
        | Kind::Service
        | Kind::EndpointSlice
        | Kind::HttpRoute => None,
    })
}

/// Proposes `body` as the intake; Ok(sequence of its last event) or the refusal.
async fn submit(app: &App, body: CommandBody) -> Result<u64, String> {
    let cmd = Command {
        timestamp_ms: 0,
        actor: ACTOR.into(),
        role: None,
        bearer: Vec::new(),
        correlation_id: String::new(),
        expected_revision: None,
        body,
    };
    let cmd = app.accept(cmd).map_err(|e| e.to_string())?;
    match app.propose(&cmd).await {
        Ok(applied) => Ok(applied.events.last().map_or(0, |e| e.sequence)),
        Err(AppError::Rejected(r)) => Err(r.to_string()),
        Err(e) => Err(format!("not recorded, will try again: {e}")),
    }
}

impl Intake {
    /// Takes in every new or edited object users applied, and undoes what users deleted.
    pub async fn scan(
        &mut self,
        app: &App,
        api: impl Fn(Kind) -> Api<DynamicObject>,
        crds: &Api<CustomResourceDefinition>,
    ) -> anyhow::Result<()> {
        for kind in KINDS {
            let Some(crd) = crds.get_opt(&crd_name(kind)).await? else {
                // No CRD (yet, or any more): nothing users applied is visible.
                self.taken.retain(|(k, _), _| *k != kind);
                continue;
            };
            let crd_uid = crd.metadata.uid.clone().unwrap_or_default();
            let api = api(kind);
            let objects = api
                .list(&ListParams::default())
                .await
                .with_context(|| format!("listing {}", kind.plural()))?;
            let mut present = std::collections::BTreeSet::new();
            for o in objects.items {
                let Some(name) = o.metadata.name.clone() else {
                    continue;
                };
                let ours =
                    o.metadata.labels.as_ref().is_some_and(|l| {
                        l.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
                    });
                if ours {
                    continue;
                }
                present.insert(name.clone());
                let generation = o.metadata.generation.unwrap_or(0);
                let verdict = o.data.get("status").and_then(|s| s.get("intake"));
                let seen = verdict
                    .and_then(|v| v.get("observedGeneration"))
                    .and_then(Value::as_i64);
                let stamped = o
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(SEQ));
                let due = match seen {
                    Some(g) => g != generation,
                    // Never judged: new, unless Cairn restored it from the log.
                    None => verdict.is_none() && !stamped,
                };
                if due {
                    let outcome = match command(kind, &o) {
                        Ok(body) => submit(app, body).await,
                        Err(problems) => Err(format!("invalid argument: {}", problems.join("; "))),
                    };
                    if outcome
                        .as_ref()
                        .is_err_and(|e| e.starts_with("not recorded"))
                    {
                        continue;
                    }
                    let intake = match &outcome {
                        Ok(seq) => {
                            json!({"accepted": true, "sequence": seq, "observedGeneration": generation,
                                          "message": "accepted into Cairn's log"})
                        }
                        Err(why) => {
                            json!({"accepted": false, "sequence": 0, "observedGeneration": generation,
                                           "message": why})
                        }
                    };
                    tracing::info!(kind = kind.name(), %name, accepted = outcome.is_ok(), "took an object applied in Kubernetes");
                    let status = json!({
                        "apiVersion": "cairn.dev/v1", "kind": kind.name(),
                        "metadata": {"name": name},
                        "status": {"intake": intake},
                    });
                    api.patch_status(
                        &name,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(&status),
                    )
                    .await
                    .with_context(|| format!("writing the verdict on {} {name}", kind.name()))?;
                }
                self.taken.insert(
                    (kind, name),
                    Taken {
                        crd_uid: crd_uid.clone(),
                    },
                );
            }
            // Taken, now gone, under the same CRD: a user deleted it.
            let gone: Vec<(String, Taken)> = self
                .taken
                .iter()
                .filter(|((k, n), _)| *k == kind && !present.contains(n))
                .map(|((_, n), t)| (n.clone(), t.clone()))
                .collect();
            for (name, taken) in gone {
                self.taken.remove(&(kind, name.clone()));
                if taken.crd_uid != crd_uid {
                    continue;
                }
                if let Some(body) = undo(app, kind, &name) {
                    tracing::info!(kind = kind.name(), %name, "deleted in Kubernetes: undone in Cairn");
                    if let Err(e) = submit(app, body).await {
                        tracing::warn!(kind = kind.name(), %name, error = %e, "could not undo a deleted object");
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a Cairn document came from the intake (its user owns the object's spec).
pub fn from_intake(spec_json: &str) -> bool {
    serde_json::from_str::<Value>(spec_json)
        .is_ok_and(|d| d["metadata"]["labels"][INTAKE_LABEL.0].as_str() == Some(INTAKE_LABEL.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(spec: Value) -> DynamicObject {
        let mut o = DynamicObject::new(
            "train",
            &kube::api::ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk("cairn.dev", "v1", "TrainingJob"),
                "trainingjobs",
            ),
        );
        o.metadata.labels = Some(BTreeMap::from([("team".to_string(), "vision".to_string())]));
        o.data = json!({ "spec": spec });
        o
    }

    #[test]
    fn a_users_object_becomes_a_submission_or_its_problems() {
        let good = object(
            json!({"framework": "generic", "roles": {"run": {"replicas": 1, "command": ["true"]}}}),
        );
        let Ok(CommandBody::Job(JobCommand::Submit { doc })) = command(Kind::TrainingJob, &good)
        else {
            panic!("not a submission");
        };
        assert_eq!(doc.metadata.name, "train");
        assert_eq!(doc.metadata.labels["team"], "vision");
        assert!(from_intake(&doc.to_json()));
        let bad = object(
            json!({"framework": "generic", "roles": {"run": {"replicas": -1, "command": []}}}),
        );
        let problems = command(Kind::TrainingJob, &bad).expect_err("refused");
        assert!(
            problems.iter().any(|p| p.contains("spec.roles.run")),
            "{problems:?}"
        );
        assert!(command(Kind::GpuNode, &good).is_err());
    }
}
