//! `node.toml`: what one node is (identity, site, addresses, certificates, members).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::ConfigError;
use crate::position::Position;

/// A parsed and validated node configuration. Relative paths are resolved against the
/// directory of the file they came from.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    pub site: String,
    pub data_dir: PathBuf,
    pub listen_raft: SocketAddr,
    pub listen_api: SocketAddr,
    pub probe: bool,
    pub probe_source_ip: Option<IpAddr>,
    /// Directories `nagios` checks may run plugins from.
    pub plugin_dirs: Vec<PathBuf>,
    /// Directories `exec` notifiers may run programs from when this node leads (default:
    /// none, so exec notifiers fail until the operator allows a directory).
    pub notify_exec_dirs: Vec<PathBuf>,
    pub tls: TlsPaths,
    pub token_file: PathBuf,
    pub initial_members: Vec<Member>,
    /// `[raft]`: when the log is compacted.
    pub log: LogPolicy,
    /// `[history]`: how long the report history keeps results and rollups.
    pub history: crate::history::Retention,
    /// `[metrics] checks_max`: checks that get per-check series on `/metrics`.
    pub metrics_checks_max: usize,
}

/// `[history]` in node.toml, in days.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHistory {
    raw_days: Option<u64>,
    minute_days: Option<u64>,
    hour_days: Option<u64>,
}

/// The longest retention accepted (ten years).
pub const HISTORY_DAYS_MAX: u64 = 3_650;
/// `[metrics]` in node.toml.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    checks_max: Option<usize>,
}

/// Default of `[metrics] checks_max`.
pub const METRICS_CHECKS_MAX_DEFAULT: usize = 2_000;
/// Largest `[metrics] checks_max`.
pub const METRICS_CHECKS_MAX: usize = 100_000;

/// When raft snapshots the state and purges the log (`[raft]` in node.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogPolicy {
    /// Log entries between snapshots.
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot, so a briefly lagging follower catches up from the
    /// log rather than a whole snapshot.
    pub log_kept: u64,
    /// Bytes of snapshot per InstallSnapshot RPC when a node catches up from a snapshot.
    pub snapshot_chunk: u64,
}

impl Default for LogPolicy {
    fn default() -> Self {
        Self {
            snapshot_every: 1_000,
            log_kept: 500,
            snapshot_chunk: 3 * 1024 * 1024,
        }
    }
}

