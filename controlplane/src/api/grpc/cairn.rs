//! The client service (`cairn.v1.Cairn`): a thin adapter over the application layer.
//! Each handler reads its request (every field checked, naming it), asks the
//! application layer where it is to be served, forwards it to the leader or serves it
//! here, and shapes the answer. Errors map to statuses in `status`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use cairn_domain::model::{Held, Stage};
use cairn_domain::Command;
use cairn_domain::{kinds, EntityKey, Rejection};
use cairn_proto as pb;
use futures::Stream;
use pb::cairn_client::CairnClient;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::request::{
    command, consistency, filter, forward_read, forward_write, forwarded, is_forwarded,
    optional_name, read_info, Stamp,
};
use crate::app::{App, AppError, Applied, EndpointLoad, MembershipChange, Route};
use crate::auth::{self, limit::StreamGuard, limit::StreamLimits};
use crate::convert::FromPb;
use crate::metrics;
use crate::views;

/// Largest page of events one ListEvents answer holds.
pub const MAX_PAGE: u32 = 10_000;

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;
type LogStream = Pin<Box<dyn Stream<Item = Result<pb::LogChunk, Status>> + Send>>;
type SubmitStream = Pin<Box<dyn Stream<Item = Result<pb::SubmitStreamResponse, Status>> + Send>>;

/// The `Cairn` service of one member.
#[derive(Clone)]
pub struct CairnService {
    app: App,
    streams: Arc<StreamLimits>,
}

/// `stream`, holding its caller's stream `place` for as long as the stream lasts.
fn holding<S: futures::Stream>(
    place: Option<StreamGuard>,
    stream: S,
) -> impl futures::Stream<Item = S::Item> {
    futures::StreamExt::map(stream, move |item| {
        let _held = &place;
        item
    })
}

impl CairnService {
    /// `streams`: how many streams each authenticated caller may hold open here.
    pub fn new(app: App, streams: Arc<StreamLimits>) -> Self {
        Self { app, streams }
    }

