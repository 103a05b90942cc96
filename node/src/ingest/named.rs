//! Images named by Helm charts and Kubernetes manifests: `helm:DIR?images=yes[&values=FILE,…]` and `k8s:DIR`.
//!
//! No template engine runs here (none is at hand inside the seed's tooling), so a chart's images are read where
//! charts put them:
//! - its values (`values.yaml`, deep-merged with the `values=` files as `helm -f` would, subcharts with their
//!   parent's section for them and `global`): an `image` key (or one ending in `Image`/`image`) holding a reference,
//!   or a map of `registry`, `repository` (or `name`), `tag` and `digest` — `global.imageRegistry` when the map
//!   names no registry, the chart's `appVersion` when it names no tag (the `default .Chart.AppVersion` idiom);
//! - literal references in its templates (`image: registry.example/app:1.0`), lines with `{{ … }}` being left to
//!   the values they read.
//!
//! Subcharts are followed, as directories under `charts/` and as nested archives. Manifests (`k8s:`) are read as
//! YAML documents: every `image` string anywhere in them. What cannot be made into a reference is listed, not
//! guessed. The result goes into the release as `ferry-images.json` beside the charts or manifests, which `ferry
//! show` reads.

use super::reference::Reference;
use super::IngestError;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use yaml_serde::Value;

/// The report's file name.
pub const REPORT_FILE: &str = "ferry-images.json";
/// The largest file read from a chart (values, templates, nested archives).
const FILE_CAP: u64 = 16 << 20;
/// The most bytes read from one chart archive in all.
const ARCHIVE_CAP: u64 = 256 << 20;

/// What one chart or manifest names.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Named {
    /// The chart archive's file name, or the manifest's path.
    pub source: String,
    /// The chart's name and version (empty for a manifest).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chart: String,
    /// The image references, normalized (`HOST/REPO:TAG[@sha256:…]`), sorted, each once.
    pub images: BTreeSet<String>,
    /// What looked like an image but could not be made into a reference.
    pub unresolved: Vec<Unresolved>,
    /// Subcharts whose images were not taken: a dependency's `condition` (or its `tags`) turned them off in the
    /// merged values, as helm would not render them. Each says which subchart and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<String>,
}

/// A value that could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unresolved {
    /// Where: the file and the key path or line.
    pub at: String,
    /// What was found.
    pub value: String,
    /// Why it is not a reference.
    pub reason: String,
}

/// The report file: every chart or manifest, what it names.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// `helm` or `k8s`.
    pub format: String,
    /// Per chart or manifest.
    pub named: Vec<Named>,
}

impl Report {
    /// Every image, each once, sorted.
    pub fn images(&self) -> BTreeSet<String> {
        self.named
            .iter()
            .flat_map(|n| n.images.iter().cloned())
            .collect()
    }
}

