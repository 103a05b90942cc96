//! `yum:DIR[?into=PREFIX]`: a yum/dnf repository (rpm-md), carried byte for byte — so `repomd.xml.asc` and
//! every package signature stay valid — after checking that it is whole. With `keyring=PATH`, `repomd.xml`
//! must carry a good detached signature (`repomd.xml.asc`) by a key of that keyring. With `packages=…` it is a
//! partial mirror ([`partial`]): the packages asked for and their dependency closure, with metadata of its own
//! signed by the store's repository key.
//!
//! The tree is stored as `dir:` stores it (files, directories, symlinks, modes) under PREFIX (default `yum`).
//! Before anything is stored: `repodata/repomd.xml` must exist and parse; every file it lists
//! (`<location href>`) must exist and match its `<checksum>` and `<size>`, and its `<open-checksum>` when the
//! file is gzip, zstd or plain; the primary metadata (gzip, zstd or plain) is read and every package it lists
//! must exist with its recorded size. Every package's checksum is then compared with the one computed while
//! storing it. A mismatch names the file, the expected and the actual digest; missing packages are all named.
//! Checksum types: sha256, sha224, sha384, sha512 (`sha`/`sha1`/`md5` are refused as unverifiable).

pub mod closure;
pub mod partial;
pub mod rpmver;

use super::image::Context;
use super::pkgtree::DIR_MODE;
use super::IngestError;
use crate::store::WriteStats;
use ferry_protocol::Entry;
use quick_xml::events::{BytesStart, Event};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// A `yum:` source: the repository directory and what to take of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YumSource {
    /// The repository (holding `repodata/`).
    pub dir: std::path::PathBuf,
    /// Where in the release the repository goes: a relative path, or empty for the release's root.
    pub into: String,
    /// A keyring of upstream keys, one of which must have signed `repodata/repomd.xml`.
    pub keyring: Option<std::path::PathBuf>,
    /// A partial mirror: these packages and their closure; `None` carries the repository whole.
    pub partial: Option<Partial>,
}

/// What a partial yum mirror takes (`packages=`, `packages-file=` and the closure's options).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Partial {
    /// The packages asked for in the source string.
    pub packages: Vec<closure::Request>,
    /// A file listing more (one per line, `#` comments).
    pub packages_file: Option<std::path::PathBuf>,
    /// `arch=` (`x86_64` by default): packages of it and `noarch` are taken.
    pub arch: String,
    /// `recommends=yes`: weak dependencies too.
    pub recommends: bool,
    /// `alternatives=all`.
    pub all_alternatives: bool,
    /// `allow-missing=yes`.
    pub allow_missing: bool,
}

/// The architecture a partial mirror resolves for when `arch=` is not given.
pub const DEFAULT_ARCH: &str = "x86_64";

