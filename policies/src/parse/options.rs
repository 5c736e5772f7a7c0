//! Decodes a route's `options`: session limits, the reaction to address
//! changes, and how the edge treats the request's path and headers. Every
//! option has a default, so a route without `options` gets
//! [`RouteOptions::default`].

use super::fields::{boolean, list, text, unsigned, Fields};
use super::yaml::{Node, NodeKind};
use crate::duration::parse_seconds;
use crate::error::{Diagnostics, Location};
use crate::policy::{IpChangeAction, RouteOptions, SessionLimitAction, StaleMode, PASSABLE_CLIENT_HEADERS};

const OPTION_KEYS: &[&str] = &[
    "session_lifetime",
    "max_sessions_per_user",
    "on_session_limit",
    "on_ip_change",
    "reevaluate_live_connections",
    "case_insensitive_paths",
    "allow_path_parameters",
    "forward_bearer",
    "pass_client_headers",
    "stale_mode",
    "device_login",
    "reauth_after",
];

/// Decodes the mapping under `options:`.
pub(crate) fn options(node: &Node, d: &mut Diagnostics) -> Option<RouteOptions> {
    let fields = Fields::new(node, "route `options`", OPTION_KEYS, d)?;
    let mut options = RouteOptions::default();
    let before = d.error_count();
    for (key, value) in fields.entries() {
        match key {
            "session_lifetime" => {
                if let Some(t) = text(value, "a duration such as `8h`", d) {
                    match parse_seconds(t) {
                        Ok(secs) => options.session_lifetime = secs,
                        Err(e) => d.error(value.at, e),
                    }
                }
            }
            // Longer than `session_lifetime` is accepted: the limit is on the
            // IdP login (`auth_time`), which an IdP's own single sign-on
            // session can make older than the Portcullis session built on it.
            "reauth_after" => {
                if let Some(t) = text(value, "`reauth_after` as a duration such as `15m`", d) {
                    match parse_seconds(t) {
                        Ok(secs) => options.reauth_after = Some(secs),
                        Err(e) => d.error(value.at, format!("`reauth_after`: {e}")),
                    }
                }
            }
            "max_sessions_per_user" => match unsigned(value, "`max_sessions_per_user`", d) {
                Some(0) => d.error(value.at, "`max_sessions_per_user` must be at least 1"),
                limit => options.max_sessions_per_user = limit,
            },
            "on_session_limit" => match text(value, "`refuse` or `end_oldest`", d) {
                Some("refuse") => options.on_session_limit = SessionLimitAction::Refuse,
                Some("end_oldest") => options.on_session_limit = SessionLimitAction::EndOldest,
                Some(other) => d.error(value.at, format!("expected `refuse` or `end_oldest`, found `{other}`")),
                None => {}
            },
            "on_ip_change" => match text(value, "`allow`, `warn` or `deny`", d) {
                Some("allow") => options.on_ip_change = IpChangeAction::Allow,
                Some("warn") => options.on_ip_change = IpChangeAction::Warn,
                Some("deny") => options.on_ip_change = IpChangeAction::Deny,
                Some(other) => d.error(value.at, format!("expected `allow`, `warn` or `deny`, found `{other}`")),
                None => {}
            },
            "reevaluate_live_connections" => {
                if let Some(b) = boolean(value, "`reevaluate_live_connections`", d) {
                    options.reevaluate_live_connections = b;
                }
            }
            "case_insensitive_paths" => {
                if let Some(b) = boolean(value, "`case_insensitive_paths`", d) {
                    options.case_insensitive_paths = b;
                }
            }
            "allow_path_parameters" => {
                if let Some(b) = boolean(value, "`allow_path_parameters`", d) {
                    options.allow_path_parameters = b;
                }
            }
            "forward_bearer" => {
                if let Some(b) = boolean(value, "`forward_bearer`", d) {
                    options.forward_bearer = b;
                }
            }
            "device_login" => {
                if let Some(b) = boolean(value, "`device_login`", d) {
                    options.device_login = b;
                }
            }
            "stale_mode" => match text(value, "`keep` or `deny`", d) {
                Some("keep") => options.stale_mode = Some(StaleMode::Keep),
                Some("deny") => options.stale_mode = Some(StaleMode::Deny),
                Some(other) => d.error(value.at, format!("expected `keep` or `deny`, found `{other}`")),
                None => {}
            },
            "pass_client_headers" if matches!(&value.kind, NodeKind::Seq(items) if items.is_empty()) => {}
            "pass_client_headers" => {
                if let Some(mut names) = list(value, "`pass_client_headers`", d, passable_header) {
                    names.sort_unstable();
                    names.dedup();
                    options.pass_client_headers = names.into();
                }
            }
            _ => unreachable!("Fields only yields allowed keys"),
        }
    }
    (d.error_count() == before).then_some(options)
}

