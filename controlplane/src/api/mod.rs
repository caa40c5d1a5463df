//! The client API (`cairn.v1.Cairn`), served by every member.
//!
//! - Writes go to the leader's [`Proposer`] (group commit). A member that is not the
//!   leader forwards the request to the leader once; a request that was already
//!   forwarded and still lands on a non-leader is answered `UNAVAILABLE` with a leader
//!   hint, and the client retries.
//! - Reads are linearizable by default: the leader confirms its leadership with a quorum
//!   and waits until it has applied up to that point (openraft's read index, raised to
//!   the log it began its term with) before it reads; a follower forwards linearizable
//!   reads to the leader. A stale read is served from the member's own applied state and
//!   says how far that was.
//! - Every error goes through [`error::ApiError`], the one mapping to `tonic::Status`.

pub mod error;
mod liveness;
pub mod proposer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_domain as domain;
use cairn_proto as pb;
use futures::Stream;
use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};
use pb::cairn_client::CairnClient;
use pb::raft_transport_client::RaftTransportClient;
use prost::Message;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::raft::transport::{Local, MemberReport};
use crate::raft::{decode, network, Outcome, Raft};
use crate::store::events::Filter;
use error::ApiError;
use proposer::{now_ms, Proposer};

/// How long a linearizable read waits for the leader to apply up to its read index.
const READ_BARRIER_WAIT: Duration = Duration::from_secs(5);

/// Metadata marking a request a member already forwarded (it is not forwarded again).
const FORWARDED: &str = "x-cairn-forwarded";
/// Largest page of events one ListEvents answer holds.
pub const MAX_PAGE: u32 = 10_000;

/// The `Cairn` service of one member.
#[derive(Clone)]
pub struct Api {
    local: Local,
    proposer: Proposer,
    max_message_bytes: usize,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    requests: Arc<AtomicU64>,
    /// Agents' heartbeats, while this member leads.
    heartbeats: Arc<liveness::Heartbeats>,
    /// Silence after which a node is lost.
    lost_after_ms: u64,
    /// (term, log index) this member must have applied to serve linearizable reads as
    /// leader of that term: see [`Api::leadership_floor`].
    read_floor: Arc<Mutex<Option<(u64, u64)>>>,
}

type Result<T> = std::result::Result<T, ApiError>;

impl Api {
    pub fn new(
        local: Local,
        proposer: Proposer,
        max_message_bytes: usize,
        lost_after_ms: u64,
    ) -> Self {
        Self {
            local,
            proposer,
            max_message_bytes,
            channels: Arc::default(),
            requests: Arc::default(),
            heartbeats: Arc::default(),
            lost_after_ms,
            read_floor: Arc::default(),
        }
    }

    fn raft(&self) -> &Raft {
        &self.local.raft
    }

    fn id(&self) -> u64 {
        self.local.raft.metrics().borrow().id
    }

    /// The leader (id, address), waiting up to `wait` for one to be elected.
    async fn leader(&self, wait: Duration) -> Result<(u64, String)> {
        let mut rx = self.raft().metrics();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let m = rx.borrow_and_update();
                // A member can learn who leads before it has the membership entry that
                // gives the leader's address: wait for it rather than dial "".
                let leader = m.current_leader.and_then(|l| {
                    let node = m.membership_config.membership().get_node(&l)?;
                    Some((l, node.addr.clone()))
                });
                if let Some(leader) = leader {
                    return Ok(leader);
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(ApiError::Unavailable("the Raft node stopped".into())),
                Err(_) => return Err(ApiError::NotLeader { leader: None }),
            }
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = network::channel(addr)
            .map_err(|e| ApiError::Internal(format!("bad member address {addr:?}: {e}")))?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn client(&self, addr: &str) -> Result<CairnClient<Channel>> {
        Ok(CairnClient::new(self.channel(addr)?)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes))
    }

    /// Refuse with the leader's address unless this member leads (for calls that are
    /// not forwarded).
    async fn ensure_leader(&self) -> Result<()> {
        let (leader, addr) = self.leader(Duration::from_secs(3)).await?;
        if leader != self.id() {
            return Err(ApiError::NotLeader {
                leader: Some((leader, addr)),
            });
        }
        Ok(())
    }

    /// Where a leader-only request must go: `None` = handle it here.
    async fn route<T>(&self, req: &Request<T>) -> Result<Option<CairnClient<Channel>>> {
        let (leader, addr) = self.leader(Duration::from_secs(3)).await?;
        if leader == self.id() {
            return Ok(None);
        }
        if req.metadata().get(FORWARDED).is_some() {
            return Err(ApiError::NotLeader {
                leader: Some((leader, addr)),
            });
        }
        Ok(Some(self.client(&addr)?))
    }

