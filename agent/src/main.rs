//! `cairn-agent`: the node agent's entry point.

use clap::Parser;

#[derive(Parser)]
#[command(name = "cairn-agent", version, about = "The Cairn node agent")]
struct Cli {
    /// Control-plane members to report to, comma-separated host:port.
    #[arg(long, env = "CAIRN_ENDPOINTS", default_value = "127.0.0.1:7420")]
    endpoints: String,
}

fn main() {
    let cli = Cli::parse();
    eprintln!(
        "cairn-agent {}: {} (endpoints {}); not starting",
        env!("CARGO_PKG_VERSION"),
        cairn_agent::STATUS,
        cli.endpoints
    );
    std::process::exit(2);
}
