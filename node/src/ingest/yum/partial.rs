//! Partial yum mirrors: the packages asked for and their dependency closure ([`super::closure`]), with
//! metadata of their own, signed with the store's repository key.
//!
//! `repomd.xml` is read (and, with `keyring=`, its signature checked), then the primary metadata it lists, and
//! the filelists metadata when a requirement names a file primary.xml does not list (each checked against its
//! checksum). The closure is taken; the chosen packages are stored byte for byte (each checked against its
//! checksum, so their rpm signatures stay valid for `gpgcheck`). The repository gets new `primary`, `filelists`
//! and `other` metadata holding exactly the chosen packages — each `<package>` element copied verbatim from
//! the source, in its order — compressed as the source's were, a new `repomd.xml` listing them, and
//! `repomd.xml.asc`, a detached signature by the repository key (for dnf's `repo_gpgcheck`). Metadata about
//! packages the mirror does not hold (updateinfo, comps groups, modules, the sqlite databases) is not carried.
//! The root also gets the public key, `ferry-repository-key.asc`, and `ferry-closure.json`.

use super::closure::{self, ClosureError, Dep, Options, Reason, Request, RpmPkg, Universe};
use super::rpmver::{Evr, Flags};
use super::{
    attr, check_listed, digest, malformed, mismatch, open_decompressed, parse_repomd, Partial,
    RepoData, YumSource,
};
use crate::ingest::image::Context;
use crate::ingest::partial::{
    compress, Plan, Report, ReportOptions, ReportPackage, CLOSURE_FILE, KEY_FILE,
};
use crate::ingest::pkgtree::{read_capped, TreeWriter};
use crate::ingest::IngestError;
use crate::store::WriteStats;
use ferry_protocol::Entry;
use quick_xml::events::{BytesRef, BytesStart, Event};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Decompressed metadata larger than this is refused.
const MAX_METADATA: u64 = 4 << 30;

/// The metadata kinds a partial mirror reads and writes again.
const KINDS: [&str; 3] = ["primary", "filelists", "other"];

/// The requests, the metadata read, and the packages looked up.
struct Loaded {
    requests: Vec<Request>,
    /// `primary`, `filelists`, `other` as repomd.xml lists them.
    data: Vec<RepoData>,
    /// The decompressed primary metadata (the packages' spans point into it).
    primary: Vec<u8>,
    /// The decompressed filelists metadata, when it was needed to find a file's owner.
    filelists: Option<Vec<u8>>,
    universe: Universe,
}

/// Read the requests and the metadata, and index the packages.
fn load(src: &YumSource, partial: &Partial, repomd: &[u8]) -> Result<Loaded, IngestError> {
    let root = &src.dir;
    let bad = |reason: String| IngestError::BadSource {
        source_text: src.describe(),
        reason,
    };
    let mut requests = partial.packages.clone();
    if let Some(path) = &partial.packages_file {
        let text = std::fs::read_to_string(path).map_err(|source| IngestError::Io {
            path: path.display().to_string(),
            source,
        })?;
        requests.extend(
            Request::parse_list(&text)
                .map_err(|e| bad(format!("packages-file {}: {e}", path.display())))?,
        );
    }
    if requests.is_empty() {
        return Err(bad("packages= names no package".into()));
    }
    let repomd_path = root.join("repodata/repomd.xml");
    let data: Vec<RepoData> = parse_repomd(repomd)
        .map_err(|r| malformed(repomd_path.display(), r))?
        .into_iter()
        .filter(|d| KINDS.contains(&d.kind.as_str()))
        .collect();
    check_listed(root, &data)?;
    let primary = read_metadata(root, &data, "primary")?
        .ok_or_else(|| malformed(repomd_path.display(), "lists no primary metadata"))?;
    let primary_path = root.join(&href(&data, "primary").expect("read above").href);
    let pkgs = parse_primary(&primary).map_err(|r| malformed(primary_path.display(), r))?;
    let unowned = Universe::unowned_file_requirements(&pkgs);
    let mut more_files: HashMap<String, Vec<usize>> = HashMap::new();
    let mut filelists = None;
    if !unowned.is_empty() {
        if let Some(bytes) = read_metadata(root, &data, "filelists")? {
            let path = root.join(&href(&data, "filelists").expect("read above").href);
            let by_pkgid: HashMap<&str, usize> = pkgs
                .iter()
                .enumerate()
                .map(|(i, p)| (p.checksum.1.as_str(), i))
                .collect();
            for k in scan(&bytes, "filelists", Some(&unowned))
                .map_err(|r| malformed(path.display(), r))?
            {
                if let Some(&i) = by_pkgid.get(k.pkgid.as_str()) {
                    for f in k.files {
                        more_files.entry(f).or_default().push(i);
                    }
                }
            }
            filelists = Some(bytes);
        }
    }
    Ok(Loaded {
        requests,
        data,
        primary,
        filelists,
        universe: Universe::new(pkgs, more_files),
    })
}

