//! `helm:DIR[?into=PREFIX]`: chart archives → a Helm chart repository (`index.yaml` beside the charts), as a
//! static tree.
//!
//! The files directly inside DIR are read: chart archives `*.tgz` and their provenance files `*.tgz.prov`; an
//! `index.yaml` there is ignored (a new one is generated); anything else is refused. Under PREFIX (default
//! `helm`): every `.tgz` and `.prov` byte for byte, and `index.yaml` with one entry per chart — the fields
//! Helm keeps from its `Chart.yaml` (read from inside the archive), `digest` (SHA-256 of the archive), `urls`
//! (the archive's name, relative to the repository) and `created`.
//!
//! The index is deterministic: entries by chart name, versions newest first (SemVer precedence); `created` is
//! the newest modification time recorded inside the archive (when it was packed — not when it was copied or
//! ingested), and `generated` the newest `created`. The same charts give the same bytes.

use super::image::Context;
use super::pkgtree::{list_files, read_capped, url_segment, RepoDir, TreeWriter};
use super::IngestError;
use crate::store::WriteStats;
use ferry_protocol::Entry;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml_serde::Value;

/// The prefix when `?into=` is not given.
pub const DEFAULT_PREFIX: &str = "helm";
/// A `Chart.yaml` larger than this is refused.
const CHART_YAML_CAP: u64 = 1 << 20;

/// The `Chart.yaml` fields Helm copies into a repository index (its `Metadata`), in no particular order.
const INDEX_FIELDS: &[&str] = &[
    "apiVersion",
    "name",
    "version",
    "kubeVersion",
    "description",
    "type",
    "keywords",
    "home",
    "sources",
    "dependencies",
    "maintainers",
    "icon",
    "appVersion",
    "deprecated",
    "annotations",
    "condition",
    "tags",
];
/// Fields Helm reads as strings: a YAML number there (`appVersion: 1.16`) is written as its text.
const STRING_FIELDS: &[&str] = &[
    "apiVersion",
    "name",
    "version",
    "kubeVersion",
    "description",
    "type",
    "home",
    "icon",
    "appVersion",
    "condition",
    "tags",
];

/// One chart of the repository.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// The archive's file name.
    pub filename: String,
    /// `name` from Chart.yaml.
    pub name: String,
    /// `version` from Chart.yaml.
    pub version: String,
    /// Its SemVer reading, for ordering.
    pub semver: semver::Version,
    /// The index fields from Chart.yaml, by name.
    pub fields: BTreeMap<String, Value>,
    /// Hex SHA-256 of the archive.
    pub digest: String,
    /// The newest modification time inside the archive, seconds since the epoch.
    pub mtime: u64,
}

