//! `SubmitStream`: many commands over one call. Each request is checked like
//! `Submit`'s, proposed as it arrives (up to a window in flight) and answered in
//! arrival order with its own outcome or error. A request that cannot be read (it does
//! not decode, or is over the size limit) ends the stream — but only after every request
//! accepted before it has its answer — with that error, naming which request it was.

use std::time::Instant;

use cairn_proto as pb;
use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::request::{command, Stamp};
use crate::app::{App, AppError};
use crate::metrics::{self, Stage};

/// Commands of one stream in flight at once (the client's pipelining window).
pub const WINDOW: usize = 1024;

/// Answer the requests of `input` on `tx`, in order, until the input ends.
pub async fn answer(
    app: App,
    mut input: Streaming<pb::SubmitRequest>,
    stamp: Stamp,
    tx: mpsc::Sender<Result<pb::SubmitStreamResponse, Status>>,
) {
    let mut pending = futures::stream::FuturesOrdered::new();
    let mut received = 0u64;
    let mut open = true;
    // Why the input ended early, once every accepted request is answered.
    let mut failed: Option<Status> = None;
    while open || !pending.is_empty() {
        tokio::select! {
            Some(answer) = pending.next(), if !pending.is_empty() => {
                if tx.send(Ok(answer)).await.is_err() {
                    return; // The client went away: what is pending still commits.
                }
            }
            m = input.message(), if open && pending.len() < WINDOW => match m {
                Ok(Some(r)) => {
                    received += 1;
                    let (app, stamp) = (app.clone(), stamp.clone());
                    pending.push_back(async move { submit_one(&app, r, &stamp).await });
                }
                Ok(None) => open = false,
                Err(s) => {
                    open = false;
                    failed = Some(Status::new(
                        s.code(),
                        format!("request {} of the stream: {}", received + 1, s.message()),
                    ));
                }
            }
        }
    }
    if let Some(s) = failed {
        let _ = tx.send(Err(s)).await;
    }
}

/// One command of a stream, answered with its outcome or its own error.
async fn submit_one(app: &App, req: pb::SubmitRequest, stamp: &Stamp) -> pb::SubmitStreamResponse {
    use pb::submit_stream_response::Result as R;
    let start = Instant::now();
    let outcome = match req.command {
        None => Err(AppError::Invalid(vec!["command: required".into()])),
        Some(cmd) => match command(cmd, stamp).and_then(|c| app.accept(c)) {
            Ok(cmd) => {
                metrics::stage_since(Stage::Edge, start);
                app.propose(&cmd).await
            }
            Err(e) => Err(e),
        },
    };
    metrics::stage_since(Stage::Total, start);
    let result = match outcome {
        Ok(a) => R::Ok(pb::SubmitResponse {
            events: a.events,
            entity_revision: a.entity_revision,
            raft_index: a.raft_index,
        }),
        Err(e) => {
            let leader = match &e {
                AppError::NotLeader {
                    leader: Some((_, addr)),
                } => addr.clone(),
                _ => String::new(),
            };
            let status = Status::from(e);
            R::Error(pb::SubmitError {
                code: status.code() as u32,
                message: status.message().to_string(),
                not_applied: cairn_proto::certainly_not_applied(&status),
                leader,
            })
        }
    };
    pb::SubmitStreamResponse {
        result: Some(result),
    }
}
