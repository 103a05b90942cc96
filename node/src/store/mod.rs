//! The chunk store: packs of zstd-compressed chunks, a sled index, recipes, blobs and releases.
//!
//! - [`packs`]: the append-only pack file format and scanning.
//! - [`writer`]: the ingest pipeline — chunk, hash, dedup, compress, append; commit makes it durable.
//! - [`reader`]: rebuilding blobs from recipes, verifying every chunk on the way out.
//! - [`fsck`]: re-verifying everything.
//! - [`accept`]: taking in content from elsewhere (bundles, peers): verified chunks, recipes, blob records and
//!   signed releases, each made visible only once what it needs is present.
//! - [`sites`]: the seed's ledger of what it shipped to each site.
//! - [`pushed`]: what clients pushed to the node's registry (repository tags and blobs), outside any release.
//! - [`stored`]: chunks as stored, read a run of adjacent records at a time, for peers.
//! - [`gc`]: retention, and collecting what no kept release or push needs while the node runs.
//!
//! Layout of a store directory: `config.toml`, `keys/publisher.key`, `keys/repository.asc` (the OpenPGP key
//! partial apt mirrors are signed with), `packs/pack-NNNNNN.pack`, `index/` (sled).
//!
//! Order of writes makes crashes harmless: pack bytes are fsync'd before the index entries that point at them are
//! committed; a blob's record is written only after its chunks are committed; a release only after every blob it
//! names is complete. On open, records past a pack's committed length (written before a crash, never indexed) are
//! verified and indexed, and a torn tail is cut off, so nothing that reached the disk is stored twice.

pub mod accept;
pub mod audit;
pub mod delivered;
pub mod fsck;
pub mod gc;
pub mod gzip;
pub mod packs;
pub mod pins;
pub mod pushed;
pub mod reader;
pub mod sites;
pub mod stored;
pub mod stream;
pub mod writer;

use crate::config::{ConfigError, StoreConfig};
use crate::keys::{self, KeyError};
use ed25519_dalek::SigningKey;
use ferry_protocol::{
    BlobId, BlobRef, ChunkId, CodecError, Object, Part, PublisherKey, Recipe, RecipeId,
    ReleaseKind, ReleaseManifest, Sha256Digest, SignedRelease,
};
use packs::Location;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use reader::BlobReader;
pub use writer::{Ingested, WriteStats};

/// The OpenPGP repository key, relative to the store root.
pub const REPOSITORY_KEY: &str = "keys/repository.asc";

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// File-system trouble, with the path.
    #[error("{path}: {source}")]
    Io {
        /// What was being read or written.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// An I/O error while reading a source.
    #[error("reading {what}: {source}")]
    Source {
        /// The source.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The index database.
    #[error("index database: {0}")]
    Index(sled::Error),
    /// The store's filesystem is full, or writing would take it below the store's free-space reserve. What the
    /// store held is intact; the same command completes once space is freed.
    #[error(
        "{path}: {detail}; free space on the store's filesystem and run the command again (what the store \
         already held is intact)"
    )]
    NoSpace {
        /// What was being written.
        path: String,
        /// The filesystem full, or the free bytes against the reserve.
        detail: String,
    },
    /// Another process has the store open.
    #[error("store {0} is in use by another ferry process")]
    InUse(String),
    /// No store here.
    #[error("no ferry store at {0} (create one with `ferry init`)")]
    NoStore(String),
    /// A store exists already.
    #[error("a ferry store already exists at {0}")]
    Exists(String),
    /// `config.toml`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The publisher key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Stored bytes that do not verify.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A chunk something in the store names is not held (fsck says more).
    #[error("chunk {0} is missing from the store")]
    MissingChunk(ChunkId),
    /// A recipe something in the store names is not held.
    #[error("recipe {recipe} is missing from the store{}", for_blob.map(|b| format!(" (the recipe of blob {b})")).unwrap_or_default())]
    MissingRecipe {
        /// The recipe.
        recipe: RecipeId,
        /// The blob it makes, when known.
        for_blob: Option<ferry_protocol::Sha256Digest>,
    },
    /// A blob could not be read.
    #[error("reading blob {blob}: {reason}")]
    Blob {
        /// The blob.
        blob: Sha256Digest,
        /// What went wrong.
        reason: String,
    },
    /// A bound on work at once is reached; asking again later succeeds.
    #[error("busy: {0}")]
    Busy(String),
    /// Content that does not match the digest it was promised under.
    #[error("{what}: content has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// Which blob (its source and digest).
        what: String,
        /// The digest promised.
        expected: Sha256Digest,
        /// The digest of what arrived.
        actual: Sha256Digest,
    },
    /// Content that does not have the size it was promised with.
    #[error("{what}: content is {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// Which blob.
        what: String,
        /// Size promised.
        expected: u64,
        /// Size read.
        actual: u64,
    },
    /// A release that exists already.
    #[error("release {0} already exists; releases are immutable (choose a new version)")]
    ReleaseExists(String),
    /// Not found.
    #[error("{0} not found")]
    NotFound(String),
    /// A version of a release name that the store does not hold.
    #[error("release {release} not found; this store holds {held}")]
    NotHeld {
        /// `name@version` asked for.
        release: String,
        /// What it holds of that name, in words.
        held: String,
    },
    /// A name, version or path refused.
    #[error(transparent)]
    Name(#[from] ferry_protocol::release::NameError),
    /// A stored object that does not decode.
    #[error("corrupt store object: {0}")]
    Codec(#[from] CodecError),
    /// The trust list.
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
    /// Something signed by a key this store does not trust.
    #[error(
        "{what} is signed by key {key}, which this store does not trust (see `ferry trust add`)"
    )]
    Untrusted {
        /// What was signed.
        what: String,
        /// The signer.
        key: ferry_protocol::KeyId,
    },
    /// A site name that is not valid.
    #[error("invalid site name {0:?}: use lowercase letters, digits, '.', '_', '-'")]
    SiteName(String),
    /// A release that exists already with different content.
    #[error("release {0} is already held with different content; refusing to replace it")]
    ReleaseConflict(String),
    /// A stored release whose signature fails.
    #[error("release {release}: {source}")]
    Signature {
        /// Which release.
        release: String,
        /// Why.
        source: ferry_protocol::SignatureError,
    },
}

