//! Rules for single values that several tables share, so that a VIP's
//! `interface` and a VRRP instance's `interface` are judged alike.

use std::ops::RangeInclusive;

use toml::Spanned;

use super::span::Problems;

/// IFNAMSIZ less the terminating NUL.
pub(crate) const MAX_INTERFACE_NAME: usize = 15;

/// Largest `fall` or `rise`, of health checks and VRRP track scripts alike:
/// up to a thousand retries covers any sane interval; more is a typo.
pub(crate) const MAX_FALL_RISE: i64 = 1000;

/// An integer in `range`, converted; `None` (and a problem) otherwise.
pub(crate) fn int_in<T: TryFrom<i64>>(
    v: &Spanned<i64>,
    key: &str,
    range: RangeInclusive<i64>,
    problems: &mut Problems,
) -> Option<T> {
    let n = *v.get_ref();
    match T::try_from(n) {
        Ok(t) if range.contains(&n) => Some(t),
        _ => {
            problems.push(v.span(), format!("{key} {n} out of range {}..={}", range.start(), range.end()));
            None
        }
    }
}

/// A `fall` or `rise` count.
pub(crate) fn fall_rise(v: &Spanned<i64>, key: &str, problems: &mut Problems) -> Option<u32> {
    int_in(v, key, 1..=MAX_FALL_RISE, problems)
}

/// Whether `v` names an interface the kernel could have; a problem at `v`
/// otherwise.
pub(crate) fn interface_name(v: &Spanned<String>, problems: &mut Problems) -> bool {
    let name = v.get_ref();
    if is_interface_name(name) {
        return true;
    }
    // "eth0:1" is how `ip addr` and ifconfig show an address label, which
    // operators carry over from keepalived.conf as if it were a device.
    let hint = if name.contains(':') {
        format!(" (\"{}\" looks like an address label: labels go in virtual_ipaddress `label`)", name.escape_debug())
    } else {
        String::new()
    };
    problems.push(
        v.span(),
        format!(
            "bad interface name \"{}\": expected 1 to {MAX_INTERFACE_NAME} bytes, not \".\" or \"..\", \
             without '/', ':', '%' or spaces{hint}",
            name.escape_debug()
        ),
    );
    false
}

/// The kernel's own rule (`dev_valid_name`, and `dev_alloc_name` for '%'),
/// so that a name is refused here exactly when no interface can bear it.
/// ':' is refused by the kernel because `ip` and ifconfig write an address
/// label as "dev:label"; '%' because the kernel reads it as a number
/// template ("eth%d") and never leaves one in a name.
pub(crate) fn is_interface_name(name: &str) -> bool {
    // The kernel's `isspace` follows its Latin-1 ctype table, where byte
    // 0xa0 (no-break space) is a space too: it refuses UTF-8 names that
    // contain that byte ("à" is C3 A0) and accepts other Unicode spaces.
    let refused = |b: u8| matches!(b, b'/' | b':' | b'%' | b' ' | b'\t'..=b'\r' | 0xa0);
    !name.is_empty() && name.len() <= MAX_INTERFACE_NAME && name != "." && name != ".." && !name.bytes().any(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel() {
        // Each of these was checked against `ip link add NAME type dummy`.
        for good in ["eth0", "lo", "a.b-c_d", "abcdefghijklmno", "é", "a,b", "a\\b", "...", "vlan.100", "a\u{1}b"] {
            assert!(is_interface_name(good), "{good:?} should be accepted");
        }
        let refused = [
            "",
            ".",
            "..",
            "abcdefghijklmnop",
            "eth0:1",
            "a/b",
            "a b",
            "a\tb",
            "a\nb",
            "eth%d",
            // 8 characters but 16 bytes.
            "éééééééé",
            // Byte 0xa0 is a space to the kernel.
            "à",
        ];
        for bad in refused {
            assert!(!is_interface_name(bad), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_bad_interface_name_says_what_is_expected() {
        let mut problems = Problems::default();
        let text = "interface = \"eth0:1\"\n";
        assert!(!interface_name(&Spanned::new(12..20, "eth0:1".to_owned()), &mut problems));
        assert!(interface_name(&Spanned::new(12..20, "eth0".to_owned()), &mut problems));
        let e = problems.into_result("lb.toml".as_ref(), text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lb.toml:1:13: bad interface name \"eth0:1\": expected 1 to 15 bytes, not \".\" or \"..\", \
             without '/', ':', '%' or spaces (\"eth0:1\" looks like an address label: labels go in \
             virtual_ipaddress `label`)"
        );
    }

    #[test]
    fn fall_and_rise_share_one_limit() {
        let mut problems = Problems::default();
        assert_eq!(fall_rise(&Spanned::new(0..4, 1000), "fall", &mut problems), Some(1000));
        assert_eq!(fall_rise(&Spanned::new(0..4, 1001), "rise", &mut problems), None);
        assert_eq!(fall_rise(&Spanned::new(0..1, 0), "rise", &mut problems), None);
        let e = problems.into_result("lb.toml".as_ref(), "1001\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "lb.toml:1:1: rise 0 out of range 1..=1000\nlb.toml:1:1: rise 1001 out of range 1..=1000"
        );
    }
}