fn href<'d>(data: &'d [RepoData], kind: &str) -> Option<&'d RepoData> {
    data.iter().find(|d| d.kind == kind)
}

/// The decompressed metadata of `kind`, if repomd.xml lists it.
fn read_metadata(
    root: &Path,
    data: &[RepoData],
    kind: &str,
) -> Result<Option<Vec<u8>>, IngestError> {
    let Some(d) = href(data, kind) else {
        return Ok(None);
    };
    let path = root.join(&d.href);
    let r = open_decompressed(&path)?.ok_or_else(|| {
        malformed(
            path.display(),
            format!("{kind} metadata in a compression ferry cannot read (it reads gzip, zstd, xz, bzip2 or plain XML)"),
        )
    })?;
    read_capped(r, MAX_METADATA, &path.display().to_string()).map(Some)
}

/// The closure of the requests, or why there is none.
fn resolve(
    src: &YumSource,
    partial: &Partial,
    loaded: &Loaded,
) -> Result<closure::Closure, IngestError> {
    let opts = Options {
        arch: partial.arch.clone(),
        recommends: partial.recommends,
        all_alternatives: partial.all_alternatives,
        allow_missing: partial.allow_missing,
    };
    closure::resolve(&loaded.universe, &loaded.requests, &opts).map_err(|e| {
        let reason = match &e {
            ClosureError::Malformed(_) => e.to_string(),
            _ => format!(
                "the closure of {} cannot be made: {e}",
                list(&loaded.requests)
            ),
        };
        IngestError::Malformed {
            what: src.describe(),
            reason,
        }
    })
}