impl Named {
    fn add(&mut self, at: &str, text: &str) {
        match Reference::parse(text.trim()) {
            Ok(r) => {
                self.images.insert(r.to_string());
            }
            Err(reason) => self.unresolved.push(Unresolved {
                at: at.to_string(),
                value: text.to_string(),
                reason,
            }),
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn is_image_key(k: &str) -> bool {
    k == "image" || k.ends_with("Image") || k.ends_with("_image")
}

/// Deep-merge `over` into `base`, as Helm merges values files: maps key by key, anything else replaced.
pub fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The images a chart's merged `values` name. `skip` are top-level keys not to walk (the subcharts' sections).
fn values_images(
    values: &Value,
    globals: &Value,
    app_version: Option<&str>,
    at: &str,
    skip: &BTreeSet<String>,
    out: &mut Named,
) {
    fn walk(
        v: &Value,
        path: &str,
        globals: &Value,
        app_version: Option<&str>,
        skip: Option<&BTreeSet<String>>,
        out: &mut Named,
    ) {
        match v {
            Value::Mapping(m) => {
                for (k, child) in m {
                    let Some(key) = k.as_str() else { continue };
                    if skip.is_some_and(|s| s.contains(key)) || key == "global" && skip.is_some() {
                        continue;
                    }
                    let here = if path.is_empty() {
                        key.to_string()
                    } else {
                        format!("{path}.{key}")
                    };
                    if is_image_key(key) {
                        match child {
                            Value::String(s) => {
                                if s.contains("{{") {
                                    out.unresolved.push(Unresolved {
                                        at: here,
                                        value: s.clone(),
                                        reason:
                                            "a template in a value: render the chart to resolve it"
                                                .into(),
                                    });
                                } else {
                                    let tagged = match m.get("tag").and_then(scalar) {
                                        Some(t) if !s.contains(':') && !s.contains('@') => {
                                            format!("{s}:{t}")
                                        }
                                        _ if !s.rsplit('/').next().unwrap_or("").contains(':')
                                            && !s.contains('@') =>
                                        {
                                            format!("{s}:latest")
                                        }
                                        _ => s.clone(),
                                    };
                                    out.add(&here, &tagged);
                                }
                                continue;
                            }
                            Value::Mapping(im)
                                if im.contains_key("repository") || im.contains_key("name") =>
                            {
                                let repo = im
                                    .get("repository")
                                    .or_else(|| im.get("name"))
                                    .and_then(scalar);
                                let Some(repo) = repo.filter(|r| !r.is_empty()) else {
                                    out.unresolved.push(Unresolved {
                                        at: here,
                                        value: format!("{child:?}"),
                                        reason: "an image map with an empty repository".into(),
                                    });
                                    continue;
                                };
                                let registry = im
                                    .get("registry")
                                    .and_then(scalar)
                                    .filter(|r| !r.is_empty())
                                    .or_else(|| {
                                        globals
                                            .get("imageRegistry")
                                            .and_then(scalar)
                                            .filter(|r| !r.is_empty())
                                    });
                                let tag = im.get("tag").and_then(scalar).filter(|t| !t.is_empty());
                                let digest =
                                    im.get("digest").and_then(scalar).filter(|d| !d.is_empty());
                                let tag = tag.or_else(|| {
                                    digest
                                        .is_none()
                                        .then(|| app_version.map(str::to_string))
                                        .flatten()
                                });
                                if tag.is_none() && digest.is_none() {
                                    out.unresolved.push(Unresolved {
                                        at: here,
                                        value: repo,
                                        reason: "no tag, no digest and no appVersion to default to"
                                            .into(),
                                    });
                                    continue;
                                }
                                // A repository that names its host keeps it.
                                let has_host = repo.split_once('/').is_some_and(|(first, _)| {
                                    first.contains('.')
                                        || first.contains(':')
                                        || first == "localhost"
                                });
                                let mut r = match registry {
                                    Some(reg) if !has_host => format!("{reg}/{repo}"),
                                    _ => repo,
                                };
                                if let Some(t) = tag {
                                    r = format!("{r}:{t}");
                                }
                                if let Some(d) = digest {
                                    r = format!("{r}@{d}");
                                }
                                if r.contains("{{") {
                                    out.unresolved.push(Unresolved {
                                        at: here,
                                        value: r,
                                        reason:
                                            "a template in a value: render the chart to resolve it"
                                                .into(),
                                    });
                                } else {
                                    out.add(&here, &r);
                                }
                                continue;
                            }
                            _ => {}
                        }
                    }
                    walk(child, &here, globals, app_version, None, out);
                }
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(
                        item,
                        &format!("{path}[{i}]"),
                        globals,
                        app_version,
                        None,
                        out,
                    );
                }
            }
            _ => {}
        }
    }
    let before = out.unresolved.len();
    walk(values, "", globals, app_version, Some(skip), out);
    for u in &mut out.unresolved[before..] {
        u.at = format!("{at}: {}", u.at);
    }
}

/// Literal references in a template: `image: REF` lines whose value holds no `{{`.
fn template_images(text: &str, at: &str, out: &mut Named) {
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start().trim_start_matches("- ").trim_start();
        let Some(rest) = t.strip_prefix("image:") else {
            continue;
        };
        let value = rest.trim().trim_matches(|c| c == '"' || c == '\'');
        if value.is_empty() || value.contains("{{") {
            continue;
        }
        out.add(&format!("{at}:{}", i + 1), value);
    }
}

