//! Stored events as a member reads them back (from its event store or a snapshot):
//! decoding and conversion into the domain never panic.
#![no_main]

use cairn_controlplane::convert::{FromPb, ToPb};
use cairn_domain::Event;
use cairn_proto as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = pb::Event::decode(data) {
        if let Ok(d) = Event::from_pb(&e) {
            // A converted event converts back to the same wire event's payload type.
            assert_eq!(d.to_pb().type_name(), e.type_name());
        }
    }
});