fn list(requests: &[Request]) -> String {
    let mut s: String = requests
        .iter()
        .take(8)
        .map(|r| r.text.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if requests.len() > 8 {
        s.push_str(&format!(" and {} more", requests.len() - 8));
    }
    s
}

fn report_packages(u: &Universe, c: &closure::Closure) -> Vec<ReportPackage> {
    c.packages
        .iter()
        .map(|(q, why)| {
            let p = &u.pkgs[*q];
            let (reason, of, relation) = match why {
                Reason::Requested(r) => ("requested".to_string(), None, Some(r.clone())),
                Reason::Dependency {
                    of,
                    field,
                    relation,
                } => (
                    field.to_string(),
                    Some(report_describe(&u.pkgs[c.packages[*of].0])),
                    Some(relation.clone()),
                ),
            };
            ReportPackage {
                package: p.name.clone(),
                version: p.evr.to_string(),
                architecture: p.arch.clone(),
                suite: String::new(),
                index: String::new(),
                filename: p.href.clone(),
                size: p.size,
                reason,
                of,
                relation,
            }
        })
        .collect()
}

/// A package as [`ReportPackage::describe`] names it.
fn report_describe(p: &RpmPkg) -> String {
    format!("{} {} ({})", p.name, p.evr, p.arch)
}

/// `ferry add --plan` of a partial yum mirror: the closure, nothing stored.
pub fn plan(src: &YumSource) -> Result<Plan, IngestError> {
    let partial = src.partial.as_ref().ok_or_else(|| IngestError::BadSource {
        source_text: src.describe(),
        reason: "not a partial mirror: name its packages= or packages-file=".into(),
    })?;
    let repomd = super::read_repomd(src)?;
    super::check_signature(src, &repomd)?;
    let loaded = load(src, partial, &repomd)?;
    let closure = resolve(src, partial, &loaded)?;
    let packages = report_packages(&loaded.universe, &closure);
    Ok(Plan {
        source: src.describe(),
        requests: loaded.requests.iter().map(|r| r.text.clone()).collect(),
        bytes: packages.iter().map(|p| p.size).sum(),
        packages,
        missing: closure.missing.clone(),
        unmet_recommends: closure.unmet_recommends.clone(),
    })
}

/// Take the closure, store the chosen packages and write the mirror's own signed metadata.
pub(super) fn ingest(
    ctx: &Context<'_>,
    src: &YumSource,
    partial: &Partial,
    repomd: &[u8],
    upstream_signer: Option<String>,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    let root = &src.dir;
    let loaded = load(src, partial, repomd)?;
    let closure = resolve(src, partial, &loaded)?;
    let u = &loaded.universe;
    let mut chosen: Vec<usize> = closure.packages.iter().map(|(q, _)| *q).collect();
    chosen.sort_by_key(|&q| u.pkgs[q].span.0);

    // Every chosen package must be here, whole, before anything is stored.
    for &q in &chosen {
        let p = &u.pkgs[q];
        ferry_protocol::validate_rel_path(&p.href).map_err(|e| {
            malformed(
                src.describe(),
                format!(
                    "package {}: location {:?}: {e}",
                    closure::describe(p),
                    p.href
                ),
            )
        })?;
        let path = root.join(&p.href);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && m.len() == p.size => {}
            Ok(m) if m.is_file() => {
                return Err(malformed(
                    path.display(),
                    format!(
                        "{} bytes, but the primary metadata says {}",
                        m.len(),
                        p.size
                    ),
                ))
            }
            _ => {
                return Err(IngestError::BadSource {
                    source_text: src.describe(),
                    reason: format!(
                        "{} of the closure is missing: {}",
                        closure::describe(p),
                        path.display()
                    ),
                })
            }
        }
        let (kind, hex) = &p.checksum;
        if kind != "sha256" {
            let f = std::fs::File::open(&path).map_err(IngestError::io(&path))?;
            let (actual, _) = digest(kind, std::io::BufReader::new(f))
                .map_err(|e| malformed(path.display(), e))?;
            if actual != *hex {
                return Err(mismatch(&path, "checksum", &checksum(kind, hex), &actual));
            }
        }
    }

    let mut w = TreeWriter::new(ctx, &src.into, stats);
    for &q in &chosen {
        let p = &u.pkgs[q];
        let path = root.join(&p.href);
        let blob = w.copy_file(&p.href, &path)?;
        let (kind, hex) = &p.checksum;
        if kind == "sha256" && blob.sha256.hex() != *hex {
            return Err(mismatch(
                &path,
                "checksum",
                &checksum(kind, hex),
                &blob.sha256.hex(),
            ));
        }
    }

    // The metadata: each kind holds the chosen packages' elements, verbatim.
    let pkgids: HashSet<&str> = chosen
        .iter()
        .map(|&q| u.pkgs[q].checksum.1.as_str())
        .collect();
    let mut written = Vec::new();
    let n = chosen.len();
    let primary_xml = {
        let mut x = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<metadata xmlns=\"http://linux.duke.edu/metadata/common\" \
             xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\" packages=\"{n}\">\n"
        )
        .into_bytes();
        for &q in &chosen {
            let (a, b) = u.pkgs[q].span;
            x.extend_from_slice(&loaded.primary[a..b]);
            x.push(b'\n');
        }
        x.extend_from_slice(b"</metadata>\n");
        x
    };
    written.push(("primary", primary_xml));
    for (kind, root_el, ns) in [
        (
            "filelists",
            "filelists",
            "http://linux.duke.edu/metadata/filelists",
        ),
        ("other", "otherdata", "http://linux.duke.edu/metadata/other"),
    ] {
        let bytes = match (kind, &loaded.filelists) {
            ("filelists", Some(b)) => Some(std::borrow::Cow::Borrowed(b)),
            _ => read_metadata(root, &loaded.data, kind)?.map(std::borrow::Cow::Owned),
        };
        let Some(bytes) = bytes else { continue };
        let path = root.join(&href(&loaded.data, kind).expect("read above").href);
        let mut x = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root_el} xmlns=\"{ns}\" packages=\"{n}\">\n"
        )
        .into_bytes();
        let mut found = 0;
        for k in scan(&bytes, root_el, None).map_err(|r| malformed(path.display(), r))? {
            if pkgids.contains(k.pkgid.as_str()) {
                x.extend_from_slice(&bytes[k.span.0..k.span.1]);
                x.push(b'\n');
                found += 1;
            }
        }
        if found != n {
            return Err(malformed(
                path.display(),
                format!("holds {found} of the {n} packages of the closure (by pkgid)"),
            ));
        }
        x.extend_from_slice(format!("</{root_el}>\n").as_bytes());
        written.push((kind, x));
    }

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut repomd_out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<repomd xmlns=\"http://linux.duke.edu/metadata/repo\" \
         xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\">\n  <revision>{now}</revision>\n"
    );
    for (kind, xml) in &written {
        let source = href(&loaded.data, kind).expect("only kinds the source lists are written");
        let suffix = [".gz", ".zst", ".xz", ".bz2"]
            .into_iter()
            .find(|s| source.href.ends_with(s))
            .unwrap_or(".gz");
        let packed = compress(suffix, xml).map_err(|e| IngestError::Io {
            path: format!("{kind}.xml{suffix}"),
            source: e,
        })?;
        let sum = hex::encode(sha2::Sha256::digest(&packed));
        let open = hex::encode(sha2::Sha256::digest(xml));
        let rel = format!("repodata/{sum}-{kind}.xml{suffix}");
        w.put_bytes(&rel, &packed)?;
        repomd_out.push_str(&format!(
            "  <data type=\"{kind}\">\n    <checksum type=\"sha256\">{sum}</checksum>\n    \
             <open-checksum type=\"sha256\">{open}</open-checksum>\n    <location href=\"{rel}\"/>\n    \
             <timestamp>{now}</timestamp>\n    <size>{}</size>\n    <open-size>{}</open-size>\n  </data>\n",
            packed.len(),
            xml.len()
        ));
    }
    repomd_out.push_str("</repomd>\n");
    let key = ctx.store.repository_key()?;
    let signature =
        key.detached(repomd_out.as_bytes())
            .map_err(|reason| IngestError::Malformed {
                what: "the repository key".into(),
                reason,
            })?;
    w.put_bytes("repodata/repomd.xml", repomd_out.as_bytes())?;
    w.put_bytes("repodata/repomd.xml.asc", signature.as_bytes())?;
    w.put_bytes(KEY_FILE, key.public_armored().as_bytes())?;

    let report = Report {
        format: "yum".into(),
        requests: loaded.requests.iter().map(|r| r.text.clone()).collect(),
        options: ReportOptions {
            architecture: partial.arch.clone(),
            recommends: partial.recommends,
            alternatives: if partial.all_alternatives {
                "all"
            } else {
                "first"
            }
            .into(),
            essential: false,
            allow_missing: partial.allow_missing,
        },
        signed_by: key.fingerprint(),
        upstream_signers: upstream_signer
            .map(|fp| BTreeMap::from([("repodata/repomd.xml".to_string(), fp)]))
            .unwrap_or_default(),
        packages: report_packages(u, &closure),
        missing: closure.missing.clone(),
        unmet_recommends: closure.unmet_recommends.clone(),
    };
    let json = serde_json::to_vec_pretty(&report).expect("the report serializes");
    w.put_bytes(CLOSURE_FILE, &json)?;
    entries.extend(w.finish());
    Ok(())
}

