//! Recipes a sync fetched and the store does not hold yet, kept on disk until their blobs are recorded: peers
//! ask for them meanwhile, and the blobs' records need them at the end. In memory they were the largest part of a
//! large sync (76 MB encoded for a release of 1.5 M chunks, 117,000 recipes); here only the index is (~40 bytes a
//! recipe). The file is unnamed (`O_TMPFILE` or unlinked at once) in the store's `tmp/`, so nothing is left
//! behind by a sync that ends, fails or dies with the node.

use ferry_protocol::{Object, Recipe, RecipeId};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Fetched recipes by id: the bytes in an unnamed file, where each is in memory.
pub(crate) struct RecipeSpool {
    dir: PathBuf,
    /// Made at the first recipe (a sync that fetches none makes no file).
    file: Option<File>,
    end: u64,
    at: HashMap<RecipeId, (u64, u32)>,
}

/// A spool (recipes, the parked release) that could not be written or read back.
#[derive(Debug, thiserror::Error)]
#[error("the sync's spool in {dir}: {source}")]
pub struct SpoolError {
    /// The directory the spool file is in.
    pub dir: PathBuf,
    /// What failed.
    #[source]
    pub source: io::Error,
}

impl SpoolError {
    fn at(dir: &Path, source: io::Error) -> Self {
        SpoolError {
            dir: dir.to_path_buf(),
            source,
        }
    }
}

/// A new unnamed file in `dir` (created if missing).
fn unnamed_file(dir: &Path) -> Result<File, SpoolError> {
    std::fs::create_dir_all(dir)
        .and_then(|()| tempfile::tempfile_in(dir))
        .map_err(|e| SpoolError::at(dir, e))
}

/// `bytes` read back from a spool in `dir` decoded as `what`; bytes that no longer decode are the spool's error.
fn decode<T: Object>(dir: &Path, what: &str, bytes: &[u8]) -> Result<T, SpoolError> {
    T::decode(bytes).map_err(|e| {
        SpoolError::at(
            dir,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{what}, set aside during the sync, no longer decodes: {e}"),
            ),
        )
    })
}

impl RecipeSpool {
    /// A spool whose file will be made in `dir` (created if missing).
    pub(crate) fn new(dir: &Path) -> Self {
        RecipeSpool {
            dir: dir.to_path_buf(),
            file: None,
            end: 0,
            at: HashMap::new(),
        }
    }

    fn error(&self, source: io::Error) -> SpoolError {
        SpoolError::at(&self.dir, source)
    }

    /// Keep recipe `id`. One already kept stays as it is (a recipe's bytes are fixed by its id).
    pub(crate) fn insert(&mut self, id: RecipeId, bytes: &[u8]) -> Result<(), SpoolError> {
        if self.at.contains_key(&id) {
            return Ok(());
        }
        let len = u32::try_from(bytes.len())
            .map_err(|_| self.error(io::Error::other("a recipe over 4 GiB")))?;
        if self.file.is_none() {
            self.file = Some(unnamed_file(&self.dir)?);
        }
        let file = self.file.as_ref().expect("made above");
        file.write_all_at(bytes, self.end)
            .map_err(|e| self.error(e))?;
        self.at.insert(id, (self.end, len));
        self.end += u64::from(len);
        Ok(())
    }

    /// Recipe `id`, if kept.
    pub(crate) fn get(&self, id: &RecipeId) -> Result<Option<Vec<u8>>, SpoolError> {
        let (Some(&(offset, len)), Some(file)) = (self.at.get(id), self.file.as_ref()) else {
            return Ok(None);
        };
        let mut bytes = vec![0; len as usize];
        file.read_exact_at(&mut bytes, offset)
            .map_err(|e| self.error(e))?;
        Ok(Some(bytes))
    }

