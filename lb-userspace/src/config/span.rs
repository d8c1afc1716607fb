//! Byte ranges from the TOML parser turned into the `line:column` positions
//! editors jump to, and the list of problems found while validating.

use std::{ops::Range, path::Path};

use super::{
    error::{ConfigError, Diagnostic},
    types::Position,
};

/// Where in the text a value lies, as the `toml` crate reports it.
pub(crate) type Span = Range<usize>;

/// 1-based line and column of byte `offset` in `text`; the column counts
/// characters, not bytes, so a line with non-ASCII text still lines up.
pub(crate) fn position(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position { line: before.matches('\n').count() + 1, column: before[line_start..].chars().count() + 1 }
}

/// Problems found so far. Validation goes on after the first one so that an
/// operator fixes a file in one pass, not one error per `lb check`.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    found: Vec<(Span, String)>,
    /// Legal but almost certainly not what was meant: `lb check` prints
    /// them and still passes.
    warnings: Vec<(Span, String)>,
}

impl Problems {
    pub(crate) fn push(&mut self, span: Span, message: impl Into<String>) {
        self.found.push((span, message.into()));
    }

    pub(crate) fn warn(&mut self, span: Span, message: impl Into<String>) {
        self.warnings.push((span, message.into()));
    }

    /// The warnings in file order.
    pub(crate) fn warnings(&self, text: &str) -> Vec<Diagnostic> {
        let mut found = self.warnings.clone();
        found.sort_by(|a, b| (a.0.start, a.0.end, &a.1).cmp(&(b.0.start, b.0.end, &b.1)));
        found.dedup();
        found
            .into_iter()
            .map(|(span, message)| {
                let Position { line, column } = position(text, span.start);
                Diagnostic { line, column, message }
            })
            .collect()
    }

    /// `Ok` when nothing was found. Problems come out in file order, each once:
    /// a VIP-wide check default is validated again for every backend that
    /// inherits it, and one mistake should be reported once.
    pub(crate) fn into_result(mut self, file: &Path, text: &str) -> Result<(), ConfigError> {
        if self.found.is_empty() {
            return Ok(());
        }
        self.found.sort_by(|a, b| (a.0.start, a.0.end, &a.1).cmp(&(b.0.start, b.0.end, &b.1)));
        self.found.dedup();
        let errors = self
            .found
            .into_iter()
            .map(|(span, message)| {
                let Position { line, column } = position(text, span.start);
                Diagnostic { line, column, message }
            })
            .collect();
        Err(ConfigError::Invalid { file: file.to_owned(), errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nnamé = \"x\"\n";
        assert_eq!(position(text, 0), Position { line: 1, column: 1 });
        assert_eq!(position(text, 4), Position { line: 1, column: 5 });
        assert_eq!(position(text, 6), Position { line: 2, column: 1 });
        // "namé = " is 8 bytes but 7 characters.
        assert_eq!(position(text, 14), Position { line: 2, column: 8 });
        // Past the end and inside a character both land somewhere sensible.
        assert_eq!(position(text, 1000), Position { line: 3, column: 1 });
        assert_eq!(position(text, 10), Position { line: 2, column: 4 });
    }
}
