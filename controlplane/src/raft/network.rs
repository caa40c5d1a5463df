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
        }
    }
}

pub struct Connection {
    id: NodeId,
    target: NodeId,
    addr: String,
    client: Result<RaftTransportClient<Channel>, String>,
    channels: Channels,
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
        let fut = async {
            match action {
                RPCTypes::Vote => client.vote(msg).await,
                RPCTypes::AppendEntries => client.append_entries(msg).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(msg).await,
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
            Ok(Ok(r)) => r.into_inner(),
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
