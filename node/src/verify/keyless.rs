//! Keyless sigstore signatures: made with a short-lived Fulcio certificate that names who signed (an OIDC
//! identity and the issuer that vouched for it) and logged in Rekor, checked offline against a trusted root.
//!
//! A policy names, per rule, the identities it accepts:
//!
//! ```toml
//! [[rule]]
//! match = "docker://registry.example/app/*"
//! [[rule.keyless]]
//! identity = "https://github.com/example/app/.github/workflows/release.yml@refs/tags/*"  # a glob over the SAN
//! issuer = "https://token.actions.githubusercontent.com"                                # the OIDC issuer, exactly
//! trusted_root = "public-good"     # the default: Sigstore's public instance, as this build embeds it; or a
//!                                  # trusted_root.json (a private Fulcio/Rekor), relative to the policy file
//! ignore_sct = false               # true for a private CA without a certificate-transparency log
//! ```
//!
//! The checks themselves (certificate chain to the root at the time Rekor logged the signature, the SCT, the
//! log's inclusion proof or signed promise, the signature, and that the log entry describes this signature) are
//! the `sigstore-verify` crate's; this module finds the signatures, says which identity is wanted and names what
//! failed. Signatures are found:
//! - for a file, in a bundle beside it: `FILE.sigstore.json` or `FILE.sigstore` (what `cosign sign-blob
//!   --bundle` and `sigstore sign` write);
//! - for an image, in its cosign signatures (the `.sig` tag or referrers), whose layers carry the certificate,
//!   its chain and the Rekor entry as annotations; and in referrers holding a sigstore bundle (cosign's newer
//!   format), whose signed subject must be the image's digest.
//!
//! The crate does its cryptography through a provider; [`RingProvider`] gives it *ring* (already in the tree for
//! TLS) and the RustCrypto P-256/P-384 crates for the pre-hashed ECDSA a streamed file needs.

use super::cosign::Signature;
use ferry_protocol::Sha256Digest;
use sigstore_verify::crypto::{CryptoProvider, HashContext, SigningScheme};
use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::types::{Bundle, HashAlgorithm, Sha256Hash};
use sigstore_verify::{VerificationPolicy, VerificationResult, Verifier};
use std::path::Path;
use std::sync::Arc;

/// The annotation of a cosign signature layer holding the signing certificate (PEM).
pub const CERT_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The annotation holding the certificate's chain (PEM, intermediate first).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// The annotation holding the Rekor entry: its body, time, index, log id and signed entry timestamp.
pub const REKOR_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// The artifact types of referrers that hold a sigstore bundle start with this.
pub const BUNDLE_ARTIFACT: &str = "application/vnd.dev.sigstore.bundle";
/// The name of the trusted root this build embeds: Sigstore's public-good instance.
pub const PUBLIC_GOOD: &str = "public-good";
/// The largest bundle read.
pub const MAX_BUNDLE: u64 = 1 << 20;

/// A policy's `[[rule.keyless]]` table.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeylessToml {
    identity: String,
    issuer: String,
    #[serde(default)]
    trusted_root: Option<String>,
    #[serde(default)]
    ignore_sct: bool,
}

/// One accepted keyless signer: an identity (glob) certified for an issuer by a trusted root.
#[derive(Clone)]
pub struct Keyless {
    /// The glob the certificate's subject alternative name must match.
    pub identity: String,
    /// The OIDC issuer the certificate must name.
    pub issuer: String,
    /// `public-good`, or the trusted root file.
    pub root: String,
    ignore_sct: bool,
    verifier: Arc<Verifier>,
}

impl std::fmt::Debug for Keyless {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyless")
            .field("identity", &self.identity)
            .field("issuer", &self.issuer)
            .field("root", &self.root)
            .field("ignore_sct", &self.ignore_sct)
            .finish_non_exhaustive()
    }
}

