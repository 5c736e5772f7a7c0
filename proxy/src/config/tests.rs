//! The edge's configuration: defaults, the environment, and errors that
//! name their key.

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn defaults_overrides_and_errors() {
    let env = |k: &str| (k == "PORTCULLIS_EDGE_SECRET").then(|| SECRET.to_owned());
    let config = EdgeConfig::load("edge_id = \"e7\"", env).unwrap();
    assert_eq!((config.edge_id.as_str(), config.listen.port()), ("e7", 8080));
    assert_eq!(EdgeConfig::load("", |_| None).unwrap_err().key, "join_token");
    assert_eq!(EdgeConfig::load("join_token = \"pcjt_x\"", |_| None).unwrap_err().key, "credential_file");
    assert_eq!(EdgeConfig::load("edge_secret = \"short\"", |_| None).unwrap_err().key, "edge_secret");
    let bad = EdgeConfig::load("credential_file = \"/etc/hostname\"", |_| None).unwrap_err();
    assert_eq!(bad.key, "credential_file", "an unreadable or wrong key file is named");
    assert_eq!(EdgeConfig::load("stale_mode = \"maybe\"", env).unwrap_err().key, "stale_mode");
    assert_eq!(EdgeConfig::load("https_listen = \"127.0.0.1:8443\"", env).unwrap_err().key, "https_listen");
    assert_eq!(EdgeConfig::load("colour = 1", env).unwrap_err().key, "colour");
    assert_eq!(config.device_logins_per_hour, DEFAULT_DEVICE_LOGINS_PER_HOUR);
    let none = EdgeConfig::load("device_logins_per_hour = 0", env).unwrap_err();
    assert_eq!(none.key, "device_logins_per_hour");
    let threads = EdgeConfig::load("", |k| env(k).or_else(|| (k == "PORTCULLIS_THREADS").then(|| "4".into())));
    assert_eq!(threads.unwrap().threads, 4, "numbers from the environment");
}

#[test]
fn control_plane_replicas_and_staleness() {
    let env = |k: &str| match k {
        "PORTCULLIS_EDGE_SECRET" => Some(SECRET.to_owned()),
        "PORTCULLIS_ALLOW_PLAIN_HTTP" => Some("true".to_owned()),
        "PORTCULLIS_STREAM_PUBLIC_KEY" => {
            Some(portcullis_policy::stream_key::StreamSigningKey::from_seed([7; 32]).public_key().to_string())
        }
        _ => None,
    };
    let config = EdgeConfig::load("", env).unwrap();
    assert_eq!(config.control_plane_urls, ["http://127.0.0.1:7401"]);
    assert_eq!(config.max_staleness, Duration::from_secs(DEFAULT_MAX_STALENESS_S));
    let two = "control_plane_urls = [\"http://a:7401\", \"https://b:7401\"]";
    assert_eq!(EdgeConfig::load(two, env).unwrap().control_plane_urls, ["http://a:7401", "https://b:7401"]);
    let from_env = EdgeConfig::load("", |k| {
        env(k).or_else(|| (k == "PORTCULLIS_CONTROL_PLANE_URLS").then(|| "http://a:1, http://b:2".into()))
    });
    assert_eq!(from_env.unwrap().control_plane_urls, ["http://a:1", "http://b:2"]);
    for (bad, key, says) in [
        ("control_plane_url = \"http://a\"\ncontrol_plane_urls = [\"http://b\"]", "control_plane_urls", "not both"),
        ("control_plane_urls = []", "control_plane_urls", "no URL"),
        ("control_plane_urls = [\"http://a\", \"a:7401\"]", "control_plane_urls", "`a:7401`"),
        ("control_plane_urls = [\"http://a\", \"http://a\"]", "control_plane_urls", "twice"),
        ("control_plane_url = \"ftp://a\"", "control_plane_url", "http://"),
        ("max_staleness_s = 0", "max_staleness_s", "at least 1"),
    ] {
        let error = EdgeConfig::load(bad, env).unwrap_err();
        assert_eq!(error.key, key, "{bad}");
        assert!(error.to_string().contains(says), "{bad}: {error}");
    }
}

