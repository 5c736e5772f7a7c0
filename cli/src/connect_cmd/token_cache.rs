//! The session tokens `portcullis connect` keeps between runs, one per
//! edge URL and target (a session token is valid only on the route it was
//! issued for; the key is [`key`]), in `$XDG_CONFIG_HOME/portcullis/sessions.json` (or
//! `~/.config/portcullis/sessions.json`): the directory is 0700 and the file
//! 0600, written to a temporary file and renamed into place. A token whose
//! `exp` has passed is not offered; one the edge refuses is forgotten.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Seconds before `exp` at which a cached token is no longer offered.
const EXPIRY_MARGIN_S: i64 = 30;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    #[serde(default)]
    sessions: BTreeMap<String, CachedSession>,
}

/// A cached session token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedSession {
    /// The session token.
    pub token: String,
    /// Its session id.
    pub session_id: String,
}

/// The cache key of the session for `target` (`host:port`) through `edge`.
pub fn key(edge: &str, target: &str) -> String {
    format!("{edge} {}", target.to_ascii_lowercase())
}

/// The cache file of this user.
pub struct TokenCache {
    path: PathBuf,
}

/// `exp` of a JWT, read without checking the signature (the edge checks it).
fn expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?.get("exp")?.as_i64()
}

impl TokenCache {
    /// The cache under `$XDG_CONFIG_HOME` or `$HOME/.config`.
    pub fn for_user() -> anyhow::Result<Self> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
            .ok_or_else(|| anyhow!("cannot find a configuration directory: set HOME or XDG_CONFIG_HOME"))?;
        Ok(Self { path: base.join("portcullis").join("sessions.json") })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> CacheFile {
        std::fs::read(&self.path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
    }

    fn write(&self, file: &CacheFile) -> anyhow::Result<()> {
        let dir = self.path.parent().context("the cache path has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        let temp = dir.join(format!(".sessions.json.{}", std::process::id()));
        let text = serde_json::to_vec_pretty(file)?;
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("cannot write {}", temp.display()))?;
        // `mode` applies only when the file is created.
        out.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        out.write_all(&text)?;
        out.sync_all()?;
        std::fs::rename(&temp, &self.path).with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// The token kept for `edge`, unless it has expired (`now` in Unix seconds).
    pub fn get(&self, edge: &str, now: i64) -> Option<CachedSession> {
        let session = self.read().sessions.remove(edge)?;
        expiry(&session.token).is_none_or(|exp| exp - EXPIRY_MARGIN_S > now).then_some(session)
    }

    /// Keeps `session` for `edge`.
    pub fn put(&self, edge: &str, session: CachedSession) -> anyhow::Result<()> {
        let mut file = self.read();
        file.sessions.insert(edge.to_owned(), session);
        self.write(&file)
    }

    /// Forgets the token of `edge`.
    pub fn forget(&self, edge: &str) -> anyhow::Result<()> {
        let mut file = self.read();
        if file.sessions.remove(edge).is_some() {
            self.write(&file)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(exp: i64) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!("{{\"exp\":{exp}}}"));
        format!("e30.{payload}.sig")
    }

    #[test]
    fn keeps_tokens_per_edge_privately_and_skips_expired_ones() {
        let dir = std::env::temp_dir().join(format!("portcullis-token-cache-{}", std::process::id()));
        let cache = TokenCache { path: dir.join("portcullis").join("sessions.json") };
        let session = |t: String| CachedSession { token: t, session_id: "s".into() };
        cache.put("http://a", session(token(1_000))).unwrap();
        cache.put("http://b", session(token(10))).unwrap();
        assert_eq!(cache.get("http://a", 500).map(|s| s.token), Some(token(1_000)));
        assert!(cache.get("http://b", 500).is_none(), "expired");
        assert!(cache.get("http://c", 500).is_none());
        let mode = std::fs::metadata(cache.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        cache.forget("http://a").unwrap();
        assert!(cache.get("http://a", 500).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
