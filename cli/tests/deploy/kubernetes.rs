//! `deploy/kubernetes/`: the kustomization lists every manifest; each
//! Deployment's configuration (the ConfigMap file it mounts plus its
//! `PORTCULLIS_<KEY>` variables) loads; container ports are its listeners;
//! probes ask `/healthz` and `/readyz` of the listener serving them; Services
//! and PodDisruptionBudgets select a Deployment and target its ports; files
//! the edge reads are mounted from Secrets; edges reach the control planes'
//! edge channel through a Service and expect their issuer.

use std::collections::BTreeMap;

use yaml_rust2::Yaml;

use crate::support::{deploy_files, host_of, load, port_of, text, texts, yaml, Component, Effective};

const DIR: &str = "deploy/kubernetes";

fn objects() -> Vec<(String, Yaml)> {
    let mut objects = Vec::new();
    for file in deploy_files().into_iter().filter(|f| f.starts_with(DIR) && f.ends_with(".yaml")) {
        for document in yaml(&file) {
            let kind = text(&document["kind"]).unwrap_or_else(|| panic!("{file}: a document without kind"));
            if kind != "Kustomization" {
                objects.push((kind, document));
            }
        }
    }
    objects
}

fn named<'a>(objects: &'a [(String, Yaml)], kind: &str) -> Vec<(String, &'a Yaml)> {
    objects
        .iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, o)| (text(&o["metadata"]["name"]).expect("metadata.name"), o))
        .collect()
}

/// A Deployment's one container, the component it runs and its configuration.
struct Workload<'a> {
    labels: &'a Yaml,
    container: &'a Yaml,
    pod: &'a Yaml,
    component: Component,
    effective: Effective,
}

impl Workload<'_> {
    /// A container port by name or number.
    fn port(&self, port: &Yaml) -> Option<u16> {
        if let Some(number) = port.as_i64() {
            return u16::try_from(number).ok();
        }
        let name = text(port)?;
        self.container["ports"].as_vec()?.iter().find(|p| text(&p["name"]).as_deref() == Some(&name))?["containerPort"]
            .as_i64()
            .and_then(|n| u16::try_from(n).ok())
    }

    fn selected_by(&self, selector: &Yaml) -> bool {
        let wanted = selector.as_hash().expect("a selector");
        !wanted.is_empty() && wanted.iter().all(|(k, v)| self.labels[text(k).unwrap().as_str()] == *v)
    }
}

fn workloads(objects: &[(String, Yaml)]) -> BTreeMap<String, Workload<'_>> {
    let maps: BTreeMap<String, &Yaml> = named(objects, "ConfigMap").into_iter().collect();
    let mut workloads = BTreeMap::new();
    for (name, deployment) in named(objects, "Deployment") {
        let pod = &deployment["spec"]["template"]["spec"];
        let containers = pod["containers"].as_vec().expect("containers");
        assert_eq!(containers.len(), 1, "{name}: one container");
        let container = &containers[0];
        let args = texts(&container["args"]);
        let component = Component::of_args(&args);
        let config_path = args.iter().position(|a| a == "--config").map(|i| args[i + 1].clone()).expect("--config");
        let mount = container["volumeMounts"]
            .as_vec()
            .expect("volumeMounts")
            .iter()
            .find(|m| config_path.starts_with(&format!("{}/", text(&m["mountPath"]).unwrap())))
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {config_path}"));
        let volume = volume(pod, &text(&mount["name"]).unwrap());
        let map_name = text(&volume["configMap"]["name"]).expect("--config comes from a ConfigMap");
        let map = maps.get(&map_name).unwrap_or_else(|| panic!("{name}: no ConfigMap {map_name}"));
        let file_name = config_path.rsplit('/').next().unwrap();
        let file_text =
            text(&map["data"][file_name]).unwrap_or_else(|| panic!("ConfigMap {map_name} has no {file_name}"));
        let mut env = BTreeMap::new();
        for variable in container["env"].as_vec().into_iter().flatten() {
            let value = match (&variable["value"], &variable["valueFrom"]) {
                (value, Yaml::BadValue) => text(value).expect("a value"),
                (_, from) if !from["fieldRef"].is_badvalue() => "pod-name-7d9f8c6b5-x2x9z".to_owned(),
                (_, from) if !from["secretKeyRef"].is_badvalue() => String::new(), // a secret
                (_, from) => panic!("{name}: unexpected valueFrom {from:?}"),
            };
            env.insert(text(&variable["name"]).expect("a variable name"), value);
        }
        let what = format!("{DIR} Deployment {name} with ConfigMap {map_name}");
        let effective = load(component, &file_text, &env, &what);
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let workload = Workload { labels, container, pod, component, effective };
        assert!(workload.selected_by(&deployment["spec"]["selector"]["matchLabels"]), "{name}: selector");
        workloads.insert(name, workload);
    }
    workloads
}

fn volume<'a>(pod: &'a Yaml, name: &str) -> &'a Yaml {
    pod["volumes"]
        .as_vec()
        .and_then(|v| v.iter().find(|v| text(&v["name"]).as_deref() == Some(name)))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let kustomization = yaml(&format!("{DIR}/kustomization.yaml")).remove(0);
    let mut listed: Vec<String> = texts(&kustomization["resources"]).iter().map(|r| format!("{DIR}/{r}")).collect();
    listed.sort();
    let mut present: Vec<String> = deploy_files()
        .into_iter()
        .filter(|f| f.starts_with(DIR) && f.ends_with(".yaml") && !f.ends_with("kustomization.yaml"))
        .collect();
    present.sort();
    assert_eq!(listed, present, "{DIR}/kustomization.yaml `resources` vs the manifests in {DIR}");
    for (kind, object) in objects() {
        let namespace = text(&object["metadata"]["namespace"]).or_else(|| text(&object["metadata"]["name"]));
        assert_eq!(namespace.as_deref(), Some("portcullis"), "{kind} {:?}", object["metadata"]["name"]);
    }
}

