//! The portal's files, embedded in the binary at build time (the release
//! build stays one file). Plain HTML, CSS and ES modules: no build step.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Path under `/portal/assets/`.
    pub path: &'static str,
    /// `Content-Type` it is served with.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

/// The single page, served at `/portal/`.
pub const INDEX_HTML: &str = include_str!("assets/index.html");

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset { path: $path, content_type: $content_type, body: include_bytes!(concat!("assets/", $path)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `/portal/assets/`.
pub const ASSETS: &[Asset] = &[
    asset!("portal.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("dialog.js", JS),
    asset!("diff.js", JS),
    asset!("deliveries.js", JS),
    asset!("pages/login.js", JS),
    asset!("pages/sessions.js", JS),
    asset!("pages/user.js", JS),
    asset!("pages/policy.js", JS),
    asset!("pages/audit.js", JS),
    asset!("pages/edges.js", JS),
];

/// The file at `path`, if there is one.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_inline_scripts_or_styles() {
        let html = INDEX_HTML.to_ascii_lowercase();
        assert!(!html.contains("<style"), "styles live in portal.css");
        assert!(!html.contains(" style="), "no style attributes");
        assert!(!html.contains(" on"), "no inline event handlers");
        for script in html.split("<script").skip(1) {
            let tag = &script[..script.find('>').expect("a script tag ends")];
            assert!(tag.contains("src="), "scripts are files, not inline: <script{tag}>");
        }
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(asset.body).expect("UTF-8");
            assert!(!text.contains("innerHTML"), "{}: user data goes in with textContent", asset.path);
            assert!(!text.contains("insertAdjacentHTML"), "{}", asset.path);
            assert!(!text.contains("document.write"), "{}", asset.path);
            assert!(!text.contains("eval("), "{}", asset.path);
        }
    }

    #[test]
    fn every_module_import_is_embedded() {
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(asset.body).expect("UTF-8");
            let dir = asset.path.rsplit_once('/').map_or("", |(d, _)| d);
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let spec = line.rsplit(['\'', '"']).nth(1).expect("a quoted module path");
                let mut parts: Vec<&str> = if dir.is_empty() { Vec::new() } else { dir.split('/').collect() };
                for part in spec.split('/') {
                    match part {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        other => parts.push(other),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    find(&resolved).is_some(),
                    "{}: imports {spec} ({resolved}), which is not embedded",
                    asset.path
                );
            }
        }
    }
}