impl StoreError {
    /// An I/O error on `path`: [`StoreError::NoSpace`] when the filesystem (or the user's quota) is full.
    pub(crate) fn io(path: impl AsRef<Path>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.as_ref().display().to_string();
        move |source| {
            if is_no_space(&source) {
                StoreError::NoSpace {
                    path,
                    detail: no_space_detail(&source),
                }
            } else {
                StoreError::Io { path, source }
            }
        }
    }

    /// Whether this is the store's filesystem running out of space.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::NoSpace { .. })
    }
}

fn no_space_detail(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::QuotaExceeded => "disk quota exceeded".into(),
        _ => "no space left on device".into(),
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) if is_no_space(&io) => StoreError::NoSpace {
                path: "the index database (index/)".into(),
                detail: no_space_detail(&io),
            },
            e => StoreError::Index(e),
        }
    }
}

/// A cheap, cloneable handle on an open store. Readers may use it from many threads while one ingest writes.
#[derive(Clone)]
pub struct Store(Arc<Shared>);

struct Shared {
    root: PathBuf,
    packs_dir: PathBuf,
    config: StoreConfig,
    key: SigningKey,
    db: sled::Db,
    /// chunk id → [`Location`]; also `P` + pack number (big-endian) → committed length.
    chunks: sled::Tree,
    /// recipe id → encoded recipe.
    recipes: sled::Tree,
    /// recipe id → its parts' resemblance sketches ([`crate::sketch::encode`]), written when first asked for.
    sketches: sled::Tree,
    /// blob id → sha256 ‖ size ‖ recipe id.
    blobs: sled::Tree,
    /// sha256 → blob id.
    sha256: sled::Tree,
    /// `name@version` → encoded signed release.
    releases: sled::Tree,
    /// name → last sequence number (big-endian u64).
    names: sled::Tree,
    /// site name → JSON ledger of what was shipped there.
    sites: sled::Tree,
    /// What was pushed to the registry: see [`pushed`].
    pushed: sled::Tree,
    /// name → JSON [`pins::Pin`] (tombstones included).
    pins: sled::Tree,
    /// Read handles on packs.
    files: Mutex<HashMap<u32, Arc<File>>>,
    /// The one writer.
    writer: Mutex<writer::PackWriter>,
    /// Held while recipes and blob records taken from the writer are written, so a commit returns only once
    /// everything queued before it is in the index. Taken while the writer is held, then the writer is let go:
    /// chunks keep arriving while tens of thousands of records land.
    meta: Mutex<()>,
    /// Blobs found complete by [`Store::accept_blobs`] whose releases have not been accepted yet, so accepting
    /// a release does not look every blob, recipe and chunk up a second time. A collection drops what it
    /// removes from here.
    complete: Mutex<HashSet<BlobRef>>,
    /// Gzip blobs being re-created into the cache (see [`gzip`]).
    recreations: gzip::cache::Recreations,
    /// Serialises publishing so sequence numbers are unique.
    publish: Mutex<()>,
    /// Bumped whenever a release becomes visible or something is pushed, so views built from them know to
    /// rebuild.
    generation: std::sync::atomic::AtomicU64,
    /// Operations running (see [`gc`]), and a signal when one ends.
    ops: Mutex<gc::Ops>,
    ops_done: std::sync::Condvar,
    /// Whether a collection is sweeping, so lookups note what they find in `notes`.
    noting: std::sync::atomic::AtomicBool,
    notes: Mutex<Option<gc::Notes>>,
    /// One collection at a time.
    gc: Mutex<()>,
    gc_totals: Mutex<gc::GcTotals>,
    /// The trust set as last read, with the stamp of `trust/` then.
    trusted: Mutex<Option<(Option<crate::membership::FileStamp>, crate::trust::TrustSet)>>,
    /// What [`Store::deliveries`] has read of the audit log.
    deliveries: Mutex<delivered::Cache>,
}