impl Keyless {
    /// The signer a policy table names; its trusted root is read now (relative to `base`).
    pub fn load(t: &KeylessToml, base: &Path) -> Result<Keyless, String> {
        install_provider();
        if t.identity.is_empty() || t.issuer.is_empty() {
            return Err("keyless: give both `identity` and `issuer`".into());
        }
        let (root, trusted) = match t.trusted_root.as_deref() {
            None | Some(PUBLIC_GOOD) => (
                PUBLIC_GOOD.to_string(),
                TrustedRoot::from_json(
                    sigstore_verify::trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT,
                ),
            ),
            Some(p) => {
                let path = base.join(p);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("keyless trusted root {}: {e}", path.display()))?;
                (path.display().to_string(), TrustedRoot::from_json(&text))
            }
        };
        let trusted = trusted.map_err(|e| format!("keyless trusted root {root}: {e}"))?;
        let verifier =
            Verifier::new(&trusted).map_err(|e| format!("keyless trusted root {root}: {e}"))?;
        Ok(Keyless {
            identity: t.identity.clone(),
            issuer: t.issuer.clone(),
            root,
            ignore_sct: t.ignore_sct,
            verifier: Arc::new(verifier),
        })
    }

    /// `keyless identity ID from ISSUER (trusted root ROOT)`, for messages and reports.
    pub fn describe(&self) -> String {
        format!(
            "keyless identity {} from {} (trusted root {})",
            self.identity, self.issuer, self.root
        )
    }

    fn policy(&self) -> VerificationPolicy {
        let p = VerificationPolicy::any_identity().require_issuer(&self.issuer);
        if self.ignore_sct {
            p.skip_sct()
        } else {
            p
        }
    }

    /// The certificate's identity, when it matches the wanted glob.
    fn authorize(&self, r: sigstore_verify::Result<VerificationResult>) -> Result<String, String> {
        let r = r.map_err(|e| e.to_string())?;
        let who = r
            .identity()
            .map(|i| i.as_str().to_string())
            .ok_or("the certificate names no identity")?;
        if super::glob(&self.identity, &who) {
            Ok(who)
        } else {
            Err(format!(
                "signed by {who}, not an identity matching {}",
                self.identity
            ))
        }
    }

    /// Check `bundle` over the file at `path`, read as a stream; returns the signer's identity.
    pub fn verify_file(&self, path: &Path, bundle: &Bundle) -> Result<String, String> {
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let reader = std::io::BufReader::with_capacity(1 << 16, f);
        self.authorize(self.verifier.verify_reader(reader, bundle, &self.policy()))
    }

    /// Check `bundle` over `bytes`.
    pub fn verify_bytes(&self, bytes: &[u8], bundle: &Bundle) -> Result<String, String> {
        self.authorize(self.verifier.verify(bytes, bundle, &self.policy()))
    }

    /// Check `bundle` as a signature of the artifact whose SHA-256 is `digest` (an in-toto subject, or a
    /// message signature over those bytes).
    pub fn verify_digest(&self, digest: &Sha256Digest, bundle: &Bundle) -> Result<String, String> {
        let hash = Sha256Hash::new(digest.0 .0);
        self.authorize(self.verifier.verify(hash, bundle, &self.policy()))
    }
}

/// A sigstore bundle from its JSON; `shown` names where it came from.
pub fn parse_bundle(bytes: &[u8], shown: &str) -> Result<Bundle, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{shown}: not UTF-8"))?;
    Bundle::from_json(text).map_err(|e| format!("{shown}: not a sigstore bundle: {e}"))
}

/// The certificate, chain and Rekor entry a cosign signature layer carries in its annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attached {
    /// [`CERT_ANNOTATION`].
    pub cert: Option<String>,
    /// [`CHAIN_ANNOTATION`].
    pub chain: Option<String>,
    /// [`REKOR_ANNOTATION`].
    pub rekor: Option<String>,
}

