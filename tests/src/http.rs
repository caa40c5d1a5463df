//! JSON over plain HTTP/1.1, enough to drive the MLflow-compatible API from a test: one
//! request per connection, the answer's status and JSON body.

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
    let json = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&body).with_context(|| format!("{method} {path}: {body:?}"))?
    };
    Ok((status, json))
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