impl YumSource {
    /// Parse what follows `yum:` — `DIR[?KEY=VALUE&…]`; a `DIR` that exists as given is taken whole.
    pub fn parse(rest: &str) -> Result<YumSource, String> {
        let (dir, query) = match rest.rsplit_once('?') {
            Some((dir, query)) if !Path::new(rest).exists() => (dir, Some(query)),
            _ => (rest, None),
        };
        if dir.is_empty() {
            return Err("the path is empty".into());
        }
        let mut src = YumSource {
            dir: dir.into(),
            into: DEFAULT_PREFIX.to_string(),
            keyring: None,
            partial: None,
        };
        let mut partial = Partial {
            arch: DEFAULT_ARCH.into(),
            ..Partial::default()
        };
        let mut wants_partial = false;
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))?;
            let yes = || match v {
                "yes" | "true" | "1" => Ok(true),
                "no" | "false" | "0" => Ok(false),
                _ => Err(format!("{k}={v}: say yes or no")),
            };
            match k {
                "into" => src.into = v.trim_end_matches('/').to_string(),
                "keyring" => src.keyring = Some(v.into()),
                "packages" => {
                    for p in v.split(',').filter(|s| !s.trim().is_empty()) {
                        partial.packages.push(closure::Request::parse(p)?);
                    }
                    wants_partial = true;
                }
                "packages-file" => {
                    partial.packages_file = Some(v.into());
                    wants_partial = true;
                }
                "arch" if !v.is_empty() && !v.contains(['/', ',']) => partial.arch = v.into(),
                "arch" => return Err(format!("arch={v:?}: name one architecture, e.g. x86_64")),
                "recommends" => partial.recommends = yes()?,
                "alternatives" if v == "all" => partial.all_alternatives = true,
                "alternatives" if v == "first" => partial.all_alternatives = false,
                "alternatives" => return Err(format!("alternatives={v}: say first or all")),
                "allow-missing" => partial.allow_missing = yes()?,
                _ => {
                    return Err(format!(
                        "unknown option {k:?}: use into, keyring, packages, packages-file, arch, recommends, \
                         alternatives or allow-missing"
                    ))
                }
            }
        }
        if wants_partial {
            src.partial = Some(partial);
        } else if partial
            != (Partial {
                arch: DEFAULT_ARCH.into(),
                ..Partial::default()
            })
        {
            return Err(
                "arch, recommends, alternatives and allow-missing shape a partial mirror: name its packages= or packages-file="
                    .into(),
            );
        }
        if !src.into.is_empty() {
            ferry_protocol::validate_rel_path(&src.into).map_err(|e| format!("?into=: {e}"))?;
        }
        Ok(src)
    }

    /// The source as it would be written.
    pub fn describe(&self) -> String {
        let mut s = format!("yum:{}?into={}", self.dir.display(), self.into);
        if let Some(k) = &self.keyring {
            s.push_str(&format!("&keyring={}", k.display()));
        }
        if let Some(p) = &self.partial {
            let names: Vec<&str> = p.packages.iter().map(|r| r.text.as_str()).collect();
            if !names.is_empty() {
                s.push_str(&format!("&packages={}", names.join(",")));
            }
            if let Some(f) = &p.packages_file {
                s.push_str(&format!("&packages-file={}", f.display()));
            }
        }
        s
    }
}

/// The prefix when `?into=` is not given.
pub const DEFAULT_PREFIX: &str = "yum";
/// `repomd.xml` larger than this is refused.
const REPOMD_CAP: u64 = 16 << 20;
/// How many missing packages an error names before it only counts.
const NAMED_MISSING: usize = 20;

/// A checksum as rpm-md writes it: a type and a hex value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checksum {
    /// `sha256`, …
    pub kind: String,
    /// Lowercase hex.
    pub hex: String,
}

/// One `<data>` of `repomd.xml`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoData {
    /// `type` (`primary`, `filelists`, `other`, `primary_db`, `updateinfo`, `modules`, …).
    pub kind: String,
    /// `<location href>`, relative to the repository root.
    pub href: String,
    /// `<checksum>` of the file as stored.
    pub checksum: Option<Checksum>,
    /// `<open-checksum>` of its decompressed content.
    pub open_checksum: Option<Checksum>,
    /// `<size>`.
    pub size: Option<u64>,
}

