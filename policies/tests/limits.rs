//! Hostile documents against the parser's bounds (issue 13, "never a gap in
//! enforcement"): each one is compiled the way the control plane's
//! `/api/v1/policy/validate` compiles it (`Policy::compile`), on a thread
//! with the 2 MiB stack of a tokio worker, and must come back as an error
//! naming the limit and where it was passed, never as a stack overflow
//! (which aborts the whole process) or minutes of work.

use std::time::{Duration, Instant};

use portcullis_policy::limits::{
    MAX_DOCUMENT_BYTES, MAX_NESTING_DEPTH, MAX_ROUTES, MAX_RULES, MAX_RULES_PER_ROUTE, MAX_SHADOW_CHECK_COST,
};
use portcullis_policy::snapshot::ApplyError;
use portcullis_policy::wire::{decode, encode, Message, SnapshotBody};
use portcullis_policy::{Change, Delta, Policy, PolicyErrors, PolicySource, Snapshot};

/// A tokio worker thread's stack (tokio's default `thread_stack_size`).
const WORKER_STACK: usize = 2 * 1024 * 1024;

/// Compiles `text` on a thread with a worker's stack; `Ok` is the route count.
fn compile_on_worker_stack(text: String) -> Result<usize, PolicyErrors> {
    std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(move || Policy::compile(PolicySource { name: "hostile.yaml".into(), text }).map(|p| p.routes().len()))
        .expect("spawn a compile thread")
        .join()
        .expect("the compile thread panicked")
}

/// The only error of `text`, as `(line, column, message)`.
fn only_error(text: String) -> (u32, u32, String) {
    let errors = compile_on_worker_stack(text).expect_err("the document must be refused");
    let [error] = &errors.0[..] else { panic!("expected one error, got {}:\n{errors}", errors.0.len()) };
    (error.at.line, error.at.column, error.message.clone())
}

fn assert_names_depth_limit(message: &str) {
    assert!(
        message.contains(&format!("deeper than the limit of {MAX_NESTING_DEPTH} levels")),
        "the message must name the depth limit: {message}"
    );
}

#[test]
fn two_hundred_thousand_nested_block_sequences_are_refused_at_the_limit() {
    // `- - - - …` on one line: each `- ` opens a list inside the previous one.
    let (line, column, message) = only_error("- ".repeat(200_000));
    assert_names_depth_limit(&message);
    // The list opened by the (limit + 1)th `-`, at column 2 * limit + 1.
    assert_eq!((line, column), (1, 2 * MAX_NESTING_DEPTH as u32 + 1), "{message}");
}

#[test]
fn an_edge_refuses_a_hostile_policy_in_a_snapshot_or_a_delta_without_overflowing() {
    // What the edge's subscriber does with a message: decode, then compile
    // the policy in `Snapshot::from_body` or `Snapshot::apply`.
    let hostile = PolicySource { name: "policy v2".into(), text: "- ".repeat(200_000) };
    let body = SnapshotBody {
        seq: 1,
        policy: hostile.clone(),
        terminated_sessions: Vec::new(),
        revoked_tokens: Vec::new(),
        users: Vec::new(),
        signing_keys: Vec::new(),
    };
    let bytes = encode(&Message::Snapshot(body));
    let delta = Delta { seq: 2, change: Change::ReplacePolicy { policy: hostile } };
    let (from_body, applied) = std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(move || {
            let Ok(Message::Snapshot(body)) = decode(&bytes) else { panic!("the snapshot message decodes") };
            let from_body = Snapshot::from_body(body).map(|s| format!("seq {}", s.seq())).map_err(|e| e.to_string());
            let mut snapshot = Snapshot::new(1, std::sync::Arc::new(Policy::empty()));
            let applied = match snapshot.apply(&delta) {
                Err(ApplyError::Policy(errors)) => Err(errors.to_string()),
                other => Ok(format!("{other:?}")),
            };
            (from_body, applied)
        })
        .expect("spawn")
        .join()
        .expect("the decode thread panicked");
    for outcome in [from_body, applied] {
        let message = outcome.expect_err("the hostile policy must be refused");
        assert!(message.starts_with("policy v2:1:129: error: "), "{message}");
        assert_names_depth_limit(&message);
    }
}