    /// A place for one more stream of the request's caller (members and plaintext
    /// callers are not counted).
    fn stream_place<T>(&self, req: &Request<T>) -> Result<Option<StreamGuard>, Status> {
        match auth::caller(req) {
            Some(c) if !matches!(c.identity, cairn_proto::tls::Identity::Member(_)) => {
                self.streams.open(&c.identity.to_string()).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Serve a read here at the consistency it asks for, or forward it to the leader.
    async fn read<Q, R, Fwd, Fut>(
        &self,
        req: Request<Q>,
        consistency_field: i32,
        forward: Fwd,
        here: impl FnOnce(&cairn_domain::State, &Q) -> Result<R, AppError>,
        answer: impl FnOnce(R, pb::ReadInfo) -> R,
    ) -> Result<Response<R>, Status>
    where
        Fwd: FnOnce(CairnClient<Channel>, Request<Q>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>> + Send,
    {
        let c = consistency(consistency_field)?;
        if let Route::Leader(addr) = self.app.read_barrier(c, is_forwarded(&req)).await? {
            let client = self.app.member_client(&addr)?;
            return forward_read(forward(client, forwarded(req))).await;
        }
        let (r, point) = self.app.read_at(c, |s| here(s, req.get_ref()));
        Ok(Response::new(answer(r?, read_info(point))))
    }
}

fn submit_response(a: Applied) -> pb::SubmitResponse {
    pb::SubmitResponse {
        events: a.events,
        entity_revision: a.entity_revision,
        raft_index: a.raft_index,
    }
}

fn membership_response(m: MembershipChange) -> pb::MembershipResponse {
    pb::MembershipResponse {
        voters: m.voters,
        learners: m.learners,
        raft_index: m.raft_index,
    }
}

fn not_found(what: String) -> AppError {
    AppError::Rejected(Rejection::NotFound(what))
}

/// A membership change: checked here, made on the leader.
macro_rules! membership_call {
    ($self:ident, $req:ident, $method:ident, $change:expr) => {{
        crate::auth::require_admin(&$req)?;
        if let Route::Leader(addr) = $self.app.route(is_forwarded(&$req)).await? {
            let mut client = $self.app.member_client(&addr)?;
            return forward_write(client.$method(forwarded($req))).await;
        }
        let change: Result<MembershipChange, AppError> = $change.await;
        Ok(Response::new(membership_response(change?)))
    }};
}

impl CairnService {
    /// A write, received at `start`: read and checked here, then proposed if this member
    /// leads, else forwarded to the leader.
    async fn submit_one(
        &self,
        req: Request<pb::SubmitRequest>,
        start: Instant,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let Some(cmd) = req.get_ref().command.clone() else {
            return Err(AppError::Invalid(vec!["command: required".into()]).into());
        };
        let cmd = self.app.accept(command(cmd, &Stamp::of(&req))?)?;
        // The span is made once its fields are known: the log formats a span's fields
        // when it is made and again at each field recorded later.
        let span = tracing::info_span!(
            "Submit",
            member = self.app.id(),
            term = self.app.leading().1,
            entity = cmd.body.target().map(tracing::field::display),
            correlation_id = cmd.correlation_id.as_str(),
        );
        metrics::stage_since(metrics::Stage::Edge, start);
        self.propose_or_forward(req, cmd).instrument(span).await
    }

    /// Propose `cmd` if this member leads, else forward `req` to the leader.
    async fn propose_or_forward(
        &self,
        req: Request<pb::SubmitRequest>,
        cmd: Command,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let forwarded_here = is_forwarded(&req);
        let forward = |req: Request<pb::SubmitRequest>, addr: String| async move {
            let sent = Instant::now();
            let mut client = self.app.member_client(&addr)?;
            let answer = forward_write(client.submit(forwarded(req))).await;
            metrics::stage_since(metrics::Stage::Forward, sent);
            answer
        };
        if let Route::Leader(addr) = self.app.route(forwarded_here).await? {
            return forward(req, addr).await;
        }
        match self.app.propose(&cmd).await {
            // Leadership moved between routing and proposing: the command was not
            // appended, so forwarding it once is safe.
            Err(AppError::NotLeader {
                leader: Some((_, addr)),
            }) if !forwarded_here => forward(req, addr).await,
            r => Ok(Response::new(submit_response(r?))),
        }
    }
}

#[tonic::async_trait]
impl pb::cairn_server::Cairn for CairnService {
    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let start = Instant::now();
        let answer = self.submit_one(req, start).await;
        metrics::stage_since(metrics::Stage::Total, start);
        answer
    }

    type SubmitStreamStream = SubmitStream;

    #[tracing::instrument(name = "SubmitStream", skip_all, fields(member = self.app.id()))]
    async fn submit_stream(
        &self,
        req: Request<tonic::Streaming<pb::SubmitRequest>>,
    ) -> Result<Response<SubmitStream>, Status> {
        self.app.ensure_leader().await?;
        let place = self.stream_place(&req)?;
        let stamp = Stamp::of(&req);
        let input = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(super::stream::WINDOW);
        tokio::spawn(super::stream::answer(self.app.clone(), input, stamp, tx));
        let answers = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(holding(place, answers))))
    }

    #[tracing::instrument(name = "GetEntity", skip_all, fields(member = self.app.id()))]
    async fn get_entity(
        &self,
        req: Request<pb::GetEntityRequest>,
    ) -> Result<Response<pb::GetEntityResponse>, Status> {
        let r = req.get_ref();
        let Some(e) = r.entity.clone() else {
            return Err(AppError::Invalid(vec!["entity: required".into()]).into());
        };
        let key = EntityKey::new(e.kind, e.name);
        let mut problems = Vec::new();
        kinds::entity_problems("entity", &key, &mut problems);
        if !problems.is_empty() {
            return Err(AppError::Invalid(problems).into());
        }
        let c = r.consistency;
        self.read(
            req,
            c,
            |mut c, r| async move { c.get_entity(r).await },
            |s, _| {
                let entity = views::entity(s, &key).ok_or_else(|| not_found(key.to_string()))?;
                Ok(pb::GetEntityResponse {
                    entity: Some(entity),
                    read: None,
                })
            },
            |r, read| pb::GetEntityResponse {
                read: Some(read),
                ..r
            },
        )
        .await
    }

    #[tracing::instrument(name = "ListEntities", skip_all, fields(member = self.app.id()))]
    async fn list_entities(
        &self,
        req: Request<pb::ListEntitiesRequest>,
    ) -> Result<Response<pb::ListEntitiesResponse>, Status> {
        let mut problems = Vec::new();
        kinds::kind_problems("kind", &req.get_ref().kind, &mut problems);
        if !problems.is_empty() {
            return Err(AppError::Invalid(problems).into());
        }
        let c = req.get_ref().consistency;
        self.read(
            req,
            c,
            |mut c, r| async move { c.list_entities(r).await },
            |s, r| {
                Ok(pb::ListEntitiesResponse {
                    entities: views::entities(s, &r.kind, r.include_deleted),
                    read: None,
                })
            },
            |r, read| pb::ListEntitiesResponse {
                read: Some(read),
                ..r
            },
        )
        .await
    }

    #[tracing::instrument(name = "ListEvents", skip_all, fields(member = self.app.id()))]
    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let r = req.get_ref();
        let filter = filter(r.filter.clone())?;
        let c = consistency(r.consistency)?;
        let limit = if r.limit == 0 {
            1000
        } else {
            r.limit.min(MAX_PAGE)
        } as usize;
        let raw = r.raw;
        if let Route::Leader(addr) = self.app.read_barrier(c, is_forwarded(&req)).await? {
            let mut client = self.app.member_client(&addr)?;
            return forward_read(client.list_events(forwarded(req))).await;
        }
        let read = self.app.read_point(c);
        let mut answer = pb::ListEventsResponse {
            read: Some(read_info(read)),
            ..Default::default()
        };
        if raw {
            let (events, next) =
                self.app
                    .list_stored(filter.after_sequence, limit, read.last_sequence)?;
            answer.raw_events = events;
            answer.next_after_sequence = next;
        } else {
            let (events, next) = self.app.list_events(&filter, limit, read.last_sequence)?;
            answer.events = events;
            answer.next_after_sequence = next;
        }
        Ok(Response::new(answer))
    }