/// One entry of `pass_client_headers`, lowercased.
fn passable_header(name: &str, at: Location, d: &mut Diagnostics) -> Option<Box<str>> {
    let lower = name.to_ascii_lowercase();
    if PASSABLE_CLIENT_HEADERS.contains(&lower.as_str()) {
        return Some(lower.into());
    }
    d.error(
        at,
        format!(
            "`pass_client_headers` cannot pass `{name}`; it takes only: {} \
             (other client headers either reach the upstream already or are never passed)",
            PASSABLE_CLIENT_HEADERS.join(", ")
        ),
    );
    None
}

#[cfg(test)]
mod tests {
    use crate::policy::{Policy, PolicySource, RouteOptions};

    fn compile(options: &str, path: &str, rule: &str) -> Result<Policy, String> {
        let text = format!(
            "version: 1\ncondition_sets:\n  upper: {{paths: [/Reports/**]}}\n  lower: {{paths: [/reports/**]}}\n\
             routes:\n  - name: app\n    host: app.example\n{path}    upstream: http://127.0.0.1:9\n\
             \x20   options: {options}\n    rules:\n      - {rule}\n"
        );
        Policy::compile(PolicySource { name: "p.yaml".into(), text }).map_err(|e| e.to_string())
    }

    fn options(options: &str) -> Result<RouteOptions, String> {
        compile(options, "", "allow: {}").map(|p| p.routes()[0].options().clone())
    }

    #[test]
    fn new_options_default_off() {
        let defaults = options("{}").unwrap();
        assert!(!defaults.case_insensitive_paths && !defaults.allow_path_parameters && !defaults.forward_bearer);
        assert!(!defaults.device_login, "the device flow is off unless a route enables it");
        assert!(defaults.pass_client_headers.is_empty());
        assert_eq!(defaults, RouteOptions::default());
    }

    #[test]
    fn new_options_are_read() {
        let set = options(
            "{case_insensitive_paths: true, allow_path_parameters: true, forward_bearer: true, \
             pass_client_headers: [X-Real-IP, forwarded, X-HTTP-Method-Override, x-real-ip]}",
        )
        .unwrap();
        assert!(set.case_insensitive_paths && set.allow_path_parameters && set.forward_bearer);
        assert_eq!(
            &*set.pass_client_headers,
            [Box::from("forwarded"), "x-http-method-override".into(), "x-real-ip".into()]
        );
        assert!(set.passes_client_header("X-Real-Ip") && !set.passes_client_header("x-original-url"));
        assert!(options("{device_login: true}").unwrap().device_login);
        assert!(options("{device_login: sometimes}").unwrap_err().contains("true or false"));
    }

    #[test]
    fn stale_mode_is_read_and_checked() {
        use crate::policy::StaleMode;
        assert_eq!(options("{}").unwrap().stale_mode, None, "the edge's own default");
        assert_eq!(options("{stale_mode: deny}").unwrap().stale_mode, Some(StaleMode::Deny));
        assert_eq!(options("{stale_mode: keep}").unwrap().stale_mode, Some(StaleMode::Keep));
        let error = options("{stale_mode: strict}").unwrap_err();
        assert!(error.starts_with("p.yaml:9:27:") && error.contains("expected `keep` or `deny`"), "{error}");
    }

