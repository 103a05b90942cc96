//! Writes the seeds made by Ferry's own encoders into `corpus/<target>/` (the seeds made from real files are
//! described in `corpus/README.md`): `tools/fuzz --build && target/debug/seeds node/fuzz/corpus`. Deterministic:
//! the same code writes the same bytes.

use ferry_protocol::bundle::{
    block_hash, part_table, write_delta, write_gap, Basis, BundleIndex, DeltaHeader, HaveFile,
    Segment, Volume, BLOCK_SIZE,
};
use ferry_protocol::delta::{output_check, Op, RecipeDiff, Reference, Shape};
use ferry_protocol::sync::{ChunkRecordHeader, SyncRequest, SyncResponse};
use ferry_protocol::{
    BlobId, BlobRef, ChunkId, Entry, FileEntry, Hash32, ImageBlob, ImageEntry, KeyId, Object, Part,
    Recipe, RecipeId, ReleaseKind, ReleaseManifest, Sha256Digest,
};
use std::path::{Path, PathBuf};

// Linked for the coverage callbacks the instrumented crates call (this program is built with the targets).
extern crate libfuzzer_sys;

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).expect("usage: seeds CORPUS_DIR"));
    let w = |target: &str, name: &str, bytes: &[u8]| write(&root, target, name, bytes);
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);

    // Protocol objects.
    let release = release();
    let signed = release.sign(&key);
    let (concat, gzip) = recipes();
    let index = index(&concat);
    let signed_index = index.sign(&key);
    w("codec", "release", &release.encode());
    w("codec", "signed-release", &signed.encode());
    w("codec", "recipe-concat", &concat.encode());
    w("codec", "recipe-gzip", &gzip.encode());
    w("codec", "bundle-index", &index.encode());
    w("codec", "signed-index", &signed_index.encode());
    for (i, r) in requests().iter().enumerate() {
        w("codec", &format!("request-{i}"), &r.encode());
    }
    for (i, r) in responses(&signed.encode(), &concat).iter().enumerate() {
        w("codec", &format!("response-{i}"), &r.encode());
    }
    w("bundle_index", "signed-index", &signed_index.encode());
    w("bundle_index", "index", &index.encode());
    let have = HaveFile::new(
        KeyId([3; 8]),
        1_700_000_000,
        vec![("app@1.0".into(), Hash32([9; 32]))],
        (0u32..40).map(|i| ChunkId::of(&i.to_le_bytes())),
    );
    w("have_file", "have", &have.encode());

    // Records against a table (the target's input format).
    let diff = diff(&concat);
    let table = part_table(std::slice::from_ref(&diff)).expect("a small table");
    let mut input = vec![table.len() as u8, 1, 0];
    for (i, s) in table.iter().enumerate() {
        let (kind, len) = match s {
            ferry_protocol::delta::Slot::Held => (0, 0),
            ferry_protocol::delta::Slot::Sent { len } => (1, *len),
            ferry_protocol::delta::Slot::Named { len, .. } => (2, *len),
            ferry_protocol::delta::Slot::Zero => (3, 0),
        };
        assert!(len < 1 << 16, "part {i} too long for the seed");
        input.push(kind);
        input.extend_from_slice(&(len as u16).to_le_bytes());
    }
    w(
        "records",
        "chunks-and-delta",
        &[&input[..], &segment(&table)].concat(),
    );

    // Data-plane streams: requests; then an answer and chunk records.
    let mut asks = vec![0u8];
    for r in requests() {
        frame(&mut asks, &r.encode());
    }
    w("frames", "requests", &asks);
    for (i, r) in responses(&signed.encode(), &concat).iter().enumerate() {
        let mut answer = vec![1u8];
        frame(&mut answer, &r.encode());
        if i == 0 {
            records(&mut answer);
        }
        w("frames", &format!("answer-{i}"), &answer);
    }

    // A tar, split in pieces of 512 (long names as GNU and pax records, a directory, a link, an empty file).
    w("tarsplit", "gnu", &[&[3u8][..], &tar(true)].concat());
    w("tarsplit", "pax", &[&[1u8][..], &tar(false)].concat());

    // Range and Content-Range values (8 bytes of size first).
    for (i, v) in [
        "bytes=0-99",
        "bytes=-5",
        "bytes=10-",
        "bytes=0-1,3-4",
        "bytes 0-1023/2048",
    ]
    .iter()
    .enumerate()
    {
        w(
            "range",
            &format!("value-{i}"),
            &[&1000u64.to_le_bytes()[..], v.as_bytes()].concat(),
        );
    }
    // Request paths.
    let digest = Sha256Digest::of(b"seed");
    for (i, p) in [
        "library/debian/manifests/latest".to_string(),
        format!("team/app/blobs/{digest}"),
        format!("team/app/referrers/{digest}"),
        "_catalog".into(),
        "team/app/tags/list".into(),
        "team/app/blobs/uploads/".into(),
        "team/app/blobs/uploads/0f3a-11".into(),
        "deb/1.0/pool/main/a/a%2Bb_1.0_all.deb".into(),
        "pypi/simple/demo/".into(),
    ]
    .iter()
    .enumerate()
    {
        w("paths", &format!("path-{i}"), p.as_bytes());
    }

    // recompose: raw bytes, headers and tokens of a real gzip (the target's input format).
    let gz = std::fs::read(root.join("decompose/text.gz")).expect("the decompose seed text.gz");
    let mut raw = Vec::new();
    let re = ferry_formats::deflate::decompose(&gz[..], &mut raw).expect("a gzip decomposes");
    let mut input = Vec::new();
    input.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    input.extend_from_slice(&(re.headers.len() as u32).to_le_bytes());
    input.extend_from_slice(&raw);
    input.extend_from_slice(&re.headers);
    input.extend_from_slice(&re.tokens);
    w("recompose", "text", &input);
}

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).expect("creating the corpus directory");
    std::fs::write(dir.join(name), bytes).expect("writing a seed");
}