impl Attached {
    /// From a layer's annotations.
    pub fn from_annotations(a: &serde_json::Value) -> Attached {
        let get = |k: &str| a[k].as_str().map(str::to_string);
        Attached {
            cert: get(CERT_ANNOTATION),
            chain: get(CHAIN_ANNOTATION),
            rekor: get(REKOR_ANNOTATION),
        }
    }
}

/// The sigstore bundle (v0.1, as cosign's own verifier reads these annotations) equivalent to a cosign
/// signature layer with a certificate and a Rekor entry: the certificate chain, the entry with its signed
/// promise, and the message signature over the payload.
pub fn legacy_bundle(sig: &Signature) -> Result<Bundle, String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let cert = sig
        .attached
        .cert
        .as_deref()
        .ok_or("no certificate annotation")?;
    let rekor = sig
        .attached
        .rekor
        .as_deref()
        .ok_or("a certificate but no Rekor entry annotation (dev.sigstore.cosign/bundle)")?;
    let mut certs = pem_blocks(cert, "CERTIFICATE");
    if certs.is_empty() {
        return Err("the certificate annotation holds no PEM CERTIFICATE".into());
    }
    certs.truncate(1);
    certs.extend(pem_blocks(
        sig.attached.chain.as_deref().unwrap_or(""),
        "CERTIFICATE",
    ));
    let r: serde_json::Value = serde_json::from_str(rekor)
        .map_err(|e| format!("the Rekor entry annotation is not JSON: {e}"))?;
    let p = &r["Payload"];
    let (Some(body), Some(time), Some(index), Some(log_id), Some(set)) = (
        p["body"].as_str(),
        p["integratedTime"].as_i64(),
        p["logIndex"].as_i64(),
        p["logID"].as_str(),
        r["SignedEntryTimestamp"].as_str(),
    ) else {
        return Err(
            "the Rekor entry annotation lacks Payload.body, integratedTime, logIndex, logID or \
                    SignedEntryTimestamp"
                .into(),
        );
    };
    let log_id = hex::decode(log_id).map_err(|_| "the Rekor entry's logID is not hex")?;
    let entry: serde_json::Value = b64
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the Rekor entry's body is not base64 JSON")?;
    let kind = entry["kind"].as_str().unwrap_or_default();
    let version = entry["apiVersion"].as_str().unwrap_or_default();
    let signature = b64
        .decode(sig.signature.trim())
        .map_err(|_| "the signature annotation is not base64")?;
    let json = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": {
            "x509CertificateChain": {
                "certificates": certs.iter().map(|c| serde_json::json!({"rawBytes": b64.encode(c)})).collect::<Vec<_>>(),
            },
            "tlogEntries": [{
                "logIndex": index.to_string(),
                "logId": {"keyId": b64.encode(log_id)},
                "kindVersion": {"kind": kind, "version": version},
                "integratedTime": time.to_string(),
                "inclusionPromise": {"signedEntryTimestamp": set},
                "canonicalizedBody": body,
            }],
        },
        "messageSignature": {
            "messageDigest": {
                "algorithm": "SHA2_256",
                "digest": b64.encode(Sha256Digest::of(&sig.payload).0 .0),
            },
            "signature": b64.encode(signature),
        },
    });
    Bundle::from_json(&json.to_string())
        .map_err(|e| format!("its certificate and Rekor entry: {e}"))
}

/// The DER of every PEM block labelled `label` in `text`.
fn pem_blocks(text: &str, label: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let Some(stop) = after.find(&end) else { break };
        let b64: String = after[..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(der);
        }
        rest = &after[stop + end.len()..];
    }
    out
}

/// A sigstore bundle found attached to an image.
#[derive(Clone, Debug)]
pub struct FoundBundle {
    /// The bundle's JSON.
    pub bytes: Vec<u8>,
    /// Where it was found (the referrer manifest), for messages.
    pub found_in: String,
}

