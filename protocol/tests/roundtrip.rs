//! Property tests: every top-level object survives encode → decode, and damaged bytes are refused, never panic.

use ed25519_dalek::SigningKey;
use ferry_protocol::*;
use proptest::prelude::*;

fn hash32() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        (hash32(), any::<u32>()).prop_map(|(h, len)| Part::Chunk {
            id: ChunkId(h),
            len
        }),
        any::<u32>().prop_map(|len| Part::Zero {
            len: u64::from(len)
        }),
    ]
}

fn recipe() -> impl Strategy<Value = Recipe> {
    prop_oneof![
        prop::collection::vec(part(), 0..64).prop_map(Recipe::concat),
        (
            any::<u64>(),
            prop::collection::vec(part(), 0..64),
            any::<prop::sample::Index>()
        )
            .prop_map(|(size, parts, at)| {
                let raw_parts = if parts.is_empty() {
                    0
                } else {
                    at.index(parts.len() + 1)
                };
                Recipe::Gzip {
                    size,
                    raw_size: parts[..raw_parts].iter().map(Part::len).sum(),
                    raw_parts: raw_parts as u32,
                    parts,
                }
            }),
    ]
}

fn blob_ref() -> impl Strategy<Value = BlobRef> {
    (hash32(), hash32(), any::<u64>(), hash32()).prop_map(|(a, b, size, c)| BlobRef {
        id: BlobId(a),
        sha256: Sha256Digest(b),
        size,
        recipe: RecipeId(c),
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    let text = "[a-z0-9._/-]{1,24}";
    prop_oneof![
        (text, any::<u32>(), blob_ref()).prop_map(|(path, mode, blob)| Entry::File(FileEntry {
            path,
            mode,
            blob
        })),
        (text, any::<u32>()).prop_map(|(path, mode)| Entry::Dir { path, mode }),
        (text, ".{0,40}").prop_map(|(path, target)| Entry::Symlink { path, target }),
        (
            proptest::option::of("[a-z0-9.:]{1,20}"),
            text,
            "[A-Za-z0-9_.-]{1,20}",
            hash32(),
            prop::collection::vec((".{0,30}", blob_ref()), 0..6)
        )
            .prop_map(|(registry, repository, tag, d, blobs)| {
                Entry::Image(ImageEntry {
                    registry,
                    repository,
                    tag,
                    digest: Sha256Digest(d),
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    blobs: blobs
                        .into_iter()
                        .map(|(media_type, blob)| ImageBlob { media_type, blob })
                        .collect(),
                })
            }),
    ]
}

fn manifest() -> impl Strategy<Value = ReleaseManifest> {
    (
        "[a-z0-9][a-z0-9._-]{0,20}",
        "[A-Za-z0-9][A-Za-z0-9._+-]{0,20}",
        prop::collection::vec(entry(), 0..12),
        any::<u64>(),
        any::<u64>(),
        any::<[u8; 8]>(),
    )
        .prop_map(
            |(name, version, entries, created, sequence, key)| ReleaseManifest {
                name,
                version,
                kind: ReleaseKind::of(&entries),
                entries,
                created,
                sequence,
                publisher: KeyId(key),
            },
        )
}

proptest! {
    #[test]
    fn recipe_round_trips(r in recipe()) {
        let bytes = r.encode();
        prop_assert_eq!(&bytes[..4], b"FRRY");
        let back = Recipe::decode(&bytes).unwrap();
        prop_assert!(back.is_consistent());
        prop_assert_eq!(back, r);
    }

    #[test]
    fn manifest_round_trips(m in manifest()) {
        prop_assert_eq!(ReleaseManifest::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn signed_release_round_trips_and_verifies(mut m in manifest(), seed in any::<[u8; 32]>()) {
        let key = SigningKey::from_bytes(&seed);
        let public = PublisherKey(key.verifying_key());
        m.publisher = public.id();
        let signed = m.sign(&key);
        let back = SignedRelease::decode(&signed.encode()).unwrap();
        prop_assert_eq!(back.verify(&public).unwrap(), m);
    }

    #[test]
    fn any_flipped_byte_in_a_signed_release_is_refused(
        m in manifest(), seed in any::<[u8; 32]>(), pos in any::<prop::sample::Index>(), bit in 0u8..8
    ) {
        let key = SigningKey::from_bytes(&seed);
        let public = PublisherKey(key.verifying_key());
        let mut m = m;
        m.publisher = public.id();
        let mut bytes = m.sign(&key).encode();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let accepted = SignedRelease::decode(&bytes).ok().and_then(|s| s.verify(&public).ok());
        prop_assert!(accepted.is_none(), "flipped bit {} of byte {} was accepted", bit, i);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Recipe::decode(&bytes);
        let _ = ReleaseManifest::decode(&bytes);
        let _ = SignedRelease::decode(&bytes);
        let _ = bundle::SignedIndex::decode(&bytes);
        let _ = bundle::BundleIndex::decode(&bytes).map(|i| i.check());
        let _ = bundle::HaveFile::decode(&bytes).map(|h| h.has_chunk(&ChunkId::of(&bytes)));
        let recipe = Recipe::concat(vec![Part::Chunk { id: ChunkId::of(b"x"), len: 3 }, Part::Chunk { id: ChunkId::of(b"y"), len: 4 }]);
        let diff = ferry_protocol::delta::RecipeDiff::new(&recipe, None, |p| p == 1);
        let table = bundle::part_table(&[diff]).unwrap();
        let _ = bundle::parse_records(&bytes, 0, &table, 1);
    }

    #[test]
    fn any_flipped_bit_in_a_signed_bundle_index_is_refused(
        m in manifest(), seed in any::<[u8; 32]>(), pos in any::<prop::sample::Index>(), bit in 0u8..8
    ) {
        let key = SigningKey::from_bytes(&seed);
        let public = PublisherKey(key.verifying_key());
        let mut m = m;
        m.publisher = public.id();
        let index = bundle::BundleIndex {
            created: 1,
            basis: bundle::Basis { releases: vec![m.id()], have: None, site: Some("lab".into()) },
            releases: vec![m.sign(&key)],
            recipes: vec![ferry_protocol::delta::RecipeDiff::new(&Recipe::concat(vec![]), None, |_| false)],
            bases: vec![(ferry_protocol::RecipeId::of(b"base"), ferry_protocol::BlobId::of(b"blob"))],
            zstd_level: 12,
            segments: vec![bundle::Segment { offset: 0, comp_len: 3, raw_len: 36, chunks: 1, first_part: 0 }],
            chunks: 1,
            payload_bytes: 0,
            delta_chunks: 1,
            delta_saved_bytes: 9,
            volumes: vec![bundle::Volume { size: 3, blake3: Hash32([7; 32]), blocks: vec![[1; 16]] }],
        };
        let good = index.sign(&key).encode();
        prop_assert_eq!(bundle::SignedIndex::decode(&good).unwrap().verify(&public).unwrap(), index);
        let mut bytes = good;
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let accepted = bundle::SignedIndex::decode(&bytes).ok().and_then(|s| s.verify(&public).ok());
        prop_assert!(accepted.is_none(), "flipped bit {} of byte {} was accepted", bit, i);
    }

    #[test]
    fn truncated_recipes_are_refused(r in recipe(), cut in any::<prop::sample::Index>()) {
        let bytes = r.encode();
        let n = cut.index(bytes.len());
        prop_assert!(Recipe::decode(&bytes[..n]).is_err());
    }
}

#[test]
fn objects_refuse_each_others_bytes() {
    let r = Recipe::concat(vec![Part::Zero { len: 5 }]);
    assert!(matches!(
        ReleaseManifest::decode(&r.encode()),
        Err(CodecError::WrongType { .. })
    ));
    let mut newer = r.encode();
    newer[5] = 0xff;
    assert!(matches!(
        Recipe::decode(&newer),
        Err(CodecError::UnsupportedVersion { .. })
    ));
}

#[test]
fn paths_that_escape_are_refused() {
    for bad in ["", "/etc/passwd", "a/../../b", "..", "a//b", "./a", "a/\0"] {
        assert!(validate_rel_path(bad).is_err(), "{bad:?}");
    }
    for good in ["a", "a/b/c.txt", "..hidden", "a/.b"] {
        assert!(validate_rel_path(good).is_ok(), "{good:?}");
    }
    assert!(validate_name("platform").is_ok());
    assert!(validate_name("Platform").is_err());
    assert!(validate_version("2026.11.2").is_ok());
    assert!(validate_version("1/2").is_err());
    // `current` names the newest version in mirror paths; no release may be called that.
    let reserved = validate_version("current").unwrap_err();
    assert!(reserved.to_string().contains("reserved"), "{reserved}");
    assert!(validate_version("current2").is_ok());
    assert!(validate_version("Current").is_ok());
}

#[test]
fn public_key_text_round_trips() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = PublisherKey(key.verifying_key());
    let line = public.to_line();
    assert_eq!(PublisherKey::from_line(&line).unwrap(), public);
    let tampered = line.replacen("ferry-ed25519 ", "ferry-ed25519 00", 1);
    assert!(PublisherKey::from_line(&tampered).is_err());
}
