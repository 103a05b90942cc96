//! Detached signatures of files: OpenPGP (`FILE.asc`, `FILE.sig`, `FILE.gpg`, as `gpg --detach-sign` writes
//! them), minisign (`FILE.minisig`) and sigstore bundles (`FILE.sigstore.json`, `FILE.sigstore`, checked as
//! [`super::keyless`] says). Files are read as streams, never whole into memory.

use super::{Policy, Rule, Verified, VerifyError};
use std::io::Read;
use std::path::Path;

/// The largest signature file read.
const MAX_SIGNATURE: u64 = super::keyless::MAX_BUNDLE;
/// Where a file's sigstore bundle may lie, beside it.
const BUNDLE_SUFFIXES: [&str; 2] = [".sigstore.json", ".sigstore"];

/// A minisign public key (a `minisign.pub` file, or its base64 line).
#[derive(Clone, Debug)]
pub struct MinisignKey {
    /// The file it came from.
    pub path: String,
    key: minisign_verify::PublicKey,
}

impl MinisignKey {
    /// Read the key at `path`.
    pub fn load(path: &Path) -> Result<MinisignKey, String> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("minisign key {shown}: {e}"))?;
        let key = minisign_verify::PublicKey::decode(&text)
            .or_else(|_| minisign_verify::PublicKey::from_base64(text.trim()))
            .map_err(|e| format!("minisign key {shown}: {e}"))?;
        Ok(MinisignKey { path: shown, key })
    }

    /// `minisign key PATH`, for messages.
    pub fn describe(&self) -> String {
        format!("minisign key {}", self.path)
    }
}

