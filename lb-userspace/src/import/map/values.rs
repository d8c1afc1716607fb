//! keepalived's scalar arguments: numbers, timers in (fractional) seconds,
//! `<BOOL>`s and addresses, each refused at its word with what was expected.

use std::{net::IpAddr, ops::RangeInclusive, time::Duration};

use super::Cx;
use crate::import::{tree::Node, words::Word};

impl Cx<'_> {
    /// The `index`th argument, or an error naming what is missing.
    pub fn arg<'n>(&mut self, node: &'n Node, index: usize, what: &str) -> Option<&'n Word> {
        let found = node.args.get(index);
        if found.is_none() {
            self.report.error(node.at(), format!("`{}` needs {what}: line not imported", node.name()));
        }
        found
    }

    /// A whole number in `range` (keepalived reads them with `strtoul`).
    pub fn number(&mut self, word: &Word, what: &str, range: RangeInclusive<i64>) -> Option<i64> {
        match word.text.parse::<i64>() {
            Ok(n) if range.contains(&n) => Some(n),
            _ => {
                self.report.error(
                    word.at,
                    format!(
                        "{what} \"{}\": expected a whole number in {}..={}: not imported",
                        word.text,
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    /// The first argument of `node` as a whole number.
    pub fn number_arg(&mut self, node: &Node, range: RangeInclusive<i64>) -> Option<i64> {
        let word = self.arg(node, 0, "a number")?;
        self.extra_args(node, 1);
        self.number(word, &format!("`{}`", node.name()), range)
    }

    /// A timer in seconds, fractions allowed (keepalived's `<TIMER>`),
    /// to the millisecond lb's durations count in.
    pub fn timer(&mut self, word: &Word, what: &str) -> Option<Duration> {
        let seconds = word.text.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9);
        let Some(seconds) = seconds else {
            self.report
                .error(word.at, format!("{what} \"{}\": expected seconds such as 3 or 0.5: not imported", word.text));
            return None;
        };
        let millis = (seconds * 1000.0).round();
        if (seconds * 1_000_000.0).round() != millis * 1000.0 {
            self.report.warn(word.at, format!("{what} {seconds}s rounded to {millis}ms: lb counts milliseconds"));
        }
        Some(Duration::from_millis(millis as u64))
    }

    pub fn timer_arg(&mut self, node: &Node) -> Option<Duration> {
        let word = self.arg(node, 0, "a time in seconds")?;
        self.extra_args(node, 1);
        self.timer(word, &format!("`{}`", node.name()))
    }

    /// keepalived's `<BOOL>`, true when absent (a bare keyword turns it on).
    pub fn flag(&mut self, node: &Node) -> bool {
        let Some(word) = node.args.first() else { return true };
        self.extra_args(node, 1);
        match word.text.as_str() {
            "on" | "true" | "yes" => true,
            "off" | "false" | "no" => false,
            other => {
                self.report.error(
                    word.at,
                    format!("`{}` {other}: expected on, off, true, false, yes or no: taken as on", node.name()),
                );
                true
            }
        }
    }

    pub fn address(&mut self, word: &Word, what: &str) -> Option<IpAddr> {
        match word.text.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.report.error(
                    word.at,
                    format!("{what} \"{}\": expected an IPv4 or IPv6 address: not imported", word.text),
                );
                None
            }
        }
    }
}
