//! Commands on a store that a running node holds.
//!
//! Client side ([`forward`]): when a node answers on the store's admin socket, the parsed command — with every
//! path made absolute against this process's working directory, and every option already resolved from this
//! process's environment — is sent to the node, and its output and exit code come back as if it ran here.
//!
//! Node side ([`handler`]): the node runs the same command code on a blocking thread with the node's open store
//! attached to that thread; `commands::open_store`, `output` and the progress bar find the attachment and use the
//! node's store and the client's stdout/stderr instead of opening the store and writing to the node's own.

use crate::args::{
    AuditCommand, BundleCommand, Cli, Command, ExportArgs, GetArgs, ImportArgs, QuickstartArgs,
    ServeArgs, TrustCommand,
};
use crate::{commands, exit};
use ferry_node::admin::{Client, Handler, Request, Sink};
use ferry_node::net::Network;
use ferry_node::Store;
use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The protocol and program version both sides must share.
const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Attached {
    store: Store,
    network: Option<Network>,
    sink: Sink,
}

thread_local! {
    static ATTACHED: RefCell<Option<Attached>> = const { RefCell::new(None) };
}

/// The node's store, when this thread runs a forwarded command.
pub fn attached_store() -> Option<Store> {
    ATTACHED.with(|a| a.borrow().as_ref().map(|a| a.store.clone()))
}

/// When this thread runs a forwarded command: the node's network side (`None` inside when the node does no
/// network sync). `None`: no node runs this command.
pub fn attached_network() -> Option<Option<Network>> {
    ATTACHED.with(|a| a.borrow().as_ref().map(|a| a.network.clone()))
}

/// The client's output, when this thread runs a forwarded command.
pub fn sink() -> Option<Sink> {
    ATTACHED.with(|a| a.borrow().as_ref().map(|a| a.sink.clone()))
}

/// Run `cli` on the node holding its store, if one is running. `None`: no node answers; run it here.
pub fn forward(cli: &mut Cli) -> Option<anyhow::Result<i32>> {
    if let Command::ClientConfig(_) | Command::Completions(_) | Command::Manpages { .. } =
        cli.command
    {
        // Talks to a node over HTTP, or to no store at all.
        return None;
    }
    let dir = commands::store_dir(&cli.global).ok()?;
    let client = Client::connect(&dir)?;
    if let Command::Sync(a) = &cli.command {
        // Its errors (the sync failed, the wait timed out) are the user's, not the admin channel's.
        return Some(Ok(commands::sync_client(client, &dir, cli, a)
            .unwrap_or_else(|e| {
                eprintln!("error: {}", exit::one_line(&e));
                exit::classify(&e) as i32
            })));
    }
    Some(send(client, cli))
}

fn send(client: Client, cli: &mut Cli) -> anyhow::Result<i32> {
    absolutize(&mut cli.command, &std::env::current_dir()?);
    let request = Request {
        version: VERSION.to_string(),
        command: serde_json::to_value(&*cli)?,
    };
    let mut stdout_gone = false;
    let code = client.call(&request, |is_stdout, bytes| {
        if is_stdout {
            if !stdout_gone && std::io::stdout().lock().write_all(bytes).is_err() {
                // `ferry ls | head -1`: the reader left; keep draining so the exit code still arrives.
                stdout_gone = true;
            }
        } else {
            let _ = std::io::stderr().lock().write_all(bytes);
        }
    })?;
    let _ = std::io::stdout().flush();
    Ok(code)
}

/// Make every path in `command` absolute against `cwd`: the node runs in another directory.
fn absolutize(command: &mut Command, cwd: &Path) {
    let abs = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = cwd.join(&*p);
        }
    };
    match command {
        Command::Add(a) => {
            for s in &mut a.sources {
                *s = absolute_source(s, cwd);
            }
            if let Some(p) = &mut a.verify {
                abs(p);
            }
        }
        Command::Audit(AuditCommand::Verify { file, key }) => {
            file.iter_mut().for_each(abs);
            key.iter_mut().for_each(abs);
        }
        Command::Audit(AuditCommand::Export { out }) => out.iter_mut().for_each(abs),
        Command::Audit(AuditCommand::Ls { .. }) => {}
        Command::Get(GetArgs { out, .. }) => *out = absolute_source(out, cwd),
        Command::Export(ExportArgs { out, have, .. }) => {
            abs(out);
            if let Some(h) = have {
                abs(h);
            }
        }
        Command::Import(ImportArgs { dir }) => abs(dir),
        Command::Bundle(BundleCommand::Verify { dir, keys })
        | Command::Bundle(BundleCommand::Inspect { dir, keys }) => {
            abs(dir);
            keys.iter_mut().for_each(abs);
        }
        Command::Have(h) => abs(&mut h.out),
        Command::Trust(TrustCommand::Add { file }) => abs(file),
        Command::Quickstart(QuickstartArgs { out, .. }) => abs(out),
        Command::Serve(ServeArgs {
            config: Some(c), ..
        }) => abs(c),
        Command::Manpages { dir } => abs(dir),
        Command::Doctor(a) => {
            a.config.iter_mut().for_each(abs);
            abs(&mut a.etc);
            abs(&mut a.units);
        }
        Command::Init(_)
        | Command::Completions(_)
        | Command::Keys(_)
        | Command::Ls
        | Command::Show(_)
        | Command::Fsck
        | Command::Diff(_)
        | Command::Sites(_)
        | Command::Trust(_)
        | Command::Id
        | Command::Peers(_)
        | Command::Pin(_)
        | Command::Gc(_)
        | Command::Serve(_)
        | Command::ClientConfig(_)
        | Command::Sync(_)
        | Command::Status
        | Command::SyncProgress { .. } => {}
    }
}

