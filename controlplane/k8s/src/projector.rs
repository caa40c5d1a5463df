//! The projector: while this member leads, Kubernetes holds what [`project::objects`]
//! says. It installs the CRDs (and waits until they are Established) and the namespace,
//! then applies each object whose `cairn.dev/seq` differs from what it applied last
//! (server-side apply, field manager `cairn`, spec then status), and deletes the objects
//! of entities that are gone. A full reconcile — list every managed object of every
//! kind, re-install what is missing, re-apply what is stale, delete what Cairn does not
//! have — runs when it starts leading, then every `resync`, and at once when a watch
//! sees a managed object or a CRD deleted, so objects deleted by hand, CRDs removed, or
//! an api-server restarted on an empty etcd are restored from the log. Kubernetes' resourceVersions are never read as a clock: the stamps are
//! Cairn's own sequences.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_controlplane::app::App;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;

use crate::intake::Intake;
use crate::project::{self, Kind, Object, MANAGED_BY, SEQ};

/// The field manager of everything Cairn writes.
pub const FIELD_MANAGER: &str = "cairn";
/// Objects applied at once.
const PARALLEL: usize = 8;
/// How often the projector looks for new events.
const STEP: Duration = Duration::from_millis(200);
/// How long to wait after an error before trying again.
const BACKOFF: Duration = Duration::from_secs(1);
/// How long CRDs may take to become Established.
const ESTABLISHED_WITHIN: Duration = Duration::from_secs(60);
/// How often objects users applied are looked for.
const INTAKE_EVERY: Duration = Duration::from_secs(1);

/// Where and how to project.
#[derive(Debug, Clone)]
pub struct Config {
    /// A kubeconfig file; none: the in-cluster configuration (or `$KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    /// The Kubernetes namespace of the namespaced kinds (created if missing).
    pub namespace: String,
    /// How often to compare everything Kubernetes holds with the log.
    pub resync: Duration,
}