/// A version as Helm reads it: SemVer 2, with a leading `v` and missing minor or patch numbers allowed.
pub fn parse_version(v: &str) -> Result<semver::Version, String> {
    let bare = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let split = bare.find(['-', '+']).unwrap_or(bare.len());
    let (core, rest) = bare.split_at(split);
    let padded = match core.split('.').count() {
        1 => format!("{core}.0.0{rest}"),
        2 => format!("{core}.0{rest}"),
        _ => bare.to_string(),
    };
    semver::Version::parse(&padded)
        .map_err(|e| format!("version {v:?} is not SemVer, which Helm requires ({e})"))
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Read `Chart.yaml`: the index fields, and the name and version, which must be there (as must `apiVersion`:
/// Helm skips index entries without one).
pub fn parse_chart_yaml(bytes: &[u8]) -> Result<(String, String, BTreeMap<String, Value>), String> {
    let doc: Value = yaml_serde::from_slice(bytes).map_err(|e| format!("Chart.yaml: {e}"))?;
    let Value::Mapping(map) = doc else {
        return Err("Chart.yaml is not a mapping".into());
    };
    let mut fields = BTreeMap::new();
    for &key in INDEX_FIELDS {
        let Some(v) = map.get(key) else { continue };
        let v = untagged(v);
        if v.is_null() {
            continue;
        }
        let v = if STRING_FIELDS.contains(&key) {
            Value::String(
                scalar_text(&v).ok_or_else(|| format!("Chart.yaml: {key} is not a string"))?,
            )
        } else {
            // index.yaml must hold it: YAML that reads but does not write (a mapping as a key) is refused.
            yaml_serde::to_string(&v)
                .map_err(|e| format!("Chart.yaml: {key} cannot be written to index.yaml ({e})"))?;
            v
        };
        fields.insert(key.to_string(), v);
    }
    let required = |key: &str| match fields.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(format!("Chart.yaml has no {key}")),
    };
    let name = required("name")?;
    let version = required("version")?;
    required("apiVersion")?;
    Ok((name, version, fields))
}

/// `v` with its YAML tags dropped, at any depth: Helm reads `Chart.yaml` into plain fields, and a tag kept (the
/// bare `!`, for one) may not be written back into `index.yaml`.
fn untagged(v: &Value) -> Value {
    match v {
        Value::Tagged(t) => untagged(&t.value),
        Value::Sequence(s) => Value::Sequence(s.iter().map(untagged).collect()),
        Value::Mapping(m) => {
            Value::Mapping(m.iter().map(|(k, v)| (untagged(k), untagged(v))).collect())
        }
        other => other.clone(),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days since 1970-01-01 → civil date, counting in 400-year eras that start on 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `Chart.yaml` of the archive at `path` (the one at `CHART/Chart.yaml`, not a subchart's) and the newest
/// modification time of any entry.
pub(crate) fn read_archive(path: &Path) -> Result<(Vec<u8>, u64), IngestError> {
    let bad = |reason: String| IngestError::Malformed {
        what: path.display().to_string(),
        reason,
    };
    let f = std::fs::File::open(path).map_err(IngestError::io(path))?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(f));
    let mut tar = tar::Archive::new(gz);
    let mut chart_yaml: Option<(String, Vec<u8>)> = None;
    let mut mtime = 0u64;
    for e in tar
        .entries()
        .map_err(|e| bad(format!("not a gzip tar archive: {e}")))?
    {
        let e = e.map_err(|e| bad(format!("not a gzip tar archive: {e}")))?;
        mtime = mtime.max(e.header().mtime().unwrap_or(0));
        let name = e
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let mut parts = name.trim_start_matches("./").split('/');
        if let (Some(_), Some("Chart.yaml"), None) = (parts.next(), parts.next(), parts.next()) {
            if let Some((first, _)) = &chart_yaml {
                return Err(bad(format!(
                    "two charts in one archive: {first} and {name}"
                )));
            }
            let bytes = read_capped(e, CHART_YAML_CAP, &format!("{}: {name}", path.display()))?;
            chart_yaml = Some((name, bytes));
        }
    }
    let (_, bytes) = chart_yaml.ok_or_else(|| bad("no CHART/Chart.yaml in the archive".into()))?;
    Ok((bytes, mtime))
}

/// The `index.yaml` of `charts`: `apiVersion: v1`, entries by name with versions newest first, `generated`.
pub fn index_yaml(charts: &[Chart]) -> String {
    let mut by_name: BTreeMap<&str, Vec<&Chart>> = BTreeMap::new();
    for c in charts {
        by_name.entry(&c.name).or_default().push(c);
    }
    let mut entries: BTreeMap<String, Vec<BTreeMap<String, Value>>> = BTreeMap::new();
    for (name, mut versions) in by_name {
        versions.sort_by(|a, b| b.semver.cmp(&a.semver).then(a.filename.cmp(&b.filename)));
        let list = versions
            .into_iter()
            .map(|c| {
                let mut e = c.fields.clone();
                e.insert("created".into(), Value::String(rfc3339(c.mtime)));
                e.insert("digest".into(), Value::String(c.digest.clone()));
                e.insert(
                    "urls".into(),
                    Value::Sequence(vec![Value::String(url_segment(&c.filename))]),
                );
                e
            })
            .collect();
        entries.insert(name.to_string(), list);
    }
    #[derive(serde::Serialize)]
    struct Index {
        #[serde(rename = "apiVersion")]
        api_version: &'static str,
        entries: BTreeMap<String, Vec<BTreeMap<String, Value>>>,
        generated: String,
    }
    let index = Index {
        api_version: "v1",
        entries,
        generated: rfc3339(charts.iter().map(|c| c.mtime).max().unwrap_or(0)),
    };
    yaml_serde::to_string(&index).expect("YAML of plain values")
}

/// A `helm:` source: the chart directory, and whether to bring the images the charts name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelmSource {
    /// The directory and the prefix.
    pub repo: RepoDir,
    /// `images=yes`: find the images each chart names and pull them into the release.
    pub images: bool,
    /// `values=FILE[,FILE…]`: values files merged over every chart's own (as `helm -f`), in order.
    pub values: Vec<PathBuf>,
}

impl HelmSource {
    /// Parse `DIR[?into=PREFIX&images=yes&values=FILE,…]`.
    pub fn parse(rest: &str) -> Result<HelmSource, String> {
        let (dir, query) = match rest.rsplit_once('?') {
            Some((dir, query)) if !Path::new(rest).exists() => (dir, query),
            _ => (rest, ""),
        };
        let mut images = false;
        let mut values = Vec::new();
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("images", "yes")) => images = true,
                Some(("images", "no")) => images = false,
                Some(("images", v)) => return Err(format!("images={v}: use yes or no")),
                Some(("values", v)) => {
                    values.extend(v.split(',').filter(|f| !f.is_empty()).map(PathBuf::from))
                }
                Some(("into", _)) => kept.push(pair),
                _ => {
                    return Err(format!(
                        "unknown option {pair:?}: use into=PREFIX, images=yes, values=FILE[,FILE…]"
                    ))
                }
            }
        }
        if !values.is_empty() && !images {
            return Err("values= is read to find images: give images=yes too".into());
        }
        let repo = if kept.is_empty() {
            RepoDir::parse(dir, DEFAULT_PREFIX)?
        } else {
            RepoDir::parse(&format!("{dir}?{}", kept.join("&")), DEFAULT_PREFIX)?
        };
        Ok(HelmSource {
            repo,
            images,
            values,
        })
    }
}