/// One `<package>` of the primary metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Package {
    /// `<name>`.
    pub name: String,
    /// `<location href>`.
    pub href: String,
    /// `<location xml:base>`: the package lives elsewhere.
    pub base: Option<String>,
    /// `<checksum>`.
    pub checksum: Option<Checksum>,
    /// `<size package>`.
    pub size: Option<u64>,
}

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, String> {
    match e.try_get_attribute(name) {
        Ok(Some(a)) => a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| Some(v.into_owned()))
            .map_err(|e| e.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Walk an XML document, calling `on` with (depth, event) for start/empty elements, element text and ends.
/// Depth counts from 1 for the root element.
fn walk<R: BufRead>(
    reader: R,
    mut on: impl FnMut(usize, Xml<'_>) -> Result<(), String>,
) -> Result<(), String> {
    let mut r = quick_xml::Reader::from_reader(reader);
    r.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    loop {
        let ev = r
            .read_event_into(&mut buf)
            .map_err(|e| format!("XML at byte {}: {e}", r.error_position()))?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                on(depth, Xml::Start(&e))?;
            }
            Event::Empty(e) => {
                on(depth + 1, Xml::Start(&e))?;
                on(depth + 1, Xml::End(e.local_name().as_ref()))?;
            }
            Event::Text(t) => on(depth, Xml::Text(&t.xml10_content()))?,
            Event::CData(t) => on(depth, Xml::Text(&t))?,
            Event::End(e) => {
                on(depth, Xml::End(e.local_name().as_ref()))?;
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if depth != 0 {
        return Err("XML ends inside an element".into());
    }
    Ok(())
}

enum Xml<'a> {
    Start(&'a BytesStart<'a>),
    Text(&'a str),
    End(&'a str),
}

fn checksum_of(e: &BytesStart<'_>) -> Result<Checksum, String> {
    Ok(Checksum {
        kind: attr(e, "type")?.unwrap_or_default().to_ascii_lowercase(),
        hex: String::new(),
    })
}

fn number(text: &str, what: &str) -> Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("<{what}> is not a number: {text:?}"))
}

/// Parse `repomd.xml`: every `<data>`.
pub fn parse_repomd(bytes: &[u8]) -> Result<Vec<RepoData>, String> {
    let mut out = Vec::new();
    let mut cur: Option<RepoData> = None;
    let mut field: Option<&'static str> = None;
    let mut root_seen = false;
    walk(bytes, |depth, ev| {
        match ev {
            Xml::Start(e) => match (depth, e.local_name().as_ref()) {
                (1, "repomd") => root_seen = true,
                (1, other) => return Err(format!("the root element is <{}>, not <repomd>", other)),
                (2, "data") => {
                    cur = Some(RepoData {
                        kind: attr(e, "type")?.unwrap_or_default(),
                        ..RepoData::default()
                    })
                }
                (3, name) => {
                    let Some(d) = cur.as_mut() else { return Ok(()) };
                    match name {
                        "location" => {
                            d.href = attr(e, "href")?.ok_or("a <location> without href")?;
                        }
                        "checksum" => {
                            d.checksum = Some(checksum_of(e)?);
                            field = Some("checksum");
                        }
                        "open-checksum" => {
                            d.open_checksum = Some(checksum_of(e)?);
                            field = Some("open-checksum");
                        }
                        "size" => field = Some("size"),
                        _ => {}
                    }
                }
                _ => {}
            },
            Xml::Text(t) => {
                if let (Some(d), Some(f), 3) = (cur.as_mut(), field, depth) {
                    match f {
                        "checksum" => {
                            d.checksum.as_mut().expect("set at start").hex =
                                t.trim().to_ascii_lowercase()
                        }
                        "open-checksum" => {
                            d.open_checksum.as_mut().expect("set at start").hex =
                                t.trim().to_ascii_lowercase()
                        }
                        _ => d.size = Some(number(t, "size")?),
                    }
                }
            }
            Xml::End(name) => {
                field = None;
                if depth == 2 && name == "data" {
                    let d = cur.take().expect("a <data> is open");
                    if d.href.is_empty() {
                        return Err(format!("<data type={:?}> has no <location href>", d.kind));
                    }
                    out.push(d);
                }
            }
        }
        Ok(())
    })?;
    if !root_seen {
        return Err("no <repomd> element".into());
    }
    Ok(out)
}

/// Parse primary metadata (`<metadata><package>…`) from a reader, streaming.
pub fn parse_primary<R: BufRead>(reader: R) -> Result<Vec<Package>, String> {
    let mut out = Vec::new();
    let mut cur: Option<Package> = None;
    let mut field: Option<&'static str> = None;
    walk(reader, |depth, ev| {
        match ev {
            Xml::Start(e) => match (depth, e.local_name().as_ref()) {
                (1, "metadata") => {}
                (1, other) => {
                    return Err(format!("the root element is <{}>, not <metadata>", other))
                }
                (2, "package") => cur = Some(Package::default()),
                (3, name) => {
                    let Some(p) = cur.as_mut() else { return Ok(()) };
                    match name {
                        "name" => field = Some("name"),
                        "checksum" => {
                            p.checksum = Some(checksum_of(e)?);
                            field = Some("checksum");
                        }
                        "location" => {
                            p.href = attr(e, "href")?.ok_or("a <location> without href")?;
                            p.base = attr(e, "xml:base")?;
                        }
                        "size" => {
                            if let Some(s) = attr(e, "package")? {
                                p.size = Some(number(&s, "size package")?);
                            }
                        }
                        _ => {}
                    }
                }
                _ => {}
            },
            Xml::Text(t) => {
                if let (Some(p), Some(f), 3) = (cur.as_mut(), field, depth) {
                    match f {
                        "name" => p.name = t.trim().to_string(),
                        _ => {
                            p.checksum.as_mut().expect("set at start").hex =
                                t.trim().to_ascii_lowercase()
                        }
                    }
                }
            }
            Xml::End(name) => {
                field = None;
                if depth == 2 && name == "package" {
                    let p = cur.take().expect("a <package> is open");
                    if p.href.is_empty() {
                        return Err(format!("package {:?} has no <location href>", p.name));
                    }
                    out.push(p);
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// A running digest of one of the types rpm-md uses.
enum Hasher {
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(kind: &str) -> Result<Hasher, String> {
        use sha2::Digest;
        Ok(match kind {
            "sha224" => Hasher::Sha224(sha2::Sha224::new()),
            "sha256" => Hasher::Sha256(sha2::Sha256::new()),
            "sha384" => Hasher::Sha384(sha2::Sha384::new()),
            "sha512" => Hasher::Sha512(sha2::Sha512::new()),
            other => {
                return Err(format!(
                    "checksum type {other:?} is not supported (sha224, sha256, sha384, sha512)"
                ))
            }
        })
    }

    fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        match self {
            Hasher::Sha224(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn hex(self) -> String {
        use sha2::Digest;
        match self {
            Hasher::Sha224(h) => hex::encode(h.finalize()),
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// Digest of everything `r` yields, and its length.
fn digest(kind: &str, mut r: impl Read) -> Result<(String, u64), std::io::Error> {
    let mut h = Hasher::new(kind).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let got = r.read(&mut buf)?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    Ok((h.hex(), n))
}

/// How a metadata file is compressed, by its name: a reader of its content, if ferry can decompress it.
fn open_decompressed(path: &Path) -> Result<Option<Box<dyn BufRead>>, IngestError> {
    let f = BufReader::new(std::fs::File::open(path).map_err(IngestError::io(path))?);
    let name = path.to_string_lossy();
    Ok(if name.ends_with(".gz") {
        Some(Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(
            f,
        ))))
    } else if name.ends_with(".zst") {
        Some(Box::new(BufReader::new(
            zstd::stream::read::Decoder::with_buffer(f).map_err(IngestError::io(path))?,
        )))
    } else if name.ends_with(".xz") {
        Some(Box::new(BufReader::new(
            liblzma::read::XzDecoder::new_multi_decoder(f),
        )))
    } else if name.ends_with(".bz2") {
        Some(Box::new(BufReader::new(bzip2::read::MultiBzDecoder::new(
            f,
        ))))
    } else if name.ends_with(".xml") {
        Some(Box::new(f))
    } else {
        None
    })
}

fn malformed(what: impl std::fmt::Display, reason: impl std::fmt::Display) -> IngestError {
    IngestError::Malformed {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

fn mismatch(path: &Path, what: &str, c: &Checksum, actual: &str) -> IngestError {
    malformed(
        path.display(),
        format!(
            "{what} {} is {actual}, but the metadata says {}",
            c.kind, c.hex
        ),
    )
}

/// Check every file `data` (from `root/repodata/repomd.xml`) lists: a safe path, its checksums and size.
fn check_listed(root: &Path, data: &[RepoData]) -> Result<(), IngestError> {
    let repomd_path = root.join("repodata/repomd.xml");
    for d in data {
        ferry_protocol::validate_rel_path(&d.href).map_err(|e| {
            malformed(
                repomd_path.display(),
                format!("<location href={:?}>: {e}", d.href),
            )
        })?;
        check_repodata(root, d)?;
    }
    Ok(())
}

/// Check one file of `repomd.xml` against its checksums and size.
fn check_repodata(root: &Path, d: &RepoData) -> Result<(), IngestError> {
    let path = root.join(&d.href);
    let bad = |reason: String| malformed(path.display(), reason);
    let f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(format!(
                "missing: repodata/repomd.xml lists it as the {} metadata",
                d.kind
            )))
        }
        Err(e) => return Err(IngestError::io(&path)(e)),
    };
    let c = d.checksum.as_ref().ok_or_else(|| {
        bad(format!(
            "repomd.xml gives the {} metadata no <checksum>",
            d.kind
        ))
    })?;
    let (actual, len) = digest(&c.kind, BufReader::new(f)).map_err(|e| bad(e.to_string()))?;
    if actual != c.hex {
        return Err(mismatch(&path, "checksum", c, &actual));
    }
    if let Some(size) = d.size.filter(|&s| s != len) {
        return Err(bad(format!("{len} bytes, but repomd.xml says {size}")));
    }
    if let Some(oc) = &d.open_checksum {
        if let Some(r) = open_decompressed(&path)? {
            let (actual, _) =
                digest(&oc.kind, r).map_err(|e| bad(format!("decompressing: {e}")))?;
            if actual != oc.hex {
                return Err(mismatch(
                    &path,
                    "decompressed content's checksum",
                    oc,
                    &actual,
                ));
            }
        }
    }
    Ok(())
}

/// `repodata/repomd.xml` of the source, read (capped); its absence says what a yum repository is.
pub(crate) fn read_repomd(src: &YumSource) -> Result<Vec<u8>, IngestError> {
    let root = &src.dir;
    let meta = std::fs::metadata(root).map_err(IngestError::io(root))?;
    if !meta.is_dir() {
        return Err(IngestError::BadSource {
            source_text: src.describe(),
            reason: "not a directory".into(),
        });
    }
    let repomd_path = root.join("repodata/repomd.xml");
    match std::fs::File::open(&repomd_path) {
        Ok(f) => super::pkgtree::read_capped(f, REPOMD_CAP, &repomd_path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(IngestError::BadSource {
            source_text: src.describe(),
            reason: "no repodata/repomd.xml: not a yum repository (run createrepo_c on it first)"
                .into(),
        }),
        Err(e) => Err(IngestError::io(&repomd_path)(e)),
    }
}

/// With `keyring=`: `repomd.xml.asc` must be a good signature of `repomd` by one of its keys. Returns the
/// signer's fingerprint.
pub(crate) fn check_signature(
    src: &YumSource,
    repomd: &[u8],
) -> Result<Option<String>, IngestError> {
    let Some(keyring) = &src.keyring else {
        return Ok(None);
    };
    let bad = |reason: String| IngestError::BadSource {
        source_text: src.describe(),
        reason,
    };
    let ring = crate::openpgp::Keyring::load(keyring).map_err(bad)?;
    let asc_path = src.dir.join("repodata/repomd.xml.asc");
    let asc = match std::fs::File::open(&asc_path) {
        Ok(f) => super::pkgtree::read_capped(f, 1 << 20, &asc_path.display().to_string())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(format!(
                "keyring= asks for a signed repository, but there is no {}",
                asc_path.display()
            )))
        }
        Err(e) => return Err(IngestError::io(&asc_path)(e)),
    };
    ring.verify_detached(repomd, &asc)
        .map(Some)
        .map_err(|e| bad(format!("repodata/repomd.xml: {e}")))
}

/// Check the repository, then store its tree under the prefix and compare each package with its checksum (or,
/// for a partial mirror, store what [`partial`] chooses).
pub fn ingest(
    ctx: &Context<'_>,
    src: &YumSource,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    let root = &src.dir;
    let repomd = read_repomd(src)?;
    let signer = check_signature(src, &repomd)?;
    if let Some(p) = &src.partial {
        return partial::ingest(ctx, src, p, &repomd, signer, entries, stats);
    }
    let repomd_path = root.join("repodata/repomd.xml");
    let data = parse_repomd(&repomd).map_err(|r| malformed(repomd_path.display(), r))?;
    check_listed(root, &data)?;
    let primary = data
        .iter()
        .find(|d| d.kind == "primary")
        .ok_or_else(|| malformed(repomd_path.display(), "lists no primary metadata"))?;
    let primary_path = root.join(&primary.href);
    let reader = open_decompressed(&primary_path)?.ok_or_else(|| {
        malformed(
            primary_path.display(),
            "primary metadata in a compression ferry cannot read (it reads gzip, zstd or plain XML)",
        )
    })?;
    let packages = parse_primary(reader).map_err(|r| malformed(primary_path.display(), r))?;

    // Every package must be here, with its recorded size, before anything is stored.
    let mut missing = Vec::new();
    for p in &packages {
        if let Some(base) = &p.base {
            return Err(malformed(
                primary_path.display(),
                format!(
                    "package {} lives at xml:base {base:?}, outside the repository",
                    p.href
                ),
            ));
        }
        ferry_protocol::validate_rel_path(&p.href).map_err(|e| {
            malformed(
                primary_path.display(),
                format!("package location {:?}: {e}", p.href),
            )
        })?;
        let c = p.checksum.as_ref().ok_or_else(|| {
            malformed(
                primary_path.display(),
                format!("package {} has no <checksum>", p.href),
            )
        })?;
        Hasher::new(&c.kind).map_err(|r| malformed(primary_path.display(), r))?;
        match std::fs::metadata(root.join(&p.href)) {
            Ok(m) if m.is_file() => {
                if let Some(size) = p.size.filter(|&s| s != m.len()) {
                    return Err(malformed(
                        root.join(&p.href).display(),
                        format!("{} bytes, but the primary metadata says {size}", m.len()),
                    ));
                }
            }
            _ => missing.push(p.href.clone()),
        }
    }
    if !missing.is_empty() {
        let n = missing.len();
        let mut named = missing
            .into_iter()
            .take(NAMED_MISSING)
            .collect::<Vec<_>>()
            .join(", ");
        if n > NAMED_MISSING {
            named.push_str(&format!(", and {} more", n - NAMED_MISSING));
        }
        return Err(IngestError::BadSource {
            source_text: src.describe(),
            reason: format!(
                "{n} package(s) listed in {} are missing: {named}",
                primary.href
            ),
        });
    }
    // Packages checked by a digest other than SHA-256 are hashed now; SHA-256 comes free with storing.
    for p in &packages {
        let c = p.checksum.as_ref().expect("checked above");
        if c.kind != "sha256" {
            let path = root.join(&p.href);
            let f = std::fs::File::open(&path).map_err(IngestError::io(&path))?;
            let (actual, _) = digest(&c.kind, BufReader::new(f)).map_err(IngestError::io(&path))?;
            if actual != c.hex {
                return Err(mismatch(&path, "checksum", c, &actual));
            }
        }
    }

    let mut tree = Vec::new();
    super::files::ingest_dir(ctx, root, &mut tree, stats)?;
    let prefixed = |p: &str| {
        if src.into.is_empty() {
            p.to_string()
        } else {
            format!("{}/{p}", src.into)
        }
    };
    let mut by_path: HashMap<String, String> = HashMap::new();
    for e in &tree {
        if let Entry::File(f) = e {
            by_path.insert(f.path.clone(), f.blob.sha256.hex());
        }
    }
    for p in &packages {
        let c = p.checksum.as_ref().expect("checked above");
        if c.kind != "sha256" {
            continue;
        }
        let path = root.join(&p.href);
        match by_path.get(&p.href) {
            Some(actual) if *actual == c.hex => {}
            Some(actual) => return Err(mismatch(&path, "checksum", c, actual)),
            None => {
                return Err(malformed(
                    path.display(),
                    "not a regular file inside the tree (a symlink?): it could not be served",
                ))
            }
        }
    }
    if !src.into.is_empty() {
        entries.push(Entry::Dir {
            path: src.into.clone(),
            mode: DIR_MODE,
        });
    }
    entries.extend(tree.into_iter().map(|mut e| {
        match &mut e {
            Entry::File(f) => f.path = prefixed(&f.path),
            Entry::Dir { path, .. } | Entry::Symlink { path, .. } => *path = prefixed(path),
            _ => {}
        }
        e
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPOMD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1700000000</revision>
  <data type="primary">
    <checksum type="sha256">72BC17927beed2979efa6f5022dc30c76eee4454b0259b6133250aca9f09a320</checksum>
    <open-checksum type="sha256">bbd7bd9528daf8dc68530293e954cc6943322fe393539757c04fb457e48a2159</open-checksum>
    <location href="repodata/72bc-primary.xml.gz"/>
    <timestamp>1700000000</timestamp>
    <size>690</size>
    <open-size>2027</open-size>
  </data>
  <data type="updateinfo">
    <checksum type="sha512">00</checksum>
    <location href="repodata/a&amp;b-updateinfo.xml.zst"></location>
  </data>
</repomd>
"#;

    #[test]
    fn repomd_parses() {
        let d = parse_repomd(REPOMD.as_bytes()).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].kind, "primary");
        assert_eq!(d[0].href, "repodata/72bc-primary.xml.gz");
        assert_eq!(
            d[0].checksum,
            Some(Checksum {
                kind: "sha256".into(),
                hex: "72bc17927beed2979efa6f5022dc30c76eee4454b0259b6133250aca9f09a320".into()
            })
        );
        assert_eq!(d[0].open_checksum.as_ref().unwrap().hex[..4], *"bbd7");
        assert_eq!(d[0].size, Some(690), "open-size is not size");
        assert_eq!(
            d[1].href, "repodata/a&b-updateinfo.xml.zst",
            "entities are decoded"
        );
        assert_eq!(d[1].checksum.as_ref().unwrap().kind, "sha512");
        assert_eq!(d[1].size, None);
    }

    #[test]
    fn repomd_refusals() {
        for (bad, want) in [
            ("<html/>", "not <repomd>"),
            ("", "no <repomd>"),
            ("<repomd><data type=\"primary\"><checksum type=\"sha256\">00</checksum></data></repomd>", "no <location"),
            ("<repomd><data type=\"x\"><location href=\"a\"/><size>big</size></data></repomd>", "not a number"),
            ("<repomd><data type=\"x\"><location href=\"a\"/>", "XML"),
            ("<repomd><data type=\"x\"><location/></data></repomd>", "without href"),
        ] {
            let err = parse_repomd(bad.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{bad:?}: {err:?} should say {want:?}");
        }
    }

    #[test]
    fn primary_parses() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
<package type="rpm">
  <name>hello</name>
  <arch>noarch</arch>
  <checksum type="sha256" pkgid="YES">9B27777082a258066f8f989b6d3731ae28b6e4783b0f2f0798f832446788ab99</checksum>
  <size package="6132" installed="22" archive="292"/>
  <location href="Packages/hello-1.0-1.noarch.rpm"/>
  <format><rpm:provides><rpm:entry name="hello" flags="EQ"/></rpm:provides><file>/usr/share/x</file></format>
</package>
<package type="rpm">
  <name>remote</name>
  <checksum type="sha512" pkgid="YES">ff</checksum>
  <location xml:base="https://elsewhere.example/" href="r.rpm"/>
</package>
</metadata>
"#;
        let p = parse_primary(xml.as_bytes()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "hello");
        assert_eq!(p[0].href, "Packages/hello-1.0-1.noarch.rpm");
        assert_eq!(p[0].size, Some(6132));
        assert_eq!(
            p[0].checksum.as_ref().unwrap().hex,
            "9b27777082a258066f8f989b6d3731ae28b6e4783b0f2f0798f832446788ab99"
        );
        assert_eq!(p[0].base, None);
        assert_eq!(p[1].base.as_deref(), Some("https://elsewhere.example/"));
        assert_eq!(p[1].checksum.as_ref().unwrap().kind, "sha512");
        assert!(
            parse_primary(&b"<metadata><package><name>x</name></package></metadata>"[..])
                .unwrap_err()
                .contains("no <location")
        );
        assert!(parse_primary(&b"<repomd/>"[..])
            .unwrap_err()
            .contains("not <metadata>"));
    }

    #[test]
    fn digests() {
        assert_eq!(
            digest("sha256", &b"abc"[..]).unwrap(),
            (
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                3
            )
        );
        assert_eq!(digest("sha512", &b""[..]).unwrap().0.len(), 128);
        assert!(digest("sha1", &b""[..])
            .unwrap_err()
            .to_string()
            .contains("not supported"));
        assert!(digest("md5", &b""[..]).is_err());
    }
}
