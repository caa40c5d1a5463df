//! The member-to-member service (`cairn.v1.RaftTransport`): decodes openraft's messages
//! and hands them to the local `Raft`; also answers a member's status for
//! `ClusterStatus` and the live-majority probe.

use cairn_proto::raft_transport_server::RaftTransport;
use cairn_proto::RaftMessage;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::status::status;
use crate::app::App;
use crate::raft::{decode, encode};

pub struct RaftService {
    app: App,
}

impl RaftService {
    pub fn new(app: App) -> Self {
        Self { app }
    }
}

fn bad(e: bincode::Error) -> Status {
    Status::invalid_argument(format!("undecodable Raft message: {e}"))
}

fn reply<T: Serialize>(v: &T) -> Result<Response<RaftMessage>, Status> {
    let data = encode(v).map_err(|e| Status::internal(format!("encoding a Raft reply: {e}")))?;
    Ok(Response::new(RaftMessage { data }))
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let start = std::time::Instant::now();
        let rpc: openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> =
            decode(&req.into_inner().data).map_err(bad)?;
        let carries_entries = !rpc.entries.is_empty();
        let answer = reply(&self.app.raft().append_entries(rpc).await);
        if carries_entries {
            crate::metrics::stage_since(crate::metrics::Stage::FollowerAppend, start);
        }
        answer
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().data).map_err(bad)?;
        reply(&self.app.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&req.into_inner().data).map_err(bad)?;
        reply(&self.app.raft().install_snapshot(rpc).await)
    }

    async fn member_status(
        &self,
        _req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        reply(&self.app.report())
    }

    async fn read_index(
        &self,
        _req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let index = self.app.read_index_as_leader().await.map_err(status)?;
        reply(&index)
    }
}
