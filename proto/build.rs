//! Compiles the cairn.v1 schema with protox, so building needs no system `protoc`.

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
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .compile_fds(descriptors)?;
    Ok(())
}
