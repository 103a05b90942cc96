//! `ferry`: the command-line face of a Ferry node.
//!
//! - `args`: the clap definitions (doc comments are the help text).
//! - `commands/<verb>.rs`: one file per subcommand, thin over `ferry_node`.
//! - `output`: stdout printing that treats a closed pipe as the end, not an error.
//! - `progress`: indicatif bars behind the node's `Progress` trait.
//! - `exit`: exit codes.
//! - `remote`: commands on a store a running node holds, through its admin socket.

mod args;
mod commands;
mod exit;
mod output;
mod progress;
mod remote;

use clap::Parser;

/// jemalloc, not glibc's malloc: a node allocates on many threads (the async workers, the blocking pool, rayon)
/// and glibc gave each its own arena and kept what they freed. Measured on a sync of 1.5 M chunks (see
/// docs/benchmarks.md, issue 21): the syncing node peaked at 1.42 GiB with glibc's malloc and 0.87 GiB with
/// jemalloc, and took 64 s against 54 s. Its own threads give freed memory back to the system after a second
/// (`.cargo/config.toml` sets that when jemalloc is built), so a node shrinks when a large sync ends.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let mut cli = args::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();
    if let Some(forwarded) = remote::forward(&mut cli) {
        let code = forwarded.unwrap_or_else(|e| {
            eprintln!("error: {}", exit::one_line(&e));
            exit::Code::Internal as i32
        });
        std::process::exit(code);
    }
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
