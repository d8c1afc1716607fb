//! keepalived.conf's preprocessor: from files to the lines keepalived's
//! grammar sees, each character with the place it was written.
//!
//! As keepalived 2.2.7 reads a file: comments (`#`, `!`) end a line outside
//! `"` quotes (`\#` and `\!` are the characters themselves); `@ID` / `@^ID`
//! keep a line only on (or only off) the machine whose config id is `ID`;
//! `$NAME=VALUE` defines and `$NAME` / `${NAME}` use (a definition whose
//! lines end in `\` goes on over the next lines); `~SEQ(var, start, step,
//! end)` and `~LST(var, a, b, ...)` repeat the rest of their line;
//! `include PATTERN` reads the files a glob (with `{a,b}` braces) matches,
//! relative to the including file; and `{` and `}` end a line, which is
//! why a block written on one line is not read as it looks.

use std::path::{Path, PathBuf};

use super::{
    diag::{Pos, Report},
    host::Host,
    words::{self, Ch, is_space},
};

/// One line as keepalived's grammar sees it: a keyword with its arguments,
/// or a lone `{` or `}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub text: Vec<Ch>,
}

impl Line {
    pub fn at(&self) -> Pos {
        self.text[0].at
    }
}

/// Definitions may refer to definitions, and a ~SEQ line may hold another:
/// past this depth they refer to each other without end.
const MAX_DEPTH: usize = 32;
/// Lines ~SEQ and ~LST may produce in all, so that a typo cannot make
/// billions of them.
const MAX_EXPANDED: usize = 100_000;
/// Files including files, so that a file including itself stops.
const MAX_INCLUDE_DEPTH: usize = 16;
/// keepalived's include keyword and its variants (which only differ in
/// which problems keepalived reports).
const INCLUDES: &[&str] = &["include", "includer", "includem", "includew", "includeb", "includea"];

#[derive(Debug)]
struct Def {
    name: String,
    /// A multi-line definition has more than one, and is only used alone at
    /// the end of a line.
    lines: Vec<Vec<Ch>>,
    multiline: bool,
}

/// Reads `path` and everything it includes.
pub(crate) fn read(
    path: &Path,
    config_id: &str,
    host: &dyn Host,
    report: &mut Report,
) -> Result<Vec<Line>, std::io::Error> {
    let text = host.read(path)?;
    let mut reader =
        Reader { host, config_id, report, defs: Vec::new(), out: Vec::new(), expanded: 0, including: Vec::new() };
    reader.file(path, &text);
    Ok(reader.out)
}

struct Reader<'a> {
    host: &'a dyn Host,
    config_id: &'a str,
    report: &'a mut Report,
    defs: Vec<Def>,
    out: Vec<Line>,
    expanded: usize,
    /// The files being read, outermost first.
    including: Vec<PathBuf>,
}

/// The file a line comes from: `${_PWD}` and relative includes start here.
struct FileCx {
    dir: PathBuf,
}

