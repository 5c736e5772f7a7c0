//! `deploy/containers/Containerfile`: the build stage matches the pinned
//! toolchain, every role's stage runs `portcullis` as a numeric non-root
//! user, and exposes exactly the ports its baked-in configuration listens on.

use std::collections::BTreeMap;

use crate::support::{load, read, Component, Effective};

const CONTAINERFILE: &str = "deploy/containers/Containerfile";

/// One `FROM … AS name` stage: its base and its instructions.
#[derive(Debug, Default)]
struct Stage {
    from: String,
    instructions: Vec<(String, String)>,
}

fn stages() -> BTreeMap<String, Stage> {
    let text = read(CONTAINERFILE).replace("\\\n", " ");
    let mut stages = BTreeMap::new();
    let mut current = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (instruction, rest) = line.split_once(' ').unwrap_or((line, ""));
        if instruction == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            assert!(words.len() == 3 && words[1] == "AS", "{CONTAINERFILE}: name every stage: FROM {rest}");
            current = Some(words[2].to_owned());
            stages.insert(words[2].to_owned(), Stage { from: words[0].to_owned(), ..Stage::default() });
        } else {
            let stage = current.as_ref().expect("an instruction before FROM");
            let stage = stages.get_mut(stage).expect("inserted");
            stage.instructions.push((instruction.to_owned(), rest.trim().to_owned()));
        }
    }
    stages
}

/// What an image built with `--target` runs.
#[derive(Debug)]
pub struct Image {
    /// The command (`CMD`, after the `portcullis` entrypoint).
    pub cmd: Vec<String>,
    /// `ENV` variables.
    pub env: BTreeMap<String, String>,
    /// Files copied from the repository: path in the image → text.
    pub files: BTreeMap<String, String>,
    /// `EXPOSE`d ports.
    pub expose: Vec<u16>,
}

impl Image {
    /// The configuration file the command names with `--config`, if any.
    pub fn config_text(&self, args: &[String]) -> String {
        match args.iter().position(|a| a == "--config") {
            Some(i) => self.files.get(&args[i + 1]).cloned().unwrap_or_else(|| {
                panic!("{CONTAINERFILE}: `--config {}` is not a file the image copies in", args[i + 1])
            }),
            None => String::new(),
        }
    }
}

/// The image of a role (`control-plane`, `edge`, `demo-app`).
pub fn image(target: &str) -> Image {
    let stages = stages();
    // The stage and the stages it is built on, base first.
    let mut chain = Vec::new();
    let mut name = target;
    while let Some(stage) = stages.get(name) {
        chain.insert(0, stage);
        name = &stage.from;
    }
    assert!(!chain.is_empty(), "{CONTAINERFILE} has no stage {target}");
    let mut image = Image { cmd: Vec::new(), env: BTreeMap::new(), files: BTreeMap::new(), expose: Vec::new() };
    for (instruction, rest) in chain.iter().flat_map(|stage| &stage.instructions) {
        match instruction.as_str() {
            "ENTRYPOINT" => {
                let entrypoint: Vec<String> = serde_json::from_str(rest).expect("ENTRYPOINT in JSON form");
                assert_eq!(entrypoint, ["/usr/local/bin/portcullis"], "{CONTAINERFILE}: the entrypoint");
            }
            "CMD" => image.cmd = serde_json::from_str(rest).expect("CMD in JSON form"),
            "ENV" => {
                let (name, value) = rest.split_once('=').expect("ENV NAME=value");
                image.env.insert(name.to_owned(), value.to_owned());
            }
            "EXPOSE" => image.expose.extend(rest.split_whitespace().map(|p| p.parse::<u16>().expect("a port"))),
            "COPY" if !rest.starts_with("--from") => {
                let (source, target) = rest.split_once(' ').expect("COPY SOURCE TARGET");
                image.files.insert(target.trim().to_owned(), read(source));
            }
            _ => {}
        }
    }
    image
}

/// The image's configuration as its command loads it (secrets filled in).
pub fn effective(target: &str) -> (Component, Effective) {
    let image = image(target);
    let component = Component::of_args(&image.cmd);
    let mut env = image.env.clone();
    if matches!(component, Component::ControlPlane | Component::Edge) {
        env.insert("PORTCULLIS_EDGE_SECRET".into(), String::new());
    }
    let what = format!("{CONTAINERFILE} target {target}");
    (component, load(component, &image.config_text(&image.cmd), &env, &what))
}

#[test]
fn each_role_exposes_the_ports_its_configuration_listens_on() {
    let stages = stages();
    let roles: Vec<&String> = stages.iter().filter(|(_, s)| s.from == "runtime").map(|(name, _)| name).collect();
    assert_eq!(roles, ["control-plane", "demo-app", "edge"], "one image per role");
    for role in roles {
        let image = image(role);
        let (component, effective) = effective(role);
        let mut exposed = image.expose.clone();
        exposed.sort_unstable();
        assert_eq!(exposed, effective.ports(), "{CONTAINERFILE} {role}: EXPOSE vs the listeners of {component:?}");
        for name in image.env.keys() {
            component.assert_variable(name, &format!("{CONTAINERFILE} {role}"));
        }
    }
}

#[test]
fn images_build_with_the_pinned_toolchain_and_run_as_a_numeric_non_root_user() {
    let stages = stages();
    let channel = read("rust-toolchain.toml")
        .lines()
        .find_map(|l| l.strip_prefix("channel = ").map(|v| v.trim_matches('"').to_owned()))
        .expect("channel in rust-toolchain.toml");
    let minor = channel.rsplit_once('.').map_or(channel.as_str(), |(m, _)| m);
    assert_eq!(stages["build"].from, format!("rust:{minor}-bookworm"), "the build image follows rust-toolchain.toml");
    let runtime = &stages["runtime"];
    assert_eq!(runtime.from, "debian:bookworm-slim");
    let user = runtime.instructions.iter().rev().find(|(i, _)| i == "USER").map(|(_, u)| u.clone()).expect("USER");
    let uid: u32 = user.split(':').next().and_then(|u| u.parse().ok()).expect("a numeric USER (runAsNonRoot needs it)");
    assert_ne!(uid, 0, "the images run as a non-root user");
    for (name, stage) in &stages {
        if stage.from == "runtime" {
            assert!(!stage.instructions.iter().any(|(i, _)| i == "USER"), "{name} must not change the user");
        }
    }
}
