//! The `cairn` CLI, run as a user would run it.

use std::process::Command;

use anyhow::Context;

use crate::process::bin;

/// `cairn --endpoints <endpoints>`, for the caller to add a command to.
pub fn cli(endpoints: &[String]) -> Command {
    let mut command = Command::new(bin("cairn"));
    command.args(["--endpoints", &endpoints.join(",")]);
    command
}

/// Run the CLI against `endpoints` with `-o json` and parse what it prints; a failed
/// run is an error with its stderr.
pub fn cli_json(endpoints: &[String], args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = cli(endpoints)
        .args(["-o", "json"])
        .args(args)
        .output()
        .context("running cairn")?;
    anyhow::ensure!(
        out.status.success(),
        "cairn {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("parsing the output of cairn")
}

/// `cairn certs <args>` (development certificates); panics with its stderr on failure.
pub fn certs(args: &[&str]) {
    let out = Command::new(bin("cairn"))
        .arg("certs")
        .args(args)
        .output()
        .expect("running cairn certs");
    assert!(
        out.status.success(),
        "cairn certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