#[test]
fn nested_block_sequences_with_growing_indentation_are_refused_at_the_limit() {
    let text: String = (0..1_000).map(|depth| format!("{}- \n", "  ".repeat(depth))).collect();
    let (line, column, message) = only_error(text);
    assert_names_depth_limit(&message);
    assert_eq!((line, column), (MAX_NESTING_DEPTH as u32 + 1, 2 * MAX_NESTING_DEPTH as u32 + 1), "{message}");
}

#[test]
fn nested_flow_collections_are_refused_naming_the_limit() {
    // The YAML scanner looks ahead for a key after every `[` or `{`, and
    // stops at its own limit of 255 levels before the parser reaches ours:
    // the error points at the 256th opener, on one line or one per line.
    for (open, width) in [("[", 1), ("{a: ", 4)] {
        let (line, column, message) = only_error(open.repeat(200_000));
        assert_names_depth_limit(&message);
        assert_eq!((line, column), (1, width * 255 + 1), "`{open}`: {message}");
        let (line, column, message) = only_error(format!("{open}\n").repeat(1_000));
        assert_names_depth_limit(&message);
        assert_eq!((line, column), (256, 1), "`{open}`: {message}");
    }
}

#[test]
fn nested_block_mappings_are_refused_at_the_limit() {
    let text: String = (0..1_000).map(|depth| format!("{}a:\n", "  ".repeat(depth))).collect();
    let (line, _, message) = only_error(text);
    assert_names_depth_limit(&message);
    assert_eq!(line, MAX_NESTING_DEPTH as u32 + 1, "{message}");
}

#[test]
fn nesting_up_to_the_limit_is_yaml_the_policy_checks_then_read() {
    // Exactly the limit: the document is loaded, and refused for what it says.
    let errors = compile_on_worker_stack("- ".repeat(MAX_NESTING_DEPTH)).expect_err("a list is not a policy");
    assert!(errors.0.iter().all(|e| !e.message.contains("deeper than")), "{errors}");
}

#[test]
fn a_document_over_the_size_limit_is_refused_where_it_passes_it() {
    // Comment lines of 99 characters and a newline: the limit is passed on
    // line limit / 100 + 1, at column limit % 100 + 1.
    let line = format!("#{}\n", "x".repeat(98));
    let text = format!("version: 1\nroutes: []\n{}", line.repeat(MAX_DOCUMENT_BYTES / 100 + 1));
    let offset = MAX_DOCUMENT_BYTES - "version: 1\nroutes: []\n".len();
    let (line_no, column, message) = only_error(text);
    assert!(message.contains("1 MiB") && message.contains(&MAX_DOCUMENT_BYTES.to_string()), "{message}");
    assert_eq!((line_no, column), (offset as u32 / 100 + 3, offset as u32 % 100 + 1), "{message}");
}

#[test]
fn a_document_at_the_size_limit_compiles() {
    let head = "version: 1\nroutes: []\n";
    let text = format!("{head}#{}", "x".repeat(MAX_DOCUMENT_BYTES - head.len() - 1));
    assert_eq!(text.len(), MAX_DOCUMENT_BYTES);
    assert_eq!(compile_on_worker_stack(text).map_err(|e| e.to_string()), Ok(0));
}

fn route(i: usize, rules: usize) -> String {
    let rules: String = (0..rules).map(|r| format!("      - allow: {{email: [u{r}@c.x]}}\n")).collect();
    format!("  - name: app{i}\n    host: app{i}.corp.example\n    upstream: http://10.0.0.1\n    rules:\n{rules}")
}

#[test]
fn too_many_routes_are_refused_at_the_first_one_past_the_limit() {
    let text = format!("version: 1\nroutes:\n{}", (0..=MAX_ROUTES).map(|i| route(i, 1)).collect::<String>());
    let (line, column, message) = only_error(text);
    assert!(message.contains(&format!("more than {MAX_ROUTES} routes")), "{message}");
    // Each route is 5 lines; route number MAX_ROUTES (from 0) starts after them.
    assert_eq!((line, column), (3 + 5 * MAX_ROUTES as u32, 5), "{message}");
}

#[test]
fn too_many_rules_in_one_route_are_refused_at_the_first_one_past_the_limit() {
    let text = format!("version: 1\nroutes:\n{}", route(0, MAX_RULES_PER_ROUTE + 1));
    let (line, column, message) = only_error(text);
    assert!(message.contains(&format!("more than {MAX_RULES_PER_ROUTE} rules")), "{message}");
    assert_eq!((line, column), (7 + MAX_RULES_PER_ROUTE as u32, 9), "{message}");
}

