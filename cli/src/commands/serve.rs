use crate::args::{Global, ServeArgs};
use crate::output;
use anyhow::Context;
use ferry_node::mirror::{self, Access, Mirror, UploadLimits};

pub fn run(g: &Global, a: ServeArgs) -> anyhow::Result<()> {
    let access = Access::from_files(a.push_token_file.as_deref(), a.pull_token_file.as_deref())?;
    let limits = UploadLimits {
        max_bytes: a.max_upload,
        timeout_secs: a.upload_timeout.max(1),
        ..UploadLimits::default()
    };
    let store = super::open_store(g)?;
    let mirror = Mirror::new(store, access, limits)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("listening on {}", a.listen))?;
        let addr = listener.local_addr()?;
        output::line(format!("listening on http://{addr}"));
        mirror::run(listener, mirror, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
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
