//! The check kinds of `checks.toml`: which keys each takes, their defaults, and how a
//! `[[check]]` table becomes a [`ProbeSpec`].
//!
//! Defaults follow the monitoring services hosting users compare us with (seed 000): HTTP and
//! HTTPS WARNING over 5 s and CRITICAL over 10 s; FTP, POP3, IMAP, MySQL, PostgreSQL and a
//! plain port WARNING from 6 s and CRITICAL from 11 s; SMTP CRITICAL at 10 s.

use consentry_cluster::model::{
    BannerProtocol, BannerSpec, Credentials, DnsSpec, HttpSpec, IcmpSpec, Latency, NagiosSpec,
    ProbeSpec, SqlEngine, SqlSpec, StatusRange, TcpSpec, TlsMode, TlsSpec,
};
use toml::Spanned;

use crate::checks_file::{Checker, RawCheck};

/// Every kind, in the order the docs list them.
pub const KINDS: &[&str] = &[
    "icmp", "tcp", "http", "https", "dns", "smtp", "ssh", "pop3", "imap", "ftp", "mysql",
    "postgres", "tls", "nagios", "agent",
];

/// Keys every check takes, whatever its kind.
pub const COMMON_KEYS: &[&str] = &[
    "name",
    "kind",
    "interval",
    "timeout",
    "latency_warning",
    "latency_critical",
    "confirm",
    "recover",
    "notify",
    "labels",
    "depends_on",
    "flap_high",
    "flap_low",
    "degraded",
    "recovery",
];

/// Echo requests per icmp probe, at most (the prober's own bound).
pub const ICMP_PACKETS_MAX: u32 = crate::probe::ICMP_ECHO_REQUESTS_MAX;
/// Arguments of a nagios plugin, at most.
pub const PLUGIN_ARGS_MAX: usize = 64;
/// Redirects an http check may follow, at most (the prober's own bound).
pub const REDIRECTS_MAX: u32 = crate::probe::HTTP_REDIRECTS_MAX as u32;
/// Probe timeout when neither the check nor `[defaults]` says; never more than the interval.
pub const DEFAULT_TIMEOUT_MS: u64 = 15_000;

/// The keys `kind` takes beside [`COMMON_KEYS`]; `None` for an unknown kind.
pub fn kind_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "icmp" => &[
            "host",
            "packets",
            "rtt_warning",
            "rtt_critical",
            "loss_warning",
            "loss_critical",
        ],
        "tcp" => &["host", "port"],
        "http" | "https" => &[
            "url",
            "method",
            "expect_status",
            "body_contains",
            "body_regex",
            "tls_verify",
            "redirects",
            "basic_auth_user",
            "basic_auth_password",
            "layer4_on_401",
        ],
        "dns" => &["server", "port", "query", "record", "expect"],
        "smtp" => &["host", "port", "tls", "tls_verify", "ehlo"],
        "pop3" | "imap" => &["host", "port", "tls", "tls_verify"],
        "ssh" | "ftp" => &["host", "port"],
        "mysql" | "postgres" => &["host", "port", "user", "password", "database", "query"],
        "tls" => &[
            "host",
            "port",
            "server_name",
            "starttls",
            "days_warning",
            "days_critical",
            "verify_chain",
        ],
        "nagios" => &["command"],
        "agent" => &["agent", "metric", "mount", "log", "warning", "critical"],
        _ => return None,
    })
}

/// Latency thresholds per kind (seed 000), before the check's own `latency_*` keys.
pub fn default_latency(kind: &str) -> Latency {
    let (warn_ms, crit_ms) = match kind {
        "http" | "https" => (Some(5_000), Some(10_000)),
        "tcp" | "ftp" | "pop3" | "imap" | "mysql" | "postgres" => (Some(6_000), Some(11_000)),
        "smtp" => (None, Some(10_000)),
        // ssh: judged on the banner only; dns, icmp, tls, nagios have their own thresholds.
        _ => (None, None),
    };
    Latency { warn_ms, crit_ms }
}

