//! Re-created gzip blobs: the cache (`STORE/cache/gzip/<blob>`, least recently used out first) and the
//! re-creations under way.
//!
//! A re-creation is a *job* shared by everyone who wants the blob: it writes into a temporary file of the
//! cache (`<blob>.tmp`), and readers read that file as it grows, so a pull that meets a blob being re-created
//! streams it as it is produced instead of waiting for the whole blob. The finished file is checked against
//! the blob's BLAKE3, SHA-256 and size before it is renamed into place; a temporary file is never served as
//! the cache, and one a crash left behind is removed when the store opens. At most `recreate_jobs` run at
//! once (config); the others wait for a place. A job started in the background (see [`crate::prewarm`]) runs
//! its pieces on a pool of one thread, so serving keeps a core; once a reader waits on it, its pieces go to
//! the whole pool. At most [`MAX_JOBS`] are under way or waiting; past that a new one is refused
//! ([`StoreError::Busy`]) until one ends.

use crate::store::{Store, StoreError};
use ferry_protocol::{BlobId, BlobRef, Recipe};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Re-creations under way or waiting for a place, at most (each holds a thread and a temporary file).
pub const MAX_JOBS: usize = 64;

/// What re-creating has done since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecreationStats {
    /// Re-creations started for a reader, and in the background.
    pub on_demand: u64,
    pub background: u64,
    /// Readers that read a blob while it was being re-created (rather than from the cache).
    pub streamed: u64,
    /// Re-creations that failed (logged, named).
    pub failed: u64,
    /// Running now, and waiting for a place.
    pub running: u64,
    pub waiting: u64,
}

/// The re-creations under way, and the bound on how many run at once.
pub(crate) struct Recreations {
    jobs: Mutex<HashMap<BlobId, Arc<Job>>>,
    stats: Mutex<RecreationStats>,
    running: Mutex<usize>,
    free: Condvar,
    /// Background jobs run their pieces here (one thread).
    background: rayon::ThreadPool,
}

impl Recreations {
    pub fn new() -> Recreations {
        Recreations {
            jobs: Mutex::new(HashMap::new()),
            stats: Mutex::new(RecreationStats::default()),
            running: Mutex::new(0),
            free: Condvar::new(),
            background: rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(|_| "ferry-recreate-bg".into())
                .build()
                .expect("a thread for background re-creation"),
        }
    }
}

/// One re-creation under way.
pub struct Job {
    blob: BlobRef,
    tmp: PathBuf,
    path: PathBuf,
    state: Mutex<State>,
    changed: Condvar,
    /// A reader waits on it: its pieces go to the whole pool.
    urgent: AtomicBool,
}

#[derive(Default)]
struct State {
    /// Bytes written to the temporary file so far.
    written: u64,
    /// The outcome, once there is one.
    done: Option<Result<(), String>>,
}

impl Job {
    /// Wait for the job's end; its outcome.
    pub fn wait(&self) -> Result<(), String> {
        let mut st = self.state.lock().expect("job state poisoned");
        loop {
            if let Some(done) = &st.done {
                return done.clone();
            }
            st = self.changed.wait(st).expect("job state poisoned");
        }
    }

    /// The blob re-created.
    pub fn blob(&self) -> &BlobRef {
        &self.blob
    }
}

/// Writes into a job's temporary file, telling its readers how far it got.
struct Progress<'a> {
    job: &'a Job,
    file: File,
    at: u64,
}

