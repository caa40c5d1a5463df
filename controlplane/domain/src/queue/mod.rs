//! Job queues: a queue exists as soon as a job names it; it may have a GPU quota, which
//! placement respects (the job waits with that reason).

use std::collections::BTreeMap;

use crate::emit::Emit;
use crate::entity::{At, EntityState};
use crate::rejection::Rejection;
use crate::validate;

pub const KIND: &str = "queue";

/// GPU quotas by queue (a queue without one has no limit).
pub type Quotas = BTreeMap<String, u32>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueCommand {
    /// Set a queue's GPU quota (`None`: no limit).
    SetQuota { queue: String, gpus: Option<u32> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEvent {
    /// A queue's GPU quota (`None`: no limit).
    QuotaSet { gpus: Option<u32> },
}

impl QueueCommand {
    pub fn target(&self) -> &str {
        match self {
            QueueCommand::SetQuota { queue, .. } => queue,
        }
    }

    pub fn problems(&self, p: &mut Vec<String>) {
        match self {
            QueueCommand::SetQuota { queue, .. } => {
                validate::name_problems("set_queue_quota.queue", queue, p)
            }
        }
    }
}

impl QueueEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            QueueEvent::QuotaSet { .. } => "queue_quota_set",
        }
    }
}

pub fn decide(
    quotas: &Quotas,
    cmd: &QueueCommand,
    out: &mut impl Emit<QueueEvent>,
) -> Result<(), Rejection> {
    match cmd {
        QueueCommand::SetQuota { queue, gpus } => {
            if quotas.get(queue).copied() != *gpus {
                out.emit(queue, QueueEvent::QuotaSet { gpus: *gpus });
            }
        }
    }
    Ok(())
}

pub fn evolve(
    quotas: &mut Quotas,
    e: &mut EntityState,
    name: &str,
    event: &QueueEvent,
    at: At<'_>,
) {
    match event {
        QueueEvent::QuotaSet { gpus } => {
            if e.created_ms == 0 {
                e.created_ms = at.timestamp_ms;
            }
            match gpus {
                Some(g) => quotas.insert(name.to_string(), *g),
                None => quotas.remove(name),
            };
        }
    }
}
