//! Every YAML, TOML and JSON file under `deploy/` parses; every TOML file
//! and env example names only real keys; the systemd units run the example
//! configurations, which load, and whose edge finds its control plane.

use std::collections::BTreeMap;

use yaml_rust2::YamlLoader;

use crate::support::{deploy_files, env_file, load, port_of, read, Component};

#[test]
fn every_yaml_toml_and_json_file_under_deploy_parses() {
    let mut parsed = Vec::new();
    for file in deploy_files() {
        let text = read(&file);
        match file.rsplit('.').next() {
            Some("yaml" | "yml") => {
                let documents = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
                assert!(!documents.is_empty(), "{file} holds no YAML document");
            }
            Some("toml") => {
                toml::from_str::<toml::Table>(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            }
            Some("json") => {
                serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            }
            _ => continue,
        }
        parsed.push(file);
    }
    for expected in ["deploy/compose.yaml", "deploy/grafana/portcullis.json", "deploy/config/edge.toml"] {
        assert!(parsed.iter().any(|f| f == expected), "{expected} was not found among {parsed:?}");
    }
}

#[test]
fn every_toml_file_names_only_keys_of_its_component() {
    let files: Vec<String> = deploy_files().into_iter().filter(|f| f.ends_with(".toml")).collect();
    assert!(files.len() >= 4, "expected the systemd and container configurations, found {files:?}");
    for file in files {
        Component::of_file(&file).assert_toml_keys(&read(&file), &file);
    }
}

#[test]
fn every_env_example_names_only_variables_the_code_reads() {
    let files: Vec<String> = deploy_files().into_iter().filter(|f| f.ends_with("env.example")).collect();
    assert!(files.len() >= 3, "expected env examples for systemd and compose, found {files:?}");
    for file in files {
        let variables = env_file(&file, true);
        assert!(!variables.is_empty(), "{file} sets no variable");
        for name in variables.keys().filter(|n| n.starts_with("PORTCULLIS_")) {
            if file == "deploy/env.example" {
                // compose's .env feeds both control planes and edges.
                let known =
                    [Component::ControlPlane, Component::Edge].iter().any(|c| c.variables().iter().any(|v| v == name));
                assert!(known, "{file}: no component reads {name}");
            } else {
                Component::of_file(&file).assert_variable(name, &file);
            }
        }
    }
}

/// `Key=Value` lines of a systemd unit (later lines win, as for ExecStart).
fn unit(relative: &str) -> BTreeMap<String, String> {
    read(relative)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn systemd_units_run_the_example_configurations_which_load() {
    let mut loaded = BTreeMap::new();
    for name in ["portcullis-control-plane", "portcullis-edge"] {
        let file = format!("deploy/systemd/{name}.service");
        let unit = unit(&file);
        let component = Component::of_file(&file);
        let exec: Vec<String> = unit["ExecStart"].split_whitespace().map(str::to_owned).collect();
        assert_eq!(exec[0], "/usr/local/bin/portcullis", "{file}: ExecStart");
        assert_eq!(Component::of_args(&exec[1..]), component, "{file}: ExecStart runs another component");
        let config = exec.iter().position(|a| a == "--config").map(|i| exec[i + 1].clone()).expect("--config");
        let config_name = config.strip_prefix("/etc/portcullis/").expect("config under /etc/portcullis");
        let env_name = unit["EnvironmentFile"].strip_prefix("/etc/portcullis/").expect("env under /etc/portcullis");
        for (key, value) in [("User", "portcullis"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict")] {
            assert_eq!(unit.get(key).map(String::as_str), Some(value), "{file}: {key}");
        }
        assert_eq!(unit.get("Restart").map(String::as_str), Some("on-failure"), "{file}");
        assert_eq!(unit.get("RestartPreventExitStatus").map(String::as_str), Some("64"), "{file}: config errors");
        let env = env_file(&format!("deploy/systemd/{env_name}.example"), false);
        let what = format!("{file} with deploy/config/{config_name}");
        loaded.insert(name, load(component, &read(&format!("deploy/config/{config_name}")), &env, &what));
    }
    let (plane, edge) = (&loaded["portcullis-control-plane"], &loaded["portcullis-edge"]);
    assert_eq!(edge.session_issuer, plane.issuer, "the edge's session_issuer is the control plane's issuer");
    let channel = edge.control_plane_url.as_deref().and_then(port_of);
    assert_eq!(channel, plane.listeners.get("edge_listen").copied(), "the edge's control_plane_url port");
    assert!(edge.listeners.contains_key("https_listen"), "production edges listen on HTTPS");
    assert_eq!(edge.files.len(), 4, "TLS certificate, key, the shared assertion key, the CA: {:?}", edge.files);
    assert_eq!(plane.files.len(), 2, "production control planes serve HTTPS: {:?}", plane.files);
    assert!(edge.control_plane_urls.iter().all(|u| u.starts_with("https://")), "{:?}", edge.control_plane_urls);
}
