//! Loads YAML into a small tree that remembers where every node starts, so
//! that every later error can name a line and column. Aliases, tags and
//! multiple documents are refused: a security policy should read the same to
//! a person as to the machine.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError, Scanner, TScalarStyle, Token, TokenType};

use crate::error::{Diagnostics, Location};
use crate::limits::{MAX_DOCUMENT_BYTES, MAX_NESTING_DEPTH};

/// A YAML node and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub at: Location,
}

/// The shape of a node.
#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    /// A scalar; `plain` is false when it was quoted or a block scalar.
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// True for `~`, `null` and an empty plain scalar.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true } if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// Describes the node's shape for "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "nothing",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

fn location(mark: &Marker) -> Location {
    Location {
        line: u32::try_from(mark.line()).unwrap_or(u32::MAX),
        column: u32::try_from(mark.col() + 1).unwrap_or(u32::MAX),
    }
}

/// Parses `text` into one document tree. Returns `None` (with errors
/// recorded) when the text is not valid YAML, uses refused features or
/// passes the size or nesting limit.
///
/// The events are pulled here, one at a time, rather than through
/// `Parser::load`, which recurses once per level of nesting: 200,000 nested
/// `- ` overflowed the stack before any check could run. Pulled, the depth
/// is known at every collection's start and the document is refused there.
pub(crate) fn load(text: &str, diagnostics: &mut Diagnostics) -> Option<Node> {
    if text.len() > MAX_DOCUMENT_BYTES {
        diagnostics.error(
            location_of_byte(text, MAX_DOCUMENT_BYTES),
            format!(
                "the policy document is {} bytes, over the limit of 1 MiB ({MAX_DOCUMENT_BYTES} bytes); \
                 it passes the limit here",
                text.len()
            ),
        );
        return None;
    }
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Err(error) => {
                let (at, message) = syntax_error(text, &error);
                diagnostics.error(at, message);
                return None;
            }
            Ok((Event::StreamEnd, _)) => break,
            Ok((Event::SequenceStart(..) | Event::MappingStart(..), mark))
                if builder.stack.len() >= MAX_NESTING_DEPTH =>
            {
                diagnostics.error(location(&mark), too_deep());
                return None;
            }
            Ok((event, mark)) => builder.on_event(event, mark),
        }
    }
    let errors_before = diagnostics.error_count();
    if let Some(fallback) = builder.reference {
        // Events do not say where an anchor or tag on a collection is
        // written, so find the first one among the tokens.
        let (at, message) = first_reference(text).unwrap_or_else(|| (fallback, REFERENCES_REFUSED.to_owned()));
        diagnostics.error(at, message);
    }
    if let Some(at) = builder.extra_document {
        diagnostics.error(at, "a policy file holds exactly one YAML document");
    }
    if diagnostics.error_count() > errors_before {
        return None;
    }
    match builder.root {
        Some(root) => Some(root),
        None => {
            diagnostics.error(Location { line: 1, column: 1 }, "the policy document is empty");
            None
        }
    }
}

/// The error for a collection opened past [`MAX_NESTING_DEPTH`].
fn too_deep() -> String {
    format!(
        "lists and mappings nest deeper than the limit of {MAX_NESTING_DEPTH} levels here \
         (a policy needs 8 at most); the document is not read further"
    )
}

/// What yaml-rust2's scanner says when flow collections (`[`, `{`) nest past
/// its own limit of 255 levels. It looks ahead for a possible key after
/// every opener, so it stops there before the parser reports the collection
/// past our limit; the position is then the 256th opener.
const SCANNER_FLOW_LIMIT: &str = "recursion limit exceeded";

/// The error for [`SCANNER_FLOW_LIMIT`].
fn too_deep_flow() -> String {
    format!(
        "`[` and `{{` nest 256 levels deep here, deeper than the limit of {MAX_NESTING_DEPTH} levels \
         (a policy needs 8 at most)"
    )
}

const REFERENCES_REFUSED: &str = "YAML anchors, aliases and tags are not allowed in policies";

