//! Silences (maintenance windows): an operator's wall-clock schedule that holds the
//! notifications of the checks it matches. Results and incidents are still recorded.
//!
//! A silence's window is judged against the wall time the leader puts in each `Tick`
//! (`ClusterState::wall_ms`), never against a replica's own clock, so every replica agrees
//! on whether a silence is active. The window is an operator's schedule ("02:00 to 04:00"),
//! which is the one place a wall clock is the right measure; freshness and confirmation
//! still count ticks.

use serde::{Deserialize, Serialize};

use super::check::CheckSpec;
use super::result::{displayable, truncate};

/// Longest silence reason kept.
pub const SILENCE_REASON_BYTES_MAX: usize = 512;
/// Longest name pattern, label key or label value of a matcher.
pub const SILENCE_PATTERN_BYTES_MAX: usize = 256;
/// Longest silence window.
pub const SILENCE_DURATION_MS_MAX: u64 = 366 * 24 * 3_600_000;

/// Which checks a silence holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matcher {
    /// A check name, or a glob over names: `*` matches any run of characters, `?` one.
    Name(String),
    /// Checks whose label `key` has exactly this value.
    Label { key: String, value: String },
}

impl Matcher {
    /// Parses `NAME_OR_GLOB` or `label=value`.
    ///
    /// # Errors
    /// A message saying which form is expected when `s` is empty, too long, or has an
    /// empty label key.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err(
                "the match is empty: give a check name, a glob like \"web-*\", or label=value"
                    .into(),
            );
        }
        if s.len() > SILENCE_PATTERN_BYTES_MAX {
            return Err(format!(
                "the match is {} bytes; the limit is {SILENCE_PATTERN_BYTES_MAX}",
                s.len()
            ));
        }
        match s.split_once('=') {
            Some((key, value)) => {
                let key = key.trim();
                if key.is_empty() {
                    return Err(format!(
                        "match {s:?}: a label match needs a key, as in team=infra"
                    ));
                }
                Ok(Matcher::Label {
                    key: key.to_string(),
                    value: value.trim().to_string(),
                })
            }
            None => Ok(Matcher::Name(s.to_string())),
        }
    }

    pub fn matches(&self, check: &CheckSpec) -> bool {
        match self {
            Matcher::Name(pattern) => glob_match(pattern, &check.name),
            Matcher::Label { key, value } => check.labels.get(key) == Some(value),
        }
    }

    fn len(&self) -> usize {
        match self {
            Matcher::Name(p) => p.len(),
            Matcher::Label { key, value } => key.len() + value.len() + 1,
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matcher::Name(p) => f.write_str(p),
            Matcher::Label { key, value } => write!(f, "{key}={value}"),
        }
    }
}

/// What `AddSilence` carries: the operator's request, before the cluster gives it an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceSpec {
    pub matcher: Matcher,
    /// Wall-clock window `[start_ms, end_ms)`, milliseconds since the Unix epoch.
    pub start_ms: u64,
    pub end_ms: u64,
    pub reason: String,
}

impl SilenceSpec {
    /// Checks the window and the bounds.
    ///
    /// # Errors
    /// A message saying what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.matcher.len() > SILENCE_PATTERN_BYTES_MAX {
            return Err(format!(
                "the match is longer than {SILENCE_PATTERN_BYTES_MAX} bytes"
            ));
        }
        if let Matcher::Label { key, .. } = &self.matcher {
            if key.is_empty() {
                return Err("a label match needs a key".into());
            }
        }
        if self.end_ms <= self.start_ms {
            return Err("the silence must end after it starts".into());
        }
        if self.end_ms - self.start_ms > SILENCE_DURATION_MS_MAX {
            return Err(format!(
                "the silence is longer than {} days",
                SILENCE_DURATION_MS_MAX / 86_400_000
            ));
        }
        if self.reason.trim().is_empty() {
            return Err("a silence needs a reason".into());
        }
        Ok(())
    }

    /// The spec with its reason made displayable and cut to `SILENCE_REASON_BYTES_MAX`.
    pub fn normalized(&self) -> Self {
        let mut s = self.clone();
        s.reason = truncate(&displayable(&s.reason), SILENCE_REASON_BYTES_MAX);
        s
    }
}

/// A silence as the cluster keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// From the state's counter: identical on every replica.
    pub id: u64,
    pub matcher: Matcher,
    pub start_ms: u64,
    pub end_ms: u64,
    pub reason: String,
    /// Log index of the `AddSilence` entry.
    pub created_index: u64,
}

impl Silence {
    /// Whether the window covers `now_ms` (the leader's tick time).
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.start_ms <= now_ms && now_ms < self.end_ms
    }

    /// Whether the window is over at `now_ms`: the silence can be pruned.
    pub fn is_over(&self, now_ms: u64) -> bool {
        self.end_ms <= now_ms
    }
}

/// Matches `name` against a glob: `*` any run of characters (also none), `?` exactly one.
/// Linear backtracking over the last `*`, so hostile patterns cost O(pattern x name).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let table = [
            ("web1-http", "web1-http", true),
            ("web1-http", "web1-https", false),
            ("web*", "web1-http", true),
            ("web*", "db1", false),
            ("*-http", "web1-http", true),
            ("*-http", "web1-https", false),
            ("web?-*", "web1-ssh", true),
            ("web?-*", "web10-ssh", false),
            ("*", "", true),
            ("", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
        ];
        for (pattern, name, want) in table {
            assert_eq!(glob_match(pattern, name), want, "{pattern} vs {name}");
        }
    }

    #[test]
    fn matchers() {
        let mut web = CheckSpec::for_test("web1-http");
        web.labels.insert("team".into(), "infra".into());
        let table = [
            ("web1-http", true),
            ("web*", true),
            ("db*", false),
            ("team=infra", true),
            ("team=web", false),
            ("owner=infra", false),
        ];
        for (text, want) in table {
            let m = Matcher::parse(text).unwrap();
            assert_eq!(m.matches(&web), want, "{text}");
            assert_eq!(m.to_string(), text);
        }
        assert!(Matcher::parse("").is_err());
        assert!(Matcher::parse("=x").is_err());
        assert!(Matcher::parse(&"x".repeat(SILENCE_PATTERN_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn windows() {
        let spec = |start_ms, end_ms, reason: &str| SilenceSpec {
            matcher: Matcher::Name("web".into()),
            start_ms,
            end_ms,
            reason: reason.into(),
        };
        assert!(spec(10, 20, "upgrade").validate().is_ok());
        assert!(spec(20, 20, "upgrade").validate().is_err());
        assert!(spec(0, SILENCE_DURATION_MS_MAX + 1, "x")
            .validate()
            .is_err());
        assert!(spec(10, 20, " ").validate().is_err());
        let s = Silence {
            id: 1,
            matcher: Matcher::Name("web".into()),
            start_ms: 10,
            end_ms: 20,
            reason: "x".into(),
            created_index: 1,
        };
        assert!(!s.is_active(9) && s.is_active(10) && s.is_active(19) && !s.is_active(20));
        assert!(!s.is_over(19) && s.is_over(20));
    }
}