#[test]
fn containers_listen_where_their_ports_and_probes_say() {
    let objects = objects();
    let workloads = workloads(&objects);
    let components: Vec<Component> = workloads.values().map(|w| w.component).collect();
    assert_eq!(components, [Component::ControlPlane, Component::Edge]);
    for (name, workload) in &workloads {
        let container = workload.container;
        let mut ports: Vec<u16> = container["ports"]
            .as_vec()
            .expect("ports")
            .iter()
            .map(|p| workload.port(&p["containerPort"]).expect("a port"))
            .collect();
        ports.sort_unstable();
        assert_eq!(ports, workload.effective.ports(), "{name}: containerPorts vs the configured listeners");
        for (probe, path) in
            [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")]
        {
            let get = &container[probe]["httpGet"];
            if probe == "startupProbe" && container[probe].is_badvalue() {
                continue;
            }
            assert_eq!(text(&get["path"]).as_deref(), Some(path), "{name}: {probe} path");
            assert_eq!(workload.port(&get["port"]), Some(workload.effective.status_port), "{name}: {probe} port");
        }
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true), "{name}: read-only root");
        assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false), "{name}");
        assert_eq!(workload.pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true), "{name}: non-root");
        for limit in ["requests", "limits"] {
            assert!(!container["resources"][limit]["memory"].is_badvalue(), "{name}: resources.{limit}.memory");
        }
    }
}

#[test]
fn prometheus_scrapes_the_port_serving_metrics() {
    let objects = objects();
    let workloads = workloads(&objects);
    for (name, deployment) in named(&objects, "Deployment") {
        let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
        let port = text(&annotations["prometheus.io/port"]).and_then(|p| p.parse::<u16>().ok());
        assert_eq!(port, Some(workloads[&name].effective.status_port), "{name}: prometheus.io/port");
        assert_eq!(text(&annotations["prometheus.io/path"]).as_deref(), Some("/metrics"), "{name}");
    }
}

#[test]
fn services_and_disruption_budgets_select_a_deployment_and_its_ports() {
    let objects = objects();
    let workloads = workloads(&objects);
    for (name, service) in named(&objects, "Service") {
        let selected: Vec<&Workload> =
            workloads.values().filter(|w| w.selected_by(&service["spec"]["selector"])).collect();
        assert_eq!(selected.len(), 1, "Service {name} selects one Deployment");
        for port in service["spec"]["ports"].as_vec().expect("ports") {
            let target = selected[0].port(&port["targetPort"]);
            assert!(target.is_some_and(|t| selected[0].effective.ports().contains(&t)), "Service {name}: {port:?}");
        }
    }
    for (name, budget) in named(&objects, "PodDisruptionBudget") {
        let selected = workloads.values().filter(|w| w.selected_by(&budget["spec"]["selector"]["matchLabels"]));
        assert_eq!(selected.count(), 1, "PodDisruptionBudget {name} selects one Deployment");
    }
    for (name, deployment) in named(&objects, "Deployment") {
        assert!(deployment["spec"]["replicas"].as_i64().unwrap_or(1) >= 2, "{name}: at least two replicas");
        let budgeted = named(&objects, "PodDisruptionBudget")
            .iter()
            .any(|(_, b)| workloads[&name].selected_by(&b["spec"]["selector"]["matchLabels"]));
        assert!(budgeted, "{name} has no PodDisruptionBudget");
    }
}

#[test]
fn edges_reach_the_edge_channel_through_a_service_and_read_files_from_secrets() {
    let objects = objects();
    let workloads = workloads(&objects);
    let services: BTreeMap<String, &Yaml> = named(&objects, "Service").into_iter().collect();
    let plane = workloads.values().find(|w| w.component == Component::ControlPlane).expect("a control plane");
    let edge = workloads.values().find(|w| w.component == Component::Edge).expect("an edge");
    let url = edge.effective.control_plane_url.clone().expect("control_plane_url");
    let host = host_of(&url);
    assert!(host.ends_with(".portcullis.svc") || !host.contains('.'), "{url}: a Service of this namespace");
    let service_name = host.split('.').next().unwrap();
    let service = services.get(service_name).unwrap_or_else(|| panic!("{url}: no Service {service_name}"));
    assert!(plane.selected_by(&service["spec"]["selector"]), "{url}: Service {service_name} is not the control plane");
    let port = service["spec"]["ports"]
        .as_vec()
        .and_then(|ports| ports.iter().find(|p| p["port"].as_i64().map(|n| n as u16) == port_of(&url)))
        .unwrap_or_else(|| panic!("{url}: Service {service_name} has no such port"));
    assert_eq!(plane.port(&port["targetPort"]), plane.effective.listeners.get("edge_listen").copied(), "{url}");
    assert_eq!(edge.effective.session_issuer, plane.effective.issuer, "the edges' session_issuer");
    assert_eq!(edge.effective.files.len(), 3, "TLS certificate, key and assertion key: {:?}", edge.effective.files);
    for file in &edge.effective.files {
        let mount = edge.container["volumeMounts"]
            .as_vec()
            .expect("volumeMounts")
            .iter()
            .find(|m| file.starts_with(&format!("{}/", text(&m["mountPath"]).unwrap())))
            .unwrap_or_else(|| panic!("the edge reads {file}, which nothing mounts"));
        let volume = volume(edge.pod, &text(&mount["name"]).unwrap());
        assert!(!volume["secret"].is_badvalue(), "{file} comes from a Secret");
    }
}
