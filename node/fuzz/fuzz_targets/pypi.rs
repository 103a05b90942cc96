//! Python distributions as `ferry add pypi:` reads them — the file name, the wheel's zip or the sdist's tar.gz
//! or zip, the core metadata inside — and the PEP 503 and 691 pages made from them. Any input is refused or
//! read without panicking; what the metadata says cannot add markup to a page, and the JSON page parses.
//!
//! Input: a byte choosing core metadata alone (even) or a distribution (odd: its file name, a newline, then
//! the file).
#![no_main]

use ferry_node::ingest::pypi::{parse_core_metadata, project_html, project_json, Dist};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

/// The pages of `project` with one file requiring `requires_python`: the markup does not change with it.
fn pages(project: &str, requires_python: Option<String>) {
    let dist = |rp| Dist {
        filename: format!("{project}-1.0.tar.gz"),
        sha256: "0".repeat(64),
        requires_python: rp,
        metadata_sha256: None,
    };
    let markup = |s: &str| s.matches(['<', '>', '"']).count();
    let plain = project_html(
        project,
        &[dist(requires_python.as_ref().map(|_| String::new()))],
    );
    let html = project_html(project, &[dist(requires_python.clone())]);
    assert_eq!(
        markup(&html),
        markup(&plain),
        "Requires-Python changed the page's markup"
    );
    let json = project_json(project, &[dist(requires_python.clone())]);
    let v: serde_json::Value = serde_json::from_slice(&json).expect("the JSON page parses");
    assert_eq!(
        v["files"][0]["requires-python"].as_str(),
        requires_python.as_deref()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        let m = parse_core_metadata(rest);
        pages("demo", m.requires_python);
        return;
    }
    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(filename) = std::str::from_utf8(&rest[..nl]) else {
        return;
    };
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
    let path = dir.path().join("dist");
    std::fs::write(&path, &rest[nl + 1..]).expect("writing the input");
    if let Ok((project, requires_python, _)) = ferry_node::fuzz::pypi_dist(filename, &path) {
        pages(&project, requires_python);
    }
});