/// `SCHEME:PATH` with a relative PATH made absolute, for the schemes that name a local path; anything else
/// (registry references, URLs, names of pushed images) unchanged.
fn absolute_source(s: &str, cwd: &Path) -> String {
    const PATH_SCHEMES: [&str; 9] = [
        "oci:",
        "docker-archive:",
        "file:",
        "dir:",
        "apt:",
        "pypi:",
        "helm:",
        "yum:",
        "k8s:",
    ];
    for scheme in PATH_SCHEMES {
        if let Some(rest) = s.strip_prefix(scheme) {
            if rest.is_empty() || rest.starts_with('/') || rest.contains("://") {
                return s.to_string();
            }
            return format!("{scheme}{}", cwd.join(rest).display());
        }
    }
    s.to_string()
}

/// The node side: run forwarded commands against `store` (and `network`, when the node syncs), one blocking
/// thread each.
pub fn handler(store: Store, network: Option<Network>) -> Handler {
    Arc::new(move |request: Request, sink: Sink| {
        run_forwarded(&store, network.clone(), request, sink)
    })
}

fn run_forwarded(store: &Store, network: Option<Network>, request: Request, sink: Sink) -> i32 {
    let fail = |sink: &Sink, msg: String| {
        let _ = sink.stderr(format!("error: {msg}\n").as_bytes());
        exit::Code::Failure as i32
    };
    if request.version != VERSION {
        return fail(
            &sink,
            format!(
                "the node runs ferry {VERSION} and this is ferry {}; use the node's ferry binary",
                request.version
            ),
        );
    }
    let cli: Cli = match serde_json::from_value(request.command) {
        Ok(c) => c,
        Err(e) => return fail(&sink, format!("the node could not read this command: {e}")),
    };
    if let Command::Serve(_) | Command::Quickstart(QuickstartArgs { serve: true, .. }) = cli.command
    {
        return fail(
            &sink,
            format!(
                "a node is already serving store {} (pid {})",
                store.root().display(),
                std::process::id()
            ),
        );
    }
    tracing::info!(command = ?cli.command, "admin command");
    ATTACHED.with(|a| {
        *a.borrow_mut() = Some(Attached {
            store: store.clone(),
            network,
            sink: sink.clone(),
        })
    });
    struct Detach;
    impl Drop for Detach {
        fn drop(&mut self) {
            ATTACHED.with(|a| a.borrow_mut().take());
        }
    }
    let _detach = Detach;
    match commands::run(cli) {
        Ok(()) => exit::Code::Ok as i32,
        Err(e) => {
            if e.downcast_ref::<commands::doctor::Problems>().is_some() {
                tracing::info!(error = %exit::one_line(&e), "admin command reported problems");
            } else {
                tracing::warn!(error = %exit::one_line(&e), "admin command failed");
            }
            let _ = sink.stderr(format!("error: {}\n", exit::one_line(&e)).as_bytes());
            exit::classify(&e) as i32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_become_absolute_but_references_and_urls_do_not() {
        let cwd = Path::new("/work/here");
        assert_eq!(absolute_source("oci:img:v1", cwd), "oci:/work/here/img:v1");
        assert_eq!(absolute_source("dir:/abs/tree", cwd), "dir:/abs/tree");
        assert_eq!(
            absolute_source("apt:http://127.0.0.1:8000/debian", cwd),
            "apt:http://127.0.0.1:8000/debian"
        );
        assert_eq!(
            absolute_source("docker://registry:5000/x:1", cwd),
            "docker://registry:5000/x:1"
        );
        assert_eq!(absolute_source("file:a.bin", cwd), "file:/work/here/a.bin");
    }
}
