//! The agent's own gRPC service: the logs of the replicas it ran, which stay on the node.
//! For `cairn job logs`, a member finds the node from the job's placement and reads from
//! here (`Cairn.ReadReplicaLog`).
//!
//! Read-only. Under TLS only users and members may read (the agent's interceptor, in
//! `agent.rs`); without TLS it listens on loopback unless started `--insecure`.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use cairn_proto as pb;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub struct LogService {
    pub state_dir: PathBuf,
}

type Chunks = Pin<Box<dyn Stream<Item = Result<pb::LogChunk, Status>> + Send>>;

fn valid(part: &str) -> bool {
    !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        && !part.starts_with('.')
}

#[tonic::async_trait]
impl pb::node_agent_server::NodeAgent for LogService {
    type ReadLogStream = Chunks;

    async fn read_log(
        &self,
        req: Request<pb::ReadLogRequest>,
    ) -> Result<Response<Self::ReadLogStream>, Status> {
        let r = req.into_inner();
        if !valid(&r.job) || !valid(&r.role) {
            return Err(Status::invalid_argument("job and role must be names"));
        }
        let path = crate::replicas::log_file(&self.state_dir, &r.job, &r.role, r.index);
        let mut file = tokio::fs::File::open(&path).await.map_err(|_| {
            Status::not_found(format!(
                "no log for {}/{}-{} on this node",
                r.job, r.role, r.index
            ))
        })?;
        let follow = r.follow;
        let stream = async_stream_chunks(move |tx| async move {
            let mut pos = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if file.seek(std::io::SeekFrom::Start(pos)).await.is_err() {
                    return;
                }
                match file.read(&mut buf).await {
                    Ok(0) if follow => tokio::time::sleep(Duration::from_millis(250)).await,
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        pos += n as u64;
                        let chunk = pb::LogChunk {
                            data: buf[..n].to_vec(),
                        };
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task through a channel.
fn async_stream_chunks<F, Fut>(f: F) -> Chunks
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::LogChunk, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
