//! The application layer: what a member does with a request, in terms of no protocol.
//! The gRPC services (`api::grpc`) are thin adapters over it; an HTTP adapter (the
//! MLflow REST facade) and a Kubernetes adapter sit over the same layer.
//!
//! - [`submit`]: a write's way in — the edge checks (every problem with its field; leader
//!   commands refused; actor and correlation id filled in), then the leader's
//!   [`proposer`] coalesces concurrent commands into one Raft entry (group commit).
//! - [`read`]: consistency levels — a linearizable read confirms leadership with a
//!   quorum and waits until the read index, raised to the term's floor, is applied; a
//!   stale read is served from this member's applied state and says how far that was.
//!   Where a request must go: here, or the leader ([`Route`]).
//! - [`history`]: queries and watches of the event log.
//! - [`registry`]: the registry's questions about the past (a model at a time, who held
//!   a stage or alias then).
//! - [`membership`]: adding, promoting and removing members, with the live-majority
//!   check; recording Raft's membership as member events.
//! - [`liveness`]: agents' heartbeats, which the leader keeps in memory (not events).
//! - [`status`]: a member's report of itself and the cluster's status.
//! - [`peers`]: connections to the other members (forwarding, probes).
//!
//! Errors are [`AppError`], grouped by what the caller does next; each protocol maps
//! them in one place.

mod error;
mod history;
mod liveness;
mod membership;
mod peers;
mod proposer;
mod read;
mod registry;
mod status;
mod submit;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

pub use error::{AppError, Result};
pub use history::Watch;
pub use liveness::{EndpointLoad, Heartbeat, Heartbeats};
pub use membership::MembershipChange;
pub use proposer::{now_ms, BatchLimits, Proposer, ORPHAN_GRACE};
pub use read::{Consistency, ReadPoint, Route};
pub use status::{rss_bytes, ClusterStatus, MemberReport, MemberStatus, ProjectionReport};
pub use submit::Applied;

use crate::raft::Raft;
use crate::store::log::LogStore;
use crate::store::state_machine::Shared;

/// Settings of the application layer.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest message to or from another member's client API (forwarding).
    pub max_message_bytes: usize,
    /// Silence after which the leader records a node lost.
    pub lost_after_ms: u64,
    /// This member's identity towards the others (none: plaintext).
    pub tls: Option<Arc<cairn_proto::tls::TlsFiles>>,
}

/// One member's application layer; cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    raft: Raft,
    log: LogStore,
    shared: Arc<Shared>,
    proposer: Proposer,
    peers: peers::Peers,
    settings: Settings,
    /// (term, log index) this member must have applied to serve linearizable reads as
    /// leader of that term: see `read::leadership_floor`.
    read_floor: Mutex<Option<(u64, u64)>>,
    /// Linearizable reads waiting for the next confirmation of leadership.
    read_rounds: Mutex<read::Rounds>,
    /// Agents' heartbeats, while this member leads.
    heartbeats: Heartbeats,
    /// Requests this member has numbered (for correlation ids).
    requests: AtomicU64,
    /// What the Kubernetes projector says it does (empty: there is none).
    projection: Mutex<ProjectionReport>,
}

impl App {
    pub fn new(
        id: u64,
        raft: Raft,
        log: LogStore,
        shared: Arc<Shared>,
        proposer: Proposer,
        settings: Settings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                id,
                raft,
                log,
                shared,
                proposer,
                peers: peers::Peers::new(settings.max_message_bytes, settings.tls.clone()),
                settings,
                read_floor: Mutex::new(None),
                read_rounds: Mutex::new(read::Rounds::default()),
                heartbeats: Heartbeats::default(),
                requests: AtomicU64::new(0),
                projection: Mutex::new(ProjectionReport::default()),
            }),
        }
    }

    /// The Kubernetes projector's account of itself, for the member's status.
    pub fn set_projection(&self, status: ProjectionReport) {
        *self
            .inner
            .projection
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = status;
    }

    /// The Kubernetes projector's last account of itself (`off`: none runs here).
    pub fn projection(&self) -> ProjectionReport {
        let mut r = self
            .inner
            .projection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if r.state.is_empty() {
            r.state = "off".into();
        }
        r
    }

    /// This member's id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The applied state and the event store.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// Read the applied domain state (never across an await).
    pub fn with_state<T>(&self, f: impl FnOnce(&cairn_domain::State) -> T) -> T {
        f(&self.inner.shared.read().state)
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn heartbeats(&self) -> &Heartbeats {
        &self.inner.heartbeats
    }

    /// Whether this member leads, and in which term.
    pub fn leading(&self) -> (bool, u64) {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        (m.state == openraft::ServerState::Leader, m.current_term)
    }
}
