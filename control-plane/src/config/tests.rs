//! The control plane's configuration: defaults, the environment, and errors that
//! name their key.

use std::collections::HashMap;

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Config::load(file, |k| env.get(k).cloned())
}

#[test]
fn defaults_and_environment_overrides() {
    let config = load("", &[("PORTCULLIS_EDGE_SECRET", SECRET), ("PORTCULLIS_RECEIPT_WAIT_MS", "250")]).unwrap();
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
    assert_eq!(config.receipt_wait_ms, 250);
    assert_eq!(config.issuer, "http://127.0.0.1:7400");
    let config = load(&format!("edge_secret = \"{SECRET}\"\nlisten = \"127.0.0.1:9\""), &[]).unwrap();
    assert_eq!(config.listen.port(), 9);
}

#[test]
fn keys_are_sealed_with_a_kek_from_the_config_or_beside_the_sqlite_file() {
    let with = |extra: &str| load(&format!("edge_secret = \"{SECRET}\"\n{extra}"), &[]);
    assert_eq!(with("").unwrap().key_encryption, KekSource::BesideDatabase("data/key-encryption.key".into()));
    assert_eq!(with("").unwrap().admin_token_file, std::path::PathBuf::from("data/admin-token"));
    assert_eq!(with("database_url = \"sqlite::memory:\"").unwrap().key_encryption, KekSource::Ephemeral);
    let postgres = with("database_url = \"postgres://u@127.0.0.1/test\"").unwrap_err();
    assert_eq!(postgres.key, "key_encryption_key_file", "{postgres}");
    let kek = "k".repeat(32);
    let given = load(
        &format!("edge_secret = \"{SECRET}\"\ndatabase_url = \"postgres://u@127.0.0.1/test\""),
        &[("PORTCULLIS_KEY_ENCRYPTION_KEY", &kek)],
    )
    .unwrap();
    assert_eq!(given.key_encryption, KekSource::Value(kek));
    assert_eq!(with("key_encryption_key = \"short\"").unwrap_err().key, "key_encryption_key");
    assert_eq!(with("key_encryption_key_file = \"/etc/k\"").unwrap().key_encryption, KekSource::File("/etc/k".into()));
}

#[test]
fn errors_name_the_key() {
    assert!(load("", &[]).unwrap().edge_secret.is_none(), "edges enroll with join tokens");
    assert_eq!(load("edge_secret = \"short\"", &[]).unwrap_err().key, "edge_secret");
    assert_eq!(load(&format!("edge_secret = \"{SECRET}\"\nlisten = \"nowhere\""), &[]).unwrap_err().key, "listen");
    let unknown = load(&format!("edge_secret = \"{SECRET}\"\nlisen = \"x\""), &[]).unwrap_err();
    assert_eq!(unknown.key, "lisen", "{unknown}");
    assert!(unknown.message.contains("expected one of listen, edge_listen"), "{unknown}");
    let wrong_type = load(&format!("edge_secret = \"{SECRET}\"\nreceipt_wait_ms = \"soon\""), &[]).unwrap_err();
    assert_eq!(wrong_type.key, "receipt_wait_ms", "{wrong_type}");
    let from_env = load(&format!("edge_secret = \"{SECRET}\""), &[("PORTCULLIS_MAX_BODY_BYTES", "-1")]).unwrap_err();
    assert_eq!(from_env.key, "max_body_bytes", "{from_env}");
}

