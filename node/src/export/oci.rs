//! Export images as an OCI image layout.

use super::{io, ExportError};
use crate::ingest::oci::REF_NAME;
use crate::progress::Progress;
use crate::store::Store;
use ferry_protocol::{Entry, ReleaseManifest};
use serde_json::{json, Value};
use std::path::Path;

/// The name an image gets in `index.json`: its bare tag when it lives in the release's own repository (as
/// `ferry add NAME@V oci:DIR:TAG` put it there), its full reference otherwise.
pub fn ref_name(release: &ReleaseManifest, image: &ferry_protocol::ImageEntry) -> String {
    if image.registry.is_none() && image.repository == release.name {
        image.tag.clone()
    } else {
        image.reference()
    }
}

/// Write every image of `release` into the layout at `dir` (created if needed; other images already in its
/// `index.json` are kept, ones with the same name replaced). Returns how many images were written.
pub fn write(
    store: &Store,
    release: &ReleaseManifest,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<usize, ExportError> {
    let blobs_dir = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs_dir).map_err(io(&blobs_dir))?;
    let layout = dir.join("oci-layout");
    std::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io(&layout))?;

    let index_path = dir.join("index.json");
    let mut manifests: Vec<Value> = match std::fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("manifests")?.as_array().cloned())
            .ok_or_else(|| {
                ExportError::Refused(format!(
                    "{} exists and is not an OCI index; choose an empty directory",
                    index_path.display()
                ))
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&index_path)(e)),
    };

    let mut count = 0;
    for entry in &release.entries {
        let Entry::Image(image) = entry else { continue };
        for b in &image.blobs {
            let path = blobs_dir.join(b.blob.sha256.hex());
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == b.blob.size) {
                continue;
            }
            progress.start(
                &format!("{:.19}", b.blob.sha256.to_string()),
                Some(b.blob.size),
            );
            let tmp = blobs_dir.join(format!(".{}.partial", b.blob.sha256.hex()));
            super::write_then_rename(store, &b.blob, &tmp, &path, progress)?;
            progress.finish();
        }
        let top = image
            .blobs
            .iter()
            .find(|b| b.blob.sha256 == image.digest)
            .ok_or_else(|| {
                ExportError::Refused(format!(
                    "image {} does not carry its own manifest {}",
                    image.reference(),
                    image.digest
                ))
            })?;
        let name = ref_name(release, image);
        manifests.retain(|m| {
            m.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                .and_then(Value::as_str)
                != Some(name.as_str())
        });
        manifests.push(json!({
            "mediaType": image.media_type,
            "digest": image.digest.to_string(),
            "size": top.blob.size,
            "annotations": { REF_NAME: name },
        }));
        count += 1;
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": crate::ingest::image::media::OCI_INDEX,
        "manifests": manifests,
    });
    let tmp = dir.join(".index.json.partial");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&index).expect("json")).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &index_path).map_err(io(&index_path))?;
    Ok(count)
}
