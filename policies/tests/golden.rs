//! Golden tests for policy error messages: every `tests/golden/NAME.yaml` is
//! a policy with mistakes, and `tests/golden/NAME.expected` is exactly what
//! `PolicyErrors::render` prints for it (file:line:column, message, source
//! line and caret). With `PORTCULLIS_BLESS=1` the `.expected` files are
//! rewritten from the current output instead (see `scripts/bless-golden.sh`);
//! read the diff before committing it.

use std::fs;
use std::path::{Path, PathBuf};

use portcullis_policy::{Policy, PolicySource};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Every file in the golden directory with the given extension, sorted.
fn files_with_extension(extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(golden_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

/// What `policy check` would print for `path`, named relative to the crate.
fn render(path: &Path) -> Result<String, String> {
    let text = fs::read_to_string(path).unwrap();
    let name = format!("tests/golden/{}", path.file_name().unwrap().to_string_lossy());
    match Policy::compile(PolicySource { name: name.clone(), text: text.clone() }) {
        Ok(_) => Err(format!("{name} compiles, but every golden policy must have errors")),
        Err(errors) => Ok(format!("{}\n", errors.render(&text))),
    }
}

#[test]
fn bad_policies_render_the_expected_errors() {
    let bless = std::env::var("PORTCULLIS_BLESS").is_ok_and(|v| v == "1");
    let policies = files_with_extension("yaml");
    assert!(policies.len() >= 20, "only {} golden policies found in {}", policies.len(), golden_dir().display());
    let mut failures = Vec::new();
    for policy in &policies {
        let expected_path = policy.with_extension("expected");
        let rendered = match render(policy) {
            Ok(rendered) => rendered,
            Err(problem) => {
                failures.push(problem);
                continue;
            }
        };
        if bless {
            fs::write(&expected_path, &rendered).unwrap();
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Ok(expected) if expected == rendered => {}
            Ok(expected) => failures.push(format!(
                "{} differs (rerun with PORTCULLIS_BLESS=1 to accept):\n--- expected\n{expected}--- got\n{rendered}",
                expected_path.display()
            )),
            Err(_) => failures
                .push(format!("{} is missing; run scripts/bless-golden.sh to create it", expected_path.display())),
        }
    }
    assert!(failures.is_empty(), "{} golden files failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn every_expected_file_has_its_policy() {
    for expected in files_with_extension("expected") {
        assert!(
            expected.with_extension("yaml").exists(),
            "{} has no matching .yaml; delete it or restore the policy",
            expected.display()
        );
    }
}
