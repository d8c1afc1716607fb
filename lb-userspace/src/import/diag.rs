//! Where things are in keepalived.conf and what is said about them: every
//! warning and error of an import names `file:line:column`, as compilers do,
//! so that an editor jumps to the spot.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

/// A 1-based line and character column in one of the files read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Pos {
    /// Index into [`Report`]'s file table.
    pub file: u32,
    pub line: u32,
    pub column: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Carried over with a change the operator should know about, or left
    /// out where that does not stop the result from working.
    Warning,
    /// Left out where the result then does not do what keepalived did: the
    /// import fails (the text is still produced, for review).
    Error,
}

/// One thing said about the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: Arc<Path>,
    pub line: u32,
    pub column: u32,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}:{}:{}: {severity}: {}", self.file.display(), self.line, self.column, self.message)
    }
}

/// The files read so far and everything said about them, in the order said.
#[derive(Debug, Default)]
pub(crate) struct Report {
    files: Vec<Arc<Path>>,
    items: Vec<Diagnostic>,
}

impl Report {
    /// Registers a file; positions in it carry the returned index.
    pub fn file(&mut self, path: &Path) -> u32 {
        self.files.push(Arc::from(path));
        (self.files.len() - 1) as u32
    }

    pub fn path(&self, file: u32) -> &Path {
        &self.files[file as usize]
    }

    pub fn warn(&mut self, at: Pos, message: impl Into<String>) {
        self.say(at, Severity::Warning, message.into());
    }

    pub fn error(&mut self, at: Pos, message: impl Into<String>) {
        self.say(at, Severity::Error, message.into());
    }

    fn say(&mut self, at: Pos, severity: Severity, message: String) {
        let file = self.files.get(at.file as usize).cloned().unwrap_or_else(|| Arc::from(PathBuf::new()));
        let d = Diagnostic { file, line: at.line, column: at.column, severity, message };
        // Expanded lines (~SEQ, definitions used twice) repeat their problems.
        if !self.items.contains(&d) {
            self.items.push(d);
        }
    }

    pub fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.items
    }

    #[cfg(test)]
    pub fn messages(&self) -> Vec<String> {
        self.items.iter().map(ToString::to_string).collect()
    }
}
