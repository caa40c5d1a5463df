//! Events encode to the same bytes on every member: maps are `BTreeMap`s, so the order
//! of their entries does not depend on a process's random hash seed.

use std::process::Command;

use cairn_proto as pb;
use prost::Message;

const CHILD: &str = "CAIRN_ENCODE_CHILD";

/// An event with many labels, built from scratch in whatever process runs this.
fn encoded_event() -> String {
    // Collected into whatever map type the generated field has.
    let labels = (0..64)
        .map(|i| (format!("key-{i:02}"), format!("value-{i}")))
        .collect();
    let event = pb::Event {
        sequence: 7,
        entity: Some(pb::EntityRef {
            kind: "namespace".into(),
            name: "research".into(),
        }),
        payload: Some(pb::event::Payload::NamespaceCreated(pb::NamespaceCreated {
            labels,
        })),
        ..Default::default()
    };
    event
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Run in a child process by the test below; prints its encoding.
#[test]
fn encode_in_a_child_process() {
    if std::env::var_os(CHILD).is_some() {
        println!("ENCODED {}", encoded_event());
    }
}

#[test]
fn an_event_with_many_labels_encodes_to_the_same_bytes_in_two_processes() {
    let exe = std::env::current_exe().unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let out = Command::new(&exe)
            .args(["--exact", "encode_in_a_child_process", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("ENCODED "))
            .unwrap_or_else(|| panic!("no encoding in {stdout:?}"))
            .to_string();
        seen.push(line);
    }
    let here = encoded_event();
    assert_eq!(seen[0], here, "the first child encoded differently");
    assert_eq!(seen[1], here, "the second child encoded differently");
}
