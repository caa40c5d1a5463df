//! Compiles the cairn.v1 schema with protox, so building needs no system `protoc`.
//!
//! Three things besides the generated types:
//! - the services use `cairn_proto::codec::Codec`, which answers a message that does not
//!   decode with `INVALID_ARGUMENT` (the sender's fault), not `INTERNAL`;
//! - every `map<>` field is a `BTreeMap`, so a message encodes to the same bytes in
//!   every process (a `HashMap` iterates in a per-process random order, and an event
//!   with two labels would be stored differently on each member);
//! - the event and command type names (the fields of `Event.payload` and
//!   `Command.body`) are generated from the schema, so the lists that filters, indexes
//!   and tests use cannot drift from it.

use std::fmt::Write as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "cairn/v1/nodes.proto",
        "cairn/v1/models.proto",
        "cairn/v1/deployments.proto",
        "cairn/v1/events.proto",
        "cairn/v1/commands.proto",
        "cairn/v1/api.proto",
        "cairn/v1/raft.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["."])?;
    // (message, oneof, its enum's module, the generated list's name)
    let oneofs = [
        ("Event", "payload", "event::Payload", "EVENT_TYPES"),
        ("Command", "body", "command::Body", "COMMAND_TYPES"),
    ];
    let mut out = String::new();
    for (message, oneof, variants, list) in oneofs {
        let names = oneof_fields(&descriptors, message, oneof)?;
        writeln!(
            out,
            "/// Every `{message}.{oneof}` type name, in schema order.\npub const {list}: &[&str] = &["
        )?;
        for name in &names {
            writeln!(out, "    {name:?},")?;
        }
        writeln!(out, "];\n\nimpl v1::{message} {{")?;
        writeln!(
            out,
            "    /// The type name of the `{oneof}`, as its field is named in the schema.\n    pub fn type_name(&self) -> &'static str {{\n        use v1::{variants} as V;\n        match &self.{oneof} {{"
        )?;
        for name in &names {
            writeln!(out, "            Some(V::{}(_)) => {name:?},", camel(name))?;
        }
        writeln!(
            out,
            "            None => \"unknown\",\n        }}\n    }}\n}}\n"
        )?;
    }
    tonic_prost_build::configure()
        .btree_map(".")
        .codec_path("crate::codec::Codec")
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(descriptors)?;
    let dir = std::env::var("OUT_DIR")?;
    std::fs::write(format!("{dir}/oneof_types.rs"), out)?;
    Ok(())
}

/// The field names of `oneof` in the message `cairn.v1.<message>`.
fn oneof_fields(
    fds: &prost_types::FileDescriptorSet,
    message: &str,
    oneof: &str,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let m = fds
        .file
        .iter()
        .filter(|f| f.package() == "cairn.v1")
        .flat_map(|f| &f.message_type)
        .find(|m| m.name() == message)
        .ok_or_else(|| format!("cairn.v1.{message} is missing from the schema"))?;
    let index = m
        .oneof_decl
        .iter()
        .position(|o| o.name() == oneof)
        .ok_or_else(|| format!("cairn.v1.{message} has no oneof {oneof}"))? as i32;
    Ok(m.field
        .iter()
        .filter(|f| f.oneof_index == Some(index))
        .map(|f| f.name().to_string())
        .collect())
}

/// `port_leases_renewed` → `PortLeasesRenewed`, as prost names oneof variants.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}
