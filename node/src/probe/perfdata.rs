//! Nagios performance data: `'label'=value[UOM];[warn];[crit];[min];[max]` items separated
//! by whitespace, as printed after the `|` of a plugin's output.
//!
//! The parser never fails: an item it cannot read is skipped and the next one is tried,
//! because a plugin's verdict (its exit code) stands even when its measurements are
//! garbled. It keeps at most `PERFDATA_ITEMS_MAX` items; labels and units are cut to
//! `PERF_LABEL_BYTES_MAX` bytes by [`Perf::new`].
//!
//! Thresholds are Nagios ranges (`10`, `10:20`, `~:5`, `@1:3`, `10:`). A `Perf` keeps one
//! number per threshold, so the parser keeps the range's upper bound (`10:20` -> 20,
//! `~:5` -> 5, `@1:3` -> 3) and stores `None` when there is no finite upper bound (`10:`,
//! `~:`) or the text is not a number. Whether the range is inside (`@`) or outside is
//! lost; the plugin's own exit code has already applied it.

use consentry_cluster::model::{Perf, PERFDATA_ITEMS_MAX};

/// Units of measure from the Nagios plugin guidelines (plus `GB`, which plugins print
/// although the guidelines omit it). Other alphabetic units (`KiB`, `Hz`, `Gb`) are kept
/// as printed; anything else after the number makes the item malformed.
const UNITS_KNOWN: &[&str] = &["s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"];

/// Longest unit accepted that is not one of `UNITS_KNOWN`.
const UNIT_OTHER_BYTES_MAX: usize = 8;

/// Fields after the label: value, warn, crit, min, max.
const ITEM_FIELDS_MAX: usize = 5;

/// Parses the performance data in `text` (any whitespace, including newlines, separates
/// items), keeping at most `PERFDATA_ITEMS_MAX` well-formed items in order.
pub(super) fn parse(text: &str) -> Vec<Perf> {
    let mut items = Vec::new();
    let mut rest = text;
    while items.len() < PERFDATA_ITEMS_MAX {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let (item, after) = split_item(rest);
        if let Some(perf) = item {
            items.push(perf);
        }
        rest = after;
    }
    items
}

/// Reads one item from the start of `text` (not starting with whitespace): the item, if
/// well formed, and the text after it.
fn split_item(text: &str) -> (Option<Perf>, &str) {
    let (label, after_label) = if let Some(quoted) = text.strip_prefix('\'') {
        match quoted_label(quoted) {
            Some(found) => found,
            // An unterminated quote swallows the rest: nothing after it can be trusted to
            // start an item.
            None => return (None, ""),
        }
    } else {
        let end = text
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(text.len());
        (text[..end].to_string(), &text[end..])
    };
    let Some(after_eq) = after_label.strip_prefix('=') else {
        return (None, skip_token(after_label));
    };
    let end = after_eq.find(char::is_whitespace).unwrap_or(after_eq.len());
    let (fields, rest) = after_eq.split_at(end);
    if label.is_empty() {
        return (None, rest);
    }
    (item(&label, fields), rest)
}

/// Reads a quoted label after its opening quote, `''` standing for one quote: the label
/// and the text after the closing quote, or `None` when the quote never closes.
fn quoted_label(text: &str) -> Option<(String, &str)> {
    let mut label = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            label.push(c);
            continue;
        }
        if text[i + 1..].starts_with('\'') {
            label.push('\'');
            chars.next();
            continue;
        }
        return Some((label, &text[i + 1..]));
    }
    None
}

/// Skips to the next whitespace.
fn skip_token(text: &str) -> &str {
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    &text[end..]
}

/// Builds an item from `value[UOM];warn;crit;min;max` (trailing fields optional).
fn item(label: &str, fields: &str) -> Option<Perf> {
    let mut parts = fields.splitn(ITEM_FIELDS_MAX, ';');
    let (value, unit) = value_and_unit(parts.next()?)?;
    let warn = parts.next().and_then(range_upper);
    let crit = parts.next().and_then(range_upper);
    let min = parts.next().and_then(number);
    // Some plugins end the item with a stray `;` (`0;` after max); keep what precedes it.
    let max = parts.next().and_then(|max| number(max.split(';').next()?));
    let mut perf = Perf::new(label, value, unit);
    perf.warn = warn;
    perf.crit = crit;
    perf.min = min;
    perf.max = max;
    Some(perf)
}

