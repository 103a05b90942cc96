//! Export file entries as a tree.

use super::{io, ExportError};
use crate::progress::Progress;
use crate::store::Store;
use ferry_protocol::{Entry, ReleaseManifest};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Refuse to write through a symlink: every parent of `rel` inside `root` must be a real directory.
fn check_parents(root: &Path, rel: &str) -> Result<(), ExportError> {
    let mut at = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ExportError::Refused(format!(
                    "{}: refusing to write {rel} through a symlink",
                    at.display()
                )))
            }
            Ok(m) if !m.is_dir() => {
                return Err(ExportError::Refused(format!(
                    "{}: exists and is not a directory (needed for {rel})",
                    at.display()
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&at).map_err(io(&at))?
            }
            Err(e) => return Err(io(&at)(e)),
        }
    }
    Ok(())
}

/// Remove whatever non-directory stands at `path`, so we never write through an old symlink.
fn clear(path: &Path) -> Result<(), ExportError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => std::fs::remove_file(path).map_err(io(path)),
        _ => Ok(()),
    }
}

/// Write the file, directory and symlink entries of `release` below `root`. Returns how many entries were
/// written; image entries are skipped.
pub fn write(
    store: &Store,
    release: &ReleaseManifest,
    root: &Path,
    progress: &dyn Progress,
) -> Result<usize, ExportError> {
    release
        .validate()
        .map_err(|e| ExportError::Refused(e.to_string()))?;
    std::fs::create_dir_all(root).map_err(io(root))?;
    let mut dirs = Vec::new();
    let mut count = 0;
    for entry in &release.entries {
        let Some(rel) = entry.path() else { continue };
        check_parents(root, rel)?;
        let path = root.join(rel);
        match entry {
            Entry::Dir { mode, .. } => {
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    _ => {
                        clear(&path)?;
                        std::fs::create_dir(&path).map_err(io(&path))?;
                    }
                }
                dirs.push((path, *mode));
            }
            Entry::File(f) => {
                clear(&path)?;
                progress.start(rel, Some(f.blob.size));
                let name = path.file_name().expect("validated path").to_string_lossy();
                let tmp = path.with_file_name(format!(".{name}.ferry-partial"));
                super::write_then_rename(store, &f.blob, &tmp, &path, progress)?;
                progress.finish();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
                    .map_err(io(&path))?;
            }
            Entry::Symlink { target, .. } => {
                clear(&path)?;
                std::os::unix::fs::symlink(target, &path).map_err(io(&path))?;
            }
            _ => continue,
        }
        count += 1;
    }
    // Directory modes last, deepest first, so a read-only directory does not stop its own contents.
    for (path, mode) in dirs.into_iter().rev() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(io(&path))?;
    }
    Ok(count)
}