/// Every `image` string in YAML documents (a manifest, kustomize output).
pub fn manifest_images(text: &str, at: &str, out: &mut Named) -> Result<(), IngestError> {
    fn walk(v: &Value, out: &mut Named, at: &str) {
        match v {
            Value::Mapping(m) => {
                for (k, child) in m {
                    if k.as_str() == Some("image") {
                        if let Value::String(s) = child {
                            out.add(at, s);
                            continue;
                        }
                    }
                    walk(child, out, at);
                }
            }
            Value::Sequence(items) => items.iter().for_each(|i| walk(i, out, at)),
            _ => {}
        }
    }
    use serde::Deserialize as _;
    for doc in yaml_serde::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| IngestError::Malformed {
            what: at.to_string(),
            reason: format!("not YAML: {e}"),
        })?;
        walk(&v, out, at);
    }
    Ok(())
}

/// The files of a chart archive worth reading: `Chart.yaml`, values, templates and nested archives, by path.
fn read_files(reader: impl Read, what: &str) -> Result<BTreeMap<String, Vec<u8>>, IngestError> {
    let bad = |reason: String| IngestError::Malformed {
        what: what.to_string(),
        reason,
    };
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(reader.take(ARCHIVE_CAP)));
    let mut files = BTreeMap::new();
    for e in tar
        .entries()
        .map_err(|e| bad(format!("not a gzip tar archive: {e}")))?
    {
        let e = e.map_err(|e| bad(format!("not a gzip tar archive: {e}")))?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let wanted = name.ends_with("/Chart.yaml")
            || name.ends_with("/values.yaml")
            || name.ends_with(".tgz")
            || name.contains("/templates/")
                && [".yaml", ".yml", ".tpl", ".txt"]
                    .iter()
                    .any(|s| name.ends_with(s));
        if !wanted {
            continue;
        }
        let bytes = super::pkgtree::read_capped(e, FILE_CAP, &format!("{what}: {name}"))?;
        files.insert(name, bytes);
    }
    Ok(files)
}

/// The directory of an archive's own chart: the one holding `CHART/Chart.yaml` at the top.
fn top_dir(files: &BTreeMap<String, Vec<u8>>, what: &str) -> Result<String, IngestError> {
    files
        .keys()
        .find_map(|k| {
            k.strip_suffix("/Chart.yaml")
                .filter(|d| !d.contains('/'))
                .map(str::to_string)
        })
        .ok_or_else(|| IngestError::Malformed {
            what: what.to_string(),
            reason: "no CHART/Chart.yaml in the archive".into(),
        })
}

fn parse_yaml(bytes: &[u8], what: &str) -> Result<Value, IngestError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Mapping(Default::default()));
    }
    let v: Value = yaml_serde::from_slice(bytes).map_err(|e| IngestError::Malformed {
        what: what.to_string(),
        reason: format!("not YAML: {e}"),
    })?;
    Ok(match v {
        Value::Null => Value::Mapping(Default::default()),
        v => v,
    })
}

/// Whether helm would render the subchart `name` of a chart whose Chart.yaml (or, for apiVersion v1,
/// requirements.yaml) is `deps_from` and whose merged values are `values`; `Err` says why not. As helm decides:
/// the first path of the dependency's `condition` that holds a boolean in the values settles it; else its `tags`
/// turn it off when none of them is true under `tags:` and one is false; else it is on.
fn dependency_enabled(deps_from: &[&Value], values: &Value, name: &str) -> Result<(), String> {
    let dep = deps_from
        .iter()
        .filter_map(|d| d.get("dependencies").and_then(Value::as_sequence))
        .flatten()
        .find(|d| {
            d.get("alias").and_then(scalar).as_deref() == Some(name)
                || d.get("name").and_then(scalar).as_deref() == Some(name)
        });
    let Some(dep) = dep else { return Ok(()) };
    let lookup = |path: &str| {
        path.trim()
            .split('.')
            .try_fold(values, |v, k| v.get(k))
            .and_then(Value::as_bool)
    };
    if let Some(condition) = dep.get("condition").and_then(scalar) {
        for path in condition.split(',') {
            if let Some(on) = lookup(path) {
                return if on {
                    Ok(())
                } else {
                    Err(format!("condition {} is false", path.trim()))
                };
            }
        }
    }
    let tags: Vec<String> = dep
        .get("tags")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(scalar)
        .collect();
    let set: Vec<(String, bool)> = tags
        .iter()
        .filter_map(|t| lookup(&format!("tags.{t}")).map(|b| (t.clone(), b)))
        .collect();
    if !set.is_empty() && set.iter().all(|(_, on)| !on) {
        let off: Vec<&str> = set.iter().map(|(t, _)| t.as_str()).collect();
        return Err(format!("tags {} are false", off.join(", ")));
    }
    Ok(())
}

