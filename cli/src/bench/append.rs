//! `cairn bench append`: N concurrent clients append fixed-size payloads for a while,
//! against Cairn or (with the `etcd` feature) against etcd, so both are measured the
//! same way on the same machine. Every append is acknowledged only once it is durable
//! on a quorum, in both systems.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_proto as pb;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::bench::proc::pid_rss;
use crate::client::Cluster;
use crate::output::{self, table};

#[derive(clap::Args, Clone)]
pub struct AppendArgs {
    /// Concurrent clients; a comma-separated list runs one round per value.
    #[arg(long, default_value = "1,16,128", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// How long each round runs (after the warm-up).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Payload bytes per append.
    #[arg(long, default_value_t = 256)]
    pub payload: usize,
    #[arg(long, value_enum, default_value = "cairn")]
    pub backend: Backend,
    /// etcd endpoints (with `--backend etcd`).
    #[arg(long, default_value = "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379")]
    pub etcd_endpoints: String,
    /// Server PIDs whose RSS to report (default for Cairn: what each member reports).
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// TCP connections the clients share.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Cairn's write API: one `SubmitStream` call per client, each append answered
    /// before the next is sent (`stream`), or one `Submit` call per append (`unary`).
    #[arg(long, value_enum, default_value = "stream")]
    pub api: Api,
    /// The members' `/metrics` URLs: each round then also prints a write's timeline,
    /// stage by stage, on the leader and the followers (warm-up included).
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: output::Format,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Cairn,
    Etcd,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Stream,
    Unary,
}

impl Api {
    pub(crate) fn name(api: Option<Api>) -> &'static str {
        match api {
            Some(Api::Stream) => "stream",
            // etcd's Put is a unary call too.
            Some(Api::Unary) | None => "unary",
        }
    }
}

/// One round's figures (`-o json` prints a list of them).
#[derive(Debug, Serialize, Deserialize)]
pub struct Round {
    pub backend: Backend,
    /// Cairn's write API (absent for etcd).
    pub api: Option<Api>,
    pub clients: usize,
    pub seconds: f64,
    pub acknowledged: u64,
    pub errors: u64,
    /// The first error seen, when there were any.
    pub first_error: Option<String>,
    pub appends_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// RSS of each server after the round, bytes.
    pub rss_bytes: Vec<u64>,
    /// Whether the round ran over TLS (client certificates on both sides).
    #[serde(default)]
    pub tls: bool,
    /// Each stage of a write during the round, from the members' metrics (`--metrics`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<super::timeline::StageFigure>,
}

/// One client's way of appending a payload.
trait Appender: Send + 'static {
    fn append(&mut self, i: u64) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

struct CairnAppender {
    client: pb::cairn_client::CairnClient<tonic::transport::Channel>,
    text: Arc<String>,
    actor: String,
}

/// The command every Cairn append sends: a note of the payload's size.
fn note(actor: &str, text: &str) -> pb::SubmitRequest {
    let cmd = pb::Command {
        actor: actor.to_string(),
        body: Some(pb::command::Body::AddNote(pb::AddNote {
            entity: Some(pb::EntityRef {
                kind: "namespace".into(),
                name: "bench".into(),
            }),
            text: text.to_string(),
        })),
        ..Default::default()
    };
    pb::SubmitRequest { command: Some(cmd) }
}

impl Appender for CairnAppender {
    async fn append(&mut self, _i: u64) -> anyhow::Result<()> {
        self.client.submit(note(&self.actor, &self.text)).await?;
        Ok(())
    }
}

/// A client appending over its own `SubmitStream`: send, wait for the answer, repeat.
struct StreamAppender {
    requests: tokio::sync::mpsc::Sender<pb::SubmitRequest>,
    answers: tonic::Streaming<pb::SubmitStreamResponse>,
    text: Arc<String>,
    actor: String,
}

impl StreamAppender {
    async fn open(
        channel: tonic::transport::Channel,
        text: Arc<String>,
        actor: String,
    ) -> anyhow::Result<Self> {
        let (requests, rx) = tokio::sync::mpsc::channel(1);
        let answers = pb::cairn_client::CairnClient::new(channel)
            .submit_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .context("opening a SubmitStream")?
            .into_inner();
        Ok(Self {
            requests,
            answers,
            text,
            actor,
        })
    }
}

impl Appender for StreamAppender {
    async fn append(&mut self, _i: u64) -> anyhow::Result<()> {
        use pb::submit_stream_response::Result as R;
        self.requests
            .send(note(&self.actor, &self.text))
            .await
            .context("the stream closed")?;
        match self.answers.message().await?.and_then(|a| a.result) {
            Some(R::Ok(_)) => Ok(()),
            Some(R::Error(e)) => bail!("append failed ({}): {}", e.code, e.message),
            None => bail!("the stream ended without an answer"),
        }
    }
}

