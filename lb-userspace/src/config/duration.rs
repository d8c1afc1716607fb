//! Durations as operators write them: `"500ms"`, `"5s"`, `"2m"`, `"1h"`, or a
//! sum such as `"1m30s"`. A bare number is refused rather than guessed at:
//! keepalived's `delay_loop 6` means seconds, other tools mean milliseconds.

use std::time::Duration;

use toml::Spanned;

use super::{model::RawDuration, span::Problems};

/// The duration under `key`, if written; a problem (at its place) when it
/// does not parse, has no unit, or is zero where `nonzero` asks otherwise.
pub(crate) fn spanned(
    v: &Option<Spanned<RawDuration>>,
    key: &str,
    nonzero: bool,
    problems: &mut Problems,
) -> Option<Duration> {
    let v = v.as_ref()?;
    let parsed = match v.get_ref() {
        RawDuration::Text(text) => parse(text),
        RawDuration::Number(n) => Err(format!("{key} = {n} has no unit: write a string such as \"{n}s\"")),
    };
    match parsed {
        Ok(d) if nonzero && d.is_zero() => {
            problems.push(v.span(), format!("{key} must be greater than zero"));
            None
        }
        Ok(d) => Some(d),
        Err(message) => {
            problems.push(v.span(), message);
            None
        }
    }
}

/// Parses a duration; the error says what was expected, without position
/// (the caller knows where the value is).
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a number and a unit (ms, s, m, h), e.g. \"5s\"";
    if text.is_empty() {
        return Err(format!("empty duration: {HINT}"));
    }
    if text.starts_with('-') {
        return Err(format!("negative duration \"{text}\""));
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("bad duration \"{text}\": {HINT}"));
        }
        let (number, after) = rest.split_at(digits);
        if after.starts_with('.') {
            return Err(format!(
                "bad duration \"{text}\": fractions are not supported, use a smaller unit (\"1500ms\", not \"1.5s\")"
            ));
        }
        let unit_len = after.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("duration \"{text}\" has no unit: {HINT}")),
            _ => return Err(format!("unknown unit \"{unit}\" in duration \"{text}\": expected ms, s, m or h")),
        };
        let too_long = || format!("duration \"{text}\" is too long");
        let millis = number.parse::<u64>().ok().and_then(|n| n.checked_mul(millis_per_unit)).ok_or_else(too_long)?;
        total = total.checked_add(Duration::from_millis(millis)).ok_or_else(too_long)?;
        rest = after;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sums() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(parse("-1s"), Err("negative duration \"-1s\"".into()));
        assert_eq!(
            parse("5"),
            Err("duration \"5\" has no unit: expected a number and a unit (ms, s, m, h), e.g. \"5s\"".into())
        );
        assert_eq!(parse("5sec"), Err("unknown unit \"sec\" in duration \"5sec\": expected ms, s, m or h".into()));
        assert!(parse("1.5s").unwrap_err().contains("fractions are not supported"));
        assert!(parse("").unwrap_err().starts_with("empty duration"));
        assert!(parse("s").unwrap_err().starts_with("bad duration"));
        assert!(parse("5 s").unwrap_err().contains("has no unit"));
        assert_eq!(parse("99999999999999999999h"), Err("duration \"99999999999999999999h\" is too long".into()));
    }
}