/// Splits `12.5ms` into its number and unit; `None` when there is no finite number
/// (including Nagios's `U` for "undetermined") or the unit is not acceptable.
fn value_and_unit(text: &str) -> Option<(f64, &str)> {
    let numeric_end = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E')))
        .unwrap_or(text.len());
    // The numeric characters may run into a unit starting with `e`: give back characters
    // until what is left parses. All of them are ASCII, so every index is a boundary.
    let mut end = numeric_end;
    let value = loop {
        if end == 0 {
            return None;
        }
        if let Some(value) = number(&text[..end]) {
            break value;
        }
        end -= 1;
    };
    let unit = &text[end..];
    unit_ok(unit).then_some((value, unit))
}

fn unit_ok(unit: &str) -> bool {
    UNITS_KNOWN.contains(&unit)
        || (unit.len() <= UNIT_OTHER_BYTES_MAX
            && unit.chars().all(|c| c.is_ascii_alphabetic() || c == '/'))
}

/// The upper bound of a Nagios range, if it is a finite number.
fn range_upper(text: &str) -> Option<f64> {
    let text = text.strip_prefix('@').unwrap_or(text);
    let upper = match text.split_once(':') {
        Some((_start, end)) => end,
        None => text,
    };
    number(upper)
}

/// A finite number, or `None` (empty, malformed, `inf`, `NaN`: none of them survive a
/// round trip through JSON).
fn number(text: &str) -> Option<f64> {
    let text = text.trim();
    // `f64::from_str` accepts `inf` and `NaN` spelled out; perfdata numbers are digits.
    if !text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '.' | '+' | '-')) {
        return None;
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use consentry_cluster::model::PERF_LABEL_BYTES_MAX;

    /// (label, value, unit, warn, crit, min, max)
    type Want = (
        &'static str,
        f64,
        &'static str,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    );

    fn check(text: &str, want: &[Want]) {
        type Owned = (
            String,
            f64,
            String,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
        );
        let got: Vec<Owned> = parse(text)
            .into_iter()
            .map(|p| (p.label, p.value, p.unit, p.warn, p.crit, p.min, p.max))
            .collect();
        let want: Vec<Owned> = want
            .iter()
            .map(|&(label, value, unit, warn, crit, min, max)| {
                (
                    label.to_string(),
                    value,
                    unit.to_string(),
                    warn,
                    crit,
                    min,
                    max,
                )
            })
            .collect();
        assert_eq!(got, want, "perfdata {text:?}");
    }

    #[test]
    fn real_plugin_outputs() {
        let cases: &[(&str, &[Want])] = &[
            // check_http
            (
                "time=0.002275s;;;0.000000;10.000000 size=612B;;;0",
                &[
                    ("time", 0.002275, "s", None, None, Some(0.0), Some(10.0)),
                    ("size", 612.0, "B", None, None, Some(0.0), None),
                ],
            ),
            // check_disk
            (
                "/=2643MB;3781;4253;0;4726 /boot=68MB;88;99;0;110",
                &[
                    (
                        "/",
                        2643.0,
                        "MB",
                        Some(3781.0),
                        Some(4253.0),
                        Some(0.0),
                        Some(4726.0),
                    ),
                    (
                        "/boot",
                        68.0,
                        "MB",
                        Some(88.0),
                        Some(99.0),
                        Some(0.0),
                        Some(110.0),
                    ),
                ],
            ),
            // check_load (note the trailing `;` after min)
            (
                "load1=0.210;15.000;30.000;0; load5=0.180;10.000;25.000;0; load15=0.120;5.000;20.000;0; ",
                &[
                    ("load1", 0.21, "", Some(15.0), Some(30.0), Some(0.0), None),
                    ("load5", 0.18, "", Some(10.0), Some(25.0), Some(0.0), None),
                    ("load15", 0.12, "", Some(5.0), Some(20.0), Some(0.0), None),
                ],
            ),
            // check_ping
            (
                "rta=0.044000ms;100.000000;500.000000;0.000000 pl=0%;20;60;0",
                &[
                    (
                        "rta",
                        0.044,
                        "ms",
                        Some(100.0),
                        Some(500.0),
                        Some(0.0),
                        None,
                    ),
                    ("pl", 0.0, "%", Some(20.0), Some(60.0), Some(0.0), None),
                ],
            ),
            // check_icmp
            (
                "rta=0.042ms;200.000;500.000;0; pl=0%;40;80;; rtmax=0.071ms;;;; rtmin=0.030ms;;;;",
                &[
                    ("rta", 0.042, "ms", Some(200.0), Some(500.0), Some(0.0), None),
                    ("pl", 0.0, "%", Some(40.0), Some(80.0), None, None),
                    ("rtmax", 0.071, "ms", None, None, None, None),
                    ("rtmin", 0.03, "ms", None, None, None, None),
                ],
            ),
            // check_procs, check_users, check_ntp
            (
                "procs=123;;;0; users=1;5;10;0 offset=-0.002034s;60.000000;120.000000;",
                &[
                    ("procs", 123.0, "", None, None, Some(0.0), None),
                    ("users", 1.0, "", Some(5.0), Some(10.0), Some(0.0), None),
                    ("offset", -0.002034, "s", Some(60.0), Some(120.0), None, None),
                ],
            ),
            // NSClient++ style quoted labels with spaces and a unit outside the guidelines
            (
                "'C:\\ Used Space'=20.07Gb;31.99;35.99;0;39.99 'C:\\ %'=50%;80;90",
                &[
                    (
                        "C:\\ Used Space",
                        20.07,
                        "Gb",
                        Some(31.99),
                        Some(35.99),
                        Some(0.0),
                        Some(39.99),
                    ),
                    ("C:\\ %", 50.0, "%", Some(80.0), Some(90.0), None, None),
                ],
            ),
        ];
        for (text, want) in cases {
            check(text, want);
        }
    }

    #[test]
    fn ranges_keep_their_upper_bound() {
        let cases: &[(&str, Option<f64>, Option<f64>)] = &[
            ("a=1;10;20", Some(10.0), Some(20.0)),
            ("a=1;10:20;30:40", Some(20.0), Some(40.0)),
            ("a=1;~:5;@1:3", Some(5.0), Some(3.0)),
            ("a=1;@10;@~:7.5", Some(10.0), Some(7.5)),
            ("a=1;10:;~:", None, None),
            ("a=1;x;1:y", None, None),
            ("a=1;inf;NaN", None, None),
            ("a=1;;", None, None),
        ];
        for &(text, warn, crit) in cases {
            let got = parse(text);
            assert_eq!(got.len(), 1, "{text}");
            assert_eq!((got[0].warn, got[0].crit), (warn, crit), "{text}");
        }
    }

    #[test]
    fn quoted_labels_unescape_doubled_quotes() {
        let got = parse("'it''s here'=1 '='=2 'a b'=3c");
        let labels: Vec<&str> = got.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["it's here", "=", "a b"]);
        assert_eq!(got[2].unit, "c");
    }

    #[test]
    fn malformed_items_are_skipped() {
        // (text, labels kept)
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   \n\t ", &[]),
            ("garbage ok=1", &["ok"]),
            ("=5 ok=1", &["ok"]),
            ("''=5 ok=1", &["ok"]),
            ("a= ok=1", &["ok"]),
            ("a=U;1;2 ok=1", &["ok"]),
            ("a=abc ok=1", &["ok"]),
            ("a=1.2.3 ok=1", &["ok"]),
            ("a=5 apples ok=1", &["a", "ok"]),
            ("a=5%% ok=1", &["ok"]),
            ("a=5averyverylongunit ok=1", &["ok"]),
            ("a=inf b=NaN c=1e999 ok=1", &["ok"]),
            ("ok=1 'unterminated=2 b=3", &["ok"]),
            ("a=1e3ms", &["a"]),
            ("a=5e", &["a"]),
            ("x=1\ny=2\r\nz=3", &["x", "y", "z"]),
            ("ümlaut=1 'ü ü'=2", &["ümlaut", "ü ü"]),
        ];
        for &(text, want) in cases {
            let got = parse(text);
            let labels: Vec<&str> = got.iter().map(|p| p.label.as_str()).collect();
            assert_eq!(labels, want, "perfdata {text:?}");
        }
        assert_eq!(parse("a=1e3ms")[0].value, 1000.0);
        assert_eq!(parse("a=5e")[0].unit, "e");
    }

    #[test]
    fn output_is_bounded() {
        let many: Vec<String> = (0..PERFDATA_ITEMS_MAX * 3)
            .map(|i| format!("m{i}=1"))
            .collect();
        let got = parse(&many.join(" "));
        assert_eq!(got.len(), PERFDATA_ITEMS_MAX);
        assert_eq!(got[0].label, "m0");

        let long = format!("'{}'=1", "é".repeat(PERF_LABEL_BYTES_MAX));
        let got = parse(&long);
        assert_eq!(got.len(), 1);
        assert!(got[0].label.len() <= PERF_LABEL_BYTES_MAX);
        assert!(got[0].label.starts_with('é'));
    }
}