pub async fn append(cluster: &Cluster, args: AppendArgs) -> anyhow::Result<()> {
    if args.payload == 0 || args.clients.contains(&0) {
        bail!("--payload and --clients must be > 0");
    }
    let mut rounds = Vec::new();
    for &n in &args.clients {
        let mut round = match args.backend {
            Backend::Cairn => cairn_round(cluster, &args, n).await?,
            Backend::Etcd => etcd_round(&args, n, cluster.tls()).await?,
        };
        round.tls = cluster.tls().is_some();
        if let Some(e) = &round.first_error {
            eprintln!("{} errors; the first: {e}", round.errors);
        }
        if args.output == output::Format::Table {
            eprintln!(
                "{:?} ({}) clients={n}: {:.0} appends/s, p50 {:.2} ms, p99 {:.2} ms",
                round.backend,
                Api::name(round.api),
                round.appends_per_sec,
                round.p50_ms,
                round.p99_ms
            );
        }
        rounds.push(round);
    }
    if args.output == output::Format::Table {
        for r in rounds.iter().filter(|r| !r.timeline.is_empty()) {
            eprintln!("{}", timeline_table(r));
        }
    }
    output::emit(args.output, &rounds, || {
        let mut t = table(&[
            "BACKEND",
            "API",
            "CLIENTS",
            "APPENDS/S",
            "P50 MS",
            "P99 MS",
            "P999 MS",
            "ACKED",
            "ERRORS",
            "RSS PER SERVER",
        ]);
        for r in &rounds {
            t.add_row(vec![
                format!("{:?}", r.backend).to_lowercase(),
                Api::name(r.api).to_string(),
                r.clients.to_string(),
                format!("{:.0}", r.appends_per_sec),
                format!("{:.2}", r.p50_ms),
                format!("{:.2}", r.p99_ms),
                format!("{:.2}", r.p999_ms),
                r.acknowledged.to_string(),
                r.errors.to_string(),
                r.rss_bytes
                    .iter()
                    .map(|b| output::bytes(*b))
                    .collect::<Vec<_>>()
                    .join(" / "),
            ]);
        }
        t
    })
}

/// A round's write timeline: how often each stage ran per write, its mean and
/// median, on the leader and the followers.
fn timeline_table(r: &Round) -> String {
    format!(
        "a write's timeline, {} ({}) clients={}:\n{}",
        format!("{:?}", r.backend).to_lowercase(),
        Api::name(r.api),
        r.clients,
        stages_table(&r.timeline)
    )
}

/// Stage figures as a table.
pub(crate) fn stages_table(figures: &[super::timeline::StageFigure]) -> comfy_table::Table {
    let mut t = table(&["STAGE", "ON", "PER WRITE", "MEAN MS", "P50 MS"]);
    for f in figures {
        t.add_row(vec![
            f.stage.clone(),
            f.on.clone(),
            format!("{:.3}", f.per_write),
            format!("{:.3}", f.mean_ms),
            format!("{:.3}", f.p50_ms),
        ]);
    }
    t
}

async fn cairn_round(cluster: &Cluster, args: &AppendArgs, n: usize) -> anyhow::Result<Round> {
    let mut cluster = cluster.clone();
    let status = cluster
        .call(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await })
        .await?;
    let leader = status
        .members
        .iter()
        .find(|m| m.node_id == status.leader_id)
        .map(|m| m.address.clone())
        .context("the cluster has no leader")?;
    // The namespace the notes go to (already there after the first round).
    let create = pb::Command {
        actor: "bench".into(),
        body: Some(pb::command::Body::CreateNamespace(pb::CreateNamespace {
            name: "bench".into(),
            labels: Default::default(),
        })),
        ..Default::default()
    };
    match cluster
        .client(&leader)?
        .submit(pb::SubmitRequest {
            command: Some(create),
        })
        .await
    {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::AlreadyExists => {}
        Err(s) => bail!("creating namespace/bench: {}", s.message()),
    }
    let text = Arc::new("x".repeat(args.payload));
    let channels: Vec<_> = (0..args.connections.clamp(1, n))
        .map(|_| cluster.channel(&leader))
        .collect::<anyhow::Result<_>>()?;
    let before = super::timeline::scrape_all(&args.metrics).await?;
    let mut round = match args.api {
        Api::Unary => {
            let appenders = (0..n)
                .map(|i| CairnAppender {
                    client: pb::cairn_client::CairnClient::new(
                        channels[i % channels.len()].clone(),
                    ),
                    text: text.clone(),
                    actor: format!("bench/{i}"),
                })
                .collect();
            drive(args, Backend::Cairn, appenders).await
        }
        Api::Stream => {
            let mut appenders = Vec::with_capacity(n);
            for i in 0..n {
                let channel = channels[i % channels.len()].clone();
                appenders
                    .push(StreamAppender::open(channel, text.clone(), format!("bench/{i}")).await?);
            }
            drive(args, Backend::Cairn, appenders).await
        }
    };
    round.api = Some(args.api);
    if !args.metrics.is_empty() {
        let after = super::timeline::scrape_all(&args.metrics).await?;
        round.timeline = super::timeline::figures(&before, &after);
    }
    round.rss_bytes = if args.pids.is_empty() {
        cluster
            .call(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await })
            .await?
            .members
            .iter()
            .map(|m| m.rss_bytes)
            .collect()
    } else {
        args.pids.iter().map(|p| pid_rss(*p)).collect()
    };
    Ok(round)
}

