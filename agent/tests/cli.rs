//! The `cairn-agent` binary refuses bad set-ups with a clear message, never a panic.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn-agent"))
}

/// Run until exit or `limit`; (exit code, stderr). `None` code: still running (killed).
fn run(mut cmd: Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cairn-agent starts");
    let start = Instant::now();
    let code = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (code, err)
}

#[test]
fn without_nvml_the_agent_says_so_and_points_at_the_simulator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = agent();
    cmd.args([
        "--gpu-provider",
        "nvml",
        "--endpoints",
        "127.0.0.1:1",
        "--state-dir",
    ])
    .arg(dir.path());
    let (code, err) = run(cmd, Duration::from_secs(5));
    if err.contains("NVML is not available") {
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("--gpu-provider=sim"), "{err}");
    } else {
        // A machine with NVIDIA GPUs: the agent runs (and keeps trying to reach the
        // control plane) instead.
        assert_eq!(code, None, "{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_unknown_topology_is_refused_with_the_presets_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = agent();
    cmd.args([
        "--gpu-provider",
        "sim",
        "--sim-topology",
        "no-such-preset",
        "--state-dir",
    ])
    .arg(dir.path());
    let (code, err) = run(cmd, Duration::from_secs(5));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nvswitch-8, cube-mesh-8, pcie-4"), "{err}");
}

#[test]
fn inspect_prints_what_the_provider_reports() {
    let out = agent()
        .args([
            "--gpu-provider",
            "sim",
            "--sim-topology",
            "cube-mesh-8",
            "--inspect",
        ])
        .output()
        .expect("cairn-agent runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["provider"], "sim:cube-mesh-8");
    assert_eq!(v["gpus"].as_array().map(Vec::len), Some(8));
    assert_eq!(v["links"].as_array().map(Vec::len), Some(28));
    assert_eq!(v["observations"][0]["health"]["healthy"], true);
}

#[test]
fn json_logs_are_one_object_per_line_on_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = agent();
    cmd.args([
        "--gpu-provider",
        "sim",
        "--endpoints",
        "127.0.0.1:1",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--state-dir",
    ])
    .arg(dir.path())
    .env_remove("CAIRN_LOG")
    .env_remove("RUST_LOG");
    // It keeps trying to reach the control plane: stopped after a while.
    let (code, err) = run(cmd, Duration::from_secs(2));
    assert_eq!(code, None, "{err}");
    let first = err.lines().next().unwrap_or_default();
    let line: serde_json::Value = serde_json::from_str(first).expect("a JSON line");
    assert_eq!(line["fields"]["message"], "cairn-agent starting", "{err}");
    assert_eq!(
        line["span"]["node"].as_str().map(str::is_empty),
        Some(false),
        "{err}"
    );
}

#[test]
fn plaintext_beyond_loopback_needs_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = agent();
    cmd.args([
        "--gpu-provider",
        "sim",
        "--listen",
        "0.0.0.0:0",
        "--state-dir",
    ])
    .arg(dir.path());
    let (code, err) = run(cmd, Duration::from_secs(5));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("not a loopback address") && err.contains("--insecure"),
        "{err}"
    );
}
