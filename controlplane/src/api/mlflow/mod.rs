//! The MLflow-compatible REST facade: MLflow's model-registry API 2.0 over HTTP, so
//! MLflow's own client uses Cairn as its registry. A second adapter over the
//! application layer, beside gRPC: writes become domain commands (forwarded to the
//! leader from a follower, answered only once committed); reads are linearizable
//! (served by the leader, through gRPC from a follower).
//!
//! - [`registry`]: the endpoints, under `/api/2.0/mlflow/` (and `/ajax-api/...`).
//! - [`json`]: MLflow's objects, made from Cairn's model views.
//! - [`search`]: MLflow's filter grammar, orderings and page tokens.
//! - [`request`]: reading a request's parameters (query string or JSON body).
//! - [`error`]: MLflow's error body and codes; the one mapping from `AppError`.

mod auth;
mod error;
mod json;
mod registry;
mod request;
mod search;

use std::future::Future;
use std::sync::Arc;

use axum::routing::{get, patch, post};
use axum::Router;
use cairn_domain::{Command, CommandBody};
use cairn_proto as pb;
use cairn_proto::tls::server::ServerTls;
use tokio::net::TcpListener;

use crate::app::{App, AppError, Consistency, Route};
use crate::auth::limit::RateLimits;
use crate::convert::ToPb;
use crate::views;
pub use error::MlflowError;

/// The facade's state: the member's application layer.
#[derive(Clone)]
pub struct Facade {
    app: App,
}

/// A committed write: the entry that carried it, and the events it appended.
struct Written {
    index: u64,
    events: Vec<pb::Event>,
}

/// How a read is served.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// Linearizable: by the leader, once it has confirmed that it still leads.
    Now,
    /// Once this member has applied the entry at this index (a write of the same
    /// request): the answer then holds that write and every write acknowledged before
    /// it was made, with no round trip to the leader.
    After(u64),
}

impl Facade {
    /// Record `body` as its caller: on this member if it leads, else through the leader.
    async fn submit(&self, who: &auth::Who, body: CommandBody) -> Result<Written, MlflowError> {
        let (actor, role, bearer) = match &who.0 {
            Some(c) => (
                c.identity.to_string(),
                c.role,
                c.bearer.clone().unwrap_or_default(),
            ),
            None => (request::ANONYMOUS.to_string(), None, Vec::new()),
        };
        let cmd = Command {
            timestamp_ms: 0,
            actor,
            role,
            bearer,
            correlation_id: String::new(),
            expected_revision: None,
            body,
        };
        cairn_domain::authz::authorize(&cmd).map_err(AppError::Rejected)?;
        let cmd = self.app.accept(cmd)?;
        let leader = match self.app.route(false).await? {
            Route::Here => match self.app.propose(&cmd).await {
                Ok(a) => {
                    return Ok(Written {
                        index: a.raft_index,
                        events: a.events,
                    })
                }
                // Leadership moved before the command was appended: send it on.
                Err(AppError::NotLeader {
                    leader: Some((_, addr)),
                }) => addr,
                Err(e) => return Err(e.into()),
            },
            Route::Leader(addr) => addr,
        };
        let mut client = self.app.member_client(&leader)?;
        let req = pb::SubmitRequest {
            command: Some(cmd.to_pb()),
        };
        let r = client.submit(req).await?.into_inner();
        Ok(Written {
            index: r.raft_index,
            events: r.events,
        })
    }

    /// The model `name`, if it exists.
    async fn models(&self, name: &str, read: Read) -> Result<Vec<pb::ModelView>, MlflowError> {
        self.models_where(read, name, |n| n == name).await
    }

