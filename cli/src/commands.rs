//! What each subcommand does.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use cairn_proto as pb;
use pb::command::Body;
use tokio_stream::StreamExt;

use crate::client::{self, Cluster};
use crate::output::{self, emit, table, Format};
use crate::views::{labels_line, EntityView, EventView};
use crate::{BenchCmd, Cli, ClusterCmd, Command, EventsCmd, FilterArgs, NoteCmd, NsCmd, ReadArgs};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut cluster = Cluster::new(&cli.endpoints)?;
    cluster.deadline = cli.timeout;
    let ctx = Ctx {
        format: cli.output,
        actor: cli.actor.unwrap_or_else(default_actor),
    };
    match cli.command {
        Command::Cluster(c) => cluster_cmd(&mut cluster, &ctx, c).await,
        Command::Events(EventsCmd::List {
            filter,
            limit,
            read,
        }) => events_list(&mut cluster, &ctx, &filter, limit, &read).await,
        Command::Events(EventsCmd::Tail { filter }) => {
            events_tail(&mut cluster, &ctx, &filter).await
        }
        Command::Ns(c) => ns_cmd(&mut cluster, &ctx, c).await,
        Command::Note(NoteCmd::Add {
            entity,
            text,
            expect_revision,
        }) => {
            let entity = parse_entity(&entity, true)?;
            let resp = submit(
                &mut cluster,
                &ctx,
                Body::AddNote(pb::AddNote {
                    entity: Some(entity),
                    text,
                }),
                expect_revision,
            )
            .await?;
            print_submitted(&ctx, &resp)
        }
        Command::Get { entity, read } => {
            let entity = parse_entity(&entity, true)?;
            get_entity(&mut cluster, &ctx, entity, &read).await
        }
        Command::Bench(BenchCmd::Append(args)) => crate::bench::append(&cluster, args).await,
        Command::Bench(BenchCmd::Summary(args)) => crate::bench_summary::summary(args),
        Command::Bench(BenchCmd::Jobs(args)) => crate::bench_jobs::jobs(&mut cluster, args).await,
        Command::Bench(BenchCmd::Agents(args)) => {
            crate::bench_agents::agents(&mut cluster, args).await
        }
        Command::Node(c) => crate::nodes::node_cmd(&mut cluster, &ctx, c).await,
        Command::Gpu(c) => crate::nodes::gpu_cmd(&mut cluster, &ctx, c).await,
        Command::Lease(c) => crate::nodes::lease_cmd(&mut cluster, &ctx, c).await,
        Command::Job(c) => crate::jobs::job_cmd(&mut cluster, &ctx, c).await,
        Command::Cron(c) => crate::jobs::cron_cmd(&mut cluster, &ctx, c).await,
        Command::Queue(c) => crate::jobs::queue_cmd(&mut cluster, &ctx, c).await,
    }
}

pub(crate) struct Ctx {
    pub format: Format,
    pub actor: String,
}

fn default_actor() -> String {
    std::env::var("USER")
        .map(|u| format!("user/{u}"))
        .unwrap_or_else(|_| "user/unknown".into())
}

pub(crate) fn consistency(r: &ReadArgs) -> i32 {
    if r.stale {
        pb::ReadConsistency::Stale as i32
    } else {
        pb::ReadConsistency::Linearizable as i32
    }
}