#[test]
fn portal_keys() {
    let config = load("", &[("PORTCULLIS_EDGE_SECRET", SECRET)]).unwrap();
    assert_eq!(config.public_url, "http://127.0.0.1:7400", "defaults to the issuer");
    assert!(config.portal.oidc.is_none() && config.portal.cookie_secure);
    assert_eq!((config.portal.admin_group.as_str(), config.portal.session_lifetime_s), ("admins", 28_800));
    let env = [
        ("PORTCULLIS_EDGE_SECRET", SECRET),
        ("PORTCULLIS_PUBLIC_URL", "https://cp.corp.example/"),
        ("PORTCULLIS_OIDC_ISSUER", "https://idp.corp.example"),
        ("PORTCULLIS_OIDC_CLIENT_ID", "portal"),
        ("PORTCULLIS_OIDC_SCOPES", "openid,email,groups"),
        ("PORTCULLIS_PORTAL_COOKIE_SECURE", "false"),
    ];
    let config = load("", &env).unwrap();
    assert_eq!(config.public_url, "https://cp.corp.example");
    let oidc = config.portal.oidc.expect("OIDC configured");
    assert_eq!((oidc.client_id.as_str(), oidc.scopes), ("portal", vec!["email".to_owned(), "groups".to_owned()]));
    assert!(!config.portal.cookie_secure);
    let without_issuer = load("", &[("PORTCULLIS_EDGE_SECRET", SECRET), ("PORTCULLIS_OIDC_CLIENT_ID", "portal")]);
    assert_eq!(without_issuer.unwrap_err().key, "oidc_issuer");
    let without_client = load("", &[("PORTCULLIS_EDGE_SECRET", SECRET), ("PORTCULLIS_OIDC_ISSUER", "https://i")]);
    assert_eq!(without_client.unwrap_err().key, "oidc_client_id");
    let bad_url = load("", &[("PORTCULLIS_EDGE_SECRET", SECRET), ("PORTCULLIS_PUBLIC_URL", "cp.corp.example")]);
    assert_eq!(bad_url.unwrap_err().key, "public_url");
    let lifetime = load("", &[("PORTCULLIS_EDGE_SECRET", SECRET), ("PORTCULLIS_PORTAL_SESSION_LIFETIME_S", "5")]);
    assert_eq!(lifetime.unwrap_err().key, "portal_session_lifetime_s");
}

#[test]
fn tls_and_the_plain_http_rule() {
    let env = |extra: &[(&'static str, &'static str)]| {
        let mut env = vec![("PORTCULLIS_EDGE_SECRET", SECRET)];
        env.extend_from_slice(extra);
        env
    };
    let plain = load("", &env(&[])).unwrap();
    assert!(plain.tls.is_none(), "loopback plain HTTP is fine");
    let tls = load("tls_cert = \"c.pem\"\ntls_key = \"k.pem\"", &env(&[])).unwrap();
    assert_eq!(tls.tls, Some(TlsFiles { cert: "c.pem".into(), key: "k.pem".into() }));
    assert_eq!(tls.issuer, "https://127.0.0.1:7400", "the default issuer follows the scheme");
    assert_eq!(load("tls_cert = \"c.pem\"", &env(&[])).unwrap_err().key, "tls_key");
    assert_eq!(load("tls_key = \"k.pem\"", &env(&[])).unwrap_err().key, "tls_cert");
    for (key, address) in [("listen", "0.0.0.0:7400"), ("edge_listen", "10.0.0.7:7401"), ("listen", "[::]:7400")] {
        let refused =
            load("", &env(&[(if key == "listen" { "PORTCULLIS_LISTEN" } else { "PORTCULLIS_EDGE_LISTEN" }, address)]));
        let refused = refused.unwrap_err();
        assert_eq!(refused.key, key, "{refused}");
        assert!(refused.message.contains("allow_plain_http") && refused.message.contains("tls_cert"), "{refused}");
    }
    let allowed = load("listen = \"0.0.0.0:7400\"\nallow_plain_http = true", &env(&[])).unwrap();
    assert_eq!(allowed.issuer, "http://0.0.0.0:7400");
    let served = load("listen = \"0.0.0.0:7400\"\ntls_cert = \"c\"\ntls_key = \"k\"", &env(&[])).unwrap();
    assert!(served.tls.is_some());
    let explicit_no = load("listen = \"0.0.0.0:7400\"\nallow_plain_http = false", &env(&[]));
    assert_eq!(explicit_no.unwrap_err().key, "listen");
}