    type ReadReplicaLogStream = LogStream;

    /// Read from this member's state where the replica ran, then proxy the agent's log
    /// service, as this member (agents take members' certificates).
    #[tracing::instrument(name = "ReadReplicaLog", skip_all, fields(member = self.app.id()))]
    async fn read_replica_log(
        &self,
        req: Request<pb::ReadLogRequest>,
    ) -> Result<Response<LogStream>, Status> {
        if let Some(auth::Caller {
            identity: cairn_proto::tls::Identity::Agent(a),
            ..
        }) = auth::caller(&req)
        {
            return Err(Status::permission_denied(format!(
                "agent/{a} may not read replica logs"
            )));
        }
        let place = self.stream_place(&req)?;
        let r = req.into_inner();
        let mut problems = Vec::new();
        cairn_domain::validate::name_problems("job", &r.job, &mut problems);
        cairn_domain::validate::name_problems("role", &r.role, &mut problems);
        if !problems.is_empty() {
            return Err(AppError::Invalid(problems).into());
        }
        let (node, endpoint) = self.app.with_state(|s| {
            let job = views::jobs(s, &r.job, "")
                .into_iter()
                .next()
                .ok_or_else(|| not_found(format!("job/{}", r.job)))?;
            let node = job
                .placements
                .iter()
                .find(|p| p.role == r.role && p.index == r.index)
                .map(|p| p.node.clone())
                .ok_or_else(|| {
                    not_found(format!(
                        "job/{} has no replica {}-{} placed (it may have been requeued)",
                        r.job, r.role, r.index
                    ))
                })?;
            let endpoint = views::nodes(s, &node)
                .into_iter()
                .next()
                .and_then(|n| n.inventory)
                .map(|i| i.agent_endpoint)
                .filter(|e| !e.is_empty())
                .ok_or_else(|| {
                    AppError::Unavailable(format!("node/{node}'s agent publishes no log service"))
                })?;
            Ok::<_, AppError>((node, endpoint))
        })?;
        let chunks = self
            .app
            .agent_client(&endpoint)?
            .read_log(r)
            .await
            .map_err(|s| {
                Status::new(
                    s.code(),
                    format!("node/{node}'s agent at {endpoint}: {}", s.message()),
                )
            })?
            .into_inner();
        Ok(Response::new(Box::pin(holding(place, chunks))))
    }

    type WatchEventsStream = EventStream;

