//! What text the service accepts from people: printable characters only. Control
//! characters (NUL, terminal escapes such as `ESC [2J`, carriage returns), the C1
//! controls and the bidirectional formatting characters (U+202A to U+202E, U+2066 to
//! U+2069, the directional marks) are refused wherever a name, an answer or a note
//! comes in, because they are stored for good and printed back later: into a
//! caseworker's terminal, a kiosk screen, a report. Free text may keep line breaks
//! and tabs; one-line text (names, codes) may not.

/// Whether text may span lines (notes, reasons, descriptions) or not (names, codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    One,
    Many,
}

/// The first character of `text` the service refuses, if any.
pub fn refused_char(text: &str, lines: Lines) -> Option<char> {
    text.chars().find(|c| is_refused(*c, lines))
}

/// Whether `c` is refused in text of this kind.
pub fn is_refused(c: char, lines: Lines) -> bool {
    match c {
        '\n' | '\t' => lines == Lines::One,
        // Bidirectional embeddings, overrides, isolates and marks, and the Unicode line
        // and paragraph separators: they reorder or break what is printed after them.
        '\u{061C}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{2028}'
        | '\u{2029}' => true,
        c => c.is_control(),
    }
}

/// How a refused character is named in an error: its code point, never the character
/// itself (which would act on the terminal that shows the error).
pub fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// `text` with every character refused on one line written as an escape (`\u{1b}`),
/// for echoing what a caller sent (an unknown field name) into an error safely.
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_refused(c, Lines::One) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_nul_and_bidi_overrides_are_refused() {
        for text in [
            "a\u{1b}[2Jb",
            "nul\0",
            "\u{202E}evil",
            "x\u{2067}y",
            "c1\u{85}",
            "cr\r",
        ] {
            assert!(refused_char(text, Lines::Many).is_some(), "{text:?}");
        }
        assert_eq!(refused_char("李秀英", Lines::One), None);
        assert_eq!(refused_char("第一行\n第二行\t完", Lines::Many), None);
        assert_eq!(refused_char("第一行\n第二行", Lines::One), Some('\n'));
        assert_eq!(code_point('\u{1b}'), "U+001B");
        assert_eq!(code_point('\u{202E}'), "U+202E");
        assert_eq!(escaped("a\u{1b}[2J\u{202E}"), "a\\u{1b}[2J\\u{202e}");
    }
}