/// The smallest `[raft] snapshot_every` accepted.
pub const SNAPSHOT_EVERY_MIN: u64 = 20;
/// The largest `[raft] snapshot_every` and `log_kept`: the log on disk stays bounded (about
/// four days of entries at three a second).
pub const LOG_ENTRIES_MAX: u64 = 1_000_000;
/// `[raft] snapshot_chunk` bounds: a chunk must fit a raft frame with room to spare.
pub const SNAPSHOT_CHUNK_MIN: u64 = 1024;
pub const SNAPSHOT_CHUNK_MAX: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One `[[initial_member]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub site: String,
    pub addr: String,
    pub probe: bool,
    pub api: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    node_id: u64,
    site: String,
    data_dir: PathBuf,
    listen_raft: String,
    listen_api: String,
    #[serde(default = "yes")]
    probe: bool,
    probe_source_ip: Option<String>,
    plugin_dirs: Option<Vec<PathBuf>>,
    #[serde(default)]
    notify_exec_dirs: Vec<PathBuf>,
    tls: RawTls,
    api: RawApi,
    #[serde(default)]
    initial_member: Vec<RawMember>,
    #[serde(default)]
    join: bool,
    #[serde(default)]
    raft: LogPolicy,
    history: Option<RawHistory>,
    metrics: Option<RawMetrics>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    token_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    id: u64,
    site: String,
    addr: String,
    #[serde(default = "yes")]
    probe: bool,
    #[serde(default)]
    api: String,
}

/// A member's `api`: empty, or an http(s) base URL (the CLI reads `cluster status` there).
///
/// # Errors
/// Why it is not one.
pub fn check_member_api(api: &str) -> Result<(), String> {
    if api.is_empty() {
        return Ok(());
    }
    match reqwest::Url::parse(api) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        Ok(_) => Err(format!("{api:?} is not an http(s) URL")),
        Err(e) => Err(format!("{api:?}: {e}")),
    }
}

pub(crate) fn yes() -> bool {
    true
}

/// Where Debian's monitoring-plugins (and Nagios') install their plugins.
pub fn default_plugin_dirs() -> Vec<PathBuf> {
    vec![
        PathBuf::from("/usr/lib/nagios/plugins"),
        PathBuf::from("/usr/lib/monitoring-plugins"),
    ]
}

impl NodeConfig {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// When the file cannot be read, is not valid TOML, has unknown keys, or a value is out of
    /// range; the error names the file, line and column.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|errors| ConfigError::Invalid {
            path: path.to_path_buf(),
            errors,
        })
    }

    /// Parses `text`, resolving relative paths against `base`.
    ///
    /// # Errors
    /// Every problem found, with its position.
    pub fn parse(text: &str, base: &Path) -> Result<Self, Vec<(Position, String)>> {
        let raw: RawNode =
            toml::from_str(text).map_err(|e| vec![Position::of_toml_error(text, &e)])?;
        let mut errors = Vec::new();
        let whole = Position::default();
        let listen_raft = raw.listen_raft.parse::<SocketAddr>().map_err(|e| {
            errors.push((
                whole,
                format!("listen_raft {:?}: {e} (expected IP:PORT)", raw.listen_raft),
            ))
        });
        let listen_api = raw.listen_api.parse::<SocketAddr>().map_err(|e| {
            errors.push((
                whole,
                format!("listen_api {:?}: {e} (expected IP:PORT)", raw.listen_api),
            ))
        });
        let probe_source_ip = match &raw.probe_source_ip {
            None => None,
            Some(s) => match s.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(e) => {
                    errors.push((whole, format!("probe_source_ip {s:?}: {e}")));
                    None
                }
            },
        };
        if raw.site.trim().is_empty() {
            errors.push((whole, "site must not be empty".into()));
        }
        if !(SNAPSHOT_EVERY_MIN..=LOG_ENTRIES_MAX).contains(&raw.raft.snapshot_every) {
            errors.push((
                whole,
                format!(
                    "[raft] snapshot_every = {} must be {SNAPSHOT_EVERY_MIN} to {LOG_ENTRIES_MAX}",
                    raw.raft.snapshot_every
                ),
            ));
        }
        if raw.raft.log_kept > LOG_ENTRIES_MAX {
            errors.push((
                whole,
                format!(
                    "[raft] log_kept = {} must be at most {LOG_ENTRIES_MAX}",
                    raw.raft.log_kept
                ),
            ));
        }
        if !(SNAPSHOT_CHUNK_MIN..=SNAPSHOT_CHUNK_MAX).contains(&raw.raft.snapshot_chunk) {
            errors.push((
                whole,
                format!(
                    "[raft] snapshot_chunk = {} must be {SNAPSHOT_CHUNK_MIN} to {SNAPSHOT_CHUNK_MAX} bytes",
                    raw.raft.snapshot_chunk
                ),
            ));
        }
        if raw.join && !raw.initial_member.is_empty() {
            errors.push((
                whole,
                "join = true: a joining node has no [[initial_member]]; a running cluster adds \
                 it (consentry cluster add)"
                    .into(),
            ));
        } else if !raw.join && raw.initial_member.is_empty() {
            errors.push((
                whole,
                "at least one [[initial_member]] is required (include this node), or join = true \
                 for a node that a running cluster adds (consentry cluster add)"
                    .into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &raw.initial_member {
            if !seen.insert(m.id) {
                errors.push((whole, format!("initial_member id {} appears twice", m.id)));
            }
            if m.addr.parse::<SocketAddr>().is_err() {
                errors.push((
                    whole,
                    format!("initial_member {} addr {:?} is not IP:PORT", m.id, m.addr),
                ));
            }
            if let Err(why) = check_member_api(&m.api) {
                errors.push((whole, format!("initial_member {} api: {why}", m.id)));
            }
        }
        if !raw.initial_member.is_empty() && !seen.contains(&raw.node_id) {
            errors.push((
                whole,
                format!(
                    "node_id {} is not among the initial_member ids",
                    raw.node_id
                ),
            ));
        }
        let defaults = crate::history::Retention::default();
        let h = raw.history.unwrap_or(RawHistory {
            raw_days: None,
            minute_days: None,
            hour_days: None,
        });
        let history = crate::history::Retention {
            raw_days: h.raw_days.unwrap_or(defaults.raw_days),
            minute_days: h.minute_days.unwrap_or(defaults.minute_days),
            hour_days: h.hour_days.unwrap_or(defaults.hour_days),
        };
        for (key, days) in [
            ("raw_days", history.raw_days),
            ("minute_days", history.minute_days),
            ("hour_days", history.hour_days),
        ] {
            if !(1..=HISTORY_DAYS_MAX).contains(&days) {
                errors.push((
                    whole,
                    format!("[history] {key} = {days} must be 1 to {HISTORY_DAYS_MAX} days"),
                ));
            }
        }
        if history.minute_days > history.hour_days {
            errors.push((
                whole,
                format!(
                    "[history] minute_days = {} must not exceed hour_days = {}: reports over \
                     old periods read hour rollups",
                    history.minute_days, history.hour_days
                ),
            ));
        }
        let metrics_checks_max = raw
            .metrics
            .and_then(|m| m.checks_max)
            .unwrap_or(METRICS_CHECKS_MAX_DEFAULT);
        if metrics_checks_max > METRICS_CHECKS_MAX {
            errors.push((
                whole,
                format!(
                    "[metrics] checks_max = {metrics_checks_max} must be at most {METRICS_CHECKS_MAX}"
                ),
            ));
        }
        let (Ok(listen_raft), Ok(listen_api)) = (listen_raft, listen_api) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Ok(NodeConfig {
            node_id: raw.node_id,
            site: raw.site,
            data_dir: abs(raw.data_dir),
            listen_raft,
            listen_api,
            probe: raw.probe,
            probe_source_ip,
            plugin_dirs: raw.plugin_dirs.unwrap_or_else(default_plugin_dirs),
            notify_exec_dirs: raw.notify_exec_dirs.into_iter().map(abs).collect(),
            tls: TlsPaths {
                ca: abs(raw.tls.ca),
                cert: abs(raw.tls.cert),
                key: abs(raw.tls.key),
            },
            token_file: abs(raw.api.token_file),
            log: raw.raft,
            history,
            metrics_checks_max,
            initial_members: raw
                .initial_member
                .into_iter()
                .map(|m| Member {
                    id: m.id,
                    site: m.site,
                    addr: m.addr,
                    probe: m.probe,
                    api: m.api,
                })
                .collect(),
        })
    }

    /// A one-node configuration in `dir`, for tests.
    pub fn for_test(dir: &Path) -> Self {
        NodeConfig {
            node_id: 1,
            site: "site-a".into(),
            data_dir: dir.join("data"),
            listen_raft: SocketAddr::from(([127, 0, 0, 1], 0)),
            listen_api: SocketAddr::from(([127, 0, 0, 1], 0)),
            probe: true,
            probe_source_ip: None,
            plugin_dirs: default_plugin_dirs(),
            notify_exec_dirs: Vec::new(),
            tls: TlsPaths {
                ca: dir.join("ca.pem"),
                cert: dir.join("node-1.pem"),
                key: dir.join("node-1.key"),
            },
            token_file: dir.join("api.token"),
            log: LogPolicy::default(),
            history: crate::history::Retention::default(),
            metrics_checks_max: METRICS_CHECKS_MAX_DEFAULT,
            initial_members: vec![Member {
                id: 1,
                site: "site-a".into(),
                addr: "127.0.0.1:0".into(),
                probe: true,
                api: String::new(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node_id = 1
site = "site-a"
data_dir = "data"
listen_raft = "127.0.0.1:7401"
listen_api = "127.0.0.1:7481"
probe_source_ip = "127.0.0.1"
[tls]
ca = "certs/ca.pem"
cert = "certs/node-1.pem"
key = "certs/node-1.key"
[api]
token_file = "certs/api.token"
[[initial_member]]
id = 1
site = "site-a"
addr = "127.0.0.1:7401"
[[initial_member]]
id = 3
site = "site-c"
addr = "127.0.0.1:7403"
probe = false
"#;

    #[test]
    fn parses_the_documented_shape() {
        let c = NodeConfig::parse(GOOD, Path::new("/etc/consentry")).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.data_dir, PathBuf::from("/etc/consentry/data"));
        assert_eq!(c.tls.ca, PathBuf::from("/etc/consentry/certs/ca.pem"));
        assert!(!c.initial_members[1].probe);
    }

    #[test]
    fn unknown_key_has_a_position() {
        let bad = GOOD.replace(
            "site = \"site-a\"\ndata_dir",
            "site = \"site-a\"\ncolour = 1\ndata_dir",
        );
        let errs = NodeConfig::parse(&bad, Path::new("/")).unwrap_err();
        assert_eq!(errs[0].0.line, 4, "{errs:?}");
        assert!(errs[0].1.contains("colour"), "{errs:?}");
    }

    #[test]
    fn self_must_be_a_member() {
        let bad = GOOD.replace("node_id = 1", "node_id = 7");
        let errs = NodeConfig::parse(&bad, Path::new("/")).unwrap_err();
        assert!(errs.iter().any(|e| e.1.contains("node_id 7")), "{errs:?}");
    }

    #[test]
    fn a_joining_node_has_no_member_list_and_raft_tuning_is_bounded() {
        let members_at = GOOD.find("[[initial_member]]").unwrap();
        let joining = GOOD[..members_at].replace("probe_source_ip", "join = true\nprobe_source_ip");
        let c = NodeConfig::parse(&joining, Path::new("/")).unwrap();
        assert!(c.initial_members.is_empty());
        assert_eq!(c.log, LogPolicy::default());

        let both = GOOD.replace("probe_source_ip", "join = true\nprobe_source_ip");
        let errs = NodeConfig::parse(&both, Path::new("/")).unwrap_err();
        assert!(errs.iter().any(|e| e.1.contains("join = true")), "{errs:?}");
        let neither = GOOD[..members_at].to_string();
        let errs = NodeConfig::parse(&neither, Path::new("/")).unwrap_err();
        assert!(
            errs.iter().any(|e| e.1.contains("or join = true")),
            "{errs:?}"
        );

        let tuned = format!("{GOOD}\n[raft]\nsnapshot_every = 100\nlog_kept = 7\n");
        let c = NodeConfig::parse(&tuned, Path::new("/")).unwrap();
        assert_eq!((c.log.snapshot_every, c.log.log_kept), (100, 7));
        for bad in [
            "snapshot_every = 1",
            "snapshot_every = 1000001",
            "log_kept = 1000001",
        ] {
            let text = format!("{GOOD}\n[raft]\n{bad}\n");
            let errs = NodeConfig::parse(&text, Path::new("/")).unwrap_err();
            let key = bad.split(' ').next().unwrap();
            assert!(errs.iter().any(|e| e.1.contains(key)), "{bad}: {errs:?}");
        }
        let bad_api = GOOD.replace(
            "addr = \"127.0.0.1:7403\"",
            "addr = \"127.0.0.1:7403\"\napi = \"file:///etc/passwd\"",
        );
        let errs = NodeConfig::parse(&bad_api, Path::new("/")).unwrap_err();
        assert!(errs.iter().any(|e| e.1.contains("http(s)")), "{errs:?}");
    }
}
