//! Tests of the model registry: numbering, soft deletes and name reuse, renames,
//! compare-and-set on stages and aliases, archiving, reserved aliases, the timeline that
//! answers "who held it then", the version a successful job registers, and protected
//! stages and aliases.

use std::collections::BTreeMap;

use crate::core::{Command, CommandBody, EventPayload, State};
use crate::job::JobCommand;
use crate::model::{Held, ModelCommand, ModelEvent, Stage};
use crate::rejection::Rejection;
use crate::role::Role;
use crate::testkit::*;

fn m(c: ModelCommand) -> CommandBody {
    CommandBody::Model(c)
}

/// A command by `actor` at `ts`.
fn by(actor: &str, ts: i64, body: CommandBody) -> Command {
    Command {
        actor: actor.into(),
        ..at(ts, body)
    }
}

fn create(name: &str) -> CommandBody {
    m(ModelCommand::Create {
        name: name.into(),
        description: String::new(),
        tags: BTreeMap::new(),
    })
}

fn version(name: &str, source: &str) -> CommandBody {
    m(ModelCommand::CreateVersion {
        name: name.into(),
        source: source.into(),
        run_id: String::new(),
        description: String::new(),
        tags: BTreeMap::new(),
        create_model: false,
    })
}

fn stage(name: &str, v: u64, to: Stage, expected: Option<Stage>, archive: bool) -> CommandBody {
    m(ModelCommand::Transition {
        name: name.into(),
        version: v,
        stage: to,
        expected,
        expected_in_target: None,
        archive_existing: archive,
        reason: format!("to {}", to.name()),
    })
}

fn alias(name: &str, a: &str, v: u64, expected: Option<Option<u64>>) -> CommandBody {
    m(ModelCommand::SetAlias {
        name: name.into(),
        alias: a.into(),
        version: v,
        expected,
        reason: String::new(),
    })
}

fn ok(s: &mut State, body: CommandBody) -> Vec<&'static str> {
    types(&apply(s, &cmd(body)).expect("accepted"))
}

fn stage_of(s: &State, name: &str, v: u64) -> Stage {
    s.models()[name].versions[&v].stage
}

#[test]
fn versions_are_numbered_from_one_and_never_reused() {
    let mut s = State::new();
    ok(&mut s, create("resnet"));
    for _ in 0..3 {
        ok(&mut s, version("resnet", "s3://b/r"));
    }
    ok(
        &mut s,
        m(ModelCommand::DeleteVersion {
            name: "resnet".into(),
            version: 3,
        }),
    );
    let ev = apply(&mut s, &cmd(version("resnet", "s3://b/r4"))).unwrap();
    assert!(matches!(
        &ev[0].payload,
        EventPayload::Model(ModelEvent::VersionCreated(v)) if v.version == 4
    ));
    let model = &s.models()["resnet"];
    assert_eq!(
        model.live_versions().map(|(v, _)| *v).collect::<Vec<_>>(),
        [1, 2, 4]
    );
    assert!(model.versions[&3].deleted, "its history stays");
    // A version of a model that does not exist is refused, unless it is created with it.
    assert_eq!(
        apply(&mut s, &cmd(version("vit", "s3://b/v"))).unwrap_err(),
        Rejection::NotFound("model/vit".into())
    );
    let both = m(ModelCommand::CreateVersion {
        name: "vit".into(),
        source: "s3://b/v".into(),
        run_id: String::new(),
        description: String::new(),
        tags: BTreeMap::new(),
        create_model: true,
    });
    assert_eq!(ok(&mut s, both), ["model_created", "model_version_created"]);
}