impl Write for Progress<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.file.write_all(b)?;
        self.at += b.len() as u64;
        let mut st = self.job.state.lock().expect("job state poisoned");
        st.written = self.at;
        drop(st);
        self.job.changed.notify_all();
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A re-created blob open for reading: from the cache, or from a re-creation under way (reads wait for the
/// bytes to be written, and fail if the re-creation does).
pub enum Recreated {
    /// The cached file.
    File(File),
    /// A re-creation under way, read at `pos`.
    Growing { job: Arc<Job>, file: File, pos: u64 },
}

impl Read for Recreated {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Recreated::File(f) => f.read(out),
            Recreated::Growing { job, file, pos } => {
                if out.is_empty() {
                    return Ok(0);
                }
                let mut st = job.state.lock().expect("job state poisoned");
                loop {
                    if *pos < st.written {
                        let n = ((st.written - *pos) as usize).min(out.len());
                        drop(st);
                        let k = file.read_at(&mut out[..n], *pos)?;
                        *pos += k as u64;
                        return Ok(k);
                    }
                    match &st.done {
                        Some(Ok(())) => return Ok(0),
                        Some(Err(e)) => return Err(io::Error::other(e.clone())),
                        None => st = job.changed.wait(st).expect("job state poisoned"),
                    }
                }
            }
        }
    }
}

impl Seek for Recreated {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match self {
            Recreated::File(f) => f.seek(to),
            Recreated::Growing { job, pos, .. } => {
                let size = job.blob.size as i64;
                let at = match to {
                    SeekFrom::Start(n) => n as i64,
                    SeekFrom::End(d) => size + d,
                    SeekFrom::Current(d) => *pos as i64 + d,
                };
                if at < 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "seek before the start",
                    ));
                }
                *pos = at as u64;
                Ok(*pos)
            }
        }
    }
}

/// Open a cached file and mark it used now (its mtime orders the cache).
fn open_touched(path: &Path) -> Option<File> {
    let f = File::options().read(true).write(true).open(path).ok()?;
    let _ = f.set_modified(std::time::SystemTime::now());
    Some(f)
}

