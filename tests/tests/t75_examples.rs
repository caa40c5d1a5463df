//! Every example job in `deploy/examples/` runs to Succeeded on `cairn-server dev` as it
//! is: the embedded agent with simulated GPUs runs its replicas.

use std::time::Duration;

use cairn_proto as pb;
use cairn_tests::{bin, cli, eventually, free_port, Server, ServerSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_job_succeeds_on_the_embedded_default() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let addr = format!("127.0.0.1:{}", free_port());
    let spec = ServerSpec::dev(bin("cairn-server"), addr.clone(), dir.path().to_path_buf());
    let _server = Server::start_new(spec).await?;
    let endpoints = [addr.clone()];
    let mut names = Vec::new();
    cairn_tests::wait_nodes(&endpoints, 1, Duration::from_secs(20)).await?;
    let files = cairn_tests::example_jobs()?;
    assert!(files.len() >= 7, "an example per framework: {files:?}");
    for f in &files {
        let out = cli(&endpoints)
            .args(["job", "submit", "-f"])
            .arg(f)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(f)?;
        let name = text
            .lines()
            .skip_while(|l| !l.starts_with("metadata:"))
            .find_map(|l| l.trim().strip_prefix("name: "))
            .expect("a metadata.name")
            .to_string();
        names.push(name);
    }
    for name in &names {
        let job = eventually(Duration::from_secs(60), name, || async {
            let j = cairn_tests::client(&addr)
                .list_jobs(pb::ListJobsRequest {
                    name: name.clone(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .jobs
                .pop()?;
            (j.phase == "Succeeded" || j.phase == "Failed").then_some(j)
        })
        .await?;
        assert_eq!(job.phase, "Succeeded", "{name}: {}", job.reason);
    }
    Ok(())
}
