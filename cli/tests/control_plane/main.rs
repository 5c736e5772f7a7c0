//! Process-level tests of `portcullis control-plane`: the real binary on
//! free ports over SQLite (a temp dir) and PostgreSQL (a fresh database per
//! test), killed with SIGKILL and restarted, run as two replicas, started with
//! bad configurations, and driven by the `portcullis` admin commands; plus a
//! real OpenID provider (`idp`) and a scripted browser for the OIDC login tests;
//! TCP flows through the edge (`tunnel*`) and real OpenSSH through
//! `portcullis connect` (`ssh`, `sshd`);
//! the admin portal and the quickstart's demo app in a real headless
//! Chromium (`portal*`, `webdriver`); and the admin API against its OpenAPI
//! document with schemathesis (`api_schema`); what a denied end user is
//! shown and what the reference finds in the audit log (`denial_page`).

mod admin_commands;
mod api_schema;
mod authority;
mod browser;
mod config_errors;
mod connect_login;
mod connect_relogin;
mod denial_page;
mod durability;
mod edge;
mod edge_credentials;
mod edge_enrollment;
mod edge_identity;
mod edge_login;
mod edge_node;
mod edge_proxy;
mod harness;
mod idp;
mod idp_smoke;
mod live_counts;
mod metrics_auth;
mod policy_limits;
mod portal;
mod portal_demo;
mod portal_edges;
mod portal_policy;
mod portal_sessions;
mod postgres;
mod quickstart;
mod reauth;
mod relogin;
mod relying_parties;
mod replicas;
mod siem;
mod siem_sinks;
mod signals;
mod signals_responses;
mod signing_keys;
mod ssf;
mod ssh;
mod sshd;
mod tls;
mod trail;
mod tunnel;
mod tunnel_kit;
mod upstream;
mod webdriver;
