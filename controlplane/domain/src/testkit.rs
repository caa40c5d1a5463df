//! What the aggregates' tests share: commands stamped like the leader's, decide-and-fold,
//! nodes to place on, and documents turned into commands as the edge does it.

use crate::core::{decide, Command, CommandBody, Event, State};
use crate::cron::{self, CronCommand};
use crate::entity::Position;
use crate::job::{self, JobCommand};
use crate::node::{GpuInfo, GpuLink, NodeCommand, NodeInventory, PcieLevel};
use crate::rejection::Rejection;

pub fn cmd(body: CommandBody) -> Command {
    Command {
        timestamp_ms: 5_000,
        actor: "alice".into(),
        role: None,
        bearer: Vec::new(),
        correlation_id: "c".into(),
        expected_revision: None,
        body,
    }
}

pub fn apply(state: &mut State, c: &Command) -> Result<Vec<Event>, Rejection> {
    let pos = Position {
        raft_index: state.last_sequence() + 1,
        raft_term: 1,
    };
    let events = decide(state, c, pos)?;
    for e in &events {
        state.evolve(e);
    }
    Ok(events)
}

/// Every pair NV18.
pub fn nvswitch(node: &str) -> NodeInventory {
    let mut links = Vec::new();
    for a in 0..8u32 {
        for b in a + 1..8 {
            links.push(GpuLink {
                a,
                b,
                nvlinks: 18,
                pcie: PcieLevel::SameNuma,
            });
        }
    }
    inventory(node, 8, links)
}

pub fn inventory(node: &str, gpus: u32, links: Vec<GpuLink>) -> NodeInventory {
    NodeInventory {
        hostname: node.into(),
        cpu_millis: 64_000,
        memory_bytes: 512 << 30,
        gpus: (0..gpus)
            .map(|i| GpuInfo {
                index: i,
                uuid: format!("{node}-gpu{i}"),
                ..GpuInfo::default()
            })
            .collect(),
        links,
        port_range_start: 20000,
        port_range_end: 20099,
        ..NodeInventory::default()
    }
}

pub fn register(state: &mut State, inv: NodeInventory) {
    let node = inv.hostname.clone();
    apply(
        state,
        &cmd(CommandBody::Node(NodeCommand::Register {
            node: node.clone(),
            inventory: Box::new(inv),
            token_digest: node.into_bytes(),
        })),
    )
    .expect("registered");
}

/// A job document as the edge turns it into a command (or refuses it).
pub fn job_body(json: &str) -> Result<CommandBody, Rejection> {
    let doc = job::parse(json).map_err(|p| Rejection::InvalidArgument(p.join("; ")))?;
    Ok(CommandBody::Job(JobCommand::Submit { doc: Box::new(doc) }))
}

/// A cron document as the edge turns it into a command (or refuses it).
pub fn cron_body(json: &str) -> Result<CommandBody, Rejection> {
    let doc = cron::parse(json).map_err(|p| Rejection::InvalidArgument(p.join("; ")))?;
    Ok(CommandBody::Cron(CronCommand::Submit {
        doc: Box::new(doc),
    }))
}

pub fn at(ts: i64, body: CommandBody) -> Command {
    Command {
        timestamp_ms: ts,
        ..cmd(body)
    }
}

pub fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.payload.type_name()).collect()
}