fn read_signature(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::File::open(path) {
        Ok(f) => {
            let mut bytes = Vec::new();
            f.take(MAX_SIGNATURE + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if bytes.len() as u64 > MAX_SIGNATURE {
                return Err(format!(
                    "{}: larger than {MAX_SIGNATURE} bytes, not a signature",
                    path.display()
                ));
            }
            Ok(Some(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

/// Whether the minisign signature text `sig` is good over the file at `path` by `key`.
fn minisign_good(key: &MinisignKey, path: &Path, sig: &str) -> Result<bool, String> {
    let Ok(sig) = minisign_verify::Signature::decode(sig) else {
        return Ok(false);
    };
    let Ok(mut v) = key.key.verify_stream(&sig) else {
        // Another key's id, or the legacy (not pre-hashed) mode, which would need the file in memory.
        return Ok(false);
    };
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        v.update(&buf[..n]);
    }
    Ok(v.finalize().is_ok())
}

/// Check the file at `path` against `rule`: a detached signature next to it must be good by one of the rule's
/// OpenPGP keyrings or minisign keys.
pub fn verify_file(policy: &Policy, rule: &Rule, path: &Path) -> Result<Verified, VerifyError> {
    let artifact = format!("file {}", path.display());
    let refused = |reason: String| policy.refused(&artifact, reason);
    let mut found = Vec::new();
    let mut reasons = Vec::new();
    if !rule.openpgp.is_empty() {
        for suffix in [".asc", ".sig", ".gpg"] {
            let sig_path = with_suffix(path, suffix);
            let Some(sig) = read_signature(&sig_path).map_err(&refused)? else {
                continue;
            };
            found.push(sig_path.display().to_string());
            for ring_path in &rule.openpgp {
                let ring = crate::openpgp::Keyring::load(ring_path).map_err(&refused)?;
                match ring.verify_detached_file(path, &sig) {
                    Ok(fingerprint) => {
                        return Ok(Verified {
                            artifact,
                            scheme: "openpgp".into(),
                            key: format!("{} ({fingerprint})", ring_path.display()),
                        })
                    }
                    Err(e) => reasons.push(format!("{}: {e}", sig_path.display())),
                }
            }
        }
    }
    if !rule.minisign.is_empty() {
        let sig_path = with_suffix(path, ".minisig");
        if let Some(sig) = read_signature(&sig_path).map_err(&refused)? {
            found.push(sig_path.display().to_string());
            let text = String::from_utf8_lossy(&sig);
            for key in &rule.minisign {
                if minisign_good(key, path, &text).map_err(&refused)? {
                    return Ok(Verified {
                        artifact,
                        scheme: "minisign".into(),
                        key: key.path.clone(),
                    });
                }
                reasons.push(format!(
                    "{}: not a good signature by {}",
                    sig_path.display(),
                    key.describe()
                ));
            }
        }
    }
    if !rule.keyless.is_empty() {
        for suffix in BUNDLE_SUFFIXES {
            let bundle_path = with_suffix(path, suffix);
            let Some(bytes) = read_signature(&bundle_path).map_err(&refused)? else {
                continue;
            };
            let shown = bundle_path.display().to_string();
            found.push(shown.clone());
            let bundle = match super::keyless::parse_bundle(&bytes, &shown) {
                Ok(b) => b,
                Err(e) => {
                    reasons.push(e);
                    continue;
                }
            };
            for signer in &rule.keyless {
                match signer.verify_file(path, &bundle) {
                    Ok(who) => {
                        return Ok(Verified {
                            artifact,
                            scheme: "keyless".into(),
                            key: format!("{who} ({})", signer.describe()),
                        })
                    }
                    Err(e) => reasons.push(format!("{shown} against {}: {e}", signer.describe())),
                }
            }
        }
    }
    if found.is_empty() {
        let mut looked: Vec<String> = Vec::new();
        if !rule.openpgp.is_empty() {
            looked.extend(
                [".asc", ".sig", ".gpg"].map(|s| with_suffix(path, s).display().to_string()),
            );
        }
        if !rule.minisign.is_empty() {
            looked.push(with_suffix(path, ".minisig").display().to_string());
        }
        if !rule.keyless.is_empty() {
            looked.extend(BUNDLE_SUFFIXES.map(|s| with_suffix(path, s).display().to_string()));
        }
        return Err(refused(format!(
            "no detached signature (looked for {}); rule {:?} wants one",
            looked.join(", "),
            rule.pattern
        )));
    }
    Err(refused(reasons.join("; ")))
}

/// Check every chart archive (`*.tgz`) directly in `dir` as `helm verify` does: its provenance file
/// `CHART.tgz.prov` (what `helm package --sign` writes: the Chart.yaml, then `files:` with the archive's SHA-256,
/// clearsigned) must be signed by one of the rule's keyrings and name the archive's SHA-256.
pub fn verify_charts(
    policy: &Policy,
    rule: &Rule,
    dir: &Path,
) -> Result<Vec<Verified>, VerifyError> {
    let listed = std::fs::read_dir(dir)
        .map_err(|e| policy.refused(format!("helm: {}", dir.display()), e.to_string()))?;
    let mut charts: Vec<std::path::PathBuf> = listed
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "tgz"))
        .collect();
    charts.sort();
    let mut out = Vec::with_capacity(charts.len());
    'charts: for chart in charts {
        let artifact = format!("chart {}", chart.display());
        let refused = |reason: String| policy.refused(&artifact, reason);
        let prov_path = with_suffix(&chart, ".prov");
        let Some(prov) = read_signature(&prov_path).map_err(&refused)? else {
            return Err(refused(format!(
                "no provenance file {} (`helm package --sign` writes one); rule {:?} wants an OpenPGP signature",
                prov_path.display(),
                rule.pattern
            )));
        };
        let text = String::from_utf8_lossy(&prov);
        let mut reasons = Vec::new();
        for ring_path in &rule.openpgp {
            let ring = crate::openpgp::Keyring::load(ring_path).map_err(&refused)?;
            match ring.verify_cleartext(&text) {
                Ok((signed, fingerprint)) => {
                    provenance_names(&signed, &chart).map_err(|e| {
                        refused(format!(
                            "{}, signed by {} ({fingerprint}): {e}",
                            prov_path.display(),
                            ring_path.display()
                        ))
                    })?;
                    out.push(Verified {
                        artifact,
                        scheme: "openpgp".into(),
                        key: format!("{} ({fingerprint})", ring_path.display()),
                    });
                    continue 'charts;
                }
                Err(e) => reasons.push(format!(
                    "{} against {}: {e}",
                    prov_path.display(),
                    ring_path.display()
                )),
            }
        }
        return Err(refused(reasons.join("; ")));
    }
    Ok(out)
}

/// Whether the signed text of a provenance file names `chart`'s file name with its SHA-256 under `files:`.
fn provenance_names(signed: &str, chart: &Path) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Sums {
        files: std::collections::BTreeMap<String, String>,
    }
    // The Chart.yaml document, a `...` line, then the sums document.
    let sums = signed
        .split_once("\n...\n")
        .map(|(_, sums)| sums)
        .ok_or("no `...` line before the file sums")?;
    let sums: Sums =
        yaml_serde::from_str(sums).map_err(|e| format!("the file sums are not YAML: {e}"))?;
    let name = chart
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let wanted = sums
        .files
        .get(&name)
        .ok_or_else(|| format!("it names no sum for {name}"))?;
    let mut f = std::fs::File::open(chart).map_err(|e| format!("{}: {e}", chart.display()))?;
    let mut h = sha2::Sha256::default();
    std::io::copy(&mut f, &mut h).map_err(|e| format!("{}: {e}", chart.display()))?;
    let have = format!("sha256:{}", hex::encode(sha2::Digest::finalize(h)));
    if *wanted != have {
        return Err(format!(
            "it signs {wanted} for {name}, but the archive is {have}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_passes_with_a_good_openpgp_signature_and_is_refused_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::openpgp::RepoKey::create(&dir.path().join("k.sec")).unwrap();
        std::fs::write(dir.path().join("k.asc"), key.public_armored()).unwrap();
        let other = crate::openpgp::RepoKey::create(&dir.path().join("o.sec")).unwrap();
        std::fs::write(dir.path().join("o.asc"), other.public_armored()).unwrap();
        let policy = Policy::parse(
            "[[rule]]\nmatch = \"file:*\"\nopenpgp = [\"k.asc\"]\n",
            dir.path(),
            "p.toml",
        )
        .unwrap();
        let rule = policy.rule_for("file:x").unwrap().unwrap();
        let file = dir.path().join("app.tar");
        std::fs::write(&file, b"the release").unwrap();

        let err = verify_file(&policy, rule, &file).unwrap_err().to_string();
        assert!(
            err.contains("no detached signature") && err.contains("app.tar.asc"),
            "{err}"
        );

        std::fs::write(
            with_suffix(&file, ".asc"),
            other.detached(b"the release").unwrap(),
        )
        .unwrap();
        let err = verify_file(&policy, rule, &file).unwrap_err().to_string();
        assert!(
            err.contains("app.tar.asc") && err.contains("k.asc"),
            "{err}"
        );

        std::fs::write(
            with_suffix(&file, ".sig"),
            key.detached(b"the release").unwrap(),
        )
        .unwrap();
        let v = verify_file(&policy, rule, &file).unwrap();
        assert_eq!(v.scheme, "openpgp");
        assert!(v.key.contains(&key.fingerprint()), "{v:?}");

        std::fs::write(&file, b"the release, changed").unwrap();
        assert!(verify_file(&policy, rule, &file).is_err());
    }
}
