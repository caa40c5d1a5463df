//! Workloads with recorded histories: *set* (unique creations), *register* (reads and
//! compare-and-set on a few entities) and *stream* (tails checking the event stream).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto as pb;
use cairn_tests::client_with_timeout;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::checker::{Call, Op, Ret};

/// How an operation ended, as far as the client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Ok,
    /// Definitely not applied.
    Failed,
    /// May or may not have been applied.
    Unknown,
}

/// Classify an error: did the command certainly not take effect? The server's
/// "not applied" marker is taken at its word, so the set check tests that claim too.
fn classify(s: &tonic::Status) -> Outcome {
    if pb::certainly_not_applied(s) {
        return Outcome::Failed;
    }
    match s.code() {
        // Refused by validation or by decide: deterministic, nothing applied.
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::Aborted => Outcome::Failed,
        // Unavailable also covers a connection that broke after the request left.
        _ => Outcome::Unknown,
    }
}

/// The shared clock of a campaign, in microseconds since it began.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// One attempted creation of the set workload.
#[derive(Debug, Clone, Serialize)]
pub struct SetOp {
    pub name: String,
    pub start_us: u64,
    pub end_us: u64,
    pub outcome: Outcome,
}

pub type Log<T> = Arc<Mutex<Vec<T>>>;