/// The chart rooted at `root/` in `files`, with `overrides` merged over its values and the parent's `globals`.
fn scan_chart(
    files: &BTreeMap<String, Vec<u8>>,
    root: &str,
    overrides: &Value,
    globals: &Value,
    label: &str,
    out: &mut Named,
    depth: usize,
) -> Result<(), IngestError> {
    if depth > 8 {
        return Err(IngestError::Malformed {
            what: label.to_string(),
            reason: "subcharts nested more than 8 deep".into(),
        });
    }
    let at = |p: &str| format!("{label}: {p}");
    let chart = files
        .get(&format!("{root}/Chart.yaml"))
        .map(|b| parse_yaml(b, &at(&format!("{root}/Chart.yaml"))))
        .transpose()?
        .unwrap_or(Value::Null);
    let app_version = chart.get("appVersion").and_then(scalar);
    let requirements = files
        .get(&format!("{root}/requirements.yaml"))
        .map(|b| parse_yaml(b, &at(&format!("{root}/requirements.yaml"))))
        .transpose()?
        .unwrap_or(Value::Null);
    let mut values = match files.get(&format!("{root}/values.yaml")) {
        Some(b) => parse_yaml(b, &at(&format!("{root}/values.yaml")))?,
        None => Value::Mapping(Default::default()),
    };
    merge(&mut values, overrides);
    let mut globals = globals.clone();
    if let Some(g) = values.get("global") {
        merge(&mut globals, g);
    }
    // Subcharts: directories under charts/ and archives there.
    let sub_prefix = format!("{root}/charts/");
    let mut subdirs = BTreeSet::new();
    let mut subarchives = Vec::new();
    for name in files.keys() {
        let Some(rest) = name.strip_prefix(&sub_prefix) else {
            continue;
        };
        match rest.split_once('/') {
            Some((dir, "Chart.yaml")) => {
                subdirs.insert(dir.to_string());
            }
            None if rest.ends_with(".tgz") => subarchives.push(name.clone()),
            _ => {}
        }
    }
    let mut skip: BTreeSet<String> = subdirs.clone();
    let mut nested = Vec::new();
    for name in &subarchives {
        let inner = read_files(&files[name][..], &at(name))?;
        let top = top_dir(&inner, &at(name))?;
        let sub_name = inner
            .get(&format!("{top}/Chart.yaml"))
            .and_then(|b| parse_yaml(b, &at(name)).ok())
            .and_then(|c| c.get("name").and_then(scalar))
            .unwrap_or_else(|| top.clone());
        skip.insert(sub_name.clone());
        nested.push((name.clone(), inner, top, sub_name));
    }
    values_images(
        &values,
        &globals,
        app_version.as_deref(),
        &at(&format!("{root}/values.yaml")),
        &skip,
        out,
    );
    let templates = format!("{root}/templates/");
    for (name, bytes) in files {
        if name.starts_with(&templates) {
            template_images(&String::from_utf8_lossy(bytes), &at(name), out);
        }
    }
    let section = |name: &str| {
        values
            .get(name)
            .cloned()
            .unwrap_or(Value::Mapping(Default::default()))
    };
    let enabled = |name: &str, out: &mut Named| match dependency_enabled(
        &[&chart, &requirements],
        &values,
        name,
    ) {
        Ok(()) => true,
        Err(why) => {
            out.disabled
                .push(format!("{}: subchart {name}: {why}", at(root)));
            false
        }
    };
    for dir in &subdirs {
        if !enabled(dir, out) {
            continue;
        }
        scan_chart(
            files,
            &format!("{sub_prefix}{dir}"),
            &section(dir),
            &globals,
            label,
            out,
            depth + 1,
        )?;
    }
    for (name, inner, top, sub_name) in &nested {
        if !enabled(sub_name, out) {
            continue;
        }
        scan_chart(
            inner,
            top,
            &section(sub_name),
            &globals,
            &at(name),
            out,
            depth + 1,
        )?;
    }
    Ok(())
}

