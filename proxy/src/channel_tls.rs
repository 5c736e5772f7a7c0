//! How an edge trusts the control plane it streams from and reports to.
//!
//! Without `control_plane_ca` and `control_plane_pins`, an `https://`
//! control-plane URL is checked against the system's roots (native TLS, as
//! for any web server). With either, the edge uses rustls and a verifier of
//! its own:
//!
//! - `control_plane_ca`: the certificates of that PEM file are the **only**
//!   roots trusted for the control plane; its chain must end in one of them
//!   and name the URL's host (IP addresses included).
//! - `control_plane_pins`: the SHA-256 of the certificate's public key
//!   (SubjectPublicKeyInfo, written `sha256//<base64>` as curl's
//!   `--pinnedpubkey` takes it) must be one of them: on top of the CA check,
//!   or alone, when the key itself is the control plane's identity (a
//!   self-signed certificate is fine; names and dates are not checked).
//!
//! A certificate that fails is refused during the handshake, before any
//! request, and so before the edge's credentials, is sent; the reason is
//! logged. Every client of the control plane is built from here, through
//! [`crate::control_planes::ControlPlanes::client`]. Plain `http://` is
//! accepted for loopback hosts only, unless `allow_plain_http`
//! ([`refuse_plain_http`]).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::config::ConfigError;

/// Why a CA file or pin is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The CA file holds no certificate.
    #[error("holds no PEM certificate")]
    NoCertificate,
    /// The CA file is not PEM, or a certificate in it is not usable as a root.
    #[error("{0}")]
    BadCertificate(String),
    /// A pin is not `sha256//` and the base64 of 32 bytes.
    #[error("`{0}` is not a pin of the form sha256//<base64 of the SHA-256 of the public key>")]
    BadPin(String),
}

/// What an edge trusts for the control plane: the system's roots, or a
/// verifier made from `control_plane_ca` and `control_plane_pins`.
#[derive(Clone, Default)]
pub struct ChannelTrust {
    verifier: Option<Arc<ControlPlaneVerifier>>,
}

impl fmt::Debug for ChannelTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verifier {
            None => f.write_str("ChannelTrust(system roots)"),
            Some(v) => write!(f, "ChannelTrust(control_plane_ca: {}, pins: {})", v.chain.is_some(), v.pins.len()),
        }
    }
}

impl ChannelTrust {
    /// Reads the configuration keys: `ca_file` (a PEM file, read now) and
    /// `pins`; errors name `control_plane_ca` or `control_plane_pins`.
    pub fn load(ca_file: Option<&str>, pins: &[String]) -> Result<Self, ConfigError> {
        let pem = match ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| ConfigError::new("control_plane_ca", format!("cannot read `{path}`: {e}")))?,
            ),
            None => None,
        };
        Self::new(pem.as_deref(), pins).map_err(|e| match e {
            TrustError::BadPin(_) => ConfigError::new("control_plane_pins", e.to_string()),
            _ => ConfigError::new("control_plane_ca", format!("`{}` {e}", ca_file.unwrap_or_default())),
        })
    }

    /// Trust built from the PEM text of a CA file and pins; neither: the
    /// system's roots.
    pub fn new(ca_pem: Option<&[u8]>, pins: &[String]) -> Result<Self, TrustError> {
        let pins = pins.iter().map(|pin| parse_pin(pin)).collect::<Result<Vec<_>, _>>()?;
        if ca_pem.is_none() && pins.is_empty() {
            return Ok(Self::default());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = match ca_pem {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in CertificateDer::pem_slice_iter(pem) {
                    let certificate =
                        certificate.map_err(|e| TrustError::BadCertificate(format!("is not PEM: {e}")))?;
                    roots
                        .add(certificate)
                        .map_err(|e| TrustError::BadCertificate(format!("holds an unusable certificate: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(TrustError::NoCertificate);
                }
                let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| TrustError::BadCertificate(e.to_string()))?;
                Some(verifier)
            }
            None => None,
        };
        let algorithms = provider.signature_verification_algorithms;
        Ok(Self { verifier: Some(Arc::new(ControlPlaneVerifier { chain, pins, algorithms })) })
    }

    /// True when a CA or pins are configured (rustls with this trust's own
    /// verifier), false for the system's roots.
    pub fn is_private(&self) -> bool {
        self.verifier.is_some()
    }

    /// A client builder that trusts what this says (and nothing else for
    /// `https://`).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let builder = reqwest::Client::builder();
        let Some(verifier) = &self.verifier else {
            return builder;
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(verifier) as Arc<dyn ServerCertVerifier>)
            .with_no_client_auth();
        builder.use_preconfigured_tls(config)
    }
}