fn pack_len_key(n: u32) -> [u8; 5] {
    let mut k = [b'P'; 5];
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// How a stored blob is recorded.
fn blob_value(b: &BlobRef) -> [u8; 72] {
    let mut v = [0u8; 72];
    v[..32].copy_from_slice(&b.sha256.0 .0);
    v[32..40].copy_from_slice(&b.size.to_le_bytes());
    v[40..].copy_from_slice(b.recipe.as_bytes());
    v
}

fn blob_from_value(id: BlobId, v: &[u8]) -> Option<BlobRef> {
    if v.len() != 72 {
        return None;
    }
    Some(BlobRef {
        id,
        sha256: Sha256Digest(ferry_protocol::Hash32(v[..32].try_into().ok()?)),
        size: u64::from_le_bytes(v[32..40].try_into().ok()?),
        recipe: RecipeId::from_bytes(v[40..].try_into().ok()?),
    })
}

/// [`Store::disk_usage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskUsage {
    /// Pack files: every chunk, compressed.
    pub packs: u64,
    /// The sled index.
    pub index: u64,
    /// Caches (re-created gzip blobs), rebuilt when missing.
    pub cache: u64,
    /// Push uploads in progress.
    pub uploads: u64,
    /// All of the above.
    pub total: u64,
}

/// A release as stored, with the name the store knows it by.
#[derive(Clone, Debug)]
pub struct StoredRelease {
    /// The manifest (signature already verified when it was stored).
    pub manifest: ReleaseManifest,
    /// The signed envelope.
    pub signed: SignedRelease,
}

