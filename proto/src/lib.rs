//! Cairn's wire types: the `cairn.v1` protobuf schema and its generated tonic services.
//!
//! These types stay at the edge: the domain (`cairn-domain`) has its own types, and the
//! conversions between the two live in the control plane's `convert` module. [`Dial`] is
//! the one way every Cairn process opens a gRPC channel to another.

pub mod codec;
mod dial;
pub mod tls;
pub use dial::{BadEndpoint, Dial};

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("cairn.v1");
}

pub use v1::*;

include!(concat!(env!("OUT_DIR"), "/oneof_types.rs"));

/// Metadata carrying an agent's node token.
pub const NODE_TOKEN: &str = "x-cairn-node-token";
/// Metadata with the URN of the caller a member forwards a request for (believed only
/// from a member's connection).
pub const ON_BEHALF_OF: &str = "x-cairn-on-behalf-of";
/// Metadata with the role of the caller a member forwards a request for.
pub const ON_BEHALF_OF_ROLE: &str = "x-cairn-on-behalf-of-role";
/// Metadata with the hex SHA-256 of the bearer token of the caller a member forwards a
/// request for.
pub const ON_BEHALF_OF_TOKEN: &str = "x-cairn-on-behalf-of-token";
/// Metadata carrying a bearer token: `authorization: Bearer <secret>`.
pub const AUTHORIZATION: &str = "authorization";

impl std::fmt::Display for v1::EntityRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Metadata a server sets on an error when the request certainly changed nothing (it
/// was never proposed), so a client may safely send it again, elsewhere.
pub const NOT_APPLIED: &str = "x-cairn-not-applied";
/// Metadata with the leader's address, on not-leader errors.
pub const LEADER_HINT: &str = "x-cairn-leader";
/// Metadata with the leader's node id, on not-leader errors.
pub const LEADER_ID_HINT: &str = "x-cairn-leader-id";

/// Whether a failed call certainly changed nothing: the server said so, or the
/// connection was never made. Any other failure of a write is indeterminate: it may have
/// been applied, and sending it again may apply it twice.
pub fn certainly_not_applied(s: &tonic::Status) -> bool {
    s.metadata().get(NOT_APPLIED).is_some()
        || (s.code() == tonic::Code::Unavailable && s.message().contains("tcp connect error"))
}

/// Every event a member answers with, paging through `ListEvents` from the start.
pub async fn all_events(
    client: &mut v1::cairn_client::CairnClient<tonic::transport::Channel>,
    consistency: v1::ReadConsistency,
) -> Result<Vec<v1::Event>, tonic::Status> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .list_events(v1::ListEventsRequest {
                filter: Some(v1::EventFilter {
                    after_sequence: after,
                    ..Default::default()
                }),
                limit: 10_000,
                consistency: consistency as i32,
                raw: false,
            })
            .await?
            .into_inner();
        out.extend(page.events);
        if page.next_after_sequence == 0 {
            return Ok(out);
        }
        after = page.next_after_sequence;
    }
}