/// Plain HTTP to the control plane is for loopback: anywhere else the edge's
/// credentials and every snapshot would cross the network in the clear.
/// `key` names the configuration key that lists `urls`.
pub fn refuse_plain_http(key: &str, urls: &[String]) -> Result<(), ConfigError> {
    for url in urls.iter().filter(|u| u.starts_with("http://")) {
        if !portcullis_settings::is_loopback_url(url) {
            return Err(ConfigError::new(
                key,
                format!(
                    "`{url}` is plain HTTP to a host that is not loopback: use https:// (with control_plane_ca), \
                     or set allow_plain_http = true"
                ),
            ));
        }
    }
    Ok(())
}

/// The pin of a DER certificate: `sha256//` and the base64 of the SHA-256
/// of its SubjectPublicKeyInfo.
pub fn pin_of(certificate: &[u8]) -> Option<String> {
    let certificate = CertificateDer::from(certificate);
    let parsed = rustls::server::ParsedCertificate::try_from(&certificate).ok()?;
    Some(format_pin(&Sha256::digest(parsed.subject_public_key_info().as_ref()).into()))
}

fn format_pin(hash: &[u8; 32]) -> String {
    format!("sha256//{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

fn parse_pin(text: &str) -> Result<[u8; 32], TrustError> {
    let encoded = text.trim().strip_prefix("sha256//").ok_or_else(|| TrustError::BadPin(text.to_owned()))?;
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| TrustError::BadPin(text.to_owned()))?;
    bytes.try_into().map_err(|_| TrustError::BadPin(text.to_owned()))
}

/// The CA check and the pin check, in that order, logging why a
/// certificate was refused.
#[derive(Debug)]
struct ControlPlaneVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    pins: Vec<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ControlPlaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            if let Err(error) = chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
                tracing::warn!(
                    server = %server_name.to_str(),
                    %error,
                    "the control plane's certificate does not verify against control_plane_ca: not connecting"
                );
                return Err(error);
            }
        }
        if !self.pins.is_empty() {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            let hash: [u8; 32] = Sha256::digest(parsed.subject_public_key_info().as_ref()).into();
            if !self.pins.contains(&hash) {
                tracing::warn!(
                    server = %server_name.to_str(),
                    pin = %format_pin(&hash),
                    "the control plane's public key matches none of control_plane_pins: not connecting"
                );
                return Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_sha256_and_32_bytes_of_base64() {
        let good = format_pin(&[7u8; 32]);
        assert_eq!(parse_pin(&good).unwrap(), [7u8; 32]);
        for bad in ["sha1//AAAA", "sha256//not base64!", "sha256//AAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]
        {
            assert!(matches!(parse_pin(bad), Err(TrustError::BadPin(_))), "{bad}");
        }
    }

    #[test]
    fn nothing_configured_means_the_system_roots() {
        assert!(!ChannelTrust::new(None, &[]).unwrap().is_private());
        assert!(ChannelTrust::new(None, &[format_pin(&[1; 32])]).unwrap().is_private(), "pins alone");
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        assert!(matches!(ChannelTrust::new(Some(b"just text\n"), &[]), Err(TrustError::NoCertificate)));
        let broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(ChannelTrust::new(Some(broken), &[]), Err(TrustError::BadCertificate(_))));
        let missing = ChannelTrust::load(Some("/nonexistent/ca.pem"), &[]).unwrap_err();
        assert_eq!(missing.key, "control_plane_ca");
        let pin = ChannelTrust::load(None, &["sha256//x".into()]).unwrap_err();
        assert_eq!(pin.key, "control_plane_pins");
    }
}
