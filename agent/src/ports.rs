//! Host-network port leases on the node: the agent holds each leased port (a bound
//! listener) until the lessee takes it over, and names any other process that listens on
//! a leased port.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::TcpListener;

/// A process listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub pid: u32,
    pub process: String,
}

/// Listening TCP sockets by port → socket inode, from `/proc/net/tcp` and `tcp6`.
fn listening_inodes() -> HashMap<u16, Vec<u64>> {
    let mut out: HashMap<u16, Vec<u64>> = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let port = f[1]
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if let (Some(port), Ok(inode)) = (port, f[9].parse::<u64>()) {
                out.entry(port).or_default().push(inode);
            }
        }
    }
    out
}

/// The processes owning these socket inodes.
fn owners(inodes: &BTreeSet<u64>) -> HashMap<u64, (u32, String)> {
    let mut out = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(inode) = inode.filter(|i| inodes.contains(i)) {
                let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                out.insert(inode, (pid, comm.trim().to_string()));
            }
        }
    }
    out
}

/// Who listens on `port` besides this process.
pub fn foreign_listeners(port: u16) -> Vec<Listener> {
    let inodes: BTreeSet<u64> = listening_inodes()
        .remove(&port)
        .unwrap_or_default()
        .into_iter()
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let mut out: Vec<Listener> = owners(&inodes)
        .into_values()
        .filter(|(pid, _)| *pid != me)
        .map(|(pid, process)| Listener { port, pid, process })
        .collect();
    out.sort_by_key(|l| l.pid);
    out.dedup();
    out
}

/// The ports the agent holds for their lessees.
#[derive(Default)]
pub struct PortGuard {
    held: BTreeMap<u16, TcpListener>,
    /// Violations already reported: (port, pid).
    reported: BTreeSet<(u16, u32)>,
}

/// What one enforcement pass found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Enforcement {
    /// Leased ports newly held by the agent.
    pub held: Vec<u16>,
    /// Leased ports a foreign process listens on (not reported before).
    pub violations: Vec<Listener>,
    /// Leased ports taken by a process the agent could not identify.
    pub taken_by_unknown: Vec<u16>,
}

impl PortGuard {
    /// Hold every leased port that is free, release ports no longer leased, and find who
    /// holds the ones that are taken.
    pub fn enforce(&mut self, leased: &BTreeSet<u16>) -> Enforcement {
        self.held.retain(|p, _| leased.contains(p));
        self.reported.retain(|(p, _)| leased.contains(p));
        let mut e = Enforcement::default();
        for port in leased {
            if self.held.contains_key(port) {
                continue;
            }
            match TcpListener::bind(("0.0.0.0", *port)) {
                Ok(l) => {
                    self.held.insert(*port, l);
                    e.held.push(*port);
                }
                Err(_) => {
                    let found = foreign_listeners(*port);
                    if found.is_empty() {
                        e.taken_by_unknown.push(*port);
                    }
                    for l in found {
                        if self.reported.insert((l.port, l.pid)) {
                            e.violations.push(l);
                        }
                    }
                }
            }
        }
        e
    }

    pub fn held(&self) -> Vec<u16> {
        self.held.keys().copied().collect()
    }
}

/// `LOW-HIGH`, a range of ports within 1-65535 (a command-line flag's value).
pub fn parse_range(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not LOW-HIGH"))?;
    let a: u32 = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not a port"))?;
    let b: u32 = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not a port"))?;
    if a == 0 || b > 65535 || a > b {
        return Err(format!("{s:?} is not a port range within 1-65535"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests pick free ports by binding port 0 and letting go: run them one at a
    /// time so they cannot be handed the same port.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn free_leased_ports_are_held_and_released_with_their_lease() {
        let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let port = TcpListener::bind("0.0.0.0:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut g = PortGuard::default();
        let e = g.enforce(&BTreeSet::from([port]));
        assert_eq!(e.held, [port]);
        assert!(
            TcpListener::bind(("0.0.0.0", port)).is_err(),
            "held by the guard"
        );
        g.enforce(&BTreeSet::new());
        assert!(g.held().is_empty());
        let again = TcpListener::bind(("0.0.0.0", port));
        assert!(again.is_ok(), "released: {again:?}");
    }

    #[test]
    fn a_foreign_listener_is_named_once() {
        let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        // A child process listens on a port; the guard must name it.
        let port = TcpListener::bind("0.0.0.0:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import socket,time; s=socket.socket(); s.bind(('0.0.0.0',{port})); s.listen(); print('up', flush=True); time.sleep(30)"
                ),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("child starts");
        let mut g = PortGuard::default();
        let e = g.enforce(&BTreeSet::from([port]));
        // A second pass does not report it again.
        let again = g.enforce(&BTreeSet::from([port]));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(e.violations.len(), 1, "{e:?}");
        assert_eq!(e.violations[0].pid, child.id());
        assert!(e.violations[0].process.starts_with("python"), "{e:?}");
        assert!(again.violations.is_empty(), "{again:?}");
    }
}
