//! The stable endpoint of a model deployment: an HTTP/1.1 reverse proxy on one port that
//! splits traffic between the deployment's revisions by weight and sends each request to
//! the ready replica of its revision with the fewest requests in flight.
//!
//! The agent owns a [`Router`] per deployment, replaces its routes whenever readiness or
//! weights change ([`Router::set_routes`], atomic: a request sees the old table or the new
//! one), and waits on [`Router::drained`] before stopping a replica, so that no request in
//! flight is cut. [`Router::load`] gives autoscaling its figures.
//!
//! A request goes through unchanged but for the hop-by-hop headers (they concern one
//! connection), an `x-forwarded-for` naming the client, and an `x-cairn-revision` on the
//! response naming the revision that answered. Bodies stream both ways, frame by frame;
//! connections to replicas are pooled and kept alive. A request counts as in flight from
//! the moment it is routed until its response has been streamed back in full (or the
//! client went away).
//!
//! A request is sent again, once, only when connecting to its replica failed: the replica
//! never saw it, so sending it elsewhere cannot run it twice. Once sent, a failure is the
//! client's `502`; no ready replica at all is a `503`.
//!
//! Left out for now: HTTP/2, protocol upgrades (WebSocket), TLS, and a time limit on slow
//! replicas (a request lasts as long as its replica takes).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONNECTION, CONTENT_TYPE};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{self, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::table::Table;
pub use super::table::{RevisionLoad, Route};

/// The response header naming the revision that answered.
pub const REVISION_HEADER: HeaderName = HeaderName::from_static("x-cairn-revision");

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A replica that does not accept a connection within this long counts as unreachable,
/// and the request goes to another.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Idle connections to replicas are closed before the common servers' own keep-alive
/// limit (uvicorn's is 5 s): a request sent on a connection the replica is closing at
/// that moment fails after it was sent, and cannot be sent again.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// The pause after a failed accept (most likely out of file descriptors), so that the
/// loop does not spin while connections end.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type ResponseBody = BoxBody<Bytes, hyper::Error>;

/// The reverse proxy of one deployment's stable endpoint. Cheap to clone: clones share
/// the table, the counts and the pool of connections to replicas.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

