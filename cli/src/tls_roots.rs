//! The CA options of the `portcullis` client commands (`--ca-file` of the
//! admin commands and of `connect`): a PEM file whose certificates are the
//! **only** roots trusted for that connection, as curl's `--cacert`;
//! without one, the system's roots. And the one line that explains a
//! certificate that does not verify, naming the option to use.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The certificates of a CA file, ready for both TLS clients the CLI uses.
pub struct CaFile {
    path: PathBuf,
    /// One PEM block per certificate.
    blocks: Vec<String>,
}

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

impl CaFile {
    /// Reads `path`, given as `option` (named in errors).
    pub fn read(path: &Path, option: &str) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {option} {}", path.display()))?;
        let mut blocks = Vec::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find(BEGIN) {
            let Some(length) = rest[start..].find(END) else { break };
            let end = start + length + END.len();
            blocks.push(format!("{}\n", &rest[start..end]));
            rest = &rest[end..];
        }
        if blocks.is_empty() {
            bail!("{option} {} holds no PEM certificate", path.display());
        }
        for block in &blocks {
            native_tls::Certificate::from_pem(block.as_bytes())
                .with_context(|| format!("{option} {} holds a certificate that cannot be read", path.display()))?;
        }
        Ok(Self { path: path.to_owned(), blocks })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `builder` trusting these certificates only.
    pub fn trust_in(&self, builder: reqwest::ClientBuilder) -> anyhow::Result<reqwest::ClientBuilder> {
        let mut builder = builder.tls_built_in_root_certs(false);
        for block in &self.blocks {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(block.as_bytes())?);
        }
        Ok(builder)
    }

    /// `builder` (a raw TLS connector) trusting these certificates only.
    pub fn trust_in_native(&self, builder: &mut native_tls::TlsConnectorBuilder) -> anyhow::Result<()> {
        builder.disable_built_in_roots(true);
        for block in &self.blocks {
            builder.add_root_certificate(native_tls::Certificate::from_pem(block.as_bytes())?);
        }
        Ok(())
    }
}

/// When `error` (or one of its causes) is a server certificate that did
/// not verify: the explanation, e.g. `unable to get local issuer certificate`.
pub fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        if text.contains("certificate verify failed") || text.contains("invalid peer certificate") {
            // OpenSSL ends with the verification result in parentheses.
            let reason = text
                .rsplit_once(" (")
                .and_then(|(_, r)| r.strip_suffix(')'))
                .filter(|r| !r.is_empty())
                .map_or(text.clone(), str::to_owned);
            return Some(reason);
        }
        current = error.source();
    }
    None
}

/// The message for a `server` (e.g. "the control plane at https://…")
/// whose certificate did not verify: what it was checked against and which
/// option (and environment variable) gives the CA.
pub fn untrusted(server: &str, problem: &str, ca: Option<&CaFile>, option: &str, variable: &str) -> String {
    let against = match ca {
        Some(ca) => format!("the CA in {option} {}", ca.path().display()),
        None => "the system's trusted CAs".to_owned(),
    };
    format!(
        "{server} presented a TLS certificate that does not verify against {against} ({problem}); pass the CA \
         certificate that signed it with {option} (or {variable})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_the_part_openssl_puts_in_parentheses() {
        #[derive(Debug)]
        struct Failure(&'static str);
        impl std::fmt::Display for Failure {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Failure {}
        let openssl =
            Failure("error:0A000086:SSL routines::certificate verify failed:x.c:1: (self-signed certificate)");
        assert_eq!(certificate_problem(&openssl).as_deref(), Some("self-signed certificate"));
        let rustls = Failure("invalid peer certificate: UnknownIssuer");
        assert_eq!(certificate_problem(&rustls).as_deref(), Some("invalid peer certificate: UnknownIssuer"));
        assert_eq!(certificate_problem(&Failure("Connection refused (os error 111)")), None);
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let path = std::env::temp_dir().join(format!("portcullis-ca-test-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = CaFile::read(&path, "--ca-file").err().expect("refused").to_string();
        let _ = std::fs::remove_file(&path);
        assert!(error.contains("--ca-file") && error.contains("no PEM certificate"), "{error}");
        let missing = CaFile::read(Path::new("/nonexistent/ca.pem"), "--ca-file").err().expect("refused");
        assert!(missing.to_string().starts_with("cannot read --ca-file"), "{missing}");
    }
}
