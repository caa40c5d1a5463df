//! Client requests as the gRPC server decodes them, then the edge's conversion and
//! validation: a typed error or a value, never a panic.
#![no_main]

use cairn_controlplane::convert::FromPb;
use cairn_domain::Command;
use cairn_proto as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = pb::SubmitRequest::decode(data) {
        if let Some(cmd) = req.command {
            if let Ok(c) = Command::from_pb(&cmd) {
                let _ = c.problems();
            }
        }
    }
    let _ = pb::ListEventsRequest::decode(data);
    let _ = pb::GetEntityRequest::decode(data);
    let _ = pb::ListEntitiesRequest::decode(data);
    let _ = pb::WatchEventsRequest::decode(data);
    let _ = pb::HeartbeatRequest::decode(data);
    let _ = pb::ListNodesRequest::decode(data);
    let _ = pb::AddLearnerRequest::decode(data);
});
