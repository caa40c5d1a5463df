//! Unit and property tests of decide/evolve, with no I/O.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::entity::{EntityKey, Position};
use crate::member::RaftMembers;
use crate::namespace::NamespaceCommand;
use crate::rejection::Rejection;

fn cmd(body: CommandBody) -> Command {
    Command {
        timestamp_ms: 1_700_000_000_000,
        actor: "alice".into(),
        role: None,
        bearer: Vec::new(),
        correlation_id: "req-1".into(),
        expected_revision: None,
        body,
    }
}

fn at(i: u64) -> Position {
    Position {
        raft_index: i,
        raft_term: 1,
    }
}

/// Decide and fold in; panics on rejection.
fn apply(state: &mut State, c: &Command, i: u64) -> Vec<Event> {
    let events = decide(state, c, at(i)).expect("accepted");
    for e in &events {
        state.evolve(e);
    }
    events
}

fn create(name: &str) -> Command {
    cmd(CommandBody::Namespace(NamespaceCommand::Create {
        name: name.into(),
        labels: BTreeMap::from([("team".into(), "vision".into())]),
    }))
}

fn ns(name: &str) -> EntityKey {
    EntityKey::new("namespace", name)
}

#[test]
fn create_stamps_sequence_revision_and_position() {
    let mut s = State::new();
    let ev = apply(&mut s, &create("research"), 7);
    assert_eq!(ev.len(), 1);
    let e = &ev[0];
    assert_eq!((e.sequence, e.entity_revision), (1, 1));
    assert_eq!((e.raft_index, e.raft_term), (7, 1));
    assert_eq!(e.entity, ns("research"));
    assert_eq!(e.actor, "alice");
    assert_eq!(e.timestamp_ms, 1_700_000_000_000);
    assert_eq!(s.last_sequence(), 1);
    assert_eq!(s.entity(&ns("research")).map(|e| e.labels.len()), Some(1));
}

#[test]
fn creating_twice_is_already_exists_and_changes_nothing() {
    let mut s = State::new();
    apply(&mut s, &create("a"), 1);
    let before = s.clone();
    assert_eq!(
        decide(&s, &create("a"), at(2)),
        Err(Rejection::AlreadyExists("namespace/a".into()))
    );
    assert_eq!(s, before);
}

#[test]
fn unknown_entity_is_not_found() {
    let s = State::new();
    let r = decide(
        &s,
        &cmd(CommandBody::AddNote {
            entity: ns("ghost"),
            text: "hello".into(),
        }),
        at(1),
    );
    assert_eq!(r, Err(Rejection::NotFound("namespace/ghost".into())));
}

#[test]
fn expected_revision_guards_every_write() {
    let mut s = State::new();
    let mut c = create("a");
    c.expected_revision = Some(0);
    apply(&mut s, &c, 1);
    let mut note = cmd(CommandBody::AddNote {
        entity: ns("a"),
        text: "n".into(),
    });
    note.expected_revision = Some(5);
    assert_eq!(
        decide(&s, &note, at(2)),
        Err(Rejection::WrongRevision {
            entity: "namespace/a".into(),
            expected: 5,
            actual: 1
        })
    );
    note.expected_revision = Some(1);
    let ev = apply(&mut s, &note, 2);
    assert_eq!(ev[0].entity_revision, 2);
    assert_eq!(s.entity(&ns("a")).map(|e| e.notes), Some(1));
}

#[test]
fn labels_merge_replace_and_noop() {
    let mut s = State::new();
    apply(&mut s, &create("a"), 1);
    let merge = cmd(CommandBody::Namespace(NamespaceCommand::SetLabels {
        name: "a".into(),
        set: BTreeMap::from([("tier".into(), "gold".into())]),
        remove: vec![],
        replace: false,
    }));
    apply(&mut s, &merge, 2);
    assert_eq!(s.entity(&ns("a")).map(|e| e.labels.len()), Some(2));
    // The same change again emits nothing.
    assert!(apply(&mut s, &merge, 3).is_empty());
    let replace = cmd(CommandBody::Namespace(NamespaceCommand::SetLabels {
        name: "a".into(),
        set: BTreeMap::new(),
        remove: vec![],
        replace: true,
    }));
    apply(&mut s, &replace, 4);
    assert!(s.entity(&ns("a")).is_some_and(|e| e.labels.is_empty()));
}

