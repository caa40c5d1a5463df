//! Plain HTTP/1.1, enough to drive the MLflow-compatible API and scrape `/metrics` from
//! a test: one request per connection, the answer's status and its JSON or text body.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Send `method path` with `body` (JSON; none for GET) to `addr`; the status code and
/// the JSON answer.
pub async fn http_json(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    tokio::time::timeout(TIMEOUT, request(addr, method, path, body))
        .await
        .with_context(|| format!("{method} {path}: no answer within {TIMEOUT:?}"))?
}

async fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let (status, body) = exchange(addr, method, path, body).await?;
    let json = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&body).with_context(|| format!("{method} {path}: {body:?}"))?
    };
    Ok((status, json))
}

/// GET `path` from `addr`: the status and the body as text.
pub async fn http_text(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(TIMEOUT, exchange(addr, "GET", path, None))
        .await
        .with_context(|| format!("GET {path}: no answer within {TIMEOUT:?}"))?
}

/// One request on its own connection: the status and the body.
async fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{method} {path}: not an HTTP answer: {text:?}");
    };
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{method} {path}: no status in {head:?}"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// A chunked body, joined.
fn dechunk(mut s: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").context("a chunk size")?;
        let n = usize::from_str_radix(size.trim(), 16).context("a chunk size in hex")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).context("a whole chunk")?);
        s = rest.get(n + 2..).unwrap_or_default();
    }
}

/// A member's or agent's `/metrics`, scraped once.
#[derive(Debug, Clone)]
pub struct Scrape(pub String);

impl Scrape {
    /// Scrape `addr`'s `/metrics`.
    pub async fn of(addr: &str) -> anyhow::Result<Self> {
        let (status, text) = http_text(addr, "/metrics").await?;
        anyhow::ensure!(status == 200, "GET /metrics: {status} {text}");
        Ok(Self(text))
    }

    /// The value of the series written exactly `series` (name and labels as the text
    /// has them), if present.
    pub fn value(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            (s == series).then(|| v.parse().ok()).flatten()
        })
    }

    /// The sum over every series of metric `name` whose labels contain all of `with`
    /// (`key="value"` pieces).
    pub fn sum(&self, name: &str, with: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (s, v) = l.rsplit_once(' ')?;
                let (n, labels) = s.split_once('{').unwrap_or((s, ""));
                (n == name && with.iter().all(|w| labels.contains(w)))
                    .then(|| v.parse::<f64>().ok())
                    .flatten()
            })
            .sum()
    }
}
