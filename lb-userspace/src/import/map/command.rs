//! Scripts as keepalived 2.2.7 runs them: `KEYWORD "PROGRAM ARGS" [USER
//! [GROUP]]`, the line read with quotes and escapes, then the script's own
//! string split the same way into the program and its arguments, which are
//! run directly, without a shell; a program named without a path is looked
//! up on `PATH`.

use super::Cx;
use crate::import::{
    emit::Value,
    tree::Node,
    words::{self, Word},
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Command {
    /// Run directly; the program is an absolute path.
    Argv(Vec<String>),
    /// Shell syntax that only `/bin/sh -c` can run.
    Shell(String),
}

impl Command {
    /// lb's argv list: a shell line runs through `/bin/sh -c`, or bash's
    /// when it uses `[[` (which keepalived 1.x's `/bin/sh`, bash on the
    /// distributions that shipped it, understood, and dash does not).
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Argv(argv) => argv.clone(),
            Command::Shell(line) => {
                let shell = if line.contains("[[") { "/bin/bash" } else { "/bin/sh" };
                vec![shell.to_owned(), "-c".to_owned(), line.clone()]
            }
        }
    }

    pub fn value(&self) -> Value {
        Value::strings(self.argv())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Script {
    pub command: Command,
    pub user: Option<String>,
}

/// Whether keepalived takes `USER [GROUP]` after the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum User {
    Taken,
    NotTaken,
}

/// What only a shell understands. keepalived 2.2.7 would run such a line
/// without one and fail (keepalived 1.x ran scripts through `/bin/sh -c`).
fn needs_shell(line: &str, argv: &[Word]) -> bool {
    line.contains(['|', '&', ';', '<', '>', '`'])
        || line.contains("$(")
        || argv.iter().any(|w| matches!(w.text.as_str(), "[[" | "]]" | "if" | "then" | "!"))
}

pub(super) fn script(cx: &mut Cx<'_>, node: &Node, user: User) -> Option<Script> {
    let words = match words::escaped(&node.line) {
        Ok(w) => w,
        Err((at, message)) => {
            cx.report.error(at, format!("`{}`: {message}: not imported", node.name()));
            return None;
        }
    };
    let Some(script) = words.get(1) else {
        cx.report.error(node.at(), format!("`{}` needs a script: not imported", node.name()));
        return None;
    };
    let argv = match words::escaped(&script.chars) {
        Ok(argv) if !argv.is_empty() => argv,
        Ok(_) => {
            cx.report.error(script.at, format!("`{}`: the script is empty: not imported", node.name()));
            return None;
        }
        Err((at, message)) => {
            cx.report.error(at, format!("`{}`: {message}: not imported", node.name()));
            return None;
        }
    };
    let extra = &words[2..];
    let user = match (user, extra) {
        (User::Taken, [u, rest @ ..]) => {
            if let Some(group) = rest.first() {
                cx.report.warn(
                    group.at,
                    format!("group {}: lb runs scripts with the user's own group: not imported", group.text),
                );
            }
            Some(u.text.clone())
        }
        (User::NotTaken, [first, ..]) => {
            let ignored: Vec<&str> = extra.iter().map(|w| w.text.as_str()).collect();
            cx.report.warn(
                first.at,
                format!(
                    "`{}` takes one script: `{}` ignored, as keepalived does (quote the script with its arguments)",
                    node.name(),
                    ignored.join(" ")
                ),
            );
            None
        }
        (_, []) => None,
    };
    if needs_shell(&script.text, &argv) {
        cx.report.warn(
            script.at,
            "shell syntax: keepalived 2.2.7 runs scripts without a shell and could not run this one; \
             imported as `/bin/sh -c` with the line (bash's for `[[`), as keepalived 1.x ran it",
        );
        cx.scripts_used = true;
        return Some(Script { command: Command::Shell(script.text.clone()), user });
    }
    let program = program(cx, &argv[0])?;
    cx.scripts_used = true;
    let command = Command::Argv(std::iter::once(program).chain(argv[1..].iter().map(|w| w.text.clone())).collect());
    Some(Script { command, user })
}

/// The program's absolute path.
fn program(cx: &mut Cx<'_>, word: &Word) -> Option<String> {
    let name = &word.text;
    if name.starts_with('/') {
        return Some(name.clone());
    }
    if name.contains('/') {
        cx.report.error(
            word.at,
            format!(
                "script \"{name}\" is a relative path: lb runs scripts from /, so give the absolute path: not imported"
            ),
        );
        return None;
    }
    match cx.host.find_program(name) {
        Some(path) => Some(path.display().to_string()),
        None => {
            cx.report.error(
                word.at,
                format!("script \"{name}\" is not on this machine's PATH: give its absolute path: not imported"),
            );
            None
        }
    }
}
