//! The agent's line to the control plane: any member will do, leader hints are
//! followed, and every request carries the node's credential (its certificate under
//! TLS, its token without).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto as pb;
use cairn_proto::tls::TlsFiles;
use pb::cairn_client::CairnClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

pub struct Control {
    endpoints: Vec<String>,
    current: usize,
    token: MetadataValue<tonic::metadata::Ascii>,
    node: String,
    tls: Option<Arc<TlsFiles>>,
    /// One channel per member (a TLS handshake per call would cost more than the call).
    channels: HashMap<String, Channel>,
}

impl Control {
    pub fn new(
        endpoints: Vec<String>,
        node: &str,
        token: &str,
        tls: Option<Arc<TlsFiles>>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!endpoints.is_empty(), "no control-plane endpoints given");
        Ok(Self {
            endpoints,
            current: 0,
            token: token
                .parse()
                .map_err(|_| anyhow::anyhow!("the node token is not printable ASCII"))?,
            node: node.to_string(),
            tls,
            channels: HashMap::new(),
        })
    }

    fn channel(&mut self, addr: &str) -> Result<Channel, Status> {
        if let Some(c) = self.channels.get(addr) {
            return Ok(c.clone());
        }
        let c = pb::Dial::new()
            .timeout(Duration::from_secs(5))
            .tls(self.tls.clone())
            .channel(addr)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert(pb::NODE_TOKEN, self.token.clone());
        r
    }

    /// Call the cluster, moving to the hinted leader or the next member while the
    /// answer is UNAVAILABLE, for at most one round over the members. Only requests
    /// that are safe to repeat go through here (every agent command is idempotent).
    pub async fn call<T, R, F, Fut>(&mut self, msg: T, mut f: F) -> Result<R, Status>
    where
        T: Clone,
        F: FnMut(CairnClient<Channel>, Request<T>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let mut hinted: Option<String> = None;
        let mut last = Status::unavailable("no member tried");
        for _ in 0..=self.endpoints.len() {
            let addr = hinted
                .take()
                .unwrap_or_else(|| self.endpoints[self.current].clone());
            let client = CairnClient::new(self.channel(&addr)?);
            match f(client, self.request(msg.clone())).await {
                Ok(r) => {
                    if let Some(i) = self.endpoints.iter().position(|e| *e == addr) {
                        self.current = i;
                    }
                    return Ok(r.into_inner());
                }
                Err(s) if s.code() == Code::Unavailable || s.code() == Code::DeadlineExceeded => {
                    hinted = s
                        .metadata()
                        .get(pb::LEADER_HINT)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                        .filter(|h| *h != addr);
                    if hinted.is_none() {
                        self.current = (self.current + 1) % self.endpoints.len();
                    }
                    last = s;
                }
                Err(s) => return Err(s),
            }
        }
        Err(last)
    }

    /// Submit one command about this node.
    pub async fn submit(&mut self, body: pb::command::Body) -> Result<pb::SubmitResponse, Status> {
        let req = pb::SubmitRequest {
            command: Some(pb::Command {
                actor: format!("{}{}", cairn_domain::authz::AGENT_ACTOR, self.node),
                body: Some(body),
                ..Default::default()
            }),
        };
        self.call(req, |mut c, r| async move { c.submit(r).await })
            .await
    }
}
