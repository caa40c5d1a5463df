//! Per-identity limits: a token bucket of requests, and a cap on open streams (event
//! tails, write streams), for each authenticated caller, so one user, token or agent
//! cannot take a member's capacity from everyone else. Members are
//! exempt (they forward others' requests, which are counted where they arrived), and
//! so is a plaintext member's loopback caller, who is not identified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tonic::Status;

/// Buckets kept at most; beyond, the full (idle) ones are forgotten.
const MAX_BUCKETS: usize = 65_536;

pub struct RateLimits {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimits {
    /// `per_second` requests a second for each identity, up to `burst` at once (0: no
    /// limit).
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request from `who`'s bucket, or say when to come back.
    pub fn check(&self, who: &str) -> Result<(), Status> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(who) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(who.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait_ms = ((1.0 - b.tokens) / self.per_second * 1000.0).ceil();
        let mut s = Status::resource_exhausted(format!(
            "rate limit: {who} may make {} requests a second (bursts of {}); retry in {wait_ms} ms",
            self.per_second, self.burst
        ));
        // Refused before anything was done: safe to send again.
        s.metadata_mut().insert(
            cairn_proto::NOT_APPLIED,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        Err(s)
    }
}

/// Open streams per identity.
pub struct StreamLimits {
    max: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream of an identity; dropping it (the stream ended) frees its place.
#[derive(Debug)]
pub struct StreamGuard {
    who: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.who) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.who);
            }
        }
    }
}

impl StreamLimits {
    /// At most `max` streams open at once for each identity (0: no limit).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// A place for one more stream of `who`, or why not.
    pub fn open(&self, who: &str) -> Result<StreamGuard, Status> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(who.to_string()).or_insert(0);
        if self.max > 0 && *n >= self.max {
            let mut s = Status::resource_exhausted(format!(
                "stream limit: {who} has {n} streams open on this member, at most {}; close one first",
                self.max
            ));
            s.metadata_mut().insert(
                cairn_proto::NOT_APPLIED,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            return Err(s);
        }
        *n += 1;
        Ok(StreamGuard {
            who: who.to_string(),
            open: self.open.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_identity_has_its_own_bucket_that_refills() {
        let l = RateLimits::new(100, 5);
        for _ in 0..5 {
            l.check("user/a").expect("within the burst");
        }
        let s = l.check("user/a").expect_err("over the burst");
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(cairn_proto::certainly_not_applied(&s));
        l.check("user/b")
            .expect("another identity is not limited by a's use");
        std::thread::sleep(std::time::Duration::from_millis(30));
        l.check("user/a").expect("refilled at 100 a second");
        let streams = StreamLimits::new(2);
        let a1 = streams.open("user/a").expect("first");
        let _a2 = streams.open("user/a").expect("second");
        let s = streams.open("user/a").expect_err("a third is refused");
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        let _b = streams
            .open("user/b")
            .expect("another identity has its own places");
        drop(a1);
        let _a3 = streams
            .open("user/a")
            .expect("a closed stream frees its place");
        let off = RateLimits::new(0, 0);
        for _ in 0..1000 {
            off.check("user/a").expect("no limit");
        }
    }
}
