//! Connections to the other members, and to agents' log services: one lazily connected
//! channel per address, shared by forwarded requests, status probes and log reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_proto as pb;
use cairn_proto::tls::TlsFiles;
use pb::cairn_client::CairnClient;
use pb::node_agent_client::NodeAgentClient;
use pb::raft_transport_client::RaftTransportClient;
use tonic::transport::Channel;

use super::status::MemberReport;
use super::{App, AppError, Result};
use crate::raft::{decode, network};

/// How long a status probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
    max_message_bytes: usize,
    tls: Option<Arc<TlsFiles>>,
}

impl Peers {
    pub(super) fn new(max_message_bytes: usize, tls: Option<Arc<TlsFiles>>) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            max_message_bytes,
            tls,
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = network::channel(addr, self.tls.clone())
            .map_err(|e| AppError::Internal(format!("bad address {addr:?}: {e}")))?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

impl App {
    /// A client of the member at `addr` (to forward a request to the leader).
    pub fn member_client(&self, addr: &str) -> Result<CairnClient<Channel>> {
        let peers = &self.inner.peers;
        Ok(CairnClient::new(peers.channel(addr)?)
            .max_decoding_message_size(peers.max_message_bytes)
            .max_encoding_message_size(peers.max_message_bytes))
    }

    /// A client of the agent at `endpoint` (its log service), as this member.
    pub fn agent_client(&self, endpoint: &str) -> Result<NodeAgentClient<Channel>> {
        Ok(NodeAgentClient::new(self.inner.peers.channel(endpoint)?))
    }

    /// The read index of the leader at `addr` (see [`App::catch_up`]).
    pub(super) async fn leader_read_index(&self, addr: &str) -> Result<u64> {
        let channel = self.inner.peers.channel(addr)?;
        let mut client = RaftTransportClient::new(channel);
        let call = client.read_index(pb::RaftMessage::default());
        let answer = tokio::time::timeout(PROBE_TIMEOUT, call)
            .await
            .map_err(|_| AppError::Unavailable(format!("the leader at {addr} gave no read index")))?
            .map_err(|s| {
                AppError::Unavailable(format!("the leader's read index: {}", s.message()))
            })?;
        decode(&answer.into_inner().data)
            .map_err(|e| AppError::Internal(format!("the leader's read index: {e}")))
    }

    /// The member at `addr`'s report of itself, or why it gave none within a second.
    pub(super) async fn probe(&self, addr: &str) -> std::result::Result<MemberReport, String> {
        let channel = self.inner.peers.channel(addr).map_err(|e| e.to_string())?;
        let mut client = RaftTransportClient::new(channel);
        let call = client.member_status(pb::RaftMessage::default());
        match tokio::time::timeout(PROBE_TIMEOUT, call).await {
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
            Ok(Err(s)) => Err(format!("{}: {}", s.code(), s.message())),
            Ok(Ok(r)) => decode(&r.into_inner().data).map_err(|e| e.to_string()),
        }
    }
}
