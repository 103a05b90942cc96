use crate::args::{Global, ServeArgs};
use crate::{output, remote};
use anyhow::Context;
use ferry_node::admin;
use ferry_node::mirror::{self, Access, Mirror, UploadLimits};
use ferry_node::node_config::NodeConfig;
use ferry_node::Store;
use tokio::sync::watch;

pub fn run(g: &Global, a: ServeArgs) -> anyhow::Result<()> {
    serve(super::open_store(g)?, a, |_| {})
}

/// Run the node on `store` until SIGTERM or Ctrl-C; `ready` is called with the HTTP address once it listens.
/// Flags override the node's configuration file.
pub fn serve(
    store: Store,
    a: ServeArgs,
    ready: impl FnOnce(std::net::SocketAddr) + Send,
) -> anyhow::Result<()> {
    let config = match &a.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::load_default(store.root())?,
    };
    let listen = a
        .listen
        .or(config.http.listen)
        .unwrap_or(([127, 0, 0, 1], 5050).into());
    let access = Access::from_files(
        a.push_token_file
            .as_deref()
            .or(config.auth.push_token_file.as_deref()),
        a.pull_token_file
            .as_deref()
            .or(config.auth.pull_token_file.as_deref()),
    )?;
    let defaults = UploadLimits::default();
    let limits = UploadLimits {
        max_bytes: a
            .max_upload
            .or(config.uploads.max_bytes)
            .unwrap_or(defaults.max_bytes),
        timeout_secs: a
            .upload_timeout
            .or(config.uploads.timeout_secs)
            .unwrap_or(defaults.timeout_secs)
            .max(1),
        ..defaults
    };
    let mirror = Mirror::new(store.clone(), access, limits)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let admin_listener = admin::bind(store.root())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let admin = tokio::spawn(admin::run(
            admin_listener,
            store.root().to_path_buf(),
            remote::handler(store.clone()),
            stopped(stop_rx.clone()),
        ));
        output::line(format!("listening on http://{addr}"));
        ready(addr);
        mirror::run(listener, mirror, stopped(stop_rx)).await?;
        admin.await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Resolves once the shutdown flag is raised (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("ferry: shutting down");
}
