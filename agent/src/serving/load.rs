//! The load on the endpoints routed here, as each heartbeat reports it: per deployment
//! and revision, the requests in flight averaged since the previous report (from the
//! routers' busy time, by Little's law) and the requests answered meanwhile.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cairn_proto as pb;

use super::router::Router;

/// The routers of the endpoints routed here, by deployment: the runner keeps it current,
/// the heartbeat task reads it.
pub type Routers = Arc<Mutex<BTreeMap<String, Router>>>;

/// Turns the routers' running counts into the load over each interval between reports.
pub struct LoadMeter {
    routers: Routers,
    /// (deployment, revision) → (busy µs, served) at the previous report.
    last: BTreeMap<(String, u64), (u64, u64)>,
    at: Instant,
}

impl LoadMeter {
    pub fn new(routers: Routers) -> Self {
        Self {
            routers,
            last: BTreeMap::new(),
            at: Instant::now(),
        }
    }

    /// The load of every revision of every endpoint since the previous call (an endpoint
    /// without requests reports zero: that is what lets a deployment scale down).
    pub fn report(&mut self) -> Vec<pb::EndpointLoad> {
        let now = Instant::now();
        let window_us = (now - self.at).as_micros().max(1) as u64;
        self.at = now;
        let routers: Vec<(String, Router)> = self
            .routers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(d, r)| (d.clone(), r.clone()))
            .collect();
        let mut next = BTreeMap::new();
        let mut out = Vec::new();
        for (deployment, router) in routers {
            for l in router.load() {
                let key = (deployment.clone(), l.revision);
                let (busy, served) = self.last.get(&key).copied().unwrap_or((0, 0));
                out.push(pb::EndpointLoad {
                    deployment: deployment.clone(),
                    revision: u32::try_from(l.revision).unwrap_or(u32::MAX),
                    in_flight_milli: l.busy_us.saturating_sub(busy) * 1000 / window_us,
                    served: l.served.saturating_sub(served),
                });
                next.insert(key, (l.busy_us, l.served));
            }
        }
        self.last = next;
        out
    }
}
