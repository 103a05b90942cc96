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
    push_signature_layer(
        reg,
        repo,
        signed,
        payload,
        serde_json::json!({ SIGNATURE_ANNOTATION: signature }),
    )
}

/// Push `payload` as the one layer, annotated with `annotations`, of the cosign signature tag of `signed`.
fn push_signature_layer(
    reg: &Pusher,
    repo: &str,
    signed: &str,
    payload: &[u8],
    annotations: serde_json::Value,
) -> String {
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
            "annotations": annotations,
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
    push_referrer(
        reg,
        repo,
        subject,
        "application/spdx+json",
        sbom,
        serde_json::json!({"org.opencontainers.image.title": "sbom.spdx.json"}),
    )
}

/// Attach `bytes` as the one layer of an OCI 1.1 referrer of `artifact_type` to the manifest `subject`, and list
/// it in the tag-schema index (Debian's docker-registry has no referrers API). Returns the referrer's digest.
fn push_referrer(
    reg: &Pusher,
    repo: &str,
    subject: (&str, usize),
    artifact_type: &str,
    bytes: &[u8],
    annotations: serde_json::Value,
) -> String {
    let empty = reg.blob(repo, b"{}");
    let layer = reg.blob(repo, bytes);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer, "size": bytes.len(),
                    "annotations": annotations}],
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
                       "size": manifest.len(), "artifactType": artifact_type}],
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

/// The directory of real sigstore bundles the `sigstore-verify` crate ships as its test data (it came from
/// crates.io with the crate): artifacts signed keyless on Sigstore's public-good instance — Fulcio certificates,
/// Rekor entries with inclusion proofs — as `cosign sign-blob` and GitHub's attestation action made them.
pub fn upstream_bundles() -> PathBuf {
    // The version Cargo.lock pins, unpacked by cargo under CARGO_HOME when the workspace was built.
    let lock =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"sigstore-verify\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .expect("Cargo.lock pins sigstore-verify")
        .trim_matches('"')
        .to_string();
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let registries = home.join("registry/src");
    std::fs::read_dir(&registries)
        .unwrap_or_else(|e| panic!("{}: {e}", registries.display()))
        .map(|d| {
            d.unwrap()
                .path()
                .join(format!("sigstore-verify-{version}/test_data"))
        })
        .find(|p| p.is_dir())
        .unwrap_or_else(|| {
            panic!(
                "no sigstore-verify-{version} under {}",
                registries.display()
            )
        })
}

/// A private sigstore made with openssl, as an air-gapped organisation runs its own: a Fulcio-like CA, one
/// short-lived signing certificate issued by it for `identity` (an email SAN) and `issuer` (Fulcio's OIDC issuer
/// extension), and a Rekor-like log key that signs entry timestamps. `trusted_root` is the `trusted_root.json`
/// naming the CA and the log, as sigstore's tools read it.
pub struct PrivateSigstore {
    dir: PathBuf,
    ca: PathBuf,
    leaf_key: PathBuf,
    leaf: PathBuf,
    rekor: Key,
    log_id: String,
    /// The trusted root file.
    pub trusted_root: PathBuf,
}

/// One logged signature: what cosign puts in a signature layer's annotations, and the same as a sigstore bundle.
pub struct Logged {
    /// Base64 DER ECDSA signature.
    pub signature: String,
    /// The annotations of a cosign signature layer: signature, certificate, chain, Rekor entry.
    pub annotations: serde_json::Value,
    /// The sigstore bundle (v0.1: the certificate chain, the entry and its signed promise, the signature).
    pub bundle: serde_json::Value,
}

