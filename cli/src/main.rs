//! `cairn`: parse the command line and run it.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = cairn_cli::Cli::parse();
    if let Err(e) = cairn_cli::run(cli).await {
        eprintln!("cairn: {e:#}");
        std::process::exit(1);
    }
}