    /// Recipe `id` parsed, if kept.
    pub(crate) fn recipe(&self, id: &RecipeId) -> Result<Option<Recipe>, SpoolError> {
        let Some(bytes) = self.get(id)? else {
            return Ok(None);
        };
        decode(&self.dir, &format!("recipe {id}"), &bytes).map(Some)
    }

    /// The store holds these now: their copies go (the file's space with the file, at the sync's end).
    pub(crate) fn forget(&mut self, ids: &[RecipeId]) {
        for id in ids {
            self.at.remove(id);
        }
        if self.at.len() < self.at.capacity() / 4 {
            self.at.shrink_to_fit();
        }
    }

    /// Everything goes, the file too.
    pub(crate) fn clear(&mut self) {
        self.file = None;
        self.end = 0;
        self.at = HashMap::new();
    }
}

/// An object set aside on disk while a sync fetches (the signed release: 24 MB for a release of 100,000 files),
/// in an unnamed file of the store's `tmp/`, read back once at the end.
pub(crate) struct Parked {
    dir: PathBuf,
    file: File,
    len: usize,
}

impl Parked {
    /// Write `bytes` to a new unnamed file in `dir`.
    pub(crate) fn new(dir: &Path, bytes: &[u8]) -> Result<Self, SpoolError> {
        let file = unnamed_file(dir)?;
        file.write_all_at(bytes, 0)
            .map_err(|e| SpoolError::at(dir, e))?;
        Ok(Parked {
            dir: dir.to_path_buf(),
            file,
            len: bytes.len(),
        })
    }

    /// The object back, decoded (`what` names it in an error); the file goes.
    pub(crate) fn take<T: Object>(self, what: &str) -> Result<T, SpoolError> {
        let mut bytes = vec![0; self.len];
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| SpoolError::at(&self.dir, e))?;
        decode(&self.dir, what, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_come_back_as_kept_and_go_when_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let mut spool = RecipeSpool::new(&tmp);
        let a = RecipeId::of(b"a");
        let b = RecipeId::of(b"bb");
        assert_eq!(spool.get(&a).unwrap(), None);
        assert!(!tmp.exists(), "no recipe, no file");
        spool.insert(a, b"first recipe").unwrap();
        spool.insert(b, b"the second").unwrap();
        spool.insert(a, b"ignored: a is kept").unwrap();
        assert_eq!(spool.get(&a).unwrap().unwrap(), b"first recipe");
        assert_eq!(spool.get(&b).unwrap().unwrap(), b"the second");
        // Unnamed: the directory holds no file a crash could leave behind.
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        spool.forget(&[a]);
        assert_eq!(spool.get(&a).unwrap(), None);
        assert!(spool.get(&b).unwrap().is_some());
        spool.clear();
        assert_eq!(spool.get(&b).unwrap(), None);
    }

    #[test]
    fn a_parked_object_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let signed = ferry_protocol::SignedRelease {
            manifest: (0..100_000u32).map(|i| (i * 7) as u8).collect(),
            key: ferry_protocol::KeyId::of_public_key(&[7; 32]),
            signature: vec![1; 64],
        };
        let parked = Parked::new(dir.path(), &signed.encode()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let back: ferry_protocol::SignedRelease = parked.take("release a@1").unwrap();
        assert_eq!(back, signed);
        // Bytes that are not the object are an error that names the object and the directory.
        let parked = Parked::new(dir.path(), b"not a release").unwrap();
        let e = parked
            .take::<ferry_protocol::SignedRelease>("release a@1")
            .unwrap_err();
        assert!(e.to_string().contains("release a@1"), "{e}");
        assert!(
            e.to_string().contains(&dir.path().display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn a_spool_it_cannot_make_names_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let mut spool = RecipeSpool::new(&blocker.join("tmp"));
        let e = spool.insert(RecipeId::of(b"a"), b"recipe").unwrap_err();
        assert!(
            e.to_string().contains(&blocker.display().to_string()),
            "{e}"
        );
    }
}
