//! What a campaign needs from the machine, checked before it starts: root, every program
//! it runs, and the server binary. A missing one is reported at once, with what to
//! install, instead of failing a fault a minute into the campaign.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A program a campaign runs.
struct Tool {
    name: &'static str,
    /// The Debian/Ubuntu package it comes in.
    package: &'static str,
    /// What the campaign runs it for.
    purpose: &'static str,
    /// Only needed with a disk size (`--disk-mb`).
    disks_only: bool,
}

const TOOLS: &[Tool] = &[
    Tool {
        name: "iptables",
        package: "iptables",
        purpose: "partitions, packet loss, delay redirects",
        disks_only: false,
    },
    Tool {
        name: "ip",
        package: "iproute2",
        purpose: "network namespaces and links",
        disks_only: false,
    },
    Tool {
        name: "tc",
        package: "iproute2",
        purpose: "bandwidth limits",
        disks_only: false,
    },
    Tool {
        name: "mkfs.ext4",
        package: "e2fsprogs",
        purpose: "the members' disks",
        disks_only: true,
    },
    Tool {
        name: "losetup",
        package: "mount",
        purpose: "the members' disks",
        disks_only: true,
    },
    Tool {
        name: "mount",
        package: "mount",
        purpose: "the members' disks",
        disks_only: true,
    },
    Tool {
        name: "umount",
        package: "mount",
        purpose: "the members' disks",
        disks_only: true,
    },
    Tool {
        name: "fallocate",
        package: "util-linux",
        purpose: "filling a disk",
        disks_only: true,
    },
    Tool {
        name: "df",
        package: "coreutils",
        purpose: "filling a disk",
        disks_only: true,
    },
];

/// The machine as the check sees it.
#[derive(Debug, Clone, Copy)]
pub struct Machine<'a> {
    /// The directories programs are looked up in (as in `PATH`; empty entries are
    /// skipped).
    pub path: &'a OsStr,
    /// Whether the campaign runs as root.
    pub root: bool,
    /// The `cairn-server` binary the campaign starts.
    pub server_bin: &'a Path,
}

/// Everything a campaign lacks on a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    /// One line per missing thing.
    pub missing: Vec<String>,
    /// The packages that provide the missing programs, each once.
    pub packages: Vec<&'static str>,
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cairn-chaos cannot run a campaign on this machine:")?;
        for m in &self.missing {
            writeln!(f, "  - {m}")?;
        }
        if !self.packages.is_empty() {
            write!(
                f,
                "install the missing programs with: apt-get install {}",
                self.packages.join(" ")
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Unmet {}

/// Check that `machine` has everything a campaign needs (`disks`: the loop-device disks
/// of `--disk-mb` too).
pub fn check(machine: &Machine<'_>, disks: bool) -> Result<(), Unmet> {
    let mut unmet = Unmet {
        missing: Vec::new(),
        packages: Vec::new(),
    };
    if !machine.root {
        unmet.missing.push(
            "not running as root: it creates network namespaces, iptables rules and loop \
             devices (run it with sudo)"
                .into(),
        );
    }
    for tool in TOOLS.iter().filter(|t| disks || !t.disks_only) {
        if !on_path(machine.path, tool.name) {
            unmet.missing.push(format!(
                "`{}` is not on PATH (for {}; package {})",
                tool.name, tool.purpose, tool.package
            ));
            if !unmet.packages.contains(&tool.package) {
                unmet.packages.push(tool.package);
            }
        }
    }
    if !is_executable(machine.server_bin) {
        unmet.missing.push(format!(
            "no server binary at {} (build it with `cargo build -p cairn-controlplane`, or \
             pass --server-bin)",
            machine.server_bin.display()
        ));
    }
    if unmet.missing.is_empty() {
        Ok(())
    } else {
        Err(unmet)
    }
}

/// Whether an executable `name` is in one of the directories of `path`.
fn on_path(path: &OsStr, name: &str) -> bool {
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .any(|dir| is_executable(&dir.join(name)))
}

fn is_executable(file: &Path) -> bool {
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory holding an executable file for each of `names`.
    fn bin_dir(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            let file = dir.path().join(name);
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    /// Regression: without `iptables` a campaign ran for a minute, until its first
    /// partition, then died with an exec error and a backtrace.
    #[test]
    fn an_empty_path_names_every_missing_program_and_its_package() {
        let bins = bin_dir(&["cairn-server"]);
        let machine = Machine {
            path: OsStr::new(""),
            root: false,
            server_bin: &bins.path().join("cairn-server"),
        };
        let unmet = check(&machine, true).unwrap_err();
        let text = unmet.to_string();
        for tool in [
            "iptables",
            "ip",
            "tc",
            "losetup",
            "mkfs.ext4",
            "mount",
            "umount",
            "fallocate",
            "df",
        ] {
            assert!(text.contains(&format!("`{tool}` is not on PATH")), "{text}");
        }
        assert!(text.contains("not running as root"), "{text}");
        assert!(
            text.contains("apt-get install iptables iproute2 e2fsprogs mount util-linux coreutils"),
            "{text}"
        );
        assert!(!text.contains("server binary"), "{text}");
    }

    #[test]
    fn only_what_is_missing_is_named() {
        let bins = bin_dir(&["ip", "tc", "cairn-server"]);
        let machine = Machine {
            path: bins.path().as_os_str(),
            root: true,
            server_bin: &bins.path().join("cairn-server"),
        };
        let unmet = check(&machine, false).unwrap_err();
        assert_eq!(unmet.missing.len(), 1, "{unmet}");
        assert!(unmet.missing[0].contains("`iptables`"), "{unmet}");
        assert_eq!(unmet.packages, ["iptables"]);

        // The disk tools only count with a disk size.
        let all = bin_dir(&["iptables"]);
        let path = std::env::join_paths([bins.path(), all.path()]).unwrap();
        let machine = Machine {
            path: &path,
            ..machine
        };
        assert_eq!(check(&machine, false), Ok(()));
        let unmet = check(&machine, true).unwrap_err();
        assert!(unmet.missing.iter().all(|m| !m.contains("`ip`")), "{unmet}");
        assert!(unmet.to_string().contains("`mkfs.ext4`"), "{unmet}");
    }

    #[test]
    fn a_missing_server_binary_is_named() {
        let machine = Machine {
            path: OsStr::new(""),
            root: true,
            server_bin: Path::new("/nonexistent/cairn-server"),
        };
        let unmet = check(&machine, false).unwrap_err();
        assert!(
            unmet
                .to_string()
                .contains("no server binary at /nonexistent/cairn-server"),
            "{unmet}"
        );
    }
}
