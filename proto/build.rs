//! Compiles the cairn.v1 schema with protox, so building needs no system `protoc`.
//!
//! Two things besides the generated types:
//! - every `map<>` field is a `BTreeMap`, so a message encodes to the same bytes in
//!   every process (a `HashMap` iterates in a per-process random order, and an event
//!   with two labels would be stored differently on each member);
//! - the event type names (the fields of `Event.payload`) are generated from the schema,
//!   so the list that filters and indexes use cannot drift from it.

use std::fmt::Write as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "cairn/v1/nodes.proto",
        "cairn/v1/events.proto",
        "cairn/v1/commands.proto",
        "cairn/v1/api.proto",
        "cairn/v1/raft.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["."])?;
    let event_types = event_type_names(&descriptors)?;
    tonic_prost_build::configure()
        .btree_map(".")
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(descriptors)?;

    let mut out = String::new();
    out.push_str("/// Every event type name: the fields of `Event.payload`, in schema order.\n");
    out.push_str("pub const EVENT_TYPES: &[&str] = &[\n");
    for name in &event_types {
        writeln!(out, "    {name:?},")?;
    }
    out.push_str("];\n\nimpl v1::Event {\n");
    out.push_str(
        "    /// The event's type name, as in the payload oneof (`namespace_created`, ...).\n",
    );
    out.push_str("    pub fn type_name(&self) -> &'static str {\n");
    out.push_str("        use v1::event::Payload;\n        match &self.payload {\n");
    for name in &event_types {
        writeln!(
            out,
            "            Some(Payload::{}(_)) => {name:?},",
            camel(name)
        )?;
    }
    out.push_str("            None => \"unknown\",\n        }\n    }\n}\n");
    let dir = std::env::var("OUT_DIR")?;
    std::fs::write(format!("{dir}/event_types.rs"), out)?;
    Ok(())
}

/// The field names of the `payload` oneof of `cairn.v1.Event`.
fn event_type_names(
    fds: &prost_types::FileDescriptorSet,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let event = fds
        .file
        .iter()
        .filter(|f| f.package() == "cairn.v1")
        .flat_map(|f| &f.message_type)
        .find(|m| m.name() == "Event")
        .ok_or("cairn.v1.Event is missing from the schema")?;
    let oneof = event
        .oneof_decl
        .iter()
        .position(|o| o.name() == "payload")
        .ok_or("cairn.v1.Event has no payload oneof")? as i32;
    Ok(event
        .field
        .iter()
        .filter(|f| f.oneof_index == Some(oneof))
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
