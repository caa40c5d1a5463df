//! `cairn-chaos`: run a fault-injection campaign against a real Cairn cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cairn_chaos::campaign::{self, Settings};
use cairn_chaos::prerequisites::{self, Machine};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "cairn-chaos",
    version,
    about = "Fault-injection campaigns against a Cairn cluster (needs root)"
)]
struct Cli {
    /// Seed of the fault schedule and the workloads (printed; replay with the same seed).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Quiet time between faults.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    calm: Duration,
    /// How long each fault lasts.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    fault: Duration,
    #[arg(long, default_value_t = 4)]
    set_clients: u32,
    #[arg(long, default_value_t = 3)]
    registers: usize,
    #[arg(long, default_value_t = 3)]
    clients_per_register: u32,
    /// The cairn-server binary (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Where data, logs and the report go (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Which 10.213.<net>.0/24 the simulated hosts use (default: the first from 7 up
    /// that no interface of this machine routes, so campaigns never share one).
    #[arg(long)]
    net: Option<u8>,
    /// Put each server's data on an ext4 loop-device disk of this many MiB and add
    /// disk-full and slow-disk faults (0: off).
    #[arg(long, default_value_t = 0)]
    disk_mb: u32,
    /// Members snapshot (and purge their logs) every this many entries (the servers'
    /// default: 20,000). A low value (e.g. 1000) builds, sends and installs snapshots
    /// under the faults too.
    #[arg(long, default_value_t = 20_000)]
    snapshot_after_logs: u64,
    /// Draw faults only from these (comma-separated; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<campaign::FaultKind>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let server_bin = match &cli.server_bin {
        Some(b) => b.clone(),
        None => match std::env::current_exe() {
            Ok(exe) => exe.with_file_name("cairn-server"),
            Err(e) => {
                eprintln!("error: cannot locate cairn-server ({e}); pass --server-bin");
                return ExitCode::FAILURE;
            }
        },
    };
    // Before anything else: everything the campaign needs is there.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let machine = Machine {
        path: &path,
        root: rustix::process::geteuid().is_root(),
        server_bin: &server_bin,
    };
    if let Err(unmet) = prerequisites::check(&machine, cli.disk_mb > 0) {
        eprintln!("{unmet}");
        return ExitCode::from(2);
    }
    match run(cli, server_bin).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, server_bin: PathBuf) -> anyhow::Result<()> {
    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let dir = match cli.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("cairn-chaos-{seed}")),
    };
    let settings = Settings {
        nodes: cli.nodes,
        duration: cli.duration,
        seed,
        calm: cli.calm,
        fault: cli.fault,
        set_clients: cli.set_clients,
        registers: cli.registers,
        clients_per_register: cli.clients_per_register,
        server_bin,
        dir: dir.clone(),
        net: cli.net,
        disk_mb: cli.disk_mb,
        snapshot_after_logs: cli.snapshot_after_logs,
        faults: cli.faults,
    };
    let run = campaign::run(settings);
    let report = tokio::select! {
        r = run => r?,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the campaign future tears the namespaces and servers down.
            anyhow::bail!("interrupted (seed {seed}); namespaces and servers removed");
        }
    };
    print!("{}", campaign::render(&report));
    let json = dir.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    println!("report: {}", json.display());
    if !report.ok {
        anyhow::bail!("the campaign failed; replay with --seed {seed}");
    }
    Ok(())
}