/// Builds the probe of a check whose kind is `kind`, reporting every problem to `ck`.
pub(crate) fn probe_spec(
    kind: &str,
    c: &RawCheck,
    span: std::ops::Range<usize>,
    ck: &mut Checker<'_>,
) -> Option<ProbeSpec> {
    match kind {
        "icmp" => {
            let host = host(c, &span, kind, ck)?;
            let packets = match &c.packets {
                Some(p) => match u32::try_from(*p.get_ref())
                    .ok()
                    .filter(|n| (1..=ICMP_PACKETS_MAX).contains(n))
                {
                    Some(n) => n,
                    None => {
                        ck.at(p.span(), format!("packets must be 1 to {ICMP_PACKETS_MAX}"));
                        return None;
                    }
                },
                None => 3,
            };
            let rtt_warn_ms = opt_duration(ck, &c.rtt_warning, "rtt_warning").unwrap_or(Some(200));
            let rtt_crit_ms =
                opt_duration(ck, &c.rtt_critical, "rtt_critical").unwrap_or(Some(500));
            let loss_warn_pct = percent(ck, &c.loss_warning, "loss_warning").unwrap_or(Some(20));
            let loss_crit_pct = percent(ck, &c.loss_critical, "loss_critical").unwrap_or(Some(60));
            Some(ProbeSpec::Icmp(IcmpSpec {
                host,
                packets,
                rtt_warn_ms,
                rtt_crit_ms,
                loss_warn_pct,
                loss_crit_pct,
            }))
        }
        "tcp" => {
            let host = host(c, &span, kind, ck);
            let port = port(c, &span, kind, None, ck);
            Some(ProbeSpec::Tcp(TcpSpec {
                host: host?,
                port: port?,
            }))
        }
        "http" | "https" => http(kind, c, span, ck),
        "dns" => {
            let server = required_str(&c.server, &span, kind, "server", "127.0.0.1", ck);
            let port = port(c, &span, kind, Some(53), ck);
            let query = required_str(&c.query, &span, kind, "query", "www.example.com", ck);
            let record = c
                .record
                .as_ref()
                .map_or("A".to_string(), |r| r.get_ref().to_ascii_uppercase());
            const RECORDS: &[&str] =
                &["A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT"];
            if !RECORDS.contains(&record.as_str()) {
                let s = c.record.as_ref().map_or(span.clone(), Spanned::span);
                ck.at(
                    s,
                    format!("record {record:?}: use one of {}", RECORDS.join(", ")),
                );
                return None;
            }
            Some(ProbeSpec::Dns(DnsSpec {
                server: server?,
                port: port?,
                query: query?,
                record,
                expect: c.expect.clone().unwrap_or_default(),
            }))
        }
        "smtp" | "pop3" | "imap" | "ssh" | "ftp" => {
            let protocol = match kind {
                "smtp" => BannerProtocol::Smtp,
                "pop3" => BannerProtocol::Pop3,
                "imap" => BannerProtocol::Imap,
                "ssh" => BannerProtocol::Ssh,
                _ => BannerProtocol::Ftp,
            };
            let tls = match &c.tls {
                None => TlsMode::None,
                Some(t) => match t.get_ref().as_str() {
                    "none" => TlsMode::None,
                    "starttls" => TlsMode::StartTls,
                    "implicit" => TlsMode::Implicit,
                    other => {
                        ck.at(
                            t.span(),
                            format!("tls {other:?}: use \"none\", \"starttls\" or \"implicit\""),
                        );
                        return None;
                    }
                },
            };
            let default_port = match (protocol, tls) {
                (BannerProtocol::Smtp, TlsMode::Implicit) => 465,
                (BannerProtocol::Smtp, _) => 25,
                (BannerProtocol::Pop3, TlsMode::Implicit) => 995,
                (BannerProtocol::Pop3, _) => 110,
                (BannerProtocol::Imap, TlsMode::Implicit) => 993,
                (BannerProtocol::Imap, _) => 143,
                (BannerProtocol::Ssh, _) => 22,
                (BannerProtocol::Ftp, _) => 21,
            };
            let host = host(c, &span, kind, ck);
            let port = port(c, &span, kind, Some(default_port), ck);
            Some(ProbeSpec::Banner(BannerSpec {
                protocol,
                host: host?,
                port: port?,
                tls,
                tls_verify: c.tls_verify.unwrap_or(true),
                ehlo: c.ehlo.clone(),
            }))
        }
        "mysql" | "postgres" => {
            let engine = if kind == "mysql" {
                SqlEngine::Mysql
            } else {
                SqlEngine::Postgres
            };
            let default_port = if kind == "mysql" { 3306 } else { 5432 };
            let host = host(c, &span, kind, ck);
            let port = port(c, &span, kind, Some(default_port), ck);
            let credentials = credentials(&c.user, &c.password, &span, "user", "password", ck)?;
            if credentials.is_none() && (c.database.is_some() || c.query.is_some()) {
                ck.at(span.clone(), "database and query need user = \"...\" (without credentials only the server's handshake is judged)");
            }
            Some(ProbeSpec::Sql(SqlSpec {
                engine,
                host: host?,
                port: port?,
                credentials,
                database: c.database.clone(),
                query: c.query.as_ref().map(|q| q.get_ref().clone()),
            }))
        }
        "tls" => {
            let host = host(c, &span, kind, ck);
            let port = port(c, &span, kind, Some(443), ck);
            let starttls = match &c.starttls {
                None => None,
                Some(s) => match s.get_ref().as_str() {
                    "smtp" => Some(BannerProtocol::Smtp),
                    "imap" => Some(BannerProtocol::Imap),
                    "pop3" => Some(BannerProtocol::Pop3),
                    other => {
                        ck.at(
                            s.span(),
                            format!("starttls {other:?}: use \"smtp\", \"imap\" or \"pop3\""),
                        );
                        return None;
                    }
                },
            };
            let days_warn = days(ck, &c.days_warning, "days_warning").unwrap_or(30);
            let days_crit = days(ck, &c.days_critical, "days_critical").unwrap_or(14);
            if days_crit > days_warn {
                let s = c.days_critical.as_ref().map_or(span.clone(), Spanned::span);
                ck.at(
                    s,
                    format!(
                        "days_critical ({days_crit}) must not exceed days_warning ({days_warn})"
                    ),
                );
            }
            Some(ProbeSpec::Tls(TlsSpec {
                host: host?,
                port: port?,
                server_name: c.server_name.clone(),
                starttls,
                days_warn,
                days_crit,
                verify_chain: c.verify_chain.unwrap_or(true),
            }))
        }
        "nagios" => {
            let Some(cmd) = &c.command else {
                ck.at(span, "a nagios check needs command = [\"/usr/lib/nagios/plugins/check_...\", \"arg\", ...]");
                return None;
            };
            let argv = cmd.get_ref();
            if argv.is_empty() || argv.len() > PLUGIN_ARGS_MAX || !argv[0].starts_with('/') {
                ck.at(
                    cmd.span(),
                    format!("command must be 1 to {PLUGIN_ARGS_MAX} strings, the first an absolute path to the plugin (no shell is used)"),
                );
                return None;
            }
            Some(ProbeSpec::Nagios(NagiosSpec { argv: argv.clone() }))
        }
        "agent" => agent_spec(c, span, ck).map(ProbeSpec::Agent),
        other => {
            ck.at(
                c.kind.span(),
                format!(
                    "unknown check kind {other:?}; supported: {}",
                    KINDS.join(", ")
                ),
            );
            None
        }
    }
}

