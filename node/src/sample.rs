//! A small, real sample release for newcomers: an OCI image (one uncompressed tar layer, a config with the
//! right diff id) and a file tree, generated so that the quick start needs no network.

use ferry_protocol::Sha256Digest;
use serde_json::json;
use std::path::{Path, PathBuf};

const README: &str = "This image was built by `ferry quickstart`.\n\
Ferry ships only the chunks a site lacks across the air gap, and serves what it holds to ordinary clients.\n";

fn layer_tar() -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, path, data)
    };
    add("etc/ferry-sample/README", 0o644, README.as_bytes())?;
    add(
        "usr/local/bin/hello",
        0o755,
        b"#!/bin/sh\necho 'hello from a ferry-delivered image'\n",
    )?;
    // Some bulk so chunking has something to cut: a deterministic text table.
    let table: String = (0..20_000)
        .map(|i| {
            format!(
                "{i:06} {:016x}\n",
                (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            )
        })
        .collect();
    add("usr/share/ferry-sample/table.txt", 0o644, table.as_bytes())?;
    b.into_inner()
}

fn put_blob(layout: &Path, bytes: &[u8]) -> std::io::Result<(Sha256Digest, usize)> {
    let d = Sha256Digest::of(bytes);
    std::fs::write(layout.join("blobs/sha256").join(d.hex()), bytes)?;
    Ok((d, bytes.len()))
}

/// Write the sample into `dir`: returns (OCI layout with tag `1.0`, file tree).
pub fn write(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let layer = layer_tar()?;
    let (layer_d, layer_n) = put_blob(&layout, &layer)?;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/usr/local/bin/hello"] },
        "rootfs": { "type": "layers", "diff_ids": [layer_d.to_string()] },
        "history": [{ "created_by": "ferry quickstart" }],
    }))
    .expect("json");
    let (config_d, config_n) = put_blob(&layout, &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d.to_string(), "size": config_n },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d.to_string(), "size": layer_n }],
    }))
    .expect("json");
    let (manifest_d, manifest_n) = put_blob(&layout, &manifest)?;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_d.to_string(),
            "size": manifest_n,
            "annotations": { "org.opencontainers.image.ref.name": "1.0" },
        }],
    }))
    .expect("json");
    std::fs::write(layout.join("index.json"), index)?;

    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("docs"))?;
    std::fs::write(tree.join("docs/README.txt"), README)?;
    std::fs::write(
        tree.join("install.sh"),
        "#!/bin/sh\necho installing the sample\n",
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        tree.join("install.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    Ok((layout, tree))
}
