//! The latency the stable endpoint's router adds. Small requests go over one keep-alive
//! connection straight to a trivial backend, and over another through the router, all on
//! loopback, in alternating blocks so that drift (CPU frequency, other load) falls on
//! both alike. Prints p50 and p99 of each and the difference.
//!
//! `cargo bench -p cairn-agent --bench router`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cairn_agent::serving::router::{Route, Router};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// Requests each way, measured.
const REQUESTS: usize = 20_000;
/// Requests each way before measuring.
const WARM_UP: usize = 2_000;
/// Requests in a row one way before switching to the other.
const BLOCK: usize = 1_000;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(run());
}

async fn run() {
    let backend = trivial_backend().await;
    let router = Router::new();
    router.set_routes(vec![Route {
        revision: 1,
        weight: 1,
        backends: vec![backend],
    }]);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = listener.local_addr().expect("addr");
    tokio::spawn(async move { router.serve(listener, std::future::pending()).await });

    let mut direct = connect(backend).await;
    let mut routed = connect(endpoint).await;
    for _ in 0..WARM_UP {
        one_request(&mut direct).await;
        one_request(&mut routed).await;
    }
    let mut straight = Vec::with_capacity(REQUESTS);
    let mut through = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS / BLOCK {
        for _ in 0..BLOCK {
            straight.push(one_request(&mut direct).await);
        }
        for _ in 0..BLOCK {
            through.push(one_request(&mut routed).await);
        }
    }
    let (d50, d99) = percentiles(&mut straight);
    let (r50, r99) = percentiles(&mut through);
    println!("{REQUESTS} requests each way over one keep-alive connection, loopback");
    println!(
        "direct:  p50 {:>7.1} µs   p99 {:>7.1} µs",
        micros(d50),
        micros(d99)
    );
    println!(
        "routed:  p50 {:>7.1} µs   p99 {:>7.1} µs",
        micros(r50),
        micros(r99)
    );
    println!(
        "added:   p50 {:>7.1} µs   p99 {:>7.1} µs",
        micros(r50) - micros(d50),
        micros(r99) - micros(d99)
    );
}

/// A backend that answers every request with `ok`.
async fn trivial_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).expect("nodelay");
            let service = service_fn(|_: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// The time from sending a request to having read its whole response.
async fn one_request(sender: &mut SendRequest<Empty<Bytes>>) -> Duration {
    let start = Instant::now();
    sender.ready().await.expect("connection open");
    let request = Request::get("/").body(Empty::new()).expect("request");
    let response = sender.send_request(request).await.expect("a response");
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.expect("a body");
    start.elapsed()
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.50), at(0.99))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