fn http(
    kind: &str,
    c: &RawCheck,
    span: std::ops::Range<usize>,
    ck: &mut Checker<'_>,
) -> Option<ProbeSpec> {
    let url = match &c.url {
        Some(u) if has_userinfo(u.get_ref()) => {
            ck.at(
                u.span(),
                "url must not carry user:password@ (every reader would see it); use basic_auth_user and basic_auth_password",
            );
            None
        }
        Some(u) if valid_http_url(u.get_ref()) => Some(u.get_ref().clone()),
        Some(u) => {
            ck.at(
                u.span(),
                format!("url {:?} must start with http:// or https://", u.get_ref()),
            );
            None
        }
        None => {
            ck.at(
                span.clone(),
                format!("a {kind} check needs url = \"http://...\""),
            );
            None
        }
    };
    let method = match &c.method {
        None => Some("GET".to_string()),
        Some(m) => match m.get_ref().to_ascii_uppercase().as_str() {
            "GET" => Some("GET".into()),
            "HEAD" => Some("HEAD".into()),
            _ => {
                ck.at(
                    m.span(),
                    format!("method {:?}: use GET or HEAD", m.get_ref()),
                );
                None
            }
        },
    };
    let expect = match &c.expect_status {
        None => Some(vec![StatusRange { lo: 200, hi: 399 }]),
        Some(s) => match parse_status_ranges(s.get_ref()) {
            Ok(r) => Some(r),
            Err(e) => {
                ck.at(s.span(), e);
                None
            }
        },
    };
    if let Some(re) = &c.body_regex {
        if let Err(e) = regex::RegexBuilder::new(re.get_ref())
            .size_limit(1 << 20)
            .build()
        {
            ck.at(
                re.span(),
                format!("body_regex is not a valid regular expression: {e}"),
            );
        }
    }
    let redirects_max = match &c.redirects {
        None => 5,
        Some(r) => match u32::try_from(*r.get_ref())
            .ok()
            .filter(|n| *n <= REDIRECTS_MAX)
        {
            Some(n) => n,
            None => {
                ck.at(r.span(), format!("redirects must be 0 to {REDIRECTS_MAX}"));
                return None;
            }
        },
    };
    let basic_auth = credentials(
        &c.basic_auth_user,
        &c.basic_auth_password,
        &span,
        "basic_auth_user",
        "basic_auth_password",
        ck,
    )?;
    Some(ProbeSpec::Http(HttpSpec {
        url: url?,
        method: method?,
        expect_status: expect?,
        body_contains: c.body_contains.clone(),
        body_regex: c.body_regex.as_ref().map(|r| r.get_ref().clone()),
        tls_verify: c.tls_verify.unwrap_or(true),
        redirects_max,
        basic_auth,
        layer4_on_401: c.layer4_on_401.unwrap_or(false),
    }))
}

