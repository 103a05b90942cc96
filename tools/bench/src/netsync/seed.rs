//! Seed stores, built once and cached in `WORK/fixtures/netsync/NAME/` (rebuilt when what they are made of
//! changes): the store, its publisher key and peer id, and the `ferry init` arguments every site of it shares.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::measure;
use crate::{mb, Bench};

/// The tree release of [`tree`] seeds.
pub(super) const TREE: &str = "tree@1";
/// The big release of the tree seed (loopback part, wan part with `--wan-release tree`) and the version pair
/// (delta part).
pub(super) const BIG: &str = TREE;
pub(super) const V1: &str = "delta@1";
pub(super) const V2: &str = "delta@2";
/// In v2, every this-many-th file (in path order, of those >= 4 KiB) has 64 bytes in its middle overwritten.
const CHANGE_EVERY: usize = 4;

/// A seed store ready to serve.
pub(crate) struct Seed {
    pub(crate) store: PathBuf,
    pub(crate) pubkey: PathBuf,
    pub(crate) id: String,
    /// `ferry init` arguments of the seed: chunking is fixed per site, so every site store of it is made alike.
    pub(crate) init: Vec<String>,
    /// What the build wrote down for the report (read back from the cache).
    pub(crate) notes: String,
}

impl Seed {
    /// The seed store `WORK/fixtures/netsync/NAME/seed`, built by `build(store, dir)` unless the cache was built
    /// from the same `stamp`; `build` returns notes kept beside it.
    pub(crate) fn cached(
        b: &Bench,
        name: &str,
        stamp: &str,
        init: &[&str],
        build: impl FnOnce(&Path, &Path) -> Result<String>,
    ) -> Result<Seed> {
        let dir = b.work.join("fixtures/netsync").join(name);
        let store = dir.join("seed");
        let pubkey = dir.join("seed.pub");
        let ready = dir.join("ready");
        let notes = dir.join("notes");
        let stamp = format!("{stamp}\ninit {init:?}\n");
        if fs::read_to_string(&ready).ok().as_deref() != Some(stamp.as_str()) {
            if dir.exists() {
                fs::remove_dir_all(&dir)?;
            }
            fs::create_dir_all(&dir)?;
            b.ferry(&store).arg("init").args(init).output()?;
            eprintln!(
                "ferry-bench: sync: building the seed store {}",
                store.display()
            );
            let n = build(&store, &dir)?;
            fs::write(&notes, n)?;
            let key = b.ferry(&store).args(["keys", "export"]).output()?;
            fs::write(&pubkey, key)?;
            fs::write(&ready, &stamp)?;
        }
        let id = b.ferry(&store).arg("id").output()?.trim().to_owned();
        Ok(Seed {
            store,
            pubkey,
            id,
            init: init.iter().map(|s| (*s).to_owned()).collect(),
            notes: fs::read_to_string(&notes).unwrap_or_default(),
        })
    }

    /// `ferry --json show RELEASE` on the seed.
    pub(crate) fn show(&self, b: &Bench, release: &str) -> Result<serde_json::Value> {
        let out = b
            .ferry(&self.store)
            .args(["--json", "show", release])
            .output()?;
        serde_json::from_str(&out).context("ferry --json show")
    }
}

/// A seed `NAME` holding [`TREE`] = `dir:SOURCE`, made with `ferry init INIT…`.
pub(super) fn tree(b: &Bench, name: &str, source: &Path, init: &[&str]) -> Result<Seed> {
    Seed::cached(
        b,
        name,
        &format!("{TREE} dir:{}", source.display()),
        init,
        |store, _| {
            add(b, store, TREE, &format!("dir:{}", source.display()))?;
            Ok(String::new())
        },
    )
}

/// `ferry add RELEASE SOURCE` (building a seed: not measured).
pub(super) fn add(b: &Bench, store: &Path, release: &str, source: &str) -> Result<()> {
    b.ferry(store)
        .args(["--json", "--no-progress", "add", release, source])
        .output()
        .map(drop)
}

/// The seed of the loopback and delta parts: [`BIG`] (a tree of ≥ 1 GB) and the version pair [`V1`], [`V2`].
pub(super) struct TreeSeed {
    pub(super) seed: Seed,
    /// The tree [`BIG`] was made of.
    pub(super) source: PathBuf,
    /// Apparent bytes and files of the source tree.
    source_bytes: u64,
    source_files: u64,
    delta_bytes: u64,
    changed_files: usize,
}

impl TreeSeed {
    pub(super) fn cached(b: &Bench, source: &Path, delta_source: &Path) -> Result<TreeSeed> {
        let stamp = format!(
            "{} {} {CHANGE_EVERY}",
            source.display(),
            delta_source.display()
        );
        let seed = Seed::cached(b, "tree", &stamp, &[], |store, dir| {
            add(b, store, BIG, &format!("dir:{}", source.display()))?;
            let (d1, d2) = (dir.join("delta-v1"), dir.join("delta-v2"));
            measure::Cmd::new("cp")
                .arg("-a")
                .arg(delta_source)
                .arg(&d1)
                .run()?;
            measure::Cmd::new("cp").arg("-a").arg(&d1).arg(&d2).run()?;
            change_files(&d2)?;
            for (rel, t) in [(V1, &d1), (V2, &d2)] {
                add(b, store, rel, &format!("dir:{}", t.display()))?;
            }
            Ok(String::new())
        })?;
        let d1 = seed
            .store
            .parent()
            .context("seed store has a parent")?
            .join("delta-v1");
        let (source_bytes, _, source_files) = measure::tree_size(source)?;
        let (delta_bytes, _, _) = measure::tree_size(&d1)?;
        Ok(TreeSeed {
            seed,
            source: source.to_owned(),
            source_bytes,
            source_files,
            delta_bytes,
            changed_files: changed_files(&d1)?.len(),
        })
    }

    /// The big release, for a part's text.
    pub(super) fn describe(&self) -> String {
        format!(
            "`{BIG}` = `dir:{}` ({} in {} files: a Rust toolchain — real binaries, libraries, sources, docs)",
            self.source.display(),
            mb(self.source_bytes),
            self.source_files
        )
    }

    /// The whole store, for the loopback and delta parts.
    pub(super) fn describe_all(&self, delta_source: &Path) -> String {
        format!(
            "Tree seed store (`WORK/fixtures/netsync/tree`, `ferry init` defaults): {}; `{V1}` = `dir:` of a copy \
             of `{}` ({}), `{V2}` = the same copy with 64 bytes overwritten in the middle of every \
             {CHANGE_EVERY}th file of at least 4 KiB, in path order ({} files changed).\n\n",
            self.describe(),
            delta_source.display(),
            mb(self.delta_bytes),
            self.changed_files,
        )
    }
}

/// The files of `root` that v2 changes: every [`CHANGE_EVERY`]th regular file of at least 4 KiB, in path order.
fn changed_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e?;
        if e.file_type().is_file() && e.metadata()?.len() >= 4096 {
            files.push(e.path().strip_prefix(root)?.to_owned());
        }
    }
    Ok(files.into_iter().step_by(CHANGE_EVERY).collect())
}

fn change_files(root: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    for rel in changed_files(root)? {
        let p = root.join(&rel);
        let len = fs::metadata(&p)?.len();
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .with_context(|| format!("open {}", p.display()))?;
        f.seek(SeekFrom::Start(len / 2))?;
        f.write_all(&[b'v'; 64])?;
    }
    Ok(())
}
