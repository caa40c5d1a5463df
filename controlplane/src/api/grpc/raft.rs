//! The member-to-member service (`cairn.v1.RaftTransport`): decodes openraft's messages
//! and hands them to the local `Raft`; also answers a member's status for
//! `ClusterStatus` and the live-majority probe.

use std::pin::Pin;

use cairn_proto::raft_transport_server::RaftTransport;
use cairn_proto::RaftMessage;
use futures::Stream;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

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
    message(v).map(Response::new)
}

fn message<T: Serialize>(v: &T) -> Result<RaftMessage, Status> {
    let data = encode(v).map_err(|e| Status::internal(format!("encoding a Raft reply: {e}")))?;
    Ok(RaftMessage { data })
}

/// Hand one AppendEntries request to the local Raft and encode its answer.
async fn append(app: &App, req: RaftMessage) -> Result<RaftMessage, Status> {
    let start = std::time::Instant::now();
    let rpc: openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> =
        decode(&req.data).map_err(bad)?;
    let carries_entries = !rpc.entries.is_empty();
    let answer = message(&app.raft().append_entries(rpc).await);
    if carries_entries {
        crate::metrics::stage_since(crate::metrics::Stage::FollowerAppend, start);
    }
    answer
}

type Answers = Pin<Box<dyn Stream<Item = Result<RaftMessage, Status>> + Send>>;

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        append(&self.app, req.into_inner()).await.map(Response::new)
    }

    type AppendEntriesStreamStream = Answers;

    /// Each request is answered before the next is read, on the task that sends the
    /// answers (no task or channel of its own). The stream ends with the first error.
    async fn append_entries_stream(
        &self,
        req: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Answers>, Status> {
        let state = (req.into_inner(), self.app.clone(), false);
        let answers = futures::stream::unfold(state, |(mut input, app, failed)| async move {
            if failed {
                return None;
            }
            let answer = match input.message().await {
                Ok(Some(req)) => append(&app, req).await,
                Ok(None) => return None,
                Err(status) => Err(status),
            };
            let failed = answer.is_err();
            Some((answer, (input, app, failed)))
        });
        Ok(Response::new(Box::pin(answers)))
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
