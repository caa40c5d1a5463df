//! What every command gets: the cluster to talk to (endpoints, retry deadline), who is
//! asking, the output format and the read-consistency flag, with the helpers several
//! commands share: parsing `kind/name`, labels and job or cron documents; submitting a
//! change and printing its events; reading one entity, or the nodes. Commands use this
//! module, never each other.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use cairn_proto as pb;
use pb::command::Body;
use tokio_stream::StreamExt;

use crate::client::{self, Cluster};
use crate::output::{emit, Format};
use crate::views::{entities_table, events_table, EntityView, EventView};

/// The context of one `cairn` invocation.
pub struct Ctx {
    pub cluster: Cluster,
    pub format: Format,
    /// Recorded as the actor of every change.
    actor: String,
}

impl Ctx {
    pub fn new(
        endpoints: &str,
        deadline: Duration,
        format: Format,
        actor: Option<String>,
        tls: Option<cairn_proto::tls::TlsFiles>,
        token: Option<String>,
    ) -> anyhow::Result<Self> {
        let mut cluster = Cluster::new(endpoints, tls, token)?;
        cluster.deadline = deadline;
        Ok(Self {
            cluster,
            format,
            actor: actor.unwrap_or_else(default_actor),
        })
    }

    /// Submit one change as this actor, optionally only at `expected_revision`.
    pub async fn submit(
        &mut self,
        body: Body,
        expected_revision: Option<u64>,
    ) -> anyhow::Result<pb::SubmitResponse> {
        let cmd = pb::Command {
            actor: self.actor.clone(),
            expected_revision,
            body: Some(body),
            ..Default::default()
        };
        self.cluster
            .call_write(|mut c| {
                let cmd = cmd.clone();
                async move { c.submit(pb::SubmitRequest { command: Some(cmd) }).await }
            })
            .await
    }

    /// The events a change recorded (`(no change)` in a table when there were none).
    pub fn print_submitted(&self, resp: &pb::SubmitResponse) -> anyhow::Result<()> {
        let views: Vec<EventView> = resp.events.iter().map(EventView::from).collect();
        emit(self.format, &views, || events_table(&views))?;
        if self.format == Format::Table && views.is_empty() {
            println!("(no change)");
        }
        Ok(())
    }

    /// Submit a change, then print the events it recorded.
    pub async fn submit_and_print(
        &mut self,
        body: Body,
        expected_revision: Option<u64>,
    ) -> anyhow::Result<()> {
        let resp = self.submit(body, expected_revision).await?;
        self.print_submitted(&resp)
    }

    /// Read one entity and print it.
    pub async fn print_entity(
        &mut self,
        entity: pb::EntityRef,
        read: &ReadArgs,
    ) -> anyhow::Result<()> {
        let req = pb::GetEntityRequest {
            entity: Some(entity),
            consistency: read.consistency(),
        };
        let r = self
            .cluster
            .call(|mut c| {
                let req = req.clone();
                async move { c.get_entity(req).await }
            })
            .await?;
        let e = r.entity.context("the server answered without an entity")?;
        let v = EntityView::from(&e);
        emit(self.format, &v, || entities_table(std::slice::from_ref(&v)))
    }

    /// Every node, or the one named (none when it is unknown).
    pub async fn nodes(
        &mut self,
        name: Option<&str>,
        read: &ReadArgs,
    ) -> anyhow::Result<Vec<pb::NodeView>> {
        let req = pb::ListNodesRequest {
            name: name.unwrap_or_default().to_string(),
            consistency: read.consistency(),
        };
        let r = self
            .cluster
            .call(|mut c| {
                let req = req.clone();
                async move { c.list_nodes(req).await }
            })
            .await?;
        Ok(r.nodes)
    }

    /// Models: the one named (empty: all), deleted ones when asked; with `at_ms`, the
    /// one named as it was then.
    pub async fn models(
        &mut self,
        name: &str,
        include_deleted: bool,
        at_ms: Option<i64>,
        read: &ReadArgs,
    ) -> anyhow::Result<Vec<pb::ModelView>> {
        let req = pb::ListModelsRequest {
            name: name.to_string(),
            include_deleted,
            consistency: read.consistency(),
            at_ms,
        };
        let r = self
            .cluster
            .call(|mut c| {
                let req = req.clone();
                async move { c.list_models(req).await }
            })
            .await?;
        Ok(r.models)
    }

