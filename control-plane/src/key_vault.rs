//! Private keys at rest. Every private key the control plane keeps in its
//! database (session-signing keys, and any other key it signs with) is
//! sealed with AES-256-GCM under a key-encryption key (KEK) that never
//! enters the database, so a copied database file, dump or backup holds no
//! usable key.
//!
//! Where the KEK comes from ([`KekSource`]): `key_encryption_key` (text, at
//! least 32 characters, e.g. from `PORTCULLIS_KEY_ENCRYPTION_KEY`) or
//! `key_encryption_key_file`; without either, a SQLite deployment gets a
//! random KEK in a 0600 file next to its database (created on first start),
//! an in-memory database a random one per process, and PostgreSQL refuses
//! to start (every replica must hold the same KEK, so it must be given).
//!
//! Sealed text: `pcx1.<nonce>.<ciphertext>` (base64url), with the key's
//! purpose and id as associated data, so a sealed key copied onto another
//! row does not open. Rows written before sealing existed (plain PEM) are
//! read once and sealed in place at start ([`KeyVault::is_sealed`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Prefix of sealed text (format version 1).
const SEALED_PREFIX: &str = "pcx1.";
/// Shortest accepted KEK text.
pub const MIN_KEK_CHARS: usize = 32;
/// Name of the KEK file made next to a SQLite database.
pub const DEFAULT_KEK_FILE: &str = "key-encryption.key";

/// Where the key-encryption key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    /// The KEK itself (`key_encryption_key`).
    Value(String),
    /// A file holding it (`key_encryption_key_file`).
    File(PathBuf),
    /// A file next to the SQLite database, made on first start.
    BesideDatabase(PathBuf),
    /// A random KEK for this process (in-memory databases).
    Ephemeral,
}

/// Why a key could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    /// The KEK text is too short.
    #[error("the key-encryption key must be at least {MIN_KEK_CHARS} characters")]
    ShortKek,
    /// The KEK file could not be read or made.
    #[error("key-encryption key file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Sealed text that does not open with this KEK (wrong KEK, or tampered).
    #[error("{0} does not open with this key-encryption key (a different KEK, or the row was altered)")]
    WrongKek(String),
}

/// Seals and opens private keys with the KEK.
#[derive(Clone)]
pub struct KeyVault {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyVault(..)")
    }
}

impl KeyVault {
    /// A vault whose KEK is derived from `secret` (at least 32 characters;
    /// surrounding white space ignored).
    pub fn from_secret(secret: &str) -> Result<Self, KeyVaultError> {
        let secret = secret.trim();
        if secret.chars().count() < MIN_KEK_CHARS {
            return Err(KeyVaultError::ShortKek);
        }
        let mut digest = Sha256::new();
        digest.update(b"portcullis key-encryption key v1\0");
        digest.update(secret.as_bytes());
        let cipher = Aes256Gcm::new_from_slice(&digest.finalize()).map_err(|_| KeyVaultError::ShortKek)?;
        Ok(Self { cipher })
    }

    /// The vault for `source`; makes the KEK file when it is
    /// [`KekSource::BesideDatabase`] and missing (0600, in a 0700 directory).
    pub fn open_source(source: &KekSource) -> Result<Self, KeyVaultError> {
        match source {
            KekSource::Value(text) => Self::from_secret(text),
            KekSource::File(path) => Self::from_secret(&read(path)?),
            KekSource::BesideDatabase(path) => match std::fs::metadata(path) {
                Ok(_) => Self::from_secret(&read(path)?),
                Err(_) => {
                    let text = random_text();
                    write_private(path, &text)?;
                    tracing::info!(path = %path.display(), "created the key-encryption key file");
                    Self::from_secret(&text)
                }
            },
            KekSource::Ephemeral => Self::from_secret(&random_text()),
        }
    }

    /// True when `stored` is sealed text (not a legacy plain PEM).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }

    /// Seals `plaintext`, a key of `purpose` (e.g. `session-signing`) named `id`.
    pub fn seal(&self, purpose: &str, id: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut nonce);
        let aad = associated_data(purpose, id);
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext.as_bytes(), aad: &aad })
            .expect("AES-GCM encryption of a bounded message cannot fail");
        format!("{SEALED_PREFIX}{}.{}", URL_SAFE_NO_PAD.encode(nonce), URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens what [`Self::seal`] made for the same purpose and id; a legacy
    /// plain PEM is returned as it is.
    pub fn open(&self, purpose: &str, id: &str, stored: &str) -> Result<String, KeyVaultError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else { return Ok(stored.to_owned()) };
        let wrong = || KeyVaultError::WrongKek(format!("{purpose} key {id}"));
        let (nonce, sealed) = rest.split_once('.').ok_or_else(wrong)?;
        let nonce = URL_SAFE_NO_PAD.decode(nonce).ok().and_then(|n| <[u8; 12]>::try_from(n).ok()).ok_or_else(wrong)?;
        let sealed = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| wrong())?;
        let aad = associated_data(purpose, id);
        let plain =
            self.cipher.decrypt(&Nonce::from(nonce), Payload { msg: &sealed, aad: &aad }).map_err(|_| wrong())?;
        String::from_utf8(plain).map_err(|_| wrong())
    }
}

fn associated_data(purpose: &str, id: &str) -> Vec<u8> {
    format!("portcullis key\0{purpose}\0{id}").into_bytes()
}

fn random_text() -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn read(path: &Path) -> Result<String, KeyVaultError> {
    std::fs::read_to_string(path).map_err(|source| KeyVaultError::File { path: path.display().to_string(), source })
}

/// Writes a new file readable by its owner only (0600), creating its
/// directory 0700 if needed; never replaces an existing file.
pub fn write_private(path: &Path, text: &str) -> Result<(), KeyVaultError> {
    let failed = |source| KeyVaultError::File { path: path.display().to_string(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::create_private_dir(dir).map_err(failed)?;
    }
    let mut file = crate::files::create_private_file(path).map_err(failed)?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEK: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn sealed_keys_open_only_with_the_same_kek_purpose_and_id() {
        let vault = KeyVault::from_secret(KEK).unwrap();
        let sealed = vault.seal("session-signing", "k1", "-----BEGIN PRIVATE KEY-----\nabc");
        assert!(KeyVault::is_sealed(&sealed));
        assert!(!sealed.contains("BEGIN"), "no plaintext in the sealed form");
        assert_eq!(vault.open("session-signing", "k1", &sealed).unwrap(), "-----BEGIN PRIVATE KEY-----\nabc");
        assert!(vault.open("session-signing", "k2", &sealed).is_err(), "moved to another row");
        assert!(vault.open("stream-signing", "k1", &sealed).is_err(), "another purpose");
        let other = KeyVault::from_secret("another key-encryption key, 32+ chars").unwrap();
        assert!(other.open("session-signing", "k1", &sealed).is_err(), "another KEK");
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(vault.open("session-signing", "k1", &tampered).is_err(), "altered");
    }

    #[test]
    fn legacy_plain_pem_is_read_as_it_is() {
        let vault = KeyVault::from_secret(KEK).unwrap();
        assert!(!KeyVault::is_sealed("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            vault.open("session-signing", "k1", "-----BEGIN PRIVATE KEY-----").unwrap(),
            "-----BEGIN PRIVATE KEY-----"
        );
    }

    #[test]
    fn short_keks_are_refused() {
        assert!(matches!(KeyVault::from_secret("short"), Err(KeyVaultError::ShortKek)));
        assert!(matches!(KeyVault::from_secret(&format!("  {}  ", &KEK[..31])), Err(KeyVaultError::ShortKek)));
    }

    #[test]
    fn the_file_beside_the_database_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("portcullis-kek-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("data").join(DEFAULT_KEK_FILE);
        let first = KeyVault::open_source(&KekSource::BesideDatabase(path.clone())).unwrap();
        let sealed = first.seal("session-signing", "k1", "secret");
        let second = KeyVault::open_source(&KekSource::BesideDatabase(path.clone())).unwrap();
        assert_eq!(second.open("session-signing", "k1", &sealed).unwrap(), "secret", "the same KEK on restart");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
