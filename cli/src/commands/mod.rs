//! One module per subcommand; `run` dispatches.

mod add;
mod audit;
mod bundle;
mod client_config;
mod diff;
mod docs;
pub(crate) mod doctor;
mod export;
mod fsck;
mod gc;
mod get;
mod have;
mod import;
mod init;
mod keys;
mod ls;
mod peers;
mod pin;
mod quickstart;
mod serve;
mod show;
mod sites;
mod sync;
mod trust;

use crate::args::{Cli, Command, Global};
use anyhow::Context;
use ferry_node::Store;
use std::path::PathBuf;

/// `ferry sync` on the client side of a running node (it draws the progress bar here).
pub fn sync_client(
    client: ferry_node::admin::Client,
    store_dir: &std::path::Path,
    cli: &Cli,
    a: &crate::args::SyncArgs,
) -> anyhow::Result<i32> {
    sync::client(client, store_dir, cli, a)
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = store_dir(&cli.global).ok();
    run_command(cli).map_err(|e| match dir {
        // A full disk named by the index or a file path alone: say which store it is.
        Some(dir)
            if crate::exit::one_line(&e).contains("free space on the store's filesystem")
                && !crate::exit::one_line(&e).contains(&*dir.to_string_lossy()) =>
        {
            e.context(format!("store {}", dir.display()))
        }
        _ => e,
    })
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Keys(k) => keys::run(g, k),
        Command::Add(a) => add::run(g, a),
        Command::Get(a) => get::run(g, a),
        Command::Ls => ls::run(g),
        Command::Show(a) => show::run(g, a),
        Command::Fsck => fsck::run(g),
        Command::Quickstart(a) => quickstart::run(g, a),
        Command::Export(a) => export::run(g, a),
        Command::Import(a) => import::run(g, a),
        Command::Bundle(b) => bundle::run(g, b),
        Command::Have(a) => have::run(g, a),
        Command::Sites(a) => sites::run(g, a),
        Command::Trust(t) => trust::run(g, t),
        Command::Audit(a) => audit::run(g, a),
        Command::Id => peers::id(g),
        Command::Peers(p) => peers::run(g, p),
        Command::Diff(a) => diff::run(g, a),
        Command::Pin(c) => pin::run(g, c),
        Command::Gc(a) => gc::run(g, a),
        Command::Serve(a) => serve::run(g, a),
        Command::ClientConfig(a) => client_config::run(g, a),
        Command::Sync(a) => sync::run(g, a),
        Command::Status => sync::status(g),
        Command::Doctor(a) => doctor::run(g, &a),
        Command::Completions(a) => docs::completions(&a),
        Command::Manpages { dir } => docs::manpages(&dir),
        Command::SyncProgress { release } => sync::progress(g, &release),
    }
}

/// The store directory: `--store`, `$FERRY_STORE`, or `$XDG_DATA_HOME/ferry/store`.
pub fn store_dir(g: &Global) -> anyhow::Result<PathBuf> {
    if let Some(s) = &g.store {
        return Ok(s.clone());
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context("cannot find a default store location: set --store or FERRY_STORE")?;
    Ok(data.join("ferry/store"))
}

/// Open the store named by the global options — or, for a command a running node forwarded, the node's store.
pub fn open_store(g: &Global) -> anyhow::Result<Store> {
    if let Some(store) = crate::remote::attached_store() {
        return Ok(store);
    }
    Ok(Store::open(&store_dir(g)?)?)
}
