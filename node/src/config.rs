//! The store's configuration file, `config.toml`.
//!
//! Chunking parameters live here because every node of a site must cut the same bytes into the same chunks, or
//! nothing dedups between them. They are fixed when the store is created.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Current store layout version.
pub const STORE_FORMAT: u32 = 1;

/// `config.toml` of a store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// Layout version of the store directory.
    pub format: u32,
    /// How blobs are cut into chunks.
    pub chunking: Chunking,
    /// zstd level for chunks in packs.
    pub zstd_level: i32,
    /// A pack is closed once it passes this size and a new one started.
    pub pack_target_bytes: u64,
    /// Re-created gzip blobs kept for serving (`cache/gzip/`), bytes; the least recently used go first.
    #[serde(default = "default_recreate_cache")]
    pub recreate_cache_bytes: u64,
    /// Gzip re-creations that may run at once (others wait for a place); each uses the whole pool.
    #[serde(default = "default_recreate_jobs")]
    pub recreate_jobs: u32,
    /// Versions of each release name `ferry gc` keeps besides the pinned one (the newest, by sequence).
    #[serde(default = "default_keep_versions")]
    pub keep_versions: u32,
    /// The file-creation mask (octal) of every process that opens the store: `077` (the default) keeps what it
    /// writes — packs, index, spool, caches, and outputs alike — to the user it runs as (files 0600,
    /// directories 0700); `027` lets the group read.
    #[serde(default = "default_umask")]
    pub umask: String,
    /// Bytes left free on the store's filesystem: pack writes stop short of it with a "no space" error, so the
    /// index always has room to record what the packs hold and a full disk never finds it mid-write. 0 turns
    /// the reserve off (the filesystem's own ENOSPC is then the only stop, and is handled too).
    #[serde(default = "default_reserve")]
    pub reserve_bytes: u64,
}

fn default_reserve() -> u64 {
    64 << 20
}

fn default_umask() -> String {
    "077".into()
}

fn default_keep_versions() -> u32 {
    2
}

fn default_recreate_cache() -> u64 {
    4 << 30
}

fn default_recreate_jobs() -> u32 {
    2
}

/// FastCDC parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunking {
    /// Algorithm name; only `fastcdc-v2020` exists.
    pub algorithm: ChunkAlgorithm,
    /// Smallest chunk, bytes.
    pub min: u32,
    /// Average chunk, bytes.
    pub avg: u32,
    /// Largest chunk, bytes.
    pub max: u32,
}

/// The content-defined chunking algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkAlgorithm {
    /// FastCDC as published in 2020 (normalised chunking, level 1).
    #[serde(rename = "fastcdc-v2020")]
    FastCdc2020,
}

impl Default for Chunking {
    fn default() -> Self {
        Chunking {
            algorithm: ChunkAlgorithm::FastCdc2020,
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            format: STORE_FORMAT,
            chunking: Chunking::default(),
            zstd_level: 3,
            pack_target_bytes: 512 << 20,
            recreate_cache_bytes: default_recreate_cache(),
            recreate_jobs: default_recreate_jobs(),
            keep_versions: default_keep_versions(),
            umask: default_umask(),
            reserve_bytes: default_reserve(),
        }
    }
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not valid TOML for a store config.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl StoreConfig {
    /// The file-creation mask, checked.
    pub fn umask(&self) -> Result<u32, String> {
        u32::from_str_radix(&self.umask, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                format!(
                    "umask {:?} is not an octal mask (e.g. \"077\" or \"027\")",
                    self.umask
                )
            })
    }

    /// Make the process create files as [`StoreConfig::umask`] says.
    pub fn apply_umask(&self) -> Result<(), String> {
        let mask = self.umask()?;
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
        Ok(())
    }

    /// Check the values are usable.
    pub fn validate(&self) -> Result<(), String> {
        self.umask()?;
        let c = &self.chunking;
        if self.format != STORE_FORMAT {
            return Err(format!(
                "store format {} is not supported (this ferry reads {STORE_FORMAT})",
                self.format
            ));
        }
        // The bounds fastcdc v2020 accepts.
        if !(64..=1 << 20).contains(&c.min)
            || !(256..=4 << 20).contains(&c.avg)
            || !(1024..=16 << 20).contains(&c.max)
        {
            return Err(format!(
                "chunk sizes {}/{}/{} are outside FastCDC's bounds (min 64..1MiB, avg 256..4MiB, max 1KiB..16MiB)",
                c.min, c.avg, c.max
            ));
        }
        if !(c.min <= c.avg && c.avg <= c.max) {
            return Err(format!(
                "chunk sizes must satisfy min <= avg <= max, got {}/{}/{}",
                c.min, c.avg, c.max
            ));
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(format!("zstd level {} is outside 1..=22", self.zstd_level));
        }
        if self.keep_versions == 0 {
            return Err(
                "keep_versions must be at least 1 (the newest version of a name is always kept)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let cfg: StoreConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.message().to_string(),
        })?;
        cfg.validate().map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })?;
        Ok(cfg)
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).expect("config serialises");
        format!(
            "# Ferry store configuration. Chunking must be identical on every node of a site;\n\
             # it is fixed when the store is created.\n{body}"
        )
    }
}
