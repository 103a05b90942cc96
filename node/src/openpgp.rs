//! OpenPGP for package repositories: the store's repository key, which signs the `InRelease` and `Release.gpg`
//! of repositories ferry writes itself (partial mirrors), and keyrings of upstream keys, which check the Release
//! files ferry ingests.
//!
//! The repository key is an OpenPGP v4 Ed25519 key (the "legacy" EdDSA form every gpgv and sqv in use reads)
//! kept in the store at `keys/repository.asc` (ASCII-armored, mode 0600), made with the store, or on first need
//! for a store made before it existed. Its public half is what a site's apt names in `signed-by`.

use pgp::composed::{
    ArmorOptions, CleartextSignedMessage, Deserializable, DetachedSignature, KeyType,
    SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::Signature;
use pgp::types::{KeyDetails, Password, VerifyingKey};
use std::path::Path;

use crate::keys::KeyError;

/// The user id the repository key carries.
const USER_ID: &str = "Ferry repository key <repository@ferry.invalid>";

/// The store's repository signing key.
pub struct RepoKey {
    key: SignedSecretKey,
}

impl RepoKey {
    /// Make a new key and write it to `path` (which must not exist).
    pub fn create(path: &Path) -> Result<RepoKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(USER_ID.into());
        let key = params
            .build()
            .map_err(|e| io(std::io::Error::other(e.to_string())))?
            .generate(rand_core::OsRng)
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let armored = key
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        crate::keys::write_new_private(path, armored.as_bytes())?;
        Ok(RepoKey { key })
    }

    /// Read the key at `path`.
    pub fn load(path: &Path) -> Result<RepoKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let (key, _) = SignedSecretKey::from_string(&text).map_err(|_| KeyError::Malformed {
            path: path.display().to_string(),
        })?;
        Ok(RepoKey { key })
    }

    /// The key at `path`, made there first if there is none (a store made before repository keys existed).
    pub fn load_or_create(path: &Path) -> Result<RepoKey, KeyError> {
        match RepoKey::create(path) {
            Err(KeyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                RepoKey::load(path)
            }
            other => other,
        }
    }

    /// The key's fingerprint, upper-case hex (as `gpg --list-keys` prints it).
    pub fn fingerprint(&self) -> String {
        hex::encode_upper(self.key.fingerprint().as_bytes())
    }

    /// The public key, ASCII-armored (an `.asc` file apt's `signed-by` reads).
    pub fn public_armored(&self) -> String {
        SignedPublicKey::from(self.key.clone())
            .to_armored_string(ArmorOptions::default())
            .expect("a public key made from a valid secret key serializes")
    }

    /// `text` clearsigned: an `InRelease` file.
    pub fn clearsign(&self, text: &str) -> Result<String, String> {
        CleartextSignedMessage::sign(
            rand_core::OsRng,
            text,
            &self.key.primary_key,
            &Password::empty(),
        )
        .and_then(|m| m.to_armored_string(ArmorOptions::default()))
        .map_err(|e| format!("signing with the repository key: {e}"))
    }

    /// A detached, armored signature of `data`: a `Release.gpg` file.
    pub fn detached(&self, data: &[u8]) -> Result<String, String> {
        DetachedSignature::sign_binary_data(
            rand_core::OsRng,
            &self.key.primary_key,
            &Password::empty(),
            HashAlgorithm::Sha256,
            data,
        )
        .and_then(|s| s.to_armored_string(ArmorOptions::default()))
        .map_err(|e| format!("signing with the repository key: {e}"))
    }
}

/// Public keys to check upstream signatures with: a keyring file, binary (`/usr/share/keyrings/*.gpg`) or
/// ASCII-armored.
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
    what: String,
}

