//! The client side of the Raft transport: openraft's RPCs over tonic gRPC.

// openraft's RPCError is large, and it is what these calls must return.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::raft_transport_client::RaftTransportClient;
use cairn_proto::tls::TlsFiles;
use cairn_proto::RaftMessage;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{
    AppendPipe, PipeAnswer, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio_stream::StreamExt;
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
        let mut channels = lock(&self.channels);
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
            replication: Replication::Stream,
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
    /// Down a replication stream ([`RaftNetwork::append_pipe`]).
    Stream,
    /// One unary call each: the peer does not serve the stream (an older member).
    Unary,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drop the shared channel to `target` if it is still the one dialled at `addr`.
fn forget(channels: &Channels, target: NodeId, addr: &str) {
    let mut channels = lock(channels);
    if channels.get(&target).is_some_and(|(at, _)| at == addr) {
        channels.remove(&target);
    }
}

/// A failed call's status as openraft's error: unreachable when the member is gone
/// (so replication backs off), else a network error.
fn transport_error<E: std::error::Error>(status: &tonic::Status) -> RPCError<NodeId, Node, E> {
    let e = TransportError(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

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
            self.forget_channel();
        }
        result
    }

    /// The client of the target's channel; unreachable when its address was bad.
    fn client<E: std::error::Error>(
        &self,
    ) -> Result<RaftTransportClient<Channel>, RPCError<NodeId, Node, E>> {
        self.client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&TransportError(e))))
    }

    fn timed_out<E: std::error::Error>(
        &self,
        action: RPCTypes,
        ttl: Duration,
    ) -> RPCError<NodeId, Node, E> {
        RPCError::Timeout(Timeout {
            action,
            id: self.id,
            target: self.target,
            timeout: ttl,
        })
    }

    /// After a transport failure: the next connection dials anew, and the member (which
    /// may come back upgraded) is asked for the replication stream again.
    fn forget_channel(&mut self) {
        forget(&self.channels, self.target, &self.addr);
        self.replication = Replication::Stream;
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
        let mut client = self.client()?;
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let msg = RaftMessage { data };
        let ttl = option.hard_ttl();
        let fut = async {
            match action {
                RPCTypes::Vote => client.vote(msg).await.map(tonic::Response::into_inner),
                RPCTypes::AppendEntries => client
                    .append_entries(msg)
                    .await
                    .map(tonic::Response::into_inner),
                RPCTypes::InstallSnapshot => client
                    .install_snapshot(msg)
                    .await
                    .map(tonic::Response::into_inner),
            }
        };
        let reply = match tokio::time::timeout(ttl, fut).await {
            Err(_) => return Err(self.timed_out(action, ttl)),
            Ok(Err(status)) => return Err(transport_error(&status)),
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

    /// A replication stream, for appends sent without waiting for each answer: requests
    /// are encoded as the stream takes them, and a task reads the answers into the pipe.
    /// A member that does not serve the stream (an older version) gets one unary call at
    /// a time until a call to it fails.
    async fn append_pipe(
        &mut self,
        option: RPCOption,
    ) -> Result<Option<AppendPipe<TypeConfig>>, RPCError<NodeId, Node>> {
        if let Replication::Unary = self.replication {
            return Ok(None);
        }
        let mut client = self.client()?;
        let (requests, taken) = tokio::sync::mpsc::unbounded_channel();
        // When each request went out, and whether it carried entries (for the timeline).
        let sending = Arc::new(Mutex::new(VecDeque::new()));
        let outgoing = {
            let sending = sending.clone();
            tokio_stream::wrappers::UnboundedReceiverStream::new(taken).map_while(
                move |rpc: AppendEntriesRequest<TypeConfig>| {
                    if let Some(first) = rpc.entries.first() {
                        crate::metrics::marks().sending(first.log_id.index);
                    }
                    let data = match encode(&rpc) {
                        Ok(data) => data,
                        Err(e) => {
                            tracing::error!(error = %e, "encoding an append; closing the replication stream");
                            return None;
                        }
                    };
                    lock(&sending).push_back((Instant::now(), !rpc.entries.is_empty()));
                    Some(RaftMessage { data })
                },
            )
        };
        let ttl = option.hard_ttl();
        let opened = tokio::time::timeout(ttl, client.append_entries_stream(outgoing)).await;
        let mut incoming = match opened {
            Ok(Ok(answers)) => answers.into_inner(),
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                self.replication = Replication::Unary;
                return Ok(None);
            }
            Ok(Err(status)) => {
                self.forget_channel();
                return Err(transport_error(&status));
            }
            Err(_) => {
                self.forget_channel();
                return Err(self.timed_out(RPCTypes::AppendEntries, ttl));
            }
        };
        let (answered, answers) = tokio::sync::mpsc::unbounded_channel();
        let (target, addr, channels) = (self.target, self.addr.clone(), self.channels.clone());
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = incoming.message() => next,
                    () = answered.closed() => return,
                };
                let answer: PipeAnswer<TypeConfig> = match next {
                    Ok(Some(reply)) => {
                        if let Some((sent, true)) = lock(&sending).pop_front() {
                            crate::metrics::stage_since(crate::metrics::Stage::Replicate, sent);
                        }
                        decode::<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>(
                            &reply.data,
                        )
                        .map_err(|e| RPCError::Network(NetworkError::new(&e)))
                        .and_then(|r| {
                            r.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
                        })
                    }
                    // The follower closed the stream: the pipe's end is its end.
                    Ok(None) => return,
                    Err(status) => {
                        forget(&channels, target, &addr);
                        let _ = answered.send(Err(transport_error(&status)));
                        return;
                    }
                };
                let failed = answer.is_err();
                if answered.send(answer).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Some(AppendPipe { requests, answers }))
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
    use openraft::error::RaftError;
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
    use openraft::Vote;
    use tokio_stream::StreamExt;
    use tonic::{Request, Response, Status, Streaming};

    use super::Network;
    use crate::raft::{encode, Node, NodeId, TypeConfig};

    /// A follower's transport that answers every append with success and counts how
    /// they came; `streams: false` answers the stream as a member without it does.
    #[derive(Clone, Default)]
    struct Follower {
        streams: bool,
        /// The first append over a stream waits this long before it is answered.
        stall_first: Option<Duration>,
        unary: Arc<AtomicUsize>,
        opened: Arc<AtomicUsize>,
        streamed: Arc<AtomicUsize>,
        /// Appends taken from the stream when the first was answered.
        taken_by_first_answer: Arc<AtomicUsize>,
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
            // Requests are taken as they come; answers go out in order, the first after
            // a stall (recording how many requests had arrived by then).
            let (taken, numbers) = tokio::sync::mpsc::unbounded_channel();
            let mut input = req.into_inner();
            let streamed = self.streamed.clone();
            tokio::spawn(async move {
                while let Ok(Some(_)) = input.message().await {
                    let n = streamed.fetch_add(1, Ordering::SeqCst);
                    if taken.send(n).is_err() {
                        return;
                    }
                }
            });
            let this = self.clone();
            let answers =
                tokio_stream::wrappers::UnboundedReceiverStream::new(numbers).then(move |n| {
                    let this = this.clone();
                    async move {
                        if let (0, Some(stall)) = (n, this.stall_first) {
                            tokio::time::sleep(stall).await;
                            let taken = this.streamed.load(Ordering::SeqCst);
                            this.taken_by_first_answer.store(taken, Ordering::SeqCst);
                        }
                        Ok(success())
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

    /// Open a pipe to `conn`'s member, send `n` heartbeats down it at once, and read
    /// their answers.
    async fn through_pipe(
        conn: &mut super::Connection,
        n: usize,
    ) -> Vec<AppendEntriesResponse<NodeId>> {
        let option = RPCOption::new(Duration::from_secs(5));
        let mut pipe = conn
            .append_pipe(option)
            .await
            .expect("open")
            .expect("the member serves the stream");
        for _ in 0..n {
            pipe.requests.send(heartbeat()).expect("send");
        }
        let mut answers = Vec::new();
        for _ in 0..n {
            let answer = tokio::time::timeout(Duration::from_secs(5), pipe.answers.recv())
                .await
                .expect("an answer in time")
                .expect("the pipe is open")
                .expect("success");
            answers.push(answer);
        }
        answers
    }

    #[tokio::test]
    async fn appends_go_down_one_stream_without_waiting_for_answers() {
        let follower = Follower {
            streams: true,
            stall_first: Some(Duration::from_millis(300)),
            ..Follower::default()
        };
        let (addr, _server) = serve(follower.clone()).await;
        let mut conn = connect(&addr).await;
        let answers = through_pipe(&mut conn, 5).await;
        assert_eq!(answers.len(), 5);
        assert!(answers.iter().all(|a| *a == AppendEntriesResponse::Success));
        // All five were sent before the first was answered.
        assert_eq!(follower.taken_by_first_answer.load(Ordering::SeqCst), 5);
        assert_eq!(follower.opened.load(Ordering::SeqCst), 1);
        assert_eq!(follower.unary.load(Ordering::SeqCst), 0);

        // A pipe dropped with appends unanswered leaves nothing for the next one.
        let option = RPCOption::new(Duration::from_secs(5));
        let pipe = conn.append_pipe(option).await.expect("open").expect("pipe");
        pipe.requests.send(heartbeat()).expect("send");
        drop(pipe);
        assert_eq!(through_pipe(&mut conn, 2).await.len(), 2);
        assert_eq!(follower.opened.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_member_without_the_stream_is_sent_unary_calls() {
        let follower = Follower::default();
        let (addr, _server) = serve(follower.clone()).await;
        let mut conn = connect(&addr).await;
        let option = RPCOption::new(Duration::from_secs(5));
        let pipe = conn.append_pipe(option.clone()).await.expect("asked");
        assert!(pipe.is_none(), "a member without the stream offers no pipe");
        for _ in 0..3 {
            let answer = conn
                .append_entries(heartbeat(), option.clone())
                .await
                .expect("append");
            assert_eq!(answer, AppendEntriesResponse::Success);
        }
        assert_eq!(follower.unary.load(Ordering::SeqCst), 3);
        assert_eq!(follower.opened.load(Ordering::SeqCst), 0);
        // Not asked again while calls succeed.
        assert!(conn.append_pipe(option).await.expect("asked").is_none());
    }

    /// A member that goes away and comes back upgraded (it now serves the stream) is
    /// asked for the stream again.
    #[tokio::test]
    async fn a_member_that_comes_back_upgraded_is_streamed_to() {
        let old = Follower::default();
        let (addr, server) = serve_at("127.0.0.1:0", old.clone()).await;
        let mut conn = connect(&addr).await;
        let option = RPCOption::new(Duration::from_secs(2));
        assert!(conn
            .append_pipe(option.clone())
            .await
            .expect("asked")
            .is_none());
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
        let mut piped = false;
        for _ in 0..20 {
            if let Ok(Some(pipe)) = conn.append_pipe(option.clone()).await {
                drop(pipe);
                piped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(piped, "the upgraded member is asked for the stream again");
        assert_eq!(through_pipe(&mut conn, 3).await.len(), 3);
        assert_eq!(new.streamed.load(Ordering::SeqCst), 3);
        assert_eq!(new.unary.load(Ordering::SeqCst), 0);
    }
}