/// Ingest the charts of `src` as a chart repository; with `images=yes`, also what each chart names (written
/// beside the charts as [`super::named::REPORT_FILE`] and returned, for the images to be pulled).
pub fn ingest(
    ctx: &Context<'_>,
    src: &HelmSource,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<Option<super::named::Report>, IngestError> {
    let named = if src.images {
        let overrides = super::named::read_overrides(&src.values)?;
        let mut report = super::named::Report {
            format: "helm".into(),
            named: Vec::new(),
        };
        for (name, path) in list_files(&src.repo.dir, "helm")? {
            if name.ends_with(".tgz") {
                report
                    .named
                    .push(super::named::chart_images(&path, &overrides)?);
            }
        }
        Some(report)
    } else {
        None
    };
    repository(ctx, &src.repo, named.as_ref(), entries, stats)?;
    Ok(named)
}

/// Store DIR's charts and provenance files and the generated `index.yaml` (and the images report) under the
/// prefix.
fn repository(
    ctx: &Context<'_>,
    src: &RepoDir,
    named: Option<&super::named::Report>,
    entries: &mut Vec<Entry>,
    stats: &mut WriteStats,
) -> Result<(), IngestError> {
    let files = list_files(&src.dir, "helm")?;
    let mut archives: Vec<(String, PathBuf)> = Vec::new();
    let mut provs: Vec<(String, PathBuf)> = Vec::new();
    for (name, path) in files {
        if name.ends_with(".tgz.prov") {
            provs.push((name, path));
        } else if name.ends_with(".tgz") {
            archives.push((name, path));
        } else if name == "index.yaml" {
            tracing::info!(
                "{}: ignored; ferry writes its own index.yaml",
                path.display()
            );
        } else {
            return Err(IngestError::BadSource {
                source_text: path.display().to_string(),
                reason: "not a chart: helm: takes chart archives (*.tgz) and their provenance (*.tgz.prov)"
                    .into(),
            });
        }
    }
    for (name, path) in &provs {
        let chart = name.trim_end_matches(".prov");
        if !archives.iter().any(|(a, _)| a == chart) {
            return Err(IngestError::BadSource {
                source_text: path.display().to_string(),
                reason: format!("a provenance file without its chart {chart}"),
            });
        }
    }
    // Read every Chart.yaml first: a bad chart is refused before anything is stored.
    let mut charts = Vec::new();
    for (filename, path) in &archives {
        let (bytes, mtime) = read_archive(path)?;
        let (name, version, fields) =
            parse_chart_yaml(&bytes).map_err(|reason| IngestError::Malformed {
                what: path.display().to_string(),
                reason,
            })?;
        let semver = parse_version(&version).map_err(|reason| IngestError::Malformed {
            what: path.display().to_string(),
            reason,
        })?;
        if let Some(other) = charts
            .iter()
            .find(|c: &&Chart| c.name == name && c.semver == semver)
        {
            return Err(IngestError::BadSource {
                source_text: path.display().to_string(),
                reason: format!(
                    "chart {name} {version} is also in {}: a repository holds each version once",
                    other.filename
                ),
            });
        }
        charts.push(Chart {
            filename: filename.clone(),
            name,
            version,
            semver,
            fields,
            digest: String::new(),
            mtime,
        });
    }
    if charts.is_empty() {
        return Err(IngestError::BadSource {
            source_text: src.describe("helm"),
            reason: "no chart archives (*.tgz) in the directory".into(),
        });
    }
    let mut w = TreeWriter::new(ctx, &src.into, stats);
    for (chart, (filename, path)) in charts.iter_mut().zip(&archives) {
        chart.digest = w.copy_file(filename, path)?.sha256.hex();
    }
    for (filename, path) in &provs {
        w.copy_file(filename, path)?;
    }
    w.put_bytes("index.yaml", index_yaml(&charts).as_bytes())?;
    if let Some(report) = named {
        let json = serde_json::to_vec_pretty(report).expect("a report serializes");
        w.put_bytes(super::named::REPORT_FILE, &json)?;
    }
    entries.extend(w.finish());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_287_200), "2024-03-01T10:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn versions_read_as_helm_does() {
        assert_eq!(
            parse_version("1.2.3").unwrap(),
            semver::Version::new(1, 2, 3)
        );
        assert_eq!(
            parse_version("v1.2").unwrap(),
            semver::Version::new(1, 2, 0)
        );
        assert_eq!(parse_version("2").unwrap(), semver::Version::new(2, 0, 0));
        assert_eq!(parse_version("1.0-rc.1").unwrap().pre.as_str(), "rc.1");
        assert!(parse_version("1.0.0-rc.1").unwrap() < parse_version("1.0.0").unwrap());
        for bad in ["", "latest", "1.2.3.4", "1..2"] {
            assert!(parse_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chart_yaml_fields() {
        let (name, version, fields) = parse_chart_yaml(
            b"apiVersion: v2\nname: web\nversion: 1.2.0\nappVersion: 1.16\ndescription: x\n\
              maintainers:\n  - name: A\n    email: a@x\nnotAnIndexField: 1\nicon: ~\n",
        )
        .unwrap();
        assert_eq!((name.as_str(), version.as_str()), ("web", "1.2.0"));
        assert_eq!(fields["appVersion"], Value::String("1.16".into()));
        assert_eq!(
            fields["maintainers"][0]["email"],
            Value::String("a@x".into())
        );
        assert!(!fields.contains_key("notAnIndexField") && !fields.contains_key("icon"));
        for (bad, want) in [
            (&b"apiVersion: v2\nversion: 1.0.0\n"[..], "no name"),
            (b"apiVersion: v2\nname: web\n", "no version"),
            (b"apiVersion: v2\nname: web\nversion: \"\"\n", "no version"),
            (b"name: web\nversion: 1.0.0\n", "no apiVersion"),
            (b"- a list\n", "not a mapping"),
            (b"name: [unclosed\n", "Chart.yaml"),
            (
                b"apiVersion: v2\nname: {a: 1}\nversion: 1.0.0\n",
                "name is not a string",
            ),
            // Found by the `helm` fuzz target: a mapping as a key reads but cannot be written to index.yaml.
            (
                b"apiVersion: v2\nname: d\nversion: 1.0.0\nkeywords:\n ? e:\n",
                "keywords cannot be written",
            ),
        ] {
            let err = parse_chart_yaml(bad).unwrap_err();
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
    }

    #[test]
    fn tags_in_chart_yaml_are_dropped() {
        // Found by the `helm` fuzz target: a tagged value (here the bare `!`) in an index field made writing
        // index.yaml panic.
        let (name, version, fields) = parse_chart_yaml(
            b"apiVersion: v2\nname: !!str n\nversion: 1.0.0\nmaintainers:\n ! :\nkeywords: [!x a]\n",
        )
        .unwrap();
        assert_eq!(name, "n");
        assert_eq!(fields["keywords"][0], Value::String("a".into()));
        let c = Chart {
            filename: "n-1.0.0.tgz".into(),
            name,
            semver: parse_version(&version).unwrap(),
            version,
            fields,
            digest: "0".repeat(64),
            mtime: 0,
        };
        let index: Value = yaml_serde::from_str(&index_yaml(&[c])).unwrap();
        assert!(index["entries"]["n"][0]["maintainers"].is_mapping());
    }

    fn chart(file: &str, name: &str, version: &str, mtime: u64) -> Chart {
        let fields = parse_chart_yaml(
            format!("apiVersion: v2\nname: {name}\nversion: {version}\ndescription: \"<b>&\"\n")
                .as_bytes(),
        )
        .unwrap()
        .2;
        Chart {
            filename: file.into(),
            name: name.into(),
            version: version.into(),
            semver: parse_version(version).unwrap(),
            fields,
            digest: "ab".repeat(32),
            mtime,
        }
    }

    #[test]
    fn index_sorted_and_deterministic() {
        let charts = [
            chart("web-1.10.0.tgz", "web", "1.10.0", 300),
            chart("db-0.1.0.tgz", "db", "0.1.0", 100),
            chart("web-1.2.0.tgz", "web", "1.2.0", 200),
            chart("web-1.10.0-rc.1.tgz", "web", "1.10.0-rc.1", 250),
        ];
        let text = index_yaml(&charts);
        let doc: Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(doc["apiVersion"], Value::String("v1".into()));
        assert_eq!(doc["generated"], Value::String(rfc3339(300)));
        let versions: Vec<&str> = doc["entries"]["web"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["1.10.0", "1.10.0-rc.1", "1.2.0"], "{text}");
        let db = &doc["entries"]["db"][0];
        assert_eq!(db["digest"].as_str(), Some("ab".repeat(32).as_str()));
        assert_eq!(db["urls"][0].as_str(), Some("db-0.1.0.tgz"));
        assert_eq!(db["created"].as_str(), Some("1970-01-01T00:01:40Z"));
        assert_eq!(db["description"].as_str(), Some("<b>&"));
        // Names in order, keys in order: shuffled input, same bytes.
        let mut shuffled = charts.clone();
        shuffled.reverse();
        assert_eq!(index_yaml(&shuffled), text);
        assert!(
            text.find("  db:").unwrap() < text.find("  web:").unwrap(),
            "{text}"
        );
    }
}
