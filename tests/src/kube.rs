//! A real kube-apiserver (with etcd) on loopback, from `../shared/tools/kube-apiserver.sh`:
//! built once per machine (cached under `~/.cache/cairn-kube`), started in a directory
//! of its own, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// The script that builds and runs the test api-server.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/kube-apiserver.sh")
}

fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .with_context(|| format!("running {} {args:?}", script().display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} {args:?} failed: {}",
        script().display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running kube-apiserver and its etcd.
pub struct KubeApiServer {
    dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl KubeApiServer {
    /// Builds it if this machine has not yet (minutes, once), then starts it in `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        run(&["build"])?;
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir)?;
        run(&["start", &dir.display().to_string()])?;
        Ok(Self {
            kubeconfig: dir.join("kubeconfig"),
            dir,
        })
    }

    /// Stops it, throws its etcd data away and starts it again: an api-server that lost
    /// everything (a new CA and port too; the kubeconfig is rewritten in place).
    pub fn restart_empty(&mut self) -> anyhow::Result<()> {
        run(&["stop", &self.dir.display().to_string()])?;
        std::fs::remove_dir_all(self.dir.join("etcd-data"))?;
        run(&["start", &self.dir.display().to_string()])?;
        Ok(())
    }

    /// A client for it.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        Ok(kube::Client::try_from(cfg)?)
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        let _ = run(&["stop", &self.dir.display().to_string()]);
    }
}