    #[test]
    fn reauth_after_is_read_in_the_duration_syntax() {
        assert_eq!(options("{}").unwrap().reauth_after, None, "no limit unless a route sets one");
        assert_eq!(options("{reauth_after: 15m}").unwrap().reauth_after, Some(900));
        assert_eq!(options("{reauth_after: 1h30m}").unwrap().reauth_after, Some(5_400));
        // Longer than the session lifetime is accepted: it limits the IdP
        // login, which an IdP's single sign-on session can make older than
        // the Portcullis session.
        let longer = options("{session_lifetime: 1h, reauth_after: 2d}").unwrap();
        assert_eq!((longer.session_lifetime, longer.reauth_after), (3_600, Some(172_800)));
    }

    #[test]
    fn reauth_after_refuses_bad_values_where_they_are_written() {
        let cases = [
            (
                "{reauth_after: soon}",
                "p.yaml:9:29: error: `reauth_after`: expected a duration such as `30m`, `8h` or `1h30m`, found `soon`",
            ),
            (
                "{reauth_after: 0m}",
                "p.yaml:9:29: error: `reauth_after`: a duration must be longer than zero, found `0m`",
            ),
            ("{reauth_after: 15}", "p.yaml:9:29: error: `reauth_after`: `15` needs a unit: s, m, h or d"),
            (
                "{reauth_after: [15m]}",
                "p.yaml:9:29: error: expected `reauth_after` as a duration such as `15m`, found a list",
            ),
            (
                "{session_lifetime: 8h, reauth_after: -1h}",
                "p.yaml:9:51: error: `reauth_after`: expected a duration such as `30m`, `8h` or `1h30m`, found `-1h`",
            ),
        ];
        for (written, expected) in cases {
            assert_eq!(options(written).unwrap_err(), expected, "{written}");
        }
    }

    #[test]
    fn pass_client_headers_takes_only_the_stripped_headers() {
        for bad in ["[x-portcullis-user]", "[authorization]", "[cookie]", "[x-forwarded-for]", "[X-Real-IP, host]"] {
            let error = options(&format!("{{pass_client_headers: {bad}}}")).unwrap_err();
            assert!(error.contains("pass_client_headers"), "{bad}: {error}");
        }
        let error = options("{pass_client_headers: [x-portcullis-user]}").unwrap_err();
        assert!(error.contains("p.yaml:9:37") && error.contains("forwarded, x-real-ip, true-client-ip"), "{error}");
        assert!(options("{pass_client_headers: yes-please}").is_err());
        assert!(options("{pass_client_headers: []}").unwrap().pass_client_headers.is_empty());
        assert!(options("{forward_bearer: yes}").unwrap_err().contains("true or false"));
        assert!(options("{case_insensitive_path: true}").unwrap_err().contains("unknown key `case_insensitive_path`"));
    }

    #[test]
    fn case_insensitive_routes_need_lower_case_paths() {
        let on = "{case_insensitive_paths: true}";
        assert!(compile(on, "    path: /legacy\n", "deny: {paths: [/admin/**, /a-%C3%A9/*]}").is_ok());
        assert!(compile(on, "", "deny: {use: [lower]}").is_ok());
        assert!(compile("{}", "    path: /Legacy\n", "deny: {paths: [/Admin/**], use: [upper]}").is_ok());
        let error = compile(on, "    path: /Legacy\n", "allow: {}").unwrap_err();
        assert!(error.starts_with("p.yaml:8:11:") && error.contains("write `/legacy`"), "{error}");
        let error = compile(on, "", "deny: {paths: [/ok, /Admin/**]}").unwrap_err();
        assert!(error.starts_with("p.yaml:11:29:") && error.contains("`/Admin/**`"), "{error}");
        let error = compile(on, "", "deny: {use: [upper]}").unwrap_err();
        assert!(error.contains("condition set `upper`") && error.contains("`/Reports/**`"), "{error}");
    }
}