impl Keyring {
    /// Read the keyring at `path`. Keys ferry cannot read (an algorithm it lacks) are passed over; a file with
    /// none it can read is an error.
    pub fn load(path: &Path) -> Result<Keyring, String> {
        let what = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| format!("keyring {what}: {e}"))?;
        Keyring::from_bytes(&bytes, what)
    }

    /// A keyring from its bytes; `what` names it in messages.
    pub fn from_bytes(bytes: &[u8], what: String) -> Result<Keyring, String> {
        let armored = bytes.starts_with(b"-----BEGIN PGP");
        let keys: Vec<SignedPublicKey> = if armored {
            match SignedPublicKey::from_armor_many(bytes) {
                Ok((iter, _)) => iter.filter_map(Result::ok).collect(),
                Err(e) => return Err(format!("keyring {what}: {e}")),
            }
        } else {
            match SignedPublicKey::from_bytes_many(bytes) {
                Ok(iter) => iter.filter_map(Result::ok).collect(),
                Err(e) => return Err(format!("keyring {what}: {e}")),
            }
        };
        if keys.is_empty() {
            return Err(format!("keyring {what}: holds no OpenPGP public key"));
        }
        Ok(Keyring { keys, what })
    }

    /// The fingerprint of the key (or subkey) in this keyring by which one of `sigs` over `data` is good, and
    /// that is neither revoked nor expired now. A signature good only by a key that is refuses with why.
    fn good(&self, sigs: &[&Signature], data: &[u8]) -> Result<String, Option<String>> {
        fn by<K: VerifyingKey>(key: &K, sigs: &[&Signature], data: &[u8]) -> Option<String> {
            sigs.iter()
                .any(|s| s.verify(key, data).is_ok())
                .then(|| hex::encode_upper(key.fingerprint().as_bytes()))
        }
        let mut unusable = None;
        for k in &self.keys {
            let primary = primary_usable(k);
            if let Some(fp) = by(&k.primary_key, sigs, data) {
                if let Some(fp) = counted(fp, primary.clone(), &mut unusable) {
                    return Ok(fp);
                }
            }
            for sub in &k.public_subkeys {
                let Some(fp) = by(&sub.key, sigs, data) else {
                    continue;
                };
                if let Some(fp) = counted(fp, subkey_usable(&primary, sub), &mut unusable) {
                    return Ok(fp);
                }
            }
        }
        Err(unusable)
    }

    /// Check a clearsigned file (`InRelease`): some signature in it is good by some key here. Returns the
    /// signed text (dash-escapes undone, trailing blanks of lines gone, as it was hashed; `\n` line ends) and the
    /// fingerprint of the key that made the good signature.
    pub fn verify_cleartext(&self, text: &str) -> Result<(String, String), String> {
        let (msg, _) = CleartextSignedMessage::from_string(text)
            .map_err(|e| format!("not a clearsigned OpenPGP message: {e}"))?;
        let signed = msg.signed_text();
        let sigs: Vec<&Signature> = msg.signatures().iter().collect();
        let fingerprint = self
            .good(&sigs, signed.as_bytes())
            .map_err(|why| why.unwrap_or_else(|| self.no_good(sigs.len())))?;
        Ok((signed.replace("\r\n", "\n"), fingerprint))
    }

    /// Check a detached signature file (`Release.gpg`, armored or binary, one or more signatures) over `data`.
    pub fn verify_detached(&self, data: &[u8], signature: &[u8]) -> Result<String, String> {
        let sigs = parse_detached(signature)?;
        let sigs: Vec<&Signature> = sigs.iter().map(|s| &s.signature).collect();
        self.good(&sigs, data)
            .map_err(|why| why.unwrap_or_else(|| self.no_good(sigs.len())))
    }

    /// Check a detached signature over the file at `path`, read as a stream (once per key a signature names as
    /// its issuer, so a file of any size is never held in memory).
    pub fn verify_detached_file(&self, path: &Path, signature: &[u8]) -> Result<String, String> {
        let sigs = parse_detached(signature)?;
        let mut unusable = None;
        for sig in &sigs {
            let sig = &sig.signature;
            let issuers = sig.issuer_key_id();
            let named =
                |k: &dyn KeyDetails| issuers.is_empty() || issuers.contains(&&k.legacy_key_id());
            let check = |k: &dyn Fn(std::fs::File) -> bool| -> Result<bool, String> {
                let f =
                    std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(k(f))
            };
            for key in &self.keys {
                let primary = primary_usable(key);
                if named(&key.primary_key)
                    && check(&|f| {
                        sig.verify(&key.primary_key, std::io::BufReader::new(f))
                            .is_ok()
                    })?
                {
                    let fp = hex::encode_upper(key.primary_key.fingerprint().as_bytes());
                    if let Some(fp) = counted(fp, primary.clone(), &mut unusable) {
                        return Ok(fp);
                    }
                }
                for sub in &key.public_subkeys {
                    if named(&sub.key)
                        && check(&|f| sig.verify(&sub.key, std::io::BufReader::new(f)).is_ok())?
                    {
                        let fp = hex::encode_upper(sub.key.fingerprint().as_bytes());
                        let verdict = subkey_usable(&primary, sub);
                        if let Some(fp) = counted(fp, verdict, &mut unusable) {
                            return Ok(fp);
                        }
                    }
                }
            }
        }
        Err(unusable.unwrap_or_else(|| self.no_good(sigs.len())))
    }

    fn no_good(&self, signatures: usize) -> String {
        format!(
            "none of its {signatures} signature(s) is good by any of the {} key(s) in {}",
            self.keys.len(),
            self.what
        )
    }
}

/// The self-signatures of a key's user ids (where its primary key's expiry is).
fn self_sigs(k: &SignedPublicKey) -> Vec<&Signature> {
    k.details
        .users
        .iter()
        .flat_map(|u| u.signatures.iter())
        .chain(k.details.direct_signatures.iter())
        .collect()
}

