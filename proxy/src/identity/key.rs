//! The edge's own P-256 key: made on the edge (the private half never
//! leaves it), kept in `credential_file` (PKCS#8 PEM, 0600, folder 0700) or
//! only in memory, and used to sign the short-lived assertions every
//! edge-channel call carries.

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::Serialize;

/// Why a key could not be read, made or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file is not a PKCS#8 PEM P-256 private key.
    #[error("`{0}` is not a PKCS#8 PEM P-256 private key")]
    NotAKey(String),
    /// Others may read the file.
    #[error("`{path}` is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing failed.
    #[error("`{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Encoding failed (never expected).
    #[error("cannot encode the key: {0}")]
    Encode(String),
}

struct Material {
    secret: p256::SecretKey,
    signing: EncodingKey,
    public_pem: String,
}

/// The edge's key pair (cheap to clone).
#[derive(Clone)]
pub struct EdgeKey(Arc<Material>);

impl std::fmt::Debug for EdgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EdgeKey(private)")
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

impl EdgeKey {
    /// A fresh key.
    pub fn generate() -> Self {
        Self::from_secret(p256::SecretKey::random(&mut rand::rngs::OsRng)).expect("a fresh P-256 key encodes")
    }

    fn from_secret(secret: p256::SecretKey) -> Result<Self, KeyFileError> {
        let pkcs8 = secret.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyFileError::Encode(e.to_string()))?;
        let signing = EncodingKey::from_ec_pem(pkcs8.as_bytes()).map_err(|e| KeyFileError::Encode(e.to_string()))?;
        let public_pem =
            secret.public_key().to_public_key_pem(LineEnding::LF).map_err(|e| KeyFileError::Encode(e.to_string()))?;
        Ok(Self(Arc::new(Material { secret, signing, public_pem })))
    }

    /// The key in `path`, refusing a file others may read.
    pub fn read(path: &Path) -> Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        let io = |source| KeyFileError::Io { path: shown.clone(), source };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::TooOpen { path: shown, mode });
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::from_pkcs8_pem(&text).map_err(|_| KeyFileError::NotAKey(shown))
    }

    /// The key in `pem` (PKCS#8).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyFileError> {
        let secret = p256::SecretKey::from_pkcs8_pem(pem).map_err(|_| KeyFileError::NotAKey("the key".into()))?;
        Self::from_secret(secret)
    }

    /// Writes the private key to `path` (0600; a missing folder is made 0700).
    pub fn write(&self, path: &Path) -> Result<(), KeyFileError> {
        let shown = path.display().to_string();
        let io = |source| KeyFileError::Io { path: shown.clone(), source };
        let pem = self.0.secret.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyFileError::Encode(e.to_string()))?;
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(folder).map_err(io)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        std::io::Write::write_all(&mut file, pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The public key, SPKI PEM (what enrollment registers).
    pub fn public_pem(&self) -> &str {
        &self.0.public_pem
    }

    /// An assertion for edge `edge_id` to `audience`, valid from `now` for
    /// `lifetime_s` seconds.
    pub fn assertion(&self, edge_id: &str, audience: &str, now: i64, lifetime_s: i64) -> String {
        let mut jti = [0u8; 16];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut jti);
        let claims = AssertionClaims {
            iss: edge_id,
            sub: edge_id,
            aud: audience,
            iat: now,
            exp: now + lifetime_s,
            jti: jti.iter().map(|b| format!("{b:02x}")).collect(),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, &claims, &self.0.signing).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_key_reads_back_and_others_cannot_read_it() {
        let dir = std::env::temp_dir().join(format!("portcullis-key-{}", std::process::id()));
        let path = dir.join("sub").join("edge.key");
        let key = EdgeKey::generate();
        key.write(&path).expect("write");
        assert_eq!(EdgeKey::read(&path).expect("read").public_pem(), key.public_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(EdgeKey::read(&path), Err(KeyFileError::TooOpen { .. })));
        }
        assert!(key.write(&path).is_err(), "never overwrites a key");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn assertions_carry_the_edge_and_expire() {
        let key = EdgeKey::generate();
        let token = key.assertion("edge-7", "aud-x", 1_000, 60);
        let decoding = jsonwebtoken::DecodingKey::from_ec_pem(key.public_pem().as_bytes()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.set_audience(&["aud-x"]);
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap().claims;
        assert_eq!((claims["iss"].as_str(), claims["sub"].as_str()), (Some("edge-7"), Some("edge-7")));
        assert_eq!(claims["exp"].as_i64(), Some(1_060));
        assert_ne!(key.assertion("edge-7", "aud-x", 1_000, 60), token, "a fresh jti each time");
    }
}
