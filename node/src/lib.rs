//! The Ferry node library.
//!
//! - [`config`]: the store's `config.toml` (chunking parameters every node of a site must share).
//! - [`chunker`]: FastCDC v2020 over any reader.
//! - [`store`]: packs of zstd-compressed chunks, the sled index, recipes, blobs, releases, fsck.
//! - [`keys`]: the publisher's ed25519 key.
//! - [`membership`]: the node key behind its peer id, and the site's allow-list of peers.
//! - [`trust`]: the other publishers' keys a store accepts.
//! - [`tarsplit`]: a tar stream as its headers and its contents, and back.
//! - [`ingest`]: turning OCI layouts, docker archives, registries, files and trees into a signed release.
//! - [`export`]: writing a release back out as an OCI layout or a file tree.
//! - [`plan`]: the want/have planner shared by bundle export and network sync.
//! - [`delta`]: delta transport — bases among what the receiver holds, runs of chunks as zstd frames against them.
//! - [`prewarm`]: re-creating the gzip blobs of new releases in the background, before anyone asks.
//! - [`admin`]: the node's admin socket, through which `ferry` commands reach a store a running node holds.
//! - [`bundle`]: bundles for removable media — export, verify, inspect, import — and have-files.
//! - [`mirror`]: the HTTP face — an OCI Distribution registry over the store.
//! - [`node_config`]: the running node's `node.toml` (listen address, push and pull tokens).
//! - [`progress`]: how long work reports progress (the CLI draws it).
//! - [`sample`]: the generated sample release `ferry quickstart` adds.
//! - [`verify`]: upstream signatures checked at ingest against a policy (cosign, keyless sigstore, OpenPGP,
//!   minisign).
//! - [`doctor`]: a node's setup checked from its files, each problem with its fix.
//!
//! Hidden: `fuzz`, thin wrappers that give the fuzz targets (`node/fuzz`) the private parsers of outside bytes.

pub mod admin;
pub mod bundle;
pub mod chunker;
pub mod config;
pub mod delta;
pub mod doctor;
pub mod export;
#[doc(hidden)]
pub mod fuzz;
pub mod ingest;
pub mod keys;
pub mod membership;
pub mod mirror;
pub mod net;
pub mod node_config;
pub mod openpgp;
pub mod plan;
pub mod prewarm;
pub mod progress;
pub mod retention;
pub mod sample;
pub mod sketch;
pub mod store;
pub mod tarsplit;
pub mod trust;
pub mod verify;

pub use progress::{NoProgress, Progress};
pub use store::{Store, StoreError};