    /// Every event of the entity `kind/name`, oldest first.
    pub async fn events_of(
        &mut self,
        kind: &str,
        name: &str,
        read: &ReadArgs,
    ) -> anyhow::Result<Vec<pb::Event>> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let req = pb::ListEventsRequest {
                filter: Some(pb::EventFilter {
                    entity: Some(pb::EntityRef {
                        kind: kind.into(),
                        name: name.into(),
                    }),
                    after_sequence: after,
                    ..Default::default()
                }),
                limit: 10_000,
                consistency: read.consistency(),
                raw: false,
            };
            let page = self
                .cluster
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.list_events(req).await }
                })
                .await?;
            out.extend(page.events);
            if page.next_after_sequence == 0 {
                return Ok(out);
            }
            after = page.next_after_sequence;
        }
    }

    /// Print the events `filter` matches after `after`, then follow new ones as they are
    /// applied, across member failures and leader changes (resuming after the last one
    /// printed), until interrupted.
    /// [`follow`](Self::follow) the events of one entity (all of its kind when `name` is
    /// empty).
    pub async fn follow_entity(
        &mut self,
        kind: &str,
        name: String,
        after: u64,
    ) -> anyhow::Result<()> {
        let entity = pb::EntityRef {
            kind: kind.into(),
            name,
        };
        self.follow(
            |after| {
                Ok(pb::EventFilter {
                    entity: Some(entity.clone()),
                    after_sequence: after,
                    ..Default::default()
                })
            },
            after,
        )
        .await
    }

    pub async fn follow(
        &mut self,
        filter: impl Fn(u64) -> anyhow::Result<pb::EventFilter>,
        mut after: u64,
    ) -> anyhow::Result<()> {
        let mut failures = 0u32;
        loop {
            let req = pb::WatchEventsRequest {
                filter: Some(filter(after)?),
            };
            let stream = self
                .cluster
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.watch_events(req).await }
                })
                .await;
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) if failures < 100 => {
                    failures += 1;
                    eprintln!("cairn: {e:#}; retrying");
                    continue;
                }
                Err(e) => return Err(e),
            };
            while let Some(item) = stream.next().await {
                match item {
                    Ok(e) => {
                        failures = 0;
                        after = e.sequence;
                        self.print_event(&EventView::from(&e))?;
                    }
                    Err(s)
                        if client::retryable(&s)
                            || s.code() == tonic::Code::Unknown
                            || s.code() == tonic::Code::Internal =>
                    {
                        eprintln!(
                            "cairn: stream ended ({}); reconnecting after sequence {after}",
                            s.message()
                        );
                        break;
                    }
                    Err(s) => return Err(client::status_error(&s)),
                }
            }
            // The member went away: move on to another one and resume after `after`.
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.cluster
                .call(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await })
                .await
                .ok();
        }
    }

    /// One event as a line (or a JSON/YAML document) of a followed stream.
    fn print_event(&self, v: &EventView) -> anyhow::Result<()> {
        match self.format {
            Format::Json => println!("{}", serde_json::to_string(v)?),
            Format::Yaml => print!("---\n{}", serde_yaml_ng::to_string(v)?),
            Format::Table => println!(
                "{:>8}  {}  {:<28} r{:<4} {:<26} {:<16} {}",
                v.sequence,
                v.time,
                v.entity,
                v.entity_revision,
                v.kind,
                v.actor,
                v.details()
            ),
        }
        Ok(())
    }
}

fn default_actor() -> String {
    std::env::var("USER")
        .map(|u| format!("user/{u}"))
        .unwrap_or_else(|_| "user/unknown".into())
}

// The read-consistency flag of every read command. (A doc comment here would become
// the help text of the commands without one of their own.)
#[derive(clap::Args, Clone, Default)]
pub struct ReadArgs {
    /// Serve the read from the answering member's own state (may be stale).
    #[arg(long)]
    pub stale: bool,
}

impl ReadArgs {
    pub fn consistency(&self) -> i32 {
        if self.stale {
            pb::ReadConsistency::Stale as i32
        } else {
            pb::ReadConsistency::Linearizable as i32
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339, Unix milliseconds, or a duration ago (`10m`).
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64));
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms() - d.as_millis() as i64);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    bail!(
        "time {s:?} is neither RFC 3339 (2026-11-22T10:00:00Z), Unix ms, nor a duration ago (10m)"
    )
}

/// `kind/name`, or (when `need_name` is false) a kind alone.
pub fn parse_entity(s: &str, need_name: bool) -> anyhow::Result<pb::EntityRef> {
    match s.split_once('/') {
        Some((k, n)) if !k.is_empty() && !n.is_empty() => Ok(pb::EntityRef {
            kind: k.into(),
            name: n.into(),
        }),
        None if !need_name && !s.is_empty() => Ok(pb::EntityRef {
            kind: s.into(),
            name: String::new(),
        }),
        _ => bail!("entity {s:?} is not kind/name (e.g. namespace/research)"),
    }
}

/// One `key=value` label.
pub fn parse_label(l: &str) -> anyhow::Result<(String, String)> {
    l.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| anyhow!("label {l:?} is not key=value"))
}

/// `key=value` labels.
pub fn parse_labels(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items.iter().map(|l| parse_label(l)).collect()
}

/// A document (job or cron) as JSON, from a YAML or JSON file (`-`: standard input).
pub fn document(file: &str) -> anyhow::Result<String> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => serde_yaml_ng::from_str(&text).context("the file is neither JSON nor YAML")?,
    };
    Ok(serde_json::to_string(&value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_and_labels_parse() {
        assert_eq!(
            parse_entity("namespace/a", true)
                .map(|e| e.to_string())
                .ok(),
            Some("namespace/a".into())
        );
        assert!(parse_entity("namespace", true).is_err());
        assert_eq!(
            parse_entity("namespace", false).map(|e| e.name).ok(),
            Some(String::new())
        );
        assert_eq!(
            parse_label("team=ml").ok(),
            Some(("team".into(), "ml".into()))
        );
        assert!(parse_labels(&["team=ml".into(), "team".into()]).is_err());
    }

    #[test]
    fn times_parse() {
        assert_eq!(
            parse_time("2026-01-01T00:00:00Z").ok(),
            Some(1_767_225_600_000)
        );
        let ago = parse_time("10m").expect("duration");
        assert!((now_ms() - ago - 600_000).abs() < 5_000);
        assert!(parse_time("yesterday-ish").is_err());
    }
}
