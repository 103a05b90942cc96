//! The node's HTTP face: an OCI Distribution registry (pull side) and static repository mirrors over the store.
//!
//! - [`catalog`]: which repositories, tags, blobs and file trees are served, rebuilt when a release becomes
//!   visible.
//! - [`oci`]: the Distribution API handlers (`/v2/…`), spec error bodies.
//! - [`repo`]: release file trees as byte-exact static sites (`/repos/…`) and their index (`/_ferry/repos`).
//! - [`range`]: the `Range` header, shared by both.
//! - [`body`]: streaming a blob, rebuilt from its chunks on a blocking thread, into a response body.
//!
//! [`run`] serves until `shutdown` resolves, then lets requests in flight finish.

pub mod body;
pub mod catalog;
pub mod oci;
pub mod range;
pub mod repo;

use crate::store::{Store, StoreError};
use catalog::Catalog;
use std::future::Future;
use std::sync::{Arc, Mutex};

/// Shared state of the HTTP service.
#[derive(Clone)]
pub struct Mirror(Arc<MirrorShared>);

struct MirrorShared {
    store: Store,
    catalog: Mutex<Arc<Catalog>>,
}

impl Mirror {
    /// A mirror over `store`.
    pub fn new(store: Store) -> Result<Mirror, StoreError> {
        let catalog = Catalog::build(&store)?;
        Ok(Mirror(Arc::new(MirrorShared {
            store,
            catalog: Mutex::new(Arc::new(catalog)),
        })))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The current catalog, rebuilt first if a release became visible since it was built.
    pub fn catalog(&self) -> Result<Arc<Catalog>, StoreError> {
        let mut c = self.0.catalog.lock().expect("catalog lock poisoned");
        if c.generation != self.0.store.generation() {
            *c = Arc::new(Catalog::build(&self.0.store)?);
        }
        Ok(c.clone())
    }

    /// The axum router.
    pub fn router(&self) -> axum::Router {
        oci::routes().merge(repo::routes()).with_state(self.clone())
    }
}

/// Serve `mirror` on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    mirror: Mirror,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, mirror.router())
        .with_graceful_shutdown(shutdown)
        .await
}
