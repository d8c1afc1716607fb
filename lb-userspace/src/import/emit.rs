//! The lb.toml text. Tables are written in a fixed order with comments
//! saying where each came from and what changed, which an operator needs
//! to review an import: the toml crate's serializer cannot write comments,
//! so the layout is ours and toml_writer (the same project's low-level
//! writer) quotes every key and value.

use std::{fmt::Write as _, time::Duration};

use toml_writer::{ToTomlValue, TomlWrite as _};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Array(Vec<Value>),
    Inline(Vec<(&'static str, Value)>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
        Value::Array(items.into_iter().map(|s| Value::Str(s.into())).collect())
    }

    pub fn duration(d: Duration) -> Value {
        Value::Str(duration(d))
    }

    fn write(&self, out: &mut String) {
        let _ = match self {
            Value::Str(s) => out.write_str(&s.as_str().to_toml_value()),
            Value::Int(n) => out.write_str(&n.to_toml_value()),
            Value::Bool(b) => out.write_str(&b.to_toml_value()),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(out);
                }
                out.write_str("]")
            }
            Value::Inline(fields) => {
                out.push_str("{ ");
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let _ = out.key(*key);
                    out.push_str(" = ");
                    value.write(out);
                }
                out.write_str(" }")
            }
        };
    }
}

/// `"6s"`, or `"1500ms"` where whole seconds do not do.
pub(crate) fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Field {
    pub key: &'static str,
    pub value: Value,
    /// Written after the value on its line.
    pub comment: Option<String>,
}

/// A `[name]` or `[[name]]` table and the tables under it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Table {
    /// The dotted name, such as `vip.backend`.
    pub name: &'static str,
    pub array: bool,
    /// Written above the header.
    pub comments: Vec<String>,
    pub fields: Vec<Field>,
    pub children: Vec<Table>,
}

impl Table {
    pub fn new(name: &'static str, array: bool) -> Table {
        Table { name, array, comments: Vec::new(), fields: Vec::new(), children: Vec::new() }
    }

    pub fn set(&mut self, key: &'static str, value: Value) {
        match self.fields.iter_mut().find(|f| f.key == key) {
            Some(f) => f.value = value,
            None => self.fields.push(Field { key, value, comment: None }),
        }
    }

    /// Sets `key` with a comment after it.
    pub fn set_noted(&mut self, key: &'static str, value: Value, comment: impl Into<String>) {
        self.set(key, value);
        if let Some(f) = self.fields.iter_mut().find(|f| f.key == key) {
            f.comment = Some(comment.into());
        }
    }

    pub fn write(&self, out: &mut String) {
        for c in &self.comments {
            comment_lines(out, c);
        }
        let _ = if self.array {
            out.open_array_of_tables_header()
                .and_then(|()| out.write_str(self.name))
                .and_then(|()| out.close_array_of_tables_header())
        } else {
            out.open_table_header().and_then(|()| out.write_str(self.name)).and_then(|()| out.close_table_header())
        };
        out.push('\n');
        for f in &self.fields {
            let _ = out.key(f.key);
            out.push_str(" = ");
            f.value.write(out);
            if let Some(c) = &f.comment {
                out.push_str("   # ");
                out.push_str(&one_line(c));
            }
            out.push('\n');
        }
        for child in &self.children {
            out.push('\n');
            child.write(out);
        }
    }
}

fn one_line(s: &str) -> String {
    printable(&s.replace(['\n', '\r'], " "))
}

/// Text a TOML comment may hold: keepalived.conf may carry any character into
/// a name we quote, but a comment takes no control character except tab.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_control() && c != '\t' { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

/// `# text`, one line per line of `text`.
pub(crate) fn comment_lines(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "# {}", printable(line));
    }
}

/// The whole file: a header comment, the tables, and what was left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Document {
    pub header: Vec<String>,
    pub tables: Vec<Table>,
    pub left_out: Vec<String>,
}

impl Document {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for h in &self.header {
            comment_lines(&mut out, h);
        }
        for t in &self.tables {
            if !out.is_empty() {
                out.push('\n');
            }
            t.write(&mut out);
        }
        if !self.left_out.is_empty() {
            out.push_str("\n# Not imported (each is an error or warning of `lb import`):\n");
            for l in &self.left_out {
                comment_lines(&mut out, &format!("  {l}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_written_with_their_comments_and_quoted_values() {
        let mut vip = Table::new("vip", true);
        vip.comments.push("virtual_server 10.0.0.1 80 (k.conf:3)".to_owned());
        vip.set("address", Value::str("10.0.0.1"));
        vip.set_noted("port", Value::Int(80), "as written");
        let mut backend = Table::new("vip.backend", true);
        backend.set("address", Value::str("a\"b"));
        backend.set("inhibit_on_failure", Value::Bool(true));
        vip.children.push(backend);
        let mut vrrp = Table::new("vrrp", true);
        vrrp.set(
            "virtual_ipaddress",
            Value::Array(vec![
                Value::str("10.0.0.1/32"),
                Value::Inline(vec![("address", Value::str("10.0.1.1/24")), ("dev", Value::str("eth1"))]),
            ]),
        );
        let doc = Document { header: vec!["top".to_owned()], tables: vec![vip, vrrp], left_out: vec!["x".to_owned()] };
        assert_eq!(
            doc.text(),
            "# top\n\n# virtual_server 10.0.0.1 80 (k.conf:3)\n[[vip]]\naddress = \"10.0.0.1\"\nport = 80   # as written\n\n\
             [[vip.backend]]\naddress = 'a\"b'\ninhibit_on_failure = true\n\n[[vrrp]]\n\
             virtual_ipaddress = [\"10.0.0.1/32\", { address = \"10.0.1.1/24\", dev = \"eth1\" }]\n\n\
             # Not imported (each is an error or warning of `lb import`):\n#   x\n"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_secs(6)), "6s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::ZERO), "0s");
    }
}
