//! `deploy/grafana/portcullis.json` against the metric registries: every
//! metric a query names is in what the edge's and the control plane's
//! `/metrics` render (with the `portcullis_edge_` / `portcullis_control_plane_`
//! prefixes), with the labels it filters and groups by, and every metric
//! family the code exports is on the dashboard.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::read;

const DASHBOARD: &str = "deploy/grafana/portcullis.json";

/// Labels Prometheus adds to every scraped sample.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// What the registries render: sample name → label names, and the family names.
fn exported() -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let edge = portcullis_edge::metrics::EdgeMetrics::new();
    // Labelled metrics render nothing until a label value is used.
    edge.requests.with_label_values(&["demo", "allow"]).inc();
    edge.kills.with_label_values(&["session_terminated"]).inc();
    edge.decision_seconds.observe(1e-5);
    edge.tunnel_flows.with_label_values(&["ssh", "allowed"]).inc();
    edge.tunnel_flows_closed.with_label_values(&["ssh"]).inc();
    edge.tunnel_bytes.with_label_values(&["ssh", "up"]).inc();
    let plane = portcullis_control_plane::metrics::Metrics::new();
    plane.requests.with_label_values(&["/healthz", "200"]).inc();
    plane.changes.with_label_values(&["session.terminate"]).inc();
    let text = format!("{}\n{}", edge.render(), plane.render());
    let mut samples: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut families = BTreeSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().expect("a family name").to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let end = line.find(['{', ' ']).expect("a sample line");
        let labels = samples.entry(line[..end].to_owned()).or_default();
        if let Some(inside) = line[end..].strip_prefix('{').and_then(|r| r.split('}').next()) {
            labels.extend(inside.split(',').filter_map(|m| m.split('=').next()).map(str::to_owned));
        }
    }
    (samples, families)
}

/// Every PromQL expression of the dashboard (panel targets and variable queries).
fn expressions() -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("expr" | "definition" | "query", Value::String(s)) => out.push(s.clone()),
                        _ => walk(value, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).expect("valid JSON");
    let mut out = Vec::new();
    walk(&dashboard, &mut out);
    out.retain(|e| e.contains("portcullis_"));
    out
}

/// `expr` without string contents and range selectors: `a{b="x"}[5m]` → `a{b=""}`.
fn skeleton(expr: &str) -> String {
    let (mut out, mut in_string, mut in_range) = (String::new(), false, false);
    for c in expr.chars() {
        match c {
            '"' => {
                in_string = !in_string;
                out.push(c);
            }
            _ if in_string => {}
            '[' => in_range = true,
            ']' => in_range = false,
            _ if in_range => {}
            _ => out.push(c),
        }
    }
    out
}

/// Identifiers of an expression's skeleton, each with the text after it
/// (to read its `{…}` or a `by (…)`).
fn identifiers(skeleton: &str) -> Vec<(&str, &str)> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut rest = skeleton;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let end = rest[start..].find(|c: char| !word(c)).map_or(rest.len(), |e| start + e);
        if !rest[..start].ends_with(|c: char| c.is_ascii_digit() || c == '.') {
            out.push((&rest[start..end], rest[end..].trim_start()));
        }
        rest = &rest[end..];
    }
    out
}

/// The label names inside a leading `{…}` or `(…)`.
fn label_list(after: &str, open: char, close: char) -> Vec<String> {
    let Some(inside) = after.strip_prefix(open).and_then(|r| r.split(close).next()) else { return Vec::new() };
    inside
        .split(',')
        .map(|m| m.split(['=', '!', '~']).next().unwrap_or_default().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_queried_metric_and_label_is_exported() {
    let (samples, _) = exported();
    let all_labels: BTreeSet<&str> = samples.values().flatten().map(String::as_str).chain(TARGET_LABELS).collect();
    let expressions = expressions();
    assert!(expressions.len() >= 10, "the dashboard has queries: {expressions:?}");
    for expr in &expressions {
        let skeleton = skeleton(expr);
        let words = identifiers(&skeleton);
        for (word, after) in &words {
            if word.starts_with("portcullis_") {
                let labels = samples.get(*word).unwrap_or_else(|| {
                    panic!("{DASHBOARD}: `{word}` is not exported; the registries render {:?}", samples.keys())
                });
                for label in label_list(after, '{', '}') {
                    let known = labels.contains(&label) || TARGET_LABELS.contains(&label.as_str());
                    assert!(known, "{DASHBOARD}: {word} has no label `{label}` (in `{expr}`)");
                }
            }
            if matches!(*word, "by" | "without") {
                for label in label_list(after, '(', ')') {
                    assert!(all_labels.contains(label.as_str()), "{DASHBOARD}: no metric has label `{label}` ({expr})");
                }
            }
        }
    }
}

#[test]
fn every_exported_metric_family_is_on_the_dashboard() {
    let (_, families) = exported();
    assert!(families.len() >= 13, "both registries rendered: {families:?}");
    let used: BTreeSet<String> = expressions()
        .iter()
        .flat_map(|e| identifiers(&skeleton(e)).into_iter().map(|(w, _)| w.to_owned()).collect::<Vec<_>>())
        .collect();
    for family in &families {
        let shown = ["", "_bucket", "_sum", "_count"].iter().any(|suffix| used.contains(&format!("{family}{suffix}")));
        assert!(shown, "{DASHBOARD} does not show {family}");
    }
}
