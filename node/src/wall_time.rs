//! RFC 3339 timestamps for people (`2026-11-21T02:00:00Z`, `2026-11-21T11:00:00+09:00`)
//! and milliseconds since the Unix epoch for the cluster. Only silence windows use them.

/// Parses an RFC 3339 timestamp (`T` or a space between date and time; fractional seconds
/// allowed; `Z` or a `+HH:MM` / `-HH:MM` offset required) into milliseconds since the epoch.
///
/// # Errors
/// A message showing the expected form when `s` is not such a timestamp or lies before 1970.
pub fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("invalid time {s:?}: expected RFC 3339, e.g. \"2026-11-21T02:00:00Z\" or \"2026-11-21T11:00:00+09:00\"")
    };
    let t = s.trim();
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let part = t.get(r).ok_or_else(bad)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse::<i64>().map_err(|_| bad())
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &t[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        for (i, c) in frac[..digits.min(3)].bytes().enumerate() {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            if rest.as_bytes()[3] != b':' {
                return Err(bad());
            }
            let h = num(t.len() - 5..t.len() - 3)?;
            let m = num(t.len() - 2..t.len())?;
            if h > 23 || m > 59 {
                return Err(bad());
            }
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 60 + m)
        }
        _ => return Err(bad()),
    };
    let month_u = u32::try_from(month).map_err(|_| bad())?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month_u) {
        return Err(bad());
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let days = days_from_civil(year, month_u, u32::try_from(day).map_err(|_| bad())?);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_min * 60;
    let ms = secs * 1_000 + millis;
    u64::try_from(ms).map_err(|_| format!("invalid time {s:?}: before 1970"))
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(ms: u64) -> String {
    format!("{}Z", date_time(ms))
}

/// Formats milliseconds since the epoch with milliseconds, `YYYY-MM-DDTHH:MM:SS.mmmZ`
/// (Alertmanager's `startsAt`/`endsAt`).
pub fn format_rfc3339_millis(ms: u64) -> String {
    format!("{}.{:03}Z", date_time(ms), ms % 1_000)
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of milliseconds since the epoch.
fn date_time(ms: u64) -> String {
    let secs = i64::try_from(ms / 1_000).unwrap_or(i64::MAX / 2);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let table = [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2026-11-21T02:00:00Z", Some(1_795_226_400_000)),
            ("2026-11-21T11:00:00+09:00", Some(1_795_226_400_000)),
            ("2026-11-20T21:00:00-05:00", Some(1_795_226_400_000)),
            ("2026-11-21 02:00:00.250Z", Some(1_795_226_400_250)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000)),
            ("2025-02-29T00:00:00Z", None),
            ("2026-11-21T02:00:00", None),
            ("2026-11-21", None),
            ("1969-12-31T23:59:59Z", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-11-21T24:00:00Z", None),
            ("tomorrow", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_rfc3339(text).ok(), want, "{text}");
        }
        assert_eq!(format_rfc3339(1_795_226_400_250), "2026-11-21T02:00:00Z");
        assert_eq!(format_rfc3339(1_709_164_800_000), "2024-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