#[test]
fn delete_then_recreate_continues_the_stream() {
    let mut s = State::new();
    apply(&mut s, &create("a"), 1);
    apply(
        &mut s,
        &cmd(CommandBody::Namespace(NamespaceCommand::Delete {
            name: "a".into(),
        })),
        2,
    );
    assert!(!s.is_live(&ns("a")));
    assert_eq!(
        decide(
            &s,
            &cmd(CommandBody::Namespace(NamespaceCommand::Delete {
                name: "a".into()
            })),
            at(3)
        ),
        Err(Rejection::NotFound("namespace/a".into()))
    );
    let ev = apply(&mut s, &create("a"), 3);
    assert_eq!(ev[0].entity_revision, 3);
    assert!(s.is_live(&ns("a")));
}

#[test]
fn invalid_commands_are_rejected_in_decide_too() {
    let s = State::new();
    let r = decide(&s, &create("Not Valid"), at(1));
    assert!(matches!(r, Err(Rejection::InvalidArgument(m)) if m.contains("create_namespace.name")));
}

#[test]
fn reconcile_members_records_membership_changes_once() {
    let mut s = State::new();
    s.set_raft_members(RaftMembers {
        voters: BTreeMap::from([(1, "a:1".into())]),
        learners: BTreeMap::from([(2, "a:2".into())]),
    });
    let ev = apply(&mut s, &cmd(CommandBody::ReconcileMembers), 1);
    let types: Vec<_> = ev.iter().map(|e| e.payload.type_name()).collect();
    assert_eq!(types, ["member_added", "member_added"]);
    // Nothing changed: nothing recorded.
    assert!(apply(&mut s, &cmd(CommandBody::ReconcileMembers), 2).is_empty());
    // Promote 2, remove 1.
    s.set_raft_members(RaftMembers {
        voters: BTreeMap::from([(2, "a:2".into())]),
        learners: BTreeMap::new(),
    });
    let ev = apply(&mut s, &cmd(CommandBody::ReconcileMembers), 3);
    let got: Vec<_> = ev
        .iter()
        .map(|e| (e.entity.to_string(), e.payload.type_name()))
        .collect();
    assert_eq!(
        got,
        [
            ("member/2".to_string(), "member_promoted"),
            ("member/1".to_string(), "member_removed")
        ]
    );
    assert_eq!(s.members().len(), 1);
    assert!(s.members()[&2].voter);
}

fn arb_command() -> impl Strategy<Value = Command> {
    let name = prop::sample::select(vec!["a", "b", "c"]);
    prop_oneof![
        name.clone().prop_map(create),
        name.clone()
            .prop_map(|n| cmd(CommandBody::Namespace(NamespaceCommand::Delete {
                name: n.into()
            }))),
        (name.clone(), "[a-z]{1,3}").prop_map(|(n, v)| cmd(CommandBody::Namespace(
            NamespaceCommand::SetLabels {
                name: n.into(),
                set: BTreeMap::from([("k".into(), v)]),
                remove: vec![],
                replace: false,
            }
        ))),
        (name, any::<Option<u64>>().prop_map(|r| r.map(|r| r % 4))).prop_map(|(n, rev)| {
            let mut c = cmd(CommandBody::AddNote {
                entity: ns(n),
                text: "x".into(),
            });
            c.expected_revision = rev;
            c
        }),
    ]
}

proptest! {
    /// The fold is deterministic and sequence numbers are gapless: replaying the events
    /// on a fresh state gives the same state, and per-entity revisions count up by one.
    #[test]
    fn fold_is_deterministic_and_gapless(cmds in prop::collection::vec(arb_command(), 0..60)) {
        let mut s = State::new();
        let mut log = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            let a = decide(&s, c, at(i as u64 + 1));
            let b = decide(&s, c, at(i as u64 + 1));
            prop_assert_eq!(&a, &b);
            if let Ok(events) = a {
                for e in &events {
                    s.evolve(e);
                    log.push(e.clone());
                }
            }
        }
        let mut replay = State::new();
        let mut revisions: BTreeMap<EntityKey, u64> = BTreeMap::new();
        for (i, e) in log.iter().enumerate() {
            prop_assert_eq!(e.sequence, i as u64 + 1);
            let r = revisions.entry(e.entity.clone()).or_default();
            *r += 1;
            prop_assert_eq!(e.entity_revision, *r);
            replay.evolve(e);
        }
        prop_assert_eq!(replay, s);
    }
}
