//! Aligned plain-text tables whose columns line up with Chinese text too: widths are
//! display columns (a CJK character takes two), not bytes or chars. Every cell is made
//! safe to print first: control characters, terminal escapes, line breaks and
//! bidirectional overrides in what people wrote (or in records older than the server's
//! refusal of them) are shown as escapes like `\u{1b}`, never sent to the terminal.

use unicode_width::UnicodeWidthStr;

/// How a column's cells sit in their width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table: a header row, body rows and an optional total row under a rule.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<String>,
    aligns: Vec<Align>,
    rows: Vec<Vec<String>>,
    total: Option<Vec<String>>,
}

impl Table {
    /// A table with these column headers; columns are left-aligned until
    /// [`Table::right`] says otherwise.
    pub fn new<S: AsRef<str>>(headers: &[S]) -> Table {
        Table {
            headers: headers.iter().map(|h| printable(h.as_ref())).collect(),
            aligns: vec![Align::Left; headers.len()],
            rows: Vec::new(),
            total: None,
        }
    }

    /// Right-aligns the given columns (numbers read better that way).
    pub fn right(mut self, columns: &[usize]) -> Table {
        for &column in columns {
            if let Some(align) = self.aligns.get_mut(column) {
                *align = Align::Right;
            }
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| printable(c)).collect());
    }

    /// A last row set off by a rule, for sums.
    pub fn total(&mut self, cells: Vec<String>) {
        self.total = Some(cells.iter().map(|c| printable(c)).collect());
    }

    /// The table as lines joined by newlines, with a trailing newline; trailing
    /// spaces are trimmed so snapshots and terminals agree.
    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| display_width(h)).collect();
        for row in self.rows.iter().chain(self.total.iter()) {
            for (index, cell) in row.iter().enumerate().take(columns) {
                widths[index] = widths[index].max(display_width(cell));
            }
        }
        let mut out = String::new();
        self.line(&mut out, &self.headers, &widths);
        let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
        push_line(&mut out, &rule.join("  "));
        for row in &self.rows {
            self.line(&mut out, row, &widths);
        }
        if let Some(total) = &self.total {
            push_line(&mut out, &rule.join("  "));
            self.line(&mut out, total, &widths);
        }
        out
    }

    fn line(&self, out: &mut String, cells: &[String], widths: &[usize]) {
        let mut text = String::new();
        for (index, width) in widths.iter().enumerate() {
            let cell = cells.get(index).map(String::as_str).unwrap_or("");
            let pad = width.saturating_sub(display_width(cell));
            if index > 0 {
                text.push_str("  ");
            }
            match self.aligns[index] {
                Align::Left => {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                }
                Align::Right => {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                }
            }
        }
        push_line(out, &text);
    }
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line.trim_end());
    out.push('\n');
}

/// `text` as it may go to a terminal: every control character, line break, escape and
/// bidirectional override written out as `\u{..}`.
pub fn printable(text: &str) -> String {
    anju_domain::text::escaped(text)
}

/// Columns a string takes in a terminal: two for each CJK character.
pub fn display_width(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// Key/value lines ("label  value") aligned on the labels, for one record.
pub fn key_values(pairs: &[(String, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| display_width(k))
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let pad = width - display_width(key);
        let value = printable(value);
        push_line(&mut out, &format!("{key}{}  {value}", " ".repeat(pad)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_cells_take_two_columns_each() {
        assert_eq!(display_width("养老"), 4);
        assert_eq!(display_width("site-1"), 6);
        assert_eq!(display_width("高龄津贴 old-age"), 16);
    }

    #[test]
    fn mixed_chinese_and_english_columns_line_up() {
        let mut table = Table::new(&["服务 service", "状态 state", "件数 count"]).right(&[2]);
        table.row(vec![
            "最低生活保障申请".into(),
            "已受理 accepted".into(),
            "12".into(),
        ]);
        table.row(vec![
            "Temporary assistance".into(),
            "补正 info".into(),
            "3".into(),
        ]);
        table.total(vec!["合计 total".into(), String::new(), "15".into()]);
        insta::assert_snapshot!(table.render());
    }

    #[test]
    fn escapes_and_overrides_in_cells_are_shown_not_obeyed() {
        let mut table = Table::new(&["name", "note"]);
        table.row(vec!["\u{1b}[2J李\u{202E}abc".into(), "one\ntwo\0".into()]);
        let text = table.render() + &key_values(&[("note".into(), "\u{1b}]0;x\u{7}".into())]);
        assert!(
            !text
                .chars()
                .any(|c| c != '\n' && anju_domain::text::is_refused(c, anju_domain::Lines::One)),
            "{text:?}"
        );
        assert!(text.contains("\\u{1b}[2J李\\u{202e}abc"), "{text}");
        assert!(text.contains("one\\ntwo\\u{0}"), "{text}");
    }

    #[test]
    fn key_values_align_on_the_labels() {
        let text = key_values(&[
            ("受理编号 tracking".into(), "AJ-7K3Q".into()),
            ("state".into(), "SUBMITTED".into()),
        ]);
        insta::assert_snapshot!(text);
    }
}