struct Shared {
    table: Mutex<Table>,
    /// Woken when the table changes or a backend out of it finishes its last request:
    /// what [`Router::drained`] waits on.
    changed: Notify,
    client: Client<HttpConnector, Resendable>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    /// A router with an empty table: every request gets a `503` until routes are set.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Self {
            shared: Arc::new(Shared {
                table: Mutex::new(Table::default()),
                changed: Notify::new(),
                client,
            }),
        }
    }

    /// Replaces the whole routing table. Requests in flight keep their backend.
    pub fn set_routes(&self, routes: Vec<Route>) {
        self.shared.table().set(routes);
        self.shared.changed.notify_waiters();
    }

    /// Resolves once `backend` is out of the table and has no request in flight: it can
    /// then be stopped without cutting a request.
    pub fn drained(&self, backend: SocketAddr) -> impl Future<Output = ()> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        async move {
            loop {
                // Registered before the check, so a change right after it still wakes us.
                let changed = shared.changed.notified();
                if shared.table().is_drained(backend) {
                    return;
                }
                changed.await;
            }
        }
    }

    /// Per revision, by number: requests in flight and requests answered so far. Lists
    /// the revisions in the table and those that left it with requests still in flight.
    pub fn load(&self) -> Vec<RevisionLoad> {
        self.shared.table().load()
    }

    /// Serves the endpoint on `listener` until `shutdown` resolves, then stops accepting
    /// and returns once the requests in flight have been answered.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let mut http = http1::Builder::new();
        // The timer enables hyper's limit on reading a request's head (30 s).
        http.timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!(error = %e, "accepting a connection to the stable endpoint failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            if let Err(e) = stream.set_nodelay(true) {
                debug!(error = %e, %peer, "could not set TCP_NODELAY");
            }
            let router = self.clone();
            let client = peer.ip().to_canonical();
            let service = service_fn(move |request| {
                let router = router.clone();
                async move { Ok::<_, Infallible>(router.forward(request, client).await) }
            });
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    debug!(error = %e, %peer, "a client connection ended in error");
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
    }

    /// Routes one request and streams back its replica's response, or the router's own
    /// `502` or `503`.
    async fn forward(&self, request: Request<Incoming>, client: IpAddr) -> Response<ResponseBody> {
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        add_forwarded_for(&mut parts.headers, client);
        let Some(mut target) = self.start(|t| t.pick(None)) else {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "no ready replica serves this deployment\n",
            );
        };
        let mut sent = self.send(&parts, &target, body).await;
        if let Err(SendError::NotReached(body, e)) = sent {
            let (revision, backend) = (target.revision, target.backend);
            let Some(again) = self.start(|t| t.pick_again(revision, backend)) else {
                warn!(revision, %backend, error = %e, "connecting to a replica failed, and no other can take the request");
                return message(
                    StatusCode::BAD_GATEWAY,
                    "the replica could not be reached\n",
                );
            };
            debug!(revision, %backend, error = %e, "connecting to a replica failed; sending the request to another");
            target = again;
            sent = self.send(&parts, &target, body).await;
        }
        match sent {
            Ok(response) => target.answer(response),
            Err(e) => {
                warn!(revision = target.revision, backend = %target.backend, error = %e, "forwarding a request failed");
                message(StatusCode::BAD_GATEWAY, "the replica did not answer\n")
            }
        }
    }

    /// Counts a request in flight where `choose` picks, if it picks anywhere.
    fn start(
        &self,
        choose: impl FnOnce(&mut Table) -> Option<(u64, SocketAddr)>,
    ) -> Option<InFlight> {
        let (revision, backend) = choose(&mut self.shared.table())?;
        Some(InFlight {
            shared: Arc::clone(&self.shared),
            revision,
            backend,
            answered: false,
            since: std::time::Instant::now(),
        })
    }

    async fn send(
        &self,
        parts: &Parts,
        target: &InFlight,
        body: Incoming,
    ) -> Result<Response<Incoming>, SendError> {
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let uri = Uri::builder()
            .scheme("http")
            .authority(target.backend.to_string())
            .path_and_query(path)
            .build()
            .map_err(|e| SendError::Failed(e.into()))?;
        let slot = Arc::new(Mutex::new(Some(body)));
        let mut request = Request::new(Resendable {
            slot: Arc::clone(&slot),
            body: None,
        });
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = parts.headers.clone();
        self.shared.client.request(request).await.map_err(|e| {
            let unsent = e.is_connect().then(|| take(&slot)).flatten();
            match unsent {
                Some(body) => SendError::NotReached(body, e),
                None => SendError::Failed(e.into()),
            }
        })
    }
}

/// Why a request got no response from its replica.
enum SendError {
    /// Connecting failed, so the replica never saw the request; its body comes back.
    NotReached(Incoming, legacy::Error),
    /// Anything else: the replica may have seen the request, which must not be sent again.
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReached(_, e) => write!(f, "{e}"),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// A request's place in the in-flight counts of its backend and revision; dropping it
/// ends the request.
struct InFlight {
    shared: Arc<Shared>,
    revision: u64,
    backend: SocketAddr,
    answered: bool,
    since: std::time::Instant,
}

impl InFlight {
    /// The response for the client: the request stays in flight until its body has
    /// been streamed.
    fn answer(mut self, response: Response<Incoming>) -> Response<ResponseBody> {
        self.answered = true;
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts
            .headers
            .insert(REVISION_HEADER, HeaderValue::from(self.revision));
        let body = Tracked {
            body,
            _in_flight: self,
        };
        Response::from_parts(parts, body.boxed())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let drained = self.shared.table().finish(
            self.revision,
            self.backend,
            self.answered,
            self.since.elapsed(),
        );
        if drained {
            self.shared.changed.notify_waiters();
        }
    }
}

/// A response body that keeps its request in flight until it has been streamed.
struct Tracked {
    body: Incoming,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body left in a slot the router can take it back from until the connection
/// to the replica first asks for data: the client's request body cannot be copied, and a
/// request whose connection failed must still be sendable elsewhere.
struct Resendable {
    slot: Arc<Mutex<Option<Incoming>>>,
    /// The body, once taken from the slot.
    body: Option<Incoming>,
}

fn take(slot: &Mutex<Option<Incoming>>) -> Option<Incoming> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).take()
}

impl Body for Resendable {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.body.is_none() {
            self.body = take(&self.slot);
        }
        match &mut self.body {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Some(body) => body.is_end_stream(),
            None => self
                .slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_none_or(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Some(body) => body.size_hint(),
            None => self
                .slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(Body::size_hint)
                .unwrap_or_default(),
        }
    }
}

/// Whether a header concerns one connection only (RFC 9110 §7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    ) || name.as_str().starts_with("proxy-")
}

