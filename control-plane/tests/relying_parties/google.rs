//! Google Workspace. The fake follows:
//! - the service-account token by JWT bearer grant (RFC 7523):
//!   <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>
//!   (an RS256 assertion with `iss`, `sub`, `scope`, `aud`, `iat`, `exp`; 400
//!   `invalid_grant` "Invalid JWT Signature." when the key is not the account's);
//! - users.signOut: <https://developers.google.com/workspace/admin/directory/reference/rest/v1/users/signOut>
//!   (204 with an empty body; 404 for an unknown userKey);
//! - quota errors: <https://developers.google.com/workspace/admin/directory/v1/limits>
//!   (429 `RESOURCE_EXHAUSTED`, retried with backoff).
//!
//! The RSA keys are made at test time with `openssl genrsa` (test keys only).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::Method;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis_control_plane::relying_parties::Delivery;
use serde_json::{json, Value};

use crate::fake::{ok, reply, Fake, Seen};

const ACCOUNT: &str = "portcullis@portcullis-test.iam.gserviceaccount.com";
const ADMIN: &str = "admin@example.com";
const SCOPE: &str = "https://www.googleapis.com/auth/admin.directory.user.security";

/// A throwaway RSA key pair (private PEM, public PEM).
fn rsa_key_pair() -> (String, String) {
    let private = Command::new("openssl").args(["genrsa", "2048"]).stderr(Stdio::null()).output();
    let private = private.expect("openssl makes the test keys");
    assert!(private.status.success(), "openssl genrsa failed");
    let mut public = Command::new("openssl")
        .args(["rsa", "-pubout"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl rsa");
    public.stdin.take().unwrap().write_all(&private.stdout).unwrap();
    let public = public.wait_with_output().unwrap();
    assert!(public.status.success(), "openssl rsa -pubout failed");
    (String::from_utf8(private.stdout).unwrap(), String::from_utf8(public.stdout).unwrap())
}

/// The service account's key pair and a key Google does not know.
fn keys() -> &'static [(String, String); 2] {
    static KEYS: OnceLock<[(String, String); 2]> = OnceLock::new();
    KEYS.get_or_init(|| [rsa_key_pair(), rsa_key_pair()])
}

/// The fake's state: tokens issued and the assertions received, verified.
#[derive(Default)]
struct Google {
    issued: AtomicUsize,
    assertions: Mutex<Vec<(jsonwebtoken::Header, Value)>>,
}

impl Google {
    fn answer(&self, request: &Seen) -> axum::response::Response {
        if request.path == "/token" {
            let public = DecodingKey::from_rsa_pem(keys()[0].1.as_bytes()).unwrap();
            let mut validation = Validation::new(Algorithm::RS256);
            validation.validate_aud = false; // asserted by the test, which knows the URL
            let assertion = request.field("assertion").unwrap_or_default();
            let grant = request.field("grant_type");
            return match jsonwebtoken::decode::<Value>(&assertion, &public, &validation) {
                Ok(jwt) if grant.as_deref() == Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                    self.assertions.lock().unwrap().push((jwt.header, jwt.claims));
                    let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
                    ok(
                        json!({"access_token": format!("ya29.test-token-{n}"), "expires_in": 3599, "token_type": "Bearer"}),
                    )
                }
                _ => reply(
                    400,
                    &[],
                    Some(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})),
                ),
            };
        }
        if request.header("authorization") != Some("Bearer ya29.test-token-1") {
            return reply(401, &[], Some(json!({"error": {"code": 401, "message": "Invalid Credentials"}})));
        }
        let error = |code: u16, message: &str, status: &str| json!({"error": {"code": code, "message": message, "status": status}});
        match (&request.method, request.path.as_str()) {
            (&Method::POST, "/admin/directory/v1/users/bob%40example.com/signOut") => reply(204, &[], None),
            (&Method::POST, "/admin/directory/v1/users/busy%40example.com/signOut") => reply(
                429,
                &[("retry-after", "9")],
                Some(error(429, "Quota exceeded for quota metric 'Queries'", "RESOURCE_EXHAUSTED")),
            ),
            _ => reply(404, &[], Some(error(404, "Resource Not Found: userKey", "NOT_FOUND"))),
        }
    }
}

async fn fake() -> (Fake, Arc<Google>) {
    let google = Arc::new(Google::default());
    let state = google.clone();
    (Fake::start(move |request| state.answer(request)).await, google)
}

/// A service-account key file as the Cloud console downloads it.
fn key_file(private_pem: &str, token_uri: &str) -> String {
    json!({
        "type": "service_account", "project_id": "portcullis-test", "private_key_id": "test-key-1",
        "private_key": private_pem, "client_email": ACCOUNT, "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
    })
    .to_string()
}

fn entry(url: &str, extra: &str) -> String {
    format!("name = \"google\"\nkind = \"google\"\nurl = \"{url}\"\nadmin_email = \"{ADMIN}\"\nsecret_env = \"SA_KEY\"\n{extra}")
}

