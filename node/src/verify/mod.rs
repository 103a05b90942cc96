//! Upstream signatures checked at ingest: `ferry add … --verify POLICY`.
//!
//! A policy (TOML) names, per source, the keys whose signature an input must carry:
//!
//! ```toml
//! unmatched = "refuse"        # inputs no rule names: "refuse" (the default) or "accept"
//!
//! [[rule]]
//! match = "docker://registry.example:5000/app/*"   # a glob over the source, `*` and `?`
//! cosign = ["keys/app.pub"]                        # sigstore/cosign public keys (PEM: ECDSA P-256, Ed25519)
//!
//! [[rule]]
//! match = "apt:/srv/mirror/debian*"
//! openpgp = ["keys/debian-archive.gpg"]            # keyrings: InRelease / Release.gpg, repomd.xml.asc
//!
//! [[rule]]
//! match = "file:*.tar.gz"
//! openpgp = ["keys/release.asc"]                   # a detached FILE.asc, FILE.sig or FILE.gpg
//! minisign = ["keys/release.minisign.pub"]         # a detached FILE.minisig
//!
//! [[rule]]
//! match = "docker://ghcr.io/example/*"
//! [[rule.keyless]]                                 # sigstore keyless: a Fulcio certificate, logged in Rekor
//! identity = "https://github.com/example/*/.github/workflows/release.yml@refs/tags/*"
//! issuer = "https://token.actions.githubusercontent.com"
//!
//! [[rule]]
//! match = "dir:*"
//! unsigned = true                                  # taken without a signature, on purpose
//! ```
//!
//! Rules are tried in order and the first whose `match` fits the source applies (the source as
//! [`crate::ingest::Source::location`] writes it: `docker://HOST/REPO:TAG`, `oci:DIR[:TAG]`, `apt:DIR`, `file:PATH`…).
//! An input passes when a signature on it is good by one of its rule's keys (as apt, dnf and cosign decide with
//! one keyring). Key paths are relative to the policy file.
//!
//! - [`cosign`]: sigstore's "simple signing" payloads of images and their signatures.
//! - [`detached`]: OpenPGP and minisign signatures of files, and sigstore bundles beside them.
//! - [`keyless`]: sigstore keyless signatures, of images and files, against an offline trusted root.

pub mod cosign;
pub mod detached;
pub mod keyless;

use std::path::{Path, PathBuf};

/// Why a policy cannot be used, or why an input is refused by it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The policy file (or a key it names) cannot be read or is malformed.
    #[error("policy {path}: {reason}")]
    Policy {
        /// The policy file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An input no rule names, under `unmatched = "refuse"`.
    #[error("{input}: refused by policy {policy}: no rule matches it (add a rule, or `unsigned = true` on purpose)")]
    Unmatched {
        /// The source.
        input: String,
        /// The policy file.
        policy: String,
    },
    /// A rule asks for a kind of signature this input cannot carry.
    #[error("{input}: refused by policy {policy}: rule {rule:?} asks for {wanted} signatures, which a {kind} source cannot carry")]
    Unsupported {
        /// The source.
        input: String,
        /// The policy file.
        policy: String,
        /// The rule's `match`.
        rule: String,
        /// What the rule asks for.
        wanted: String,
        /// The source's kind.
        kind: String,
    },
    /// The signature check failed.
    #[error("{artifact}: refused by policy {policy}: {reason}")]
    Refused {
        /// The artifact (image and digest, file, repository).
        artifact: String,
        /// The policy file.
        policy: String,
        /// Which key and why, e.g. "no signature by cosign key app.pub (sha256:…): …".
        reason: String,
    },
}

/// One rule of a policy.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The glob over the source's location.
    pub pattern: String,
    /// Cosign public keys.
    pub cosign: Vec<cosign::CosignKey>,
    /// OpenPGP keyrings (paths, read where used).
    pub openpgp: Vec<PathBuf>,
    /// minisign public keys.
    pub minisign: Vec<detached::MinisignKey>,
    /// Sigstore keyless signers.
    pub keyless: Vec<keyless::Keyless>,
    /// Taken without a signature.
    pub unsigned: bool,
}

