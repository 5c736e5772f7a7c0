//! Keeps `deploy/` and the README honest against the code:
//!
//! - every YAML, TOML and JSON file under `deploy/` parses;
//! - every TOML key and `PORTCULLIS_<KEY>` variable is a key of the component
//!   it configures, and every configuration (systemd example, container
//!   image, compose service, Kubernetes ConfigMap + env) loads through that
//!   component's own loader;
//! - container ports, `EXPOSE`, compose ports, Services, probes and
//!   healthchecks use the ports those configurations listen on, and probes
//!   ask `/healthz` and `/readyz` of the listener that serves them;
//! - edges point at a control plane's edge channel and expect its issuer;
//! - every metric the Grafana dashboard queries is one the code exports;
//! - the README's configuration reference lists exactly the keys of both
//!   components, with the defaults their documentation states.
//!
//! Renaming a key, a port, a metric or a Service without updating `deploy/`
//! (or the README) fails here.

mod compose;
mod configs;
mod containers;
mod dashboard;
mod kubernetes;
mod readme;
mod support;
