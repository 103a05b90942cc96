//! Sigstore/cosign image signatures made with a key, as `cosign sign --key` and `skopeo copy
//! --sign-by-sigstore-private-key` write them.
//!
//! A signature is a layer of media type [`SIMPLE_SIGNING`] in a manifest found either at the tag
//! `sha256-<hex>.sig` of the signed digest or among its OCI referrers (artifact type [`SIG_ARTIFACT`]). The layer
//! is the payload, a JSON document naming the signed manifest digest (`critical.image.docker-manifest-digest`);
//! its annotation [`SIGNATURE_ANNOTATION`] holds the base64 signature over the payload's bytes: ECDSA P-256 with
//! SHA-256 (DER-encoded), or Ed25519.

use ferry_protocol::Sha256Digest;
use p256::pkcs8::DecodePublicKey;
use sha2::Digest as _;
use std::path::Path;

/// The media type of a signature payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation of that layer holding the signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The artifact type of a cosign signature stored as an OCI 1.1 referrer.
pub const SIG_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The payload type every cosign image signature names.
const PAYLOAD_TYPE: &str = "cosign container image signature";

#[derive(Clone, Debug)]
enum Key {
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A cosign public key (a PEM `PUBLIC KEY`, as `cosign generate-key-pair` writes `cosign.pub`).
#[derive(Clone, Debug)]
pub struct CosignKey {
    /// The file it came from.
    pub path: String,
    /// `sha256:` of its DER (SubjectPublicKeyInfo) encoding.
    pub fingerprint: String,
    key: Key,
}

impl CosignKey {
    /// Read the key at `path`.
    pub fn load(path: &Path) -> Result<CosignKey, String> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("cosign key {shown}: {e}"))?;
        CosignKey::from_pem(&text, shown)
    }

    /// A key from its PEM text; `shown` names it in messages.
    pub fn from_pem(text: &str, shown: String) -> Result<CosignKey, String> {
        let der = pem_body(text, "PUBLIC KEY")
            .ok_or_else(|| format!("cosign key {shown}: not a PEM PUBLIC KEY"))?;
        let key = if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(&der) {
            Key::P256(k)
        } else if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_der(&der) {
            Key::Ed25519(k)
        } else {
            return Err(format!(
                "cosign key {shown}: not an ECDSA P-256 or Ed25519 public key (the kinds ferry checks)"
            ));
        };
        Ok(CosignKey {
            path: shown,
            fingerprint: format!("sha256:{}", hex::encode(sha2::Sha256::digest(&der))),
            key,
        })
    }

    /// `cosign key PATH (sha256:…)`, for messages.
    pub fn describe(&self) -> String {
        format!("cosign key {} ({})", self.path, self.fingerprint)
    }

    /// Whether `signature` (base64, as the annotation holds it) is good over `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &str) -> bool {
        use base64::Engine as _;
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
            return false;
        };
        match &self.key {
            Key::P256(k) => {
                use p256::ecdsa::signature::Verifier as _;
                let parsed = p256::ecdsa::Signature::from_der(&sig)
                    .or_else(|_| p256::ecdsa::Signature::from_slice(&sig));
                parsed.is_ok_and(|s| k.verify(payload, &s).is_ok())
            }
            Key::Ed25519(k) => ed25519_dalek::Signature::from_slice(&sig)
                .is_ok_and(|s| k.verify_strict(payload, &s).is_ok()),
        }
    }
}

/// The DER inside the first PEM block labelled `label`.
fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// One signature found for an image: its payload and the signature over it.
#[derive(Clone, Debug)]
pub struct Signature {
    /// The payload layer's bytes.
    pub payload: Vec<u8>,
    /// The base64 signature from the layer's annotation.
    pub signature: String,
    /// Where it was found (the `.sig` tag or the referrer manifest), for messages.
    pub found_in: String,
    /// The certificate and Rekor entry of a keyless signature.
    pub attached: super::keyless::Attached,
}

/// What a payload says: the digest it signs and the reference it names.
#[derive(Debug, PartialEq, Eq)]
pub struct Payload {
    /// `critical.image.docker-manifest-digest`.
    pub digest: Sha256Digest,
    /// `critical.identity.docker-reference`.
    pub reference: String,
}

/// Parse a simple-signing payload.
pub fn parse_payload(bytes: &[u8]) -> Result<Payload, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("payload is not JSON: {e}"))?;
    let critical = &v["critical"];
    if critical["type"].as_str() != Some(PAYLOAD_TYPE) {
        return Err(format!(
            "payload type is {}, not {PAYLOAD_TYPE:?}",
            critical["type"]
        ));
    }
    let digest = critical["image"]["docker-manifest-digest"]
        .as_str()
        .ok_or("payload names no critical.image.docker-manifest-digest")?
        .parse::<Sha256Digest>()
        .map_err(|e| format!("payload digest: {e}"))?;
    let reference = critical["identity"]["docker-reference"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(Payload { digest, reference })
}