/// Clients creating uniquely named namespaces through random members.
pub async fn set_client(
    id: u32,
    endpoints: Vec<String>,
    seed: u64,
    clock: Clock,
    until: Instant,
    log: Log<SetOp>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x5e7 + id as u64));
    let mut clients: Vec<_> = endpoints
        .iter()
        .map(|a| client_with_timeout(a, Duration::from_secs(2)))
        .collect();
    let mut k = 0u64;
    while Instant::now() < until {
        let name = format!("s{id}-{k}");
        k += 1;
        let c = &mut clients[rng.gen_range(0..endpoints.len())];
        let start_us = clock.now();
        let req = pb::SubmitRequest {
            command: Some(pb::Command {
                actor: format!("chaos/set-{id}"),
                body: Some(pb::command::Body::CreateNamespace(pb::CreateNamespace {
                    name: name.clone(),
                    labels: Default::default(),
                })),
                ..Default::default()
            }),
        };
        let outcome = match c.submit(req).await {
            Ok(_) => Outcome::Ok,
            Err(s) => classify(&s),
        };
        let end_us = clock.now();
        let failed = outcome != Outcome::Ok;
        log.lock().unwrap_or_else(|p| p.into_inner()).push(SetOp {
            name,
            start_us,
            end_us,
            outcome,
        });
        if failed {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The verdict on the set workload given the namespaces that exist at the end.
#[derive(Debug, Clone, Serialize)]
pub struct SetVerdict {
    pub attempted: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub indeterminate: usize,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub unexpected: Vec<String>,
    pub ok: bool,
}

/// `created`: how many `namespace_created` events each name has in the final log.
pub fn check_set(ops: &[SetOp], created: &HashMap<String, usize>) -> SetVerdict {
    let attempted: HashMap<&str, Outcome> =
        ops.iter().map(|o| (o.name.as_str(), o.outcome)).collect();
    let mut v = SetVerdict {
        attempted: ops.len(),
        acknowledged: ops.iter().filter(|o| o.outcome == Outcome::Ok).count(),
        failed: ops.iter().filter(|o| o.outcome == Outcome::Failed).count(),
        indeterminate: ops.iter().filter(|o| o.outcome == Outcome::Unknown).count(),
        lost: Vec::new(),
        duplicated: Vec::new(),
        unexpected: Vec::new(),
        ok: true,
    };
    for o in ops {
        let n = created.get(&o.name).copied().unwrap_or(0);
        match o.outcome {
            Outcome::Ok if n == 0 => v.lost.push(o.name.clone()),
            Outcome::Failed if n > 0 => v.unexpected.push(o.name.clone()),
            _ if n > 1 => v.duplicated.push(o.name.clone()),
            _ => {}
        }
    }
    for name in created.keys().filter(|n| n.starts_with('s')) {
        if !attempted.contains_key(name.as_str()) {
            v.unexpected.push(name.clone());
        }
    }
    v.ok = v.lost.is_empty() && v.duplicated.is_empty() && v.unexpected.is_empty();
    v
}

/// One register operation, for the linearizability checker.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterOp {
    pub key: usize,
    pub client: u32,
    pub start_us: u64,
    pub end_us: Option<u64>,
    pub op: String,
    pub ret: String,
    #[serde(skip)]
    pub call: Option<Call>,
}

/// The namespace that holds register `key`; its label `v` is the value.
pub fn register_name(key: usize) -> String {
    format!("reg-{key}")
}

fn value_of(e: &pb::Entity) -> Option<u64> {
    e.labels.get("v").and_then(|v| v.parse().ok())
}

/// A client doing reads, writes and compare-and-sets on register `key`.
pub async fn register_client(
    key: usize,
    id: u32,
    endpoints: Vec<String>,
    seed: u64,
    clock: Clock,
    until: Instant,
    log: Log<RegisterOp>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x4e6 + ((key as u64) << 16) + id as u64));
    let mut clients: Vec<_> = endpoints
        .iter()
        .map(|a| client_with_timeout(a, Duration::from_secs(2)))
        .collect();
    let mut last_revision = 1;
    let mut n = 0u64;
    while Instant::now() < until {
        let c = &mut clients[rng.gen_range(0..endpoints.len())];
        let name = register_name(key);
        // Values are unique per client and operation, so a write always changes the value.
        let value = ((id as u64) << 32) | n;
        n += 1;
        let op = match rng.gen_range(0..3) {
            0 => Op::Read,
            1 => Op::Write(value),
            _ => Op::Cas {
                expected: last_revision,
                value,
            },
        };
        let start_us = clock.now();
        let ret = match op {
            Op::Read => {
                let r = c
                    .get_entity(pb::GetEntityRequest {
                        entity: Some(pb::EntityRef {
                            kind: "namespace".into(),
                            name,
                        }),
                        consistency: pb::ReadConsistency::Linearizable as i32,
                    })
                    .await;
                match r.ok().and_then(|r| r.into_inner().entity) {
                    Some(e) => {
                        last_revision = e.revision;
                        Some(Ret::Read {
                            value: value_of(&e),
                            revision: e.revision,
                        })
                    }
                    // A failed read has no effect: leave it out of the history.
                    None => None,
                }
            }
            Op::Write(v) | Op::Cas { value: v, .. } => {
                let expected = match op {
                    Op::Cas { expected, .. } => Some(expected),
                    _ => None,
                };
                let req = pb::SubmitRequest {
                    command: Some(pb::Command {
                        actor: format!("chaos/reg-{key}-{id}"),
                        expected_revision: expected,
                        body: Some(pb::command::Body::SetNamespaceLabels(
                            pb::SetNamespaceLabels {
                                name,
                                set: [("v".to_string(), v.to_string())].into(),
                                remove: vec![],
                                replace: false,
                            },
                        )),
                        ..Default::default()
                    }),
                };
                match c.submit(req).await {
                    Ok(r) => {
                        last_revision = r.get_ref().entity_revision;
                        Some(Ret::Ok {
                            revision: r.get_ref().entity_revision,
                        })
                    }
                    Err(s) if s.code() == Code::Aborted => Some(Ret::Refused),
                    Err(s) => match classify(&s) {
                        Outcome::Failed => None,
                        _ => Some(Ret::Unknown),
                    },
                }
            }
        };
        let end = clock.now();
        let Some(ret) = ret else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let end_us = (ret != Ret::Unknown).then_some(end);
        let call = Call {
            client: id,
            start: start_us,
            end: end_us,
            op,
            ret,
        };
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RegisterOp {
                key,
                client: id,
                start_us,
                end_us,
                op: format!("{op:?}"),
                ret: format!("{ret:?}"),
                call: Some(call),
            });
        if ret == Ret::Unknown {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What a stream tail saw: gaps or repeats are violations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamVerdict {
    pub member: u64,
    pub events: u64,
    pub reconnects: u64,
    pub violations: Vec<String>,
}

/// Tail one member's event stream, resuming after the last sequence on every break.
pub async fn stream_client(member: u64, addr: String, until: Instant) -> StreamVerdict {
    let mut v = StreamVerdict {
        member,
        ..Default::default()
    };
    let mut last = 0u64;
    while Instant::now() < until {
        let mut c = client_with_timeout(&addr, Duration::from_secs(3600));
        let req = pb::WatchEventsRequest {
            filter: Some(pb::EventFilter {
                after_sequence: last,
                ..Default::default()
            }),
        };
        let stream = tokio::time::timeout(Duration::from_secs(2), c.watch_events(req)).await;
        let Ok(Ok(stream)) = stream else {
            v.reconnects += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        loop {
            let next = tokio::time::timeout_at(until.into(), stream.next()).await;
            match next {
                Ok(Some(Ok(e))) => {
                    if e.sequence != last + 1 {
                        v.violations
                            .push(format!("after sequence {last} came {}", e.sequence));
                    }
                    last = e.sequence;
                    v.events += 1;
                }
                Ok(_) => {
                    v.reconnects += 1;
                    break;
                }
                Err(_) => return v,
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, outcome: Outcome) -> SetOp {
        SetOp {
            name: name.into(),
            start_us: 0,
            end_us: 1,
            outcome,
        }
    }

    #[test]
    fn the_set_check_finds_lost_duplicated_and_unexpected_creations() {
        let ops = vec![
            op("s0-0", Outcome::Ok),
            op("s0-1", Outcome::Ok),
            op("s0-2", Outcome::Unknown),
            op("s0-3", Outcome::Failed),
            op("s0-4", Outcome::Unknown),
        ];
        let created: HashMap<String, usize> = [
            ("s0-0", 1),
            ("s0-2", 2),
            ("s0-3", 1),
            ("s9-9", 1),
            ("reg-0", 1),
        ]
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
        let v = check_set(&ops, &created);
        assert_eq!(v.lost, vec!["s0-1"]);
        assert_eq!(v.duplicated, vec!["s0-2"]);
        let mut unexpected = v.unexpected.clone();
        unexpected.sort();
        assert_eq!(unexpected, vec!["s0-3", "s9-9"]);
        assert!(!v.ok);
        assert_eq!((v.acknowledged, v.failed, v.indeterminate), (2, 1, 2));

        let clean: HashMap<String, usize> = [("s0-0", 1), ("s0-1", 1)]
            .into_iter()
            .map(|(n, c)| (n.to_string(), c))
            .collect();
        assert!(check_set(&ops, &clean).ok);
    }
}
