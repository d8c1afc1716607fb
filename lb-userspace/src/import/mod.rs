//! `lb import`: a keepalived.conf, read as keepalived 2.2.7 reads it, to
//! an lb.toml for the same director.
//!
//! In layers, each using only those below it: [`host`] reads files (behind
//! a trait, so tests feed text); `words` splits lines into words as
//! keepalived does; `lines` is keepalived's preprocessor (comments,
//! conditionals, definitions, ~SEQ/~LST, includes, braces as line ends);
//! `tree` its grammar; `map` what each keyword means to lb, `emit` the
//! TOML text and `probe` lb's own validation of each imported item.
//! Everything that is not carried over as it was is a [`Diagnostic`] at its
//! `file:line:column`.

mod diag;
mod emit;
mod host;
mod lines;
mod map;
mod probe;
mod tree;
mod words;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Severity};
pub use host::{Host, System};
pub use map::Settings;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the caller decides about an import.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The machine's config id for `@ID` lines (keepalived's `-i`).
    pub config_id: String,
    pub settings: Settings,
}

/// The result of an import.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The lb.toml text (also when there are errors: what could be imported,
    /// with what was not listed at its end).
    pub toml: String,
    /// Warnings and errors about keepalived.conf, in the order found.
    pub diagnostics: Vec<Diagnostic>,
    /// lb's own complaints about the whole text; always empty unless the
    /// import has a bug, since every item was checked on its own.
    pub rejected: Vec<String>,
}

impl Imported {
    /// Whether the result does not do what keepalived did.
    pub fn failed(&self) -> bool {
        !self.rejected.is_empty() || self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }
}

/// keepalived's default config id: the host name up to its first dot.
pub fn default_config_id(host_name: &str) -> String {
    host_name.trim().split('.').next().unwrap_or_default().to_owned()
}

/// Imports the keepalived.conf at `path` and everything it includes.
pub fn import(path: &Path, options: &Options, host: &dyn Host) -> Result<Imported, ImportError> {
    let mut report = diag::Report::default();
    let lines = lines::read(path, &options.config_id, host, &mut report)
        .map_err(|source| ImportError::Read { file: path.to_owned(), source })?;
    let nodes = tree::build(lines, &mut report);
    let doc = map::map(&nodes, &options.settings, host, &mut report);
    let toml = doc.text();
    let rejected = probe::messages(&toml).err().unwrap_or_default();
    Ok(Imported { toml, diagnostics: report.into_diagnostics(), rejected })
}

#[cfg(test)]
mod tests;
