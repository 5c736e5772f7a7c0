//! The bounds every policy document must stay within, so that one hostile
//! document (sent to `/api/v1/policy/validate` by anyone with `policy:read`)
//! costs a bounded amount of stack, memory and time wherever it is compiled:
//! the control plane's validate, apply and explain, `portcullis policy check`,
//! and the edge's snapshot decode. Each is refused with an error naming the
//! limit and the line and column where the document passes it.
//!
//! Real policies sit far below every one: the shipped example
//! (`policies/examples/company.yaml`) is 3 KB with 4 routes, at most 4 rules
//! per route and 10 in all, and nests 8 levels deep, as deep as the language
//! goes.

/// Deepest nesting of YAML lists and mappings inside each other (the
/// document's top-level mapping is level 1).
///
/// The policy language itself goes 8 levels deep at most (document → `routes`
/// → route → `rules` → rule → `allow` → `claims` or `time` → a claim's test
/// or the list of `days`), so 64 leaves room for the language to grow while
/// every walk over the loaded tree (decoding, dropping) stays a few kilobytes
/// of stack. Without a bound, 200,000 nested `- ` (400 KB) overflowed a 2 MiB
/// worker stack and aborted the control plane. For comparison, `serde_yaml`
/// stops at 128.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Largest document, in bytes: 1 MiB, the control plane's default request
/// body limit (`max_body_bytes`), so raising that setting does not raise this.
/// Every other cost of a document (tokens, nodes, errors) grows with its size.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Most routes in one document. Hundreds of applications is a large company;
/// 5,000 is ten times that.
pub const MAX_ROUTES: usize = 5_000;
/// Most response rules in one document.
pub const MAX_RESPONSE_RULES: usize = 100;

/// Most rules in one route. Compiling checks every rule against each earlier
/// one (a rule no request can reach is an error), so this bounds that
/// quadratic check to half a million comparisons per route.
pub const MAX_RULES_PER_ROUTE: usize = 1_000;

/// Most rules in the whole document: five per route at the route limit.
pub const MAX_RULES: usize = 25_000;

/// Most work the check for rules that can never match may do in one
/// document, counted in pairs of condition entries compared (two blocks of
/// `m` and `n` entries cost `m × n`; a block compared with itself, as when
/// rules use the same condition set, costs nothing).
///
/// The largest policy the other limits allow with one-entry rules costs
/// 12.5 million; rules whose own lists run to thousands of entries cost
/// that much per pair of rules, and would keep a control-plane worker busy
/// for minutes. 20 million is a fraction of a second.
pub const MAX_SHADOW_CHECK_COST: u64 = 20_000_000;