#[tokio::test]
async fn the_user_is_signed_out_with_a_token_from_a_signed_assertion() {
    let (fake, google) = fake().await;
    let key = key_file(&keys()[0].0, &format!("{}/token", fake.url));
    let rp = crate::build(&entry(&fake.url, ""), &[("SA_KEY", &key)]);
    assert_eq!(crate::deliver(&rp, "bob@example.com").await, Delivery::applied());
    assert_eq!(crate::deliver(&rp, "bob@example.com").await, Delivery::applied());
    assert_eq!(google.issued.load(Ordering::SeqCst), 1, "the token is reused until it expires");

    let seen = fake.seen();
    assert_eq!(seen[0].line(), "POST /token");
    assert_eq!(seen[0].field("grant_type").as_deref(), Some("urn:ietf:params:oauth:grant-type:jwt-bearer"));
    let (header, claims) = google.assertions.lock().unwrap()[0].clone();
    assert_eq!(
        (header.alg, header.kid.as_deref()),
        (Algorithm::RS256, Some("test-key-1")),
        "signature verified by the fake"
    );
    assert_eq!(claims["iss"], ACCOUNT);
    assert_eq!(claims["sub"], ADMIN);
    assert_eq!(claims["scope"], SCOPE);
    assert_eq!(claims["aud"], format!("{}/token", fake.url));
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 3600);
    assert!((iat - chrono::Utc::now().timestamp()).abs() < 60, "iat is now");

    let sign_out = &seen[1];
    assert_eq!(sign_out.line(), "POST /admin/directory/v1/users/bob%40example.com/signOut");
    assert_eq!(sign_out.header("authorization"), Some("Bearer ya29.test-token-1"));
    assert_eq!(sign_out.header("content-length"), Some("0"));
    assert_eq!(seen.len(), 3);
}

#[tokio::test]
async fn token_url_overrides_the_key_files_token_uri() {
    let (fake, google) = fake().await;
    let key = key_file(&keys()[0].0, "https://oauth2.googleapis.invalid/token");
    let rp = crate::build(&entry(&fake.url, &format!("token_url = \"{}/token\"\n", fake.url)), &[("SA_KEY", &key)]);
    assert_eq!(crate::deliver(&rp, "nobody@example.com").await, crate::no_account());
    assert_eq!(google.issued.load(Ordering::SeqCst), 1);
    assert_eq!(fake.seen()[1].line(), "POST /admin/directory/v1/users/nobody%40example.com/signOut");
}

#[tokio::test]
async fn quota_errors_wait_as_asked() {
    let (fake, _) = fake().await;
    let key = key_file(&keys()[0].0, &format!("{}/token", fake.url));
    let rp = crate::build(&entry(&fake.url, ""), &[("SA_KEY", &key)]);
    assert_eq!(crate::retry_after_s(crate::deliver(&rp, "busy@example.com").await), 9);
}

#[tokio::test]
async fn a_key_google_does_not_know_fails_in_googles_words() {
    let (fake, _) = fake().await;
    let key = key_file(&keys()[1].0, &format!("{}/token", fake.url));
    let rp = crate::build(&entry(&fake.url, ""), &[("SA_KEY", &key)]);
    let error = crate::failed(crate::deliver(&rp, "bob@example.com").await);
    assert!(
        error.contains("400") && error.contains("invalid_grant") && error.contains("Invalid JWT Signature."),
        "{error}"
    );
    let key_line = keys()[1].0.lines().nth(1).unwrap();
    assert!(!error.contains(key_line), "{error}");
    assert_eq!(fake.count("/admin/directory/v1/users/bob%40example.com/signOut"), 0);
}

#[test]
fn a_broken_key_file_stops_the_start_without_showing_the_key() {
    let secret_bits = "c2VjcmV0LWJpdHMtdGhhdC1tdXN0LW5vdC1sZWFr";
    let not_rsa = format!("-----BEGIN PRIVATE KEY-----\n{secret_bits}\n-----END PRIVATE KEY-----\n");
    let cases = [
        ("{\"client_email\": \"x\"".to_owned(), "is not JSON"),
        (
            json!({"client_email": ACCOUNT, "token_uri": "https://oauth2.googleapis.com/token"}).to_string(),
            "no `private_key`",
        ),
        (key_file(&not_rsa, "https://oauth2.googleapis.com/token"), "`private_key` is not an RSA private key"),
        (json!({"private_key": keys()[0].0, "client_email": ACCOUNT}).to_string(), "no `token_uri`"),
        (key_file(&keys()[0].0, "http://oauth2.example.com/token"), "plain HTTP"),
    ];
    for (key, expected) in cases {
        let Err(error) = crate::try_build(&entry("https://admin.googleapis.com", ""), &[("SA_KEY", &key)]) else {
            panic!("{expected}: the key was accepted")
        };
        assert!(error.contains("relying party `google`") && error.contains(expected), "{expected}: {error}");
        assert!(!error.contains(secret_bits) && !error.contains("BEGIN"), "{error}");
    }
}
