//! The client side of the Raft transport: openraft's RPCs over tonic gRPC.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_proto::raft_transport_client::RaftTransportClient;
use cairn_proto::tls::TlsFiles;
use cairn_proto::RaftMessage;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::Channel;

use super::{decode, encode, Node, NodeId, TypeConfig};

/// A lazily connected gRPC channel to the member at `addr` (`host:port`), over mutual
/// TLS as this member when `tls` is given.
pub fn channel(
    addr: &str,
    tls: Option<Arc<TlsFiles>>,
) -> Result<Channel, cairn_proto::BadEndpoint> {
    cairn_proto::Dial::new()
        .connect_timeout(Duration::from_millis(500))
        .keep_alive(Duration::from_secs(5))
        .tls(tls)
        .channel(addr)
}

/// The channel to each member, by id, with the address it was dialled at.
type Channels = Arc<Mutex<HashMap<NodeId, (String, Channel)>>>;

/// Creates a [`Connection`] whenever openraft asks: once per replication stream, but
/// also for every read-index round and every election. They all share one channel (one
/// HTTP/2 connection) per member, so a round costs two messages, not a TCP handshake;
/// a channel that failed a call is dropped, and the next connection dials afresh.
#[derive(Clone)]
pub struct Network {
    id: NodeId,
    /// The most bytes one Raft message may carry (both directions).
    max_message_bytes: usize,
    channels: Channels,
    tls: Option<Arc<TlsFiles>>,
}

impl Network {
    pub fn new(id: NodeId, max_message_bytes: usize, tls: Option<Arc<TlsFiles>>) -> Self {
        Self {
            id,
            max_message_bytes,
            channels: Channels::default(),
            tls,
        }
    }

    /// The shared channel to `target` at `addr`, dialling (lazily) when there is none.
    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, c)) = channels.get(&target) {
            if at == addr {
                return Ok(c.clone());
            }
        }
        let c = channel(addr, self.tls.clone()).map_err(|e| e.to_string())?;
        channels.insert(target, (addr.to_string(), c.clone()));
        Ok(c)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        let client = self.channel(target, &node.addr).map(|c| {
            RaftTransportClient::new(c)
                .max_decoding_message_size(self.max_message_bytes)
                .max_encoding_message_size(self.max_message_bytes)
        });
        Connection {
            id: self.id,
            target,
            addr: node.addr.clone(),
            client,
            channels: self.channels.clone(),
            replication: Replication::NotOpen,
        }
    }
}

pub struct Connection {
    id: NodeId,
    target: NodeId,
    addr: String,
    client: Result<RaftTransportClient<Channel>, String>,
    channels: Channels,
    replication: Replication,
}

/// How this connection sends AppendEntries.
enum Replication {
    /// Over a stream, opened with the next append.
    NotOpen,
    /// Over this stream: each request's answer is read before the next is sent.
    Open {
        requests: tokio::sync::mpsc::Sender<RaftMessage>,
        answers: Box<tonic::Streaming<RaftMessage>>,
    },
    /// One unary call each: the peer does not serve the stream (an older member).
    Unary,
}