fn blob(n: u8, size: u64) -> BlobRef {
    BlobRef {
        id: BlobId::of(&[n]),
        sha256: Sha256Digest::of(&[n]),
        size,
        recipe: RecipeId::of(&[n]),
    }
}

fn release() -> ReleaseManifest {
    let entries = vec![
        Entry::Image(ImageEntry {
            registry: Some("registry.example:5000".into()),
            repository: "team/app".into(),
            tag: "1.0".into(),
            digest: Sha256Digest::of(b"manifest"),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            blobs: vec![
                ImageBlob {
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    blob: blob(1, 400),
                },
                ImageBlob {
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    blob: blob(2, 1 << 20),
                },
            ],
        }),
        Entry::File(FileEntry {
            path: "docs/readme.txt".into(),
            mode: 0o644,
            blob: blob(3, 120),
        }),
        Entry::Dir {
            path: "docs".into(),
            mode: 0o755,
        },
        Entry::Symlink {
            path: "docs/latest".into(),
            target: "readme.txt".into(),
        },
    ];
    ReleaseManifest {
        name: "app".into(),
        version: "1.0".into(),
        kind: ReleaseKind::of(&entries),
        entries,
        created: 1_700_000_000,
        sequence: 3,
        publisher: KeyId([1; 8]),
    }
}

fn recipes() -> (Recipe, Recipe) {
    let chunk = |i: u32, len| Part::Chunk {
        id: ChunkId::of(&i.to_le_bytes()),
        len,
    };
    let concat = Recipe::concat(vec![
        chunk(0, 5),
        Part::Zero { len: 9 },
        chunk(1, 6),
        chunk(2, 5),
    ]);
    let gzip = Recipe::Gzip {
        size: 30,
        raw_size: 11,
        raw_parts: 2,
        parts: vec![chunk(0, 5), chunk(1, 6), chunk(3, 40)],
    };
    (concat, gzip)
}

/// `recipe` as a difference against itself: one part sent, one named, the rest copied.
fn diff(recipe: &Recipe) -> RecipeDiff {
    RecipeDiff {
        id: recipe.encode_with_id().0,
        shape: Shape::Concat,
        base: Some(0),
        ops: vec![
            Op::Chunk {
                id: ChunkId::of(&0u32.to_le_bytes()),
                len: 5,
            },
            Op::Zero { len: 9 },
            Op::Sent { len: 6 },
            Op::Copy { from: 3, n: 1 },
        ],
    }
}

fn index(base: &Recipe) -> BundleIndex {
    let volume = vec![0u8; 3000];
    BundleIndex {
        created: 1_700_000_000,
        basis: Basis {
            releases: vec!["app@0.9".into()],
            have: None,
            site: Some("plant-a".into()),
        },
        releases: vec![release().sign(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]))],
        recipes: vec![diff(base)],
        bases: vec![(base.encode_with_id().0, BlobId::of(b"base"))],
        zstd_level: 3,
        segments: vec![
            Segment {
                offset: 0,
                comp_len: 1000,
                raw_len: 4000,
                chunks: 2,
                first_part: 0,
            },
            Segment {
                offset: 1000,
                comp_len: 2000,
                raw_len: 9000,
                chunks: 1,
                first_part: 2,
            },
        ],
        chunks: 3,
        payload_bytes: 13_000,
        delta_chunks: 1,
        delta_saved_bytes: 100,
        volumes: vec![Volume {
            size: volume.len() as u64,
            blake3: Hash32(*blake3::hash(&volume).as_bytes()),
            blocks: volume.chunks(BLOCK_SIZE as usize).map(block_hash).collect(),
        }],
    }
}

