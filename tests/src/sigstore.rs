//! Upstream supply-chain artifacts made the way their tools make them, pushed into a real registry over the
//! distribution API: cosign-format image signatures (the `sha256-<hex>.sig` tag, its simple-signing payload and
//! an ECDSA P-256 signature made by `openssl`), and OCI 1.1 referrers (an SBOM manifest with a `subject`, plus
//! the referrers tag-schema index, since Debian's docker-registry has no referrers API).
//!
//! Debian's skopeo and podman are built with sigstore signing and checking patched out ("Debian-local change:
//! sigstore disabled"), so the signature is made here, in the byte layout upstream skopeo 1.9 writes, and checked
//! at the site with `openssl dgst -verify` against the same public key.

use std::path::{Path, PathBuf};

use crate::cmd::run_ok;
use crate::fsutil::sha256_hex;

/// Cosign's payload layer media type and its signature annotation.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// An ECDSA P-256 key pair made by openssl: `NAME.key` (PEM) and `NAME.pub` (PEM SubjectPublicKeyInfo, the
/// format of cosign's `cosign.pub`).
pub struct Key {
    /// The private key.
    pub private: PathBuf,
    /// The public key.
    pub public: PathBuf,
}

impl Key {
    /// A new key pair in `dir`.
    pub fn new(dir: &Path, name: &str) -> Key {
        let private = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub"));
        run_ok(
            "openssl",
            [
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                private.to_str().unwrap(),
            ],
        );
        run_ok(
            "openssl",
            [
                "pkey",
                "-in",
                private.to_str().unwrap(),
                "-pubout",
                "-out",
                public.to_str().unwrap(),
            ],
        );
        Key { private, public }
    }

    /// The DER signature of `data` (ECDSA over SHA-256), by `openssl dgst -sign`.
    pub fn sign(&self, dir: &Path, data: &[u8]) -> Vec<u8> {
        let input = dir.join("to-sign");
        let out = dir.join("signature.der");
        std::fs::write(&input, data).unwrap();
        run_ok(
            "openssl",
            [
                "dgst",
                "-sha256",
                "-sign",
                self.private.to_str().unwrap(),
                "-out",
                out.to_str().unwrap(),
                input.to_str().unwrap(),
            ],
        );
        std::fs::read(out).unwrap()
    }
}

/// Whether `openssl dgst -verify` finds `signature` (DER) good over `data` by the public key at `public`.
pub fn openssl_verifies(dir: &Path, public: &Path, data: &[u8], signature: &[u8]) -> bool {
    let (input, sig) = (dir.join("verify-data"), dir.join("verify-sig"));
    std::fs::write(&input, data).unwrap();
    std::fs::write(&sig, signature).unwrap();
    let out = crate::cmd::run(std::process::Command::new("openssl").args([
        "dgst",
        "-sha256",
        "-verify",
        public.to_str().unwrap(),
        "-signature",
        sig.to_str().unwrap(),
        input.to_str().unwrap(),
    ]));
    out.code == Some(0) && out.stdout.contains("Verified OK")
}

/// A client for one plain-HTTP registry on loopback.
pub struct Pusher {
    http: reqwest::blocking::Client,
    base: String,
}

impl Pusher {
    /// For `http://HOST`.
    pub fn new(host: &str) -> Pusher {
        Pusher {
            http: reqwest::blocking::Client::new(),
            base: format!("http://{host}"),
        }
    }

    /// Upload `bytes` as a blob of `repo`; returns its digest.
    pub fn blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        let r = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "starting an upload: {r:?}");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with("http") {
            loc
        } else {
            format!("{}{loc}", self.base)
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .http
            .put(format!("{loc}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "finishing an upload: {r:?}");
        digest
    }

    /// Put a manifest (or index) of `media_type` at `reference` (a tag or its digest); returns its digest.
    pub fn manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
        let r = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        assert_eq!(
            status,
            201,
            "putting manifest {reference}: {}",
            r.text().unwrap_or_default()
        );
        format!("sha256:{}", sha256_hex(bytes))
    }
}

/// The simple-signing payload for `digest` under `reference`, as containers/image writes it.
pub fn payload(reference: &str, digest: &str) -> Vec<u8> {
    format!(
        "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"{reference}\"}},\"image\":{{\"docker-manifest-digest\":\"{digest}\"}},\"type\":\"cosign container image signature\"}},\"optional\":{{\"creator\":\"ferry tests\"}}}}"
    )
    .into_bytes()
}

/// Sign `payload` with `key` and push it as the cosign signature tag of `signed` (`sha256-<hex>.sig`) in
/// `repo`: the payload and a config blob, and a manifest whose one layer carries the signature annotation, in
/// the layout upstream skopeo 1.9 writes. Returns the signature manifest's digest.
pub fn push_signature(
    reg: &Pusher,
    dir: &Path,
    repo: &str,
    signed: &str,
    payload: &[u8],
    key: &Key,
) -> String {
    use base64::Engine as _;
    let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(dir, payload));
    let payload_digest = reg.blob(repo, payload);
    let config = format!(
        "{{\"architecture\":\"\",\"os\":\"\",\"config\":{{}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{payload_digest}\"]}}}}"
    );
    let config_digest = reg.blob(repo, config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{
            "mediaType": SIMPLE_SIGNING,
            "digest": payload_digest,
            "size": payload.len(),
            "annotations": {SIGNATURE_ANNOTATION: signature},
        }],
    });
    let tag = format!("{}.sig", signed.replace(':', "-"));
    reg.manifest(
        repo,
        &tag,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    )
}

/// Attach `sbom` (an SPDX JSON document) to the manifest `subject` (digest, size) of `repo` as an OCI 1.1
/// referrer, and list it in the tag-schema index `sha256-<hex>`. Returns the SBOM manifest's digest.
pub fn push_sbom(reg: &Pusher, repo: &str, subject: (&str, usize), sbom: &[u8]) -> String {
    let empty = reg.blob(repo, b"{}");
    let layer = reg.blob(repo, sbom);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": layer, "size": sbom.len(),
                    "annotations": {"org.opencontainers.image.title": "sbom.spdx.json"}}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject.0, "size": subject.1},
    }))
    .unwrap();
    let digest = format!("sha256:{}", sha256_hex(&manifest));
    reg.manifest(
        repo,
        &digest,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    );
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                       "size": manifest.len(), "artifactType": "application/spdx+json"}],
    }))
    .unwrap();
    reg.manifest(
        repo,
        &subject.0.replace(':', "-"),
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    digest
}