/// Send one AppendEntries over the replication stream, opening it first when there is
/// none. The stream is put back only once its answer has arrived, so a call abandoned
/// midway (a timeout) leaves no answer behind for the next one to read: the next call
/// opens a new stream.
async fn append_over_stream(
    client: &mut RaftTransportClient<Channel>,
    replication: &mut Replication,
    msg: RaftMessage,
) -> Result<RaftMessage, tonic::Status> {
    let (requests, mut answers) = match std::mem::replace(replication, Replication::NotOpen) {
        Replication::Open { requests, answers } => {
            requests
                .send(msg)
                .await
                .map_err(|_| tonic::Status::unavailable("the replication stream closed"))?;
            (requests, answers)
        }
        Replication::NotOpen => {
            let (requests, rx) = tokio::sync::mpsc::channel(1);
            let answers = match client
                .append_entries_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            {
                Ok(answers) => Box::new(answers.into_inner()),
                Err(status) if status.code() == tonic::Code::Unimplemented => {
                    *replication = Replication::Unary;
                    return Ok(client.append_entries(msg).await?.into_inner());
                }
                Err(status) => return Err(status),
            };
            requests
                .send(msg)
                .await
                .map_err(|_| tonic::Status::unavailable("the replication stream closed"))?;
            (requests, answers)
        }
        Replication::Unary => {
            *replication = Replication::Unary;
            return Ok(client.append_entries(msg).await?.into_inner());
        }
    };
    match answers.message().await? {
        Some(answer) => {
            *replication = Replication::Open { requests, answers };
            Ok(answer)
        }
        None => Err(tonic::Status::unavailable("the replication stream ended")),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl Connection {
    /// Send one message and decode the remote `Result<Resp, RaftError<E>>`; after a
    /// transport failure, forget the shared channel so the next connection dials anew.
    async fn call<Req, Resp, E>(
        &mut self,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let result = self.send(action, req, option).await;
        if let Err(RPCError::Timeout(_) | RPCError::Unreachable(_) | RPCError::Network(_)) = &result
        {
            let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            if channels
                .get(&self.target)
                .is_some_and(|(at, _)| *at == self.addr)
            {
                channels.remove(&self.target);
            }
            // The member may come back upgraded: ask it for the stream again.
            self.replication = Replication::NotOpen;
        }
        result
    }

    async fn send<Req, Resp, E>(
        &mut self,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&TransportError(
                    e.clone(),
                ))))
            }
        };
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let msg = RaftMessage { data };
        let ttl = option.hard_ttl();
        let replication = &mut self.replication;
        let fut = async {
            match action {
                RPCTypes::Vote => client.vote(msg).await.map(tonic::Response::into_inner),
                RPCTypes::AppendEntries => append_over_stream(client, replication, msg).await,
                RPCTypes::InstallSnapshot => client
                    .install_snapshot(msg)
                    .await
                    .map(tonic::Response::into_inner),
            }
        };
        let reply = match tokio::time::timeout(ttl, fut).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout: ttl,
                }))
            }
            Ok(Err(status)) => {
                let e = TransportError(format!("{}: {}", status.code(), status.message()));
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Cancelled => {
                        RPCError::Unreachable(Unreachable::new(&e))
                    }
                    _ => RPCError::Network(NetworkError::new(&e)),
                });
            }
            Ok(Ok(r)) => r,
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        // Heartbeats carry no entries: only appends are a stage of a write.
        let carries_entries = !rpc.entries.is_empty();
        if let Some(first) = rpc.entries.first() {
            crate::metrics::marks().sending(first.log_id.index);
        }
        let start = std::time::Instant::now();
        let answer = self.call(RPCTypes::AppendEntries, &rpc, &option).await;
        if carries_entries && answer.is_ok() {
            crate::metrics::stage_since(crate::metrics::Stage::Replicate, start);
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let last_chunk = rpc.done;
        let answer = self.call(RPCTypes::InstallSnapshot, &rpc, &option).await;
        if last_chunk && answer.is_ok() {
            crate::metrics::get().snapshots_sent.inc();
        }
        answer
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(RPCTypes::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use cairn_proto::raft_transport_server::{RaftTransport, RaftTransportServer};
    use cairn_proto::RaftMessage;
    use openraft::error::{RPCError, RaftError};
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
    use openraft::Vote;
    use tonic::{Request, Response, Status, Streaming};

    use super::Network;
    use crate::raft::{encode, Node, NodeId, TypeConfig};

    /// A follower's transport that answers every append with success and counts how
    /// they came; `streams: false` answers the stream as a member without it does.
    #[derive(Clone, Default)]
    struct Follower {
        streams: bool,
        /// Appends over a stream wait this long before answering (the first only).
        stall_first: Option<Duration>,
        unary: Arc<AtomicUsize>,
        opened: Arc<AtomicUsize>,
        streamed: Arc<AtomicUsize>,
    }

    fn success() -> RaftMessage {
        let answer: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
            Ok(AppendEntriesResponse::Success);
        RaftMessage {
            data: encode(&answer).expect("encode"),
        }
    }

    type Answers =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<RaftMessage, Status>> + Send>>;

    #[tonic::async_trait]
    impl RaftTransport for Follower {
        async fn append_entries(
            &self,
            _req: Request<RaftMessage>,
        ) -> Result<Response<RaftMessage>, Status> {
            self.unary.fetch_add(1, Ordering::SeqCst);
            Ok(Response::new(success()))
        }

        type AppendEntriesStreamStream = Answers;

        async fn append_entries_stream(
            &self,
            req: Request<Streaming<RaftMessage>>,
        ) -> Result<Response<Answers>, Status> {
            if !self.streams {
                return Err(Status::unimplemented("not served here"));
            }
            self.opened.fetch_add(1, Ordering::SeqCst);
            let this = self.clone();
            let answers = futures::stream::unfold(req.into_inner(), move |mut input| {
                let this = this.clone();
                async move {
                    input.message().await.ok()??;
                    let n = this.streamed.fetch_add(1, Ordering::SeqCst);
                    if let (0, Some(stall)) = (n, this.stall_first) {
                        tokio::time::sleep(stall).await;
                    }
                    Some((Ok(success()), input))
                }
            });
            Ok(Response::new(Box::pin(answers)))
        }

        async fn vote(&self, _r: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("vote"))
        }

        async fn install_snapshot(
            &self,
            _r: Request<RaftMessage>,
        ) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("install_snapshot"))
        }

        async fn member_status(
            &self,
            _r: Request<RaftMessage>,
        ) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("member_status"))
        }

        async fn read_index(
            &self,
            _r: Request<RaftMessage>,
        ) -> Result<Response<RaftMessage>, Status> {
            Err(Status::unimplemented("read_index"))
        }
    }

    /// A follower's server on a runtime of its own; dropping it is the process exiting.
    struct Served(Option<tokio::runtime::Runtime>);

    impl Drop for Served {
        fn drop(&mut self) {
            if let Some(rt) = self.0.take() {
                rt.shutdown_background();
            }
        }
    }

    async fn serve(follower: Follower) -> (String, Served) {
        serve_at("127.0.0.1:0", follower).await
    }

    /// Serve `follower` at `addr`, on a runtime of its own: dropping it drops the
    /// listener and every connection.
    async fn serve_at(addr: &str, follower: Follower) -> (String, Served) {
        // A runtime just shut down may not have closed its listener yet.
        let mut tries = 0;
        let std_listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr").to_string();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            let _ = tonic::transport::Server::builder()
                .add_service(RaftTransportServer::new(follower))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        (addr, Served(Some(rt)))
    }

    fn heartbeat() -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        }
    }

    async fn connect(addr: &str) -> super::Connection {
        Network::new(1, 4 << 20, None)
            .new_client(2, &Node { addr: addr.into() })
            .await
    }

    #[tokio::test]
    async fn appends_share_one_stream_and_a_timed_out_one_opens_another() {
        let follower = Follower {
            streams: true,
            stall_first: Some(Duration::from_millis(1500)),
            ..Follower::default()
        };
        let (addr, _server) = serve(follower.clone()).await;
        let mut conn = connect(&addr).await;

        // The first answer stalls past the deadline: the call times out, and its late
        // answer must not be taken as the next call's.
        let short = RPCOption::new(Duration::from_millis(300));
        let timed_out = conn.append_entries(heartbeat(), short).await;
        assert!(
            matches!(timed_out, Err(RPCError::Timeout(_))),
            "{timed_out:?}"
        );

        let option = RPCOption::new(Duration::from_secs(5));
        for _ in 0..5 {
            let answer = conn
                .append_entries(heartbeat(), option.clone())
                .await
                .expect("append");
            assert_eq!(answer, AppendEntriesResponse::Success);
        }
        // One stream for the abandoned call, one for the five after it.
        assert_eq!(follower.opened.load(Ordering::SeqCst), 2);
        assert_eq!(follower.streamed.load(Ordering::SeqCst), 6);
        assert_eq!(follower.unary.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_member_without_the_stream_is_sent_unary_calls() {
        let follower = Follower::default();
        let (addr, _server) = serve(follower.clone()).await;
        let mut conn = connect(&addr).await;
        let option = RPCOption::new(Duration::from_secs(5));
        for _ in 0..3 {
            let answer = conn
                .append_entries(heartbeat(), option.clone())
                .await
                .expect("append");
            assert_eq!(answer, AppendEntriesResponse::Success);
        }
        assert_eq!(follower.unary.load(Ordering::SeqCst), 3);
        assert_eq!(follower.opened.load(Ordering::SeqCst), 0);
    }

    /// A member that goes away and comes back upgraded (it now serves the stream) is
    /// asked for the stream again.
    #[tokio::test]
    async fn a_member_that_comes_back_upgraded_is_streamed_to() {
        let old = Follower::default();
        let (addr, server) = serve_at("127.0.0.1:0", old.clone()).await;
        let mut conn = connect(&addr).await;
        let option = RPCOption::new(Duration::from_secs(2));
        conn.append_entries(heartbeat(), option.clone())
            .await
            .expect("append");
        assert_eq!(old.unary.load(Ordering::SeqCst), 1);

        drop(server);
        // While it is away, appends fail (as the leader's heartbeats would).
        assert!(conn
            .append_entries(heartbeat(), option.clone())
            .await
            .is_err());
        let new = Follower {
            streams: true,
            ..Follower::default()
        };
        let (_, _server) = serve_at(&addr, new.clone()).await;
        let mut answered = 0;
        for _ in 0..20 {
            if conn
                .append_entries(heartbeat(), option.clone())
                .await
                .is_ok()
            {
                answered += 1;
                if answered == 3 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(answered, 3);
        assert_eq!(new.opened.load(Ordering::SeqCst), 1);
        assert_eq!(new.streamed.load(Ordering::SeqCst), 3);
        assert_eq!(new.unary.load(Ordering::SeqCst), 0);
    }
}
