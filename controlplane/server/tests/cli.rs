//! The `cairn-server` binary refuses a bad configuration with every problem named and a
//! non-zero exit, before it touches any data. (Also what makes `cargo test --workspace`
//! build the binary that the multi-process tests in `tests/` run.)

use std::process::Command;

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn-server"))
}

#[test]
fn a_configuration_with_problems_names_each_and_starts_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "node_id = 0\nlisten = \"nowhere\"\ndata_dir = \"\"\n[kubernetes]\nnamespace = \"cairn\"\n",
    )
    .expect("write the config");
    let out = server()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("cairn-server runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for problem in [
        "node_id: must be > 0",
        "data_dir: must not be empty",
        "listen",
    ] {
        assert!(err.contains(problem), "{problem:?} missing from: {err}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0),
        1,
        "nothing but the config file"
    );
}

#[test]
fn dev_refuses_a_port_range_that_is_not_one() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = server()
        .args(["dev", "--port-range", "30000-20000", "--data-dir"])
        .arg(dir.path().join("dev"))
        .output()
        .expect("cairn-server runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a port range"), "{err}");
    assert!(!dir.path().join("dev").exists(), "no data directory made");
}
