//! What an import reads from the machine: files, the files an `include`
//! pattern matches, and where a program named without a path is (keepalived
//! looks scripts up on `PATH`). Behind a trait so that tests feed text.

use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

pub trait Host {
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The regular files `pattern` (a glob without braces) matches, sorted.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String>;
    /// The executable `name` resolves to on `PATH`.
    fn find_program(&self, name: &str) -> Option<PathBuf>;
}

/// This machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

/// keepalived's search path when its environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Host for System {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let paths = glob::glob(pattern).map_err(|e| e.to_string())?;
        let mut files = Vec::new();
        for p in paths {
            let p = p.map_err(|e| e.to_string())?;
            if p.is_file() {
                files.push(p);
            }
        }
        files.sort();
        Ok(files)
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned());
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    }
}

/// Files held in memory, for tests: `glob` matches against their names.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Memory {
    pub files: std::collections::BTreeMap<PathBuf, String>,
    pub programs: Vec<PathBuf>,
}

#[cfg(test)]
impl Memory {
    pub fn with(files: &[(&str, &str)]) -> Memory {
        Memory {
            files: files.iter().map(|(p, t)| (PathBuf::from(p), (*t).to_owned())).collect(),
            programs: ["/usr/bin/killall", "/bin/true", "/usr/bin/pgrep"].map(PathBuf::from).to_vec(),
        }
    }
}

#[cfg(test)]
impl Host for Memory {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.files.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, String> {
        let pattern = glob::Pattern::new(pattern).map_err(|e| e.to_string())?;
        Ok(self.files.keys().filter(|p| pattern.matches_path(p)).cloned().collect())
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        self.programs.iter().find(|p| p.file_name().is_some_and(|f| f == name)).cloned()
    }
}
