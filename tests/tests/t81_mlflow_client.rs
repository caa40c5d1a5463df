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

/// Run `code` with the MLflow client against `uri`, with `env`; (success, stdout+stderr).
async fn mlflow_py(python: &Path, code: &str, uri: &str, env: &[(&str, String)]) -> (bool, String) {
    let out = tokio::process::Command::new(python)
        .args(["-c", code])
        .env("MLFLOW_REGISTRY_URI", uri)
        .env("MLFLOW_TRACKING_URI", uri)
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .expect("python");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflows_client_authenticates_over_https_with_a_token_or_a_certificate(
) -> anyhow::Result<()> {
    use cairn_proto::tls::TlsFiles;
    let python = python()?;
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    let c = certs.to_str().context("utf-8")?;
    let cairn = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(bin("cairn")).args(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "cairn {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    cairn(&["certs", "init", "--dir", c, "--members", "1"])?;
    cairn(&[
        "certs", "issue", "user", "vera", "--dir", c, "--role", "viewer",
    ])?;
    let listen = format!("127.0.0.1:{}", free_port());
    let mlflow = format!("127.0.0.1:{}", free_port());
    let spec = ServerSpec {
        initial_members: [(1, listen.clone())].into(),
        mlflow_listen: Some(mlflow.clone()),
        tls: Some(TlsFiles::in_dir(&certs, "member-1")),
        ..ServerSpec::new(
            bin("cairn-server"),
            1,
            listen.clone(),
            dir.path().join("m1"),
        )
    };
    // A budget the client's own calls stay well within, and a tight loop does not.
    let spec = ServerSpec {
        extra_toml: "[limits]\nrequests_per_second = 20\nburst = 40\n".into(),
        ..spec
    };
    let _server = Server::start_new(spec).await?;
    let admin = TlsFiles::in_dir(&certs, "user-admin");
    let as_admin = |args: &[&str]| -> anyhow::Result<String> {
        let mut all = vec!["--endpoints", listen.as_str(), "--timeout", "20s"];
        let (ca, cert, key) = (
            admin.ca.to_str().context("utf-8")?,
            admin.cert.to_str().context("utf-8")?,
            admin.key.to_str().context("utf-8")?,
        );
        all.extend(["--ca", ca, "--cert", cert, "--key", key]);
        all.extend(args);
        cairn(&all)
    };
    let secret = as_admin(&[
        "token", "create", "ml", "--user", "carol", "--role", "operator",
    ])?;
    let uri = format!("https://{mlflow}");
    let ca = admin.ca.display().to_string();
    let create = "from mlflow import MlflowClient\nMlflowClient().create_registered_model('secure-model')\nprint('created')";
    let search =
        "from mlflow import MlflowClient\nprint(len(MlflowClient().search_registered_models()))";

    // No credential: 401.
    let (ok, out) = mlflow_py(
        &python,
        search,
        &uri,
        &[("MLFLOW_TRACKING_SERVER_CERT_PATH", ca.clone())],
    )
    .await;
    assert!(!ok && out.contains("UNAUTHENTICATED"), "{out}");
    // A token: its user writes.
    let token_env = [
        ("MLFLOW_TRACKING_SERVER_CERT_PATH", ca.clone()),
        ("MLFLOW_TRACKING_TOKEN", secret.clone()),
    ];
    let (ok, out) = mlflow_py(&python, create, &uri, &token_env).await;
    assert!(ok && out.contains("created"), "{out}");
    // A viewer's client certificate (one PEM with the key, as requests takes it): reads,
    // but may not write.
    let vera = TlsFiles::in_dir(&certs, "user-vera");
    let both = dir.path().join("vera.pem");
    std::fs::write(
        &both,
        [std::fs::read(&vera.cert)?, std::fs::read(&vera.key)?].concat(),
    )?;
    let vera_env = [
        ("MLFLOW_TRACKING_SERVER_CERT_PATH", ca.clone()),
        (
            "MLFLOW_TRACKING_CLIENT_CERT_PATH",
            both.display().to_string(),
        ),
    ];
    let (ok, out) = mlflow_py(&python, search, &uri, &vera_env).await;
    assert!(ok && out.trim().ends_with('1'), "{out}");
    let (ok, out) = mlflow_py(
        &python,
        create.replace("secure-model", "by-vera").as_str(),
        &uri,
        &vera_env,
    )
    .await;
    assert!(!ok && out.contains("PERMISSION_DENIED"), "{out}");
    // The log names who created the model.
    let events = as_admin(&[
        "events",
        "list",
        "--entity",
        "model/secure-model",
        "-o",
        "json",
    ])?;
    let events: serde_json::Value = serde_json::from_str(&events)?;
    assert_eq!(events[0]["actor"], "user/carol", "{events}");

    // Production of the model is protected: only dora (or an admin) may move it, so
    // carol, an operator, registers a version but may not promote it.
    as_admin(&[
        "model",
        "protect",
        "secure-model",
        "--stage",
        "Production",
        "--allow",
        "user/dora",
    ])?;
    let register = "from mlflow import MlflowClient\nprint(MlflowClient().create_model_version('secure-model', 's3://b/m').version)";
    let (ok, out) = mlflow_py(&python, register, &uri, &token_env).await;
    assert!(ok && out.trim().ends_with('1'), "{out}");
    let promote = "from mlflow import MlflowClient\nMlflowClient().transition_model_version_stage('secure-model', '1', 'Production')\nprint('promoted')";
    let (ok, out) = mlflow_py(&python, promote, &uri, &token_env).await;
    assert!(
        !ok && out.contains("PERMISSION_DENIED") && out.contains("protected"),
        "{out}"
    );
    let shown = as_admin(&["model", "get", "secure-model"])?;
    assert!(
        shown.contains("protected: stage Production, moved only by user/dora"),
        "{shown}"
    );
    as_admin(&["model", "stage", "secure-model", "1", "Production"])?;
    let model = as_admin(&["model", "get", "secure-model", "-o", "json"])?;
    let model: serde_json::Value = serde_json::from_str(&model)?;
    assert_eq!(model["versions"][0]["stage"], "Production", "{model}");

    // The facade counts each caller's requests against the same budget as the gRPC
    // port: a tight loop of carol's is answered 429 beyond it, then served again.
    let flood = format!(
        "import requests, time\ns = requests.Session()\nh = {{'Authorization': 'Bearer {secret}'}}\n\
         u = '{uri}/api/2.0/mlflow/registered-models/search'\n\
         codes = [s.get(u, headers=h, verify='{ca}').status_code for _ in range(300)]\n\
         print(codes.count(200), codes.count(429), len(codes))\n\
         time.sleep(1.5)\nprint(s.get(u, headers=h, verify='{ca}').status_code)"
    );
    let (ok, out) = mlflow_py(&python, &flood, &uri, &[]).await;
    let lines: Vec<&str> = out.trim().lines().collect();
    let counts: Vec<u32> = lines
        .first()
        .map(|l| l.split(' ').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    assert!(ok && counts.len() == 3, "{out}");
    let (served, limited) = (counts[0], counts[1]);
    assert_eq!(served + limited, 300, "only 200s and 429s: {out}");
    assert!(limited >= 100, "{served} served, {limited} limited: {out}");
    assert_eq!(lines.last().map(|l| l.trim()), Some("200"), "{out}");
    Ok(())
}