fn host(
    c: &RawCheck,
    span: &std::ops::Range<usize>,
    kind: &str,
    ck: &mut Checker<'_>,
) -> Option<String> {
    required_str(&c.host, span, kind, "host", "192.0.2.10", ck)
}

fn required_str(
    v: &Option<Spanned<String>>,
    span: &std::ops::Range<usize>,
    kind: &str,
    key: &str,
    example: &str,
    ck: &mut Checker<'_>,
) -> Option<String> {
    match v {
        Some(h) if !h.get_ref().trim().is_empty() => Some(h.get_ref().trim().to_string()),
        Some(h) => {
            ck.at(h.span(), format!("{key} must not be empty"));
            None
        }
        None => {
            ck.at(
                span.clone(),
                format!("a {kind} check needs {key} = \"{example}\""),
            );
            None
        }
    }
}

fn port(
    c: &RawCheck,
    span: &std::ops::Range<usize>,
    kind: &str,
    default: Option<u16>,
    ck: &mut Checker<'_>,
) -> Option<u16> {
    match &c.port {
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                ck.at(
                    p.span(),
                    format!("port must be 1-65535, got {}", p.get_ref()),
                );
                None
            }
        },
        None if default.is_some() => default,
        None => {
            ck.at(span.clone(), format!("a {kind} check needs port = N"));
            None
        }
    }
}

/// Both or neither of a user and a password.
fn credentials(
    user: &Option<String>,
    password: &Option<String>,
    span: &std::ops::Range<usize>,
    user_key: &str,
    password_key: &str,
    ck: &mut Checker<'_>,
) -> Option<Option<Credentials>> {
    match (user, password) {
        (None, None) => Some(None),
        (Some(user), password) => Some(Some(Credentials {
            user: user.clone(),
            password: password.clone().unwrap_or_default(),
        })),
        (None, Some(_)) => {
            ck.at(span.clone(), format!("{password_key} without {user_key}"));
            None
        }
    }
}