async fn client(cfg: &Config) -> anyhow::Result<Client> {
    let config = match &cfg.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// The objects of `kind` (in `namespace` when it is namespaced).
fn api(client: &Client, namespace: &str, kind: Kind) -> Api<DynamicObject> {
    let ar = resource(kind);
    if kind.namespaced() {
        Api::namespaced_with(client.clone(), namespace, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

fn resource(kind: Kind) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cairn.dev", "v1", kind.name()),
        kind.plural(),
    )
}

/// Runs for as long as the server runs; projects while this member leads.
pub async fn run(app: App, cfg: Config) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    loop {
        while !app.leading().0 {
            app.set_projection(format!(
                "standby: projects into namespace {} while this member leads",
                cfg.namespace
            ));
            tokio::time::sleep(STEP).await;
        }
        match client(&cfg).await {
            Ok(c) => {
                let mut p = Projector::new(c, cfg.clone());
                if let Err(e) = p.lead(&app).await {
                    tracing::warn!(error = %format!("{e:#}"), "projecting into Kubernetes failed; will try again");
                    app.set_projection(format!("failing, will try again: {e:#}"));
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "no Kubernetes client; will try again");
                app.set_projection(format!("no Kubernetes client, will try again: {e:#}"));
            }
        }
        tokio::time::sleep(BACKOFF).await;
    }
}

struct Projector {
    client: Client,
    cfg: Config,
    /// What was applied: (kind, name) → the sequence it reflects.
    applied: BTreeMap<(Kind, String), u64>,
    intake: Intake,
}

impl Projector {
    fn new(client: Client, cfg: Config) -> Self {
        Self {
            client,
            cfg,
            applied: BTreeMap::new(),
            intake: Intake::default(),
        }
    }

    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        api(&self.client, &self.cfg.namespace, kind)
    }

    /// Projects until this member stops leading (Ok) or Kubernetes fails (Err).
    async fn lead(&mut self, app: &App) -> anyhow::Result<()> {
        let mut seen = 0;
        let mut resynced = None::<Instant>;
        let mut scanned = None::<Instant>;
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        // A deletion seen by a watch calls for a full reconcile at once.
        let lost = Arc::new(AtomicBool::new(false));
        let watches = self.watch_deletions(&lost);
        let _stop = AbortOnDrop(watches);
        loop {
            if !app.leading().0 {
                return Ok(());
            }
            let deleted = lost.swap(false, Ordering::Relaxed);
            if deleted || resynced.is_none_or(|t| t.elapsed() >= self.cfg.resync) {
                // The state and its sequence read together: the steps after this
                // reconcile start from it instead of projecting everything again.
                let (desired, at) = app
                    .with_state(|s| (project::objects(s, &self.cfg.namespace), s.last_sequence()));
                let started = Instant::now();
                let (applied, deleted) = self.reconcile(desired).await?;
                tracing::info!(
                    objects = self.applied.len(),
                    applied,
                    deleted,
                    ms = started.elapsed().as_millis() as u64,
                    "Kubernetes reconciled with the log"
                );
                resynced = Some(Instant::now());
                seen = at;
            }
            if scanned.is_none_or(|t| t.elapsed() >= INTAKE_EVERY) {
                let (client, ns) = (self.client.clone(), self.cfg.namespace.clone());
                self.intake
                    .scan(app, |k| api(&client, &ns, k), &crds)
                    .await?;
                scanned = Some(Instant::now());
            }
            let last = app.with_state(|s| s.last_sequence());
            if last != seen {
                let desired = app.with_state(|s| project::objects(s, &self.cfg.namespace));
                self.step(desired).await?;
                seen = last;
            }
            app.set_projection(format!(
                "leading: {} objects in namespace {}, projected through sequence {seen}; last full reconcile {} s ago",
                self.applied.len(),
                self.cfg.namespace,
                resynced.map_or(0, |t| t.elapsed().as_secs()),
            ));
            tokio::time::sleep(STEP).await;
        }
    }

    /// Watches every kind's managed objects (and the CRDs) and raises `lost` when one is
    /// deleted: the next step of the loop repairs it.
    fn watch_deletions(&self, lost: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
        let labels = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let mut tasks = Vec::new();
        for kind in Kind::ALL {
            let api = self.api(kind);
            let (lost, config) = (Arc::clone(lost), watcher::Config::default().labels(&labels));
            tasks.push(tokio::spawn(async move {
                let mut events = watcher(api, config).default_backoff().boxed();
                while let Some(e) = events.next().await {
                    if let Ok(watcher::Event::Delete(_)) = e {
                        lost.store(true, Ordering::Relaxed);
                    }
                }
            }));
        }
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let lost = Arc::clone(lost);
        tasks.push(tokio::spawn(async move {
            let config = watcher::Config::default();
            let mut events = watcher(crds, config).default_backoff().boxed();
            while let Some(e) = events.next().await {
                if let Ok(watcher::Event::Delete(crd)) = e {
                    if crd.spec.group == "cairn.dev" {
                        lost.store(true, Ordering::Relaxed);
                    }
                }
            }
        }));
        tasks
    }

    /// Applies what changed since the last step and deletes what is gone.
    async fn step(&mut self, desired: Vec<Object>) -> anyhow::Result<()> {
        let keys: BTreeSet<(Kind, String)> =
            desired.iter().map(|o| (o.kind, o.name.clone())).collect();
        let changed: Vec<Object> = desired
            .into_iter()
            .filter(|o| self.applied.get(&(o.kind, o.name.clone())) != Some(&o.seq))
            .collect();
        let gone: Vec<(Kind, String)> = self
            .applied
            .keys()
            .filter(|k| !keys.contains(*k))
            .cloned()
            .collect();
        self.apply_all(changed, false).await?;
        self.delete_all(gone).await
    }

    /// Makes Kubernetes hold exactly `desired`, whatever it holds now: the CRDs and the
    /// namespace first, then every object. Returns (applied, deleted).
    async fn reconcile(&mut self, desired: Vec<Object>) -> anyhow::Result<(usize, usize)> {
        self.install().await?;
        // Every object, users' too: a user's object is never deleted here, but it is
        // stamped, and restored whole when it is missing.
        let mut held: BTreeMap<(Kind, String), u64> = BTreeMap::new();
        let mut managed: BTreeSet<(Kind, String)> = BTreeSet::new();
        for kind in Kind::ALL {
            let list = self
                .api(kind)
                .list(&ListParams::default())
                .await
                .with_context(|| format!("listing {}", kind.plural()))?;
            for o in list.items {
                let ours =
                    o.metadata.labels.as_ref().is_some_and(|l| {
                        l.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
                    });
                let seq = o
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SEQ))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if let Some(name) = o.metadata.name {
                    if ours {
                        managed.insert((kind, name.clone()));
                    }
                    held.insert((kind, name), seq);
                }
            }
        }
        let keys: BTreeSet<(Kind, String)> =
            desired.iter().map(|o| (o.kind, o.name.clone())).collect();
        let mut missing = Vec::new();
        let mut stale = Vec::new();
        for o in desired {
            match held.get(&(o.kind, o.name.clone())) {
                None => missing.push(o),
                Some(seq) if *seq != o.seq => stale.push(o),
                Some(_) => {}
            }
        }
        let extra: Vec<(Kind, String)> =
            managed.into_iter().filter(|k| !keys.contains(k)).collect();
        let counts = (missing.len() + stale.len(), extra.len());
        // What Kubernetes holds is what was applied.
        self.applied = held;
        self.apply_all(missing, true).await?;
        self.apply_all(stale, false).await?;
        self.delete_all(extra).await?;
        Ok(counts)
    }

    /// The CRDs (waiting until Established) and the namespace.
    async fn install(&self) -> anyhow::Result<()> {
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let want = crate::crd::all();
        let have: BTreeSet<String> = crds
            .list(&ListParams::default())
            .await
            .context("listing CRDs")?
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        for crd in &want {
            let name = crd.metadata.name.clone().unwrap_or_default();
            if have.contains(&name) {
                continue;
            }
            tracing::info!(crd = %name, "installing a CRD");
            crds.patch(&name, &pp, &Patch::Apply(crd))
                .await
                .with_context(|| format!("installing CRD {name}"))?;
            tokio::time::timeout(
                ESTABLISHED_WITHIN,
                await_condition(crds.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .with_context(|| format!("CRD {name} not Established"))??;
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": self.cfg.namespace, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        });
        namespaces
            .patch(&self.cfg.namespace, &pp, &Patch::Apply(&ns))
            .await
            .with_context(|| format!("creating namespace {}", self.cfg.namespace))?;
        Ok(())
    }

    /// Applies `objects`; `whole`: they are missing, so users' objects get their spec
    /// back too.
    async fn apply_all(&mut self, objects: Vec<Object>, whole: bool) -> anyhow::Result<()> {
        let done: Vec<(Kind, String, u64)> = futures::stream::iter(objects)
            .map(|o| {
                let api = self.api(o.kind);
                async move {
                    let pp = PatchParams::apply(FIELD_MANAGER).force();
                    let body = if whole {
                        o.body.clone()
                    } else {
                        o.update_body()
                    };
                    api.patch(&o.name, &pp, &Patch::Apply(&body))
                        .await
                        .with_context(|| format!("applying {} {}", o.kind.name(), o.name))?;
                    if let Some(status) = &o.status {
                        api.patch_status(&o.name, &pp, &Patch::Apply(status))
                            .await
                            .with_context(|| {
                                format!("applying the status of {} {}", o.kind.name(), o.name)
                            })?;
                    }
                    anyhow::Ok((o.kind, o.name, o.seq))
                }
            })
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        for (kind, name, seq) in done {
            self.applied.insert((kind, name), seq);
        }
        Ok(())
    }

    async fn delete_all(&mut self, gone: Vec<(Kind, String)>) -> anyhow::Result<()> {
        for (kind, name) in gone {
            match self.api(kind).delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("deleting {} {name}", kind.name()))
                }
            }
            self.applied.remove(&(kind, name));
        }
        Ok(())
    }
}

/// Aborts the watch tasks when the projector stops leading.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
