//! What the control plane would hand out, minted here: the snapshot's
//! policy and session-signing key, session tokens signed the way
//! `control-plane/src/authority.rs` (`sign_claims`) signs them, with the
//! claims, `typ` and `kid` `proxy/src/credentials/session_token.rs`
//! verifies, and a throwaway certificate for the edge's HTTPS listener.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use portcullis_edge::clock::unix_now_s;
use portcullis_edge::credentials::{SESSION_TOKEN_AUDIENCE, SESSION_TOKEN_TYPE};
use portcullis_policy::snapshot::{KeyAlgorithm, PublicKey};
use portcullis_policy::wire::SnapshotBody;
use portcullis_policy::{PolicySource, SessionId};

/// The `iss` of session tokens (the edge's `session_issuer`).
pub const ISSUER: &str = "http://control-plane.test";
/// The host of the one route.
pub const HOST: &str = "app.corp.example";

/// A browser session: its id and its token.
#[derive(Clone)]
pub struct Session {
    /// The `sid` claim.
    pub id: SessionId,
    /// The token (the value of the session cookie).
    pub token: String,
    /// Who it belongs to.
    pub email: String,
}

impl Session {
    /// The `Cookie` header the edge reads it from (`cookie_secure = false`).
    pub fn cookie(&self) -> String {
        format!("portcullis_session.app={}", self.token)
    }
}

/// The control plane's session-signing key.
pub struct SessionKeys {
    encoding: EncodingKey,
    /// The public half, as the snapshot publishes it.
    pub public: PublicKey,
}

impl SessionKeys {
    /// A fresh P-256 key under `kid`.
    pub fn new(kid: &str) -> Self {
        let signing = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
        let pem = signing.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 PEM");
        let point = signing.verifying_key().to_encoded_point(false);
        let public = PublicKey {
            kid: kid.into(),
            alg: KeyAlgorithm::ES256,
            x: URL_SAFE_NO_PAD.encode(point.x().expect("x")),
            y: Some(URL_SAFE_NO_PAD.encode(point.y().expect("y"))),
        };
        Self { encoding: EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC key"), public }
    }

    /// A session of `email` (group `staff`) on route `app`, logged in from loopback.
    pub fn mint(&self, email: &str) -> Session {
        self.mint_for(email, "app")
    }

    /// A session of `email` (group `staff`) on `route`, logged in from loopback.
    pub fn mint_for(&self, email: &str, route: &str) -> Session {
        let id = SessionId::from_bytes(rand::random());
        let now = unix_now_s();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.public.kid.clone());
        header.typ = Some(SESSION_TOKEN_TYPE.into());
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": SESSION_TOKEN_AUDIENCE, "sub": format!("sub-{email}"), "email": email,
            "groups": ["staff"], "sid": id.to_string(), "iat": now - 5, "iat_ms": (now - 5) * 1000,
            "exp": now + 600, "auth_time": now - 5, "route": route, "login_ip": "127.0.0.1",
        });
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding).expect("sign a session token");
        Session { id, token, email: email.to_owned() }
    }
}

/// The first snapshot: route `app` on [`HOST`] to `upstream`, then
/// `more_routes` (policy YAML, indented as list items), for staff at
/// corp.example, with `keys` as the session-signing key.
pub fn snapshot(upstream: u16, keys: &SessionKeys, more_routes: &str) -> SnapshotBody {
    let text = format!(
        "version: 1\nroutes:\n  - name: app\n    host: {HOST}\n    upstream: http://127.0.0.1:{upstream}\n    rules:\n      \
         - allow: {{ email_domain: [corp.example], groups_any: [staff] }}\n{more_routes}"
    );
    SnapshotBody {
        seq: 1,
        policy: PolicySource { name: "kill-path".into(), text },
        terminated_sessions: vec![],
        revoked_tokens: vec![],
        users: vec![],
        signing_keys: vec![keys.public.clone()],
    }
}

/// A scratch directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory named after `name`.
    pub fn new(name: &str) -> Self {
        let unique: u64 = rand::random();
        let path = std::env::temp_dir().join(format!("portcullis-edge-{name}-{}-{unique:x}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create a scratch directory");
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for 127.0.0.1 and [`HOST`], written to `dir`:
/// (certificate path, key path).
pub fn certificate(dir: &Path) -> (String, String) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("key");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "127.0.0.1").expect("CN");
    let name = name.build();
    let mut serial = BigNum::new().expect("serial");
    serial.rand(64, MsbOption::MAYBE_ZERO, false).expect("random serial");
    let mut cert = X509::builder().expect("builder");
    cert.set_version(2).expect("v3");
    cert.set_serial_number(&serial.to_asn1_integer().expect("serial")).expect("serial");
    cert.set_subject_name(&name).expect("subject");
    cert.set_issuer_name(&name).expect("issuer");
    cert.set_pubkey(&key).expect("public key");
    cert.set_not_before(&Asn1Time::days_from_now(0).expect("now")).expect("not before");
    cert.set_not_after(&Asn1Time::days_from_now(1).expect("tomorrow")).expect("not after");
    let san = SubjectAlternativeName::new().ip("127.0.0.1").dns(HOST).build(&cert.x509v3_context(None, None));
    cert.append_extension(san.expect("subjectAltName")).expect("extension");
    cert.sign(&key, MessageDigest::sha256()).expect("self-sign");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.build().to_pem().expect("cert PEM")).expect("write the certificate");
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().expect("key PEM")).expect("write the key");
    (cert_path.display().to_string(), key_path.display().to_string())
}
