//! Go `time` text forms that sops relies on: `MarshalText` (RFC 3339 with nanoseconds,
//! trailing zeros dropped) for `type:time` values, and RFC 3339 whole seconds for
//! `lastmodified`, whose re-formatted text is the MAC's AAD.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

fn parse(s: &str) -> Option<OffsetDateTime> {
    // Go's RFC 3339 layout needs the `T`; the `time` crate would also take a space.
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    // Go accepts a lower-case `t`/`z` too; the `time` crate wants the upper-case forms.
    let fixed: String = s
        .char_indices()
        .map(|(i, c)| match c {
            't' if i == 10 => 'T',
            'z' if i == s.len() - 1 => 'Z',
            c => c,
        })
        .collect();
    OffsetDateTime::parse(&fixed, &Rfc3339).ok()
}

fn offset_text(off: UtcOffset) -> String {
    if off.is_utc() {
        return "Z".into();
    }
    let (h, m, _) = off.as_hms();
    let sign = if off.is_negative() { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
}

fn date_time(t: &OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Go `time.Time.MarshalText` of a parsed RFC 3339 text.
pub fn canonical_rfc3339(s: &str) -> Option<String> {
    let t = parse(s)?;
    Some(marshal_text(&t))
}

/// Go `time.Time.MarshalText`.
pub fn marshal_text(t: &OffsetDateTime) -> String {
    let mut out = date_time(t);
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(&offset_text(t.offset()));
    out
}

/// `lastmodified` as sops re-formats it before using it as the MAC's AAD
/// (`time.RFC3339`: whole seconds, `Z` for a zero offset).
pub fn lastmodified_aad(s: &str) -> Option<String> {
    let t = parse(s)?;
    Some(format!("{}{}", date_time(&t), offset_text(t.offset())))
}

/// The current time as sops writes `lastmodified`.
pub fn now_lastmodified() -> String {
    let t = OffsetDateTime::now_utc();
    format!("{}Z", date_time(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lastmodified_is_reformatted_like_go() {
        let want = Some("2026-11-26T06:33:05Z".to_string());
        assert_eq!(lastmodified_aad("2026-11-26T06:33:05Z"), want);
        assert_eq!(lastmodified_aad("2026-11-26T06:33:05+00:00"), want);
        assert_eq!(lastmodified_aad("2026-11-26T06:33:05.000Z"), want);
        assert_eq!(lastmodified_aad("2026-11-26T06:33:05.9Z"), want);
        assert_eq!(
            lastmodified_aad("2026-11-26T08:33:05+02:00").as_deref(),
            Some("2026-11-26T08:33:05+02:00")
        );
        assert_eq!(lastmodified_aad("2026-11-26 06:33:05Z"), None);
    }

    #[test]
    fn marshal_text_drops_trailing_zeros() {
        assert_eq!(
            canonical_rfc3339("2024-01-15T10:30:00.123456789Z").as_deref(),
            Some("2024-01-15T10:30:00.123456789Z")
        );
        assert_eq!(
            canonical_rfc3339("2024-01-15T10:30:00.120Z").as_deref(),
            Some("2024-01-15T10:30:00.12Z")
        );
        assert_eq!(
            canonical_rfc3339("2024-01-15T10:30:00+02:00").as_deref(),
            Some("2024-01-15T10:30:00+02:00")
        );
    }
}
