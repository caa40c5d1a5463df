//! The projector: while this member leads, Kubernetes holds what [`project::objects`]
//! says. It installs the CRDs (and waits until they are Established) and the namespace,
//! then applies each object whose `cairn.dev/seq` differs from what it applied last
//! (server-side apply, field manager `cairn`; users' kinds get their status apart), and
//! deletes the objects of entities that are gone.
//!
//! Every couple of seconds it records in the log how far it got (`projection_checkpointed`).
//! A member that begins to lead resumes there: it applies the objects changed after the
//! checkpoint, and lists only the kinds where something may have to go.
//!
//! A full reconcile — list every object of every kind, re-install what is missing,
//! re-apply what is stale, delete what Cairn does not have — runs every `resync`, at
//! once when a watch sees a managed object or a CRD deleted, and when an operator asks
//! (`cairn k8s resync`), so objects deleted by hand, CRDs removed, or an api-server
//! restarted on an empty etcd are restored from the log. Kubernetes' resourceVersions
//! are never read as a clock: the stamps are Cairn's own sequences.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_controlplane::app::{now_ms, App, ProjectionReport};
use cairn_controlplane::store::events::Filter;
use cairn_domain::projection::{self, ProjectionCommand};
use cairn_domain::{CommandBody, EntityKey};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PartialObjectMeta,
    Patch, PatchParams,
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
/// The longest the projector waits between two steps (a watch's news waits this long).
const STEP: Duration = Duration::from_millis(200);
/// The shortest: a step starts as soon as new events are applied, but no sooner than
/// this after the last one, so that events arriving together are projected together.
const MIN_STEP: Duration = Duration::from_millis(50);
/// How long to wait after an error before trying again.
const BACKOFF: Duration = Duration::from_secs(1);
/// How long CRDs may take to become Established.
const ESTABLISHED_WITHIN: Duration = Duration::from_secs(60);
/// How often every object users applied is listed, besides when a watch sees one
/// change.
const INTAKE_EVERY: Duration = Duration::from_secs(10);
/// How often the projector records in the log how far it got.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);
/// Refusals `cairn k8s status` shows (the latest).
const MAX_REFUSED: usize = 10;
/// Objects applied between two accounts of progress (in log order).
const CHUNK: usize = 256;
/// The projection's name in the log (`projection/kubernetes`).
const NAME: &str = "kubernetes";
/// Who checkpoints.
const ACTOR: &str = "system/projector";

/// Where and how to project.
#[derive(Debug, Clone)]
pub struct Config {
    /// A kubeconfig file; none: the in-cluster configuration (or `$KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    /// The Kubernetes namespace of the namespaced kinds (created if missing).
    pub namespace: String,
    /// How often to compare everything Kubernetes holds with the log.
    pub resync: Duration,
    /// The Gateway deployments' HTTPRoutes attach to.
    pub gateway: String,
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
    api_in(client, namespace, kind, kind.versions()[0])
}

