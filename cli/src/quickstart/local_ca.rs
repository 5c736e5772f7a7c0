//! The quickstart's own certificate authority, so the control plane serves
//! HTTPS with no manual step. On the first start a CA (P-256, ten years)
//! and a server certificate it signs for `localhost`, `127.0.0.1` and `::1`
//! are made under `<data>/tls` (the directory 0700, the private keys 0600);
//! later starts reuse them. The server certificate is made again when it is
//! missing, unreadable, no longer signed by the CA or within 30 days of its
//! end; the CA only when it is itself missing or unusable (then the edge and
//! every `--ca-file` need the new `ca.pem`).

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use anyhow::Context;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509Name, X509};

/// Lifetime of the CA, days.
const CA_DAYS: u32 = 3650;
/// Lifetime of a server certificate, days (what browsers accept at most).
const SERVER_DAYS: u32 = 397;
/// A server certificate this close to its end is made again, days.
const RENEW_DAYS: u32 = 30;

/// The files the control plane and its clients use.
#[derive(Debug, Clone)]
pub struct LocalCa {
    /// The CA certificate: the edge's `control_plane_ca`, the CLI's `--ca-file`.
    pub ca_cert: PathBuf,
    /// The control plane's certificate (`tls_cert`).
    pub server_cert: PathBuf,
    /// Its private key (`tls_key`).
    pub server_key: PathBuf,
}

type Pair = (X509, PKey<Private>);

/// Makes or reuses the CA and the server certificate under `<data>/tls`.
pub fn ensure(data: &Path) -> anyhow::Result<LocalCa> {
    let dir = data.join("tls");
    private_dir(&dir)?;
    let files = LocalCa {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
    };
    let ca_key_path = dir.join("ca-key.pem");
    let (ca, ca_key, ca_is_new) = match read_pair(&files.ca_cert, &ca_key_path).filter(|(c, _)| lasts(c, 1)) {
        Some((ca, key)) => (ca, key, false),
        None => {
            let (ca, key) = make_ca().context("cannot make the quickstart CA")?;
            write(&ca_key_path, &key.private_key_to_pem_pkcs8()?, 0o600)?;
            write(&files.ca_cert, &ca.to_pem()?, 0o644)?;
            (ca, key, true)
        }
    };
    let current = read_pair(&files.server_cert, &files.server_key)
        .filter(|(server, _)| !ca_is_new && server.verify(&ca_key).unwrap_or(false) && lasts(server, RENEW_DAYS));
    if current.is_none() {
        let (server, key) = make_server(&ca, &ca_key).context("cannot make the quickstart server certificate")?;
        write(&files.server_key, &key.private_key_to_pem_pkcs8()?, 0o600)?;
        write(&files.server_cert, &server.to_pem()?, 0o644)?;
    }
    Ok(files)
}

/// A certificate and its key, when both read and belong together.
fn read_pair(cert: &Path, key: &Path) -> Option<Pair> {
    let cert = X509::from_pem(&std::fs::read(cert).ok()?).ok()?;
    let key = PKey::private_key_from_pem(&std::fs::read(key).ok()?).ok()?;
    cert.public_key().ok()?.public_eq(&key).then_some((cert, key))
}

/// True when `cert` is still valid `days` from now.
fn lasts(cert: &X509, days: u32) -> bool {
    Asn1Time::days_from_now(days)
        .is_ok_and(|then| cert.not_after().compare(&then).is_ok_and(|o| o == Ordering::Greater))
}

fn new_key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn serial() -> Result<Asn1Integer, openssl::error::ErrorStack> {
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    serial.to_asn1_integer()
}

fn name(common_name: &str) -> Result<X509Name, openssl::error::ErrorStack> {
    let mut name = X509Name::builder()?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(name.build())
}

fn make_ca() -> Result<Pair, openssl::error::ErrorStack> {
    let key = new_key()?;
    let subject = name("Portcullis quickstart CA (development only)")?;
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    let serial = serial()?;
    cert.set_serial_number(&serial)?;
    cert.set_subject_name(&subject)?;
    cert.set_issuer_name(&subject)?;
    cert.set_pubkey(&key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(CA_DAYS)?);
    cert.set_not_before(&from)?;
    cert.set_not_after(&until)?;
    cert.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
    cert.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
    let key_id = SubjectKeyIdentifier::new().build(&cert.x509v3_context(None, None))?;
    cert.append_extension(key_id)?;
    cert.sign(&key, MessageDigest::sha256())?;
    Ok((cert.build(), key))
}

fn make_server(ca: &X509, ca_key: &PKey<Private>) -> Result<Pair, openssl::error::ErrorStack> {
    let key = new_key()?;
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    let serial = serial()?;
    cert.set_serial_number(&serial)?;
    let subject = name("localhost")?;
    cert.set_subject_name(&subject)?;
    cert.set_issuer_name(ca.subject_name())?;
    cert.set_pubkey(&key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(SERVER_DAYS)?);
    cert.set_not_before(&from)?;
    cert.set_not_after(&until)?;
    cert.append_extension(BasicConstraints::new().critical().build()?)?;
    cert.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
    cert.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let names = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .ip("::1")
        .build(&cert.x509v3_context(Some(ca), None))?;
    cert.append_extension(names)?;
    let authority = AuthorityKeyIdentifier::new().keyid(true).build(&cert.x509v3_context(Some(ca), None))?;
    cert.append_extension(authority)?;
    cert.sign(ca_key, MessageDigest::sha256())?;
    Ok((cert.build(), key))
}

#[cfg(unix)]
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))
}

#[cfg(not(unix))]
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// Writes `bytes` to a new `path` (an old one is replaced) with `mode`.
#[cfg(unix)]
fn write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(not(unix))]
fn write(path: &Path, bytes: &[u8], _mode: u32) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_reused_after_and_kept_private() {
        let data = std::env::temp_dir().join(format!("portcullis-local-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).unwrap();
        let first = ensure(&data).expect("made");
        let read = |path: &Path| std::fs::read(path).unwrap();
        let (ca, server) = (read(&first.ca_cert), read(&first.server_cert));
        let again = ensure(&data).expect("reused");
        assert_eq!((read(&again.ca_cert), read(&again.server_cert)), (ca.clone(), server.clone()), "reused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&data.join("tls")), 0o700);
            assert_eq!((mode(&first.server_key), mode(&data.join("tls/ca-key.pem"))), (0o600, 0o600));
        }
        let (ca, server) = (X509::from_pem(&ca).unwrap(), X509::from_pem(&server).unwrap());
        assert!(server.verify(&ca.public_key().unwrap()).unwrap(), "signed by the CA");
        let names = server.subject_alt_names().expect("SAN");
        let ips: Vec<&[u8]> = names.iter().filter_map(|n| n.ipaddress()).collect();
        assert!(ips.contains(&&[127u8, 0, 0, 1][..]), "covers 127.0.0.1");
        assert!(names.iter().any(|n| n.dnsname() == Some("localhost")), "covers localhost");
        // A lost server key: a new server certificate from the same CA.
        std::fs::remove_file(&first.server_key).unwrap();
        let renewed = ensure(&data).expect("renewed");
        assert_eq!(X509::from_pem(&read(&renewed.ca_cert)).unwrap().to_der().unwrap(), ca.to_der().unwrap());
        assert_ne!(X509::from_pem(&read(&renewed.server_cert)).unwrap().to_der().unwrap(), server.to_der().unwrap());
        let _ = std::fs::remove_dir_all(&data);
    }
}