/// `Some(None)`: the key is absent (use the default); `Some(Some(v))`: given and valid.
fn opt_duration(
    ck: &mut Checker<'_>,
    v: &Option<Spanned<String>>,
    what: &str,
) -> Option<Option<u64>> {
    let v = v.as_ref()?;
    Some(ck.duration(v, what))
}

fn percent(ck: &mut Checker<'_>, v: &Option<Spanned<i64>>, what: &str) -> Option<Option<u8>> {
    let v = v.as_ref()?;
    match u8::try_from(*v.get_ref()).ok().filter(|p| *p <= 100) {
        Some(p) => Some(Some(p)),
        None => {
            ck.at(v.span(), format!("{what} must be a percentage 0 to 100"));
            Some(None)
        }
    }
}

fn days(ck: &mut Checker<'_>, v: &Option<Spanned<i64>>, what: &str) -> Option<u32> {
    let v = v.as_ref()?;
    match u32::try_from(*v.get_ref()).ok().filter(|d| *d <= 3650) {
        Some(d) => Some(d),
        None => {
            ck.at(v.span(), format!("{what} must be 0 to 3650 days"));
            None
        }
    }
}

/// Whether a URL's authority has `user[:password]@`.
fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

pub(crate) fn valid_http_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > "https://".len()
        && !s.contains(char::is_whitespace)
}

/// Parses `"200-399"`, `"200,301-302"`.
pub(crate) fn parse_status_ranges(s: &str) -> Result<Vec<StatusRange>, String> {
    let bad =
        || format!("expect_status {s:?}: use codes and ranges like \"200-399\" or \"200,301-302\"");
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(bad());
        }
        out.push(StatusRange { lo, hi });
    }
    Ok(out)
}

/// Metrics an agent check may judge.
pub const AGENT_METRICS: &[&str] = &[
    "load1", "load5", "load15", "cpu", "memory", "swap", "disk", "inodes", "procs", "zombies",
    "users", "log",
];

/// `kind = "agent"`: which agent, which metric, and thresholds (defaults from seed 000, see
/// [`consentry_cluster::agent::default_thresholds`]).
fn agent_spec(
    c: &RawCheck,
    span: std::ops::Range<usize>,
    ck: &mut Checker<'_>,
) -> Option<consentry_cluster::model::AgentSpec> {
    use consentry_cluster::model::{AgentMetric, AgentSpec};
    let Some(agent) = &c.agent else {
        ck.at(
            span,
            "an agent check needs agent = \"<name>\" (its certificate is agent-<name>.consentry)",
        );
        return None;
    };
    let name = agent.get_ref();
    if let Err(e) = consentry_cluster::tls::validate_agent_name(name) {
        ck.at(agent.span(), e.to_string());
        return None;
    }
    let Some(metric) = &c.metric else {
        ck.at(
            span,
            format!(
                "an agent check needs metric = one of {}",
                AGENT_METRICS.join(", ")
            ),
        );
        return None;
    };
    let path = |v: &Option<Spanned<String>>,
                default: Option<&str>,
                key: &str,
                ck: &mut Checker<'_>| {
        match (v, default) {
            (Some(p), _) if p.get_ref().starts_with('/') => Some(p.get_ref().clone()),
            (Some(p), _) => {
                ck.at(p.span(), format!("{key} must be an absolute path"));
                None
            }
            (None, Some(d)) => Some(d.to_string()),
            (None, None) => {
                ck.at(
                    metric.span(),
                    format!("metric {:?} needs {key} = \"/path\"", metric.get_ref()),
                );
                None
            }
        }
    };
    let m = match metric.get_ref().as_str() {
        "load1" => AgentMetric::Load1,
        "load5" => AgentMetric::Load5,
        "load15" => AgentMetric::Load15,
        "cpu" => AgentMetric::Cpu,
        "memory" => AgentMetric::Memory,
        "swap" => AgentMetric::Swap,
        "disk" => AgentMetric::Disk {
            mount: path(&c.mount, Some("/"), "mount", ck)?,
        },
        "inodes" => AgentMetric::Inodes {
            mount: path(&c.mount, Some("/"), "mount", ck)?,
        },
        "procs" => AgentMetric::Procs,
        "zombies" => AgentMetric::Zombies,
        "users" => AgentMetric::Users,
        "log" => AgentMetric::Log {
            path: path(&c.log, None, "log", ck)?,
        },
        other => {
            ck.at(
                metric.span(),
                format!(
                    "unknown metric {other:?}; supported: {}",
                    AGENT_METRICS.join(", ")
                ),
            );
            return None;
        }
    };
    let (d_warn, d_crit) = consentry_cluster::agent::default_thresholds(&m);
    let threshold = |v: &Option<Spanned<toml::Value>>,
                     default: Option<u64>,
                     key: &str,
                     ck: &mut Checker<'_>| {
        let Some(v) = v else {
            return Some(default);
        };
        let n = match v.get_ref() {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            _ => f64::NAN,
        };
        if n.is_finite() && (0.0..=1e12).contains(&n) {
            Some(Some((n * 1000.0).round() as u64))
        } else {
            ck.at(
                v.span(),
                format!("{key} must be a number from 0 (a percent, a load, a count)"),
            );
            None
        }
    };
    let warn_milli = threshold(&c.warning, d_warn, "warning", ck)?;
    let crit_milli = threshold(&c.critical, d_crit, "critical", ck)?;
    if let (Some(w), Some(cr)) = (warn_milli, crit_milli) {
        if w > cr {
            let s = c.warning.as_ref().map_or(span, |v| v.span());
            ck.at(s, "warning must not be above critical");
            return None;
        }
    }
    Some(AgentSpec {
        agent: name.clone(),
        metric: m,
        warn_milli,
        crit_milli,
    })
}

