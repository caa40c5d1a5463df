//! The member-to-member service (`cairn.v1.RaftTransport`): decodes openraft's messages
//! and hands them to the local `Raft`; also answers a member's status for
//! `ClusterStatus` and the live-majority probe.

use std::pin::Pin;

use cairn_proto::raft_transport_server::RaftTransport;
use cairn_proto::RaftMessage;
use futures::{Stream, StreamExt};
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

/// Decode an AppendEntries request and hand it to the local Raft now (requests handed
/// in one after another are handled in that order); the future is its encoded answer.
fn submit(
    app: &App,
    req: RaftMessage,
) -> impl std::future::Future<Output = Result<RaftMessage, Status>> + Send + 'static {
    let start = std::time::Instant::now();
    let rpc: Result<openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig>, _> =
        decode(&req.data).map_err(bad);
    let submitted = rpc.map(|rpc| {
        (
            !rpc.entries.is_empty(),
            app.raft().append_entries_in_order(rpc),
        )
    });
    async move {
        let (carries_entries, answer) = submitted?;
        let answer = message(&answer.await);
        if carries_entries {
            crate::metrics::stage_since(crate::metrics::Stage::FollowerAppend, start);
        }
        answer
    }
}

/// Appends a leader may have sent down a replication stream that this member has taken
/// and not yet answered.
const STREAM_DEPTH: usize = 16;

type Answers = Pin<Box<dyn Stream<Item = Result<RaftMessage, Status>> + Send>>;
/// An append handed to Raft, until its answer.
type Pending = Pin<Box<dyn std::future::Future<Output = Result<RaftMessage, Status>> + Send>>;

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        submit(&self.app, req.into_inner()).await.map(Response::new)
    }

    type AppendEntriesStreamStream = Answers;

    /// Requests are taken as they come (up to [`STREAM_DEPTH`] unanswered) and handed to
    /// Raft in order, so the next append is queued while the one before it is written;
    /// their answers go back in the same order. The stream ends with the first error.
    async fn append_entries_stream(
        &self,
        req: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Answers>, Status> {
        let mut input = req.into_inner();
        let app = self.app.clone();
        let (taken, answers) = tokio::sync::mpsc::channel::<Pending>(STREAM_DEPTH);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = input.message() => next,
                    () = taken.closed() => return,
                };
                let (pending, last): (Pending, bool) = match next {
                    Ok(Some(req)) => (Box::pin(submit(&app, req)), false),
                    Ok(None) => return,
                    Err(status) => (Box::pin(std::future::ready(Err(status))), true),
                };
                if taken.send(pending).await.is_err() || last {
                    return;
                }
            }
        });
        let answers = tokio_stream::wrappers::ReceiverStream::new(answers)
            .then(|pending| pending)
            .scan(false, |failed, answer| {
                let out = (!*failed).then_some(answer);
                *failed = out.as_ref().is_some_and(Result::is_err);
                std::future::ready(out)
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
