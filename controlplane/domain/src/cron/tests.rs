//! Tests of cron schedules: each due run starts once, none is skipped after a failover,
//! and the concurrency policy, deadline and suspension hold.

use crate::core::{Command, CommandBody, EventPayload, State};
use crate::cron::{CronCommand, CronEvent};
use crate::testkit::*;

fn cron_doc(name: &str, schedule: &str, extra: serde_json::Value) -> String {
    let mut spec = serde_json::json!({
        "schedule": schedule,
        "jobTemplate": {"framework": "generic", "roles": {"run": {"replicas": 1, "command": ["true"]}}},
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    serde_json::json!({"apiVersion": "cairn.dev/v1", "kind": "TrainingCron", "metadata": {"name": name}, "spec": spec}).to_string()
}

fn trigger(name: &str, scheduled_ms: i64, now: i64) -> Command {
    at(
        now,
        CommandBody::Cron(CronCommand::Trigger {
            name: name.into(),
            scheduled_ms,
        }),
    )
}

const MIN: i64 = 60_000;
const T0: i64 = 1_795_428_000_000;

#[test]
fn cron_runs_start_once_each_and_none_is_skipped_after_a_gap() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    apply(
        &mut s,
        &at(
            T0,
            cron_body(&cron_doc("nightly", "*/5 * * * *", serde_json::json!({}))).unwrap(),
        ),
    )
    .unwrap();
    let due = s.cron("nightly").unwrap().next_due().unwrap();
    assert_eq!(due, T0 + 5 * MIN);
    // Not yet due: nothing.
    assert!(apply(&mut s, &trigger("nightly", due, due - 1))
        .unwrap()
        .is_empty());
    let ev = apply(&mut s, &trigger("nightly", due, due + 10)).unwrap();
    assert_eq!(types(&ev)[..2], ["cron_triggered", "job_submitted"]);
    // The same trigger again (an old leader's proposal, or a retry): nothing.
    assert!(apply(&mut s, &trigger("nightly", due, due + 20))
        .unwrap()
        .is_empty());
    // A leader that was away for 12 minutes triggers the two missed runs, in order.
    let now = due + 12 * MIN;
    assert!(
        apply(&mut s, &trigger("nightly", due + 10 * MIN, now))
            .unwrap()
            .is_empty(),
        "not the next one"
    );
    assert_eq!(
        types(&apply(&mut s, &trigger("nightly", due + 5 * MIN, now)).unwrap())[0],
        "cron_triggered"
    );
    assert_eq!(
        types(&apply(&mut s, &trigger("nightly", due + 10 * MIN, now)).unwrap())[0],
        "cron_triggered"
    );
    let runs = &s.cron("nightly").unwrap().runs;
    assert_eq!(runs.len(), 3);
    assert!(runs.keys().all(|j| s
        .job(j)
        .is_some_and(|j| j.doc.metadata.labels["cairn.dev/cron"] == "nightly")));
}

#[test]
fn cron_concurrency_deadline_and_suspend() {
    let mut s = State::new();
    register(&mut s, nvswitch("a"));
    let forbid = cron_doc(
        "f",
        "* * * * *",
        serde_json::json!({"concurrencyPolicy": "Forbid", "deadlineSeconds": 30}),
    );
    apply(&mut s, &at(T0, cron_body(&forbid).unwrap())).unwrap();
    apply(&mut s, &trigger("f", T0 + MIN, T0 + MIN)).unwrap();
    let ev = apply(&mut s, &trigger("f", T0 + 2 * MIN, T0 + 2 * MIN)).unwrap();
    assert_eq!(
        types(&ev),
        ["cron_skipped"],
        "the first run is still active"
    );
    // 40 s late with a 30 s deadline: skipped.
    let ev = apply(&mut s, &trigger("f", T0 + 3 * MIN, T0 + 3 * MIN + 40_000)).unwrap();
    assert!(
        matches!(&ev[0].payload, EventPayload::Cron(CronEvent::Skipped { reason, .. }) if reason.contains("deadline"))
    );

    let replace = cron_doc(
        "r",
        "* * * * *",
        serde_json::json!({"concurrencyPolicy": "Replace"}),
    );
    apply(&mut s, &at(T0, cron_body(&replace).unwrap())).unwrap();
    apply(&mut s, &trigger("r", T0 + MIN, T0 + MIN)).unwrap();
    let ev = apply(&mut s, &trigger("r", T0 + 2 * MIN, T0 + 2 * MIN)).unwrap();
    assert_eq!(
        types(&ev)[..3],
        ["job_cancelled", "cron_triggered", "job_submitted"]
    );

    let suspended = cron_doc(
        "r",
        "* * * * *",
        serde_json::json!({"concurrencyPolicy": "Replace", "suspend": true}),
    );
    apply(&mut s, &at(T0, cron_body(&suspended).unwrap())).unwrap();
    assert!(apply(&mut s, &trigger("r", T0 + 3 * MIN, T0 + 3 * MIN))
        .unwrap()
        .is_empty());
    let bad = cron_doc("x", "61 * * * *", serde_json::json!({}));
    let err = cron_body(&bad).unwrap_err();
    assert!(err.to_string().contains("spec.schedule"), "{err}");
}