impl PrivateSigstore {
    /// A CA, a certificate for `identity` from `issuer`, and a log key, in `dir`.
    pub fn new(dir: &Path, identity: &str, issuer: &str) -> PrivateSigstore {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        std::fs::create_dir_all(dir).unwrap();
        let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
        let ca_key = Key::new(dir, "fulcio");
        run_ok(
            "openssl",
            [
                "req",
                "-x509",
                "-new",
                "-key",
                &p("fulcio.key"),
                "-subj",
                "/O=ferry-test/CN=fulcio",
                "-days",
                "3650",
                "-sha256",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                &p("fulcio.pem"),
            ],
        );
        drop(ca_key);
        Key::new(dir, "leaf");
        std::fs::write(
            dir.join("leaf.ext"),
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage=codeSigning\nsubjectAltName=critical,email:{identity}\n\
                 1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:{issuer}\n"
            ),
        )
        .unwrap();
        run_ok(
            "openssl",
            [
                "req",
                "-new",
                "-key",
                &p("leaf.key"),
                "-subj",
                "/O=sigstore.dev",
                "-out",
                &p("leaf.csr"),
            ],
        );
        run_ok(
            "openssl",
            [
                "x509",
                "-req",
                "-in",
                &p("leaf.csr"),
                "-CA",
                &p("fulcio.pem"),
                "-CAkey",
                &p("fulcio.key"),
                "-set_serial",
                "7",
                "-days",
                "1",
                "-sha256",
                "-extfile",
                &p("leaf.ext"),
                "-out",
                &p("leaf.pem"),
            ],
        );
        let rekor = Key::new(dir, "rekor");
        let der = |args: &[&str]| {
            let out = dir.join("out.der");
            let mut a: Vec<&str> = args.to_vec();
            let o = out.to_str().unwrap().to_string();
            a.extend(["-outform", "DER", "-out", &o]);
            run_ok("openssl", &a);
            std::fs::read(out).unwrap()
        };
        let rekor_der = der(&["pkey", "-pubin", "-in", rekor.public.to_str().unwrap()]);
        let ca_der = der(&["x509", "-in", &p("fulcio.pem")]);
        let log_id = sha256_hex(&rekor_der);
        let root = serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{
                "baseUrl": "https://rekor.ferry.invalid",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": b64.encode(&rekor_der), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": "2020-01-01T00:00:00Z"}},
                "logId": {"keyId": b64.encode(hex::decode(&log_id).unwrap())},
            }],
            "certificateAuthorities": [{
                "subject": {"organization": "ferry-test", "commonName": "fulcio"},
                "uri": "https://fulcio.ferry.invalid",
                "certChain": {"certificates": [{"rawBytes": b64.encode(&ca_der)}]},
                "validFor": {"start": "2020-01-01T00:00:00Z"},
            }],
            "ctlogs": [],
            "timestampAuthorities": [],
        });
        let trusted_root = dir.join("trusted_root.json");
        std::fs::write(&trusted_root, serde_json::to_vec_pretty(&root).unwrap()).unwrap();
        PrivateSigstore {
            dir: dir.to_path_buf(),
            ca: dir.join("fulcio.pem"),
            leaf_key: dir.join("leaf.key"),
            leaf: dir.join("leaf.pem"),
            rekor,
            log_id,
            trusted_root,
        }
    }

    /// Sign `data` with the certificate's key and log it: a hashedrekord entry, integrated now, whose signed
    /// entry timestamp the log key makes. `tamper` changes the entry's time after the log signed it.
    pub fn sign(&self, data: &[u8], tamper: bool) -> Logged {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let leaf_key = Key {
            private: self.leaf_key.clone(),
            public: PathBuf::new(),
        };
        let signature = b64.encode(leaf_key.sign(&self.dir, data));
        let cert_pem = std::fs::read_to_string(&self.leaf).unwrap();
        let chain_pem = std::fs::read_to_string(&self.ca).unwrap();
        // Rekor's canonical body: keys sorted, no spaces.
        let body = format!(
            "{{\"apiVersion\":\"0.0.1\",\"kind\":\"hashedrekord\",\"spec\":{{\"data\":{{\"hash\":{{\"algorithm\":\"sha256\",\"value\":\"{}\"}}}},\"signature\":{{\"content\":\"{signature}\",\"publicKey\":{{\"content\":\"{}\"}}}}}}}}",
            sha256_hex(data),
            b64.encode(&cert_pem)
        );
        let body = b64.encode(body);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let index = 42u64;
        let promise = format!(
            "{{\"body\":\"{body}\",\"integratedTime\":{now},\"logID\":\"{}\",\"logIndex\":{index}}}",
            self.log_id
        );
        let set = b64.encode(self.rekor.sign(&self.dir, promise.as_bytes()));
        let time = if tamper { now - 3600 } else { now };
        let rekor = serde_json::json!({
            "SignedEntryTimestamp": set,
            "Payload": {"body": body, "integratedTime": time, "logIndex": index, "logID": self.log_id},
        });
        let annotations = serde_json::json!({
            SIGNATURE_ANNOTATION: signature,
            "dev.sigstore.cosign/certificate": cert_pem,
            "dev.sigstore.cosign/chain": chain_pem,
            "dev.sigstore.cosign/bundle": rekor.to_string(),
        });
        let der_of = |pem: &str| {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            body
        };
        let bundle = serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
            "verificationMaterial": {
                "x509CertificateChain": {"certificates": [{"rawBytes": der_of(&cert_pem)}]},
                "tlogEntries": [{
                    "logIndex": index.to_string(),
                    "logId": {"keyId": b64.encode(hex::decode(&self.log_id).unwrap())},
                    "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
                    "integratedTime": time.to_string(),
                    "inclusionPromise": {"signedEntryTimestamp": set},
                    "canonicalizedBody": body,
                }],
            },
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": b64.encode(hex::decode(sha256_hex(data)).unwrap())},
                "signature": signature,
            },
        });
        Logged {
            signature,
            annotations,
            bundle,
        }
    }
}

/// Push `payload` as the cosign signature tag of `signed` in `repo`, its layer annotated with `logged` (a
/// keyless signature over `payload`). Returns the signature manifest's digest.
pub fn push_keyless_signature(
    reg: &Pusher,
    repo: &str,
    signed: &str,
    payload: &[u8],
    logged: &Logged,
) -> String {
    push_signature_layer(reg, repo, signed, payload, logged.annotations.clone())
}

/// Attach `bundle` (a sigstore bundle over the manifest `subject`) to it as an OCI 1.1 referrer, the way cosign's
/// bundle format stores one, and list it in the tag-schema index. Returns the referrer's digest.
pub fn push_bundle_referrer(
    reg: &Pusher,
    repo: &str,
    subject: (&str, usize),
    bundle: &serde_json::Value,
) -> String {
    push_referrer(
        reg,
        repo,
        subject,
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        &serde_json::to_vec(bundle).unwrap(),
        serde_json::json!({}),
    )
}