#[test]
fn a_deleted_model_leaves_listings_and_its_name_starts_a_new_model() {
    let mut s = State::new();
    ok(&mut s, create("bert"));
    ok(&mut s, version("bert", "s3://b/1"));
    ok(&mut s, version("bert", "s3://b/2"));
    let first = s.models()["bert"].created_sequence;
    ok(
        &mut s,
        m(ModelCommand::Delete {
            name: "bert".into(),
        }),
    );
    assert!(s.models()["bert"].deleted);
    assert!(!s.is_live(&crate::EntityKey::new("model", "bert")));
    // Writes to a deleted model are refused.
    assert_eq!(
        apply(&mut s, &cmd(version("bert", "s3://b/3"))).unwrap_err(),
        Rejection::NotFound("model/bert".into())
    );
    // The name is taken again: a new model, numbered from 1, told apart by its creation.
    ok(&mut s, create("bert"));
    ok(&mut s, version("bert", "s3://b/new"));
    let second = &s.models()["bert"];
    assert_ne!(second.created_sequence, first);
    assert_eq!(second.versions.keys().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(second.versions[&1].source, "s3://b/new");
    // The stream goes on: both lives are in the history of `model/bert`.
    assert_eq!(
        s.revision(&crate::EntityKey::new("model", "bert")),
        6,
        "created, 2 versions, deleted, created, 1 version"
    );
}

#[test]
fn a_rename_moves_the_model_and_links_both_names() {
    let mut s = State::new();
    ok(&mut s, create("old"));
    ok(&mut s, version("old", "s3://b/1"));
    ok(&mut s, create("taken"));
    let clash = m(ModelCommand::Rename {
        name: "old".into(),
        new_name: "taken".into(),
    });
    assert_eq!(
        apply(&mut s, &cmd(clash)).unwrap_err(),
        Rejection::AlreadyExists("model/taken".into())
    );
    let rename = m(ModelCommand::Rename {
        name: "old".into(),
        new_name: "new".into(),
    });
    assert_eq!(ok(&mut s, rename), ["model_renamed", "model_renamed_from"]);
    assert!(!s.models().contains_key("old"));
    let moved = &s.models()["new"];
    assert_eq!(moved.former_names, ["old"]);
    assert_eq!(moved.versions.len(), 1);
    assert!(!s.is_live(&crate::EntityKey::new("model", "old")));
    assert!(s.is_live(&crate::EntityKey::new("model", "new")));
    // The old name is free again.
    ok(&mut s, create("old"));
}

#[test]
fn a_transition_names_the_stage_it_expects_and_only_one_racer_wins() {
    let mut s = State::new();
    ok(&mut s, create("r"));
    ok(&mut s, version("r", "s3://b/1"));
    ok(&mut s, version("r", "s3://b/2"));
    ok(&mut s, stage("r", 1, Stage::Production, None, false));
    // Two promotions of version 2, both expecting it in None: the first wins, the second
    // finds it in Production already.
    let promote = stage("r", 2, Stage::Production, Some(Stage::None), true);
    assert_eq!(
        ok(&mut s, promote.clone()),
        ["model_version_stage_changed", "model_version_stage_changed"],
        "version 1 archived, version 2 promoted"
    );
    let err = apply(&mut s, &cmd(promote)).unwrap_err();
    assert!(
        matches!(&err, Rejection::FailedPrecondition(m) if m.contains("version 2 is in Production, not None")),
        "{err}"
    );
    assert_eq!(stage_of(&s, "r", 1), Stage::Archived);
    assert_eq!(stage_of(&s, "r", 2), Stage::Production);
    // Archiving is only for Staging and Production.
    let bad = stage("r", 1, Stage::Archived, None, true);
    assert!(matches!(
        apply(&mut s, &cmd(bad)),
        Err(Rejection::InvalidArgument(m)) if m.contains("only for Staging and Production")
    ));
    // The same stage again records nothing.
    assert!(ok(&mut s, stage("r", 2, Stage::Production, None, false)).is_empty());
}

#[test]
fn racing_promotions_of_different_versions_expecting_the_same_holders_have_one_winner() {
    let mut s = State::new();
    ok(&mut s, create("r"));
    ok(&mut s, version("r", "s3://b/1"));
    ok(&mut s, version("r", "s3://b/2"));
    let promote = |v| {
        m(ModelCommand::Transition {
            name: "r".into(),
            version: v,
            stage: Stage::Production,
            expected: None,
            expected_in_target: Some(Default::default()),
            archive_existing: true,
            reason: String::new(),
        })
    };
    ok(&mut s, promote(2));
    let err = apply(&mut s, &cmd(promote(1))).unwrap_err();
    assert!(
        matches!(&err, Rejection::FailedPrecondition(m) if m.contains("has versions {2} in Production")),
        "{err}"
    );
    assert_eq!(
        stage_of(&s, "r", 1),
        Stage::None,
        "the loser changed nothing"
    );
    assert_eq!(stage_of(&s, "r", 2), Stage::Production);
}

#[test]
fn aliases_are_unique_per_model_with_compare_and_set_and_reserved_names() {
    let mut s = State::new();
    ok(&mut s, create("r"));
    ok(&mut s, version("r", "s3://b/1"));
    ok(&mut s, version("r", "s3://b/2"));
    // Only if it does not exist yet: the first racer wins.
    assert_eq!(
        ok(&mut s, alias("r", "champion", 1, Some(None))),
        ["model_alias_set"]
    );
    assert!(matches!(
        apply(&mut s, &cmd(alias("r", "champion", 2, Some(None)))),
        Err(Rejection::FailedPrecondition(m)) if m.contains("points at version 1")
    ));
    // Moved, expecting where it points now.
    ok(&mut s, alias("r", "champion", 2, Some(Some(1))));
    assert_eq!(s.models()["r"].aliases["champion"], 2);
    for reserved in ["latest", "LATEST", "v3", "V12"] {
        let err = apply(&mut s, &cmd(alias("r", reserved, 1, None))).unwrap_err();
        assert!(err.to_string().contains("is reserved"), "{reserved}: {err}");
    }
    assert!(apply(&mut s, &cmd(alias("r", "bad alias", 1, None))).is_err());
    // Deleting a version deletes the aliases pointing at it, each recorded.
    let delete = m(ModelCommand::DeleteVersion {
        name: "r".into(),
        version: 2,
    });
    assert_eq!(
        ok(&mut s, delete),
        ["model_alias_deleted", "model_version_deleted"]
    );
    assert!(s.models()["r"].aliases.is_empty());
    // Deleting a missing alias (or tag) of an existing model changes nothing.
    let none = m(ModelCommand::DeleteAlias {
        name: "r".into(),
        alias: "nope".into(),
        reason: String::new(),
    });
    assert!(ok(&mut s, none).is_empty());
}

#[test]
fn the_timeline_says_who_held_a_stage_or_alias_at_any_time() {
    let mut s = State::new();
    apply(&mut s, &by("alice", 1_000, create("r"))).unwrap();
    for i in 1..=3 {
        apply(&mut s, &by("alice", 1_000 + i, version("r", "s3://b"))).unwrap();
    }
    apply(
        &mut s,
        &by("bob", 2_000, stage("r", 1, Stage::Production, None, false)),
    )
    .unwrap();
    apply(
        &mut s,
        &by("carol", 3_000, stage("r", 2, Stage::Production, None, true)),
    )
    .unwrap();
    apply(&mut s, &by("dave", 3_500, alias("r", "champion", 2, None))).unwrap();
    apply(&mut s, &by("erin", 4_000, alias("r", "champion", 3, None))).unwrap();
    let model = &s.models()["r"];
    let prod = Held::Stage(Stage::Production);
    assert!(model.held(&prod, 1_999).is_empty(), "before any promotion");
    let at = |t| -> Vec<(u64, i64, String)> {
        model
            .held(&prod, t)
            .into_iter()
            .map(|h| (h.version, h.since_ms, h.actor))
            .collect()
    };
    assert_eq!(at(2_500), [(1, 2_000, "bob".to_string())]);
    assert_eq!(
        at(3_000),
        [(2, 3_000, "carol".to_string())],
        "1 was archived then"
    );
    let champion = Held::Alias("champion".into());
    let holder = |t| {
        model
            .held(&champion, t)
            .first()
            .map(|h| (h.version, h.actor.clone()))
    };
    assert_eq!(holder(3_499), None);
    assert_eq!(holder(3_700), Some((2, "dave".to_string())));
    assert_eq!(holder(9_999), Some((3, "erin".to_string())));
    let archived = model.held(&Held::Stage(Stage::Archived), 9_999);
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].reason, "version 2 moved to Production");
}