/// `fingerprint`, when the key that made a good signature may be used (`verdict`); else `None`, and why in
/// `unusable`.
fn counted(
    fingerprint: String,
    verdict: Result<(), String>,
    unusable: &mut Option<String>,
) -> Option<String> {
    match verdict {
        Ok(()) => Some(fingerprint),
        Err(why) => {
            *unusable = Some(format!(
                "the signature is by key {fingerprint}, which {why}"
            ));
            None
        }
    }
}

/// Whether `k`'s primary key may be used now.
fn primary_usable(k: &SignedPublicKey) -> Result<(), String> {
    let revoked = !k.details.revocation_signatures.is_empty();
    usable(&k.primary_key, revoked, self_sigs(k))
}

/// Whether subkey `sub` may be used now, its primary key's verdict being `primary`.
fn subkey_usable(
    primary: &Result<(), String>,
    sub: &pgp::composed::SignedPublicSubKey,
) -> Result<(), String> {
    primary.clone()?;
    let revoked = sub
        .signatures
        .iter()
        .any(|s| s.typ() == Some(pgp::packet::SignatureType::SubkeyRevocation));
    usable(&sub.key, revoked, sub.signatures.iter().collect())
}

/// Whether `key` may be used now: not revoked, and not past the expiry its newest binding signature gives.
fn usable<K: KeyDetails>(key: &K, revoked: bool, bindings: Vec<&Signature>) -> Result<(), String> {
    if revoked {
        return Err("is revoked".into());
    }
    let newest = bindings
        .into_iter()
        .max_by_key(|s| s.created().map(|t| t.as_secs()).unwrap_or(0));
    let Some(valid_for) = newest.and_then(|s| s.key_expiration_time()) else {
        return Ok(());
    };
    if valid_for.as_secs() == 0 {
        return Ok(());
    }
    let expires = u64::from(key.created_at().as_secs()) + u64::from(valid_for.as_secs());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if expires <= now {
        return Err(format!(
            "expired on {}",
            crate::ingest::helm::rfc3339(expires)
        ));
    }
    Ok(())
}

/// The signatures of a detached signature file, armored or binary.
fn parse_detached(signature: &[u8]) -> Result<Vec<DetachedSignature>, String> {
    let sigs: Vec<DetachedSignature> = if signature.starts_with(b"-----BEGIN PGP") {
        DetachedSignature::from_armor_many(signature)
            .map(|(iter, _)| iter.filter_map(Result::ok).collect())
            .map_err(|e| format!("not an OpenPGP signature: {e}"))?
    } else {
        DetachedSignature::from_bytes_many(signature)
            .map(|iter| iter.filter_map(Result::ok).collect())
            .map_err(|e| format!("not an OpenPGP signature: {e}"))?
    };
    if sigs.is_empty() {
        return Err("not an OpenPGP signature: it holds no signature packet".into());
    }
    Ok(sigs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_what_its_public_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repository.asc");
        let key = RepoKey::load_or_create(&path).unwrap();
        let again = RepoKey::load_or_create(&path).unwrap();
        assert_eq!(key.fingerprint(), again.fingerprint());
        assert_eq!(key.fingerprint().len(), 40);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let public = key.public_armored();
        assert!(public.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
        let ring = Keyring::from_bytes(public.as_bytes(), "test".into()).unwrap();

        let text = "Origin: Ferry\nSuite: stable\n- a dash line\n";
        let inrelease = key.clearsign(text).unwrap();
        let (signed, fp) = ring.verify_cleartext(&inrelease).unwrap();
        assert_eq!(signed, text);
        assert_eq!(fp, key.fingerprint());
        let tampered = inrelease.replace("Suite: stable", "Suite: stabl3");
        assert!(ring.verify_cleartext(&tampered).is_err());

        let sig = key.detached(text.as_bytes()).unwrap();
        assert_eq!(
            ring.verify_detached(text.as_bytes(), sig.as_bytes())
                .unwrap(),
            key.fingerprint()
        );
        let file = dir.path().join("release.txt");
        std::fs::write(&file, text).unwrap();
        assert_eq!(
            ring.verify_detached_file(&file, sig.as_bytes()).unwrap(),
            key.fingerprint()
        );
        std::fs::write(&file, "other").unwrap();
        assert!(ring.verify_detached_file(&file, sig.as_bytes()).is_err());
        let err = ring.verify_detached(b"other", sig.as_bytes()).unwrap_err();
        assert!(err.contains("none of its 1 signature"), "{err}");

        // Another key's signature is not good by this keyring.
        let other = RepoKey::create(&dir.path().join("other.asc")).unwrap();
        let err = ring
            .verify_cleartext(&other.clearsign(text).unwrap())
            .unwrap_err();
        assert!(err.contains("test"), "{err}");
        assert!(Keyring::from_bytes(b"garbage", "g".into()).is_err());
    }
}
