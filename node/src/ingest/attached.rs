//! What is attached to an image, wherever the image comes from (a registry, an OCI layout): its cosign
//! signatures (the `sha256-<hex>.sig` tag, or referrers of cosign's signature type, with the certificate and
//! Rekor entry of keyless ones) and the sigstore bundles its referrers hold, read the same way from either, and
//! checked against a policy rule.

use super::image::{BlobSource, Descriptor};
use super::IngestError;
use crate::verify::{cosign, keyless, Rule};
use ferry_protocol::Sha256Digest;
use std::io::Read;

/// The largest signature payload or sigstore bundle read.
pub const MAX_PAYLOAD: u64 = keyless::MAX_BUNDLE;

/// Where an image's attachments are looked up.
pub trait Attachments: BlobSource {
    /// The bytes of the manifest tagged `tag`, if there is one.
    fn tagged(&self, tag: &str) -> Result<Option<Vec<u8>>, IngestError>;
    /// The referrers of `digest`.
    fn referrers_of(&self, digest: &Sha256Digest) -> Result<Vec<Descriptor>, IngestError>;
    /// The bytes of the manifest `digest`, checked against it.
    fn manifest(&self, digest: &Sha256Digest) -> Result<Vec<u8>, IngestError>;
}

/// What [`find_signatures`] finds for an image.
#[derive(Debug, Default)]
pub struct FoundSignatures {
    /// Cosign signature layers (made with a key, or keyless with a certificate).
    pub signatures: Vec<cosign::Signature>,
    /// Sigstore bundles held by referrers.
    pub bundles: Vec<keyless::FoundBundle>,
}

/// The most signatures (cosign signature layers and sigstore bundles, each up to [`MAX_PAYLOAD`]) read for one
/// image: more is refused, so what an upstream can make an ingest hold is bounded.
pub const MAX_SIGNATURES: usize = 64;

/// The signatures of `digest` in `src`: the cosign signature layers of the manifest tagged `sha256-<hex>.sig`
/// and of its referrers of cosign's signature artifact type (with the certificate and Rekor entry of keyless
/// ones), and the sigstore bundles its referrers hold. Manifests are read one at a time.
pub fn find_signatures(
    src: &impl Attachments,
    digest: &Sha256Digest,
) -> Result<FoundSignatures, IngestError> {
    let mut found = FoundSignatures::default();
    let sig_tag = format!("sha256-{}.sig", digest.hex());
    if let Some(bytes) = src.tagged(&sig_tag)? {
        take_signatures(
            src,
            digest,
            &mut found,
            &format!("tag {sig_tag}"),
            &bytes,
            false,
        )?;
    }
    for d in src.referrers_of(digest)? {
        let kind = d.artifact_type.as_deref().unwrap_or_default();
        let bundle = kind.starts_with(keyless::BUNDLE_ARTIFACT);
        if kind != cosign::SIG_ARTIFACT && !bundle {
            continue;
        }
        let at = d.sha256(&format!("the referrers of {digest}"))?;
        let bytes = src.manifest(&at)?;
        take_signatures(
            src,
            digest,
            &mut found,
            &format!("referrer {at}"),
            &bytes,
            bundle,
        )?;
    }
    Ok(found)
}

/// Add to `found` the signatures of the manifest `bytes` (found in `found_in`): its sigstore bundles if it is a
/// `bundle` referrer, else its cosign signature layers.
fn take_signatures(
    src: &impl Attachments,
    digest: &Sha256Digest,
    found: &mut FoundSignatures,
    found_in: &str,
    bytes: &[u8],
    bundle: bool,
) -> Result<(), IngestError> {
    let within = format!("signature manifest {found_in} at {}", src.describe());
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| IngestError::Malformed {
            what: within.clone(),
            reason: format!("not JSON: {e}"),
        })?;
    for layer in v["layers"].as_array().into_iter().flatten() {
        let media_type = layer["mediaType"].as_str().unwrap_or_default();
        let wanted = if bundle {
            media_type.starts_with(keyless::BUNDLE_ARTIFACT)
        } else {
            media_type == cosign::SIMPLE_SIGNING
                && layer["annotations"][cosign::SIGNATURE_ANNOTATION].is_string()
        };
        if !wanted {
            continue;
        }
        if found.signatures.len() + found.bundles.len() >= MAX_SIGNATURES {
            return Err(IngestError::Malformed {
                what: within,
                reason: format!(
                    "more than {MAX_SIGNATURES} signatures of {digest}: refused rather than checked in part"
                ),
            });
        }
        let payload = small_blob(src, layer, &within)?;
        if bundle {
            found.bundles.push(keyless::FoundBundle {
                bytes: payload,
                found_in: found_in.to_string(),
            });
        } else {
            let annotations = &layer["annotations"];
            found.signatures.push(cosign::Signature {
                payload,
                signature: annotations[cosign::SIGNATURE_ANNOTATION]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                found_in: found_in.to_string(),
                attached: keyless::Attached::from_annotations(annotations),
            });
        }
    }
    Ok(())
}