/// What the chart archive at `path` names, with `overrides` (the `values=` files, merged in order) over its values.
pub fn chart_images(path: &Path, overrides: &Value) -> Result<Named, IngestError> {
    let label = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let f = std::fs::File::open(path).map_err(IngestError::io(path))?;
    let files = read_files(std::io::BufReader::new(f), &path.display().to_string())?;
    let top = top_dir(&files, &path.display().to_string())?;
    let chart = parse_yaml(&files[&format!("{top}/Chart.yaml")], &label)?;
    let mut out = Named {
        source: label.clone(),
        chart: format!(
            "{} {}",
            chart.get("name").and_then(scalar).unwrap_or_default(),
            chart.get("version").and_then(scalar).unwrap_or_default()
        ),
        ..Named::default()
    };
    scan_chart(
        &files,
        &top,
        overrides,
        &Value::Mapping(Default::default()),
        &label,
        &mut out,
        0,
    )?;
    Ok(out)
}

/// The `values=` files, merged in order.
pub fn read_overrides(files: &[std::path::PathBuf]) -> Result<Value, IngestError> {
    let mut merged = Value::Mapping(Default::default());
    for f in files {
        let bytes = std::fs::read(f).map_err(IngestError::io(f))?;
        merge(&mut merged, &parse_yaml(&bytes, &f.display().to_string())?);
    }
    Ok(merged)
}