impl Store {
    /// Create a new store at `root` with `config` and a fresh publisher key.
    pub fn create(root: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        config.validate().map_err(|message| ConfigError::Parse {
            path: "chunking options".into(),
            message,
        })?;
        let cfg_path = root.join("config.toml");
        if cfg_path.exists() {
            return Err(StoreError::Exists(root.display().to_string()));
        }
        // Everything from here on is written private (or as the config says).
        config.apply_umask().map_err(|message| ConfigError::Parse {
            path: "umask".into(),
            message,
        })?;
        for d in [root.to_path_buf(), root.join("keys"), root.join("packs")] {
            std::fs::create_dir_all(&d).map_err(StoreError::io(&d))?;
        }
        keys::create(&root.join("keys/publisher.key"))?;
        crate::openpgp::RepoKey::create(&root.join(REPOSITORY_KEY))?;
        // config.toml last: its presence marks a complete store.
        let tmp = root.join("config.toml.tmp");
        std::fs::write(&tmp, config.to_toml()).map_err(StoreError::io(&tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(StoreError::io(&tmp))?;
        std::fs::rename(&tmp, &cfg_path).map_err(StoreError::io(&cfg_path))?;
        sync_dir(root)?;
        Store::open(root)
    }

    /// Open an existing store, recovering records written before a crash.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let cfg_path = root.join("config.toml");
        if !cfg_path.exists() {
            return Err(StoreError::NoStore(root.display().to_string()));
        }
        let config = StoreConfig::load(&cfg_path)?;
        config.apply_umask().map_err(|message| ConfigError::Parse {
            path: cfg_path.display().to_string(),
            message,
        })?;
        let key = keys::load(&root.join("keys/publisher.key"))?;
        let index_dir = root.join("index");
        let db = open_index(root, &index_dir)?;
        let packs_dir = root.join("packs");
        let shared = Shared {
            chunks: db.open_tree("chunks")?,
            recipes: db.open_tree("recipes")?,
            sketches: db.open_tree("sketches")?,
            blobs: db.open_tree("blobs")?,
            sha256: db.open_tree("sha256")?,
            releases: db.open_tree("releases")?,
            names: db.open_tree("names")?,
            sites: db.open_tree("sites")?,
            pushed: db.open_tree("pushed")?,
            pins: db.open_tree("pins")?,
            db,
            root: root.to_path_buf(),
            writer: Mutex::new(writer::PackWriter::default()),
            meta: Mutex::new(()),
            complete: Mutex::new(HashSet::new()),
            recreations: gzip::cache::Recreations::new(),
            packs_dir,
            config,
            key,
            files: Mutex::new(HashMap::new()),
            publish: Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(0),
            ops: Mutex::new(gc::Ops::default()),
            ops_done: std::sync::Condvar::new(),
            noting: std::sync::atomic::AtomicBool::new(false),
            notes: Mutex::new(None),
            gc: Mutex::new(()),
            trusted: Mutex::new(None),
            deliveries: Mutex::new(delivered::Cache::default()),
            gc_totals: Mutex::new(gc::GcTotals::default()),
        };
        let store = Store(Arc::new(shared));
        store.clean_cache();
        store.recover()?;
        Ok(store)
    }

    /// Index the verified records past each pack's committed length and cut off a torn tail.
    fn recover(&self) -> Result<(), StoreError> {
        let dir = &self.0.packs_dir;
        let list = packs::list(dir).map_err(StoreError::io(dir))?;
        for n in list {
            let committed = self.pack_committed(n)?;
            let path = packs::pack_path(dir, n);
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(StoreError::io(&path))?;
            let len = file.metadata().map_err(StoreError::io(&path))?.len();
            if len <= committed {
                continue;
            }
            let mut found = Vec::new();
            let mut good_end = committed;
            packs::scan(&file, n, committed, true, |s| {
                if s.verdict.is_ok() && good_end == s.loc.offset {
                    good_end = s.loc.end();
                    found.push((s.id, s.loc));
                }
            })
            .map_err(StoreError::io(&path))?;
            if good_end < len {
                file.set_len(good_end).map_err(StoreError::io(&path))?;
            }
            file.sync_all().map_err(StoreError::io(&path))?;
            // Keys one by one and the committed length last, as a commit writes them (see `commit_locked`).
            let mut kept = 0;
            for (id, loc) in &found {
                if !self.0.chunks.contains_key(id.as_bytes())? {
                    self.0
                        .chunks
                        .insert(id.as_bytes().as_slice(), loc.to_bytes().as_slice())?;
                    kept += 1;
                }
            }
            self.0.chunks.insert(
                pack_len_key(n).as_slice(),
                good_end.to_le_bytes().as_slice(),
            )?;
            self.0.db.flush()?;
            tracing::info!(
                pack = n,
                recovered = kept,
                cut = len - good_end,
                "recovered pack tail after an interrupted write"
            );
        }
        Ok(())
    }

    /// The committed length of pack `n` (0 if never committed).
    fn pack_committed(&self, n: u32) -> Result<u64, StoreError> {
        Ok(self
            .0
            .chunks
            .get(pack_len_key(n))?
            .and_then(|v| Some(u64::from_le_bytes(v.as_ref().try_into().ok()?)))
            .unwrap_or(0))
    }

    /// `work` on the blocking pool, with this store: how async code reads and writes the store (sled, pack
    /// files) without holding an async thread.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> T {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || work(&store)).await {
            Ok(t) => t,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.0.root
    }