/// The bytes of the small blob `layer` describes (a signature payload, a bundle), checked against its digest
/// and size; `within` names its manifest.
fn small_blob(
    src: &impl BlobSource,
    layer: &serde_json::Value,
    within: &str,
) -> Result<Vec<u8>, IngestError> {
    let d: Descriptor =
        serde_json::from_value(layer.clone()).map_err(|e| IngestError::Malformed {
            what: within.to_string(),
            reason: format!("a malformed layer: {e}"),
        })?;
    let at = d.sha256(within)?;
    if d.size > MAX_PAYLOAD {
        return Err(IngestError::Malformed {
            what: within.to_string(),
            reason: format!(
                "a signature layer of {} bytes (at most {MAX_PAYLOAD})",
                d.size
            ),
        });
    }
    let mut bytes = Vec::new();
    src.open(&at, d.size)?
        .take(d.size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| IngestError::Malformed {
            what: within.to_string(),
            reason: format!("reading layer {at}: {e}"),
        })?;
    if bytes.len() as u64 != d.size || Sha256Digest::of(&bytes) != at {
        return Err(IngestError::Malformed {
            what: within.to_string(),
            reason: format!("layer {at} does not match its digest and size"),
        });
    }
    Ok(bytes)
}

/// Whether `found` holds a good signature of `digest` by one of the rule's cosign keys or keyless signers:
/// the scheme and the key (or identity) on success, every reason on failure.
pub fn verify_image(
    rule: &Rule,
    digest: &Sha256Digest,
    found: &FoundSignatures,
) -> Result<(&'static str, String), String> {
    let mut reasons = Vec::new();
    if !rule.cosign.is_empty() {
        match cosign::verify_image(&rule.cosign, digest, &found.signatures) {
            Ok(key) => return Ok(("cosign", key.describe())),
            Err(e) => reasons.push(e),
        }
    }
    if !rule.keyless.is_empty() {
        match keyless::verify_image(&rule.keyless, digest, &found.signatures, &found.bundles) {
            Ok((signer, who)) => return Ok(("keyless", format!("{who} ({})", signer.describe()))),
            Err(e) => reasons.push(e),
        }
    }
    Err(reasons.join("; "))
}

/// The manifest a referrer (parsed as `v`) names as its `subject`, if it names one.
pub fn subject_of(v: &serde_json::Value) -> Option<Sha256Digest> {
    v["subject"]["digest"].as_str()?.parse().ok()
}

/// The tags cosign gives an image's attachments.
pub const ATTACHMENT_SUFFIXES: [&str; 3] = [".sig", ".att", ".sbom"];

#[cfg(test)]
mod tests {
    use super::*;

    /// An image whose `.sig` tag holds `layers` signature layers, all over one small payload.
    struct Signed {
        payload: Vec<u8>,
        layers: usize,
    }

    impl BlobSource for Signed {
        fn describe(&self) -> String {
            "memory".into()
        }

        fn open(&self, _: &Sha256Digest, _: u64) -> Result<Box<dyn Read + Send + '_>, IngestError> {
            Ok(Box::new(&self.payload[..]))
        }
    }

    impl Attachments for Signed {
        fn tagged(&self, _: &str) -> Result<Option<Vec<u8>>, IngestError> {
            let layer = serde_json::json!({
                "mediaType": cosign::SIMPLE_SIGNING,
                "digest": Sha256Digest::of(&self.payload).to_string(),
                "size": self.payload.len(),
                "annotations": { cosign::SIGNATURE_ANNOTATION: "c2ln" },
            });
            let manifest = serde_json::json!({ "layers": vec![layer; self.layers] });
            Ok(Some(serde_json::to_vec(&manifest).unwrap()))
        }

        fn referrers_of(&self, _: &Sha256Digest) -> Result<Vec<Descriptor>, IngestError> {
            Ok(Vec::new())
        }

        fn manifest(&self, d: &Sha256Digest) -> Result<Vec<u8>, IngestError> {
            Err(IngestError::NotFound(d.to_string()))
        }
    }

    #[test]
    fn signatures_past_the_bound_are_refused_not_read() {
        let digest = Sha256Digest::of(b"image");
        let payload = b"{\"critical\":{}}".to_vec();
        let src = Signed {
            payload: payload.clone(),
            layers: MAX_SIGNATURES,
        };
        let found = find_signatures(&src, &digest).unwrap();
        assert_eq!(found.signatures.len(), MAX_SIGNATURES);
        assert_eq!(found.signatures[0].payload, payload);
        let src = Signed {
            payload,
            layers: MAX_SIGNATURES + 1,
        };
        let e = find_signatures(&src, &digest).unwrap_err().to_string();
        assert!(e.contains("more than 64 signatures"), "{e}");
        assert!(e.contains("tag sha256-"), "{e}");
    }
}