/// `kind/name`, or (when `need_name` is false) a kind alone.
fn parse_entity(s: &str, need_name: bool) -> anyhow::Result<pb::EntityRef> {
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

fn parse_labels(items: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("label {l:?} is not key=value"))
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339, Unix milliseconds, or a duration ago (`10m`).
fn parse_time(s: &str) -> anyhow::Result<i64> {
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

fn filter(f: &FilterArgs, after: u64) -> anyhow::Result<pb::EventFilter> {
    Ok(pb::EventFilter {
        entity: f
            .entity
            .as_deref()
            .map(|e| parse_entity(e, false))
            .transpose()?,
        types: f.types.clone(),
        since_ms: f.since.as_deref().map(parse_time).transpose()?,
        until_ms: f.until.as_deref().map(parse_time).transpose()?,
        after_sequence: after,
    })
}

pub(crate) async fn submit(
    cluster: &mut Cluster,
    ctx: &Ctx,
    body: Body,
    expected_revision: Option<u64>,
) -> anyhow::Result<pb::SubmitResponse> {
    let cmd = pb::Command {
        actor: ctx.actor.clone(),
        expected_revision,
        body: Some(body),
        ..Default::default()
    };
    cluster
        .call_write(|mut c| {
            let cmd = cmd.clone();
            async move { c.submit(pb::SubmitRequest { command: Some(cmd) }).await }
        })
        .await
}

pub(crate) fn print_submitted(ctx: &Ctx, resp: &pb::SubmitResponse) -> anyhow::Result<()> {
    let views: Vec<EventView> = resp.events.iter().map(EventView::from).collect();
    emit(ctx.format, &views, || events_table(&views))?;
    if ctx.format == Format::Table && views.is_empty() {
        println!("(no change)");
    }
    Ok(())
}

fn events_table(views: &[EventView]) -> comfy_table::Table {
    let mut t = table(&["SEQ", "TIME", "ENTITY", "REV", "TYPE", "ACTOR", "DETAILS"]);
    for v in views {
        t.add_row(vec![
            v.sequence.to_string(),
            v.time.clone(),
            v.entity.clone(),
            v.entity_revision.to_string(),
            v.kind.clone(),
            v.actor.clone(),
            v.details(),
        ]);
    }
    t
}

async fn cluster_cmd(cluster: &mut Cluster, ctx: &Ctx, c: ClusterCmd) -> anyhow::Result<()> {
    match c {
        ClusterCmd::Status => {
            let s = cluster
                .call(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await })
                .await?;
            emit(ctx.format, &s, || {
                let mut t = table(&[
                    "ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAST LOG", "LAST SEQ",
                    "RSS",
                ]);
                for m in &s.members {
                    t.add_row(vec![
                        m.node_id.to_string(),
                        m.address.clone(),
                        if m.error.is_empty() {
                            m.role.clone()
                        } else {
                            format!("{} ({})", m.role, m.error)
                        },
                        m.term.to_string(),
                        m.commit_index.to_string(),
                        m.applied_index.to_string(),
                        m.last_log_index.to_string(),
                        m.last_sequence.to_string(),
                        output::bytes(m.rss_bytes),
                    ]);
                }
                t
            })?;
            if ctx.format == Format::Table {
                match s.leader_id {
                    0 => println!("no leader (term {})", s.term),
                    l => println!("leader: node {l}, term {}", s.term),
                }
            }
            Ok(())
        }
        ClusterCmd::AddLearner { node_id, address } => {
            let r = cluster
                .call_write(|mut c| {
                    let address = address.clone();
                    async move {
                        c.add_learner(pb::AddLearnerRequest { node_id, address })
                            .await
                    }
                })
                .await?;
            print_membership(ctx, &r)
        }
        ClusterCmd::Promote { node_id } => {
            let r = cluster
                .call_write(|mut c| async move { c.promote(pb::PromoteRequest { node_id }).await })
                .await?;
            print_membership(ctx, &r)
        }
        ClusterCmd::Remove { node_id } => {
            let r = cluster
                .call_write(|mut c| async move {
                    c.remove_member(pb::RemoveMemberRequest { node_id }).await
                })
                .await?;
            print_membership(ctx, &r)
        }
    }
}

fn print_membership(ctx: &Ctx, r: &pb::MembershipResponse) -> anyhow::Result<()> {
    emit(ctx.format, r, || {
        let mut t = table(&["VOTERS", "LEARNERS", "RAFT INDEX"]);
        let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        t.add_row(vec![
            ids(&r.voters),
            ids(&r.learners),
            r.raft_index.to_string(),
        ]);
        t
    })
}

async fn events_list(
    cluster: &mut Cluster,
    ctx: &Ctx,
    f: &FilterArgs,
    limit: u64,
    read: &ReadArgs,
) -> anyhow::Result<()> {
    let mut after = f.after_seq;
    let mut all: Vec<pb::Event> = Vec::new();
    loop {
        let want = if limit == 0 {
            10_000
        } else {
            (limit - all.len() as u64).min(10_000)
        } as u32;
        let req = pb::ListEventsRequest {
            filter: Some(filter(f, after)?),
            limit: want,
            consistency: consistency(read),
            raw: false,
        };
        let page = cluster
            .call(|mut c| {
                let req = req.clone();
                async move { c.list_events(req).await }
            })
            .await?;
        all.extend(page.events);
        if page.next_after_sequence == 0 || (limit > 0 && all.len() as u64 >= limit) {
            break;
        }
        after = page.next_after_sequence;
    }
    let views: Vec<EventView> = all.iter().map(EventView::from).collect();
    emit(ctx.format, &views, || events_table(&views))
}

async fn events_tail(cluster: &mut Cluster, ctx: &Ctx, f: &FilterArgs) -> anyhow::Result<()> {
    let mut after = f.after_seq;
    let mut failures = 0u32;
    loop {
        let req = pb::WatchEventsRequest {
            filter: Some(filter(f, after)?),
        };
        let stream = cluster
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
                    let v = EventView::from(&e);
                    match ctx.format {
                        Format::Json => println!("{}", serde_json::to_string(&v)?),
                        Format::Yaml => print!("---\n{}", serde_yaml_ng::to_string(&v)?),
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
        cluster
            .call(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await })
            .await
            .ok();
    }
}

async fn get_entity(
    cluster: &mut Cluster,
    ctx: &Ctx,
    entity: pb::EntityRef,
    read: &ReadArgs,
) -> anyhow::Result<()> {
    let req = pb::GetEntityRequest {
        entity: Some(entity),
        consistency: consistency(read),
    };
    let r = cluster
        .call(|mut c| {
            let req = req.clone();
            async move { c.get_entity(req).await }
        })
        .await?;
    let e = r.entity.context("the server answered without an entity")?;
    let v = EntityView::from(&e);
    emit(ctx.format, &v, || entities_table(std::slice::from_ref(&v)))
}

fn entities_table(views: &[EntityView]) -> comfy_table::Table {
    let mut t = table(&[
        "ENTITY", "REV", "CREATED", "UPDATED", "LABELS", "NOTES", "DELETED",
    ]);
    for v in views {
        t.add_row(vec![
            v.entity.clone(),
            v.revision.to_string(),
            v.created.clone(),
            v.updated.clone(),
            labels_line(&v.labels),
            v.notes.to_string(),
            v.deleted.to_string(),
        ]);
    }
    t
}

async fn ns_cmd(cluster: &mut Cluster, ctx: &Ctx, c: NsCmd) -> anyhow::Result<()> {
    match c {
        NsCmd::Create { name, labels } => {
            let labels = parse_labels(&labels)?;
            let r = submit(
                cluster,
                ctx,
                Body::CreateNamespace(pb::CreateNamespace { name, labels }),
                None,
            )
            .await?;
            print_submitted(ctx, &r)
        }
        NsCmd::Get { name, read } => {
            get_entity(
                cluster,
                ctx,
                pb::EntityRef {
                    kind: "namespace".into(),
                    name,
                },
                &read,
            )
            .await
        }
        NsCmd::List { all, read } => {
            let req = pb::ListEntitiesRequest {
                kind: "namespace".into(),
                include_deleted: all,
                consistency: consistency(&read),
            };
            let r = cluster
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.list_entities(req).await }
                })
                .await?;
            let views: Vec<EntityView> = r.entities.iter().map(EntityView::from).collect();
            emit(ctx.format, &views, || entities_table(&views))
        }
        NsCmd::Label {
            name,
            changes,
            replace,
            expect_revision,
        } => {
            let mut set = BTreeMap::new();
            let mut remove = Vec::new();
            for c in &changes {
                if let Some(k) = c.strip_suffix('-').filter(|_| !c.contains('=')) {
                    remove.push(k.to_string());
                } else {
                    set.extend(parse_labels(std::slice::from_ref(c))?);
                }
            }
            let body = Body::SetNamespaceLabels(pb::SetNamespaceLabels {
                name,
                set,
                remove,
                replace,
            });
            let r = submit(cluster, ctx, body, expect_revision).await?;
            print_submitted(ctx, &r)
        }
        NsCmd::Delete {
            name,
            expect_revision,
        } => {
            let r = submit(
                cluster,
                ctx,
                Body::DeleteNamespace(pb::DeleteNamespace { name }),
                expect_revision,
            )
            .await?;
            print_submitted(ctx, &r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_and_times_parse() {
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
            parse_time("2026-01-01T00:00:00Z").ok(),
            Some(1_767_225_600_000)
        );
        let ago = parse_time("10m").expect("duration");
        assert!((now_ms() - ago - 600_000).abs() < 5_000);
        assert!(parse_time("yesterday-ish").is_err());
    }
}
