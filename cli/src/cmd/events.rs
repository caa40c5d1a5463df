//! `cairn events`: list the event log, or tail it across leader changes; and the event
//! filter flags (`--entity`, `--type`, `--since`, `--until`, `--after-seq`).

use cairn_proto as pb;
use clap::Subcommand;

use crate::ctx::{parse_entity, parse_time, Ctx, ReadArgs};
use crate::output::emit;
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
    /// Only events recorded with this actor, e.g. `user/alice`.
    #[arg(long)]
    pub actor: Option<String>,
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
        actor: f.actor.clone().unwrap_or_default(),
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
    ctx.follow(|after| filter(f, after), f.after_seq).await
}