#[cfg(feature = "etcd")]
struct EtcdAppender {
    kv: etcd_client::KvClient,
    value: Arc<Vec<u8>>,
    prefix: String,
}

#[cfg(feature = "etcd")]
impl Appender for EtcdAppender {
    async fn append(&mut self, i: u64) -> anyhow::Result<()> {
        let key = format!("{}/{i}", self.prefix);
        self.kv
            .put(key, self.value.as_slice().to_vec(), None)
            .await?;
        Ok(())
    }
}

/// How to reach etcd: over TLS with the CLI's own files (`https://` endpoints).
#[cfg(feature = "etcd")]
fn etcd_options(
    tls: Option<&cairn_proto::tls::TlsFiles>,
) -> anyhow::Result<Option<etcd_client::ConnectOptions>> {
    use etcd_client::{Certificate, Identity, TlsOptions};
    let Some(t) = tls else { return Ok(None) };
    let read =
        |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&t.ca)?))
        .identity(Identity::from_pem(read(&t.cert)?, read(&t.key)?));
    Ok(Some(etcd_client::ConnectOptions::new().with_tls(tls)))
}

#[cfg(feature = "etcd")]
async fn etcd_round(
    args: &AppendArgs,
    n: usize,
    tls: Option<&cairn_proto::tls::TlsFiles>,
) -> anyhow::Result<Round> {
    let options = etcd_options(tls)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Talk to the leader, as the Cairn round does.
    let mut leader = None;
    for ep in args.etcd_endpoints.split(',') {
        let ep = format!("{scheme}://{ep}");
        let ep = ep.as_str();
        let mut c = etcd_client::Client::connect([ep], options.clone())
            .await
            .with_context(|| format!("connecting to etcd at {ep}"))?;
        let s = c
            .status()
            .await
            .with_context(|| format!("etcd status of {ep}"))?;
        if s.header().is_some_and(|h| h.member_id() == s.leader()) {
            leader = Some(ep.to_string());
        }
    }
    let leader = leader.context("no etcd endpoint is the leader")?;
    let value = Arc::new(vec![b'x'; args.payload]);
    let mut clients = Vec::new();
    for _ in 0..args.connections.clamp(1, n) {
        clients.push(etcd_client::Client::connect([leader.as_str()], options.clone()).await?);
    }
    let appenders = (0..n)
        .map(|i| EtcdAppender {
            kv: clients[i % clients.len()].kv_client(),
            value: value.clone(),
            prefix: format!("bench/{n}/{i}"),
        })
        .collect();
    let mut round = drive(args, Backend::Etcd, appenders).await;
    round.rss_bytes = args.pids.iter().map(|p| pid_rss(*p)).collect();
    Ok(round)
}

#[cfg(not(feature = "etcd"))]
async fn etcd_round(
    _args: &AppendArgs,
    _n: usize,
    _tls: Option<&cairn_proto::tls::TlsFiles>,
) -> anyhow::Result<Round> {
    bail!("this cairn was built without the etcd backend: build it with `--features etcd` (needs protoc)")
}

/// Run every appender until the round ends; latencies after the warm-up count.
async fn drive<A: Appender>(args: &AppendArgs, backend: Backend, appenders: Vec<A>) -> Round {
    let n = appenders.len();
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let tasks: Vec<_> = appenders
        .into_iter()
        .map(|mut a| {
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .expect("valid histogram bounds");
                let (mut ok, mut errors, mut i) = (0u64, 0u64, 0u64);
                let mut first_error = None;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let r = a.append(i).await;
                    i += 1;
                    if t0 < measure_from {
                        continue;
                    }
                    match r {
                        Ok(()) => {
                            ok += 1;
                            let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                }
                (hist, ok, errors, first_error)
            })
        })
        .collect();
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let (mut ok, mut errors, mut first_error) = (0, 0, None);
    for t in tasks {
        if let Ok((h, o, e, first)) = t.await {
            first_error = first_error.or(first);
            let _ = hist.add(&h);
            ok += o;
            errors += e;
        }
    }
    let seconds = args.duration.as_secs_f64();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Round {
        backend,
        api: None,
        clients: n,
        seconds,
        acknowledged: ok,
        errors,
        first_error,
        appends_per_sec: ok as f64 / seconds,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        rss_bytes: Vec::new(),
        tls: false,
        timeline: Vec::new(),
    }
}