    fn read_info(&self, consistency: i32) -> pb::ReadInfo {
        let inner = self.local.shared.read();
        pb::ReadInfo {
            applied_index: inner.last_applied.map_or(0, |l| l.index),
            last_sequence: inner.state.last_sequence(),
            consistency,
            served_by: self.id(),
        }
    }

    /// The log index this member must have applied to serve a linearizable read as
    /// leader of its current term: its last log index the first time it read as leader
    /// in that term (0 when it does not lead; the read index then fails with a forward).
    ///
    /// openraft 0.9's read index is the larger of the committed index the leader knows
    /// and the first entry of its term, and both can be behind writes already
    /// acknowledged: right after an election, before the blank entry of the new term is
    /// in the log; and after a restart of the whole cluster, where openraft makes the old
    /// leader leader again in its old term, with no election and no new entry, and with
    /// the committed index it last saved. Every acknowledged write is in the leader's log
    /// when it starts leading (Raft's leader completeness), so this floor is safe.
    fn leadership_floor(&self) -> u64 {
        let metrics = self.raft().metrics();
        let m = metrics.borrow();
        if m.current_leader != Some(m.id) {
            return 0;
        }
        let mut floor = self.read_floor.lock().unwrap_or_else(|p| p.into_inner());
        match *floor {
            Some((term, index)) if term == m.current_term => index,
            _ => {
                let index = m.last_log_index.unwrap_or(0);
                *floor = Some((m.current_term, index));
                index
            }
        }
    }

    /// Make a linearizable read possible here, or say where to forward it: the leader
    /// confirms its leadership with a quorum (openraft's read index), then waits until it
    /// has applied up to that index or its term's floor, whichever is higher.
    async fn read_barrier<T>(
        &self,
        req: &Request<T>,
        consistency: i32,
    ) -> Result<Option<CairnClient<Channel>>> {
        if consistency == pb::ReadConsistency::Stale as i32 {
            return Ok(None);
        }
        if let Some(client) = self.route(req).await? {
            return Ok(Some(client));
        }
        let floor = self.leadership_floor();
        let (read_log_id, applied) = match self.raft().get_read_log_id().await {
            Ok(ids) => ids,
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                return Err(ApiError::NotLeader {
                    leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
                return Err(ApiError::Unavailable(format!(
                    "cannot confirm leadership: {q}"
                )))
            }
            Err(RaftError::Fatal(f)) => {
                return Err(ApiError::Unavailable(format!("the Raft node stopped: {f}")))
            }
        };
        let index = read_log_id.map_or(0, |l| l.index).max(floor);
        if applied.map_or(0, |l| l.index) < index {
            self.raft()
                .wait(Some(READ_BARRIER_WAIT))
                .applied_index_at_least(Some(index), "the read index applied")
                .await
                .map_err(|e| {
                    ApiError::Unavailable(format!("the leader is not ready to read: {e}"))
                })?;
        }
        Ok(None)
    }

    fn new_correlation_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("req-{}-{ms}-{n}", self.id())
    }

    /// Check a submitted command at the edge and fill in what the server supplies.
    fn prepare(&self, mut cmd: pb::Command, token_digest: Vec<u8>) -> Result<pb::Command> {
        cmd.token_digest = token_digest;
        let parsed = convert::command_from_pb(&cmd).map_err(|m| ApiError::Invalid(m.0))?;
        if parsed.body.leader_only() {
            return Err(ApiError::Invalid(vec![
                "command.body: this command is proposed by the leader only".into(),
            ]));
        }
        let problems = domain::validate::command_problems(&parsed);
        if !problems.is_empty() {
            return Err(ApiError::Invalid(problems));
        }
        if cmd.actor.is_empty() {
            cmd.actor = "anonymous".into();
        }
        if cmd.correlation_id.is_empty() {
            cmd.correlation_id = self.new_correlation_id();
        }
        Ok(cmd)
    }

