//! `file:PATH` and `dir:PATH` sources: files and trees, byte for byte, with modes and symlinks.

use super::image::{self, Context};
use super::IngestError;
use crate::store::WriteStats;
use ferry_protocol::{Entry, FileEntry};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn store_file(
    ctx: &Context<'_>,
    path: &Path,
    rel: String,
    stats: &mut WriteStats,
) -> Result<Entry, IngestError> {
    let f = std::fs::File::open(path).map_err(IngestError::io(path))?;
    let meta = f.metadata().map_err(IngestError::io(path))?;
    let reopen = || -> std::io::Result<Box<dyn std::io::Read + Send>> {
        let f = std::fs::File::open(path)?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
    };
    let blob = image::store_stream_with(
        ctx,
        &rel,
        &path.display().to_string(),
        std::io::BufReader::with_capacity(1 << 20, f),
        Some(&reopen),
        Some(meta.len()),
        None,
        stats,
    )?;
    Ok(Entry::File(FileEntry {
        path: rel,
        mode: meta.permissions().mode() & 0o7777,
        blob,
    }))
}

/// One file, named by its base name.
pub fn ingest_file(
    ctx: &Context<'_>,
    path: &Path,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    let meta = std::fs::metadata(path).map_err(IngestError::io(path))?;
    if !meta.is_file() {
        return Err(IngestError::BadSource {
            source_text: format!("file:{}", path.display()),
            reason: "not a regular file (use dir: for a tree)".into(),
        });
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| IngestError::BadSource {
            source_text: format!("file:{}", path.display()),
            reason: "the file name is not UTF-8".into(),
        })?
        .to_string();
    entries.push(store_file(ctx, path, name, stats)?);
    Ok(())
}

/// A whole tree: directories, regular files and symlinks, in sorted order. Other kinds of file are refused.
pub fn ingest_dir(
    ctx: &Context<'_>,
    root: &Path,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    let meta = std::fs::metadata(root).map_err(IngestError::io(root))?;
    if !meta.is_dir() {
        return Err(IngestError::BadSource {
            source_text: format!("dir:{}", root.display()),
            reason: "not a directory".into(),
        });
    }
    for e in walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.map_err(|err| {
            let path = err.path().unwrap_or(root).to_path_buf();
            IngestError::io(path)(err.into())
        })?;
        let rel = relative(root, e.path())?;
        let ft = e.file_type();
        let entry = if ft.is_dir() {
            let mode = e
                .metadata()
                .map_err(|err| IngestError::io(e.path())(err.into()))?;
            Entry::Dir {
                path: rel,
                mode: mode.permissions().mode() & 0o7777,
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(e.path()).map_err(IngestError::io(e.path()))?;
            Entry::Symlink {
                path: rel,
                target: target.to_string_lossy().into_owned(),
            }
        } else if ft.is_file() {
            store_file(ctx, e.path(), rel, stats)?
        } else {
            return Err(IngestError::BadSource {
                source_text: e.path().display().to_string(),
                reason: "not a regular file, directory or symlink (sockets, FIFOs and devices are not carried)"
                    .into(),
            });
        };
        entries.push(entry);
    }
    Ok(())
}

/// `path`'s place under `root` (which walkdir found it under), as UTF-8.
pub(crate) fn relative(root: &Path, path: &Path) -> Result<String, IngestError> {
    path.strip_prefix(root)
        .expect("walkdir yields paths under the root")
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| IngestError::BadSource {
            source_text: path.display().to_string(),
            reason: "file name is not UTF-8".into(),
        })
}
