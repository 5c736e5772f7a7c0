//! `deploy/compose.yaml`: each Portcullis service's configuration (its
//! image's file plus the service's `PORTCULLIS_<KEY>` variables) loads; its
//! published ports and healthcheck use the ports it listens on; edges stream
//! from a control plane's edge channel and expect its issuer; the secrets it
//! interpolates are documented in `deploy/env.example`; the demo policy
//! compiles and routes to the demo app's port.

use std::collections::BTreeMap;

use yaml_rust2::Yaml;

use crate::containers;
use crate::support::{env_file, host_of, load, placeholder, port_of, read, text, texts, yaml, Component, Effective};

const COMPOSE: &str = "deploy/compose.yaml";

/// A Portcullis service of the compose file.
struct Service {
    component: Component,
    effective: Effective,
    spec: Yaml,
}

/// Replaces every `${NAME…}` with a placeholder; returns the names too.
fn interpolate(value: &str) -> (String, Vec<String>) {
    let (mut out, mut names, mut rest) = (String::new(), Vec::new(), value);
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').map(|e| start + e).expect("a closed ${…}");
        let name = rest[start + 2..end].split([':', '-', '?']).next().unwrap_or_default();
        names.push(name.to_owned());
        out.push_str(&rest[..start]);
        out.push_str(&placeholder(name));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    (out, names)
}

/// Every `${NAME}` the compose file interpolates.
fn interpolated_names() -> Vec<String> {
    interpolate(&read(COMPOSE)).1
}

fn services() -> BTreeMap<String, Service> {
    let document = yaml(COMPOSE).remove(0);
    let mut services = BTreeMap::new();
    for (name, spec) in document["services"].as_hash().expect("services") {
        let name = text(name).expect("a service name");
        let Some(target) = text(&spec["build"]["target"]) else {
            assert!(text(&spec["image"]).is_some_and(|i| i.starts_with("postgres:")), "{name}: build a target");
            continue;
        };
        let image = containers::image(&target);
        let args = if spec["command"].is_badvalue() { image.cmd.clone() } else { texts(&spec["command"]) };
        let component = Component::of_args(&args);
        let mut env = image.env.clone();
        for entry in spec["env_file"].as_vec().into_iter().flatten() {
            let path = text(&entry["path"]).or_else(|| text(entry)).expect("an env_file path");
            let example = format!("deploy/{}.example", path.trim_start_matches("./"));
            env.extend(env_file(&example, false));
        }
        for (key, value) in spec["environment"].as_hash().into_iter().flatten() {
            let (key, value) = (text(key).expect("a variable name"), text(value).unwrap_or_default());
            env.insert(key, interpolate(&value).0);
        }
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            env.insert("PORTCULLIS_DEMO_LISTEN".into(), args[i + 1].clone());
        }
        let what = format!("{COMPOSE} service {name}");
        let effective = load(component, &image.config_text(&args), &env, &what);
        services.insert(name, Service { component, effective, spec: spec.clone() });
    }
    services
}

fn of(services: &BTreeMap<String, Service>, component: Component) -> Vec<(&String, &Service)> {
    services.iter().filter(|(_, s)| s.component == component).collect()
}

#[test]
fn two_control_planes_two_edges_and_the_demo_app_load_their_configuration() {
    let services = services();
    assert_eq!(of(&services, Component::ControlPlane).len(), 2, "two control planes");
    assert_eq!(of(&services, Component::Edge).len(), 2, "two edges");
    assert_eq!(of(&services, Component::DemoApp).len(), 1, "the demo app");
    let documented = env_file("deploy/env.example", false);
    for name in interpolated_names() {
        assert!(documented.contains_key(&name), "{COMPOSE} uses ${{{name}}}, which deploy/env.example does not list");
    }
}

#[test]
fn published_ports_and_healthchecks_use_the_listeners() {
    for (name, service) in services() {
        for mapping in texts(&service.spec["ports"]) {
            let inside: u16 = mapping.rsplit(':').next().and_then(|p| p.parse().ok()).expect("HOST:CONTAINER");
            let ports = service.effective.ports();
            assert!(ports.contains(&inside), "{name}: publishes {mapping}, but listens on {ports:?}");
        }
        if service.component == Component::Admin {
            continue;
        }
        let check = texts(&service.spec["healthcheck"]["test"]).join(" ");
        let port = check.split("/dev/tcp/127.0.0.1/").nth(1).and_then(|r| r.split(' ').next()).map(str::parse);
        let path = check.split("GET ").nth(1).and_then(|r| r.split(' ').next()).expect("a healthcheck GET");
        assert_eq!(port, Some(Ok(service.effective.status_port)), "{name}: healthcheck port in `{check}`");
        let expected = if service.component == Component::DemoApp { "/" } else { "/readyz" };
        assert_eq!(path, expected, "{name}: healthcheck path");
    }
}

