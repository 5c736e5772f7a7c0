//! The README's configuration reference: one table per component, naming
//! exactly the keys of its `KEYS` list, each with the default its
//! documentation states.

use crate::support::read;

/// The rows (`| \`key\` | default | meaning |`) under `### {heading}` of the
/// `## Configuration reference` section: key → (default, meaning).
fn table(heading: &str) -> Vec<(String, String, String)> {
    let readme = read("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Configuration reference"))
        .expect("README.md has a `## Configuration reference` section");
    let part = section
        .split("\n### ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("the configuration reference has no `### {heading}` table"));
    part.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 3, "a row is | key | default | meaning |: {line}");
            (cells[0].trim_matches('`').to_owned(), cells[1].replace('`', ""), cells[2].to_owned())
        })
        .collect()
}

/// The default a key's documentation states: `(default X)` or `(default: X)`.
fn documented_default(doc: &str) -> Option<&str> {
    let start = doc.find("(default")? + "(default".len();
    let rest = doc[start..].trim_start_matches(':').trim_start();
    rest.split(')').next()
}

fn check(heading: &str, keys: &[(&str, &str)]) {
    let rows = table(heading);
    let named: Vec<&str> = rows.iter().map(|(k, _, _)| k.as_str()).collect();
    for (key, _) in keys {
        assert!(named.contains(key), "README `### {heading}`: `{key}` is missing");
    }
    for (i, key) in named.iter().enumerate() {
        assert!(keys.iter().any(|(k, _)| k == key), "README `### {heading}`: `{key}` is not a key of the code");
        assert!(!named[..i].contains(key), "README `### {heading}`: `{key}` twice");
    }
    for (key, default, meaning) in &rows {
        let doc = keys.iter().find(|(k, _)| k == key).map(|(_, d)| *d).expect("checked above");
        assert!(!default.is_empty() && !meaning.is_empty(), "README `### {heading}`: `{key}` needs both cells");
        if let Some(expected) = documented_default(doc) {
            assert!(
                default.contains(expected),
                "README `### {heading}`: `{key}` defaults to `{expected}`, not {default}"
            );
        }
    }
}

#[test]
fn the_control_plane_table_lists_exactly_its_keys() {
    check("Control plane", portcullis_control_plane::config::KEYS);
}

#[test]
fn the_edge_table_lists_exactly_its_keys() {
    check("Edge", portcullis_edge::config::KEYS);
}

#[test]
fn documented_defaults_are_read_from_the_key_docs() {
    assert_eq!(documented_default("a listener (default 127.0.0.1:7400)"), Some("127.0.0.1:7400"));
    assert_eq!(documented_default("display name (default: the id)"), Some("the id"));
    assert_eq!(documented_default("an optional secret"), None);
}