#[test]
fn tags_and_names_are_checked_at_every_size() {
    let mut s = State::new();
    let long_key = m(ModelCommand::Create {
        name: "r".into(),
        description: String::new(),
        tags: BTreeMap::from([("k".repeat(251), "v".into())]),
    });
    assert!(apply(&mut s, &cmd(long_key)).is_err());
    let long_value = m(ModelCommand::Create {
        name: "r".into(),
        description: String::new(),
        tags: BTreeMap::from([("k".into(), "v".repeat(5001))]),
    });
    assert!(apply(&mut s, &cmd(long_value)).is_err());
    for bad in ["", "a b", "../x", ".hidden", "a/b", "a:b"] {
        assert!(apply(&mut s, &cmd(create(bad))).is_err(), "{bad:?}");
    }
    ok(&mut s, create("team.resnet-50_v2"));
    assert!(apply(&mut s, &cmd(version("team.resnet-50_v2", " "))).is_err());
    assert_eq!(s.models().len(), 1, "refused commands change nothing");
}

#[test]
fn a_job_that_succeeds_registers_a_version_with_its_lineage_and_outputs() {
    let mut s = State::new();
    register(&mut s, nvswitch("gpu-a"));
    let json = r#"{"apiVersion": "cairn.dev/v1", "kind": "TrainingJob", "metadata": {"name": "train"},
        "spec": {"framework": "pytorch",
                 "roles": {"master": {"replicas": 1, "gpus": 2, "command": ["python", "t.py"]}},
                 "codeSync": {"git": {"repository": "https://example.com/r.git", "ref": "v1"}},
                 "model": {"name": "resnet", "path": "/models/resnet", "description": "nightly"}}}"#;
    apply(&mut s, &cmd(job_body(json).unwrap())).unwrap();
    let report = |exit: Option<i32>, outputs: crate::model::RunOutputs| {
        CommandBody::Job(JobCommand::ReportReplica {
            node: "gpu-a".into(),
            job: "train".into(),
            replica: crate::job::ReplicaId {
                role: "master".into(),
                index: 0,
            },
            attempt: 0,
            pid: 9,
            exit: exit.map(|code| crate::job::ReplicaExit {
                code,
                signal: 0,
                oom: false,
            }),
            outputs,
            token_digest: b"gpu-a".to_vec(),
        })
    };
    apply(&mut s, &cmd(report(None, Default::default()))).unwrap();
    let outputs = crate::model::RunOutputs {
        metrics: BTreeMap::from([("accuracy".into(), "0.93".into())]),
        params: BTreeMap::from([("lr".into(), "0.001".into())]),
    };
    let ev = apply(&mut s, &cmd(report(Some(0), outputs.clone()))).unwrap();
    assert_eq!(
        types(&ev),
        [
            "replica_exited",
            "job_succeeded",
            "model_created",
            "model_version_created"
        ]
    );
    let v = &s.models()["resnet"].versions[&1];
    assert_eq!(v.run_id, "train");
    assert_eq!(v.source, "/models/resnet");
    assert_eq!(v.storage_location, "file://gpu-a/models/resnet");
    assert_eq!(v.description, "nightly");
    assert_eq!(v.outputs, outputs);
    let lineage = v.lineage.as_ref().unwrap();
    assert_eq!(lineage.nodes, ["gpu-a"]);
    assert_eq!(lineage.gpus.len(), 2);
    assert_eq!(lineage.code, "git https://example.com/r.git@v1");
    // Metrics must be numbers.
    let bad = crate::model::RunOutputs {
        metrics: BTreeMap::from([("accuracy".into(), "high".into())]),
        params: BTreeMap::new(),
    };
    assert!(apply(&mut s, &cmd(report(Some(0), bad))).is_err());
}

