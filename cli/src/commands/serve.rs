use crate::args::{Global, ServeArgs};
use crate::{output, remote};
use anyhow::Context;
use ferry_node::admin;
use ferry_node::mirror::{self, Access, Mirror, UploadLimits};
use ferry_node::net::{NetConfig, Network};
use ferry_node::node_config::NodeConfig;
use ferry_node::Store;
use libp2p::Multiaddr;
use std::time::Duration;
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
    let access = access_from(&a, &config)?;
    let reload = Reload {
        started: config.clone(),
        config: a.config.clone(),
        store: store.root().to_path_buf(),
        push: a.push_token_file.clone(),
        pull: a.pull_token_file.clone(),
        status: a.status_token_file.clone(),
    };
    let (defaults, u) = (UploadLimits::default(), &config.uploads);
    let max_bytes = a.max_upload.or(u.max_bytes).unwrap_or(defaults.max_bytes);
    let limits = UploadLimits {
        max_bytes,
        // Room for two of the largest blobs at once.
        max_spool_bytes: u.max_spool_bytes.unwrap_or(max_bytes.saturating_mul(2)),
        min_free_bytes: u.min_free_bytes.unwrap_or(defaults.min_free_bytes),
        timeout_secs: a
            .upload_timeout
            .or(u.timeout_secs)
            .unwrap_or(defaults.timeout_secs)
            .max(1),
        max_sessions: u.max_sessions.unwrap_or(defaults.max_sessions).max(1),
        evict_after_secs: u.evict_after_secs.unwrap_or(defaults.evict_after_secs),
    };
    let conns = mirror::conn::Connections::default();
    let mut conns = mirror::conn::Connections {
        header_timeout: config
            .http
            .header_timeout_secs
            .map_or(conns.header_timeout, |s| Duration::from_secs(s.max(1))),
        max: config.http.max_connections.unwrap_or(conns.max).max(1),
        max_per_client: config
            .http
            .max_connections_per_client
            .unwrap_or(conns.max_per_client)
            .max(1),
    };
    conns.fit_descriptors();
    let p2p = net_config(&a, &config)?;
    let prewarm = !a.no_prewarm && config.cache.prewarm.unwrap_or(true);
    let mirror = Mirror::new(store.clone(), access, limits)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = rt.block_on(async move {
        let admin_listener = admin::bind(store.root())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            // Long work (an add through the admin socket) ends at its next read.
            ferry_node::progress::stop_all();
            let _ = stop_tx.send(true);
        });
        let network = match p2p {
            Some(p2p) => Some(start_network(&store, p2p, stopped(stop_rx.clone())).await?),
            None => None,
        };
        if let Some(net) = &network {
            mirror.attach_network(net.clone());
        }
        tokio::spawn(reload.watch(mirror.clone(), stopped(stop_rx.clone())));
        let admin = tokio::spawn(admin::run(
            admin_listener,
            store.root().to_path_buf(),
            remote::handler(store.clone(), network),
            stopped(stop_rx.clone()),
        ));
        // Gzip blobs of new releases are re-created before anyone asks for them (stopped when this returns).
        let _prewarm = prewarm.then(|| ferry_node::prewarm::Prewarm::start(store.clone()));
        output::line(format!("listening on http://{addr}"));
        crate::systemd::notify(&format!("READY=1\nSTATUS=listening on http://{addr}"));
        ready(addr);
        mirror::run(listener, mirror, conns, stopped(stop_rx)).await?;
        admin.await?;
        Ok::<_, anyhow::Error>(())
    });
    // Work told to stop ends at its next read; whatever cannot (a read blocked on its source) is left behind
    // after a few seconds rather than holding the node up: the store recovers it as after a crash.
    rt.shutdown_timeout(STOP_WAIT);
    tracing::info!("stopped");
    served
}

/// The token files a node admits requests by: flags over the configuration file.
fn access_from(a: &ServeArgs, config: &NodeConfig) -> anyhow::Result<Access> {
    Ok(Access::from_files(
        a.push_token_file
            .as_deref()
            .or(config.auth.push_token_file.as_deref()),
        a.pull_token_file
            .as_deref()
            .or(config.auth.pull_token_file.as_deref()),
        a.status_token_file
            .as_deref()
            .or(config.auth.status_token_file.as_deref()),
    )?)
}

/// What SIGHUP (`systemctl reload ferry`) re-reads: the configuration file and the token files it or the flags
/// name. Other settings (listen addresses, limits, peers) take a restart, and a reload that finds them changed
/// says so.
struct Reload {
    /// The configuration the node started with.
    started: NodeConfig,
    config: Option<std::path::PathBuf>,
    store: std::path::PathBuf,
    push: Option<std::path::PathBuf>,
    pull: Option<std::path::PathBuf>,
    status: Option<std::path::PathBuf>,
}