fn checksum(kind: &str, hex: &str) -> super::Checksum {
    super::Checksum {
        kind: kind.into(),
        hex: hex.into(),
    }
}

/// Where an element starting at `at` really starts (after the whitespace the reader skipped).
fn element_start(bytes: &[u8], at: usize) -> usize {
    at + bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_whitespace())
        .count()
}

/// The character an entity reference stands for.
fn entity(r: &BytesRef<'_>) -> Result<char, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c);
    }
    Ok(match &**r {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        other => return Err(format!("unknown entity &{};", other)),
    })
}

/// One `<package pkgid=…>` of filelists.xml or other.xml.
#[derive(Debug)]
struct Keyed {
    pkgid: String,
    span: (usize, usize),
    /// Its files among those asked for.
    files: Vec<String>,
}

/// The `<package>` elements of filelists.xml (root `filelists`) or other.xml (`otherdata`), with the files
/// among `wanted` each lists.
fn scan(bytes: &[u8], root: &str, wanted: Option<&HashSet<String>>) -> Result<Vec<Keyed>, String> {
    let (bom, inner) = strip_bom(bytes);
    let mut out = scan_from(inner, root, wanted)?;
    for k in &mut out {
        k.span = (k.span.0 + bom, k.span.1 + bom);
        check_span(bytes, k.span)?;
    }
    Ok(out)
}

