//! Go-style durations (`"1m"`, `"30s"`, `"1h30m"`, `"500ms"`), the form Flux and
//! kubectl users write in specs. Parsed strictly: no sign, at least one `<number><unit>`
//! pair, units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`; decimals allowed (`"1.5h"`).

use std::time::Duration;

/// The pattern the CRD schema puts on every duration field, so that the API server
/// refuses a malformed value before the reconciler sees it.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("{0:?} is not a duration: expected numbers with units such as 30s, 5m, 1h30m")]
    Syntax(String),
    #[error("{0:?} is too large")]
    Overflow(String),
}

/// Parses a Go-style duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let syntax = || DurationError::Syntax(text.to_owned());
    // Go accepts a bare "0"; keep that one convenience.
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0; // nanoseconds
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(syntax)?;
        let (num, tail) = rest.split_at(num_len);
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if int_part.is_empty() || (num.contains('.') && frac_part.is_empty()) {
            return Err(syntax());
        }
        if frac_part.contains('.') {
            return Err(syntax());
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return Err(syntax()),
        };
        let overflow = || DurationError::Overflow(text.to_owned());
        let whole: u128 = int_part.parse().map_err(|_| overflow())?;
        let mut nanos = whole.checked_mul(scale).ok_or_else(overflow)?;
        // Fractions: only as many digits as can matter at nanosecond resolution.
        let mut div: u128 = 1;
        let mut frac: u128 = 0;
        for d in frac_part.chars().take(18) {
            frac = frac * 10 + u128::from(d.to_digit(10).ok_or_else(syntax)?);
            div *= 10;
        }
        nanos = nanos.checked_add(frac * scale / div).ok_or_else(overflow)?;
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        rest = next;
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(text.to_owned()))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Formats a duration the way Go prints it (`1h30m0s`, `2.5s`, `150ms`), for status and
/// history entries.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        // Sub-second: the largest unit that keeps an integer part.
        let (value, unit) = if nanos < 1_000 {
            return format!("{nanos}ns");
        } else if nanos < 1_000_000 {
            (nanos as f64 / 1e3, "µs")
        } else {
            (nanos as f64 / 1e6, "ms")
        };
        return format!("{}{unit}", trim_float(value));
    }
    let secs_total = d.as_secs();
    let (h, m, s) = (secs_total / 3600, (secs_total / 60) % 60, secs_total % 60);
    let sub = d.subsec_nanos();
    let secs = if sub == 0 {
        s.to_string()
    } else {
        trim_float(s as f64 + f64::from(sub) / 1e9)
    };
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("1m", 60_000),
            ("30s", 30_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("1.5h", 5_400_000),
            ("2m3s", 123_000),
            ("0", 0),
            ("0s", 0),
            ("1500us", 1),
            ("1500µs", 1),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text).map(|d| d.as_millis()),
                Ok(ms),
                "{text}"
            );
        }
        assert_eq!(parse_duration("10ns"), Ok(Duration::from_nanos(10)));
    }

    #[test]
    fn refuses_malformed_durations() {
        for bad in [
            "", "  ", "5", "m", "1x", "-1s", "1.s", ".5s", "1..5s", "1s2", "1 s", "1d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(matches!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn the_schema_pattern_agrees_with_the_parser() {
        let re = regex::Regex::new(DURATION_PATTERN).unwrap();
        for ok in ["1m", "30s", "1h30m", "1.5h", "250ms"] {
            assert!(re.is_match(ok) && parse_duration(ok).is_ok(), "{ok}");
        }
        for bad in ["5", "1x", "-1s", "1 s", ""] {
            assert!(!re.is_match(bad) && parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(150)), "150ms");
        assert_eq!(format_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m0s");
        for d in ["1h30m0s", "2.5s", "150ms", "1m30s"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }
}