#[cfg(test)]
mod tests {
    use consentry_cluster::model::{ProbeSpec, TlsMode};

    use crate::checks_file::parse;

    const EVERY_KIND: &str = r#"
[[check]]
name = "ping"
kind = "icmp"
host = "127.0.0.1"

[[check]]
name = "port"
kind = "tcp"
host = "127.0.0.1"
port = 8080

[[check]]
name = "web"
kind = "https"
url = "https://127.0.0.1:8443/"
tls_verify = false
basic_auth_user = "monitor"
basic_auth_password = "s3cret"
layer4_on_401 = true
body_regex = "ok|fine"

[[check]]
name = "dns"
kind = "dns"
server = "127.0.0.1"
port = 5353
query = "www.example.test"
record = "aaaa"
expect = ["2001:db8::1"]

[[check]]
name = "mail"
kind = "smtp"
host = "127.0.0.1"
tls = "starttls"
ehlo = "monitor.example"

[[check]]
name = "ssh"
kind = "ssh"
host = "127.0.0.1"

[[check]]
name = "pop"
kind = "pop3"
host = "127.0.0.1"
tls = "implicit"

[[check]]
name = "imap"
kind = "imap"
host = "127.0.0.1"

[[check]]
name = "ftp"
kind = "ftp"
host = "127.0.0.1"

[[check]]
name = "db"
kind = "mysql"
host = "127.0.0.1"
user = "monitor"
password = "pw"
database = "app"

[[check]]
name = "pg"
kind = "postgres"
host = "127.0.0.1"

[[check]]
name = "cert"
kind = "tls"
host = "127.0.0.1"
port = 993
days_warning = 21
days_critical = 7

[[check]]
name = "plugin"
kind = "nagios"
command = ["/usr/lib/nagios/plugins/check_load", "-w", "4,4,4", "-c", "7,7,7"]
"#;