#[test]
fn too_many_rules_in_all_are_refused_at_the_first_one_past_the_limit() {
    let per_route = MAX_RULES_PER_ROUTE / 2;
    let routes = MAX_RULES / per_route + 1;
    let text = format!("version: 1\nroutes:\n{}", (0..routes).map(|i| route(i, per_route)).collect::<String>());
    let (line, column, message) = only_error(text);
    assert!(message.contains(&format!("more than {MAX_RULES} rules")), "{message}");
    // The last route's first rule is the first one past the limit.
    let route_lines = 4 + per_route as u32;
    assert_eq!((line, column), (3 + route_lines * (routes as u32 - 1) + 4, 9), "{message}");
}

#[test]
fn the_largest_policy_the_limits_allow_compiles_in_reasonable_time() {
    // Every route at the rule limit, as many as the total allows, every
    // rule distinct: the shadowed-rule check compares every pair in a route.
    let routes = MAX_RULES / MAX_RULES_PER_ROUTE;
    let text =
        format!("version: 1\nroutes:\n{}", (0..routes).map(|i| route(i, MAX_RULES_PER_ROUTE)).collect::<String>());
    assert!(text.len() <= MAX_DOCUMENT_BYTES, "{} bytes", text.len());
    let started = Instant::now();
    assert_eq!(compile_on_worker_stack(text).map_err(|e| e.to_string()), Ok(routes));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "compiling took {took:?}");
}

/// `count` paths, `/p0` to `/p{count - 1}`, as a flow list.
fn paths(count: usize) -> String {
    (0..count).map(|i| format!("/p{i}")).collect::<Vec<_>>().join(", ")
}

#[test]
fn rules_sharing_a_large_condition_set_do_not_compare_it_with_itself() {
    // 100 rules use one set of 2,000 paths and a small set of their own:
    // each pair of rules used to compare the large set with itself, entry by
    // entry (2 million steps), 5,000 times.
    let own: String = (0..100).map(|i| format!("  own{i}: {{methods: [GET], paths: [/own{i}]}}\n")).collect();
    let rules: String = (0..100).map(|i| format!("      - allow: {{use: [office, own{i}]}}\n")).collect();
    let text = format!(
        "version: 1\ncondition_sets:\n  office: {{paths: [{}]}}\n{own}routes:\n  - name: app\n    host: app.corp.example\n    \
         upstream: http://10.0.0.1\n    rules:\n{rules}",
        paths(2_000)
    );
    let started = Instant::now();
    assert_eq!(compile_on_worker_stack(text).map_err(|e| e.to_string()), Ok(1));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "compiling took {took:?}");
}

#[test]
fn rules_too_large_to_compare_are_refused_at_the_first_one_past_the_budget() {
    // 16 rules with the same 5,000 paths and ever longer login windows: no
    // rule shadows another, but proving it compares 12.5 million path pairs
    // per pair of rules.
    let list = paths(5_000);
    let rules: String =
        (1..=16).map(|i| format!("      - allow: {{logged_in_within: {i}m, paths: [{list}]}}\n")).collect();
    let text = format!(
        "version: 1\nroutes:\n  - name: app\n    host: app.corp.example\n    upstream: http://10.0.0.1\n    rules:\n{rules}"
    );
    let started = Instant::now();
    let (line, column, message) = only_error(text);
    let took = started.elapsed();
    let limit = format!("more than {MAX_SHADOW_CHECK_COST} comparisons");
    assert!(message.contains(&limit), "{message}");
    assert_eq!((line, column), (8, 9), "the second rule: {message}");
    assert!(took < Duration::from_secs(10), "refusing took {took:?}");
}

#[test]
fn rendering_thousands_of_errors_is_linear() {
    // 5,000 unknown keys below 100,000 comment lines: rendering each error
    // must not walk the document from the top (that was 500 million lines).
    let text = format!(
        "version: 1\nroutes: []\n{}{}",
        "#\n".repeat(100_000),
        (0..5_000).map(|i| format!("k{i}: 1\n")).collect::<String>()
    );
    let errors = compile_on_worker_stack(text.clone()).expect_err("unknown keys");
    assert_eq!(errors.0.len(), 5_000);
    let started = Instant::now();
    let rendered = errors.render(&text);
    let took = started.elapsed();
    assert!(rendered.ends_with("105002 | k4999: 1\n       | ^"), "{}", &rendered[rendered.len() - 300..]);
    assert!(took < Duration::from_secs(2), "rendering 5,000 errors took {took:?}");
}
