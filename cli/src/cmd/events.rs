//! `cairn events`: list the event log, or tail it across leader changes; and the event
//! filter flags (`--entity`, `--type`, `--since`, `--until`, `--after-seq`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use cairn_proto as pb;
use clap::Subcommand;
use tokio_stream::StreamExt;

use crate::client;
use crate::ctx::{parse_entity, Ctx, ReadArgs};
use crate::output::{emit, Format};
use crate::views::{events_table, EventView};

#[derive(Subcommand)]
pub enum EventsCmd {
    /// List events (oldest first).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many events (0: all, paging through).
        #[arg(long, default_value_t = 0)]
        limit: u64,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Print matching events, then follow new ones (survives a leader change).
    Tail {
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(clap::Args, Clone, Default)]
pub struct FilterArgs {
    /// `kind/name` of one entity, or a kind alone.
    #[arg(long)]
    pub entity: Option<String>,
    /// Event type (repeatable), e.g. `namespace_created`.
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Only events at or after: RFC 3339 time, or a duration ago (`10m`, `2h`).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before: RFC 3339 time, or a duration ago.
    #[arg(long)]
    pub until: Option<String>,
    /// Only events with a greater sequence number.
    #[arg(long, default_value_t = 0)]
    pub after_seq: u64,
}

pub async fn run(ctx: &mut Ctx, c: EventsCmd) -> anyhow::Result<()> {
    match c {
        EventsCmd::List {
            filter,
            limit,
            read,
        } => list(ctx, &filter, limit, &read).await,
        EventsCmd::Tail { filter } => tail(ctx, &filter).await,
    }
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

async fn list(ctx: &mut Ctx, f: &FilterArgs, limit: u64, read: &ReadArgs) -> anyhow::Result<()> {
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
            consistency: read.consistency(),
            raw: false,
        };
        let page = ctx
            .cluster
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

async fn tail(ctx: &mut Ctx, f: &FilterArgs) -> anyhow::Result<()> {
    let mut after = f.after_seq;
    let mut failures = 0u32;
    loop {
        let req = pb::WatchEventsRequest {
            filter: Some(filter(f, after)?),
        };
        let stream = ctx
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
        ctx.cluster
            .call(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await })
            .await
            .ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