/// Removes the hop-by-hop headers, and those the `Connection` header names as such.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok());
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| hop_by_hop(name))
        .cloned()
        .chain(named)
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Appends the client's address to `x-forwarded-for`.
fn add_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let mut chain: Vec<String> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    chain.push(client.to_string());
    if let Ok(value) = HeaderValue::try_from(chain.join(", ")) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

/// The router's own short answer.
fn message(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let body = Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::Method;
    use http_body_util::StreamBody;
    use tokio::sync::{mpsc, oneshot};
    use tokio::time::timeout;
    use tokio_stream::wrappers::ReceiverStream;

    use super::*;
    use crate::test_support::eventually;

    /// How long a replica stand-in takes to answer `/slow`.
    const SLOW: Duration = Duration::from_millis(500);
    /// The limit on anything that should happen promptly.
    const PROMPTLY: Duration = Duration::from_secs(10);

    /// A replica stand-in. It answers `GET /` with its name and `GET /slow` with its name
    /// at once and the rest of its body after [`SLOW`], echoes the body of a `POST` as it
    /// arrives, and counts what it gets.
    struct Backend {
        addr: SocketAddr,
        requests: Arc<AtomicUsize>,
        connections: Arc<AtomicUsize>,
    }

    impl Backend {
        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    async fn backend(name: &'static str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let counts = (Arc::clone(&requests), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counts.1.fetch_add(1, Ordering::SeqCst);
                let requests = Arc::clone(&counts.0);
                let service = service_fn(move |request| {
                    requests.fetch_add(1, Ordering::SeqCst);
                    answer(name, request)
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Backend {
            addr,
            requests,
            connections,
        }
    }

    async fn answer(
        name: &'static str,
        request: Request<Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        if request.method() == Method::POST {
            return Ok(Response::new(request.into_body().boxed()));
        }
        if request.uri().path() == "/slow" {
            let (chunks, rx) = mpsc::channel(2);
            tokio::spawn(async move {
                let _ = chunks
                    .send(Ok(Frame::data(Bytes::from(format!("{name}, ")))))
                    .await;
                tokio::time::sleep(SLOW).await;
                let _ = chunks
                    .send(Ok(Frame::data(Bytes::from("after a while"))))
                    .await;
            });
            return Ok(Response::new(
                StreamBody::new(ReceiverStream::new(rx)).boxed(),
            ));
        }
        Ok(Response::new(
            Full::from(name).map_err(|never| match never {}).boxed(),
        ))
    }

    /// An address where nothing listens, so connecting is refused, held (bound, never
    /// listening) for as long as the socket lives so that no other test can take it.
    fn refusing() -> (tokio::net::TcpSocket, SocketAddr) {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind");
        let addr = socket.local_addr().expect("addr");
        (socket, addr)
    }

    fn route(revision: u64, weight: u32, backends: &[SocketAddr]) -> Route {
        Route {
            revision,
            weight,
            backends: backends.to_vec(),
        }
    }

    /// A router serving on a port of its own, until the test ends.
    async fn endpoint(routes: Vec<Route>) -> (Router, SocketAddr) {
        let router = Router::new();
        router.set_routes(routes);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let serving = router.clone();
        tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
        (router, addr)
    }

    /// A client with pooled keep-alive connections.
    fn client() -> Client<HttpConnector, Full<Bytes>> {
        Client::builder(TokioExecutor::new()).build_http()
    }

    /// Status, `x-cairn-revision` (empty if none) and body of a request to `addr`.
    async fn call(
        client: &Client<HttpConnector, Full<Bytes>>,
        addr: SocketAddr,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> (StatusCode, String, Bytes) {
        let request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Full::new(body.into()))
            .expect("request");
        let response = timeout(PROMPTLY, client.request(request))
            .await
            .expect("in time")
            .expect("a response");
        let revision = response
            .headers()
            .get(REVISION_HEADER)
            .map(|v| v.to_str().expect("text").to_owned())
            .unwrap_or_default();
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        (status, revision, body)
    }

    async fn get(
        client: &Client<HttpConnector, Full<Bytes>>,
        addr: SocketAddr,
        path: &str,
    ) -> (StatusCode, String, Bytes) {
        call(client, addr, Method::GET, path, Bytes::new()).await
    }

    #[tokio::test]
    async fn traffic_splits_by_weight() {
        let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
        let (router, addr) = endpoint(vec![
            route(1, 10, &[a.addr]),
            route(2, 90, &[b.addr, c.addr]),
        ])
        .await;
        let client = client();

        // --- 2,000 requests at 10/90
        let mut to_first = 0u32;
        for _ in 0..2000 {
            let (status, revision, _) = get(&client, addr, "/").await;
            assert_eq!(status, StatusCode::OK);
            to_first += u32::from(revision == "1");
        }
        let share = f64::from(to_first) / 20.0;
        assert!((share - 10.0).abs() <= 3.0, "revision 1 got {share}%");
        assert_eq!(a.requests() + b.requests() + c.requests(), 2000);

        // --- 0/100: all to revision 2
        router.set_routes(vec![route(1, 0, &[a.addr]), route(2, 100, &[b.addr])]);
        let before = a.requests();
        for _ in 0..200 {
            let (status, revision, body) = get(&client, addr, "/").await;
            assert_eq!(
                (status, revision.as_str(), &body[..]),
                (StatusCode::OK, "2", &b"b"[..])
            );
        }
        assert_eq!(a.requests(), before);
    }

    #[tokio::test]
    async fn only_backends_in_the_table_get_requests() {
        let (a, b, outside) = (
            backend("a").await,
            backend("b").await,
            backend("outside").await,
        );
        let (router, addr) = endpoint(vec![route(1, 50, &[a.addr]), route(2, 50, &[])]).await;
        let client = client();

        // --- revision 2 has no backend: revision 1 takes everything
        for _ in 0..50 {
            let (status, revision, body) = get(&client, addr, "/").await;
            assert_eq!(
                (status, revision.as_str(), &body[..]),
                (StatusCode::OK, "1", &b"a"[..])
            );
        }

        // --- a new table sends everything to b
        router.set_routes(vec![route(3, 1, &[b.addr])]);
        for _ in 0..50 {
            let (status, revision, body) = get(&client, addr, "/").await;
            assert_eq!(
                (status, revision.as_str(), &body[..]),
                (StatusCode::OK, "3", &b"b"[..])
            );
        }
        assert_eq!(
            (a.requests(), b.requests(), outside.requests()),
            (50, 50, 0)
        );
        eventually(PROMPTLY, || {
            let load = router.load();
            load.len() == 1
                && (load[0].revision, load[0].in_flight, load[0].served) == (3, 0, 50)
                && load[0].busy_us > 0
        })
        .await;
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried_on_another_backend() {
        let live = backend("live").await;
        let (_held, refused) = refusing();
        let (router, addr) = endpoint(vec![route(1, 1, &[refused, live.addr])]).await;
        let client = client();

        // --- another backend of the same revision
        for _ in 0..10 {
            let (status, revision, body) = get(&client, addr, "/").await;
            assert_eq!(
                (status, revision.as_str(), &body[..]),
                (StatusCode::OK, "1", &b"live"[..])
            );
        }

        // --- another revision: half the requests first go to the refusing one
        router.set_routes(vec![route(1, 1, &[refused]), route(2, 1, &[live.addr])]);
        for _ in 0..10 {
            let (status, revision, body) = get(&client, addr, "/").await;
            assert_eq!(
                (status, revision.as_str(), &body[..]),
                (StatusCode::OK, "2", &b"live"[..])
            );
        }
        assert_eq!(live.requests(), 20);

        // --- nowhere else to go
        router.set_routes(vec![route(1, 1, &[refused])]);
        let (status, revision, _) = get(&client, addr, "/").await;
        assert_eq!((status, revision.as_str()), (StatusCode::BAD_GATEWAY, ""));
    }

    #[tokio::test]
    async fn a_removed_backend_drains_after_its_last_request() {
        let (a, b) = (backend("a").await, backend("b").await);
        let (router, addr) = endpoint(vec![route(1, 1, &[a.addr])]).await;
        let client = client();

        // --- a slow request on a
        let slow = tokio::spawn({
            let client = client.clone();
            async move { get(&client, addr, "/slow").await }
        });
        eventually(PROMPTLY, || router.load()[0].in_flight == 1).await;

        // --- a leaves the table: not drained while its request is in flight
        router.set_routes(vec![route(1, 1, &[b.addr])]);
        let early = timeout(Duration::from_millis(100), router.drained(a.addr)).await;
        assert!(early.is_err(), "drained with a request in flight");
        let (status, _, body) = get(&client, addr, "/").await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"b"[..]));

        // --- the slow request completes intact; then a is drained
        let (status, revision, body) = slow.await.expect("the slow request");
        assert_eq!(
            (status, revision.as_str(), &body[..]),
            (StatusCode::OK, "1", &b"a, after a while"[..])
        );
        timeout(PROMPTLY, router.drained(a.addr))
            .await
            .expect("drained once its request completed");
        assert_eq!(a.requests(), 1);
    }

    #[tokio::test]
    async fn no_ready_backend_is_a_503() {
        let a = backend("a").await;
        let (router, addr) = endpoint(vec![]).await;
        let client = client();
        for routes in [vec![], vec![route(1, 0, &[a.addr])], vec![route(1, 1, &[])]] {
            router.set_routes(routes);
            let (status, _, body) = get(&client, addr, "/").await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(body.starts_with(b"no ready replica"), "{body:?}");
        }
        assert_eq!(a.requests(), 0);
    }

    #[tokio::test]
    async fn a_large_body_comes_back_intact_with_its_revision() {
        let a = backend("a").await;
        let (_router, addr) = endpoint(vec![route(7, 1, &[a.addr])]).await;
        let sent: Bytes = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let (status, revision, body) = call(&client(), addr, Method::POST, "/", sent.clone()).await;
        assert_eq!((status, revision.as_str()), (StatusCode::OK, "7"));
        assert_eq!(body.len(), sent.len());
        assert!(body == sent, "the echoed body differs");
    }

    #[tokio::test]
    async fn bodies_stream_frame_by_frame() {
        let a = backend("a").await;
        let (_router, addr) = endpoint(vec![route(1, 1, &[a.addr])]).await;
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);

        // --- each chunk sent comes back before the next is sent
        let (chunks, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
        let request = Request::post("/")
            .body(StreamBody::new(ReceiverStream::new(rx)))
            .expect("request");
        let response = sender.send_request(request);
        chunks
            .send(Ok(Frame::data(Bytes::from("first"))))
            .await
            .expect("send");
        let mut body = timeout(PROMPTLY, response)
            .await
            .expect("in time")
            .expect("a response")
            .into_body();
        for chunk in ["first", "second", "third"] {
            if chunk != "first" {
                chunks
                    .send(Ok(Frame::data(Bytes::from(chunk))))
                    .await
                    .expect("send");
            }
            let frame = timeout(PROMPTLY, body.frame())
                .await
                .expect("echoed before the request ends")
                .expect("a frame")
                .expect("data");
            assert_eq!(frame.into_data().ok().as_deref(), Some(chunk.as_bytes()));
        }
        drop(chunks);
        let end = timeout(PROMPTLY, body.frame()).await.expect("in time");
        assert!(end.is_none(), "the response ends with the request");
    }

    #[tokio::test]
    async fn connections_are_kept_alive_on_both_sides() {
        let a = backend("a").await;
        let (_router, addr) = endpoint(vec![route(1, 1, &[a.addr])]).await;
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        for _ in 0..100 {
            sender.ready().await.expect("the connection stays open");
            let request = Request::get("/")
                .body(Full::new(Bytes::new()))
                .expect("request");
            let response = sender.send_request(request).await.expect("a response");
            assert_eq!(response.status(), StatusCode::OK);
            let body = response.into_body().collect().await.expect("a body");
            assert_eq!(&body.to_bytes()[..], b"a");
        }
        assert_eq!(a.requests(), 100);
        assert_eq!(
            a.connections.load(Ordering::SeqCst),
            1,
            "one pooled connection"
        );
    }

    #[tokio::test]
    async fn shutdown_lets_requests_in_flight_finish() {
        let a = backend("a").await;
        let router = Router::new();
        router.set_routes(vec![route(1, 1, &[a.addr])]);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let mut serving = tokio::spawn({
            let router = router.clone();
            async move {
                router
                    .serve(listener, async {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        let client = client();

        // --- shut down with a slow request in flight
        let slow = tokio::spawn({
            let client = client.clone();
            async move { get(&client, addr, "/slow").await }
        });
        eventually(PROMPTLY, || router.load()[0].in_flight == 1).await;
        stop.send(()).expect("serving");
        let early = timeout(Duration::from_millis(100), &mut serving).await;
        assert!(early.is_err(), "stopped with a request in flight");

        // --- the request completes, then serving ends and the port is closed
        let (status, _, body) = slow.await.expect("the slow request");
        assert_eq!(
            (status, &body[..]),
            (StatusCode::OK, &b"a, after a while"[..])
        );
        timeout(PROMPTLY, serving)
            .await
            .expect("serving ends")
            .expect("no panic");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