    #[tracing::instrument(name = "WatchEvents", skip_all, fields(member = self.app.id()))]
    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let place = self.stream_place(&req)?;
        let filter = filter(req.into_inner().filter)?;
        let events = tokio_stream::wrappers::ReceiverStream::new(self.app.watch(filter));
        let events = futures::StreamExt::map(events, |e| e.map_err(Status::from));
        Ok(Response::new(Box::pin(holding(place, events))))
    }

    #[tracing::instrument(name = "ClusterStatus", skip_all, fields(member = self.app.id()))]
    async fn cluster_status(
        &self,
        _req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let status = self.app.cluster_status().await;
        let members = status
            .members
            .into_iter()
            .map(|m| {
                let mut s = pb::MemberStatus {
                    node_id: m.node_id,
                    address: m.address,
                    ..Default::default()
                };
                match m.report {
                    Ok(r) => {
                        s.role = if !m.voter && r.role != "leader" {
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
                        s.kubernetes = r.kubernetes.summary();
                        s.kubernetes_projection = Some(projection_to_pb(r.kubernetes));
                    }
                    Err(e) => {
                        s.role = "unreachable".into();
                        s.error = e;
                    }
                }
                s
            })
            .collect();
        Ok(Response::new(pb::ClusterStatusResponse {
            leader_id: status.leader_id,
            term: status.term,
            members,
            answered_by: status.answered_by,
        }))
    }

    #[tracing::instrument(name = "AddLearner", skip_all, fields(member = self.app.id()))]
    async fn add_learner(
        &self,
        req: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let r = req.get_ref().clone();
        App::check_learner(r.node_id, &r.address)?;
        membership_call!(
            self,
            req,
            add_learner,
            self.app.add_learner(r.node_id, r.address)
        )
    }

    #[tracing::instrument(name = "Promote", skip_all, fields(member = self.app.id()))]
    async fn promote(
        &self,
        req: Request<pb::PromoteRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let id = req.get_ref().node_id;
        membership_call!(self, req, promote, self.app.promote(id))
    }

    #[tracing::instrument(name = "RemoveMember", skip_all, fields(member = self.app.id()))]
    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let id = req.get_ref().node_id;
        membership_call!(self, req, remove_member, self.app.remove_member(id))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let digest = Stamp::of(&req).token_digest;
        let req = req.into_inner();
        let loads = req
            .serving
            .into_iter()
            .map(|l| EndpointLoad {
                deployment: l.deployment,
                revision: l.revision,
                in_flight_milli: l.in_flight_milli,
            })
            .collect();
        let h = self.app.heartbeat(&req.node, &digest, loads).await?;
        Ok(Response::new(pb::HeartbeatResponse {
            leader_id: h.leader_id,
            lost: h.lost,
            grace_ms: h.grace_ms,
        }))
    }

    #[tracing::instrument(name = "ListJobs", skip_all, fields(member = self.app.id()))]
    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let r = req.get_ref();
        optional_name("name", &r.name, false)?;
        optional_name("node", &r.node, true)?;
        let c = r.consistency;
        self.read(
            req,
            c,
            |mut c, r| async move { c.list_jobs(r).await },
            |s, r| {
                let jobs = views::jobs(s, &r.name, &r.node);
                if !r.name.is_empty() && jobs.is_empty() {
                    return Err(not_found(format!("job/{}", r.name)));
                }
                Ok(pb::ListJobsResponse { jobs, read: None })
            },
            |r, read| pb::ListJobsResponse {
                read: Some(read),
                ..r
            },
        )
        .await
    }

    #[tracing::instrument(name = "ListQueues", skip_all, fields(member = self.app.id()))]
    async fn list_queues(
        &self,
        req: Request<pb::ListQueuesRequest>,
    ) -> Result<Response<pb::ListQueuesResponse>, Status> {
        let c = req.get_ref().consistency;
        self.read(
            req,
            c,
            |mut c, r| async move { c.list_queues(r).await },
            |s, _| {
                Ok(pb::ListQueuesResponse {
                    queues: views::queues(s),
                    read: None,
                })
            },
            |r, read| pb::ListQueuesResponse {
                read: Some(read),
                ..r
            },
        )
        .await
    }

    #[tracing::instrument(name = "ListCrons", skip_all, fields(member = self.app.id()))]
    async fn list_crons(
        &self,
        req: Request<pb::ListCronsRequest>,
    ) -> Result<Response<pb::ListCronsResponse>, Status> {
        let r = req.get_ref();
        optional_name("name", &r.name, false)?;
        let c = r.consistency;
        self.read(
            req,
            c,
            |mut c, r| async move { c.list_crons(r).await },
            |s, r| {
                let crons = views::crons(s, &r.name);
                if !r.name.is_empty() && crons.is_empty() {
                    return Err(not_found(format!("cron/{}", r.name)));
                }
                Ok(pb::ListCronsResponse { crons, read: None })
            },
            |r, read| pb::ListCronsResponse {
                read: Some(read),
                ..r
            },
        )
        .await
    }

    #[tracing::instrument(name = "ListNodes", skip_all, fields(member = self.app.id()))]
    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let r = req.get_ref();
        optional_name("name", &r.name, true)?;
        let c = r.consistency;
        self.read(
            req,
            c,
            |mut c, r| async move { c.list_nodes(r).await },
            |s, r| {
                let nodes = views::nodes(s, &r.name);
                if !r.name.is_empty() && nodes.is_empty() {
                    return Err(not_found(format!("node/{}", r.name)));
                }
                Ok(pb::ListNodesResponse { nodes, read: None })
            },
            |r, read| pb::ListNodesResponse {
                read: Some(read),
                ..r
            },
        )
        .await
    }

    #[tracing::instrument(name = "ListModels", skip_all, fields(member = self.app.id()))]
    async fn list_models(
        &self,
        req: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let r = req.get_ref();
        if !r.name.is_empty() || r.at_ms.is_some() {
            let mut problems = Vec::new();
            cairn_domain::model::values::name_problems("name", &r.name, &mut problems);
            if !problems.is_empty() {
                return Err(AppError::Invalid(problems).into());
            }
        }
        let c = consistency(r.consistency)?;
        if let Route::Leader(addr) = self.app.read_barrier(c, is_forwarded(&req)).await? {
            let mut client = self.app.member_client(&addr)?;
            return forward_read(client.list_models(forwarded(req))).await;
        }
        let read = read_info(self.app.read_point(c));
        let r = req.into_inner();
        let models = match r.at_ms {
            Some(at) => match self.app.model_at(&r.name, at)? {
                Some(m) => vec![views::model(&r.name, &m, 0)],
                None => Vec::new(),
            },
            None => self
                .app
                .with_state(|s| views::models(s, &r.name, r.include_deleted)),
        };
        if !r.name.is_empty() && models.is_empty() {
            return Err(not_found(format!("model/{}", r.name)).into());
        }
        Ok(Response::new(pb::ListModelsResponse {
            models,
            read: Some(read),
        }))
    }

    #[tracing::instrument(name = "ListDeployments", skip_all, fields(member = self.app.id()))]
    async fn list_deployments(
        &self,
        req: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let r = req.get_ref();
        optional_name("name", &r.name, false)?;
        let c = r.consistency;
        self.read(
            req,
            c,
            |mut c, r| async move { c.list_deployments(r).await },
            |s, r| {
                let deployments = views::deployments(s, &r.name, r.include_deleted);
                if !r.name.is_empty() && deployments.is_empty() {
                    return Err(not_found(format!("deployment/{}", r.name)));
                }
                Ok(pb::ListDeploymentsResponse {
                    deployments,
                    read: None,
                })
            },
            |r, read| pb::ListDeploymentsResponse {
                read: Some(read),
                ..r
            },
        )
        .await
    }

    #[tracing::instrument(name = "WhoHeld", skip_all, fields(member = self.app.id()))]
    async fn who_held(
        &self,
        req: Request<pb::WhoHeldRequest>,
    ) -> Result<Response<pb::WhoHeldResponse>, Status> {
        let r = req.get_ref();
        let mut problems = Vec::new();
        cairn_domain::model::values::name_problems("name", &r.name, &mut problems);
        let held = match &r.held {
            Some(pb::who_held_request::Held::Stage(s)) => match pb::ModelStage::try_from(*s) {
                Ok(s) => Some(Held::Stage(
                    Stage::from_pb(&s).map_err(|m| AppError::Invalid(m.0))?,
                )),
                Err(_) => {
                    problems.push(format!("stage: unknown stage {s}"));
                    None
                }
            },
            Some(pb::who_held_request::Held::Alias(a)) => Some(Held::Alias(a.clone())),
            None => {
                problems.push("held: a stage or an alias is required".into());
                None
            }
        };
        let (Some(held), true) = (held, problems.is_empty()) else {
            return Err(AppError::Invalid(problems).into());
        };
        let c = consistency(r.consistency)?;
        if let Route::Leader(addr) = self.app.read_barrier(c, is_forwarded(&req)).await? {
            let mut client = self.app.member_client(&addr)?;
            return forward_read(client.who_held(forwarded(req))).await;
        }
        let read = read_info(self.app.read_point(c));
        let holders = self
            .app
            .who_held(&req.get_ref().name, &held, req.get_ref().at_ms)?
            .into_iter()
            .map(|h| pb::Holding {
                version: h.version,
                since_ms: h.since_ms,
                actor: h.actor,
                reason: h.reason,
                sequence: h.sequence,
            })
            .collect();
        Ok(Response::new(pb::WhoHeldResponse {
            holders,
            read: Some(read),
        }))
    }
}

fn projection_to_pb(r: crate::app::ProjectionReport) -> pb::KubernetesProjection {
    pb::KubernetesProjection {
        state: r.state,
        namespace: r.namespace,
        projected_through: r.projected_through,
        last_sequence: r.last_sequence,
        checkpoint: r.checkpoint,
        resumed_from: r.resumed_from,
        lag_ms: r.lag_ms,
        objects: r.objects.into_iter().collect(),
        last_reconcile_ms: r.last_reconcile_ms,
        last_reconcile: r.last_reconcile,
        reconciles: r.reconciles,
        error: r.error,
        unserved: r.unserved,
        refused: r.refused,
    }
}
