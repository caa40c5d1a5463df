//! Raft entry payloads: a command batch decoded, converted, and decided against a state
//! with one registered node. Whatever the bytes, `decide` answers with events or a
//! typed rejection.
#![no_main]

use cairn_controlplane::convert::FromPb;
use cairn_domain::node::NodeCommand;
use cairn_domain::{decide, Command, CommandBody, Position, State};
use cairn_proto as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn seeded() -> State {
    let mut s = State::new();
    let register = Command {
        timestamp_ms: 1,
        actor: "node/n1".into(),
        correlation_id: "c".into(),
        expected_revision: None,
        body: CommandBody::Node(NodeCommand::Register {
            node: "n1".into(),
            inventory: Box::new(cairn_domain::node::NodeInventory {
                port_range_start: 20000,
                port_range_end: 20010,
                ..Default::default()
            }),
            token_digest: vec![1],
        }),
    };
    let pos = Position {
        raft_index: 1,
        raft_term: 1,
    };
    for e in decide(&s, &register, pos).unwrap_or_default() {
        s.evolve(&e);
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = pb::CommandBatch::decode(data) else {
        return;
    };
    let mut state = seeded();
    for (i, cmd) in batch.commands.iter().enumerate() {
        let Ok(c) = Command::from_pb(cmd) else {
            continue;
        };
        let pos = Position {
            raft_index: i as u64 + 2,
            raft_term: 1,
        };
        if let Ok(events) = decide(&state, &c, pos) {
            for e in &events {
                state.evolve(e);
            }
        }
    }
});
