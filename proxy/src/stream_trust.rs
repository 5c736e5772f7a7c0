//! What the edge trusts on its control-plane stream: the public stream key,
//! pinned in the configuration (`stream_public_key`) or, when none is
//! configured, fetched from the first replica that answers
//! (`GET /edge/v1/stream-key`) and pinned for the life of the process, so a
//! replica or a man in the middle serving another key later is refused; and
//! each stream's binding, a fresh random nonce and the `since` asked for,
//! which every frame of that stream must be signed for.
//!
//! Fetching trusts the first answer: production pins the key (or reaches
//! the control plane over verified TLS), the quickstart relies on loopback.

use std::sync::OnceLock;
use std::time::Duration;

use portcullis_policy::signed_frame::{StreamBinding, StreamNonce};
use portcullis_policy::stream_key::{PublishedStreamKey, StreamPublicKey};

use crate::control_planes::ControlPlanes;
use portcullis_policy::edge_channel::STREAM_KEY_PATH;

/// Longest wait for the key.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// The stream key this edge verifies with, once known.
#[derive(Debug, Default)]
pub struct StreamTrust {
    pinned: OnceLock<StreamPublicKey>,
}

impl StreamTrust {
    /// Trust `configured` (from `stream_public_key`), or the first key fetched.
    pub fn new(configured: Option<StreamPublicKey>) -> Self {
        let pinned = OnceLock::new();
        if let Some(key) = configured {
            let _ = pinned.set(key);
        }
        Self { pinned }
    }

    /// The pinned key, if there is one yet.
    pub fn pinned(&self) -> Option<StreamPublicKey> {
        self.pinned.get().copied()
    }

    /// The key to verify a stream from replica `index` with: the pinned one,
    /// or (the first time) the one that replica serves, pinned from then on.
    pub async fn key(
        &self,
        planes: &ControlPlanes,
        client: &reqwest::Client,
        index: usize,
    ) -> Result<StreamPublicKey, String> {
        if let Some(key) = self.pinned() {
            return Ok(key);
        }
        let url = planes.url_at(index, STREAM_KEY_PATH);
        let response = planes
            .authorize(client.get(&url))
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: {}", response.status()));
        }
        let published: PublishedStreamKey = response.json().await.map_err(|e| format!("{url}: {e}"))?;
        let key = published.key().map_err(|e| format!("{url}: {e}"))?;
        if self.pinned.set(key).is_ok() {
            tracing::warn!(
                %url,
                public_key = %key,
                "no stream_public_key configured: pinned the stream key this control plane served for the life of \
                 this process; configure stream_public_key in production"
            );
        }
        self.pinned().ok_or_else(|| "no stream key".to_owned())
    }

    /// A fresh binding for a stream that asks for changes after `since`.
    pub fn binding(since: Option<u64>) -> StreamBinding {
        StreamBinding { nonce: StreamNonce(rand::random()), since }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::stream_key::StreamSigningKey;

    #[test]
    fn a_configured_key_is_pinned_and_bindings_are_fresh() {
        let key = StreamSigningKey::from_seed([3; 32]).public_key();
        assert_eq!(StreamTrust::new(Some(key)).pinned(), Some(key));
        assert_eq!(StreamTrust::new(None).pinned(), None);
        let (a, b) = (StreamTrust::binding(Some(4)), StreamTrust::binding(Some(4)));
        assert_ne!(a.nonce, b.nonce, "a new nonce for every stream");
        assert_eq!(a.since, Some(4));
    }
}
