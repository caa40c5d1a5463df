//! The `cairn` binary's behaviour when nothing answers.

use std::process::Command;

#[test]
fn says_clearly_when_no_endpoint_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "--endpoints",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "1s",
            "cluster",
            "status",
        ])
        .output()
        .expect("cairn runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no Cairn server answered"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
