//! lb's own validation of what the import produced: each imported item is
//! put in a file of its own and read with [`Config::from_str`], so that one
//! lb refuses is left out with lb's reason, at the place in keepalived.conf
//! it came from, and the rest is still imported.

use super::emit::{Document, Table};
use crate::config::Config;

/// The name the probed text goes by; stripped from lb's messages.
const NAME: &str = "lb.toml";

/// lb's messages about a file made of `tables`, if it refuses it.
pub(crate) fn check(tables: &[&Table]) -> Result<(), Vec<String>> {
    let doc = Document { tables: tables.iter().map(|t| (*t).clone()).collect(), ..Document::default() };
    messages(&doc.text())
}

/// lb's messages about `text`, without the file name and position (they
/// point into text nobody sees).
pub(crate) fn messages(text: &str) -> Result<(), Vec<String>> {
    match Config::from_str(text, NAME) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string().lines().map(strip_position).collect()),
    }
}

fn strip_position(line: &str) -> String {
    let rest = line.strip_prefix(NAME).and_then(|r| r.strip_prefix(':'));
    let Some(rest) = rest else { return line.to_owned() };
    // line:column: message
    let mut parts = rest.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(l), Some(c), Some(m)) if l.parse::<u32>().is_ok() && c.parse::<u32>().is_ok() => m.trim().to_owned(),
        _ => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::emit::Value;

    #[test]
    fn accepted_and_refused() {
        let mut vip = Table::new("vip", true);
        vip.set("address", Value::str("10.0.0.1"));
        vip.set("port", Value::Int(80));
        vip.set("interface", Value::str("eth0"));
        assert_eq!(check(&[&vip]), Ok(()));
        vip.set("port", Value::Int(70000));
        assert_eq!(check(&[&vip]), Err(vec!["port 70000 out of range 0..=65535".to_owned()]));
    }
}
