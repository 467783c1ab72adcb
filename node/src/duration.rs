//! Human durations in config files: `"500ms"`, `"10s"`, `"5m"`, `"2h"`.

/// Parses a duration string into milliseconds.
///
/// # Errors
/// A message naming the accepted forms when `s` is not a positive integer followed by one of
/// `ms`, `s`, `m`, `h`, or when the value overflows.
pub fn parse_ms(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!("invalid duration {s:?}: expected a whole number followed by ms, s, m or h (e.g. \"30s\")")
    };
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(parse_ms("500ms"), Ok(500));
        assert_eq!(parse_ms("10s"), Ok(10_000));
        assert_eq!(parse_ms("5m"), Ok(300_000));
        assert_eq!(parse_ms("2h"), Ok(7_200_000));
        for bad in [
            "",
            "s",
            "10",
            "1.5s",
            "-1s",
            "10 sec",
            "99999999999999999999h",
        ] {
            assert!(parse_ms(bad).is_err(), "{bad}");
        }
    }
}
