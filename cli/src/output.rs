//! Human-readable output for the admin commands: aligned tables, times shown
//! both relative ("3m ago") and absolute (UTC), and cells made safe to print
//! (values such as user agents come from clients and may hold control
//! characters).

use chrono::{DateTime, SecondsFormat, Utc};

/// A table printed with columns aligned to their widest cell.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Self { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Adds a row (one cell per header).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(|c| printable(&c)).collect());
    }

    /// The table as text, one line per row, columns separated by two spaces.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table, or `empty` when it has no rows.
    pub fn print_or(&self, empty: &str) {
        if self.rows.is_empty() {
            println!("{empty}");
        } else {
            print!("{}", self.render());
        }
    }
}

/// Replaces control characters (escape sequences, newlines) so a cell stays one harmless line.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect()
}

/// How long ago or ahead `at` is from `now`: "just now", "42s ago", "3m ago", "in 5h", "2d ago".
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - at).num_seconds();
    let magnitude = seconds.unsigned_abs();
    if magnitude < 1 {
        return "just now".into();
    }
    let amount = match magnitude {
        0..60 => format!("{magnitude}s"),
        60..3_600 => format!("{}m", magnitude / 60),
        3_600..172_800 => format!("{}h", magnitude / 3_600),
        _ => format!("{}d", magnitude / 86_400),
    };
    if seconds > 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// An RFC 3339 time from the API as "3m ago (2026-11-23 10:00:00Z)"; `-` when
/// absent, the text itself when it does not parse.
pub fn when(text: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return "-".into() };
    match DateTime::parse_from_rfc3339(text) {
        Ok(at) => {
            let at = at.with_timezone(&Utc);
            format!("{} ({})", relative(at, now), at.format("%Y-%m-%d %H:%M:%SZ"))
        }
        Err(_) => text.to_owned(),
    }
}

/// Checks an RFC 3339 option locally so a typo is named before any request.
pub fn rfc3339_option(option: &str, text: &str) -> anyhow::Result<String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Millis, true))
        .map_err(|_| {
            anyhow::anyhow!("--{option} expects an RFC 3339 time such as 2026-11-23T10:00:00Z, found `{text}`")
        })
}

/// A list as "a, b" or "-" when empty.
pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn relative_times() {
        let now = at("2026-11-23T10:00:00Z");
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(at("2026-11-23T09:59:18Z"), now), "42s ago");
        assert_eq!(relative(at("2026-11-23T09:57:00Z"), now), "3m ago");
        assert_eq!(relative(at("2026-11-23T15:00:00Z"), now), "in 5h");
        assert_eq!(relative(at("2026-11-20T10:00:00Z"), now), "3d ago");
        assert_eq!(when(Some("2026-11-23T09:57:00.000Z"), now), "3m ago (2026-11-23 09:57:00Z)");
        assert_eq!(when(None, now), "-");
    }

    #[test]
    fn tables_align_and_sanitise() {
        let mut table = Table::new(&["ID", "NAME"]);
        table.row(vec!["1".into(), "ada".into()]);
        table.row(vec!["1234".into(), "evil\u{1b}[2J".into()]);
        assert_eq!(table.render(), "ID    NAME\n1     ada\n1234  evil\u{FFFD}[2J\n");
    }

    #[test]
    fn rfc3339_options_are_checked() {
        assert_eq!(rfc3339_option("since", "2026-11-23T10:00:00+01:00").unwrap(), "2026-11-23T09:00:00.000Z");
        assert!(rfc3339_option("since", "yesterday").unwrap_err().to_string().contains("--since"));
    }
}
