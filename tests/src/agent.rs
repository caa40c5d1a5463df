//! `cairn-agent` processes with simulated GPUs, and the nodes they register.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cairn_proto as pb;

use crate::client::client;
use crate::process::{bin, Process};
use crate::wait::eventually;

/// A `cairn-agent` process with simulated GPUs.
pub struct TestAgent {
    pub node: String,
    pub dir: PathBuf,
    args: Vec<String>,
    process: Option<Process>,
}

impl TestAgent {
    /// Start an agent for node `node` on a simulated `topology`, leasing ports from
    /// `ports` (inclusive), heartbeating every 200 ms.
    pub fn start(
        dir: &Path,
        node: &str,
        topology: &str,
        ports: (u16, u16),
        endpoints: &[String],
    ) -> anyhow::Result<Self> {
        Self::start_with(dir, node, topology, ports, endpoints, &[])
    }

    /// [`TestAgent::start`] with more arguments (TLS files, say).
    pub fn start_with(
        dir: &Path,
        node: &str,
        topology: &str,
        ports: (u16, u16),
        endpoints: &[String],
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let dir = dir.join(format!("agent-{node}"));
        std::fs::create_dir_all(&dir)?;
        let args = vec![
            "--node-name".to_string(),
            node.to_string(),
            "--endpoints".into(),
            endpoints.join(","),
            "--state-dir".into(),
            dir.display().to_string(),
            "--gpu-provider".into(),
            "sim".into(),
            "--sim-topology".into(),
            topology.into(),
            "--sim-faults".into(),
            dir.join("faults.json").display().to_string(),
            "--port-range".into(),
            format!("{}-{}", ports.0, ports.1),
            "--heartbeat".into(),
            "200ms".into(),
            "--address".into(),
            "127.0.0.1".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ]
        .into_iter()
        .chain(extra.iter().cloned())
        .collect();
        let mut a = Self {
            node: node.to_string(),
            dir,
            args,
            process: None,
        };
        a.restart()?;
        Ok(a)
    }

    /// SIGKILL (if it runs), then start it again.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let mut command = Command::new(bin("cairn-agent"));
        command.args(&self.args).env("RUST_LOG", "info");
        self.process = Some(Process::spawn(command, &self.dir.join("agent.log"))?);
        Ok(())
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Inject simulated GPU faults (the agent's fault file; `{}` clears them).
    pub fn set_faults(&self, json: &str) -> anyhow::Result<()> {
        let tmp = self.dir.join("faults.json.tmp");
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, self.dir.join("faults.json"))?;
        Ok(())
    }
}

/// The nodes the first answering member knows.
pub async fn nodes(endpoints: &[String]) -> Vec<pb::NodeView> {
    for addr in endpoints {
        if let Ok(r) = client(addr)
            .list_nodes(pb::ListNodesRequest::default())
            .await
        {
            return r.into_inner().nodes;
        }
    }
    Vec::new()
}

/// Wait until `count` nodes are registered; returns them.
pub async fn wait_nodes(
    endpoints: &[String],
    count: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<pb::NodeView>> {
    eventually(timeout, &format!("{count} nodes registered"), || async {
        let n = nodes(endpoints).await;
        (n.len() == count).then_some(n)
    })
    .await
}
