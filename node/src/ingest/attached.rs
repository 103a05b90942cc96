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

/// The signatures of `digest` in `src`: the cosign signature layers of the manifest tagged `sha256-<hex>.sig`
/// and of its referrers of cosign's signature artifact type (with the certificate and Rekor entry of keyless
/// ones), and the sigstore bundles its referrers hold.
pub fn find_signatures(
    src: &impl Attachments,
    digest: &Sha256Digest,
) -> Result<FoundSignatures, IngestError> {
    let mut found = FoundSignatures::default();
    let sig_tag = format!("sha256-{}.sig", digest.hex());
    let mut manifests = Vec::new();
    if let Some(bytes) = src.tagged(&sig_tag)? {
        manifests.push((format!("tag {sig_tag}"), bytes, false));
    }
    for d in src.referrers_of(digest)? {
        let kind = d.artifact_type.as_deref().unwrap_or_default();
        let bundle = kind.starts_with(keyless::BUNDLE_ARTIFACT);
        if kind != cosign::SIG_ARTIFACT && !bundle {
            continue;
        }
        let at = d.sha256(&format!("the referrers of {digest}"))?;
        manifests.push((format!("referrer {at}"), src.manifest(&at)?, bundle));
    }
    for (found_in, bytes, bundle) in manifests {
        let within = format!("signature manifest {found_in} at {}", src.describe());
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| IngestError::Malformed {
                what: within.clone(),
                reason: format!("not JSON: {e}"),
            })?;
        for layer in v["layers"].as_array().into_iter().flatten() {
            let media_type = layer["mediaType"].as_str().unwrap_or_default();
            if bundle {
                if media_type.starts_with(keyless::BUNDLE_ARTIFACT) {
                    found.bundles.push(keyless::FoundBundle {
                        bytes: small_blob(src, layer, &within)?,
                        found_in: found_in.clone(),
                    });
                }
                continue;
            }
            if media_type != cosign::SIMPLE_SIGNING {
                continue;
            }
            let annotations = &layer["annotations"];
            let Some(signature) = annotations[cosign::SIGNATURE_ANNOTATION].as_str() else {
                continue;
            };
            found.signatures.push(cosign::Signature {
                payload: small_blob(src, layer, &within)?,
                signature: signature.to_string(),
                found_in: found_in.clone(),
                attached: keyless::Attached::from_annotations(annotations),
            });
        }
    }
    Ok(found)
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
