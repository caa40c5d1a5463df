//! Talking to a cluster: try each endpoint, follow leader hints, retry while a leader is
//! being elected, and say clearly when no endpoint answers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use cairn_proto::cairn_client::CairnClient;
use cairn_proto::tls::TlsFiles;
use cairn_proto::LEADER_HINT;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// Adds `authorization: Bearer <token>` to every request, when the CLI has a token.
#[derive(Debug, Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut()
                .insert(cairn_proto::AUTHORIZATION, v.clone());
        }
        Ok(req)
    }
}

/// A client of one member, as this CLI's identity.
pub type Client = CairnClient<InterceptedService<Channel, Bearer>>;

/// Largest message the CLI sends or accepts.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// The members the CLI may talk to.
#[derive(Debug, Clone)]
pub struct Cluster {
    endpoints: Vec<String>,
    /// Index of the endpoint that answered last.
    current: usize,
    /// How long one command keeps retrying.
    pub deadline: Duration,
    /// Mutual TLS as this identity (none: plaintext).
    tls: Option<Arc<TlsFiles>>,
    bearer: Bearer,
}

/// Whether a status means "try another member, or again later": nothing was done.
pub fn retryable(s: &Status) -> bool {
    s.code() == Code::Unavailable
}

impl Cluster {
    /// The TLS files this CLI dials with (none: plaintext).
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_deref()
    }

    /// A channel to `addr` (a member or an agent), as this identity.
    pub fn channel(&self, addr: &str) -> anyhow::Result<Channel> {
        Ok(cairn_proto::Dial::new()
            .tls(self.tls.clone())
            .channel(addr)?)
    }

    pub fn client(&self, addr: &str) -> anyhow::Result<Client> {
        Ok(
            CairnClient::with_interceptor(self.channel(addr)?, self.bearer.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
    }

    /// `token`: a bearer token sent with every request (over TLS only: a secret).
    pub fn new(
        endpoints: &str,
        tls: Option<TlsFiles>,
        token: Option<String>,
    ) -> anyhow::Result<Self> {
        if token.is_some() && tls.is_none() {
            return Err(anyhow!(
                "a token is sent only over TLS: give --ca (the cluster's CA) too"
            ));
        }
        let bearer = match token {
            Some(t) => Bearer(Some(
                format!("Bearer {}", t.trim())
                    .parse()
                    .map_err(|_| anyhow!("the token is not printable ASCII"))?,
            )),
            None => Bearer(None),
        };
        let endpoints: Vec<String> = endpoints
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(anyhow!(
                "no endpoints given (--endpoints or CAIRN_ENDPOINTS)"
            ));
        }
        Ok(Self {
            endpoints,
            current: 0,
            deadline: Duration::from_secs(15),
            tls: tls.map(Arc::new),
            bearer,
        })
    }

    /// Run a read (or any call that may safely run twice) against a member, moving on
    /// to the next one (or the hinted leader) while the answer is `UNAVAILABLE`, until
    /// the deadline.
    pub async fn call<T, F, Fut>(&mut self, f: F) -> anyhow::Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.call_with(false, f).await
    }

    /// Run a write: retried elsewhere only when it certainly changed nothing (the server
    /// said so, or no connection was made). Any other failure is reported as
    /// indeterminate rather than risk applying the write twice.
    pub async fn call_write<T, F, Fut>(&mut self, f: F) -> anyhow::Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.call_with(true, f).await
    }

    async fn call_with<T, F, Fut>(&mut self, write: bool, mut f: F) -> anyhow::Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let start = tokio::time::Instant::now();
        let mut last_errors: Vec<String> = Vec::new();
        let mut hinted: Option<String> = None;
        let mut attempt = 0u32;
        loop {
            let addr = hinted
                .take()
                .unwrap_or_else(|| self.endpoints[self.current].clone());
            match f(self.client(&addr)?).await {
                Ok(r) => {
                    if let Some(i) = self.endpoints.iter().position(|e| *e == addr) {
                        self.current = i;
                    }
                    return Ok(r.into_inner());
                }
                Err(s) if write && retryable(&s) && !cairn_proto::certainly_not_applied(&s) => {
                    return Err(anyhow!(
                        "indeterminate: {addr} failed mid-request ({}); the change may or may not have been applied: check with `cairn events list` before retrying",
                        s.message()
                    ));
                }
                Err(s) if retryable(&s) => {
                    last_errors.push(format!("{addr}: {}", s.message()));
                    hinted = s
                        .metadata()
                        .get(LEADER_HINT)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                        .filter(|h| *h != addr);
                    if hinted.is_none() {
                        self.current = (self.current + 1) % self.endpoints.len();
                    }
                }
                Err(s) => return Err(self.explain(status_error(&s), &s)),
            }
            attempt += 1;
            if start.elapsed() >= self.deadline {
                last_errors.dedup();
                let tail: Vec<_> = last_errors
                    .iter()
                    .rev()
                    .take(self.endpoints.len())
                    .rev()
                    .cloned()
                    .collect();
                return Err(anyhow!(
                    "no Cairn server answered within {:?} (endpoints: {}):\n  {}",
                    self.deadline,
                    self.endpoints.join(", "),
                    tail.join("\n  ")
                ));
            }
            // Back off once every member has been tried.
            if (attempt as usize).is_multiple_of(self.endpoints.len()) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

impl Cluster {
    /// `e`, with a hint when a plaintext call met a server that speaks TLS.
    fn explain(&self, e: anyhow::Error, s: &Status) -> anyhow::Error {
        if self.tls.is_none() && s.message().contains("h2 protocol error") {
            e.context("the member may serve TLS: give --ca with --cert and --key, or with --token")
        } else {
            e
        }
    }
}

/// A refusal as the user reads it: the server's message already names what went wrong.
pub fn status_error(s: &Status) -> anyhow::Error {
    match s.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::Unavailable
        | Code::DeadlineExceeded => anyhow!("{}", s.message()),
        c => anyhow!("{}: {}", code_name(c), s.message()),
    }
}

/// The gRPC code as users read it in docs.
pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "conflict",
        Code::ResourceExhausted | Code::OutOfRange => "over a limit",
        Code::Unavailable => "unavailable",
        Code::DeadlineExceeded => "indeterminate",
        Code::PermissionDenied | Code::Unauthenticated => "denied",
        _ => "error",
    }
}
