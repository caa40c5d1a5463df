//! The environment a replica starts with: Cairn's own variables, its GPUs, the wiring
//! its framework expects (PyTorch and XGBoost ranks and master address, TensorFlow's
//! `TF_CONFIG`, an MPI hostfile, the Mars scheduler's address), then the role's `env`
//! from the spec, which wins. Computed, not written: the runner writes the hostfile.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_domain::job::{Framework, Placement};

use super::job::PlacedJob;

/// What a replica gets from its job's wiring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wiring {
    pub env: BTreeMap<String, String>,
    /// An MPI hostfile to write before the start.
    pub hostfile: Option<Hostfile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostfile {
    pub path: PathBuf,
    pub text: String,
}

/// Where a replica is reached: its node's address (the node's name when unknown) and its
/// first leased port (or the framework's default port).
fn endpoint(
    p: &Placement,
    addresses: &BTreeMap<String, String>,
    default_port: u32,
) -> (String, u32) {
    (
        address(p, addresses),
        p.ports.first().copied().unwrap_or(default_port),
    )
}

fn address(p: &Placement, addresses: &BTreeMap<String, String>) -> String {
    addresses
        .get(&p.node)
        .cloned()
        .unwrap_or_else(|| p.node.clone())
}

fn joined(values: &[u32]) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The wiring of replica `me` of `job` at `attempt`: `gpu_indexes` are its GPUs' indexes
/// on this node, `addresses` the nodes' addresses, `hostfile` where an MPI job's hostfile
/// goes.
pub fn wiring(
    job: &PlacedJob,
    me: &Placement,
    gpu_indexes: &[u32],
    addresses: &BTreeMap<String, String>,
    attempt: u32,
    hostfile: &Path,
) -> Wiring {
    let mut placements: Vec<&Placement> = job.placements.iter().collect();
    placements.sort_by(|a, b| a.replica.cmp(&b.replica));
    let world = placements.len();
    let role = me.replica.role.as_str();
    let index = me.replica.index;
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("CAIRN_JOB", job.name.clone());
    set("CAIRN_ROLE", role.to_string());
    set("CAIRN_INDEX", index.to_string());
    set("CAIRN_ATTEMPT", attempt.to_string());
    set("CAIRN_NODE", me.node.clone());
    set("CAIRN_WORLD_SIZE", world.to_string());
    set("CAIRN_PORTS", joined(&me.ports));
    set("CUDA_VISIBLE_DEVICES", joined(gpu_indexes));
    let mut written = None;
    let framework = job.doc.spec.framework;
    match framework {
        Framework::Pytorch | Framework::Xgboost => {
            // Rank 0 is the master (or worker 0 without one); workers follow.
            let has_master = placements.iter().any(|p| p.replica.role == "master");
            let lead = placements
                .iter()
                .find(|p| p.replica.role == "master")
                .or_else(|| {
                    placements
                        .iter()
                        .find(|p| p.replica.role == "worker" && p.replica.index == 0)
                });
            let default_port = if framework == Framework::Pytorch {
                23456
            } else {
                9999
            };
            if let Some(lead) = lead {
                let (host, port) = endpoint(lead, addresses, default_port);
                set("MASTER_ADDR", host);
                set("MASTER_PORT", port.to_string());
            }
            let rank = match role {
                "master" => 0,
                _ if has_master => index + 1,
                _ => index,
            };
            set("WORLD_SIZE", world.to_string());
            set("RANK", rank.to_string());
            set("LOCAL_RANK", "0".into());
        }
        Framework::Tensorflow | Framework::Xdl => {
            let mut cluster: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for p in &placements {
                let (host, port) = endpoint(p, addresses, 2222 + p.replica.index);
                cluster
                    .entry(p.replica.role.as_str())
                    .or_default()
                    .push(format!("{host}:{port}"));
            }
            let tf = serde_json::json!({
                "cluster": cluster,
                "task": {"type": role, "index": index},
            });
            set("TF_CONFIG", tf.to_string());
        }
        Framework::Mpi => {
            let lines: Vec<String> = placements
                .iter()
                .filter(|p| p.replica.role == "worker")
                .map(|p| format!("{} slots={}", address(p, addresses), p.gpus.len().max(1)))
                .collect();
            set(
                "OMPI_MCA_orte_default_hostfile",
                hostfile.display().to_string(),
            );
            set("CAIRN_HOSTFILE", hostfile.display().to_string());
            written = Some(Hostfile {
                path: hostfile.to_path_buf(),
                text: lines.join("\n") + "\n",
            });
        }
        Framework::Mars => {
            if let Some(s) = placements.iter().find(|p| p.replica.role == "scheduler") {
                let (host, port) = endpoint(s, addresses, 11111);
                set("MARS_SCHEDULER_ADDRESS", format!("{host}:{port}"));
            }
        }
        Framework::Generic => {}
    }
    if let Some(r) = job.role(role) {
        for (k, v) in &r.env {
            set(k, v.clone());
        }
    }
    Wiring {
        env,
        hostfile: written,
    }
}

#[cfg(test)]
mod tests {
    use cairn_domain::job::{JobPhase, ReplicaId};

    use super::*;