#[test]
fn plain_http_to_a_control_plane_elsewhere_is_refused_unless_allowed() {
    let env = |k: &str| (k == "PORTCULLIS_EDGE_SECRET").then(|| SECRET.to_owned());
    for fine in ["http://127.0.0.1:7401", "http://localhost:7401", "http://[::1]:7401", "https://cp.example:7401"] {
        let config = EdgeConfig::load(&format!("control_plane_url = \"{fine}\""), env);
        assert!(config.is_ok(), "{fine}: {config:?}");
    }
    let refused = EdgeConfig::load("control_plane_urls = [\"https://a:1\", \"http://10.0.0.7:7401\"]", env);
    let refused = refused.unwrap_err();
    assert_eq!(refused.key, "control_plane_urls");
    assert!(refused.message.contains("allow_plain_http") && refused.message.contains("10.0.0.7"), "{refused}");
    let unpinned = "control_plane_url = \"http://cp.internal:7401\"\nallow_plain_http = true";
    let refused = EdgeConfig::load(unpinned, env).unwrap_err();
    assert_eq!(refused.key, "stream_public_key", "no trust on first use over plain HTTP: {refused}");
    let key = portcullis_policy::stream_key::StreamSigningKey::from_seed([7; 32]).public_key();
    let allowed = format!("{unpinned}\nstream_public_key = \"{key}\"");
    assert!(EdgeConfig::load(&allowed, env).is_ok(), "{:?}", EdgeConfig::load(&allowed, env));
    let pins_on_http = "control_plane_pins = [\"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]";
    assert_eq!(EdgeConfig::load(pins_on_http, env).unwrap_err().key, "control_plane_pins", "pins need https://");
}

#[test]
fn oidc_settings_and_their_errors() {
    let env = |k: &str| (k == "PORTCULLIS_EDGE_SECRET").then(|| SECRET.to_owned());
    let config = EdgeConfig::load("oidc_issuer = \"https://idp.example/\"\noidc_client_id = \"edge\"", env).unwrap();
    let oidc = config.oidc.expect("configured");
    assert_eq!(
        (oidc.issuer.as_str(), oidc.bearer_audiences.as_slice()),
        ("https://idp.example", &["edge".to_owned()][..])
    );
    assert!(!oidc.bearer_audiences_explicit, "the client id is only a default audience");
    assert!(config.cookie_secure, "Secure cookies unless explicitly turned off");
    let explicit = "oidc_issuer = \"https://i\"\noidc_client_id = \"e\"\nbearer_audiences = [\"e\"]";
    assert!(EdgeConfig::load(explicit, env).unwrap().oidc.unwrap().bearer_audiences_explicit);
    assert_eq!(EdgeConfig::load("oidc_issuer = \"https://idp.example\"", env).unwrap_err().key, "oidc_client_id");
    let hs = "oidc_issuer = \"https://i\"\noidc_client_id = \"e\"\nbearer_algorithms = [\"HS256\"]";
    assert_eq!(EdgeConfig::load(hs, env).unwrap_err().key, "bearer_algorithms", "no symmetric algorithms");
    let none = "oidc_issuer = \"https://i\"\noidc_client_id = \"e\"\nbearer_algorithms = [\"none\"]";
    assert_eq!(EdgeConfig::load(none, env).unwrap_err().key, "bearer_algorithms");
    assert_eq!(EdgeConfig::load("trusted_proxies = [\"10.0.0.0/99\"]", env).unwrap_err().key, "trusted_proxies");
    assert_eq!(EdgeConfig::load("assertion_key_file = \"/nonexistent\"", env).unwrap_err().key, "assertion_key_file");
}

#[test]
fn the_stream_key_is_pinned_inline_or_from_a_file() {
    let env = |k: &str| (k == "PORTCULLIS_EDGE_SECRET").then(|| SECRET.to_owned());
    let key = portcullis_policy::stream_key::StreamSigningKey::from_seed([5; 32]).public_key();
    assert_eq!(EdgeConfig::load("", env).unwrap().stream_public_key, None, "pinned on first contact");
    let inline = format!("stream_public_key = \"{key}\"");
    assert_eq!(EdgeConfig::load(&inline, env).unwrap().stream_public_key, Some(key));
    let path = std::env::temp_dir().join(format!("portcullis-stream-key-{}.pem", std::process::id()));
    std::fs::write(&path, key.to_pem()).unwrap();
    let from_file = EdgeConfig::load("", |k| {
        env(k).or_else(|| (k == "PORTCULLIS_STREAM_PUBLIC_KEY").then(|| path.display().to_string()))
    });
    let _ = std::fs::remove_file(&path);
    assert_eq!(from_file.unwrap().stream_public_key, Some(key));
    for bad in ["ed25519:AAAA", "/nonexistent/stream.pem", "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----"] {
        let error = EdgeConfig::load(&format!("stream_public_key = {bad:?}"), env).unwrap_err();
        assert_eq!(error.key, "stream_public_key", "{bad}: {error}");
    }
}