/// Check that one of the image's keyless signatures (`sigs` with a certificate, or `bundles`) is a good
/// signature of `digest` by one of `signers`; returns the signer and the identity that signed. The error says
/// why for each signature.
pub fn verify_image<'k>(
    signers: &'k [Keyless],
    digest: &Sha256Digest,
    sigs: &[Signature],
    bundles: &[FoundBundle],
) -> Result<(&'k Keyless, String), String> {
    let with_cert: Vec<&Signature> = sigs.iter().filter(|s| s.attached.cert.is_some()).collect();
    if with_cert.is_empty() && bundles.is_empty() {
        return Err(format!(
            "no keyless signature (no cosign signature of sha256-{} carries a certificate, and no referrer \
             holds a sigstore bundle); the policy wants one by {}",
            digest.hex(),
            signers
                .iter()
                .map(Keyless::describe)
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    // Each signature's bundle made (or parsed) once, whatever the number of signers.
    let legacy: Vec<(&Signature, Result<Bundle, String>)> =
        with_cert.iter().map(|s| (*s, legacy_bundle(s))).collect();
    let parsed: Vec<(&FoundBundle, Result<Bundle, String>)> = bundles
        .iter()
        .map(|b| (b, parse_bundle(&b.bytes, &b.found_in)))
        .collect();
    let mut reasons = Vec::new();
    for k in signers {
        for (s, bundle) in &legacy {
            let checked = bundle
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|b| k.verify_bytes(&s.payload, b));
            match checked {
                Ok(who) => match super::cosign::parse_payload(&s.payload) {
                    Ok(p) if p.digest == *digest => return Ok((k, who)),
                    Ok(p) => reasons.push(format!(
                        "the signature by {who} in {} is for {}, not for this image",
                        s.found_in, p.digest
                    )),
                    Err(e) => reasons.push(format!(
                        "the signature by {who} in {} signs a malformed payload: {e}",
                        s.found_in
                    )),
                },
                Err(e) => reasons.push(format!("{} against {}: {e}", s.found_in, k.describe())),
            }
        }
        for (b, bundle) in &parsed {
            let checked = bundle
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|bundle| k.verify_digest(digest, bundle));
            match checked {
                Ok(who) => return Ok((k, who)),
                Err(e) => reasons.push(format!("{} against {}: {e}", b.found_in, k.describe())),
            }
        }
    }
    Err(reasons.join("; "))
}

static PROVIDER: RingProvider = RingProvider;

/// Give `sigstore-verify` its cryptography, once per process.
fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another caller in this process may have installed one already; either will do.
        let _ = sigstore_verify::crypto::install_default_provider(&PROVIDER);
    });
}

/// Hashing and signature checks for `sigstore-verify`, by *ring* (and RustCrypto for pre-hashed ECDSA, which
/// *ring* does not offer).
#[derive(Debug)]
pub struct RingProvider;

struct RingHash(ring::digest::Context);

impl HashContext for RingHash {
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finalize(self: Box<Self>) -> Vec<u8> {
        self.0.finish().as_ref().to_vec()
    }
}

type CryptoResult<T> = sigstore_verify::crypto::Result<T>;

fn unsupported<T>(what: String) -> CryptoResult<T> {
    Err(sigstore_verify::crypto::Error::UnsupportedAlgorithm(what))
}

fn invalid(scheme: SigningScheme) -> sigstore_verify::crypto::Error {
    sigstore_verify::crypto::Error::Verification(format!("{} signature invalid", scheme.name()))
}

impl CryptoProvider for RingProvider {
    fn hash(&self, algorithm: HashAlgorithm) -> CryptoResult<Box<dyn HashContext>> {
        let alg = match algorithm {
            HashAlgorithm::Sha2256 => &ring::digest::SHA256,
            HashAlgorithm::Sha2384 => &ring::digest::SHA384,
            HashAlgorithm::Sha2512 => &ring::digest::SHA512,
            #[allow(unreachable_patterns)]
            other => return unsupported(format!("{other:?} digests")),
        };
        Ok(Box::new(RingHash(ring::digest::Context::new(alg))))
    }

