//! Forged and misused tokens, as the session cookie and as `Authorization:
//! Bearer`: `alg: none`, HS256 keyed with the public key, RS/ES confusion,
//! a foreign key under the real `kid`, expired, not yet valid, wrong
//! `iss`/`aud`/`typ`, ID tokens presented as bearer tokens, truncated and
//! oversized tokens, `pcst_` garbage. Session tokens are signed with the
//! control plane's own key (read from its database) so that each case
//! breaks exactly one check. Every one is refused (401) and the upstream
//! receives nothing.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};

use crate::fake_idp::{now, API_AUDIENCE, CLIENT_ID, KID};
use crate::forge::{b64, parts, sign, with};
use crate::wire::get;
use crate::world::World;
use crate::{run_cases, Case, Expect, Report, LOGIN, OK};

const APP: &str = "app.corp.example";

fn foreign_ec_key() -> EncodingKey {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&secret, p256::pkcs8::LineEnding::LF).expect("PEM");
    EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC key")
}

fn foreign_rsa_key() -> EncodingKey {
    let rsa = openssl::rsa::Rsa::generate(2048).expect("RSA key");
    EncodingKey::from_rsa_pem(&rsa.private_key_to_pem().expect("PEM")).expect("RSA key")
}

/// The SPKI PEM of a P-256 public key given as base64url coordinates.
fn public_pem(x: &str, y: &str) -> String {
    let mut sec1 = vec![4u8];
    sec1.extend(URL_SAFE_NO_PAD.decode(x).expect("x"));
    sec1.extend(URL_SAFE_NO_PAD.decode(y).expect("y"));
    let key = p256::PublicKey::from_sec1_bytes(&sec1).expect("public key");
    p256::pkcs8::EncodePublicKey::to_public_key_pem(&key, p256::pkcs8::LineEnding::LF).expect("PEM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_misused_tokens() {
    let world = World::start("tokens").await;
    let mut report = Report::new("tokens", &world);
    let key = &world.signing_key;
    let real = EncodingKey::from_ec_pem(key.private_pem.as_bytes()).expect("the control plane's key");
    let genuine = world.token("ada", "app").to_owned();
    let (header, payload, signature) = parts(&genuine);
    let pem = public_pem(&key.x, &key.y);
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": key.kid, "x": key.x, "y": key.y}).to_string();
    let t = now();

    let session: Vec<(&str, String, &str)> = vec![
        ("genuine (control)", genuine.clone(), "/hello"),
        ("alg none", format!("{}.{}.", b64(&with(&header, &json!({"alg": "none"}))), b64(&payload)), "/hello"),
        (
            "alg none keeping the signature",
            format!("{}.{}.{signature}", b64(&with(&header, &json!({"alg": "none"}))), b64(&payload)),
            "/hello",
        ),
        (
            "HS256 keyed with the public key PEM",
            sign(&with(&header, &json!({"alg": "HS256"})), &payload, &EncodingKey::from_secret(pem.as_bytes())),
            "/hello",
        ),
        (
            "HS256 keyed with the public JWK",
            sign(&with(&header, &json!({"alg": "HS256"})), &payload, &EncodingKey::from_secret(jwk.as_bytes())),
            "/hello",
        ),
        (
            "RS256 under the real kid",
            sign(&with(&header, &json!({"alg": "RS256"})), &payload, &foreign_rsa_key()),
            "/hello",
        ),
        ("foreign ES256 key under the real kid", sign(&header, &payload, &foreign_ec_key()), "/hello"),
        ("real key, unknown kid", sign(&with(&header, &json!({"kid": "no-such-key"})), &payload, &real), "/hello"),
        ("real key, no kid", sign(&with(&header, &json!({"kid": null})), &payload, &real), "/hello"),
        ("expired", sign(&header, &with(&payload, &json!({"iat": t - 7200, "exp": t - 3600})), &real), "/hello"),
        ("not yet valid", sign(&header, &with(&payload, &json!({"nbf": t + 3600})), &real), "/hello"),
        ("no exp", sign(&header, &with(&payload, &json!({"exp": null})), &real), "/hello"),
        ("wrong iss", sign(&header, &with(&payload, &json!({"iss": "https://evil.example"})), &real), "/hello"),
        ("wrong aud", sign(&header, &with(&payload, &json!({"aud": "another-edge"})), &real), "/hello"),
        ("wrong typ", sign(&with(&header, &json!({"typ": "JWT"})), &payload, &real), "/hello"),
        ("no typ", sign(&with(&header, &json!({"typ": null})), &payload, &real), "/hello"),
        ("route claim of another route", sign(&header, &with(&payload, &json!({"route": "ci"})), &real), "/hello"),
        ("no route claim", sign(&header, &with(&payload, &json!({"route": null})), &real), "/hello"),
        (
            "groups escalated, signature kept",
            format!("{}.{}.{signature}", b64(&header), b64(&with(&payload, &json!({"groups": ["admins"]})))),
            "/admin/users",
        ),
        ("truncated", genuine[..genuine.len() - 10].to_owned(), "/hello"),
        ("two parts", genuine.rsplit_once('.').map(|(a, _)| a.to_owned()).unwrap_or_default(), "/hello"),
        ("empty signature", format!("{}.{}.", b64(&header), b64(&payload)), "/hello"),
        ("10 KiB of garbage", "A".repeat(10 * 1024), "/hello"),
        (
            "10 KiB JWT-shaped garbage",
            format!("{}.{}.{}", "e".repeat(4000), "e".repeat(4000), "e".repeat(2240)),
            "/hello",
        ),
        ("IdP access token in the session cookie", world.idp.access_token(&json!({})), "/hello"),
    ];
    let expect = |control: bool, path: &str| if control { Expect::Target(path.into()) } else { Expect::Nothing };
    let mut cases = Vec::new();
    for (name, token, path) in session {
        let control = name.contains("control");
        let status = if control { OK } else { LOGIN };
        let cookie = format!("portcullis_session.app={token}");
        cases.push(Case::new(
            format!("session token as cookie: {name}"),
            get(path, APP, &[("Cookie", &cookie)]),
            status,
            expect(control, path),
        ));
        if !name.contains("cookie") {
            let bearer = format!("Bearer {token}");
            cases.push(Case::new(
                format!("session token as bearer: {name}"),
                get(path, APP, &[("Authorization", &bearer)]),
                status,
                expect(control, path),
            ));
        }
    }

    // IdP access tokens as Bearer.
    let idp = &world.idp;
    let at = json!({"alg": "ES256", "typ": "at+jwt", "kid": KID});
    let claims = idp.access_claims(&json!({}));
    let idp_key = |c: &Value| idp.sign("at+jwt", c);
    let idp_tokens: Vec<(&str, String)> = vec![
        ("valid (control)", idp.access_token(&json!({}))),
        ("alg none", format!("{}.{}.", b64(&with(&at, &json!({"alg": "none"}))), b64(&claims))),
        (
            "HS256 keyed with the JWKS",
            sign(&with(&at, &json!({"alg": "HS256"})), &claims, &EncodingKey::from_secret(idp.jwks.as_bytes())),
        ),
        (
            "RS256 foreign key under the real kid",
            sign(&with(&at, &json!({"alg": "RS256"})), &claims, &foreign_rsa_key()),
        ),
        ("foreign ES256 key under the real kid", sign(&at, &claims, &foreign_ec_key())),
        ("unknown kid", sign(&with(&at, &json!({"kid": "rotated-away"})), &claims, &foreign_ec_key())),
        ("expired", idp_key(&with(&claims, &json!({"iat": t - 7200, "exp": t - 3600})))),
        ("not yet valid", idp_key(&with(&claims, &json!({"nbf": t + 3600})))),
        ("no exp", idp_key(&with(&claims, &json!({"exp": null})))),
        ("no sub", idp_key(&with(&claims, &json!({"sub": null})))),
        ("wrong iss", idp_key(&with(&claims, &json!({"iss": "https://evil.example"})))),
        ("wrong aud", idp_key(&with(&claims, &json!({"aud": "http://elsewhere.corp.example/"})))),
        ("aud is the login client", idp_key(&with(&claims, &json!({"aud": CLIENT_ID})))),
        ("aud also names the login client", idp_key(&with(&claims, &json!({"aud": [API_AUDIENCE, CLIENT_ID]})))),
        ("wrong typ", idp.sign("foo+jwt", &claims)),
        ("carries nonce", idp_key(&with(&claims, &json!({"nonce": "n-0S6_WzA2Mj"})))),
        ("carries at_hash", idp_key(&with(&claims, &json!({"at_hash": "77QmUPtjPfzWtF2AnpK9RQ"})))),
        ("typ JWT with nonce (an ID token)", idp.sign("JWT", &with(&claims, &json!({"nonce": "abc"})))),
        (
            "an ID token for the login client",
            idp.sign("JWT", &with(&claims, &json!({"aud": CLIENT_ID, "nonce": "abc", "at_hash": "x"}))),
        ),
        ("over 8 KiB", idp_key(&with(&claims, &json!({"padding": "p".repeat(9000)})))),
    ];
    for (name, token) in idp_tokens {
        let bearer = format!("Bearer {token}");
        let (status, upstream) =
            if name.contains("control") { (OK, Expect::Target("/hello".into())) } else { (LOGIN, Expect::Nothing) };
        cases.push(Case::new(
            format!("IdP token: {name}"),
            get("/hello", APP, &[("Authorization", &bearer)]),
            status,
            upstream,
        ));
    }

    // Service-token look-alikes.
    let service = world.service_token.clone();
    for (name, token) in [
        ("pcst_ alone", "pcst_".to_owned()),
        ("pcst_ too short", format!("pcst_{}", "a".repeat(20))),
        ("pcst_ unknown, well formed", format!("pcst_{}", "b".repeat(43))),
        ("pcst_ too long", format!("pcst_{}", "c".repeat(100))),
        ("pcst_ not base64url", format!("pcst_{}", "!".repeat(43))),
        ("real service token truncated", service[..service.len() - 1].to_owned()),
        ("real service token with a suffix", format!("{service}x")),
        ("real service token as the session cookie", String::new()),
    ] {
        let (request, label) = if name.contains("session cookie") {
            (get("/hello", APP, &[("Cookie", &format!("portcullis_session.app={service}"))]), name.to_owned())
        } else {
            (get("/hello", APP, &[("Authorization", &format!("Bearer {token}"))]), name.to_owned())
        };
        cases.push(Case::new(format!("service token: {label}"), request, LOGIN, Expect::Nothing));
    }
    run_cases(&world, &mut report, cases).await;

    // A terminated session's token is refused at once.
    let fresh = crate::world::mint_for(&world, "ada@corp.example", &["staff"], "app").await;
    let sid = parts(&fresh).1["sid"].as_str().unwrap_or_default().to_owned();
    let cookie = format!("portcullis_session.app={fresh}");
    let before =
        crate::wire::exchange(world.edge.port, &get("/hello", APP, &[("Cookie", &cookie)])).await.map(|r| r.status);
    let (status, body) = world
        .plane
        .api_post(&format!("/sessions/{sid}/terminate"), &json!({"reason": "attack suite"}))
        .await
        .expect("terminate");
    let mut after = 0;
    for _ in 0..50 {
        after = crate::wire::exchange(world.edge.port, &get("/hello", APP, &[("Cookie", &cookie)]))
            .await
            .map_or(0, |r| r.status);
        if after == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let outcome = match (before, status, after) {
        (Ok(200), 200, 401) => Ok(()),
        other => Err(format!("before / terminate / after: {other:?} {body}")),
    };
    report.record("terminated session refused", outcome);
    report.finish();
}