/// The first anchor, alias or tag in `text`, and what to say about it.
fn first_reference(text: &str) -> Option<(Location, String)> {
    Scanner::new(text.chars()).find_map(|Token(mark, token)| {
        let message = match token {
            TokenType::Anchor(name) => format!(
                "YAML anchors (`&{name}`) are not allowed in policies; to share conditions between rules, \
                 define them under `condition_sets` and `use` them"
            ),
            TokenType::Alias(name) => format!("YAML aliases (`*{name}`) are not allowed in policies"),
            TokenType::Tag(handle, suffix) => format!("YAML tags (`{handle}{suffix}`) are not allowed in policies"),
            _ => return None,
        };
        Some((location(&mark), message))
    })
}

/// The position and message for a YAML syntax error, with a hint for the
/// two mistakes whose library message points elsewhere: a tab used for
/// indentation, and a `[` or `{` left open on an earlier line.
fn syntax_error(text: &str, error: &ScanError) -> (Location, String) {
    let (at, message) = syntax_error_at_marker(text, error);
    (within(text, at), message)
}

/// [`syntax_error`] at the scanner's own position, which is past the last
/// line when the document ends before a collection or quote is closed.
fn syntax_error_at_marker(text: &str, error: &ScanError) -> (Location, String) {
    let at = location(error.marker());
    if error.info() == SCANNER_FLOW_LIMIT {
        return (at, too_deep_flow());
    }
    let message = format!("invalid YAML: {}", error.info());
    if error.info().contains("found a tab") {
        if let Some(tab) = first_tab_from(text, at) {
            return (tab, "invalid YAML: a tab character; indent YAML with spaces only".to_owned());
        }
    }
    let mut scanner = Scanner::new(text.chars());
    let mut open: Vec<(Marker, char)> = Vec::new();
    for Token(mark, token) in scanner.by_ref() {
        match token {
            TokenType::FlowSequenceStart => open.push((mark, '[')),
            TokenType::FlowMappingStart => open.push((mark, '{')),
            TokenType::FlowSequenceEnd | TokenType::FlowMappingEnd => {
                open.pop();
            }
            _ => {}
        }
    }
    let scanner_failed_here = scanner.get_error().is_some_and(|e| location(e.marker()) == at);
    match open.last() {
        Some((mark, bracket)) if scanner_failed_here && location(mark).line < at.line => {
            let (opened, close) = (location(mark), if *bracket == '[' { ']' } else { '}' });
            let hint = format!(
                " (the `{bracket}` at line {}, column {} is still open here; is a `{close}` missing?)",
                opened.line, opened.column
            );
            (at, message + &hint)
        }
        _ => (at, message),
    }
}

/// `at`, or the end of the last line when `at` lies past it: the scanner
/// reports an error found at the end of the document on the line after the
/// final newline, a line an editor does not show.
fn within(text: &str, at: Location) -> Location {
    let lines = text.lines().count();
    if (at.line as usize) <= lines {
        return at;
    }
    match text.lines().next_back() {
        Some(last) => Location {
            line: u32::try_from(lines).unwrap_or(u32::MAX),
            column: u32::try_from(last.chars().count() + 1).unwrap_or(u32::MAX),
        },
        None => Location { line: 1, column: 1 },
    }
}

/// The line and column of the character holding byte `offset` of `text`.
fn location_of_byte(text: &str, offset: usize) -> Location {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line: u32::try_from(before.bytes().filter(|&b| b == b'\n').count() + 1).unwrap_or(u32::MAX),
        column: u32::try_from(before[line_start..].chars().count() + 1).unwrap_or(u32::MAX),
    }
}

/// The first tab at or after `from`.
fn first_tab_from(text: &str, from: Location) -> Option<Location> {
    text.lines().enumerate().skip(from.line.saturating_sub(1) as usize).find_map(|(i, line)| {
        let skip = if i + 1 == from.line as usize { from.column.saturating_sub(1) as usize } else { 0 };
        let column = line.chars().enumerate().skip(skip).find(|(_, c)| *c == '\t')?.0;
        Some(Location { line: u32::try_from(i + 1).ok()?, column: u32::try_from(column + 1).ok()? })
    })
}