    fn verify_raw(
        &self,
        scheme: SigningScheme,
        key: &[u8],
        data: &[u8],
        signature: &[u8],
    ) -> CryptoResult<()> {
        use ring::signature as s;
        let alg: &'static dyn s::VerificationAlgorithm = match scheme {
            SigningScheme::EcdsaP256Sha256 => &s::ECDSA_P256_SHA256_ASN1,
            SigningScheme::EcdsaP256Sha384 => &s::ECDSA_P256_SHA384_ASN1,
            SigningScheme::EcdsaP384Sha256 => &s::ECDSA_P384_SHA256_ASN1,
            SigningScheme::EcdsaP384Sha384 => &s::ECDSA_P384_SHA384_ASN1,
            SigningScheme::Ed25519 => &s::ED25519,
            SigningScheme::RsaPssSha256 => &s::RSA_PSS_2048_8192_SHA256,
            SigningScheme::RsaPssSha384 => &s::RSA_PSS_2048_8192_SHA384,
            SigningScheme::RsaPssSha512 => &s::RSA_PSS_2048_8192_SHA512,
            SigningScheme::RsaPkcs1Sha256 => &s::RSA_PKCS1_2048_8192_SHA256,
            SigningScheme::RsaPkcs1Sha384 => &s::RSA_PKCS1_2048_8192_SHA384,
            SigningScheme::RsaPkcs1Sha512 => &s::RSA_PKCS1_2048_8192_SHA512,
            other => return unsupported(format!("{} signatures", other.name())),
        };
        s::UnparsedPublicKey::new(alg, key)
            .verify(data, signature)
            .map_err(|_| invalid(scheme))
    }

    fn verify_prehashed(
        &self,
        scheme: SigningScheme,
        key: &[u8],
        digest: &[u8],
        signature: &[u8],
    ) -> CryptoResult<()> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
        match scheme {
            SigningScheme::EcdsaP256Sha256 | SigningScheme::EcdsaP256Sha384 => {
                let k =
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| invalid(scheme))?;
                let sig =
                    p256::ecdsa::Signature::from_der(signature).map_err(|_| invalid(scheme))?;
                k.verify_prehash(digest, &sig).map_err(|_| invalid(scheme))
            }
            SigningScheme::EcdsaP384Sha256 | SigningScheme::EcdsaP384Sha384 => {
                let k =
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| invalid(scheme))?;
                let sig =
                    p384::ecdsa::Signature::from_der(signature).map_err(|_| invalid(scheme))?;
                k.verify_prehash(digest, &sig).map_err(|_| invalid(scheme))
            }
            other => unsupported(format!(
                "{} signatures over a streamed file (only ECDSA)",
                other.name()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Policy;

    #[test]
    fn policy_tables_take_the_embedded_root_or_a_file_and_refuse_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let rule = |extra: &str| {
            format!(
                "[[rule]]\nmatch = \"file:*\"\n[[rule.keyless]]\nidentity = \"a@example.com\"\nissuer = \"https://accounts.example\"\n{extra}\n"
            )
        };
        let p = Policy::parse(&rule(""), dir.path(), "p.toml").unwrap();
        let r = p.rule_for("file:x").unwrap().unwrap();
        assert_eq!(r.keyless[0].root, PUBLIC_GOOD);
        assert_eq!(r.wants(), ["keyless"]);
        assert!(r.keyless[0].describe().contains("a@example.com"));
        std::fs::write(
            dir.path().join("root.json"),
            sigstore_verify::trust_root::SIGSTORE_STAGING_TRUSTED_ROOT,
        )
        .unwrap();
        let p = Policy::parse(
            &rule("trusted_root = \"root.json\"\nignore_sct = true"),
            dir.path(),
            "p.toml",
        )
        .unwrap();
        assert!(p.rule_for("file:x").unwrap().unwrap().keyless[0]
            .root
            .ends_with("root.json"));
        std::fs::write(dir.path().join("bad.json"), "{\"tlogs\": 3}").unwrap();
        for (extra, says) in [
            ("trusted_root = \"missing.json\"", "missing.json"),
            ("trusted_root = \"bad.json\"", "bad.json"),
            ("identitty = \"x\"", "identitty"),
        ] {
            let err = Policy::parse(&rule(extra), dir.path(), "p.toml")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("p.toml") && err.contains(says),
                "{extra}: {err}"
            );
        }
        let err = Policy::parse(
            "[[rule]]\nmatch = \"x\"\n[[rule.keyless]]\nidentity = \"\"\nissuer = \"i\"\n",
            dir.path(),
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("identity"), "{err}");
    }

    #[test]
    fn cosign_annotations_become_a_bundle_or_say_what_is_missing() {
        let sig = |attached: Attached| Signature {
            payload: b"{}".to_vec(),
            signature: "AAAA".into(),
            found_in: "tag x.sig".into(),
            attached,
        };
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
        for (attached, says) in [
            (Attached::default(), "no certificate"),
            (
                Attached {
                    cert: Some(pem.into()),
                    ..Default::default()
                },
                "no Rekor entry",
            ),
            (
                Attached {
                    cert: Some("not pem".into()),
                    rekor: Some("{}".into()),
                    ..Default::default()
                },
                "no PEM CERTIFICATE",
            ),
            (
                Attached {
                    cert: Some(pem.into()),
                    rekor: Some("[".into()),
                    ..Default::default()
                },
                "not JSON",
            ),
            (
                Attached {
                    cert: Some(pem.into()),
                    rekor: Some("{\"Payload\": {}}".into()),
                    ..Default::default()
                },
                "lacks Payload.body",
            ),
        ] {
            let err = legacy_bundle(&sig(attached)).unwrap_err();
            assert!(err.contains(says), "{says}: {err}");
        }
        let annotations = serde_json::json!({
            CERT_ANNOTATION: pem, CHAIN_ANNOTATION: format!("{pem}{pem}"), REKOR_ANNOTATION: "{}",
        });
        let a = Attached::from_annotations(&annotations);
        assert_eq!(
            pem_blocks(a.chain.as_deref().unwrap(), "CERTIFICATE").len(),
            2
        );
        assert_eq!(pem_blocks(pem, "CERTIFICATE"), [vec![0u8, 1, 2]]);
        assert_eq!(a.rekor.as_deref(), Some("{}"));
    }

    #[test]
    fn the_ring_provider_hashes_and_checks_ecdsa_whole_and_prehashed() {
        use p256::ecdsa::signature::hazmat::PrehashSigner as _;
        use p256::ecdsa::signature::Signer as _;
        let mut h = PROVIDER.hash(HashAlgorithm::Sha2256).unwrap();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(
            hex::encode(h.finalize()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let point = sk.verifying_key().to_encoded_point(false);
        let key = point.as_bytes();
        let whole: p256::ecdsa::Signature = sk.sign(b"message");
        let der = whole.to_der();
        let scheme = SigningScheme::EcdsaP256Sha256;
        PROVIDER
            .verify_raw(scheme, key, b"message", der.as_bytes())
            .unwrap();
        assert!(PROVIDER
            .verify_raw(scheme, key, b"massage", der.as_bytes())
            .is_err());
        let digest = ring::digest::digest(&ring::digest::SHA256, b"message");
        let pre: p256::ecdsa::Signature = sk.sign_prehash(digest.as_ref()).unwrap();
        PROVIDER
            .verify_prehashed(scheme, key, digest.as_ref(), pre.to_der().as_bytes())
            .unwrap();
        let mut other = digest.as_ref().to_vec();
        other[0] ^= 1;
        assert!(PROVIDER
            .verify_prehashed(scheme, key, &other, pre.to_der().as_bytes())
            .is_err());
        assert!(PROVIDER
            .verify_prehashed(SigningScheme::Ed25519, key, &other, b"")
            .is_err());
    }
}