/// A span must be a `<package …>` element of `bytes`: the metadata is refused rather than copied wrong when the
/// reader's positions cannot be trusted (a second byte-order mark, say).
fn check_span(bytes: &[u8], (a, b): (usize, usize)) -> Result<(), String> {
    let ok =
        a < b && b <= bytes.len() && bytes[a..].starts_with(b"<package") && bytes[b - 1] == b'>';
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the <package> element read at byte {a} is not where the reader says (stray byte-order marks?)"
        ))
    }
}

/// A UTF-8 byte-order mark's length and what follows it: the reader skips one and counts positions after it,
/// so spans are taken over the rest and moved back.
fn strip_bom(bytes: &[u8]) -> (usize, &[u8]) {
    match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (3, rest),
        None => (0, bytes),
    }
}

fn scan_from(
    bytes: &[u8],
    root: &str,
    wanted: Option<&HashSet<String>>,
) -> Result<Vec<Keyed>, String> {
    let mut r = quick_xml::Reader::from_reader(bytes);
    r.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur: Option<Keyed> = None;
    let mut file: Option<String> = None;
    let mut seen_root = false;
    loop {
        let before = r.buffer_position() as usize;
        let ev = r
            .read_event()
            .map_err(|e| format!("XML at byte {}: {e}", r.error_position()))?;
        let start_of = |e: &BytesStart<'_>, depth: usize| -> Result<Option<Keyed>, String> {
            match (depth, e.local_name().as_ref()) {
                (1, name) if name == root => Ok(None),
                (1, other) => Err(format!("the root element is <{}>, not <{root}>", other)),
                (2, "package") => Ok(Some(Keyed {
                    pkgid: attr(e, "pkgid")?
                        .ok_or_else(|| format!("a <package> at byte {before} has no pkgid"))?,
                    span: (element_start(bytes, before), 0),
                    files: Vec::new(),
                })),
                _ => Ok(None),
            }
        };
        match ev {
            Event::Start(e) => {
                depth += 1;
                seen_root |= depth == 1;
                if let Some(k) = start_of(&e, depth)? {
                    cur = Some(k);
                }
                if depth == 3 && e.local_name().as_ref() == "file" && wanted.is_some() {
                    file = Some(String::new());
                }
            }
            Event::Empty(e) => {
                seen_root |= depth == 0;
                if let Some(mut k) = start_of(&e, depth + 1)? {
                    k.span.1 = r.buffer_position() as usize;
                    out.push(k);
                }
            }
            Event::Text(t) => {
                if let Some(f) = file.as_mut() {
                    f.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(g) => {
                if let Some(f) = file.as_mut() {
                    f.push(entity(&g)?);
                }
            }
            Event::End(e) => {
                if depth == 3 {
                    if let (Some(f), Some(k), Some(w)) = (file.take(), cur.as_mut(), wanted) {
                        if w.contains(&f) {
                            k.files.push(f);
                        }
                    }
                }
                if depth == 2 && e.local_name().as_ref() == "package" {
                    let mut k = cur.take().ok_or("a </package> without its start")?;
                    k.span.1 = r.buffer_position() as usize;
                    out.push(k);
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if depth != 0 {
        return Err("XML ends inside an element".into());
    }
    if !seen_root {
        return Err(format!("no <{root}> element"));
    }
    Ok(out)
}

/// Which part of a `<package>` of primary.xml the parser is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    Arch,
    Checksum,
    File,
}

/// Every binary package of primary.xml, with its dependencies and where its element is; source packages
/// (`arch` `src`) are left out. Errors name the package and the byte.
pub fn parse_primary(bytes: &[u8]) -> Result<Vec<RpmPkg>, String> {
    let (bom, inner) = strip_bom(bytes);
    let mut out = parse_primary_from(inner)?;
    for p in &mut out {
        p.span = (p.span.0 + bom, p.span.1 + bom);
        check_span(bytes, p.span).map_err(|e| format!("package {}: {e}", p.name))?;
    }
    Ok(out)
}

fn parse_primary_from(bytes: &[u8]) -> Result<Vec<RpmPkg>, String> {
    let mut r = quick_xml::Reader::from_reader(bytes);
    r.config_mut().trim_text(true);
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur: Option<RpmPkg> = None;
    let mut field: Option<(Field, String)> = None;
    let mut list: Option<&'static str> = None;
    let mut seen_root = false;
    loop {
        let before = r.buffer_position() as usize;
        let ev = r
            .read_event()
            .map_err(|e| format!("XML at byte {}: {e}", r.error_position()))?;
        let (e, empty) = match ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::Text(t) => {
                if let Some((_, text)) = field.as_mut() {
                    text.push_str(&t.xml10_content());
                }
                continue;
            }
            Event::GeneralRef(g) => {
                if let Some((_, text)) = field.as_mut() {
                    text.push(entity(&g)?);
                }
                continue;
            }
            Event::End(e) => {
                end(
                    &mut cur,
                    &mut field,
                    &mut list,
                    &mut out,
                    depth,
                    e.local_name().as_ref(),
                    r.buffer_position() as usize,
                )?;
                depth = depth.saturating_sub(1);
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        depth += 1;
        let name = e.local_name();
        let at = |what: &str, p: &Option<RpmPkg>| match p {
            Some(p) if !p.name.is_empty() => format!("package {}: {what}", p.name),
            _ => format!("the package at byte {before}: {what}"),
        };
        match (depth, name.as_ref()) {
            (1, "metadata") => seen_root = true,
            (1, other) => return Err(format!("the root element is <{}>, not <metadata>", other)),
            (2, "package") => {
                cur = Some(RpmPkg {
                    span: (element_start(bytes, before), 0),
                    ..RpmPkg::default()
                })
            }
            (3, tag) if cur.is_some() => match tag {
                "name" => field = Some((Field::Name, String::new())),
                "arch" => field = Some((Field::Arch, String::new())),
                "version" => {
                    let ver = attr(&e, "ver")?.ok_or_else(|| at("<version> has no ver", &cur))?;
                    let evr = Evr::from_parts(
                        attr(&e, "epoch")?.as_deref(),
                        &ver,
                        attr(&e, "rel")?.as_deref(),
                    )
                    .map_err(|m| at(&m, &cur))?;
                    cur.as_mut().expect("checked").evr = evr;
                }
                "checksum" => {
                    let kind = attr(&e, "type")?.unwrap_or_default().to_ascii_lowercase();
                    cur.as_mut().expect("checked").checksum.0 = kind;
                    field = Some((Field::Checksum, String::new()));
                }
                "size" => {
                    if let Some(s) = attr(&e, "package")? {
                        let size = s
                            .trim()
                            .parse()
                            .map_err(|_| at(&format!("<size package={s:?}>"), &cur))?;
                        cur.as_mut().expect("checked").size = size;
                    }
                }
                "location" => {
                    if let Some(base) = attr(&e, "xml:base")? {
                        return Err(at(
                            &format!("lives at xml:base {base:?}, outside the repository"),
                            &cur,
                        ));
                    }
                    let href =
                        attr(&e, "href")?.ok_or_else(|| at("a <location> without href", &cur))?;
                    cur.as_mut().expect("checked").href = href;
                }
                _ => {}
            },
            (4, tag) if cur.is_some() => match tag {
                "provides" => list = Some("provides"),
                "requires" => list = Some("requires"),
                "recommends" => list = Some("recommends"),
                "file" => field = Some((Field::File, String::new())),
                _ => list = None,
            },
            (5, "entry") if cur.is_some() && list.is_some() => {
                let dep_name =
                    attr(&e, "name")?.ok_or_else(|| at("an <rpm:entry> without name", &cur))?;
                let range = match attr(&e, "flags")? {
                    None => None,
                    Some(f) => {
                        let flags = Flags::from_xml(&f)
                            .ok_or_else(|| at(&format!("{dep_name}: unknown flags {f:?}"), &cur))?;
                        let ver = attr(&e, "ver")?.ok_or_else(|| {
                            at(&format!("{dep_name}: flags {f} without ver"), &cur)
                        })?;
                        let evr = Evr::from_parts(
                            attr(&e, "epoch")?.as_deref(),
                            &ver,
                            attr(&e, "rel")?.as_deref(),
                        )
                        .map_err(|m| at(&format!("{dep_name}: {m}"), &cur))?;
                        Some((flags, evr))
                    }
                };
                let dep = Dep {
                    name: dep_name,
                    range,
                    pre: attr(&e, "pre")?.is_some_and(|v| v == "1"),
                };
                let p = cur.as_mut().expect("checked");
                match list {
                    Some("provides") => p.provides.push(dep),
                    Some("requires") => p.requires.push(dep),
                    _ => p.recommends.push(dep),
                }
            }
            _ => {}
        }
        if empty {
            end(
                &mut cur,
                &mut field,
                &mut list,
                &mut out,
                depth,
                name.as_ref(),
                r.buffer_position() as usize,
            )?;
            depth -= 1;
        }
    }
    if depth != 0 {
        return Err("XML ends inside an element".into());
    }
    if !seen_root {
        return Err("no <metadata> element".into());
    }
    Ok(out)
}

/// The end of an element of primary.xml at `depth`.
fn end(
    cur: &mut Option<RpmPkg>,
    field: &mut Option<(Field, String)>,
    list: &mut Option<&'static str>,
    out: &mut Vec<RpmPkg>,
    depth: usize,
    name: &str,
    position: usize,
) -> Result<(), String> {
    if let (Some((f, text)), Some(p)) = (field.take(), cur.as_mut()) {
        let text = text.trim().to_string();
        match f {
            Field::Name => p.name = text,
            Field::Arch => p.arch = text,
            Field::Checksum => p.checksum.1 = text.to_ascii_lowercase(),
            Field::File => p.files.push(text),
        }
    }
    if depth == 4 {
        *list = None;
    }
    if depth == 2 && name == "package" {
        let mut p = cur.take().ok_or("a </package> without its start")?;
        p.span.1 = position;
        let what = format!("the package at byte {}", p.span.0);
        if p.name.is_empty() {
            return Err(format!("{what} has no <name>"));
        }
        if p.href.is_empty() {
            return Err(format!("package {} has no <location href>", p.name));
        }
        if p.checksum.1.is_empty() {
            return Err(format!("package {} has no <checksum>", p.name));
        }
        super::Hasher::new(&p.checksum.0).map_err(|e| format!("package {}: {e}", p.name))?;
        if p.evr.version.is_empty() {
            return Err(format!("package {} has no <version ver>", p.name));
        }
        if p.arch != "src" && p.arch != "nosrc" {
            // rpm's self-provide, should the metadata leave it out.
            if !p.provides.iter().any(|d| d.name == p.name) {
                p.provides.push(Dep {
                    name: p.name.clone(),
                    range: Some((Flags::Eq, p.evr.clone())),
                    pre: false,
                });
            }
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="3">
<package type="rpm">
  <name>app</name>
  <arch>x86_64</arch>
  <version epoch="0" ver="2.0" rel="1"/>
  <checksum type="sha256" pkgid="YES">AA11</checksum>
  <size package="6132" installed="22" archive="292"/>
  <location href="Packages/app-2.0-1.x86_64.rpm"/>
  <format>
    <rpm:provides><rpm:entry name="app" flags="EQ" epoch="0" ver="2.0" rel="1"/></rpm:provides>
    <rpm:requires>
      <rpm:entry name="(pya or pyb)"/>
      <rpm:entry name="libfoo" flags="GE" epoch="0" ver="1.2"/>
      <rpm:entry name="setup-pkg" pre="1"/>
      <rpm:entry name="/usr/bin/a&amp;b"/>
    </rpm:requires>
    <rpm:recommends><rpm:entry name="docs"/></rpm:recommends>
    <file>/usr/bin/app&amp;co</file>
  </format>
</package>
<package type="rpm"><name>app</name><arch>src</arch><version ver="2.0" rel="1"/><checksum type="sha256">bb</checksum><location href="a.src.rpm"/></package>
<package type="rpm"><name>lib</name><arch>noarch</arch><version epoch="1" ver="3" rel="2"/><checksum type="sha512">cc</checksum><size package="9"/><location href="lib.rpm"/></package>
</metadata>
"#;

    #[test]
    fn primary_parses_dependencies_and_spans() {
        let p = parse_primary(PRIMARY.as_bytes()).unwrap();
        assert_eq!(p.len(), 2, "the source package is left out");
        let app = &p[0];
        assert_eq!(
            (app.name.as_str(), app.arch.as_str(), app.evr.to_string()),
            ("app", "x86_64", "2.0-1".to_string())
        );
        assert_eq!(app.checksum, ("sha256".into(), "aa11".into()));
        assert_eq!(
            (app.size, app.href.as_str()),
            (6132, "Packages/app-2.0-1.x86_64.rpm")
        );
        let req: Vec<String> = app.requires.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            req,
            ["(pya or pyb)", "libfoo >= 1.2", "setup-pkg", "/usr/bin/a&b"]
        );
        assert!(app.requires[2].pre && !app.requires[1].pre);
        assert_eq!(app.recommends[0].name, "docs");
        assert_eq!(app.files, ["/usr/bin/app&co"]);
        let span = &PRIMARY[app.span.0..app.span.1];
        assert!(
            span.starts_with("<package type=\"rpm\">") && span.ends_with("</package>"),
            "{span}"
        );
        let lib = &p[1];
        assert_eq!(lib.evr.to_string(), "1:3-2");
        assert_eq!(
            lib.provides[0].to_string(),
            "lib = 1:3-2",
            "the self-provide is added"
        );
        assert!(PRIMARY[lib.span.0..lib.span.1].starts_with("<package type=\"rpm\"><name>lib"));
    }

    #[test]
    fn malformed_primary_names_the_package() {
        for (bad, want) in [
            (
                PRIMARY.replace("flags=\"GE\"", "flags=\"XX\""),
                "package app: libfoo: unknown flags",
            ),
            (PRIMARY.replace("<name>lib</name>", ""), "has no <name>"),
            (
                PRIMARY.replace(" href=\"lib.rpm\"", ""),
                "package lib: a <location> without href",
            ),
            (
                PRIMARY.replace("epoch=\"1\"", "epoch=\"x\""),
                "package lib: the epoch",
            ),
            (
                PRIMARY.replace("sha512", "md5"),
                "package lib: checksum type \"md5\"",
            ),
            (PRIMARY.replace("</metadata>", ""), "ends inside"),
            (
                PRIMARY.replace(
                    "href=\"lib.rpm\"",
                    "xml:base=\"http://x/\" href=\"lib.rpm\"",
                ),
                "outside the repository",
            ),
        ] {
            let err = parse_primary(bad.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
    }

    #[test]
    fn spans_hold_after_a_byte_order_mark() {
        let with_bom = format!("\u{feff}{PRIMARY}");
        let p = parse_primary(with_bom.as_bytes()).unwrap();
        for pkg in &p {
            assert!(
                with_bom[pkg.span.0..pkg.span.1].starts_with("<package"),
                "{:?}",
                pkg.span
            );
        }
        let xml = "\u{feff}<otherdata><package pkgid=\"a\"/></otherdata>";
        let k = scan(xml.as_bytes(), "otherdata", None).unwrap();
        assert_eq!(&xml[k[0].span.0..k[0].span.1], "<package pkgid=\"a\"/>");
        // Two marks: the reader skips both and counts from the second; refused, never copied wrong.
        let twice = format!("\u{feff}\u{feff}{PRIMARY}");
        if let Ok(p) = parse_primary(twice.as_bytes()) {
            for pkg in &p {
                assert!(
                    twice[pkg.span.0..].starts_with("<package"),
                    "{:?}",
                    pkg.span
                );
            }
        }
    }

    #[test]
    fn filelists_scan_keeps_spans_and_wanted_files() {
        let xml = r#"<?xml version="1.0"?>
<filelists xmlns="http://linux.duke.edu/metadata/filelists" packages="2">
<package pkgid="aa" name="a" arch="noarch"><version epoch="0" ver="1" rel="1"/><file>/x/one</file><file type="dir">/x</file></package>
<package pkgid="bb" name="b" arch="noarch"/>
</filelists>"#;
        let wanted: HashSet<String> = ["/x/one".to_string()].into();
        let k = scan(xml.as_bytes(), "filelists", Some(&wanted)).unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k[0].files, ["/x/one"]);
        assert!(xml[k[0].span.0..k[0].span.1].starts_with("<package pkgid=\"aa\""));
        assert!(xml[k[0].span.0..k[0].span.1].ends_with("</package>"));
        assert_eq!(
            &xml[k[1].span.0..k[1].span.1],
            r#"<package pkgid="bb" name="b" arch="noarch"/>"#
        );
        assert!(scan(xml.as_bytes(), "otherdata", None)
            .unwrap_err()
            .contains("not <otherdata>"));
        assert!(
            scan(b"<filelists><package/></filelists>", "filelists", None)
                .unwrap_err()
                .contains("no pkgid")
        );
    }
}