impl Rule {
    /// What the rule asks for, for messages: `cosign`, `openpgp`, `minisign`.
    pub fn wants(&self) -> Vec<&'static str> {
        let mut w = Vec::new();
        if !self.cosign.is_empty() {
            w.push("cosign");
        }
        if !self.openpgp.is_empty() {
            w.push("OpenPGP");
        }
        if !self.minisign.is_empty() {
            w.push("minisign");
        }
        if !self.keyless.is_empty() {
            w.push("keyless");
        }
        w
    }
}

/// A verification policy, read from its file.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file, for messages.
    pub path: String,
    rules: Vec<Rule>,
    accept_unmatched: bool,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyToml {
    #[serde(default)]
    unmatched: Option<String>,
    #[serde(default)]
    rule: Vec<RuleToml>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    #[serde(rename = "match")]
    pattern: String,
    #[serde(default)]
    cosign: Vec<String>,
    #[serde(default)]
    openpgp: Vec<String>,
    #[serde(default)]
    minisign: Vec<String>,
    #[serde(default)]
    keyless: Vec<keyless::KeylessToml>,
    #[serde(default)]
    unsigned: bool,
}

/// What one input's check found: the record `add` reports (and the audit log keeps).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// The artifact: an image with its digest, a file, a repository's signed index.
    pub artifact: String,
    /// `cosign`, `keyless`, `openpgp`, `minisign`, or `unsigned` (a rule that takes it without one).
    pub scheme: String,
    /// The key that made the good signature (its file and fingerprint; for `keyless`, the identity that signed
    /// and the rule's signer); empty for `unsigned`.
    pub key: String,
}

