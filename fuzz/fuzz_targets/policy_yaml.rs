//! Policy documents from arbitrary UTF-8: `Policy::compile` (what
//! `portcullis policy check` and the control plane run on an uploaded
//! policy) must return a policy or positioned errors, never panic, overflow
//! the stack or hang, however deep or malformed the YAML is. Errors are
//! rendered with their source line, as the CLI shows them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_policy::{Policy, PolicySource, RouteTarget};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let source = PolicySource { name: "fuzz.yaml".to_owned(), text: text.to_owned() };
    match Policy::compile(source) {
        Ok(policy) => {
            // Walk what was compiled, as the edge and `policy explain` do,
            // and check that every route can be found again by its target.
            for route in policy.routes() {
                let _ = (route.name(), route.location(), route.options());
                for rule in route.rules() {
                    let _ = (rule.name(), rule.location(), rule.effect(), rule.is_public());
                }
                match route.target() {
                    RouteTarget::Tcp { name, .. } => {
                        assert!(policy.tcp_route(name).is_some(), "TCP route {name} cannot be found");
                    }
                    RouteTarget::Http { host, path_prefix, .. } if !host.contains('*') => {
                        let host = host.to_ascii_lowercase();
                        let path = path_prefix.as_deref().unwrap_or("/");
                        assert!(policy.http_route(&host, path).is_some(), "HTTP route {host}{path} cannot be found");
                    }
                    RouteTarget::Http { .. } => {}
                }
            }
            let _ = policy.http_route("app.example", "/admin/users");
        }
        Err(errors) => {
            let rendered = errors.render(text);
            assert!(!rendered.is_empty(), "a refused policy says why");
        }
    }
});