#[test]
fn edges_stream_from_a_control_plane_and_expect_its_issuer() {
    let services = services();
    let planes = of(&services, Component::ControlPlane);
    let issuers: Vec<&Option<String>> = planes.iter().map(|(_, s)| &s.effective.issuer).collect();
    assert!(issuers.windows(2).all(|w| w[0] == w[1]), "every control plane has the same issuer: {issuers:?}");
    let mut streamed_from = Vec::new();
    for (name, edge) in of(&services, Component::Edge) {
        let url = edge.effective.control_plane_url.as_deref().expect("control_plane_url");
        let plane = services.get(&host_of(url)).unwrap_or_else(|| panic!("{name}: {url} names no service"));
        assert_eq!(plane.component, Component::ControlPlane, "{name}: {url} is not a control plane");
        assert_eq!(port_of(url), plane.effective.listeners.get("edge_listen").copied(), "{name}: edge channel port");
        assert_eq!(edge.effective.session_issuer, plane.effective.issuer, "{name}: session_issuer");
        streamed_from.push(host_of(url));
        let mut listed: Vec<String> = edge.effective.control_plane_urls.iter().map(|u| host_of(u)).collect();
        let mut all: Vec<String> = planes.iter().map(|(plane, _)| plane.to_string()).collect();
        listed.sort();
        all.sort();
        assert_eq!(listed, all, "{name} lists every control-plane replica, to move on when one fails");
        for file in &edge.effective.files {
            let secret = file.strip_prefix("/run/secrets/").expect("files the edge reads are compose secrets");
            assert!(texts(&edge.spec["secrets"]).iter().any(|s| s == secret), "{name}: secret {secret} not mounted");
        }
    }
    streamed_from.dedup();
    assert_eq!(streamed_from.len(), 2, "each edge streams from its own control plane");
}

#[test]
fn the_demo_policy_compiles_and_routes_to_the_demo_app() {
    let services = services();
    let (policy_service, policy) =
        services.iter().find(|(_, s)| s.component == Component::Admin).expect("a service applying the demo policy");
    let args = texts(&policy.spec["command"]);
    assert_eq!(&args[..2], ["policy", "apply"], "{policy_service}");
    let url = policy.spec["environment"]["PORTCULLIS_URL"].as_str().expect("PORTCULLIS_URL");
    let plane = &services[&host_of(url)];
    assert_eq!(port_of(url), Some(plane.effective.status_port), "{policy_service}: the admin API's port");
    let mounts = texts(&policy.spec["volumes"]);
    let mount = mounts.iter().find(|m| m.split(':').nth(1) == Some(args[2].as_str())).expect("the policy mounted");
    let source = format!("deploy/{}", mount.split(':').next().unwrap_or_default().trim_start_matches("./"));
    let text = read(&source);
    let compiled = portcullis_policy::Policy::compile(portcullis_policy::PolicySource { name: source.clone(), text })
        .unwrap_or_else(|e| panic!("{source} does not compile: {e:?}"));
    for route in compiled.routes() {
        if let portcullis_policy::RouteTarget::Http { upstream, .. } = route.target() {
            let target =
                services.get(&*upstream.host).unwrap_or_else(|| panic!("{source}: no service {}", upstream.host));
            assert_eq!(target.effective.listeners.get("listen"), Some(&upstream.port), "{source}: {}", upstream.url);
        }
    }
}

#[test]
fn secret_files_the_user_makes_are_ignored_by_git() {
    let document = yaml(COMPOSE).remove(0);
    let ignored = read("deploy/.gitignore");
    for (name, secret) in document["secrets"].as_hash().expect("secrets") {
        let file = text(&secret["file"]).expect("a secret file");
        let line = format!("/{}", file.trim_start_matches("./"));
        assert!(ignored.lines().any(|l| l == line), "deploy/.gitignore should list {line} (secret {name:?})");
    }
}
