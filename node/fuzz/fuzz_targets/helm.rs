//! Helm charts as `ferry add helm:` reads them — the chart archive (gzip tar), its `Chart.yaml` — and the
//! `index.yaml` made from them. Any input is refused or read without panicking, and the index made from
//! whatever `Chart.yaml` held parses as YAML and lists the chart. The images a chart archive names
//! (`helm:…?images=yes`: values, templates, subcharts) and a manifest names (`k8s:`) are read the same way:
//! every image found is a reference that parses again to itself.
//!
//! Input: a byte choosing `Chart.yaml` alone (even) or a chart archive (odd), then the bytes.
#![no_main]

use ferry_node::ingest::helm::{index_yaml, parse_chart_yaml, parse_version, Chart};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fn chart(yaml: &[u8], mtime: u64) {
    let Ok((name, version, fields)) = parse_chart_yaml(yaml) else {
        return;
    };
    let Ok(semver) = parse_version(&version) else {
        return;
    };
    let c = Chart {
        filename: format!("{name}-{version}.tgz"),
        name: name.clone(),
        version,
        semver,
        fields,
        digest: "0".repeat(64),
        mtime,
    };
    let index = index_yaml(&[c]);
    let v: yaml_serde::Value = yaml_serde::from_str(&index).expect("index.yaml parses");
    assert!(
        v["entries"].get(name.as_str()).is_some(),
        "index.yaml does not list the chart"
    );
}

fn images_parse_back(named: &ferry_node::ingest::named::Named) {
    for i in &named.images {
        let r = ferry_node::ingest::reference::Reference::parse(i).expect("a found image parses");
        assert_eq!(&r.to_string(), i, "a found image is written as it parses");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        chart(rest, 0);
        let mut named = ferry_node::ingest::named::Named::default();
        if ferry_node::ingest::named::manifest_images(
            &String::from_utf8_lossy(rest),
            "m",
            &mut named,
        )
        .is_ok()
        {
            images_parse_back(&named);
        }
        return;
    }
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
    let path = dir.path().join("chart.tgz");
    std::fs::write(&path, rest).expect("writing the input");
    if let Ok((yaml, mtime)) = ferry_node::fuzz::helm_chart(&path) {
        chart(&yaml, mtime);
    }
    let empty = yaml_serde::Value::Mapping(Default::default());
    if let Ok(named) = ferry_node::ingest::named::chart_images(&path, &empty) {
        images_parse_back(&named);
    }
});