/// Check that one of `sigs` is a good signature of `digest` by one of `keys`; returns the key. The error says
/// why for each key: no signature at all, signatures by other keys, or a good signature over another digest.
pub fn verify_image<'k>(
    keys: &'k [CosignKey],
    digest: &Sha256Digest,
    sigs: &[Signature],
) -> Result<&'k CosignKey, String> {
    if sigs.is_empty() {
        return Err(format!(
            "no cosign signature (neither the tag sha256-{}.sig nor a referrer of type {SIG_ARTIFACT}); \
             the policy wants one by {}",
            digest.hex(),
            keys.iter()
                .map(CosignKey::describe)
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    let mut reasons = Vec::new();
    for key in keys {
        let mut good_elsewhere = None;
        let mut malformed = None;
        for s in sigs {
            if !key.verifies(&s.payload, &s.signature) {
                continue;
            }
            match parse_payload(&s.payload) {
                Ok(p) if p.digest == *digest => return Ok(key),
                Ok(p) => good_elsewhere = Some((p.digest, &s.found_in)),
                Err(e) => malformed = Some((e, &s.found_in)),
            }
        }
        reasons.push(match (good_elsewhere, malformed) {
            (Some((other, at)), _) => format!(
                "the signature by {} in {at} is for {other}, not for this image",
                key.describe()
            ),
            (None, Some((e, at))) => format!(
                "the signature by {} in {at} signs a malformed payload: {e}",
                key.describe()
            ),
            (None, None) => format!(
                "none of its {} signature(s) is good by {}",
                sigs.len(),
                key.describe()
            ),
        });
    }
    Err(reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;

    fn keypair() -> (p256::ecdsa::SigningKey, CosignKey) {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pem = sk
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        (sk, CosignKey::from_pem(&pem, "test.pub".into()).unwrap())
    }

    fn payload(digest: &Sha256Digest) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "critical": {
                "identity": {"docker-reference": "registry.example/app"},
                "image": {"docker-manifest-digest": digest.to_string()},
                "type": PAYLOAD_TYPE,
            },
            "optional": null,
        }))
        .unwrap()
    }

    fn sign(sk: &p256::ecdsa::SigningKey, payload: Vec<u8>) -> Signature {
        let sig: p256::ecdsa::Signature = sk.sign(&payload);
        Signature {
            signature: base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes()),
            payload,
            found_in: "tag x.sig".into(),
            attached: Default::default(),
        }
    }

    #[test]
    fn a_good_signature_of_the_digest_passes_and_everything_else_says_why() {
        let (sk, key) = keypair();
        let (other_sk, other) = keypair();
        let d = Sha256Digest::of(b"manifest");
        let e = Sha256Digest::of(b"another manifest");
        let keys = [key.clone()];

        let good = sign(&sk, payload(&d));
        assert_eq!(
            verify_image(&keys, &d, std::slice::from_ref(&good))
                .unwrap()
                .path,
            "test.pub"
        );
        // Any one good signature among several will do.
        let by_other = sign(&other_sk, payload(&d));
        assert!(verify_image(&keys, &d, &[by_other.clone(), good.clone()]).is_ok());
        assert!(verify_image(&[other.clone(), key.clone()], &d, &[good]).is_ok());

        let err = verify_image(&keys, &d, &[]).unwrap_err();
        assert!(
            err.contains("no cosign signature") && err.contains(&d.hex()),
            "{err}"
        );
        let err = verify_image(&keys, &d, &[by_other]).unwrap_err();
        assert!(
            err.contains("none of its 1 signature") && err.contains(&key.fingerprint),
            "{err}"
        );
        let err = verify_image(&keys, &d, &[sign(&sk, payload(&e))]).unwrap_err();
        assert!(err.contains(&format!("is for {e}")), "{err}");
        let mut tampered = sign(&sk, payload(&d));
        tampered.payload = payload(&e);
        assert!(verify_image(&keys, &d, &[tampered]).is_err());
        let err = verify_image(&keys, &d, &[sign(&sk, b"{}".to_vec())]).unwrap_err();
        assert!(err.contains("malformed payload"), "{err}");
    }

    #[test]
    fn ed25519_keys_verify_too_and_other_pem_is_refused() {
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        use ed25519_dalek::Signer as _;
        let sk = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
        let pem = sk
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let key = CosignKey::from_pem(&pem, "ed.pub".into()).unwrap();
        let d = Sha256Digest::of(b"m");
        let p = payload(&d);
        let sig = base64::engine::general_purpose::STANDARD.encode(sk.sign(&p).to_bytes());
        assert!(key.verifies(&p, &sig));
        assert!(!key.verifies(b"other", &sig));
        assert!(CosignKey::from_pem("garbage", "g".into())
            .unwrap_err()
            .contains("not a PEM"));
        assert!(CosignKey::from_pem(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "z".into()
        )
        .unwrap_err()
        .contains("P-256"));
    }
}