    /// Bytes on disk by part of the store (files as their lengths; a part that is absent counts 0).
    pub fn disk_usage(&self) -> DiskUsage {
        fn size(dir: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .filter_map(Result::ok)
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => size(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                    _ => 0,
                })
                .sum()
        }
        let root = self.root();
        let packs = size(&self.0.packs_dir);
        let index = size(&root.join("index"));
        let cache = size(&root.join("cache"));
        let uploads = size(&root.join("uploads"));
        DiskUsage {
            packs,
            index,
            cache,
            uploads,
            total: packs + index + cache + uploads,
        }
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.0.config
    }

    /// The store's OpenPGP repository key (`keys/repository.asc`), made now for a store made before it existed.
    pub fn repository_key(&self) -> Result<crate::openpgp::RepoKey, StoreError> {
        Ok(crate::openpgp::RepoKey::load_or_create(
            &self.root().join(REPOSITORY_KEY),
        )?)
    }

    /// The publisher's public key.
    pub fn publisher(&self) -> PublisherKey {
        keys::public(&self.0.key)
    }

    /// Where chunk `id` is stored, if it is.
    pub fn chunk_location(&self, id: &ChunkId) -> Result<Option<Location>, StoreError> {
        self.note_chunk(id);
        Ok(self
            .0
            .chunks
            .get(id.as_bytes())?
            .and_then(|v| Location::from_bytes(&v)))
    }

    /// Whether chunk `id` is stored.
    pub fn has_chunk(&self, id: &ChunkId) -> Result<bool, StoreError> {
        self.note_chunk(id);
        Ok(self.0.chunks.contains_key(id.as_bytes())?)
    }

    fn pack_file(&self, n: u32) -> Result<Arc<File>, StoreError> {
        let mut files = self.0.files.lock().expect("pack file cache poisoned");
        if let Some(f) = files.get(&n) {
            return Ok(f.clone());
        }
        let path = packs::pack_path(&self.0.packs_dir, n);
        let f = Arc::new(File::open(&path).map_err(StoreError::io(&path))?);
        files.insert(n, f.clone());
        Ok(f)
    }

    /// Read and verify chunk `id`.
    pub fn read_chunk(&self, id: &ChunkId) -> Result<Vec<u8>, StoreError> {
        self.at_location(id, |file, loc| packs::read_record(file, loc, id))?
            .ok_or(StoreError::MissingChunk(*id))
    }

    /// Chunk `id` as stored — its pack record, a [`packs::HEADER_LEN`]-byte header then zstd bytes — for a
    /// peer, which verifies it; `None` if not held. Only the header is checked here.
    pub fn read_chunk_stored(
        &self,
        id: &ChunkId,
    ) -> Result<Option<(Location, Vec<u8>)>, StoreError> {
        self.at_location(id, |file, loc| {
            packs::read_stored(file, loc, id).map(|record| (*loc, record))
        })
    }

    /// Look chunk `id` up and read it with `read`. Compaction may move a chunk between the lookup and the
    /// read (the old pack deleted, or its number reused), so a failed read whose chunk has moved since is
    /// retried at the new place; a failure at an unchanged place is the error.
    fn at_location<T>(
        &self,
        id: &ChunkId,
        read: impl Fn(&File, &Location) -> Result<T, packs::RecordError>,
    ) -> Result<Option<T>, StoreError> {
        let mut loc = self.chunk_location(id)?;
        let mut tries = 0;
        loop {
            tries += 1;
            let Some(at) = loc else {
                return Ok(None);
            };
            let err = match self.pack_file(at.pack) {
                Ok(file) => match read(&file, &at) {
                    Ok(v) => return Ok(Some(v)),
                    Err(e) => self.record_error(&at, e),
                },
                Err(e) => e,
            };
            let now = self.chunk_location(id)?;
            if now == Some(at) || tries == 4 {
                return Err(err);
            }
            loc = now;
        }
    }

    fn record_error(&self, loc: &Location, e: packs::RecordError) -> StoreError {
        match e {
            packs::RecordError::Io(source) => StoreError::Io {
                path: packs::pack_path(&self.0.packs_dir, loc.pack)
                    .display()
                    .to_string(),
                source,
            },
            packs::RecordError::Corrupt(m) => StoreError::Corrupt(format!(
                "{}: {m}",
                packs::pack_path(&self.0.packs_dir, loc.pack).display()
            )),
        }
    }

    /// The recipe `id`, verified against its id.
    pub fn recipe(&self, id: &RecipeId) -> Result<Option<Recipe>, StoreError> {
        match self.recipe_bytes(id)? {
            Some(bytes) => Ok(Some(Recipe::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The encoded recipe `id`, verified against its id.
    pub fn recipe_bytes(&self, id: &RecipeId) -> Result<Option<Vec<u8>>, StoreError> {
        self.note_recipe(id);
        let Some(bytes) = self.0.recipes.get(id.as_bytes())? else {
            return Ok(None);
        };
        if RecipeId::of(&bytes) != *id {
            return Err(StoreError::Corrupt(format!(
                "recipe {id} does not match its id"
            )));
        }
        Ok(Some(bytes.to_vec()))
    }

    /// The resemblance sketch of each part of `recipe` (whose id is `id`), in part order; zero runs and small
    /// chunks have none (zeros). Kept in the index after the first call, which reads the recipe's chunks: when
    /// they are not kept yet and the recipe's content is larger than `budget`, `None`; else the content read
    /// is taken from `budget`.
    pub fn sketches(
        &self,
        id: &RecipeId,
        recipe: &Recipe,
        budget: &mut u64,
    ) -> Result<Option<Vec<crate::sketch::Sketch>>, StoreError> {
        use crate::sketch;
        let parts = recipe.parts();
        if let Some(kept) = self.0.sketches.get(id.as_bytes())? {
            if let Some(s) = sketch::decode(&kept, parts.len()) {
                return Ok(Some(s));
            }
        }
        let size = recipe.size();
        if size > *budget {
            return Ok(None);
        }
        *budget -= size;
        let mut of: HashMap<ChunkId, sketch::Sketch> = HashMap::new();
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            out.push(match p {
                Part::Zero { .. } => [0; sketch::SUPER_FEATURES],
                Part::Chunk { id, .. } => match of.get(id) {
                    Some(s) => *s,
                    None => {
                        let s = sketch::sketch(&self.read_chunk(id)?);
                        of.insert(*id, s);
                        s
                    }
                },
            });
        }
        self.0
            .sketches
            .insert(id.as_bytes(), sketch::encode(&out))?;
        Ok(Some(out))
    }

    /// A number that changes whenever a release becomes visible, or something is pushed, in this process.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn bump_generation(&self) {
        self.0
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The key this store signs with.
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0.key
    }

    /// The stored blob with this SHA-256, if any.
    pub fn blob_by_sha256(&self, digest: &Sha256Digest) -> Result<Option<BlobRef>, StoreError> {
        let Some(id) = self.0.sha256.get(digest.0 .0)? else {
            return Ok(None);
        };
        let id = BlobId::from_bytes(
            id.as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("sha256 index entry for {digest}")))?,
        );
        self.blob(&id)
    }

    /// The stored blob `id`, if any.
    pub fn blob(&self, id: &BlobId) -> Result<Option<BlobRef>, StoreError> {
        self.note_blob(id);
        Ok(self
            .0
            .blobs
            .get(id.as_bytes())?
            .and_then(|v| blob_from_value(*id, &v)))
    }

    /// Whether everything needed to rebuild `blob` is stored: its record, its recipe, every chunk.
    pub fn blob_complete(&self, blob: &BlobRef) -> Result<bool, StoreError> {
        // The record must be this blob's; its recipe may be another of the same bytes (each release keeps the
        // recipe it names, and the collector keeps both).
        match self.blob(&blob.id)? {
            Some(b) if b.sha256 == blob.sha256 && b.size == blob.size => {}
            _ => return Ok(false),
        }
        let Some(recipe) = self.recipe(&blob.recipe)? else {
            return Ok(false);
        };
        if recipe.size() != blob.size {
            return Ok(false);
        }
        for (id, _) in recipe.chunks() {
            if !self.has_chunk(&id)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next sequence number for releases called `name`.
    fn next_sequence(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self
            .0
            .names
            .get(name.as_bytes())?
            .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?)))
            .unwrap_or(0)
            + 1)
    }

    /// Sign and publish a release built by ingest. Fills in sequence, creation time and publisher; makes every
    /// pending write durable first and checks that each blob is complete, so a visible release is always whole.
    pub fn publish(
        &self,
        name: &str,
        version: &str,
        entries: Vec<ferry_protocol::Entry>,
    ) -> Result<ReleaseManifest, StoreError> {
        let _guard = self.0.publish.lock().expect("publish lock poisoned");
        let key = format!("{name}@{version}");
        if self.0.releases.contains_key(key.as_bytes())? {
            return Err(StoreError::ReleaseExists(key));
        }
        self.commit()?;
        let manifest = ReleaseManifest {
            name: name.to_string(),
            version: version.to_string(),
            kind: ReleaseKind::of(&entries),
            entries,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            sequence: self.next_sequence(name)?,
            publisher: self.publisher().id(),
        };
        manifest.validate()?;
        for blob in manifest.blobs() {
            if !self.blob_complete(&blob)? {
                return Err(StoreError::Corrupt(format!(
                    "release {key}: blob {} is not completely stored",
                    blob.sha256
                )));
            }
        }
        let signed = manifest.sign(&self.0.key);
        self.0
            .names
            .insert(name.as_bytes(), &manifest.sequence.to_be_bytes())?;
        self.0.releases.insert(key.as_bytes(), signed.encode())?;
        self.0.db.flush()?;
        self.bump_generation();
        Ok(manifest)
    }

    /// Every release, ordered by name then sequence.
    pub fn releases(&self) -> Result<Vec<StoredRelease>, StoreError> {
        let mut out = Vec::new();
        for item in self.0.releases.iter() {
            let (_, v) = item?;
            let signed = SignedRelease::decode(&v)?;
            let manifest = signed.manifest_unverified()?;
            out.push(StoredRelease { manifest, signed });
        }
        out.sort_by(|a, b| {
            (&a.manifest.name, a.manifest.sequence).cmp(&(&b.manifest.name, b.manifest.sequence))
        });
        Ok(out)
    }

    /// The release `name@version`, its signature verified against the store's trusted keys.
    pub fn release(&self, name: &str, version: &str) -> Result<ReleaseManifest, StoreError> {
        let key = format!("{name}@{version}");
        let signed = self
            .signed_release(&key)?
            .ok_or_else(|| StoreError::NotFound(format!("release {key}")))?;
        self.verify_release(&key, &signed)
    }

    /// The signed envelope of release `name@version`, if held (not verified here).
    pub fn signed_release(&self, id: &str) -> Result<Option<SignedRelease>, StoreError> {
        match self.0.releases.get(id.as_bytes())? {
            Some(bytes) => Ok(Some(SignedRelease::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Verify a signed release against the trusted keys; `what` names it in errors.
    pub fn verify_release(
        &self,
        what: &str,
        signed: &SignedRelease,
    ) -> Result<ReleaseManifest, StoreError> {
        let trust = self.trusted()?;
        let key = trust.get(signed.key).ok_or_else(|| StoreError::Untrusted {
            what: format!("release {what}"),
            key: signed.key,
        })?;
        signed.verify(key).map_err(|source| StoreError::Signature {
            release: what.to_string(),
            source,
        })
    }

    /// The keys this store accepts: its own and those added with `ferry trust add`. Kept in memory and read
    /// again when `trust/` changes (a key added or removed renames or removes a file in it).
    pub fn trusted(&self) -> Result<crate::trust::TrustSet, StoreError> {
        let dir = self.0.root.join("trust");
        let stamp = crate::membership::stamp(&dir).map_err(StoreError::io(&dir))?;
        let mut cached = self.0.trusted.lock().expect("trust cache poisoned");
        if let Some((at, set)) = cached.as_ref() {
            if *at == stamp {
                return Ok(set.clone());
            }
        }
        let set = crate::trust::load(&self.0.root, self.publisher())?;
        *cached = Some((stamp, set.clone()));
        Ok(set)
    }

    /// Trust another publisher's key. Returns false if it was trusted already.
    pub fn trust_add(&self, key: PublisherKey) -> Result<bool, StoreError> {
        let added = crate::trust::add(&self.0.root, self.publisher(), key)?;
        self.0.trusted.lock().expect("trust cache poisoned").take();
        Ok(added)
    }

    /// Stop trusting a key.
    pub fn trust_remove(&self, id: ferry_protocol::KeyId) -> Result<(), StoreError> {
        let removed = crate::trust::remove(&self.0.root, self.publisher(), id);
        self.0.trusted.lock().expect("trust cache poisoned").take();
        Ok(removed?)
    }

    /// Every chunk id a set of blobs needs, each once.
    pub fn chunks_of(
        &self,
        blobs: &[BlobRef],
    ) -> Result<std::collections::HashSet<ChunkId>, StoreError> {
        let mut out = std::collections::HashSet::new();
        let mut seen = std::collections::HashSet::new();
        for b in blobs {
            if !seen.insert(b.recipe) {
                continue;
            }
            let recipe = self.recipe(&b.recipe)?.ok_or(StoreError::MissingRecipe {
                recipe: b.recipe,
                for_blob: Some(b.sha256),
            })?;
            out.extend(recipe.chunks().map(|(id, _)| id));
        }
        Ok(out)
    }

    /// Bytes a chunk occupies in its pack (header included).
    pub fn stored_size(&self, id: &ChunkId) -> Result<u64, StoreError> {
        Ok(self
            .chunk_location(id)?
            .map(|l| packs::HEADER_LEN + u64::from(l.comp_len))
            .unwrap_or(0))
    }
}

/// Open the sled index. sled's lock outlives a closed handle by a moment (its background flusher lets go of
/// the database asynchronously), so a store closed and reopened at once, in this process or by a process that
/// just exited, is retried for up to two seconds before it counts as in use.
fn open_index(root: &Path, index_dir: &Path) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        clear_unfinished_snapshots(index_dir)?;
        let result = sled::Config::new()
            .path(index_dir)
            .cache_capacity(32 << 20)
            .open();
        match result {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(io))
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                if std::time::Instant::now() >= deadline {
                    return Err(StoreError::InUse(root.display().to_string()));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(other) => return Err(other.into()),
        }
    }
}

/// Remove the snapshot files sled began and never finished (`snap.LSN.generating`), when no process holds the
/// index. sled writes a snapshot to that name, fsyncs it, renames it to `snap.LSN` and only then removes the
/// older snapshot; so a `.generating` file left behind is by construction incomplete, and the snapshot before it
/// with the log after it recovers everything. But sled 0.34 counts it when it opens, takes the empty or
/// torn file for the newest snapshot and refuses the whole index as corrupt (sled issue 1527). Disk full during
/// a flush (ENOSPC while writing it) or a kill in the middle of one leaves exactly that, so a store that ran out
/// of space could not be opened again after space was freed. Done under sled's own lock on `db` (an exclusive
/// flock), so a snapshot another process is writing is never touched; a store in use is left to sled's retry.
fn clear_unfinished_snapshots(index_dir: &Path) -> Result<(), StoreError> {
    use rustix::fs::{flock, FlockOperation};
    let db = match File::open(index_dir.join("db")) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(index_dir.join("db"))(e)),
    };
    if flock(&db, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(());
    }
    let entries = std::fs::read_dir(index_dir).map_err(StoreError::io(index_dir))?;
    for entry in entries {
        let entry = entry.map_err(StoreError::io(index_dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let path = entry.path();
            tracing::warn!(path = %path.display(), "removing a snapshot sled never finished writing");
            std::fs::remove_file(&path).map_err(StoreError::io(&path))?;
        }
    }
    // The lock goes with `db`, before sled opens it.
    Ok(())
}