fn protect(name: &str, target: Held, allowed: &[&str]) -> CommandBody {
    m(ModelCommand::Protect {
        name: name.into(),
        target,
        allowed: allowed.iter().map(|a| a.to_string()).collect(),
    })
}

/// A command by `actor` with `role` (as the edge stamps an authenticated user's).
fn as_role(actor: &str, role: Option<Role>, body: CommandBody) -> Command {
    Command {
        role,
        ..by(actor, 1, body)
    }
}

fn denied(s: &mut State, c: &Command) -> String {
    match apply(s, c) {
        Err(Rejection::PermissionDenied(why)) => why,
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}

#[test]
fn only_the_named_actors_or_an_admin_move_a_protected_stage_or_alias() {
    let mut s = State::new();
    ok(&mut s, create("fraud"));
    for _ in 0..3 {
        ok(&mut s, version("fraud", "s3://b/f"));
    }
    ok(&mut s, stage("fraud", 1, Stage::Production, None, false));
    ok(&mut s, alias("fraud", "champion", 1, None));
    let op = Some(Role::Operator);
    // Only an admin may protect.
    let p = protect("fraud", Held::Stage(Stage::Production), &["user/alice"]);
    denied(&mut s, &as_role("user/bob", op, p.clone()));
    apply(&mut s, &as_role("user/root", Some(Role::Admin), p)).expect("admin protects");
    let a = protect("fraud", Held::Alias("champion".into()), &["user/alice"]);
    assert_eq!(ok(&mut s, a), ["model_protected"]);

    // Bob, an operator, may not move Production either way, nor the alias, nor delete
    // what holds them; he may still work on other stages and aliases.
    let why = denied(
        &mut s,
        &as_role(
            "user/bob",
            op,
            stage("fraud", 2, Stage::Production, None, false),
        ),
    );
    assert!(
        why.contains("stage Production of model/fraud is protected"),
        "{why}"
    );
    assert!(
        why.contains("user/alice") && why.contains("user/bob"),
        "{why}"
    );
    let out_of_production = stage("fraud", 1, Stage::Archived, None, false);
    denied(&mut s, &as_role("user/bob", op, out_of_production.clone()));
    denied(
        &mut s,
        &as_role("user/bob", op, alias("fraud", "champion", 2, None)),
    );
    let drop_champion = m(ModelCommand::DeleteAlias {
        name: "fraud".into(),
        alias: "champion".into(),
        reason: String::new(),
    });
    denied(&mut s, &as_role("user/bob", op, drop_champion));
    let delete_v1 = m(ModelCommand::DeleteVersion {
        name: "fraud".into(),
        version: 1,
    });
    denied(&mut s, &as_role("user/bob", op, delete_v1));
    let delete_model = m(ModelCommand::Delete {
        name: "fraud".into(),
    });
    denied(&mut s, &as_role("user/bob", op, delete_model));
    let staging = stage("fraud", 2, Stage::Staging, None, false);
    apply(&mut s, &as_role("user/bob", op, staging)).expect("Staging is not protected");
    let challenger = alias("fraud", "challenger", 2, None);
    apply(&mut s, &as_role("user/bob", op, challenger)).expect("nor is challenger");
    assert_eq!(stage_of(&s, "fraud", 1), Stage::Production);
    assert_eq!(s.models()["fraud"].aliases["champion"], 1);

    // Alice may, as may an admin.
    let promote = stage("fraud", 2, Stage::Production, None, true);
    apply(&mut s, &as_role("user/alice", op, promote)).expect("alice promotes");
    assert_eq!(stage_of(&s, "fraud", 2), Stage::Production);
    assert_eq!(stage_of(&s, "fraud", 1), Stage::Archived);
    let back = alias("fraud", "champion", 2, None);
    apply(&mut s, &as_role("user/root", Some(Role::Admin), back)).expect("admin moves it");

    // The protection is lifted with an empty list, and goes with a rename.
    let lift = protect("fraud", Held::Stage(Stage::Production), &[]);
    assert_eq!(ok(&mut s, lift), ["model_protected"]);
    let rename = m(ModelCommand::Rename {
        name: "fraud".into(),
        new_name: "fraud2".into(),
    });
    ok(&mut s, rename);
    let protections = &s.models()["fraud2"].protections;
    assert_eq!(protections.len(), 1);
    assert!(protections.contains_key(&Held::Alias("champion".into())));
    let move_it = alias("fraud2", "champion", 3, None);
    denied(&mut s, &as_role("user/bob", op, move_it));
    let demote = stage("fraud2", 2, Stage::Staging, None, false);
    apply(&mut s, &as_role("user/bob", op, demote)).expect("Production is open again");
}

#[test]
fn a_protection_names_actors_and_a_stage_or_alias_that_can_be_protected() {
    let mut s = State::new();
    ok(&mut s, create("m"));
    let none = protect("m", Held::Stage(Stage::None), &["user/a"]);
    let bad_actor = protect("m", Held::Alias("champion".into()), &["alice"]);
    let reserved = protect("m", Held::Alias("latest".into()), &["user/a"]);
    let too_many: Vec<String> = (0..65).map(|i| format!("user/u{i}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let crowd = protect("m", Held::Alias("champion".into()), &too_many);
    for (body, field) in [
        (none, "protection.stage"),
        (bad_actor, "is not an actor"),
        (reserved, "is reserved"),
        (crowd, "more than 64 actors"),
    ] {
        match apply(&mut s, &cmd(body)) {
            Err(Rejection::InvalidArgument(why)) => assert!(why.contains(field), "{why}"),
            other => panic!("expected InvalidArgument about {field}, got {other:?}"),
        }
    }
    let missing = protect("nope", Held::Stage(Stage::Production), &["user/a"]);
    assert!(matches!(
        apply(&mut s, &cmd(missing)),
        Err(Rejection::NotFound(_))
    ));
}