impl Reload {
    /// Reload on every SIGHUP until `stop`.
    async fn watch(self, mirror: Mirror, stop: impl std::future::Future<Output = ()>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGHUP; reloading takes a restart");
                return;
            }
        };
        let this = std::sync::Arc::new(self);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                got = hup.recv() => if got.is_none() { return },
            }
            let (this, mirror) = (this.clone(), mirror.clone());
            let done = tokio::task::spawn_blocking(move || this.apply(&mirror)).await;
            let status = match done {
                Ok(Ok(status)) => status,
                Ok(Err(e)) => {
                    tracing::error!("reload refused, keeping the settings in force: {e:#}");
                    format!("reload refused: {e:#}")
                }
                Err(e) => format!("reload failed: {e}"),
            };
            crate::systemd::notify(&format!("READY=1\nSTATUS={status}"));
        }
    }

    /// Read the configuration and token files again and admit requests by them; what to tell systemd.
    fn apply(&self, mirror: &Mirror) -> anyhow::Result<String> {
        let config = match &self.config {
            Some(path) => NodeConfig::load(path)?,
            None => NodeConfig::load_default(&self.store)?,
        };
        let s = &self.started;
        let waiting: Vec<&str> = [
            ("[http]", s.http != config.http),
            ("[uploads]", s.uploads != config.uploads),
            ("[p2p]", s.p2p != config.p2p),
            ("[cache]", s.cache != config.cache),
        ]
        .into_iter()
        .filter_map(|(section, changed)| changed.then_some(section))
        .collect();
        let flags = ServeArgs {
            config: None,
            push_token_file: self.push.clone(),
            pull_token_file: self.pull.clone(),
            status_token_file: self.status.clone(),
            ..ServeArgs::default()
        };
        mirror.set_access(access_from(&flags, &config)?);
        tracing::info!("reloaded the token files");
        if waiting.is_empty() {
            return Ok("reloaded the token files".into());
        }
        let waiting = waiting.join(", ");
        tracing::warn!(
            sections = %waiting,
            "node.toml changed where a reload cannot apply it; restart the node (`systemctl restart ferry`)"
        );
        Ok(format!(
            "reloaded the token files; {waiting} changed and take a restart"
        ))
    }
}

/// How long the node waits at its stop for blocking work still running.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The network settings from flags and the config file; `None` when no p2p listen address is given.
fn net_config(a: &ServeArgs, config: &NodeConfig) -> anyhow::Result<Option<NetConfig>> {
    let listen_from_flags = !a.p2p_listen.is_empty();
    let listen = if listen_from_flags {
        &a.p2p_listen
    } else {
        &config.p2p.listen
    };
    if listen.is_empty() {
        if !a.peer.is_empty() || !a.follow.is_empty() {
            anyhow::bail!("--peer and --follow need a p2p listen address (--p2p-listen MULTIADDR)");
        }
        return Ok(None);
    }
    let parse = |what: &str, list: &[String]| -> anyhow::Result<Vec<Multiaddr>> {
        list.iter()
            .map(|s| {
                s.parse::<Multiaddr>().with_context(|| {
                    format!("{what} {s:?} is not a multiaddr (e.g. /ip4/10.1.0.1/tcp/7701)")
                })
            })
            .collect()
    };
    let mut peers = parse("p2p peer", &config.p2p.peers)?;
    peers.extend(parse("--peer", &a.peer)?);
    let mut follow = config.p2p.follow.clone();
    follow.extend(a.follow.iter().cloned());
    for name in &follow {
        ferry_protocol::validate_name(name).with_context(|| format!("follow {name:?}"))?;
    }
    Ok(Some(NetConfig {
        listen: parse(
            if listen_from_flags {
                "--p2p-listen"
            } else {
                "p2p listen"
            },
            listen,
        )?,
        peers,
        mdns: !a.no_mdns && config.p2p.mdns.unwrap_or(true),
        follow,
    }))
}

/// Start network sync and print where it listens (once the control plane has bound its addresses).
async fn start_network(
    store: &Store,
    config: NetConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Network> {
    let net = Network::start(store.clone(), config, stop).await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while net.listening().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for addr in net.listening() {
        output::line(format!("p2p listening on {addr}/p2p/{}", net.peer_id()));
    }
    output::line(format!(
        "p2p data on udp {} (peer id {})",
        net.data_addr(),
        net.peer_id()
    ));
    Ok(net)
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