    fn job(framework: &str, roles: &[(&str, u32)]) -> PlacedJob {
        let mut placements = Vec::new();
        let mut spec_roles = serde_json::Map::new();
        for (role, n) in roles {
            spec_roles.insert(
                role.to_string(),
                serde_json::json!({"replicas": n, "command": ["true"], "env": {"EXTRA": "1"}}),
            );
            for i in 0..*n {
                placements.push(Placement {
                    replica: ReplicaId {
                        role: role.to_string(),
                        index: i,
                    },
                    node: format!("n{i}"),
                    gpus: vec![format!("GPU-{i}")],
                    ports: vec![20000 + i],
                    score: 0,
                });
            }
        }
        let doc = serde_json::json!({
            "apiVersion": "cairn.dev/v1",
            "kind": "TrainingJob",
            "metadata": {"name": "j"},
            "spec": {"framework": framework, "roles": spec_roles},
        });
        PlacedJob {
            name: "j".into(),
            phase: JobPhase::Running,
            doc: serde_json::from_value(doc).unwrap(),
            placements,
            replicas: Default::default(),
        }
    }

    fn addresses() -> BTreeMap<String, String> {
        (0..4)
            .map(|i| (format!("n{i}"), format!("10.0.0.{i}")))
            .collect()
    }

    fn placement<'a>(j: &'a PlacedJob, role: &str, index: u32) -> &'a Placement {
        j.placements
            .iter()
            .find(|p| p.replica.role == role && p.replica.index == index)
            .unwrap()
    }

    fn hostfile() -> &'static Path {
        Path::new("/state/replicas/j.hostfile")
    }

    #[test]
    fn pytorch_ranks_put_the_master_first() {
        let j = job("pytorch", &[("master", 1), ("worker", 3)]);
        let w = wiring(
            &j,
            placement(&j, "worker", 2),
            &[5],
            &addresses(),
            0,
            hostfile(),
        );
        let env = &w.env;
        assert_eq!(env["MASTER_ADDR"], "10.0.0.0");
        assert_eq!(env["MASTER_PORT"], "20000");
        assert_eq!(env["WORLD_SIZE"], "4");
        assert_eq!(env["RANK"], "3");
        assert_eq!(env["CUDA_VISIBLE_DEVICES"], "5");
        assert_eq!(env["CAIRN_PORTS"], "20002");
        assert_eq!(env["EXTRA"], "1", "the spec's env is kept");
        assert_eq!(w.hostfile, None);
    }

    #[test]
    fn without_a_master_worker_0_leads_at_the_default_port() {
        let mut j = job("xgboost", &[("worker", 2)]);
        j.placements.iter_mut().for_each(|p| p.ports.clear());
        let env = wiring(
            &j,
            placement(&j, "worker", 1),
            &[],
            &addresses(),
            2,
            hostfile(),
        )
        .env;
        assert_eq!(env["MASTER_ADDR"], "10.0.0.0");
        assert_eq!(env["MASTER_PORT"], "9999");
        assert_eq!(env["RANK"], "1");
        assert_eq!(env["CAIRN_ATTEMPT"], "2");
    }

    #[test]
    fn tensorflow_gets_a_tf_config() {
        let j = job("tensorflow", &[("ps", 1), ("worker", 2)]);
        let env = wiring(
            &j,
            placement(&j, "worker", 1),
            &[],
            &addresses(),
            0,
            hostfile(),
        )
        .env;
        let tf: serde_json::Value = serde_json::from_str(&env["TF_CONFIG"]).unwrap();
        assert_eq!(
            tf["task"],
            serde_json::json!({"type": "worker", "index": 1})
        );
        assert_eq!(tf["cluster"]["ps"], serde_json::json!(["10.0.0.0:20000"]));
        assert_eq!(tf["cluster"]["worker"][1], "10.0.0.1:20001");
    }

    #[test]
    fn mpi_launchers_get_a_hostfile_of_the_workers() {
        let j = job("mpi", &[("launcher", 1), ("worker", 2)]);
        let w = wiring(
            &j,
            placement(&j, "launcher", 0),
            &[],
            &addresses(),
            0,
            hostfile(),
        );
        assert_eq!(w.env["CAIRN_HOSTFILE"], "/state/replicas/j.hostfile");
        assert_eq!(
            w.env["OMPI_MCA_orte_default_hostfile"],
            "/state/replicas/j.hostfile"
        );
        assert_eq!(
            w.hostfile,
            Some(Hostfile {
                path: hostfile().to_path_buf(),
                text: "10.0.0.0 slots=1\n10.0.0.1 slots=1\n".into(),
            })
        );
    }

    #[test]
    fn mars_replicas_find_the_scheduler_and_unknown_nodes_go_by_name() {
        let j = job("mars", &[("scheduler", 1), ("worker", 1)]);
        let env = wiring(
            &j,
            placement(&j, "worker", 0),
            &[],
            &BTreeMap::new(),
            0,
            hostfile(),
        )
        .env;
        assert_eq!(env["MARS_SCHEDULER_ADDRESS"], "n0:20000");
    }

    #[test]
    fn the_roles_env_wins() {
        let mut j = job("pytorch", &[("master", 1)]);
        j.doc
            .spec
            .roles
            .get_mut("master")
            .unwrap()
            .env
            .insert("RANK".into(), "7".into());
        let env = wiring(
            &j,
            placement(&j, "master", 0),
            &[],
            &addresses(),
            0,
            hostfile(),
        )
        .env;
        assert_eq!(env["RANK"], "7");
        assert_eq!(env["CAIRN_JOB"], "j");
        assert_eq!(env["CAIRN_ROLE"], "master");
        assert_eq!(env["CAIRN_NODE"], "n0");
    }
}