/// `k8s:DIR`: every file under DIR, kept at its path under the prefix (default `k8s`), and the images its YAML
/// and JSON files name, in [`REPORT_FILE`] beside them.
pub fn ingest_manifests(
    ctx: &super::image::Context<'_>,
    src: &super::pkgtree::RepoDir,
    entries: &mut Vec<ferry_protocol::Entry>,
    stats: &mut crate::store::WriteStats,
) -> Result<Report, IngestError> {
    let mut report = Report {
        format: "k8s".into(),
        named: Vec::new(),
    };
    let mut w = super::pkgtree::TreeWriter::new(ctx, &src.into, stats);
    for e in walkdir::WalkDir::new(&src.dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let e = e.map_err(|err| {
            let path = err.path().unwrap_or(&src.dir).to_path_buf();
            IngestError::io(path)(err.into())
        })?;
        if !e.file_type().is_file() {
            continue;
        }
        let rel = super::files::relative(&src.dir, e.path())?;
        if [".yaml", ".yml", ".json"].iter().any(|s| rel.ends_with(s)) {
            let f = std::fs::File::open(e.path()).map_err(IngestError::io(e.path()))?;
            let bytes = super::pkgtree::read_capped(f, FILE_CAP, &e.path().display().to_string())?;
            let mut named = Named {
                source: rel.clone(),
                ..Named::default()
            };
            manifest_images(&String::from_utf8_lossy(&bytes), &rel, &mut named)?;
            if !named.images.is_empty() || !named.unresolved.is_empty() {
                report.named.push(named);
            }
        }
        w.copy_file(&rel, e.path())?;
    }
    let json = serde_json::to_vec_pretty(&report).expect("a report serializes");
    w.put_bytes(REPORT_FILE, &json)?;
    entries.extend(w.finish());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        yaml_serde::from_str(s).unwrap()
    }

    #[test]
    fn values_name_images_the_ways_charts_write_them() {
        let mut out = Named::default();
        let values = yaml(
            "image:\n  registry: r.example:5000\n  repository: team/app\n  tag: \"1.2\"\n\
             sidecar:\n  image: r.example:5000/team/side:v2\n\
             db:\n  image:\n    repository: team/db\n\
             pinned:\n  image:\n    repository: r.example/x\n    digest: sha256:0000000000000000000000000000000000000000000000000000000000000000\n\
             jobs:\n  - image: busybox\n    tag: \"1.36\"\n\
             templated:\n  image: \"{{ .Values.x }}\"\n\
             broken:\n  image:\n    repository: Bad/Name\n    tag: v1\n\
             sub:\n  image:\n    tag: only-a-tag\n",
        );
        let skip = BTreeSet::from(["sub".to_string()]);
        let globals = yaml("imageRegistry: mirror.example");
        values_images(
            &values,
            &globals,
            Some("3.0"),
            "values.yaml",
            &skip,
            &mut out,
        );
        let images: Vec<&str> = out.images.iter().map(String::as_str).collect();
        assert_eq!(
            images,
            [
                "docker.io/library/busybox:1.36",
                "mirror.example/team/db:3.0",
                "r.example/x@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "r.example:5000/team/app:1.2",
                "r.example:5000/team/side:v2",
            ],
            "{out:?}"
        );
        let at: Vec<&str> = out.unresolved.iter().map(|u| u.at.as_str()).collect();
        assert_eq!(
            at,
            ["values.yaml: templated.image", "values.yaml: broken.image"],
            "{out:?}"
        );
    }

    #[test]
    fn subcharts_a_condition_or_tags_turn_off_are_not_scanned() {
        let chart = "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n\
                     - name: cache\n  version: 1.0.0\n  condition: cache.enabled,global.cache\n\
                     - name: db\n  version: 1.0.0\n  tags: [storage, sql]\n\
                     - name: queue\n  version: 1.0.0\n  condition: queue.enabled\n  tags: [messaging]\n";
        let sub = |name: &str| {
            [
                (
                    format!("app/charts/{name}/Chart.yaml"),
                    format!("apiVersion: v2\nname: {name}\nversion: 1.0.0\n"),
                ),
                (
                    format!("app/charts/{name}/values.yaml"),
                    format!("image: r.example/{name}:1\n"),
                ),
            ]
        };
        let scan = |values: &str| {
            let mut files: BTreeMap<String, Vec<u8>> = [
                ("app/Chart.yaml".to_string(), chart.to_string()),
                ("app/values.yaml".to_string(), values.to_string()),
            ]
            .into_iter()
            .chain(sub("cache"))
            .chain(sub("db"))
            .chain(sub("queue"))
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
            files.retain(|_, v| !v.is_empty());
            let mut out = Named::default();
            let empty = Value::Mapping(Default::default());
            scan_chart(&files, "app", &empty, &empty, "app.tgz", &mut out, 0).unwrap();
            let images: Vec<String> = out.images.into_iter().collect();
            (images, out.disabled)
        };
        // Nothing set: every subchart is on.
        let (images, disabled) = scan("");
        assert_eq!(
            images,
            ["r.example/cache:1", "r.example/db:1", "r.example/queue:1"]
        );
        assert!(disabled.is_empty());
        // The first condition path that holds a boolean decides; tags are off only when none is true; a condition
        // overrides tags.
        let (images, disabled) = scan(
            "cache:\n  enabled: false\nglobal:\n  cache: true\ntags:\n  storage: false\n  sql: false\n  messaging: false\nqueue:\n  enabled: true\n",
        );
        assert_eq!(images, ["r.example/queue:1"]);
        assert_eq!(
            disabled,
            [
                "app.tgz: app: subchart cache: condition cache.enabled is false",
                "app.tgz: app: subchart db: tags storage, sql are false",
            ]
        );
        let (images, _) = scan("tags:\n  storage: false\n  sql: true\n");
        assert!(images.contains(&"r.example/db:1".to_string()));
    }

    #[test]
    fn templates_and_manifests_give_their_literal_references() {
        let mut out = Named::default();
        template_images(
            "spec:\n  containers:\n    - name: a\n      image: \"{{ .Values.image.repository }}:{{ .Values.image.tag }}\"\n    - image: quay.io/org/tool:1.0\n      name: b\n",
            "t.yaml",
            &mut out,
        );
        assert_eq!(
            out.images.iter().collect::<Vec<_>>(),
            ["quay.io/org/tool:1.0"]
        );
        let mut out = Named::default();
        manifest_images(
            "kind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n        - image: r.example/init:1\n      containers:\n        - image: r.example/app:2\n---\nkind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n            - image: r.example/job@sha256:1111111111111111111111111111111111111111111111111111111111111111\n",
            "m.yaml",
            &mut out,
        )
        .unwrap();
        assert_eq!(out.images.len(), 3, "{out:?}");
        assert!(manifest_images("a: [", "bad.yaml", &mut out).is_err());
    }

    #[test]
    fn merging_is_deep_for_maps_and_replaces_the_rest() {
        let mut base = yaml("a: {b: 1, c: [1, 2]}\nd: x\n");
        merge(&mut base, &yaml("a: {c: [3]}\ne: y\n"));
        assert_eq!(base, yaml("a: {b: 1, c: [3]}\nd: x\ne: y\n"));
    }
}