    /// One command of a `SubmitStream`, answered with its outcome or its own error.
    async fn submit_one(
        &self,
        req: pb::SubmitRequest,
        digest: Vec<u8>,
    ) -> pb::SubmitStreamResponse {
        use pb::submit_stream_response::Result as R;
        let outcome = match req.command {
            None => Err(ApiError::Invalid(vec!["command: required".into()])),
            Some(cmd) => match self.prepare(cmd, digest) {
                Ok(cmd) => self.propose(cmd).await,
                Err(e) => Err(e),
            },
        };
        let result = match outcome {
            Ok(r) => R::Ok(r),
            Err(e) => {
                let leader = match &e {
                    ApiError::NotLeader {
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

    /// Propose a command on this member (the leader) and shape the answer.
    async fn propose(&self, cmd: pb::Command) -> Result<pb::SubmitResponse> {
        match self.proposer.submit(cmd).await? {
            Outcome::Rejected(r) => Err(ApiError::Rejected(r)),
            Outcome::Applied {
                events,
                entity_revision,
                raft_index,
            } => {
                let events = events
                    .iter()
                    .map(|b| pb::Event::decode(b.as_slice()))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| ApiError::Internal(format!("decoding an applied event: {e}")))?;
                Ok(pb::SubmitResponse {
                    events,
                    entity_revision,
                    raft_index,
                })
            }
        }
    }

    /// Record the current Raft membership as member events.
    pub async fn reconcile_members(&self) -> Result<()> {
        let cmd = pb::Command {
            actor: "system/membership".into(),
            correlation_id: self.new_correlation_id(),
            body: Some(pb::command::Body::ReconcileMembers(pb::ReconcileMembers {})),
            ..Default::default()
        };
        self.propose(cmd).await.map(|_| ())
    }

    /// Refuse a voter change whose new voter set has no live majority: Raft would
    /// append the joint configuration and then never commit it, and with it nothing
    /// else (etcd's strict reconfiguration check does the same). A voter is live when
    /// it answers a status probe.
    async fn ensure_live_quorum(&self, voters: &BTreeSet<u64>) -> Result<()> {
        let me = self.local.report().node_id;
        let membership = self.raft().metrics().borrow().membership_config.clone();
        let probes = voters.iter().map(|id| {
            let addr = membership
                .membership()
                .get_node(id)
                .map(|n| n.addr.clone())
                .unwrap_or_default();
            let (id, this) = (*id, self.clone());
            async move {
                let live = id == me || this.remote_report(&addr).await.is_ok();
                (id, live)
            }
        });
        let answers = futures::future::join_all(probes).await;
        let live: Vec<u64> = answers.iter().filter(|a| a.1).map(|a| a.0).collect();
        if live.len() * 2 > voters.len() {
            return Ok(());
        }
        let down: Vec<u64> = answers.iter().filter(|a| !a.1).map(|a| a.0).collect();
        Err(ApiError::Rejected(domain::Rejection::FailedPrecondition(
            format!(
                "the new voters {voters:?} would have no live majority (not answering: {down:?}); \
                 bring those members back or remove them first"
            ),
        )))
    }

    fn membership_response(&self, raft_index: u64) -> pb::MembershipResponse {
        let m = self.raft().metrics().borrow().membership_config.clone();
        pb::MembershipResponse {
            voters: m.membership().voter_ids().collect(),
            learners: m.membership().learner_ids().collect(),
            raft_index,
        }
    }

    async fn change_membership(
        &self,
        change: ChangeMembers<u64, BasicNode>,
        new_voters: BTreeSet<u64>,
    ) -> Result<pb::MembershipResponse> {
        self.ensure_live_quorum(&new_voters).await?;
        let resp = self
            .raft()
            .change_membership(change, false)
            .await
            .map_err(membership_error)?;
        self.reconcile_members().await?;
        Ok(self.membership_response(resp.log_id.index))
    }
}

fn membership_error(
    e: RaftError<u64, openraft::error::ClientWriteError<u64, BasicNode>>,
) -> ApiError {
    use openraft::error::ClientWriteError as W;
    match e {
        RaftError::APIError(W::ForwardToLeader(f)) => ApiError::NotLeader {
            leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
        },
        RaftError::APIError(W::ChangeMembershipError(c)) => {
            ApiError::Rejected(domain::Rejection::FailedPrecondition(c.to_string()))
        }
        RaftError::Fatal(f) => ApiError::Unavailable(format!("the Raft node stopped: {f}")),
    }
}

/// How long a member waits for the leader to answer a forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Forward a write to the leader. A leader that does not answer in time (it may be cut
/// off from its quorum) leaves the write indeterminate.
async fn forward_write<T>(
    call: impl std::future::Future<Output = std::result::Result<Response<T>, Status>>,
) -> std::result::Result<Response<T>, Status> {
    match tokio::time::timeout(FORWARD_TIMEOUT, call).await {
        Ok(r) => forwarded_write(r),
        Err(_) => Err(ApiError::Indeterminate(format!(
            "the leader did not answer the forwarded request within {FORWARD_TIMEOUT:?}"
        ))
        .into()),
    }
}

/// Forward a read to the leader; a leader that does not answer in time is unavailable.
async fn forward_read<T>(
    call: impl std::future::Future<Output = std::result::Result<Response<T>, Status>>,
) -> std::result::Result<Response<T>, Status> {
    match tokio::time::timeout(FORWARD_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::Unavailable(format!(
            "the leader did not answer the forwarded read within {FORWARD_TIMEOUT:?}"
        ))
        .into()),
    }
}

/// The answer to a forwarded write: a failure that does not say "not applied" may hide
/// an applied command (the leader went away mid-request), so it is indeterminate.
fn forwarded_write<T>(
    r: std::result::Result<Response<T>, Status>,
) -> std::result::Result<Response<T>, Status> {
    r.map_err(|s| {
        if s.code() == tonic::Code::Unavailable && !cairn_proto::certainly_not_applied(&s) {
            ApiError::Indeterminate(format!(
                "the leader did not answer the forwarded request: {}",
                s.message()
            ))
            .into()
        } else {
            s
        }
    })
}

/// Forward `req` to the leader through `client`, marking it forwarded (an agent's
/// token goes along).
fn forwarded<T>(req: Request<T>) -> Request<T> {
    let token = req.metadata().get(pb::NODE_TOKEN).cloned();
    let mut req = Request::new(req.into_inner());
    req.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    if let Some(t) = token {
        req.metadata_mut().insert(pb::NODE_TOKEN, t);
    }
    req
}

/// SHA-256 of the agent token a request carries; empty without one.
fn token_digest(m: &tonic::metadata::MetadataMap) -> Vec<u8> {
    match m.get(pb::NODE_TOKEN) {
        Some(t) => ring::digest::digest(&ring::digest::SHA256, t.as_bytes())
            .as_ref()
            .to_vec(),
        None => Vec::new(),
    }
}

fn filter_from_pb(f: Option<pb::EventFilter>) -> Result<Filter> {
    let f = f.unwrap_or_default();
    let mut problems = Vec::new();
    let (kind, name) = match f.entity {
        None => (None, None),
        Some(e) => {
            if !domain::kinds::ALL.contains(&e.kind.as_str()) {
                problems.push(format!(
                    "filter.entity.kind: unknown kind {:?} (known: {})",
                    e.kind,
                    domain::kinds::ALL.join(", ")
                ));
            }
            (Some(e.kind), (!e.name.is_empty()).then_some(e.name))
        }
    };
    for (i, t) in f.types.iter().enumerate() {
        if !pb::EVENT_TYPES.contains(&t.as_str()) {
            problems.push(format!(
                "filter.types[{i}]: unknown event type {t:?} (known: {})",
                pb::EVENT_TYPES.join(", ")
            ));
        }
    }
    if let (Some(s), Some(u)) = (f.since_ms, f.until_ms) {
        if s >= u {
            problems.push("filter: since must be before until".into());
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }
    Ok(Filter {
        kind,
        name,
        types: f.types,
        since_ms: f.since_ms,
        until_ms: f.until_ms,
        after_sequence: f.after_sequence,
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn valid_address(a: &str) -> bool {
    a.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
}

type EventStream = Pin<Box<dyn Stream<Item = std::result::Result<pb::Event, Status>> + Send>>;
type SubmitStream =
    Pin<Box<dyn Stream<Item = std::result::Result<pb::SubmitStreamResponse, Status>> + Send>>;

/// Commands of one `SubmitStream` in flight at once (the client's pipelining window).
const STREAM_WINDOW: usize = 1024;

#[tonic::async_trait]
impl pb::cairn_server::Cairn for Api {
    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> std::result::Result<Response<pb::SubmitResponse>, Status> {
        let Some(cmd) = req.get_ref().command.clone() else {
            return Err(ApiError::Invalid(vec!["command: required".into()]).into());
        };
        let cmd = self.prepare(cmd, token_digest(req.metadata()))?;
        if let Some(mut client) = self.route(&req).await? {
            return forward_write(client.submit(forwarded(req))).await;
        }
        match self.propose(cmd).await {
            // Leadership moved between routing and proposing: the command was not
            // appended, so forwarding it once is safe.
            Err(ApiError::NotLeader {
                leader: Some((_, addr)),
            }) if req.metadata().get(FORWARDED).is_none() => {
                forward_write(self.client(&addr)?.submit(forwarded(req))).await
            }
            r => Ok(Response::new(r?)),
        }
    }

    type SubmitStreamStream = SubmitStream;

    async fn submit_stream(
        &self,
        req: Request<tonic::Streaming<pb::SubmitRequest>>,
    ) -> std::result::Result<Response<SubmitStream>, Status> {
        self.ensure_leader().await?;
        let digest = token_digest(req.metadata());
        let mut input = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_WINDOW);
        let api = self.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            // Commands are proposed as they arrive and answered in arrival order.
            let mut pending = futures::stream::FuturesOrdered::new();
            let mut open = true;
            while open || !pending.is_empty() {
                tokio::select! {
                    Some(answer) = pending.next(), if !pending.is_empty() => {
                        if tx.send(Ok(answer)).await.is_err() {
                            return;
                        }
                    }
                    m = input.message(), if open && pending.len() < STREAM_WINDOW => match m {
                        Ok(Some(r)) => {
                            let api = api.clone();
                            let digest = digest.clone();
                            pending.push_back(async move { api.submit_one(r, digest).await });
                        }
                        Ok(None) => open = false,
                        // The client went away: what is pending still commits, unanswered.
                        Err(_) => return,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_entity(
        &self,
        req: Request<pb::GetEntityRequest>,
    ) -> std::result::Result<Response<pb::GetEntityResponse>, Status> {
        let r = req.get_ref();
        let Some(e) = r.entity.clone() else {
            return Err(ApiError::Invalid(vec!["entity: required".into()]).into());
        };
        let key = domain::EntityKey::new(e.kind, e.name);
        let mut problems = Vec::new();
        domain::validate::entity_problems("entity", &key, &mut problems);
        if !problems.is_empty() {
            return Err(ApiError::Invalid(problems).into());
        }
        if let Some(mut client) = self.read_barrier(&req, r.consistency).await? {
            return forward_read(client.get_entity(forwarded(req))).await;
        }
        let entity = {
            let inner = self.local.shared.read();
            inner
                .state
                .entity(&key)
                .map(|s| convert::entity_state_to_pb(&key, s))
        };
        let Some(entity) = entity else {
            return Err(ApiError::Rejected(domain::Rejection::NotFound(key.to_string())).into());
        };
        Ok(Response::new(pb::GetEntityResponse {
            entity: Some(entity),
            read: Some(self.read_info(r.consistency)),
        }))
    }

    async fn list_entities(
        &self,
        req: Request<pb::ListEntitiesRequest>,
    ) -> std::result::Result<Response<pb::ListEntitiesResponse>, Status> {
        let r = req.get_ref();
        if !domain::kinds::ALL.contains(&r.kind.as_str()) {
            return Err(ApiError::Invalid(vec![format!(
                "kind: unknown kind {:?} (known: {})",
                r.kind,
                domain::kinds::ALL.join(", ")
            )])
            .into());
        }
        if let Some(mut client) = self.read_barrier(&req, r.consistency).await? {
            return forward_read(client.list_entities(forwarded(req))).await;
        }
        let entities = {
            let inner = self.local.shared.read();
            inner
                .state
                .entities_of_kind(&r.kind)
                .filter(|(_, s)| r.include_deleted || !s.deleted)
                .map(|(k, s)| convert::entity_state_to_pb(k, s))
                .collect()
        };
        Ok(Response::new(pb::ListEntitiesResponse {
            entities,
            read: Some(self.read_info(r.consistency)),
        }))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> std::result::Result<Response<pb::ListEventsResponse>, Status> {
        let r = req.get_ref();
        let filter = filter_from_pb(r.filter.clone())?;
        let limit = if r.limit == 0 {
            1000
        } else {
            r.limit.min(MAX_PAGE)
        } as usize;
        if let Some(mut client) = self.read_barrier(&req, r.consistency).await? {
            return forward_read(client.list_events(forwarded(req))).await;
        }
        let read = self.read_info(r.consistency);
        // Read no further than the read point, so the page and its ReadInfo agree.
        let (events, more) = self
            .local
            .shared
            .events()
            .query(&filter, limit)
            .map_err(internal)?;
        let events: Vec<_> = events
            .into_iter()
            .filter(|e| e.sequence <= read.last_sequence)
            .collect();
        let next = if more {
            events.last().map_or(0, |e| e.sequence)
        } else {
            0
        };
        Ok(Response::new(pb::ListEventsResponse {
            events,
            next_after_sequence: next,
            read: Some(read),
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> std::result::Result<Response<EventStream>, Status> {
        let filter = filter_from_pb(req.into_inner().filter)?;
        let shared = self.local.shared.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let mut applied = shared.applied();
            let mut filter = filter;
            loop {
                // Scan up to what has been applied; remember how far we looked.
                let upto = applied.borrow_and_update().last_sequence;
                let page = shared.events().query(&filter, 1000);
                let (events, more) = match page {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                };
                for e in events {
                    filter.after_sequence = e.sequence;
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                if !more {
                    filter.after_sequence = filter.after_sequence.max(upto);
                    tokio::select! {
                        changed = applied.changed() => if changed.is_err() { return },
                        _ = tx.closed() => return,
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn cluster_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> std::result::Result<Response<pb::ClusterStatusResponse>, Status> {
        let me = self.local.report();
        let membership = self.raft().metrics().borrow().membership_config.clone();
        let m = membership.membership();
        let mut members: BTreeMap<u64, (String, bool)> = BTreeMap::new();
        for id in m.voter_ids() {
            members.insert(
                id,
                (
                    m.get_node(&id).map(|n| n.addr.clone()).unwrap_or_default(),
                    true,
                ),
            );
        }
        for id in m.learner_ids() {
            members.insert(
                id,
                (
                    m.get_node(&id).map(|n| n.addr.clone()).unwrap_or_default(),
                    false,
                ),
            );
        }
        let queries = members.iter().map(|(id, (addr, voter))| {
            let (id, addr, voter, me) = (*id, addr.clone(), *voter, me.clone());
            let this = self.clone();
            async move {
                let report: std::result::Result<MemberReport, String> = if id == me.node_id {
                    Ok(me)
                } else {
                    this.remote_report(&addr).await
                };
                let mut s = pb::MemberStatus {
                    node_id: id,
                    address: addr,
                    ..Default::default()
                };
                match report {
                    Ok(r) => {
                        s.role = if !voter && r.role != "leader" {
                            "learner".into()
                        } else {
                            r.role
                        };
                        s.term = r.term;
                        s.commit_index = r.commit_index;
                        s.applied_index = r.applied_index;
                        s.last_log_index = r.last_log_index;
                        s.last_sequence = r.last_sequence;
                        s.rss_bytes = r.rss_bytes;
                    }
                    Err(e) => {
                        s.role = "unreachable".into();
                        s.error = e;
                    }
                }
                s
            }
        });
        let members = futures::future::join_all(queries).await;
        Ok(Response::new(pb::ClusterStatusResponse {
            leader_id: me.leader.unwrap_or(0),
            term: me.term,
            members,
            answered_by: me.node_id,
        }))
    }

    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> std::result::Result<Response<pb::MembershipResponse>, Status> {
        let r = req.get_ref().clone();
        let mut problems = Vec::new();
        if r.node_id == 0 {
            problems.push("node_id: must be > 0".to_string());
        }
        if !valid_address(&r.address) {
            problems.push(format!("address: {:?} is not host:port", r.address));
        }
        if !problems.is_empty() {
            return Err(ApiError::Invalid(problems).into());
        }
        if let Some(mut client) = self.route(&req).await? {
            return forwarded_write(client.add_learner(forwarded(req)).await);
        }
        let resp = self
            .raft()
            .add_learner(r.node_id, BasicNode::new(r.address), true)
            .await
            .map_err(membership_error)?;
        self.reconcile_members().await?;
        Ok(Response::new(self.membership_response(resp.log_id.index)))
    }

    async fn promote(
        &self,
        req: Request<pb::PromoteRequest>,
    ) -> std::result::Result<Response<pb::MembershipResponse>, Status> {
        let id = req.get_ref().node_id;
        if let Some(mut client) = self.route(&req).await? {
            return forwarded_write(client.promote(forwarded(req)).await);
        }
        let m = self.raft().metrics().borrow().membership_config.clone();
        if !m.membership().learner_ids().any(|l| l == id) {
            let why = if m.membership().voter_ids().any(|v| v == id) {
                format!("node {id} is already a voter")
            } else {
                format!("node {id} is not a member; add it as a learner first")
            };
            return Err(ApiError::Rejected(domain::Rejection::FailedPrecondition(why)).into());
        }
        let mut voters: BTreeSet<u64> = m.membership().voter_ids().collect();
        voters.insert(id);
        Ok(Response::new(
            self.change_membership(ChangeMembers::AddVoterIds([id].into()), voters)
                .await?,
        ))
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> std::result::Result<Response<pb::MembershipResponse>, Status> {
        let id = req.get_ref().node_id;
        if let Some(mut client) = self.route(&req).await? {
            return forwarded_write(client.remove_member(forwarded(req)).await);
        }
        let m = self.raft().metrics().borrow().membership_config.clone();
        let mut voters: BTreeSet<u64> = m.membership().voter_ids().collect();
        let change = if voters.remove(&id) {
            if m.membership().voter_ids().count() == 1 {
                return Err(
                    ApiError::Rejected(domain::Rejection::FailedPrecondition(format!(
                        "node {id} is the last voter"
                    )))
                    .into(),
                );
            }
            ChangeMembers::RemoveVoters([id].into())
        } else if m.membership().learner_ids().any(|l| l == id) {
            ChangeMembers::RemoveNodes([id].into())
        } else {
            return Err(
                ApiError::Rejected(domain::Rejection::NotFound(format!("member/{id}"))).into(),
            );
        };
        Ok(Response::new(self.change_membership(change, voters).await?))
    }
    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> std::result::Result<Response<pb::HeartbeatResponse>, Status> {
        let node = req.get_ref().node.clone();
        let mut problems = Vec::new();
        domain::validate::node_name_problems("node", &node, &mut problems);
        if !problems.is_empty() {
            return Err(ApiError::Invalid(problems).into());
        }
        // Heartbeats are not forwarded: the agent follows the hint and beats to the
        // leader directly, so followers carry none of that load.
        self.ensure_leader().await?;
        let digest = token_digest(req.metadata());
        let lost = {
            let inner = self.local.shared.read();
            let Some(n) = inner.state.node(&node) else {
                return Err(ApiError::Rejected(domain::Rejection::NotFound(format!(
                    "node/{node}"
                )))
                .into());
            };
            if n.token_digest != digest {
                return Err(
                    ApiError::Rejected(domain::Rejection::PermissionDenied(format!(
                        "node/{node} is registered with another agent token"
                    )))
                    .into(),
                );
            }
            n.lost
        };
        self.heartbeats.record(&node);
        Ok(Response::new(pb::HeartbeatResponse {
            leader_id: self.id(),
            lost,
            grace_ms: self.lost_after_ms,
        }))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> std::result::Result<Response<pb::ListJobsResponse>, Status> {
        let r = req.get_ref();
        if !r.name.is_empty() {
            let mut problems = Vec::new();
            domain::validate::name_problems("name", &r.name, &mut problems);
            if !problems.is_empty() {
                return Err(ApiError::Invalid(problems).into());
            }
        }
        if let Some(mut client) = self.read_barrier(&req, r.consistency).await? {
            return forward_read(client.list_jobs(forwarded(req))).await;
        }
        let inner = self.local.shared.read();
        let jobs: Vec<pb::JobView> = inner
            .state
            .jobs()
            .iter()
            .filter(|(name, _)| r.name.is_empty() || **name == r.name)
            .filter(|(_, j)| {
                r.node.is_empty()
                    || (j.phase.active() && j.placements.iter().any(|p| p.node == r.node))
            })
            .map(|(name, j)| {
                let key = domain::EntityKey::new(domain::kinds::JOB, name.clone());
                convert::job_to_pb(name, j, inner.state.entity(&key))
            })
            .collect();
        drop(inner);
        if !r.name.is_empty() && jobs.is_empty() {
            return Err(
                ApiError::Rejected(domain::Rejection::NotFound(format!("job/{}", r.name))).into(),
            );
        }
        Ok(Response::new(pb::ListJobsResponse {
            jobs,
            read: Some(self.read_info(r.consistency)),
        }))
    }

    async fn list_queues(
        &self,
        req: Request<pb::ListQueuesRequest>,
    ) -> std::result::Result<Response<pb::ListQueuesResponse>, Status> {
        let consistency = req.get_ref().consistency;
        if let Some(mut client) = self.read_barrier(&req, consistency).await? {
            return forward_read(client.list_queues(forwarded(req))).await;
        }
        let inner = self.local.shared.read();
        let state = &inner.state;
        let used = state.queue_usage();
        let mut queues: BTreeMap<String, pb::QueueView> = BTreeMap::new();
        let view = |name: &str| pb::QueueView {
            name: name.to_string(),
            ..Default::default()
        };
        for (q, quota) in state.quotas() {
            queues
                .entry(q.clone())
                .or_insert_with(|| view(q))
                .quota_gpus = Some(*quota);
        }
        for j in state.jobs().values() {
            let q = &j.doc.spec.scheduling.queue;
            let v = queues.entry(q.clone()).or_insert_with(|| view(q));
            if j.phase == domain::job::JobPhase::Queued {
                v.queued_jobs += 1;
            } else if j.phase.active() {
                v.active_jobs += 1;
            }
        }
        for (q, v) in queues.iter_mut() {
            v.used_gpus = used.get(q).copied().unwrap_or(0);
        }
        drop(inner);
        Ok(Response::new(pb::ListQueuesResponse {
            queues: queues.into_values().collect(),
            read: Some(self.read_info(consistency)),
        }))
    }

    async fn list_crons(
        &self,
        req: Request<pb::ListCronsRequest>,
    ) -> std::result::Result<Response<pb::ListCronsResponse>, Status> {
        let r = req.get_ref();
        if let Some(mut client) = self.read_barrier(&req, r.consistency).await? {
            return forward_read(client.list_crons(forwarded(req))).await;
        }
        let inner = self.local.shared.read();
        let crons: Vec<pb::CronView> = inner
            .state
            .crons()
            .filter(|(name, _)| r.name.is_empty() || **name == r.name)
            .map(|(name, c)| {
                let key = domain::EntityKey::new(domain::kinds::CRON, name.clone());
                convert::cron_to_pb(name, c, inner.state.entity(&key))
            })
            .collect();
        drop(inner);
        if !r.name.is_empty() && crons.is_empty() {
            return Err(ApiError::Rejected(domain::Rejection::NotFound(format!(
                "cron/{}",
                r.name
            )))
            .into());
        }
        Ok(Response::new(pb::ListCronsResponse {
            crons,
            read: Some(self.read_info(r.consistency)),
        }))
    }

    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> std::result::Result<Response<pb::ListNodesResponse>, Status> {
        let r = req.get_ref();
        if !r.name.is_empty() {
            let mut problems = Vec::new();
            domain::validate::node_name_problems("name", &r.name, &mut problems);
            if !problems.is_empty() {
                return Err(ApiError::Invalid(problems).into());
            }
        }
        if let Some(mut client) = self.read_barrier(&req, r.consistency).await? {
            return forward_read(client.list_nodes(forwarded(req))).await;
        }
        let inner = self.local.shared.read();
        let nodes: Vec<pb::NodeView> = inner
            .state
            .nodes()
            .iter()
            .filter(|(name, _)| r.name.is_empty() || **name == r.name)
            .map(|(name, n)| {
                let key = domain::EntityKey::new(domain::kinds::NODE, name.clone());
                convert::node_to_pb(name, n, inner.state.entity(&key))
            })
            .collect();
        drop(inner);
        if !r.name.is_empty() && nodes.is_empty() {
            return Err(ApiError::Rejected(domain::Rejection::NotFound(format!(
                "node/{}",
                r.name
            )))
            .into());
        }
        Ok(Response::new(pb::ListNodesResponse {
            nodes,
            read: Some(self.read_info(r.consistency)),
        }))
    }
}

impl Api {
    async fn remote_report(&self, addr: &str) -> std::result::Result<MemberReport, String> {
        let channel = self.channel(addr).map_err(|e| e.to_string())?;
        let mut client = RaftTransportClient::new(channel);
        let call = client.member_status(pb::RaftMessage::default());
        match tokio::time::timeout(Duration::from_secs(1), call).await {
            Err(_) => Err("no answer within 1s".into()),
            Ok(Err(s)) => Err(format!("{}: {}", s.code(), s.message())),
            Ok(Ok(r)) => decode(&r.into_inner().data).map_err(|e| e.to_string()),
        }
    }

    /// Propose `ReconcileMembers` whenever this member becomes leader of a new term, so
    /// membership changes made by an earlier leader are recorded too.
    pub async fn record_membership_on_leadership(self) {
        let mut rx = self.raft().metrics();
        let mut done_term = 0;
        loop {
            let (leading, term) = {
                let m = rx.borrow_and_update();
                (m.state == ServerState::Leader, m.current_term)
            };
            if leading && term != done_term {
                match self.reconcile_members().await {
                    Ok(()) => done_term = term,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record the membership; will retry")
                    }
                }
                if done_term != term {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_write_that_lost_its_leader_is_indeterminate() {
        // The leader answered "not the leader": nothing happened, the client may retry.
        let not_leader: Status = ApiError::NotLeader { leader: None }.into();
        let s = forwarded_write::<()>(Err(not_leader)).unwrap_err();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(cairn_proto::certainly_not_applied(&s));
        // The connection to the leader broke mid-request: it may have applied it.
        let s = forwarded_write::<()>(Err(Status::unavailable("transport error"))).unwrap_err();
        assert_eq!(s.code(), tonic::Code::DeadlineExceeded);
        assert!(!cairn_proto::certainly_not_applied(&s));
        // The leader could not even be reached: nothing was sent.
        let s = forwarded_write::<()>(Err(Status::unavailable("tcp connect error"))).unwrap_err();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        // Rejections pass through unchanged.
        let s = forwarded_write::<()>(Err(Status::not_found("namespace/x"))).unwrap_err();
        assert_eq!(s.code(), tonic::Code::NotFound);
    }

    #[test]
    fn filters_are_validated_with_field_paths() {
        let err = filter_from_pb(Some(pb::EventFilter {
            entity: Some(pb::EntityRef {
                kind: "gadget".into(),
                name: String::new(),
            }),
            types: vec!["note_added".into(), "exploded".into()],
            since_ms: Some(10),
            until_ms: Some(5),
            after_sequence: 0,
        }))
        .unwrap_err();
        let ApiError::Invalid(problems) = err else {
            panic!("expected an invalid-argument error, got {err:?}");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("filter.entity.kind"));
        assert!(problems[1].starts_with("filter.types[1]"));
        assert!(problems[2].contains("since must be before until"));
    }
}