/// A segment carrying part 0 as a chunk and part 2 as a delta against base 0.
fn segment(table: &[ferry_protocol::delta::Slot]) -> Vec<u8> {
    assert!(table.len() >= 3);
    let mut raw = Vec::new();
    write_gap(&mut raw, 0);
    raw.extend_from_slice(b"hello");
    let out = b"world!";
    let reference = b"hello world";
    let frame = ferry_node::delta::encode(reference, out, 3).expect("a delta encodes");
    let header = DeltaHeader {
        gaps: vec![1],
        base: 0,
        ranges: vec![(0, reference.len() as u64)],
        check: output_check(out),
    };
    write_delta(&mut raw, &header, &frame);
    raw
}

fn requests() -> Vec<SyncRequest> {
    let ids: Vec<ChunkId> = (0u32..3).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
    let recipe = RecipeId::of(b"recipe");
    vec![
        SyncRequest::Release {
            id: "app@1.0".into(),
        },
        SyncRequest::Recipes { ids: vec![recipe] },
        SyncRequest::Have {
            id: "app@1.0".into(),
        },
        SyncRequest::Chunks { ids: ids.clone() },
        SyncRequest::RecipeDiffs {
            wanted: vec![(recipe, Some(RecipeId::of(b"base"))), (recipe, None)],
        },
        SyncRequest::Delta {
            ids,
            reference: Reference {
                recipe,
                ranges: vec![(0, 4096), (8192, 100)],
            },
            level: 19,
        },
        SyncRequest::Sketches {
            recipes: vec![recipe],
        },
        SyncRequest::HaveChanges {
            id: "app@1.0".into(),
            since: Some(ferry_protocol::sync::HaveMark { epoch: 9, count: 3 }),
        },
    ]
}

fn responses(signed: &[u8], recipe: &Recipe) -> Vec<SyncResponse> {
    let reference: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut target = reference[100..200].to_vec();
    target[10] ^= 1;
    vec![
        SyncResponse::Release(signed.to_vec()),
        SyncResponse::Recipes(vec![Some(recipe.encode()), None]),
        SyncResponse::Whole,
        SyncResponse::Have(vec![0b1011_0001, 0xff, 0]),
        SyncResponse::Refused("lacks app@1.0".into()),
        SyncResponse::RecipeDiffs(vec![Some(diff(recipe)), None]),
        SyncResponse::Delta {
            frame: ferry_node::delta::encode(&reference, &target, 3).expect("a delta encodes"),
            check: output_check(&target),
        },
        SyncResponse::Sketches(vec![Some(vec![7; 48]), None]),
        SyncResponse::HaveChanges {
            mark: ferry_protocol::sync::HaveMark { epoch: 9, count: 5 },
            bits: None,
            added: vec![4, 1, 70_000],
        },
    ]
}

fn frame(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
}

/// Two chunk records, stored as zstd, and one the peer lacks.
fn records(out: &mut Vec<u8>) {
    for data in [&b"first chunk, first chunk"[..], b"second"] {
        let stored = zstd::bulk::compress(data, 3).expect("compressing");
        let h = ChunkRecordHeader {
            id: ChunkId::of(data),
            raw_len: data.len() as u32,
            stored_len: Some(stored.len() as u32),
        };
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(&stored);
    }
    let absent = ChunkRecordHeader {
        id: ChunkId::of(b"absent"),
        raw_len: 10,
        stored_len: None,
    };
    out.extend_from_slice(&absent.encode());
}

fn tar(gnu: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, size: u64| {
        let mut h = if gnu {
            tar::Header::new_gnu()
        } else {
            tar::Header::new_ustar()
        };
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h
    };
    let mut dir = header(tar::EntryType::Directory, 0);
    b.append_data(&mut dir, "usr/share/doc/", &[][..])
        .expect("a directory");
    let long = format!(
        "usr/share/doc/{}/copyright",
        "a-long-package-name".repeat(6)
    );
    if !gnu {
        b.append_pax_extensions([("path", long.as_bytes())])
            .expect("a pax record");
    }
    let text = b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n";
    let mut f = header(tar::EntryType::Regular, text.len() as u64);
    b.append_data(&mut f, &long, &text[..]).expect("a file");
    let mut e = header(tar::EntryType::Regular, 0);
    b.append_data(&mut e, "etc/empty", &[][..])
        .expect("an empty file");
    let mut l = header(tar::EntryType::Symlink, 0);
    b.append_link(&mut l, "usr/bin/app", "../lib/app/app")
        .expect("a link");
    b.into_inner().expect("a tar")
}
