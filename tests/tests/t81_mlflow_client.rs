//! MLflow's own Python client against `cairn-server dev`: `tests/mlflow/test_registry.py`
//! drives registered models, versions, stages, aliases, searches, errors and wire types
//! through `MlflowClient` (the same script passes against a real `mlflow server`), then
//! races two conditional transitions and expects exactly one to win.
//!
//! The client lives in a virtualenv: `$CAIRN_MLFLOW_PYTHON` if set, else
//! `$HOME/.cache/cairn-venv`, created from `tests/mlflow/requirements.txt` when it does
//! not hold the pinned client yet.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use cairn_tests::{bin, free_port, Server, ServerSpec};

const REQUIREMENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/mlflow/requirements.txt");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/mlflow/test_registry.py");

/// The client version the requirements pin.
fn pinned_version() -> anyhow::Result<String> {
    let reqs = std::fs::read_to_string(REQUIREMENTS)?;
    reqs.lines()
        .find_map(|l| l.strip_prefix("mlflow-skinny=="))
        .map(|v| v.trim().to_string())
        .context("tests/mlflow/requirements.txt pins no mlflow-skinny")
}

fn has_client(python: &Path, version: &str) -> bool {
    let check = format!("import mlflow, sys; sys.exit(mlflow.__version__ != {version:?})");
    Command::new(python)
        .args(["-c", &check])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A Python with the pinned MLflow client, creating the shared virtualenv if needed.
fn python() -> anyhow::Result<PathBuf> {
    let version = pinned_version()?;
    if let Ok(python) = std::env::var("CAIRN_MLFLOW_PYTHON") {
        let python = PathBuf::from(python);
        if !has_client(&python, &version) {
            bail!("$CAIRN_MLFLOW_PYTHON ({python:?}) has no mlflow {version}");
        }
        return Ok(python);
    }
    let home = std::env::var("HOME").context("$HOME is not set")?;
    let venv = Path::new(&home).join(".cache/cairn-venv");
    let python = venv.join("bin/python");
    if !has_client(&python, &version) {
        run(Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv))?;
        run(Command::new(&python).args(["-m", "pip", "install", "-q", "-r", REQUIREMENTS]))?;
    }
    Ok(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflows_client_passes_its_registry_conformance_test_against_cairn() -> anyhow::Result<()> {
    let python = python()?;
    let dir = tempfile::tempdir()?;
    let mlflow = format!("127.0.0.1:{}", free_port());
    let spec = ServerSpec {
        mlflow_listen: Some(mlflow.clone()),
        ..ServerSpec::dev(
            bin("cairn-server"),
            format!("127.0.0.1:{}", free_port()),
            dir.path().join("dev"),
        )
    };
    let _server = Server::start_new(spec).await?;
    let uri = format!("http://{mlflow}");
    let out = tokio::process::Command::new(&python)
        .arg(SCRIPT)
        .env("CAIRN", "1")
        .env("MLFLOW_REGISTRY_URI", &uri)
        .env("MLFLOW_TRACKING_URI", &uri)
        // A refused request must surface at once, not after the client's retries.
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success() && summary.ends_with(" passed, 0 failed"),
        "MLflow's client against Cairn: {summary}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: u32 = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("no count of passed checks")?;
    assert!(passed >= 290, "only {passed} checks ran: {summary}");
    Ok(())
}