impl Reader<'_> {
    fn file(&mut self, path: &Path, text: &str) {
        let id = self.report.file(path);
        let cx = FileCx { dir: path.parent().map(Path::to_owned).unwrap_or_default() };
        self.including.push(path.to_owned());
        // The definition whose value goes on over the next lines.
        let mut collecting: Option<usize> = None;
        for (n, raw) in text.split('\n').enumerate() {
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let chars: Vec<Ch> = raw
                .chars()
                .enumerate()
                .map(|(i, c)| Ch { c, at: Pos { file: id, line: n as u32 + 1, column: i as u32 + 1 } })
                .collect();
            if let Some(def) = collecting {
                // An empty line ends a multi-line definition, as does a line
                // without a `\` (which still belongs to it).
                if chars.is_empty() {
                    collecting = None;
                    continue;
                }
                let (line, more) = self.decomment(chars);
                let line = trim(&line);
                if !line.is_empty() {
                    self.defs[def].lines.push(line.to_vec());
                }
                if !more {
                    collecting = None;
                }
                continue;
            }
            let (line, more) = self.decomment(chars);
            if let Some(def) = self.line(line, more, &cx, 0) {
                collecting = Some(def);
            }
        }
        self.including.pop();
    }

    /// Strips a comment, and the `\` that continues a line (returned as
    /// `true`); `\#` and `\!` outside quotes become `#` and `!`.
    fn decomment(&mut self, chars: Vec<Ch>) -> (Vec<Ch>, bool) {
        let mut out = Vec::with_capacity(chars.len());
        let mut quote: Option<Pos> = None;
        let mut comment = false;
        let mut more = false;
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            match ch.c {
                '"' if !comment => {
                    quote = if quote.is_some() { None } else { Some(ch.at) };
                    out.push(ch);
                }
                '\\' if i + 1 == chars.len() => more = true,
                '\\' if quote.is_none() && matches!(chars[i + 1].c, '#' | '!') => {
                    if !comment {
                        out.push(chars[i + 1]);
                    }
                    i += 1;
                }
                '\\' => {
                    if !comment {
                        out.extend_from_slice(&chars[i..i + 2]);
                    }
                    i += 1;
                }
                '#' | '!' if quote.is_none() => comment = true,
                _ if !comment => out.push(ch),
                _ => {}
            }
            i += 1;
        }
        if let Some(at) = quote {
            self.report.error(at, "this \" is not closed on its line (keepalived: \"Unterminated quote\")");
        }
        (out, more)
    }

    /// One logical line. Returns the definition it starts when its value
    /// goes on over the next lines.
    fn line(&mut self, text: Vec<Ch>, more: bool, cx: &FileCx, depth: usize) -> Option<usize> {
        let mut text = trim(&text).to_vec();
        if text.is_empty() {
            return None;
        }
        if depth > MAX_DEPTH {
            self.report.error(text[0].at, "definitions or ~SEQ/~LST refer to each other without end: line dropped");
            return None;
        }
        if text[0].c == '@' {
            let negate = text.get(1).is_some_and(|c| c.c == '^');
            let start = if negate { 2 } else { 1 };
            // A conditional with nothing after the id is dropped whole.
            let end = text[start..].iter().position(|c| c.c == ' ' || c.c == '\t')? + start;
            let id = words::text(&text[start..end]);
            if (id == self.config_id) == negate {
                return None;
            }
            text = trim(&text[end..]).to_vec();
        }
        if let Some((name, value)) = definition(&text) {
            return self.define(name, value, more);
        }
        if more {
            self.report.warn(
                text[text.len() - 1].at,
                "a `\\` at the end of a line continues only a $NAME= definition: ignored, as keepalived does",
            );
        }
        if starts_with(&text, "~SEQ") || starts_with(&text, "~LST") {
            self.repeat(&text, cx, depth);
            return None;
        }
        if text[0].c == '~' {
            self.report.error(text[0].at, "unknown directive: keepalived knows ~SEQ, ~SEQx and ~LST: line dropped");
            return None;
        }
        if let Some(lines) = self.substitute(&text, cx) {
            for line in lines {
                self.line(line, false, cx, depth + 1);
            }
            return None;
        }
        if let Ok(w) = words::plain(&text)
            && w.len() == 2
            && INCLUDES.contains(&w[0].text.as_str())
        {
            self.include(&w[1], cx);
            return None;
        }
        self.split_braces(text, cx, depth);
        None
    }

    fn define(&mut self, name: String, value: Vec<Ch>, more: bool) -> Option<usize> {
        let value = trim(&value).to_vec();
        let lines = if more && value.is_empty() { Vec::new() } else { vec![value] };
        let def = Def { name, lines, multiline: more };
        let index = match self.defs.iter().position(|d| d.name == def.name) {
            Some(i) => {
                self.defs[i] = def;
                i
            }
            None => {
                self.defs.push(def);
                self.defs.len() - 1
            }
        };
        more.then_some(index)
    }

    /// `{` and `}` end a line and stand alone; what follows one is read as
    /// the next line, conditionals and all.
    fn split_braces(&mut self, text: Vec<Ch>, cx: &FileCx, depth: usize) {
        let mut quoted = false;
        let brace = text.iter().position(|c| {
            if c.c == '"' {
                quoted = !quoted;
            }
            !quoted && (c.c == '{' || c.c == '}')
        });
        match brace {
            None => self.out.push(Line { text }),
            Some(0) => {
                self.out.push(Line { text: text[..1].to_vec() });
                self.line(text[1..].to_vec(), false, cx, depth);
            }
            Some(i) => {
                self.out.push(Line { text: trim(&text[..i]).to_vec() });
                self.line(text[i..].to_vec(), false, cx, depth);
            }
        }
    }

    /// Replaces the definitions a line uses; `None` when it uses none.
    /// A multi-line definition, used alone at the end of a line, makes
    /// several lines.
    fn substitute(&mut self, text: &[Ch], cx: &FileCx) -> Option<Vec<Vec<Ch>>> {
        let mut out: Vec<Ch> = Vec::new();
        let mut more: Vec<Vec<Ch>> = Vec::new();
        let mut changed = false;
        let mut i = 0;
        while i < text.len() {
            let ch = text[i];
            if ch.c != '$' || i + 1 == text.len() {
                out.push(ch);
                i += 1;
                continue;
            }
            let Some(use_) = usage(&text[i + 1..]) else {
                out.push(ch);
                i += 1;
                continue;
            };
            let alone = i + 1 + use_.len == text.len();
            let at = ch.at;
            let value: Option<Vec<Vec<char>>> = match use_.name.as_str() {
                "_PWD" => Some(vec![cx.dir.display().to_string().chars().collect()]),
                "_INSTANCE" => Some(vec![self.config_id.chars().collect()]),
                "_HASH" => Some(vec![vec!['#']]),
                "_BANG" => Some(vec![vec!['!']]),
                "_RANDOM" => {
                    self.report.error(
                        at,
                        "${_RANDOM} gives a different value on every read: write the value itself (left as written)",
                    );
                    None
                }
                name => self
                    .defs
                    .iter()
                    .find(|d| d.name == name && (alone || !d.multiline))
                    .map(|d| d.lines.iter().map(|l| l.iter().map(|c| c.c).collect()).collect()),
            };
            // keepalived leaves an undefined $NAME as written.
            let Some(value) = value.filter(|_| !use_.params || use_.name == "_RANDOM") else {
                if use_.braces && use_.name != "_RANDOM" {
                    self.report.warn(
                        at,
                        format!(
                            "${{{}}} is not defined: left as written, as keepalived does, and its `{{` and `}}` then end lines",
                            use_.name
                        ),
                    );
                }
                out.push(ch);
                i += 1;
                continue;
            };
            changed = true;
            let mut lines = value.into_iter();
            out.extend(lines.next().unwrap_or_default().into_iter().map(|c| Ch { c, at }));
            more.extend(lines.map(|l| l.into_iter().map(|c| Ch { c, at }).collect()));
            i += 1 + use_.len;
        }
        changed.then(|| std::iter::once(out).chain(more).collect())
    }

    /// `~SEQ[x](var, [start,] [step,] end) rest` and `~LST(var | {v1, v2},
    /// value | {a, b}, ...) rest`: the rest, once per value.
    fn repeat(&mut self, text: &[Ch], cx: &FileCx, depth: usize) {
        let at = text[0].at;
        let s = words::text(text);
        let hex = s.starts_with("~SEQx");
        let head = if hex { 5 } else { 4 };
        let after_head = s[head..].trim_start_matches([' ', '\t']);
        let Some(args_start) = after_head.strip_prefix('(') else {
            self.report.error(at, format!("{} needs its arguments in parentheses: line dropped", &s[..head]));
            return;
        };
        let Some(close) = closing_paren(args_start) else {
            self.report.error(at, format!("{} has no closing `)`: line dropped", &s[..head]));
            return;
        };
        // The arguments may use definitions; the rest is repeated as written.
        let args_text = &args_start[..close];
        let args = match self.substitute(&words_chars(args_text, at), cx) {
            Some(mut lines) if lines.len() == 1 => words::text(&lines.remove(0)),
            Some(_) => {
                self.report.error(at, "a multi-line definition cannot be a ~SEQ/~LST argument: line dropped");
                return;
            }
            None => args_text.to_owned(),
        };
        let rest_chars = s.len() - args_start.len() + close + 1;
        let rest_offset = s[..rest_chars].chars().count();
        let rest = trim(&text[rest_offset.min(text.len())..]).to_vec();
        let values = if s.starts_with("~SEQ") { seq(&args, hex) } else { lst(&args) };
        let (vars, values) = match values {
            Ok(v) => v,
            Err(message) => {
                self.report.error(at, format!("{}: {message}: line dropped", &s[..head]));
                return;
            }
        };
        for tuple in values {
            self.expanded += 1;
            if self.expanded > MAX_EXPANDED {
                self.report.error(at, format!("~SEQ and ~LST make more than {MAX_EXPANDED} lines: the rest dropped"));
                return;
            }
            for (var, value) in vars.iter().zip(tuple) {
                self.define(var.clone(), words_chars(&value, at), false);
            }
            self.line(rest.clone(), false, cx, depth + 1);
        }
    }

    fn include(&mut self, pattern: &words::Word, cx: &FileCx) {
        if self.including.len() >= MAX_INCLUDE_DEPTH {
            self.report.error(pattern.at, format!("includes nest deeper than {MAX_INCLUDE_DEPTH} files: not read"));
            return;
        }
        let full = normalize(&cx.dir.join(&pattern.text)).display().to_string();
        let mut files = Vec::new();
        for alternative in expand_braces(&full) {
            match self.host.glob(&alternative) {
                Ok(found) if found.is_empty() => {
                    self.report.warn(pattern.at, format!("include: no file matches {alternative}"));
                }
                Ok(found) => files.extend(found),
                Err(e) => self.report.error(pattern.at, format!("include: bad pattern {alternative}: {e}")),
            }
        }
        for file in files {
            if self.including.contains(&file) {
                self.report.error(pattern.at, format!("{} includes itself: not read again", file.display()));
                continue;
            }
            match self.host.read(&file) {
                Ok(text) => self.file(&file, &text),
                Err(e) => self.report.error(pattern.at, format!("include: cannot read {}: {e}", file.display())),
            }
        }
    }
}

