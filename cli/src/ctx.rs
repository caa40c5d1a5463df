//! What every command gets: the cluster to talk to (endpoints, retry deadline), who is
//! asking, the output format and the read-consistency flag, with the helpers several
//! commands share: parsing `kind/name`, labels and job or cron documents; submitting a
//! change and printing its events; reading one entity, or the nodes. Commands use this
//! module, never each other.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use cairn_proto as pb;
use pb::command::Body;

use crate::client::Cluster;
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
    ) -> anyhow::Result<Self> {
        let mut cluster = Cluster::new(endpoints)?;
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
}
