//! The gRPC adapter: one thin file per service over the application layer, the request
//! helpers they share, and the one mapping from errors to statuses.
//!
//! - [`cairn`]: the client service (`cairn.v1.Cairn`), with [`stream`] for `SubmitStream`.
//! - [`raft`]: the member-to-member service (`cairn.v1.RaftTransport`).
//! - [`request`]: reading requests (enums, filters, tokens) and forwarding them.
//! - [`status`]: `AppError` → `tonic::Status`.

mod cairn;
mod raft;
mod request;
mod status;
mod stream;

use std::future::Future;
use std::sync::Arc;

use cairn_proto::cairn_server::CairnServer;
use cairn_proto::raft_transport_server::RaftTransportServer;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::auth;
use cairn_proto::tls::server::ServerTls;

pub use cairn::MAX_PAGE;

use crate::app::App;

/// Limits of the services.
#[derive(Clone)]
pub struct Limits {
    /// Largest client request.
    pub max_request_bytes: usize,
    /// Largest Raft message, and largest answer to a client.
    pub max_message_bytes: usize,
    /// Each authenticated caller's request budget (shared with the MLflow facade).
    pub rate: Arc<auth::limit::RateLimits>,
    /// Streams (event tails, write streams) each authenticated identity may hold open.
    pub streams_per_caller: usize,
}

/// A connection whose peer answers no HTTP/2 ping for this long is closed.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(20);

/// Serve both services on `listener` until `shutdown` resolves.
pub async fn serve(
    app: App,
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let on = tls.is_some();
    let router = tonic::transport::Server::builder()
        // Peers that went away without closing (a host lost, a half-open connection)
        // are noticed and their connections closed.
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE))
        .tcp_keepalive(Some(KEEPALIVE))
        .layer(crate::metrics::http::GrpcLayer)
        .add_service(auth::LearnTokens::new(
            InterceptedService::new(
                CairnServer::new(cairn::CairnService::new(
                    app.clone(),
                    Arc::new(auth::limit::StreamLimits::new(limits.streams_per_caller)),
                ))
                .max_decoding_message_size(limits.max_request_bytes)
                .max_encoding_message_size(limits.max_message_bytes),
                auth::client_api(app.clone(), on, limits.rate),
            ),
            app.clone(),
            on,
        ))
        .add_service(InterceptedService::new(
            RaftTransportServer::new(raft::RaftService::new(app))
                .max_decoding_message_size(limits.max_message_bytes)
                .max_encoding_message_size(limits.max_message_bytes),
            auth::raft(on),
        ));
    match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(
                    cairn_proto::tls::server::incoming(listener, tls),
                    shutdown,
                )
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(
                    // Small HTTP/2 frames (trailers) must not wait for delayed ACKs.
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    shutdown,
                )
                .await
        }
    }
}
