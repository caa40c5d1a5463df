//! One member: everything acknowledged survives a SIGKILL and a restart.

use std::time::Duration;

use cairn_proto as pb;
use cairn_tests::{all_events, create_ns, note, Settings, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_event_and_entity() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(1, Settings::default()).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let mut c = cluster.node(1).client();

    // --- write a namespace and notes
    c.submit(create_ns("research")).await?;
    for i in 0..50 {
        c.submit(note("research", &format!("note {i}"))).await?;
    }
    let before = all_events(&mut c, pb::ReadConsistency::Linearizable).await?;
    // member_added, namespace_created, 50 notes
    assert_eq!(before.len(), 52);
    assert_eq!(
        before.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=52).collect::<Vec<_>>()
    );

    // --- SIGKILL and restart
    cluster.restart(1).await?;
    cluster.wait_leader(Duration::from_secs(10)).await?;
    let mut c = cluster.node(1).client();
    let after = all_events(&mut c, pb::ReadConsistency::Linearizable).await?;
    assert_eq!(after, before);

    let e = c
        .get_entity(pb::GetEntityRequest {
            entity: Some(pb::EntityRef {
                kind: "namespace".into(),
                name: "research".into(),
            }),
            consistency: 0,
        })
        .await?
        .into_inner()
        .entity
        .expect("entity");
    assert_eq!((e.revision, e.notes), (51, 50));

    // --- the sequence goes on where it stopped
    let r = c
        .submit(note("research", "after restart"))
        .await?
        .into_inner();
    assert_eq!(r.events[0].sequence, 53);
    assert_eq!(r.entity_revision, 52);
    Ok(())
}