/// The objects of `kind` in `version` (whole, or their metadata only).
fn api_in<K>(client: &Client, namespace: &str, kind: Kind, version: &str) -> Api<K>
where
    K: kube::Resource<DynamicType = ApiResource, Scope = kube::core::DynamicResourceScope>,
{
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(kind.group(), version, kind.name()),
        kind.plural(),
    );
    if kind.namespaced() {
        Api::namespaced_with(client.clone(), namespace, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

/// Runs for as long as the server runs; projects while this member leads.
pub async fn run(app: App, cfg: Config) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let report = |state: &str, error: String| ProjectionReport {
        state: state.into(),
        namespace: cfg.namespace.clone(),
        error,
        ..ProjectionReport::default()
    };
    // The term of the last leadership that projected: after a failure in the same
    // term, the projector starts over with a full reconcile, not from the checkpoint.
    let mut last_term = None;
    loop {
        while !app.leading().0 {
            app.set_projection(report("standby", String::new()));
            tokio::time::sleep(STEP).await;
        }
        let term = app.leading().1;
        let fresh = last_term != Some(term);
        last_term = Some(term);
        let failed = match client(&cfg).await {
            Ok(c) => Projector::new(c, cfg.clone())
                .lead(&app, fresh)
                .await
                .err()
                .map(|e| format!("{e:#}")),
            Err(e) => Some(format!("no Kubernetes client: {e:#}")),
        };
        if let Some(e) = failed {
            tracing::warn!(error = %e, "projecting into Kubernetes failed; will try again");
            app.set_projection(report("failing", e));
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
    /// Whether every CRD was applied since this member began to lead (a new build's
    /// CRDs replace an old one's).
    crds_applied: bool,
    /// The version each kind is served in; kinds not served are not projected.
    served: BTreeMap<Kind, &'static str>,
    report: ProjectionReport,
    /// When it last recorded a checkpoint in the log.
    checkpointed: Instant,
    /// While a full reconcile lists in the background: the objects steps applied or
    /// deleted since it began, which its listing may not show as they are now.
    touched: Option<BTreeSet<(Kind, String)>>,
}

impl Projector {
    fn new(client: Client, cfg: Config) -> Self {
        Self {
            client,
            applied: BTreeMap::new(),
            intake: Intake::default(),
            crds_applied: false,
            served: BTreeMap::new(),
            checkpointed: Instant::now(),
            touched: None,
            report: ProjectionReport {
                state: "leading".into(),
                namespace: cfg.namespace.clone(),
                ..ProjectionReport::default()
            },
            cfg,
        }
    }

    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        api_in(&self.client, &self.cfg.namespace, kind, self.version(kind))
    }

    /// The objects of `kind`, their metadata only (watches that only need to know that
    /// something happened: the api-server sends less).
    fn metadata_api(&self, kind: Kind) -> Api<PartialObjectMeta<DynamicObject>> {
        api_in(&self.client, &self.cfg.namespace, kind, self.version(kind))
    }

    /// The version `kind` is served in (its first, before discovery).
    fn version(&self, kind: Kind) -> &'static str {
        self.served
            .get(&kind)
            .copied()
            .unwrap_or(kind.versions()[0])
    }

    /// The kinds this api-server serves (in the version it serves them), and in a word
    /// those it does not: Cairn's CRDs are installed by Cairn, the rest are not. Only an
    /// answer that a kind is not there counts: after any other failure the kind stays
    /// as it was (the next reconcile asks again), so that a passing error never looks
    /// like a kind gone.
    async fn discover(&mut self) {
        let mut unserved = Vec::new();
        for kind in Kind::ALL {
            // Cairn installs its own kinds; the core group is always there.
            if kind.is_cairns() || kind.group().is_empty() {
                self.served.insert(kind, kind.versions()[0]);
                continue;
            }
            let mut found = None;
            for v in kind.versions() {
                let gvk = GroupVersionKind::gvk(kind.group(), v, kind.name());
                match kube::discovery::pinned_kind(&self.client, &gvk).await {
                    Ok(_) => {
                        found = Some(*v);
                        break;
                    }
                    Err(kube::Error::Api(s)) if s.is_not_found() => {}
                    Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingKind(_))) => {}
                    Err(e) => {
                        tracing::warn!(kind = kind.name(), error = %e, "discovery failed; the kind stays as it was");
                        found = self.served.get(&kind).copied();
                        break;
                    }
                }
            }
            match found {
                Some(v) => {
                    self.served.insert(kind, v);
                }
                None => {
                    // Not projected any more: forgotten, not deleted.
                    self.served.remove(&kind);
                    self.applied.retain(|(k, _), _| *k != kind);
                    unserved.push(format!(
                        "{} ({} {} not served)",
                        kind.name(),
                        kind.group(),
                        kind.versions().join(" or ")
                    ));
                }
            }
        }
        self.report.unserved = unserved;
    }

    /// `desired` without the kinds this api-server does not serve.
    fn servable(&self, desired: Vec<Object>) -> Vec<Object> {
        desired
            .into_iter()
            .filter(|o| self.served.contains_key(&o.kind))
            .collect()
    }

    /// Projects until this member stops leading (Ok) or Kubernetes fails (Err); `fresh`:
    /// the first try of this leadership, which resumes from the log's checkpoint unless
    /// the CRDs are missing (an api-server that lost its data).
    async fn lead(&mut self, app: &App, fresh: bool) -> anyhow::Result<()> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let (checkpoint, mut resyncs) = app.with_state(|s| {
            let p = s.projection(NAME);
            (p.checkpoint, p.resyncs)
        });
        let created = self.install().await?;
        self.discover().await;
        // A deletion seen by a watch calls for a full reconcile at once; a user's object
        // applied, changed or deleted, for the intake.
        let lost = Arc::new(AtomicBool::new(false));
        let users = Arc::new(AtomicBool::new(false));
        let watches = self.watch(&lost, &users);
        let _stop = AbortOnDrop(watches);
        let mut seen = match fresh && !created {
            true => self.resume(app, checkpoint).await?,
            false => self.full_reconcile(app).await?,
        };
        // The next full reconcile comes a period later.
        let mut resynced = Instant::now();
        let mut scanned = None::<Instant>;
        let mut applied = app.shared().applied();
        let mut listing = None::<(Instant, AbortOnDrop<anyhow::Result<Held>>)>;
        loop {
            if !app.leading().0 {
                return Ok(());
            }
            // A full reconcile lists in the background while steps go on, so new
            // events do not wait for a listing of everything.
            let asked = app.with_state(|s| s.projection(NAME).resyncs);
            let due = lost.load(Ordering::Relaxed)
                || asked != resyncs
                || resynced.elapsed() >= self.cfg.resync;
            if listing.is_none() && due {
                lost.store(false, Ordering::Relaxed);
                resyncs = asked;
                let apis = self.prepare_reconcile().await?;
                self.touched = Some(BTreeSet::new());
                listing = Some((Instant::now(), AbortOnDrop(vec![tokio::spawn(list(apis))])));
            }
            if listing
                .as_ref()
                .is_some_and(|(_, t)| t.0.iter().all(|t| t.is_finished()))
            {
                if let Some((started, mut task)) = listing.take() {
                    let held = match task.0.pop() {
                        Some(t) => t.await.context("listing for a full reconcile")??,
                        None => continue,
                    };
                    // What steps did meanwhile stands; the next step looks again.
                    self.finish_reconcile(app, started, held).await?;
                    resynced = Instant::now();
                    seen = 0;
                }
            }
            let touched = users.swap(false, Ordering::Relaxed);
            if touched || scanned.is_none_or(|t| t.elapsed() >= INTAKE_EVERY) {
                let (client, ns) = (self.client.clone(), self.cfg.namespace.clone());
                self.intake
                    .scan(app, |k| api(&client, &ns, k), &crds)
                    .await?;
                scanned = Some(Instant::now());
            }
            if app.with_state(|s| s.last_sequence()) != seen {
                // The state and its sequence read together.
                let (desired, last) = app.with_state(|s| {
                    (
                        project::objects(s, &self.cfg.namespace, &self.cfg.gateway),
                        s.last_sequence(),
                    )
                });
                let desired = self.servable(desired);
                self.step(app, desired, last).await?;
                seen = last;
            }
            self.progress(app, seen).await;
            tokio::time::sleep(MIN_STEP).await;
            let _ = tokio::time::timeout(STEP - MIN_STEP, applied.changed()).await;
        }
    }

    /// Begin to lead where the log's checkpoint says the last leader got: apply every
    /// object changed after it, and delete what is gone from the kinds where something
    /// may be. Returns the sequence projected through.
    async fn resume(&mut self, app: &App, checkpoint: u64) -> anyhow::Result<u64> {
        let (desired, at, kinds) = app.with_state(|s| {
            (
                project::objects(s, &self.cfg.namespace, &self.cfg.gateway),
                s.last_sequence(),
                project::kinds_to_list_since(s, checkpoint),
            )
        });
        let started = Instant::now();
        // Also every kind not Cairn's own (only Cairn's objects of them are listed): one
        // the api-server serves since the checkpoint may hold none yet.
        let kinds: BTreeSet<Kind> = kinds
            .into_iter()
            .chain(Kind::ALL.into_iter().filter(|k| !k.is_cairns()))
            .filter(|k| self.served.contains_key(k))
            .collect();
        let desired = self.servable(desired);
        let (listed, rest): (Vec<Object>, Vec<Object>) =
            desired.into_iter().partition(|o| kinds.contains(&o.kind));
        let (changed, current): (Vec<Object>, Vec<Object>) =
            rest.into_iter().partition(|o| o.seq > checkpoint);
        self.applied = current
            .into_iter()
            .map(|o| ((o.kind, o.name), o.seq))
            .collect();
        let changed_count = changed.len();
        // Deletions first: a checkpoint taken while the rest is applied must not pass
        // an entity whose object is still to go.
        let (applied, deleted) = self.reconcile_kinds(&kinds, listed).await?;
        self.report.resumed_from = checkpoint;
        self.apply_in_order(app, changed, at).await?;
        tracing::info!(
            checkpoint,
            through = at,
            applied = changed_count + applied,
            deleted,
            listed = ?kinds,
            ms = started.elapsed().as_millis() as u64,
            "resumed the Kubernetes projection from the log's checkpoint"
        );
        Ok(at)
    }

    /// Compare everything Kubernetes holds with the log and repair it. Returns the
    /// sequence projected through.
    async fn full_reconcile(&mut self, app: &App) -> anyhow::Result<u64> {
        let started = Instant::now();
        let apis = self.prepare_reconcile().await?;
        let held = list(apis).await?;
        self.finish_reconcile(app, started, held).await
    }

    /// What a full reconcile does before it lists: the CRDs and namespace installed, the
    /// kinds served found again (a Gateway API installed since the last time is
    /// projected from now on). Returns the APIs of the kinds to list.
    async fn prepare_reconcile(&mut self) -> anyhow::Result<Vec<(Kind, Api<DynamicObject>)>> {
        self.install().await?;
        self.discover().await;
        Ok(self.served.keys().map(|&k| (k, self.api(k))).collect())
    }

    /// What a full reconcile does with what Kubernetes held when it listed: compare it
    /// with the state now, and repair the difference. Returns the sequence projected
    /// through.
    async fn finish_reconcile(
        &mut self,
        app: &App,
        started: Instant,
        held: Held,
    ) -> anyhow::Result<u64> {
        let (desired, at) = app.with_state(|s| {
            (
                project::objects(s, &self.cfg.namespace, &self.cfg.gateway),
                s.last_sequence(),
            )
        });
        let desired = self.servable(desired);
        let (applied, deleted) = self.repair(held, desired).await?;
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            objects = self.applied.len(),
            applied,
            deleted,
            ms,
            "Kubernetes reconciled with the log"
        );
        self.report.reconciles += 1;
        self.report.last_reconcile_ms = now_ms();
        self.report.last_reconcile = format!(
            "{} objects compared in {ms} ms: {applied} applied (missing or stale), {deleted} deleted",
            self.applied.len()
        );
        Ok(at)
    }

    /// Say how far the projection got, and every [`CHECKPOINT_EVERY`] record it in the
    /// log, unless nothing but the projection's own events came since the last record.
    /// A failure to record is only logged: the next one records it.
    async fn progress(&mut self, app: &App, seen: u64) {
        self.publish(app, seen);
        if self.checkpointed.elapsed() < CHECKPOINT_EVERY {
            return;
        }
        self.checkpointed = Instant::now();
        let (current, own) = app.with_state(|s| {
            let key = EntityKey::new(projection::KIND, NAME);
            (
                s.projection(NAME).checkpoint,
                s.entity(&key).map_or(0, |e| e.sequence),
            )
        });
        if seen <= current || seen <= own {
            return;
        }
        let body = CommandBody::Projection(ProjectionCommand::Checkpoint {
            name: NAME.into(),
            sequence: seen,
        });
        if let Err(e) = app.propose_as(ACTOR, body).await {
            tracing::debug!(error = %e, "could not checkpoint the projection");
        }
    }

    /// What this member's status says about the projection.
    fn publish(&mut self, app: &App, seen: u64) {
        let (last, checkpoint) =
            app.with_state(|s| (s.last_sequence(), s.projection(NAME).checkpoint));
        let oldest = match last > seen {
            true => app
                .list_events(
                    &Filter {
                        after_sequence: seen,
                        ..Filter::default()
                    },
                    1,
                    last,
                )
                .ok()
                .and_then(|(events, _)| events.first().map(|e| e.timestamp_ms)),
            false => None,
        };
        let mut objects: BTreeMap<String, u64> = BTreeMap::new();
        for (kind, _) in self.applied.keys() {
            *objects.entry(kind.name().to_string()).or_default() += 1;
        }
        let r = &mut self.report;
        r.projected_through = seen;
        r.last_sequence = last;
        r.checkpoint = checkpoint;
        r.lag_ms = oldest.map_or(0, |t| now_ms().saturating_sub(t).max(0) as u64);
        r.objects = objects;
        app.set_projection(r.clone());
    }

    /// Watches every kind's managed objects (and the CRDs) and raises `lost` when one is
    /// deleted: the next step of the loop repairs it. Watches the objects of the kinds
    /// users write, those without Cairn's label, and raises `users` when one is added,
    /// changed or deleted: the next step takes it in.
    fn watch(
        &self,
        lost: &Arc<AtomicBool>,
        users: &Arc<AtomicBool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let labels = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let mut tasks = Vec::new();
        for kind in crate::intake::KINDS {
            let api = self.metadata_api(kind);
            let config = watcher::Config::default().labels(&format!("!{}", MANAGED_BY.0));
            let users = Arc::clone(users);
            tasks.push(tokio::spawn(async move {
                // Only that something happened matters: metadata is enough, and costs
                // the api-server less to send.
                let mut events = watcher(api, config).default_backoff().boxed();
                while let Some(e) = events.next().await {
                    match e {
                        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                            users.store(true, Ordering::Relaxed)
                        }
                        Ok(
                            watcher::Event::Init
                            | watcher::Event::InitApply(_)
                            | watcher::Event::InitDone,
                        )
                        | Err(_) => {}
                    }
                }
            }));
        }
        for &kind in self.served.keys() {
            let api = self.metadata_api(kind);
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
    async fn step(&mut self, app: &App, desired: Vec<Object>, last: u64) -> anyhow::Result<()> {
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
        // Deletions first (see `resume`).
        self.delete_all(gone).await?;
        self.apply_in_order(app, changed, last).await
    }

    /// Applies `objects` in log order, a chunk at a time, saying after each how far the
    /// projection got: every event before the first object still to apply, or `last`.
    async fn apply_in_order(
        &mut self,
        app: &App,
        mut objects: Vec<Object>,
        last: u64,
    ) -> anyhow::Result<()> {
        objects.sort_by_key(|o| o.seq);
        let mut rest = objects.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Object> = rest.by_ref().take(CHUNK).collect();
            self.apply_all(chunk, false).await?;
            let through = rest.peek().map_or(last, |o| o.seq.saturating_sub(1));
            self.progress(app, through).await;
        }
        Ok(())
    }

    /// Makes the objects of `kinds` in Kubernetes exactly `desired` (of those kinds),
    /// whatever it holds now. Returns (applied, deleted).
    async fn reconcile_kinds(
        &mut self,
        kinds: &BTreeSet<Kind>,
        desired: Vec<Object>,
    ) -> anyhow::Result<(usize, usize)> {
        let held = list(kinds.iter().map(|&k| (k, self.api(k))).collect()).await?;
        self.repair(held, desired).await
    }

    /// Makes the objects of the kinds `held` lists exactly those of `desired` (of those
    /// kinds). What was held may be older than `desired`: what changed since is applied
    /// again (a write that changes nothing), and nothing is lost. Returns (applied,
    /// deleted).
    async fn repair(&mut self, held: Held, desired: Vec<Object>) -> anyhow::Result<(usize, usize)> {
        let Held {
            kinds,
            stamps: mut held,
            mut managed,
        } = held;
        // What steps applied or deleted since the listing began is as they left it.
        let touched = self.touched.take().unwrap_or_default();
        held.retain(|k, _| !touched.contains(k));
        managed.retain(|k| !touched.contains(k));
        let desired: Vec<Object> = desired
            .into_iter()
            .filter(|o| kinds.contains(&o.kind) && !touched.contains(&(o.kind, o.name.clone())))
            .collect();
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
        let extra: Vec<(Kind, String)> = managed
            .iter()
            .filter(|k| !keys.contains(*k))
            .cloned()
            .collect();
        let managed_keys = managed;
        let counts = (missing.len() + stale.len(), extra.len());
        // What Kubernetes holds of these kinds is what was applied; except a user's
        // object Cairn has no entity for (one the intake refused): Cairn never wrote
        // it, so it is never Cairn's to delete.
        self.applied
            .retain(|key, _| !kinds.contains(&key.0) || touched.contains(key));
        self.applied.extend(
            held.into_iter()
                .filter(|(k, _)| keys.contains(k) || managed_keys.contains(k)),
        );
        self.apply_all(missing, true).await?;
        self.apply_all(stale, false).await?;
        self.delete_all(extra).await?;
        Ok(counts)
    }

    /// The CRDs (waiting until Established) and the namespace. Returns whether a CRD
    /// had to be created.
    async fn install(&mut self) -> anyhow::Result<bool> {
        let mut created = false;
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
                // Once a leadership, this build's CRD replaces what is there.
                if !self.crds_applied {
                    crds.patch(&name, &pp, &Patch::Apply(crd))
                        .await
                        .with_context(|| format!("updating CRD {name}"))?;
                }
                continue;
            }
            tracing::info!(crd = %name, "installing a CRD");
            created = true;
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
        self.crds_applied = true;
        Ok(created)
    }

    /// Applies `objects`; `whole`: they are missing, so users' objects get their spec
    /// back too.
    ///
    /// An object the api-server refuses as invalid (a node address it does not take
    /// as a host name, say) is reported and counted as applied at its stamp: it is tried
    /// again when it changes or at the next full reconcile, and the rest goes on.
    async fn apply_all(&mut self, objects: Vec<Object>, whole: bool) -> anyhow::Result<()> {
        let done: Vec<(Kind, String, u64, Option<String>)> = futures::stream::iter(objects)
            .map(|o| {
                let api = self.api(o.kind);
                let version = self.version(o.kind);
                async move {
                    let pp = PatchParams::apply(FIELD_MANAGER).force();
                    let mut body = if whole {
                        o.body.clone()
                    } else {
                        o.update_body()
                    };
                    body["apiVersion"] = serde_json::json!(o.kind.api_version(version));
                    match api.patch(&o.name, &pp, &Patch::Apply(&body)).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 422) => {
                            let why = format!("{} {}: {}", o.kind.name(), o.name, s.message);
                            return anyhow::Ok((o.kind, o.name, o.seq, Some(why)));
                        }
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("applying {} {}", o.kind.name(), o.name))
                        }
                    }
                    // Only users' kinds have a status apart (see `Kind::status_subresource`).
                    if let Some(status) = &o.status {
                        api.patch_status(&o.name, &pp, &Patch::Apply(status))
                            .await
                            .with_context(|| {
                                format!("applying the status of {} {}", o.kind.name(), o.name)
                            })?;
                    }
                    anyhow::Ok((o.kind, o.name, o.seq, None))
                }
            })
            .buffer_unordered(PARALLEL)
            .try_collect()
            .await?;
        for (kind, name, seq, refused) in done {
            if let Some(why) = refused {
                tracing::warn!(refused = %why, "the api-server refused an object");
                let r = &mut self.report.refused;
                r.retain(|w| !w.starts_with(&format!("{} {}:", kind.name(), name)));
                r.push(why);
                if r.len() > MAX_REFUSED {
                    r.remove(0);
                }
            }
            if let Some(t) = &mut self.touched {
                t.insert((kind, name.clone()));
            }
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
            if let Some(t) = &mut self.touched {
                t.insert((kind, name.clone()));
            }
            self.applied.remove(&(kind, name));
        }
        Ok(())
    }
}

