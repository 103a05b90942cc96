//! Store behaviour at the library level: round trips, dedup, zero runs, crash recovery, fsck, concurrency.

use ferry_node::config::{Chunking, StoreConfig};
use ferry_node::ingest::{self, AddOptions, Source};
use ferry_node::{NoProgress, Store};
use ferry_protocol::{Part, Sha256Digest};
use std::io::Read;
use std::path::Path;

/// Deterministic, poorly compressible bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn small_store(dir: &Path) -> Store {
    let cfg = StoreConfig {
        chunking: Chunking {
            min: 4 << 10,
            avg: 16 << 10,
            max: 64 << 10,
            ..Chunking::default()
        },
        ..StoreConfig::default()
    };
    Store::create(dir, cfg).unwrap()
}

fn ingest(store: &Store, data: &[u8]) -> ferry_node::store::Ingested {
    let got = store.ingest_blob(data, "test", None, &NoProgress).unwrap();
    store.commit().unwrap();
    got
}

#[test]
fn blobs_round_trip_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    let a = noise(1, 3 << 20);
    let first = ingest(&store, &a);
    assert_eq!(first.blob.sha256, Sha256Digest::of(&a));
    assert_eq!(store.read_blob(&first.blob).unwrap(), a);
    assert!(first.stats.chunks_new > 100);

    // The same bytes again store nothing; an edit in the middle stores a few chunks.
    assert_eq!(ingest(&store, &a).stats.chunks_new, 0);
    let mut b = a.clone();
    b.splice(1_500_000..1_500_000, b"an insertion".iter().copied());
    let second = ingest(&store, &b);
    assert!(second.stats.chunks_new <= 4, "{:?}", second.stats);
    assert_eq!(store.read_blob(&second.blob).unwrap(), b);
}

#[test]
fn zero_runs_cost_nothing_and_come_back_as_holes() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    let mut disk = vec![0u8; 64 << 20];
    disk[10 << 20..11 << 20].copy_from_slice(&noise(2, 1 << 20));
    let got = ingest(&store, &disk);
    assert!(got.stats.stored_bytes_new < 2 << 20, "{:?}", got.stats);
    let recipe = store.recipe(&got.blob.recipe).unwrap().unwrap();
    let zeros: u64 = recipe
        .parts()
        .iter()
        .map(|p| match p {
            Part::Zero { len } => *len,
            _ => 0,
        })
        .sum();
    assert!(
        zeros > 60 << 20,
        "only {zeros} bytes were recognised as zero"
    );
    let out = dir.path().join("disk.img");
    store
        .write_blob_to_file(&got.blob, &out, &NoProgress)
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), disk);
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&out).unwrap().blocks() * 512;
    assert!(
        allocated < 8 << 20,
        "{allocated} bytes allocated for a sparse file"
    );
}

#[test]
fn uncommitted_pack_tail_is_recovered_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    // Larger than the writer's 4 MiB buffer, so most records reach the pack file before the "crash".
    let data = noise(3, 12 << 20);
    let chunks_first = {
        let store = small_store(dir.path());
        // Write chunks but never commit: as if killed after pack writes, before the index commit.
        let got = store
            .ingest_blob(&data[..], "test", None, &NoProgress)
            .unwrap();
        got.stats.chunks_new
    };
    assert!(
        std::fs::metadata(dir.path().join("packs/pack-000001.pack"))
            .unwrap()
            .len()
            > 4 << 20
    );
    // Reopen: whatever reached the pack file is indexed, so a retry stores only what never got there.
    let store = Store::open(dir.path()).unwrap();
    let retry = ingest(&store, &data);
    assert!(
        retry.stats.chunks_new < chunks_first / 2,
        "retry wrote {} of {} chunks again",
        retry.stats.chunks_new,
        chunks_first
    );
    assert_eq!(store.read_blob(&retry.blob).unwrap(), data);
    let report = store.fsck(&NoProgress).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    // Nothing was stored twice: pack bytes equal a clean store's.
    let clean_dir = tempfile::tempdir().unwrap();
    let clean = small_store(clean_dir.path());
    ingest(&clean, &data);
    assert_eq!(
        report.pack_bytes,
        clean.fsck(&NoProgress).unwrap().pack_bytes
    );
}

#[test]
fn torn_tail_is_cut_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(4, 1 << 20);
    {
        let store = small_store(dir.path());
        ingest(&store, &data);
    }
    let pack = dir.path().join("packs/pack-000001.pack");
    let good = std::fs::metadata(&pack).unwrap().len();
    // A half-written record: a header's worth of garbage.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&pack)
        .unwrap();
    std::io::Write::write_all(&mut f, b"FCHK but not really a record, torn by power loss").unwrap();
    drop(f);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(std::fs::metadata(&pack).unwrap().len(), good);
    assert!(store.fsck(&NoProgress).unwrap().ok);
}

#[test]
fn fsck_names_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let blob = {
        let store = small_store(dir.path());
        ingest(&store, &noise(5, 1 << 20)).blob
    };
    let pack = dir.path().join("packs/pack-000001.pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let report = store.fsck(&NoProgress).unwrap();
    assert!(!report.ok);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("pack-000001.pack")),
        "{:?}",
        report.problems
    );
    let mut out = Vec::new();
    let err = store.open_blob(&blob).unwrap().read_to_end(&mut out);
    assert!(err.is_err(), "a damaged chunk must not be served");
}

#[test]
fn readers_run_while_a_writer_ingests() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    let a = noise(6, 2 << 20);
    let first = ingest(&store, &a);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for seed in 10..16 {
                ingest(&store, &noise(seed, 2 << 20));
            }
        });
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..5 {
                    assert_eq!(store.read_blob(&first.blob).unwrap(), a);
                }
            });
        }
        writer.join().unwrap();
    });
    assert!(store.fsck(&NoProgress).unwrap().ok);
}

#[test]
fn a_release_is_signed_and_sequenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    let src = dir.path().join("payload.bin");
    std::fs::write(&src, noise(7, 100_000)).unwrap();
    let sources = [Source::File(src.clone())];
    let (m1, _) = ingest::add(
        &store,
        "tools",
        "1",
        &sources,
        &AddOptions::default(),
        &NoProgress,
    )
    .unwrap();
    let (m2, _) = ingest::add(
        &store,
        "tools",
        "2",
        &sources,
        &AddOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!((m1.sequence, m2.sequence), (1, 2));
    assert_eq!(m1.publisher, store.publisher().id());
    let again = ingest::add(
        &store,
        "tools",
        "1",
        &sources,
        &AddOptions::default(),
        &NoProgress,
    );
    assert!(again.is_err());
    assert_eq!(store.release("tools", "2").unwrap(), m2);
}

#[test]
fn buffered_cutting_matches_cutting_the_stream_whole() {
    // The writer cuts 8 MiB buffers and carries each buffer's last chunk over; the boundaries must be exactly
    // those of chunking the whole stream, or stores would disagree about chunk ids.
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    let data = noise(9, 20 << 20);
    let got = ingest(&store, &data);
    let recipe = store.recipe(&got.blob.recipe).unwrap().unwrap();
    let stored: Vec<u64> = recipe.parts().iter().map(|p| p.len()).collect();
    let whole: Vec<u64> = ferry_node::chunker::chunks(&data[..], &store.config().chunking)
        .map(|c| c.unwrap().len() as u64)
        .collect();
    assert_eq!(stored, whole);
}