impl Policy {
    /// Read the policy at `path` and every key it names.
    pub fn load(path: &Path) -> Result<Policy, VerifyError> {
        let shown = path.display().to_string();
        let bad = |reason: String| VerifyError::Policy {
            path: shown.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Policy::parse(&text, path.parent().unwrap_or(Path::new(".")), &shown)
    }

    /// A policy from its text; key paths are relative to `base`; `shown` names it in messages.
    pub fn parse(text: &str, base: &Path, shown: &str) -> Result<Policy, VerifyError> {
        let bad = |reason: String| VerifyError::Policy {
            path: shown.to_string(),
            reason,
        };
        let t: PolicyToml = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let accept_unmatched = match t.unmatched.as_deref() {
            None | Some("refuse") => false,
            Some("accept") => true,
            Some(other) => {
                return Err(bad(format!(
                    "unmatched = {other:?}: use \"refuse\" or \"accept\""
                )))
            }
        };
        let mut rules = Vec::new();
        for r in t.rule {
            let at = |p: &str| base.join(p);
            let has_keys = !(r.cosign.is_empty()
                && r.openpgp.is_empty()
                && r.minisign.is_empty()
                && r.keyless.is_empty());
            if has_keys == r.unsigned {
                return Err(bad(format!(
                    "rule {:?}: give keys (cosign, openpgp, minisign, keyless) or `unsigned = true`, not {}",
                    r.pattern,
                    if r.unsigned { "both" } else { "neither" }
                )));
            }
            let cosign = r
                .cosign
                .iter()
                .map(|p| cosign::CosignKey::load(&at(p)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("rule {:?}: {e}", r.pattern)))?;
            let minisign = r
                .minisign
                .iter()
                .map(|p| detached::MinisignKey::load(&at(p)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("rule {:?}: {e}", r.pattern)))?;
            let keyless = r
                .keyless
                .iter()
                .map(|k| keyless::Keyless::load(k, base))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("rule {:?}: {e}", r.pattern)))?;
            let openpgp: Vec<PathBuf> = r.openpgp.iter().map(|p| at(p)).collect();
            for k in &openpgp {
                crate::openpgp::Keyring::load(k)
                    .map_err(|e| bad(format!("rule {:?}: {e}", r.pattern)))?;
            }
            rules.push(Rule {
                pattern: r.pattern,
                cosign,
                openpgp,
                minisign,
                keyless,
                unsigned: r.unsigned,
            });
        }
        Ok(Policy {
            path: shown.to_string(),
            rules,
            accept_unmatched,
        })
    }

    /// The rule for the source at `location`: `Ok(None)` when none matches and the policy accepts unmatched
    /// inputs; an error when none matches and it refuses them.
    pub fn rule_for(&self, location: &str) -> Result<Option<&Rule>, VerifyError> {
        match self.rules.iter().find(|r| glob(&r.pattern, location)) {
            Some(r) => Ok(Some(r)),
            None if self.accept_unmatched => Ok(None),
            None => Err(VerifyError::Unmatched {
                input: location.to_string(),
                policy: self.path.clone(),
            }),
        }
    }

    /// An error for a source of `kind` that a rule asks to verify in a way it cannot be.
    pub fn unsupported(&self, location: &str, rule: &Rule, kind: &str) -> VerifyError {
        VerifyError::Unsupported {
            input: location.to_string(),
            policy: self.path.clone(),
            rule: rule.pattern.clone(),
            wanted: rule.wants().join(" and "),
            kind: kind.to_string(),
        }
    }

    /// A refusal of `artifact` for `reason`.
    pub fn refused(&self, artifact: impl Into<String>, reason: impl Into<String>) -> VerifyError {
        VerifyError::Refused {
            artifact: artifact.into(),
            policy: self.path.clone(),
            reason: reason.into(),
        }
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters and `?` for one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // The classic two-pointer match with backtracking to the last star: linear in practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_a_shell_would() {
        assert!(glob("docker://r:5000/app:*", "docker://r:5000/app:v1"));
        assert!(glob("*", ""));
        assert!(glob("file:*.tar.gz", "file:/x/y.tar.gz"));
        assert!(!glob("file:*.tar.gz", "file:/x/y.tar.gz.sig"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*a*b*c", "xxaxxbxxc"));
        assert!(!glob("*a*b*c", "xxaxxcxxb"));
        assert!(!glob("apt:/srv", "apt:/srv/x"));
    }

    #[test]
    fn policies_parse_and_pick_the_first_matching_rule() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"
            [[rule]]
            match = "dir:/trusted/*"
            unsigned = true
            [[rule]]
            match = "dir:*"
            unsigned = true
        "#;
        let p = Policy::parse(text, dir.path(), "p.toml").unwrap();
        assert_eq!(
            p.rule_for("dir:/trusted/x").unwrap().unwrap().pattern,
            "dir:/trusted/*"
        );
        assert_eq!(p.rule_for("dir:/y").unwrap().unwrap().pattern, "dir:*");
        let err = p.rule_for("file:/z").unwrap_err().to_string();
        assert!(err.contains("file:/z") && err.contains("no rule"), "{err}");

        let p = Policy::parse("unmatched = \"accept\"", dir.path(), "p.toml").unwrap();
        assert!(p.rule_for("file:/z").unwrap().is_none());

        for (bad, says) in [
            ("[[rule]]\nmatch = \"x\"", "neither"),
            (
                "[[rule]]\nmatch = \"x\"\nunsigned = true\nopenpgp = [\"k\"]",
                "both",
            ),
            (
                "[[rule]]\nmatch = \"x\"\ncosign = [\"missing.pub\"]",
                "missing.pub",
            ),
            (
                "[[rule]]\nmatch = \"x\"\nopenpgp = [\"missing.gpg\"]",
                "missing.gpg",
            ),
            ("unmatched = \"maybe\"", "maybe"),
            (
                "[[rule]]\nmatch = \"x\"\nunsigned = true\ncosgin = []",
                "cosgin",
            ),
        ] {
            let err = Policy::parse(bad, dir.path(), "p.toml")
                .unwrap_err()
                .to_string();
            assert!(err.contains("p.toml") && err.contains(says), "{bad}: {err}");
        }
    }
}
