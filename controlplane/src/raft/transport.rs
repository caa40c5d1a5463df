//! The server side of the Raft transport: decodes openraft's messages and hands them to
//! the local `Raft`; also answers a member's status for `ClusterStatus`.

use std::sync::Arc;

use cairn_proto::raft_transport_server::RaftTransport;
use cairn_proto::RaftMessage;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use super::log_store::LogStore;
use super::{decode, encode, Raft};
use crate::store::state_machine::Shared;

/// A member's own view of itself, as `MemberStatus` returns it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemberReport {
    pub node_id: u64,
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub last_sequence: u64,
    pub rss_bytes: u64,
}

/// Everything a member needs to describe itself.
#[derive(Clone)]
pub struct Local {
    pub raft: Raft,
    pub log: LogStore,
    pub shared: Arc<Shared>,
}

impl Local {
    pub fn report(&self) -> MemberReport {
        let m = self.raft.metrics().borrow().clone();
        let role = if m.current_leader == Some(m.id) {
            "leader".to_string()
        } else if m
            .membership_config
            .membership()
            .learner_ids()
            .any(|l| l == m.id)
        {
            "learner".to_string()
        } else {
            format!("{:?}", m.state).to_lowercase()
        };
        MemberReport {
            node_id: m.id,
            role,
            term: m.current_term,
            leader: m.current_leader,
            commit_index: self.log.committed_index(),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index: m.last_log_index.unwrap_or(0),
            last_sequence: self.shared.read().state.last_sequence(),
            rss_bytes: rss_bytes(),
        }
    }
}

/// Resident memory of this process, from /proc (0 where unavailable).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

pub struct TransportService {
    pub local: Local,
}

fn bad(e: bincode::Error) -> Status {
    Status::invalid_argument(format!("undecodable Raft message: {e}"))
}

fn reply<T: Serialize>(v: &T) -> Result<Response<RaftMessage>, Status> {
    let data = encode(v).map_err(|e| Status::internal(format!("encoding a Raft reply: {e}")))?;
    Ok(Response::new(RaftMessage { data }))
}

#[tonic::async_trait]
impl RaftTransport for TransportService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().data).map_err(bad)?;
        reply(&self.local.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().data).map_err(bad)?;
        reply(&self.local.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().data).map_err(bad)?;
        reply(&self.local.raft.install_snapshot(rpc).await)
    }

    async fn member_status(
        &self,
        _req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        reply(&self.local.report())
    }
}