impl Store {
    /// Refuse to write `need` more bytes to `path` when that would leave the store's filesystem with less than
    /// the store's reserve (`reserve_bytes`) free, so the index always has room to record what packs hold.
    pub(crate) fn check_room(&self, need: u64, path: &Path) -> Result<(), StoreError> {
        let reserve = self.0.config.reserve_bytes;
        if reserve == 0 {
            return Ok(());
        }
        let st = rustix::fs::statvfs(&self.0.packs_dir)
            .map_err(|e| StoreError::io(&self.0.packs_dir)(e.into()))?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < need.saturating_add(reserve) {
            return Err(StoreError::NoSpace {
                path: path.display().to_string(),
                detail: format!(
                    "no space left for the store: {free} bytes free, and it keeps {reserve} free for its index \
                     (reserve_bytes in config.toml)"
                ),
            });
        }
        Ok(())
    }
}

/// fsync a directory so a rename or creation in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::Store;

    /// A snapshot sled began and never finished (what a full disk during a flush leaves: an empty
    /// `snap.LSN.generating`) no longer makes the index unopenable; it is removed and what was held reads back.
    #[test]
    fn an_unfinished_sled_snapshot_does_not_refuse_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let store = Store::create(&path, Default::default()).unwrap();
        let data = ferry_formats::testdata::random(300_000, 5);
        let blob = store
            .ingest_blob(&data[..], "d", None, &crate::progress::NoProgress)
            .unwrap()
            .blob;
        store.commit().unwrap();
        drop(store);
        let stale = path.join("index/snap.FFFFFFFFFFFFFFFF.generating");
        std::fs::write(&stale, b"").unwrap();
        let store = Store::open(&path).unwrap();
        assert!(!stale.exists());
        assert_eq!(store.read_blob(&blob).unwrap(), data);
    }
}
