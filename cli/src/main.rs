//! `ferry`: the command-line face of a Ferry node.
//!
//! - `args`: the clap definitions (doc comments are the help text).
//! - `commands/<verb>.rs`: one file per subcommand, thin over `ferry_node`.
//! - `output`: stdout printing that treats a closed pipe as the end, not an error.
//! - `progress`: indicatif bars behind the node's `Progress` trait.
//! - `exit`: exit codes.
//! - `remote`: commands on a store a running node holds, through its admin socket.
//! - `systemd`: readiness and status for systemd (`Type=notify`), logs to the journal under it.

mod args;
mod commands;
mod exit;
mod output;
mod progress;
mod remote;
mod systemd;

use clap::Parser;

/// jemalloc, not glibc's malloc: a node allocates on many threads (the async workers, the blocking pool, rayon)
/// and glibc gave each its own arena and kept what they freed. Measured on a sync of 1.5 M chunks (see
/// docs/benchmarks.md, issue 21): the syncing node peaked at 1.42 GiB with glibc's malloc and 0.87 GiB with
/// jemalloc, and took 64 s against 54 s. Its own threads give freed memory back to the system after a second
/// (`.cargo/config.toml` sets that when jemalloc is built), so a node shrinks when a large sync ends.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Log to stderr, or to the journal with each event's fields (`ERROR=`, `PEER=`, …) when `ferry serve` runs
/// under systemd with its output going there. `RUST_LOG` filters; the default is warnings, and for a node under
/// systemd also what it does (info).
fn init_logging(cli: &args::Cli) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let journal = matches!(cli.command, args::Command::Serve(_)) && systemd::stderr_is_journal();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if journal { "info" } else { "warn" })
    });
    if journal {
        if let Ok(layer) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter)
                .with(layer)
                .init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();
}

fn main() {
    let mut cli = args::Cli::parse();
    init_logging(&cli);
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