#[test]
fn login_idps_from_the_file_and_the_environment() {
    let config = load("", &[("PORTCULLIS_EDGE_SECRET", SECRET)]).unwrap();
    assert!(config.login.idps.is_empty(), "none unless configured: every login is refused");
    assert_eq!(config.login.clock_skew_s, DEFAULT_LOGIN_CLOCK_SKEW_S);
    let file = format!(
        "edge_secret = \"{SECRET}\"\n[[login_idps]]\nissuer = \"https://idp.corp.example/\"\n\
         audiences = [\"edge\", \"edge-2\"]\ntrust_unverified_email = true\n\
         [[login_idps]]\nissuer = \"https://other.example\"\naudiences = [\"e\"]\ngroups_claim = \"roles\"\n"
    );
    let idps = load(&file, &[]).unwrap().login.idps;
    assert_eq!(idps.len(), 2);
    assert_eq!(idps[0].issuer, "https://idp.corp.example/", "kept exactly as written");
    assert_eq!(
        (idps[0].audiences.len(), idps[0].groups_claim.as_str(), idps[0].trust_unverified_email),
        (2, "groups", true)
    );
    assert_eq!((idps[1].groups_claim.as_str(), idps[1].trust_unverified_email), ("roles", false));
    let env = [
        ("PORTCULLIS_EDGE_SECRET", SECRET),
        ("PORTCULLIS_LOGIN_IDPS", r#"[{ issuer = "http://127.0.0.1:9", audiences = ["edge"] }]"#),
        ("PORTCULLIS_LOGIN_CLOCK_SKEW_S", "5"),
    ];
    let config = load("", &env).unwrap();
    assert_eq!((config.login.idps[0].issuer.as_str(), config.login.clock_skew_s), ("http://127.0.0.1:9", 5));
    let foreign_plain = r#"[{ issuer = "http://idp.corp.example", audiences = ["e"] }]"#;
    let refused = load("", &[("PORTCULLIS_EDGE_SECRET", SECRET), ("PORTCULLIS_LOGIN_IDPS", foreign_plain)]);
    assert!(refused.unwrap_err().message.contains("allow_plain_http"), "keys fetched over plain HTTP");
    let allowed = [
        ("PORTCULLIS_EDGE_SECRET", SECRET),
        ("PORTCULLIS_LOGIN_IDPS", foreign_plain),
        ("PORTCULLIS_ALLOW_PLAIN_HTTP", "true"),
        ("PORTCULLIS_LISTEN", "127.0.0.1:7400"),
    ];
    assert_eq!(load("", &allowed).unwrap().login.idps.len(), 1, "explicitly allowed");
    for local in ["http://localhost:9", "http://[::1]:9/realms/x", "http://u@127.0.0.2"] {
        assert!(portcullis_settings::is_loopback_url(local), "{local}");
    }
    assert!(!portcullis_settings::is_loopback_url("http://127.0.0.1.evil.example"));
    assert!(!portcullis_settings::is_loopback_url("http://localhost.evil.example"));
    for (bad, says) in [
        (r#"[{ issuer = "idp.example", audiences = ["e"] }]"#, "http://"),
        (r#"[{ issuer = "https://i", audiences = [] }]"#, "no client id"),
        (r#"[{ issuer = "https://i", audiences = ["e"], groups_claim = " " }]"#, "empty"),
        (r#"[{ issuer = "https://i", audiences = ["e"] }, { issuer = "https://i", audiences = ["f"] }]"#, "twice"),
        (r#"[{ issuer = "https://i", audience = ["e"] }]"#, "audience"),
        ("https://idp.example", ""),
    ] {
        let error = load("", &[("PORTCULLIS_EDGE_SECRET", SECRET), ("PORTCULLIS_LOGIN_IDPS", bad)]).unwrap_err();
        assert_eq!(error.key, "login_idps", "{bad}: {error}");
        assert!(error.message.contains(says), "{bad}: {error}");
    }
    let skew = load("", &[("PORTCULLIS_EDGE_SECRET", SECRET), ("PORTCULLIS_LOGIN_CLOCK_SKEW_S", "301")]);
    assert_eq!(skew.unwrap_err().key, "login_clock_skew_s");
}

#[test]
fn every_raw_key_is_documented() {
    let documented: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    let text = format!("{:?}", RawConfig::default());
    for key in &documented {
        assert!(text.contains(&format!("{key}:")), "{key} is documented but not a field");
    }
    assert_eq!(text.matches(": None").count(), documented.len(), "a field is not documented in KEYS");
}