    #[test]
    fn every_kind_parses_with_its_defaults() {
        let c = parse(EVERY_KIND).unwrap_or_else(|e| panic!("{e:?}"));
        let kinds: Vec<&str> = c.checks.iter().map(|c| c.probe.kind()).collect();
        assert_eq!(
            kinds,
            [
                "icmp", "tcp", "https", "dns", "smtp", "ssh", "pop3", "imap", "ftp", "mysql",
                "postgres", "tls", "nagios"
            ]
        );
        let by = |n: &str| {
            c.checks
                .iter()
                .find(|c| c.name == n)
                .map(|c| c.probe.clone())
        };
        match by("mail") {
            Some(ProbeSpec::Banner(b)) => {
                assert_eq!((b.port, b.tls), (25, TlsMode::StartTls));
            }
            other => panic!("{other:?}"),
        }
        match by("pop") {
            Some(ProbeSpec::Banner(b)) => {
                assert_eq!(b.port, 995, "implicit TLS POP3 defaults to 995")
            }
            other => panic!("{other:?}"),
        }
        match by("dns") {
            Some(ProbeSpec::Dns(d)) => assert_eq!((d.record.as_str(), d.port), ("AAAA", 5353)),
            other => panic!("{other:?}"),
        }
        match by("cert") {
            Some(ProbeSpec::Tls(t)) => {
                assert_eq!((t.days_warn, t.days_crit, t.verify_chain), (21, 7, true))
            }
            other => panic!("{other:?}"),
        }
        // Seed 000 latency defaults per kind; the default timeout covers the critical level.
        let latency = |n: &str| {
            c.checks
                .iter()
                .find(|c| c.name == n)
                .map(|c| (c.latency.warn_ms, c.latency.crit_ms))
        };
        assert_eq!(latency("web"), Some((Some(5_000), Some(10_000))));
        assert_eq!(latency("ftp"), Some((Some(6_000), Some(11_000))));
        assert_eq!(latency("mail"), Some((None, Some(10_000))));
        assert_eq!(latency("ssh"), Some((None, None)));
        assert!(c.checks.iter().all(|c| c.timeout_ms == 15_000));
    }

    #[test]
    fn keys_of_another_kind_are_errors_at_their_position() {
        let text = "[[check]]\nname = \"a\"\nkind = \"tcp\"\nhost = \"h\"\nport = 1\nurl = \"http://x/\"\n";
        let errs = parse(text).unwrap_err();
        assert_eq!((errs[0].line, errs[0].column), (6, 1), "{errs:?}");
        assert!(
            errs[0].message.contains("does not apply to kind \"tcp\""),
            "{errs:?}"
        );
    }

    #[test]
    fn kind_specific_mistakes() {
        let text = r#"
[[check]]
name = "a"
kind = "nagios"
command = ["check_load"]

[[check]]
name = "b"
kind = "tls"
host = "h"
days_warning = 7
days_critical = 30

[[check]]
name = "c"
kind = "postgres"
host = "h"
query = "select 1"

[[check]]
name = "d"
kind = "smtp"
host = "h"
tls = "yes"

[[check]]
name = "e"
kind = "http"
url = "http://h/"
body_regex = "(unclosed"

[[check]]
name = "f"
kind = "http"
url = "http://admin:hunter2@h/"

[[check]]
name = "g"
kind = "icmp"
host = "h"
latency_warning = "100ms"
"#;
        let errs = parse(text).unwrap_err();
        let msgs: Vec<String> = errs
            .iter()
            .map(|e| format!("{}:{} {}", e.line, e.column, e.message))
            .collect();
        for needle in [
            "absolute path",
            "days_critical (30)",
            "need user",
            "tls \"yes\"",
            "body_regex",
            "user:password@",
            "rtt_warning / rtt_critical",
        ] {
            assert!(
                msgs.iter().any(|m| m.contains(needle)),
                "{needle}: {msgs:#?}"
            );
        }
    }

    #[test]
    fn secrets_are_redacted_for_readers() {
        let c = parse(EVERY_KIND).unwrap();
        let shown =
            serde_json::to_string(&c.checks.iter().map(|c| c.redacted()).collect::<Vec<_>>())
                .unwrap();
        assert!(
            !shown.contains("s3cret") && !shown.contains("\"pw\""),
            "{shown}"
        );
        assert!(shown.contains("monitor"), "user names stay visible");
    }
}