    /// Models whose name `admit` accepts (from the leader, all `named`: empty for all).
    async fn models_where(
        &self,
        read: Read,
        named: &str,
        admit: impl Fn(&str) -> bool,
    ) -> Result<Vec<pb::ModelView>, MlflowError> {
        let route = match read {
            Read::Now => {
                self.app
                    .read_barrier(Consistency::Linearizable, false)
                    .await?
            }
            Read::After(index) => {
                self.app.applied_through(index).await?;
                Route::Here
            }
        };
        match route {
            Route::Here if !named.is_empty() => {
                Ok(self.app.with_state(|s| views::models(s, named, false)))
            }
            Route::Here => Ok(self
                .app
                .with_state(|s| views::models_where(s, false, admit))),
            Route::Leader(addr) => {
                let mut client = self.app.member_client(&addr)?;
                let req = pb::ListModelsRequest {
                    name: named.to_string(),
                    ..Default::default()
                };
                match client.list_models(req).await {
                    Ok(r) => Ok(r
                        .into_inner()
                        .models
                        .into_iter()
                        .filter(|m| admit(&m.name))
                        .collect()),
                    Err(s) if s.code() == tonic::Code::NotFound => Ok(Vec::new()),
                    Err(s) => Err(s.into()),
                }
            }
        }
    }

    /// The model `name`, or MLflow's not-found error.
    async fn model(&self, name: &str, read: Read) -> Result<pb::ModelView, MlflowError> {
        self.models(name, read)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                MlflowError::not_found(format!("Registered Model with name={name} not found"))
            })
    }

    /// Version `version` of model `name`, or MLflow's not-found error.
    async fn version(
        &self,
        name: &str,
        version: u64,
        read: Read,
    ) -> Result<pb::ModelVersionView, MlflowError> {
        self.model(name, read)
            .await?
            .versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| {
                MlflowError::not_found(format!(
                    "Model Version (name={name}, version={version}) not found"
                ))
            })
    }
}

/// The routes, under both of MLflow's prefixes; over TLS, every request authenticated
/// and counted against its caller's rate first.
fn router(app: App, tls: Option<Arc<RateLimits>>) -> Router {
    let api = Router::new()
        .route("/registered-models/create", post(registry::create_model))
        .route("/registered-models/get", get(registry::get_model))
        .route("/registered-models/rename", post(registry::rename_model))
        .route("/registered-models/update", patch(registry::update_model))
        .route(
            "/registered-models/delete",
            axum::routing::delete(registry::delete_model),
        )
        .route("/registered-models/search", get(registry::search_models))
        .route(
            "/registered-models/get-latest-versions",
            post(registry::latest_versions).get(registry::latest_versions),
        )
        .route("/registered-models/set-tag", post(registry::set_model_tag))
        .route(
            "/registered-models/delete-tag",
            axum::routing::delete(registry::delete_model_tag),
        )
        .route(
            "/registered-models/alias",
            post(registry::set_alias)
                .delete(registry::delete_alias)
                .get(registry::get_by_alias),
        )
        .route("/model-versions/create", post(registry::create_version))
        .route("/model-versions/get", get(registry::get_version))
        .route("/model-versions/update", patch(registry::update_version))
        .route(
            "/model-versions/delete",
            axum::routing::delete(registry::delete_version),
        )
        .route("/model-versions/search", get(registry::search_versions))
        .route(
            "/model-versions/transition-stage",
            post(registry::transition_stage),
        )
        .route("/model-versions/set-tag", post(registry::set_version_tag))
        .route(
            "/model-versions/delete-tag",
            axum::routing::delete(registry::delete_version_tag),
        )
        .route(
            "/model-versions/get-download-uri",
            get(registry::download_uri),
        )
        .route_layer(axum::middleware::from_fn(crate::metrics::http::mlflow))
        .fallback(registry::not_found)
        .with_state(Facade { app: app.clone() });
    let routes = Router::new()
        .nest("/api/2.0/mlflow", api.clone())
        .nest("/ajax-api/2.0/mlflow", api)
        .fallback(registry::not_found);
    match tls {
        Some(rate) => routes.layer(axum::middleware::from_fn_with_state(
            auth::Gate { app, rate },
            auth::authenticate,
        )),
        None => routes,
    }
}

/// Serve the facade on `listener` until `shutdown` resolves.
pub async fn serve(
    app: App,
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    rate: Arc<RateLimits>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        None => {
            axum::serve(listener, router(app, None))
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            let listener = auth::TlsListener::new(listener, tls)?;
            let routes =
                router(app, Some(rate)).into_make_service_with_connect_info::<auth::Peer>();
            axum::serve(listener, routes)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