impl Store {
    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.root().join("cache").join("gzip")
    }

    /// The cached re-creation of a blob, if there is one.
    pub(crate) fn cached_recreation(&self, blob: &BlobRef) -> Option<PathBuf> {
        let path = self.cache_dir().join(blob.id.to_string());
        path.is_file().then_some(path)
    }

    /// Remove what re-creations cut short by a crash left in the cache (called on open, before any job).
    pub(crate) fn clean_cache(&self) {
        let Ok(entries) = std::fs::read_dir(self.cache_dir()) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().contains(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Bytes the cache holds (finished files), and the bytes of the re-creations under way.
    pub fn cache_usage(&self) -> (u64, u64) {
        let held = std::fs::read_dir(self.cache_dir())
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| !e.file_name().to_string_lossy().contains(".tmp"))
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let jobs = self.0.recreations.jobs.lock().expect("jobs poisoned");
        (held, jobs.values().map(|j| j.blob.size).sum())
    }

    /// What re-creating has done since the store was opened.
    pub fn recreation_stats(&self) -> RecreationStats {
        *self.0.recreations.stats.lock().expect("stats poisoned")
    }

    fn count(&self, f: impl FnOnce(&mut RecreationStats)) {
        f(&mut self.0.recreations.stats.lock().expect("stats poisoned"));
    }

    /// Whether the blob is being re-created now.
    pub fn is_recreating(&self, blob: &BlobRef) -> bool {
        let jobs = self.0.recreations.jobs.lock().expect("jobs poisoned");
        jobs.contains_key(&blob.id)
    }

    /// The re-created bytes of a gzip blob, open for reading: from the cache, or from the re-creation under
    /// way (started now if there is none), read as it is written.
    pub fn recreated(&self, blob: &BlobRef, recipe: &Recipe) -> Result<Recreated, StoreError> {
        let path = self.cache_dir().join(blob.id.to_string());
        loop {
            if let Some(f) = open_touched(&path) {
                return Ok(Recreated::File(f));
            }
            let job = self.recreation(blob, recipe, true)?;
            match File::open(&job.tmp) {
                Ok(file) => {
                    self.count(|s| s.streamed += 1);
                    return Ok(Recreated::Growing { job, file, pos: 0 });
                }
                // Finished (renamed into the cache) or failed between the lookup and the open.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if let Err(e) = job.wait() {
                        return Err(StoreError::Corrupt(e));
                    }
                }
                Err(e) => return Err(StoreError::io(&job.tmp)(e)),
            }
        }
    }

    /// The re-creation of `blob`: the one under way, or a new one. `urgent` when a reader waits for it.
    pub fn recreation(
        &self,
        blob: &BlobRef,
        recipe: &Recipe,
        urgent: bool,
    ) -> Result<Arc<Job>, StoreError> {
        let r = &self.0.recreations;
        let mut jobs = r.jobs.lock().expect("jobs poisoned");
        if let Some(job) = jobs.get(&blob.id) {
            if urgent {
                job.urgent.store(true, Ordering::Relaxed);
            }
            return Ok(job.clone());
        }
        if jobs.len() >= MAX_JOBS {
            // Each job holds a thread and a temporary file while it waits: distinct cold blobs asked for at
            // once must not make them without end.
            return Err(StoreError::Busy(format!(
                "{} gzip re-creations are under way or waiting, the most this store queues; blob {} must wait \
                 for one to end",
                jobs.len(),
                blob.sha256
            )));
        }
        let dir = self.cache_dir();
        std::fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        let tmp = dir.join(format!("{}.tmp", blob.id));
        let file = File::create(&tmp).map_err(StoreError::io(&tmp))?;
        let job = Arc::new(Job {
            blob: *blob,
            tmp,
            path: dir.join(blob.id.to_string()),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            urgent: AtomicBool::new(urgent),
        });
        jobs.insert(blob.id, job.clone());
        drop(jobs);
        self.count(|s| {
            if urgent {
                s.on_demand += 1;
            } else {
                s.background += 1;
            }
            s.waiting += 1;
        });
        let (store, recipe, j) = (self.clone(), recipe.clone(), job.clone());
        std::thread::Builder::new()
            .name("ferry-recreate".into())
            .spawn(move || store.run_job(&j, &recipe, file))
            .map_err(|e| StoreError::Corrupt(format!("starting a re-creation: {e}")))?;
        Ok(job)
    }

    /// Run a job: wait for a place, re-create into its temporary file, check it, move it into the cache.
    fn run_job(&self, job: &Job, recipe: &Recipe, file: File) {
        let r = &self.0.recreations;
        let limit = self.config().recreate_jobs.max(1) as usize;
        {
            let mut running = r.running.lock().expect("running poisoned");
            while *running >= limit {
                running = r.free.wait(running).expect("running poisoned");
            }
            *running += 1;
        }
        self.count(|s| {
            s.waiting -= 1;
            s.running += 1;
        });
        let _op = self.begin("re-create");
        self.note_blob(&job.blob.id);
        let spawn = |work: Box<dyn FnOnce() + Send + 'static>| {
            if job.urgent.load(Ordering::Relaxed) {
                rayon::spawn(work)
            } else {
                r.background.spawn(work)
            }
        };
        let mut out = Progress { job, file, at: 0 };
        let made = self
            .recreate_with(&job.blob, recipe, &mut out, &spawn)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                std::fs::rename(&job.tmp, &job.path)
                    .map_err(|e| format!("{}: {e}", job.path.display()))
            });
        drop(out);
        if made.is_err() {
            let _ = std::fs::remove_file(&job.tmp);
        }
        if let Err(e) = &made {
            tracing::error!(blob = %job.blob.sha256, error = %e, "re-creating a gzip blob");
        }
        r.jobs.lock().expect("jobs poisoned").remove(&job.blob.id);
        {
            let mut st = job.state.lock().expect("job state poisoned");
            st.done = Some(made.clone());
        }
        job.changed.notify_all();
        {
            let mut running = r.running.lock().expect("running poisoned");
            *running -= 1;
        }
        r.free.notify_one();
        self.count(|s| {
            s.running -= 1;
            s.failed += made.is_err() as u64;
        });
        if made.is_ok() {
            self.trim_cache(&job.path);
        }
    }

    /// Remove the least recently used re-created blobs (never `keep`) until the cache fits its bound.
    fn trim_cache(&self, keep: &Path) {
        let cap = self.config().recreate_cache_bytes;
        let Ok(entries) = std::fs::read_dir(self.cache_dir()) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let m = e.metadata().ok()?;
                let name = e.file_name();
                (m.is_file() && !name.to_string_lossy().contains(".tmp")).then_some(())?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= cap {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}
