//! Policy errors with a file, a line and a column, printed the way compilers
//! print them so that editors and CI logs can jump to the spot.

use std::fmt;
use std::sync::Arc;

/// A 1-based position in a policy document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Location {
    /// Line, starting at 1.
    pub line: u32,
    /// Column in characters, starting at 1.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem found in a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The document's name (a file path, or `policy v12` for a stored version).
    pub file: Arc<str>,
    /// Where the problem is.
    pub at: Location,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: error: {}", self.file, self.at, self.message)
    }
}

impl PolicyError {
    /// The error followed by the offending source line and a caret under the
    /// column, like a compiler. `source` is the document text.
    pub fn render(&self, source: &str) -> String {
        self.render_line(source.lines().nth((self.at.line as usize).saturating_sub(1)))
    }

    /// The error with `line`, its source line (if the document has it).
    fn render_line(&self, line: Option<&str>) -> String {
        let mut out = self.to_string();
        let line_no = self.at.line as usize;
        if let Some(line) = line {
            let gutter = " ".repeat(line_no.to_string().len());
            let (shown, caret_pad) = excerpt(line, self.at.column.saturating_sub(1) as usize);
            out.push_str(&format!("\n{gutter} |\n{line_no} | {shown}\n{gutter} | {caret_pad}^"));
        }
        out
    }
}

/// Longest source excerpt under an error, in characters; a longer line (a
/// whole document written on one) is cut to this much around the column.
const EXCERPT_CHARS: usize = 120;

/// The part of `line` to show and the padding that puts a caret under the
/// character after the first `before` (tabs kept, so the caret lines up).
fn excerpt(line: &str, before: usize) -> (String, String) {
    let cut = line.len() > EXCERPT_CHARS && before > EXCERPT_CHARS / 2;
    let (skip, lead) = if cut { (before - EXCERPT_CHARS / 2, Some('…')) } else { (0, None) };
    let mut chars = line.chars().skip(skip);
    let mut shown: String = lead.into_iter().chain(chars.by_ref().take(EXCERPT_CHARS)).collect();
    if chars.next().is_some() {
        shown.push('…');
    }
    let caret_at = usize::from(lead.is_some()) + before - skip;
    let pad = shown.chars().take(caret_at).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
    (shown, pad)
}

/// Every problem found in one document, in source order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    /// All errors rendered with source excerpts, separated by blank lines.
    /// The document's lines are found once, not once per error (5,000 errors
    /// took seconds when each one walked the document from the top).
    pub fn render(&self, source: &str) -> String {
        let lines: Vec<&str> = source.lines().collect();
        let line = |e: &PolicyError| lines.get((e.at.line as usize).saturating_sub(1)).copied();
        let parts: Vec<String> = self.0.iter().map(|e| e.render_line(line(e))).collect();
        parts.join("\n\n")
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Collects errors while a document is decoded and compiled, so that one run
/// reports every problem rather than only the first.
#[derive(Debug)]
pub(crate) struct Diagnostics {
    file: Arc<str>,
    errors: Vec<PolicyError>,
}

impl Diagnostics {
    pub(crate) fn new(file: &str) -> Self {
        Self { file: Arc::from(file), errors: Vec::new() }
    }

    pub(crate) fn error(&mut self, at: Location, message: impl Into<String>) {
        self.errors.push(PolicyError { file: self.file.clone(), at, message: message.into() });
    }

    #[cfg(test)]
    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub(crate) fn into_result<T>(mut self, value: T) -> Result<T, PolicyErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            self.errors.sort_by_key(|e| e.at);
            Err(PolicyErrors(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_points_at_the_column() {
        let error = PolicyError {
            file: Arc::from("p.yaml"),
            at: Location { line: 2, column: 3 },
            message: "unknown key `x`".into(),
        };
        assert_eq!(error.render("a: 1\n  x: 2\n"), "p.yaml:2:3: error: unknown key `x`\n  |\n2 |   x: 2\n  |   ^");
    }

    #[test]
    fn render_cuts_a_long_line_around_the_column() {
        let error =
            PolicyError { file: Arc::from("p.yaml"), at: Location { line: 1, column: 1001 }, message: "x".into() };
        let line = format!("{}X{}", "-".repeat(1000), "+".repeat(1000));
        let rendered = error.render(&line);
        let excerpt = format!("…{}X{}…", "-".repeat(60), "+".repeat(59));
        assert_eq!(rendered, format!("p.yaml:1:1001: error: x\n  |\n1 | {excerpt}\n  | {}^", " ".repeat(61)));
        let start = PolicyError { at: Location { line: 1, column: 2 }, ..error };
        let rendered = start.render(&line);
        assert!(rendered.ends_with(&format!("1 | {}…\n  |  ^", &line[..120])), "{rendered}");
    }
}