/// What Kubernetes held of some kinds when they were listed.
struct Held {
    kinds: BTreeSet<Kind>,
    /// (kind, name) → the stamp (`cairn.dev/seq`; 0 without one).
    stamps: BTreeMap<(Kind, String), u64>,
    /// Those Cairn wrote (labelled `app.kubernetes.io/managed-by=cairn`).
    managed: BTreeSet<(Kind, String)>,
}

/// Lists the objects of each kind: of Cairn's kinds every object (users' too: a user's
/// object is never deleted by a reconcile, but it is stamped, and restored whole when
/// it is missing); of the others (Services, ...), only Cairn's. Names, labels and
/// annotations are all a reconcile compares.
async fn list(apis: Vec<(Kind, Api<DynamicObject>)>) -> anyhow::Result<Held> {
    let ours_only = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let mut held = Held {
        kinds: apis.iter().map(|(k, _)| *k).collect(),
        stamps: BTreeMap::new(),
        managed: BTreeSet::new(),
    };
    for (kind, api) in apis {
        let params = match kind.is_cairns() {
            true => ListParams::default(),
            false => ours_only.clone(),
        };
        let list = api
            .list_metadata(&params)
            .await
            .with_context(|| format!("listing {}", kind.plural()))?;
        for o in list.items {
            let ours = o
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1));
            let seq = o
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SEQ))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if let Some(name) = o.metadata.name {
                if ours {
                    held.managed.insert((kind, name.clone()));
                }
                held.stamps.insert((kind, name), seq);
            }
        }
    }
    Ok(held)
}

/// Aborts its tasks when the projector stops leading.
struct AbortOnDrop<T = ()>(Vec<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
