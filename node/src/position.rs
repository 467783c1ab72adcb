//! Line and column positions in config files, for error messages.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// A 1-based line and column (0 means "the whole file").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`.
    pub fn at(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
            before[nl + 1..].chars().count()
        }) + 1;
        Position { line, column }
    }

    pub fn of_span(text: &str, span: Range<usize>) -> Self {
        Self::at(text, span.start)
    }

    /// The position and message of a TOML parse error.
    pub fn of_toml_error(text: &str, e: &toml::de::Error) -> (Self, String) {
        let pos = e.span().map(|s| Self::of_span(text, s)).unwrap_or_default();
        (pos, e.message().to_string())
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(Position::at(t, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::at(t, 6), Position { line: 2, column: 1 });
        assert_eq!(Position::at(t, 9), Position { line: 2, column: 4 });
    }
}
