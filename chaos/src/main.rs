//! `cairn-chaos`: the chaos harness's entry point.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "cairn-chaos",
    version,
    about = "Fault-injection campaigns against a Cairn cluster"
)]
struct Cli {
    /// Seed of the fault schedule (printed by every run, for replay).
    #[arg(long)]
    seed: Option<u64>,
}

fn main() {
    let cli = Cli::parse();
    eprintln!(
        "cairn-chaos: {} (seed {:?}); not starting",
        cairn_chaos::STATUS,
        cli.seed
    );
    std::process::exit(2);
}
