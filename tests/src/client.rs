//! gRPC clients of a member, all dialled through [`cairn_proto::Dial`], and the reads
//! the tests and campaigns make through them.

use std::time::Duration;

use cairn_proto as pb;
use pb::cairn_client::CairnClient;
use tonic::transport::Channel;

/// A client of the member at `addr` whose calls give up after 10 s.
pub fn client(addr: &str) -> CairnClient<Channel> {
    client_with_timeout(addr, Duration::from_secs(10))
}

/// A client whose calls give up after `timeout` (connecting: after 500 ms).
///
/// # Panics
///
/// When `addr` is not an address at all: the harness made it up itself.
pub fn client_with_timeout(addr: &str, timeout: Duration) -> CairnClient<Channel> {
    let channel = pb::Dial::new()
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .channel(addr)
        .expect("a valid address");
    CairnClient::new(channel)
}

/// A client of the member at `addr` over mutual TLS as the identity in `tls`, whose
/// calls give up after 10 s.
///
/// # Panics
///
/// When `addr` is not an address or the files cannot be read: the test made both.
pub fn tls_client(addr: &str, tls: &pb::tls::TlsFiles) -> CairnClient<Channel> {
    let channel = pb::Dial::new()
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .tls(Some(std::sync::Arc::new(tls.clone())))
        .channel(addr)
        .expect("a valid address and readable TLS files");
    CairnClient::new(channel)
}

/// Page through every event of one member.
pub async fn all_events(
    c: &mut CairnClient<Channel>,
    consistency: pb::ReadConsistency,
) -> anyhow::Result<Vec<pb::Event>> {
    Ok(pb::all_events(c, consistency).await?)
}

/// Every event of one member exactly as it stores it (a stale read: what it has
/// applied), paging through `ListEvents` with `raw`.
pub async fn stored_events(c: &mut CairnClient<Channel>) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = c
            .list_events(pb::ListEventsRequest {
                filter: Some(pb::EventFilter {
                    after_sequence: after,
                    ..Default::default()
                }),
                limit: 10_000,
                consistency: pb::ReadConsistency::Stale as i32,
                raw: true,
            })
            .await?
            .into_inner();
        out.extend(page.raw_events);
        if page.next_after_sequence == 0 {
            return Ok(out);
        }
        after = page.next_after_sequence;
    }
}

/// The leader the member at `addr` reports, if it answers within `timeout` and knows one.
pub async fn leader_seen_by(addr: &str, timeout: Duration) -> Option<u64> {
    let status = client_with_timeout(addr, timeout)
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .ok()?;
    Some(status.into_inner().leader_id).filter(|l| *l != 0)
}

/// The last sequence the member at `addr` has applied (a stale read: its own state), if
/// it answers within `timeout`.
pub async fn last_sequence(addr: &str, timeout: Duration) -> Option<u64> {
    let r = client_with_timeout(addr, timeout)
        .list_events(pb::ListEventsRequest {
            filter: None,
            limit: 1,
            consistency: pb::ReadConsistency::Stale as i32,
            raw: false,
        })
        .await
        .ok()?;
    r.into_inner().read.map(|r| r.last_sequence)
}
