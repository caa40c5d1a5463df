//! Regression: on a machine without `iptables`, a campaign ran for a minute, until its
//! first partition, then died with an exec error and a backtrace. Now it refuses to
//! start, naming each missing program and what to install, before it touches anything.

use std::process::Command;

#[test]
fn a_machine_without_the_programs_is_refused_at_once_with_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let campaign_dir = dir.path().join("chaos");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn-chaos"))
        .args([
            "--seed",
            "20261122",
            "--duration",
            "90s",
            "--disk-mb",
            "256",
        ])
        .arg("--dir")
        .arg(&campaign_dir)
        .env("PATH", "")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for program in ["iptables", "ip", "tc", "losetup", "mkfs.ext4", "mount"] {
        assert!(
            stderr.contains(&format!("`{program}` is not on PATH")),
            "{program} not named in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("apt-get install iptables iproute2 e2fsprogs mount"),
        "{stderr}"
    );
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    assert!(!campaign_dir.exists(), "it started a campaign");
}