/// `a/./b/../c` as `a/c`, so that messages name plain paths (keepalived
/// changes into the including file's directory, which comes to the same
/// without symbolic links).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn trim(text: &[Ch]) -> &[Ch] {
    let start = text.iter().position(|c| !is_space(c.c)).unwrap_or(text.len());
    let end = text.iter().rposition(|c| !is_space(c.c)).map_or(start, |i| i + 1);
    &text[start..end.max(start)]
}

fn starts_with(text: &[Ch], prefix: &str) -> bool {
    text.len() >= prefix.len() && text.iter().zip(prefix.chars()).all(|(a, b)| a.c == b)
}

fn words_chars(s: &str, at: Pos) -> Vec<Ch> {
    s.chars().map(|c| Ch { c, at }).collect()
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `$NAME=VALUE` (spaces allowed before the `=`): the name and the value.
fn definition(text: &[Ch]) -> Option<(String, Vec<Ch>)> {
    if text.first()?.c != '$' || !is_name_start(text.get(1)?.c) {
        return None;
    }
    let end = text[1..].iter().position(|c| !is_name(c.c)).map_or(text.len(), |n| n + 1);
    let name = words::text(&text[1..end]);
    let eq = end + text[end..].iter().take_while(|c| c.c == ' ' || c.c == '\t').count();
    (text.get(eq)?.c == '=').then(|| (name, text[eq + 1..].to_vec()))
}

/// A use after `$`: `NAME` followed by a space, tab, `,`, `)` or the end,
/// or `{NAME}` (`{_RANDOM 1 10}` takes numbers).
struct Usage {
    name: String,
    /// Characters after the `$`.
    len: usize,
    params: bool,
    braces: bool,
}

fn usage(after: &[Ch]) -> Option<Usage> {
    let braces = after.first()?.c == '{';
    let start = usize::from(braces);
    if !is_name_start(after.get(start)?.c) {
        return None;
    }
    let end = after[start..].iter().position(|c| !is_name(c.c)).map_or(after.len(), |n| n + start);
    let name = words::text(&after[start..end]);
    if braces {
        let close = after[end..].iter().position(|c| c.c == '}')? + end;
        let params = words::text(&after[end..close]);
        if !params.chars().all(|c| c == ' ' || c.is_ascii_digit()) || params.ends_with(' ') {
            return None;
        }
        Some(Usage { name, len: close + 1, params: !params.trim().is_empty(), braces })
    } else {
        match after.get(end).map(|c| c.c) {
            None | Some(' ' | '\t' | ',' | ')') => Some(Usage { name, len: end, params: false, braces }),
            _ => None,
        }
    }
}

/// The index of the `)` that closes an argument list (braces may nest).
fn closing_paren(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ')' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

/// C's `strtol` with base 0: `0x` hex, a leading `0` octal, else decimal.
fn number(s: &str) -> Option<i64> {
    let s = s.trim();
    let (negative, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let value = if let Some(h) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse().ok()?
    };
    Some(if negative { -value } else { value })
}

type Expansion = (Vec<String>, Vec<Vec<String>>);

fn seq(args: &str, hex: bool) -> Result<Expansion, String> {
    let parts: Vec<&str> = args.split(',').map(str::trim).collect();
    let var = parts[0];
    if var.is_empty() || !var.chars().all(is_name) || parts.len() < 2 {
        return Err("expected (var, [start,] [step,] end)".to_owned());
    }
    let nums: Option<Vec<i64>> = parts[1..].iter().map(|p| number(p)).collect();
    let nums = nums.ok_or("the start, step and end must be numbers")?;
    let (start, step, end) = match nums[..] {
        [end] => (if end < 0 { -1 } else { 1 }, if end < 1 { -1 } else { 1 }, end),
        [start, end] => (start, if start <= end { 1 } else { -1 }, end),
        [start, step, end] => (start, step, end),
        _ => return Err("expected (var, [start,] [step,] end)".to_owned()),
    };
    if step == 0 || (start < end && step < 0) || (start > end && step > 0) {
        return Err(format!("the step {step} never gets from {start} to {end}"));
    }
    if hex && (start < 0 || end < 0) {
        return Err("~SEQx counts positive numbers only".to_owned());
    }
    let count = (end - start) / step + 1;
    if count > MAX_EXPANDED as i64 {
        return Err(format!("{count} values, more than {MAX_EXPANDED}"));
    }
    let values = (0..count)
        .map(|k| start + k * step)
        .map(|v| vec![if hex { format!("{v:x}") } else { v.to_string() }])
        .collect();
    Ok((vec![var.to_owned()], values))
}

fn lst(args: &str) -> Result<Expansion, String> {
    let items = split_top(args)?;
    let Some((vars, values)) = items.split_first() else { return Err("expected (var, value, ...)".to_owned()) };
    let vars = group(vars);
    if vars.is_empty() || vars.iter().any(|v| v.is_empty() || !v.chars().all(is_name)) {
        return Err("expected a variable name or {name, name} first".to_owned());
    }
    if values.is_empty() {
        return Err("no values".to_owned());
    }
    let values: Vec<Vec<String>> = values.iter().map(|v| group(v)).collect();
    if let Some(bad) = values.iter().find(|v| v.len() != vars.len()) {
        return Err(format!("{} values where {} variables take them: {bad:?}", bad.len(), vars.len()));
    }
    Ok((vars, values))
}

/// Splits on commas outside braces.
fn split_top(s: &str) -> Result<Vec<String>, String> {
    let mut items = vec![String::new()];
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Err("a `}` without its `{`".to_owned()),
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(i) = items.last_mut() {
            i.push(c);
        }
    }
    if depth != 0 {
        return Err("a `{` without its `}`".to_owned());
    }
    Ok(items.into_iter().map(|i| i.trim().to_owned()).collect())
}

/// `{a, b}` as its items, anything else as one.
fn group(s: &str) -> Vec<String> {
    match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(inner) => inner.split(',').map(|v| v.trim().to_owned()).collect(),
        None => vec![s.trim().to_owned()],
    }
}

/// csh-style braces as glob(3)'s GLOB_BRACE expands them (`{a,b}`, nested,
/// `{,x}` for an empty alternative): the glob crate matches patterns but
/// has no braces.
pub(crate) fn expand_braces(pattern: &str) -> Vec<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let Some(open) = chars.iter().position(|&c| c == '{') else { return vec![pattern.to_owned()] };
    let mut depth = 0;
    let mut commas = Vec::new();
    let mut close = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(i),
            _ => {}
        }
    }
    let Some(close) = close else { return vec![pattern.to_owned()] };
    let prefix: String = chars[..open].iter().collect();
    let suffix: String = chars[close + 1..].iter().collect();
    let mut bounds = vec![open];
    bounds.extend(&commas);
    bounds.push(close);
    bounds
        .windows(2)
        .flat_map(|w| {
            let alternative: String = chars[w[0] + 1..w[1]].iter().collect();
            expand_braces(&format!("{prefix}{alternative}{suffix}"))
        })
        .collect()
}

#[cfg(test)]
mod tests;
