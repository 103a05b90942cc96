//! `ferry`: the command-line face of a Ferry node.
//!
//! - `args`: the clap definitions (doc comments are the help text).
//! - `commands/<verb>.rs`: one file per subcommand, thin over `ferry_node`.
//! - `output`: stdout printing that treats a closed pipe as the end, not an error.
//! - `progress`: indicatif bars behind the node's `Progress` trait.
//! - `exit`: exit codes.

mod args;
mod commands;
mod exit;
mod output;
mod progress;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();
    let code = match commands::run(cli) {
        Ok(()) => exit::Code::Ok,
        Err(e) => {
            let code = exit::classify(&e);
            eprintln!("error: {}", exit::one_line(&e));
            code
        }
    };
    std::process::exit(code as i32);
}
