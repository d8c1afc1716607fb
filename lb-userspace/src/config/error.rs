//! Configuration errors, printed the way compilers print theirs
//! (`lb.toml:12:11: message`) so that editors and CI logs link to the spot.

use std::{fmt, io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// One line per problem, in file order; never empty.
    #[error("{}", Listing { file, errors })]
    Invalid { file: PathBuf, errors: Vec<Diagnostic> },
}

impl ConfigError {
    /// The positioned problems (none for [`ConfigError::Read`]).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { errors, .. } => errors,
        }
    }
}

/// One problem at a 1-based line and character column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

struct Listing<'a> {
    file: &'a PathBuf,
    errors: &'a [Diagnostic],
}

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{}:{}: {}", self.file.display(), d.line, d.column, d.message)?;
        }
        Ok(())
    }
}
