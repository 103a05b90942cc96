//! The node's HTTP face: an OCI Distribution registry (pull and push) and static repository mirrors over the
//! store.
//!
//! - [`catalog`]: which repositories, tags, blobs and file trees are served (every visible release, and what was
//!   pushed), rebuilt when a release becomes visible or something is pushed.
//! - [`oci`]: the Distribution API handlers (`/v2/…`), routing, spec error bodies.
//! - [`push`]: the push side — blob uploads, cross-repository mounts, manifest PUT.
//! - [`uploads`]: upload sessions spooled to files under `STORE/uploads/`, their limits and expiry.
//! - [`auth`]: push, pull and status tokens ([`Access`]); `/repos/` and `/_ferry/` need what a pull needs, `/` and
//!   `/metrics` a status token when one is configured.
//! - [`repo`]: release file trees as byte-exact static sites (`/repos/…`) and their index (`/_ferry/repos`).
//! - [`info`]: `/_ferry/images`, the images served, as JSON for tools such as `ferry client-config`.
//! - [`range`]: the `Range` header, shared by the registry and the trees.
//! - [`body`]: streaming a blob, rebuilt from its chunks on a blocking thread, into a response body.
//! - [`status`]: the status page at `/` and Prometheus metrics at `/metrics`.
//!
//! [`run`] serves until `shutdown` resolves, then lets requests in flight finish.

pub mod auth;
pub mod body;
pub mod catalog;
pub mod conn;
pub mod info;
pub mod oci;
pub mod push;
pub mod range;
pub mod repo;
pub mod status;
pub mod uploads;

use crate::store::{Store, StoreError};
pub use auth::Access;
use catalog::Catalog;
use std::future::Future;
use std::sync::{Arc, Mutex};
pub use uploads::UploadLimits;

/// Shared state of the HTTP service.
#[derive(Clone)]
pub struct Mirror(Arc<MirrorShared>);

struct MirrorShared {
    store: Store,
    catalog: Mutex<Arc<Catalog>>,
    /// Held while a new catalog is built (on the blocking pool), so one build serves every request waiting.
    rebuild: tokio::sync::Mutex<()>,
    /// Who may do what; replaced whole when the node reloads its token files.
    access: std::sync::RwLock<Arc<Access>>,
    uploads: uploads::Uploads,
    /// Pushed blobs go through the store's ingest one at a time (each ingest is parallel inside), so two
    /// uploads of the same content never both write its chunks.
    ingest: Arc<Mutex<()>>,
    /// Bytes of blobs, manifests and files sent to clients.
    served: Arc<std::sync::atomic::AtomicU64>,
    /// The node's network side, once started (for the status page and metrics).
    network: std::sync::OnceLock<crate::net::Network>,
}

impl Mirror {
    /// A mirror over `store`, admitting requests as `access` says, with uploads spooled under `STORE/uploads/`
    /// (files left there by an earlier run are removed).
    pub fn new(store: Store, access: Access, limits: UploadLimits) -> Result<Mirror, StoreError> {
        let catalog = Catalog::build(&store)?;
        let dir = store.root().join("uploads");
        let uploads = uploads::Uploads::new(dir.clone(), limits).map_err(StoreError::io(&dir))?;
        Ok(Mirror(Arc::new(MirrorShared {
            store,
            catalog: Mutex::new(Arc::new(catalog)),
            rebuild: tokio::sync::Mutex::new(()),
            access: std::sync::RwLock::new(Arc::new(access)),
            uploads,
            ingest: Arc::new(Mutex::new(())),
            served: Arc::default(),
            network: std::sync::OnceLock::new(),
        })))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// Show the node's network side on the status page and in metrics.
    pub fn attach_network(&self, net: crate::net::Network) {
        let _ = self.0.network.set(net);
    }

    pub(crate) fn network(&self) -> Option<&crate::net::Network> {
        self.0.network.get()
    }

    /// Bytes of blobs, manifests and repository files sent to clients since the node started.
    pub fn served_bytes(&self) -> u64 {
        self.0.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_served(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.0.served.clone()
    }

    /// Who may push and pull.
    pub fn access(&self) -> Arc<Access> {
        self.0
            .access
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Admit requests as `access` says from now on (a reload of the token files); requests already admitted
    /// finish as they were.
    pub fn set_access(&self, access: Access) {
        *self
            .0
            .access
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(access);
    }

    pub(crate) fn uploads(&self) -> &uploads::Uploads {
        &self.0.uploads
    }

    pub(crate) fn ingest_lock(&self) -> Arc<Mutex<()>> {
        self.0.ingest.clone()
    }

    /// The current catalog, rebuilt first if a release became visible or something was pushed since it was
    /// built. The build reads the store, so it runs on the blocking pool, one at a time; requests that find the
    /// catalog stale meanwhile wait for that build rather than start their own.
    pub async fn catalog(&self) -> Result<Arc<Catalog>, StoreError> {
        let current = || {
            self.0
                .catalog
                .lock()
                .expect("catalog lock poisoned")
                .clone()
        };
        let fresh = |c: &Catalog| c.generation == self.0.store.generation();
        let c = current();
        if fresh(&c) {
            return Ok(c);
        }
        let _building = self.0.rebuild.lock().await;
        let c = current();
        if fresh(&c) {
            return Ok(c);
        }
        let store = self.0.store.clone();
        let built = tokio::task::spawn_blocking(move || Catalog::build(&store))
            .await
            .map_err(|e| StoreError::Corrupt(format!("building the catalog: {e}")))??;
        let built = Arc::new(built);
        *self.0.catalog.lock().expect("catalog lock poisoned") = built.clone();
        Ok(built)
    }

    /// The axum router.
    pub fn router(&self) -> axum::Router {
        use axum::middleware::from_fn_with_state;
        let content = repo::routes()
            .merge(info::routes())
            .route_layer(from_fn_with_state(self.clone(), auth::pull_gate));
        let status =
            status::routes().route_layer(from_fn_with_state(self.clone(), auth::status_gate));
        oci::routes()
            .merge(content)
            .merge(status)
            .with_state(self.clone())
    }
}

/// Serve `mirror` on `listener` within `limits` until `shutdown` resolves. Idle uploads are swept meanwhile.
pub async fn run(
    listener: tokio::net::TcpListener,
    mirror: Mirror,
    limits: conn::Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sweeper = SweepGuard(tokio::spawn(sweep_uploads(mirror.clone())));
    let served = conn::serve(listener, mirror.router(), limits, shutdown).await;
    drop(sweeper);
    served
}

/// Stops the upload sweeper when `run` returns, however it returns.
struct SweepGuard(tokio::task::JoinHandle<()>);

impl Drop for SweepGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn sweep_uploads(mirror: Mirror) {
    let mut every = tokio::time::interval(mirror.uploads().sweep_every());
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        mirror.uploads().sweep().await;
    }
}
