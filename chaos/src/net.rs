//! Simulated hosts: network namespaces joined by veth pairs to a bridge that lives in a
//! namespace of its own. The harness reaches every host from the root namespace through
//! one more veth pair, so faults between hosts never cut the harness off (unless a
//! nemesis isolates a host from it too).
//!
//! Addresses are `10.213.<net>.<host>/24`, only ever inside namespaces this harness
//! created. Everything is removed by [`Net::teardown`], which `Drop` also calls.

use std::process::Command;

use anyhow::{bail, Context};

/// The port a server listens on, on every host (each host has its own address).
pub const SERVER_PORT: u16 = 7420;

/// One simulated host.
#[derive(Debug, Clone)]
pub struct Host {
    pub index: usize,
    pub ns: String,
    pub ip: String,
}

/// The namespaces and links of one campaign.
#[derive(Debug)]
pub struct Net {
    tag: String,
    pub hosts: Vec<Host>,
    /// The harness's own address on the bridge.
    pub harness_ip: String,
    torn_down: bool,
}

/// Run a command; fail with its stderr.
pub fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Run a command inside namespace `ns`.
pub fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    sh(&full)
}

/// The root namespace's route to 10.213.`net`.0/24, if there is one.
fn route_of(net: u8) -> anyhow::Result<Option<String>> {
    let out = Command::new("ip")
        .args(["-4", "route", "show", &format!("10.213.{net}.0/24")])
        .output()
        .context("running ip route")?;
    if !out.status.success() {
        bail!(
            "ip route failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let route = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok((!route.is_empty()).then_some(route))
}

/// The first 10.213.x.0/24 from 7 up that nothing routes.
fn free_net() -> anyhow::Result<u8> {
    for net in 7..=250 {
        if route_of(net)?.is_none() {
            return Ok(net);
        }
    }
    bail!("every 10.213.x.0/24 from 7 to 250 is routed already: remove the links of old campaigns (`ip link show | grep ch`)")
}

impl Net {
    /// A name unique to this campaign's network (for host-side resources).
    pub fn name(&self) -> String {
        format!("cairn-chaos-{}", self.tag)
    }

    /// Create `n` hosts on 10.213.`net`.0/24, or on the first such /24 from 7 up that
    /// nothing routes yet. A subnet already routed (by a campaign still running, or by
    /// the links a killed one left) would send the harness's connections to the other
    /// campaign's hosts, so it is refused.
    pub fn create(n: usize, net: Option<u8>) -> anyhow::Result<Self> {
        let net = match net {
            Some(net) => {
                if let Some(route) = route_of(net)? {
                    bail!(
                        "10.213.{net}.0/24 is already in use ({route}): another campaign \
                         runs, or a killed one left its links (remove them with \
                         `ip link del <dev>`); pick another --net"
                    );
                }
                net
            }
            None => free_net()?,
        };
        let tag = format!("{}", std::process::id() % 100_000);
        let mut me = Self {
            tag: tag.clone(),
            hosts: Vec::new(),
            harness_ip: format!("10.213.{net}.254"),
            torn_down: false,
        };
        let sw = me.switch_ns();
        sh(&["ip", "netns", "add", &sw])?;
        in_ns(&sw, &["ip", "link", "add", "br0", "type", "bridge"])?;
        in_ns(&sw, &["ip", "link", "set", "br0", "up"])?;
        in_ns(&sw, &["ip", "link", "set", "lo", "up"])?;
        // The harness's link (root namespace side: ch<tag>).
        let root_if = format!("ch{tag}");
        sh(&[
            "ip", "link", "add", &root_if, "type", "veth", "peer", "name", "up0", "netns", &sw,
        ])?;
        in_ns(&sw, &["ip", "link", "set", "up0", "master", "br0", "up"])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", me.harness_ip),
            "dev",
            &root_if,
        ])?;
        sh(&["ip", "link", "set", &root_if, "up"])?;
        for i in 0..n {
            let ns = format!("cairn-h{}-{tag}", i + 1);
            let ip = format!("10.213.{net}.{}", i + 1);
            sh(&["ip", "netns", "add", &ns])?;
            let port = format!("p{}", i + 1);
            sh(&[
                "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &sw,
            ])?;
            in_ns(&sw, &["ip", "link", "set", &port, "master", "br0", "up"])?;
            in_ns(
                &ns,
                &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            )?;
            in_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
            in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
            me.hosts.push(Host { index: i, ns, ip });
        }
        Ok(me)
    }

    fn switch_ns(&self) -> String {
        format!("cairn-sw-{}", self.tag)
    }

    /// Drop all traffic between hosts `a` and `b` (both directions).
    pub fn cut(&self, a: usize, b: usize) -> anyhow::Result<()> {
        for (x, y) in [(a, b), (b, a)] {
            let (hx, hy) = (&self.hosts[x], &self.hosts[y]);
            in_ns(
                &hx.ns,
                &["iptables", "-A", "INPUT", "-s", &hy.ip, "-j", "DROP"],
            )?;
            in_ns(
                &hx.ns,
                &["iptables", "-A", "OUTPUT", "-d", &hy.ip, "-j", "DROP"],
            )?;
        }
        Ok(())
    }

    /// Drop a random fraction of the packets a host receives from the other hosts.
    pub fn lossy(&self, host: usize, probability: f64) -> anyhow::Result<()> {
        let h = &self.hosts[host];
        let p = format!("{probability:.3}");
        for peer in self.hosts.iter().filter(|p| p.index != host) {
            in_ns(
                &h.ns,
                &[
                    "iptables",
                    "-A",
                    "INPUT",
                    "-s",
                    &peer.ip,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Limit what a host sends to `kbit` kbit/s (token bucket filter).
    pub fn throttle(&self, host: usize, kbit: u32) -> anyhow::Result<()> {
        let rate = format!("{kbit}kbit");
        in_ns(
            &self.hosts[host].ns,
            &[
                "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", &rate, "burst",
                "32kbit", "latency", "400ms",
            ],
        )
    }

    /// Remove every fault rule and bandwidth limit from every host.
    pub fn heal(&self) -> anyhow::Result<()> {
        for h in &self.hosts {
            in_ns(&h.ns, &["iptables", "-F"])?;
            // No limit in place is fine.
            let _ = in_ns(&h.ns, &["tc", "qdisc", "del", "dev", "eth0", "root"]);
        }
        Ok(())
    }

    /// Remove everything this campaign created. Safe to call twice.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for h in &self.hosts {
            let _ = sh(&["ip", "netns", "del", &h.ns]);
        }
        let _ = sh(&["ip", "link", "del", &format!("ch{}", self.tag)]);
        let _ = sh(&["ip", "netns", "del", &self.switch_ns()]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}