enum Frame {
    Seq(Location, Vec<Node>),
    Map(Location, Vec<(Node, Node)>, Option<Node>),
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    root: Option<Node>,
    documents: usize,
    /// Where the first anchor, alias or tag was seen (roughly; see `load`).
    reference: Option<Location>,
    /// Where a second document starts.
    extra_document: Option<Location>,
}

impl TreeBuilder {
    fn refuse_reference(&mut self, at: Location) {
        self.reference.get_or_insert(at);
    }

    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => *pending = Some(node),
            },
        }
    }

    /// Adds one parser event to the tree.
    fn on_event(&mut self, event: Event, mark: Marker) {
        let at = location(&mark);
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 && self.extra_document.is_none() {
                    self.extra_document = Some(at);
                }
            }
            Event::Alias(_) => self.refuse_reference(at),
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    self.refuse_reference(at);
                }
                let plain = style == TScalarStyle::Plain;
                self.push(Node { kind: NodeKind::Scalar { value, plain }, at });
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) if anchor != 0 || tag.is_some() => {
                self.refuse_reference(at);
                self.stack.push(Frame::Seq(at, Vec::new()));
            }
            Event::SequenceStart(..) => self.stack.push(Frame::Seq(at, Vec::new())),
            Event::MappingStart(..) => self.stack.push(Frame::Map(at, Vec::new(), None)),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::Seq(at, items)) => Node { kind: NodeKind::Seq(items), at },
                    // A block mapping's start event is reported after its first
                    // key; point at that key instead, where a reader looks.
                    Some(Frame::Map(at, entries, _)) => {
                        let at = entries.first().map_or(at, |(key, _)| key.at.min(at));
                        Node { kind: NodeKind::Map(entries), at }
                    }
                    None => return,
                };
                self.push(node);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_ok(text: &str) -> Node {
        let mut diagnostics = Diagnostics::new("t.yaml");
        let node = load(text, &mut diagnostics);
        assert!(!diagnostics.has_errors(), "{diagnostics:?}");
        node.unwrap()
    }

    #[test]
    fn nodes_carry_one_based_positions() {
        let root = load_ok("a: 1\nb:\n  - x\n  - y: 2\n");
        let NodeKind::Map(entries) = &root.kind else { panic!("not a map") };
        assert_eq!(entries[1].0.at, Location { line: 2, column: 1 });
        let NodeKind::Seq(items) = &entries[1].1.kind else { panic!("not a seq") };
        assert_eq!(items[0].at, Location { line: 3, column: 5 });
        assert_eq!(items[1].at, Location { line: 4, column: 5 });
    }

    #[test]
    fn aliases_are_refused() {
        let mut diagnostics = Diagnostics::new("t.yaml");
        assert!(load("a: &x 1\nb: *x\n", &mut diagnostics).is_none());
        assert!(diagnostics.has_errors());
    }

    #[test]
    fn an_error_at_the_end_of_the_document_points_at_its_last_line() {
        let text = "a: 1\nb: [1, 2\n";
        let mut diagnostics = Diagnostics::new("t.yaml");
        assert!(load(text, &mut diagnostics).is_none());
        let error = diagnostics.into_result(()).unwrap_err();
        assert_eq!(error.0[0].at, Location { line: 2, column: 9 }, "{error}");
        assert_eq!(within("", Location { line: 2, column: 1 }), Location { line: 1, column: 1 });
        assert_eq!(within("a\nbc", Location { line: 3, column: 1 }), Location { line: 2, column: 3 });
        assert_eq!(within("a\nbc", Location { line: 2, column: 1 }), Location { line: 2, column: 1 });
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let mut diagnostics = Diagnostics::new("t.yaml");
        assert!(load("a: [1, 2\nb: 3\n", &mut diagnostics).is_none());
        let error = diagnostics.into_result(()).unwrap_err();
        assert!(error.0[0].at.line >= 1, "{error}");
    }
}
