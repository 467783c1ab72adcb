//! Every probe kind against the real Debian server customers run it against: up is OK,
//! stopped (the server killed) is CRITICAL `refused`, hung (SIGSTOP: connections accepted,
//! nothing answered) is CRITICAL `timeout` for http, tls and ssh, and each kind's WARNING
//! path is exercised by a real server configuration.
//!
//! Each test owns its servers (own directory, own loopback ports) and judges them with one
//! `consentry probe` run per server state, so the tests run in parallel and take seconds.
//!
//! WARNING paths chosen, per kind:
//! - http/https: nginx sends `/slow.bin` at a `limit_rate` that makes it take about a
//!   second; `latency_warning = "400ms"` makes that WARNING `slow`. (The seed's CRITICAL
//!   on 5xx is nginx's `return 503`.)
//! - tls: the test certificate has 20 days left; the default `days_warning = 30` is
//!   WARNING `cert_expiring`, `days_critical = 25` CRITICAL.
//! - smtp: postfix rejecting every client at connect time greets `554`; the seed service
//!   calls any non-220 greeting WARNING.
//! - ssh, pop3, imap, ftp, mysql, postgres: their seed WARNING is "answers, but slowly";
//!   the real server is put behind a [`DelayProxy`] that holds its greeting back a second,
//!   with `latency_warning = "400ms"`.
//! - ftp also: vsftpd with every login method disabled answers `500 OOPS` instead of
//!   `220`, a CRITICAL `protocol` (the banner probe's rule, like check_ftp's non-2xx).
//! - dns: an answer that does not contain `expect` (a CRITICAL `dns` in consentry; see
//!   docs/probes.md for check_dig's WARNING); NXDOMAIN and REFUSED are CRITICAL `dns`.
//! - icmp: `rtt_warning = "0ms"`; every echo reply takes at least 0 ms, so WARNING.
//! - nagios: check_dummy 1 is WARNING.
//! - tcp: only a slow connect can be WARNING, and a loopback connect is never slow: not
//!   exercised here (the threshold logic is unit-tested in node/src/probe/mod.rs).

use std::time::Duration;

use crate::servers::{
    available, dovecot::Dovecot, mariadb, mariadb::Mariadb, nginx::Nginx, plugins_available,
    postfix::Postfix, postgres, postgres::Postgres, probe, sshd::Sshd, unbound, unbound::Unbound,
    vsftpd::Vsftpd, Checks, DelayProxy, ServerDir, TestCert, PLUGIN_DIR,
};

/// How long the delay proxy holds a server's greeting back.
const SLOW_PATH_DELAY: Duration = Duration::from_millis(1000);
/// The latency_warning used against slow paths: well under the delay, well over a
/// loopback answer on two busy cores.
const SLOW_WARNING: &str = "latency_warning = \"400ms\"";
/// Probe timeout: a killed server answers (refuses) at once; nothing here should wait.
const TIMEOUT: &str = "5s";

fn s(text: impl Into<String>) -> String {
    text.into()
}

fn host_port(port: u16) -> Vec<String> {
    vec![s("host = \"127.0.0.1\""), format!("port = {port}")]
}

fn with(mut keys: Vec<String>, more: &[&str]) -> Vec<String> {
    keys.extend(more.iter().map(|k| (*k).to_owned()));
    keys
}

#[test]
fn http_https_tls_tcp_nagios_against_nginx() {
    let dir = ServerDir::new("nginx");
    let Some(cert) = available(TestCert::make(&dir)) else {
        return;
    };
    let Some(nginx) = available(Nginx::start(&dir, &cert)) else {
        return;
    };
    let plugins = plugins_available().is_ok();
    let http = format!("http://127.0.0.1:{}", nginx.http_port);
    let https = format!("https://127.0.0.1:{}", nginx.https_port);
    let tls = host_port(nginx.https_port);
    let mut checks = Checks::new(TIMEOUT)
        .check(
            "http",
            "http",
            &[
                format!("url = \"{http}/\""),
                s("body_contains = \"consentry e2e nginx\""),
            ],
        )
        .check("http-503", "http", &[format!("url = \"{http}/broken\"")])
        .check(
            "http-slow",
            "http",
            &[format!("url = \"{http}/slow.bin\""), s(SLOW_WARNING)],
        )
        .check(
            "https",
            "https",
            &[format!("url = \"{https}/\""), s("tls_verify = false")],
        )
        .check("https-verified", "https", &[format!("url = \"{https}/\"")])
        .check(
            "https-slow",
            "https",
            &[
                format!("url = \"{https}/slow.bin\""),
                s("tls_verify = false"),
                s(SLOW_WARNING),
            ],
        )
        .check(
            "tls-ok",
            "tls",
            &with(
                tls.clone(),
                &[
                    "verify_chain = false",
                    "days_warning = 10",
                    "days_critical = 5",
                ],
            ),
        )
        .check(
            "tls-warning",
            "tls",
            &with(tls.clone(), &["verify_chain = false"]),
        )
        .check(
            "tls-critical",
            "tls",
            &with(
                tls.clone(),
                &[
                    "verify_chain = false",
                    "days_warning = 30",
                    "days_critical = 25",
                ],
            ),
        )
        .check("tls-chain", "tls", &tls)
        .check("tcp", "tcp", &host_port(nginx.http_port));
    if plugins {
        for (name, code) in [
            ("dummy-ok", 0),
            ("dummy-warning", 1),
            ("dummy-critical", 2),
            ("dummy-unknown", 3),
        ] {
            checks = checks.check(
                name,
                "nagios",
                &[format!(
                    "command = [\"{PLUGIN_DIR}/check_dummy\", \"{code}\", \"e2e\"]"
                )],
            );
        }
        checks = checks.check(
            "nagios-tcp",
            "nagios",
            &[format!(
                "command = [\"{PLUGIN_DIR}/check_tcp\", \"-H\", \"127.0.0.1\", \"-p\", \"{}\"]",
                nginx.http_port
            )],
        );
    }

    info!("nginx up: http/https OK, 503 CRITICAL bad_status, a 1 s body WARNING slow, certificate days judged");
    let up = probe(dir.path(), &checks);
    up.expect("http", "OK", "none");
    up.expect("http-503", "CRITICAL", "bad_status");
    up.expect("http-slow", "WARNING", "slow");
    up.expect("https", "OK", "none");
    up.expect("https-verified", "CRITICAL", "tls");
    up.expect("https-slow", "WARNING", "slow");
    up.expect("tls-ok", "OK", "none");
    up.expect("tls-warning", "WARNING", "cert_expiring");
    up.expect("tls-critical", "CRITICAL", "cert_expiring");
    up.expect("tls-chain", "CRITICAL", "tls");
    up.expect("tcp", "OK", "none");
    if plugins {
        up.expect("dummy-ok", "OK", "none");
        up.expect("dummy-warning", "WARNING", "plugin");
        up.expect("dummy-critical", "CRITICAL", "plugin");
        up.expect("dummy-unknown", "UNKNOWN", "plugin");
        up.expect("nagios-tcp", "OK", "none");
    } else {
        crate::harness::skip_unless_required(
            "monitoring-plugins is not installed: nagios kind not exercised",
        );
    }

    info!("nginx hung (SIGSTOP): connections are accepted, nothing answers: CRITICAL timeout");
    nginx.freeze();
    let hung = probe(
        dir.path(),
        &Checks::new("1s")
            .check("http", "http", &[format!("url = \"{http}/\"")])
            .check("tls", "tls", &with(tls.clone(), &["verify_chain = false"])),
    );
    hung.expect("http", "CRITICAL", "timeout");
    hung.expect("tls", "CRITICAL", "timeout");

    info!("nginx killed: every kind CRITICAL refused (the plugin says CRITICAL too)");
    nginx.stop();
    let down = probe(dir.path(), &checks);
    for name in [
        "http",
        "http-503",
        "http-slow",
        "https",
        "https-verified",
        "https-slow",
        "tls-ok",
        "tls-warning",
        "tls-critical",
        "tls-chain",
        "tcp",
    ] {
        down.expect(name, "CRITICAL", "refused");
    }
    if plugins {
        down.expect("nagios-tcp", "CRITICAL", "plugin");
    }
}

#[test]
fn ssh_against_sshd() {
    let dir = ServerDir::new("sshd");
    let Some(sshd) = available(Sshd::start(&dir)) else {
        return;
    };
    let slow = DelayProxy::start(sshd.port, SLOW_PATH_DELAY);
    let checks = Checks::new(TIMEOUT)
        .check("ssh", "ssh", &host_port(sshd.port))
        .check(
            "ssh-slow",
            "ssh",
            &with(host_port(slow.port()), &[SLOW_WARNING]),
        );

    info!("sshd up: OK; behind a 1 s path with latency_warning 400ms: WARNING slow");
    let up = probe(dir.path(), &checks);
    let ok = up.expect("ssh", "OK", "none");
    assert!(
        ok.result.message.contains("SSH-2.0-OpenSSH"),
        "message names the banner: {}",
        ok.describe()
    );
    up.expect("ssh-slow", "WARNING", "slow");

    info!("sshd hung (SIGSTOP): the kernel accepts, no banner comes: CRITICAL timeout");
    sshd.freeze();
    let hung = probe(
        dir.path(),
        &Checks::new("1s").check("ssh", "ssh", &host_port(sshd.port)),
    );
    hung.expect("ssh", "CRITICAL", "timeout");

    info!("sshd killed: CRITICAL refused; the proxy accepts then closes: CRITICAL protocol");
    sshd.stop();
    let down = probe(dir.path(), &checks);
    down.expect("ssh", "CRITICAL", "refused");
    down.expect("ssh-slow", "CRITICAL", "protocol");
}

#[test]
fn smtp_with_starttls_against_postfix() {
    let dir = ServerDir::new("postfix");
    let Some(cert) = available(TestCert::make(&dir)) else {
        return;
    };
    let Some(postfix) = available(Postfix::start(&dir, &cert)) else {
        return;
    };
    let checks = Checks::new(TIMEOUT)
        .check("smtp", "smtp", &host_port(postfix.port))
        .check(
            "smtp-ehlo",
            "smtp",
            &with(
                host_port(postfix.port),
                &["ehlo = \"probe.consentry.test\""],
            ),
        )
        .check(
            "smtp-starttls",
            "smtp",
            &with(
                host_port(postfix.port),
                &["tls = \"starttls\"", "tls_verify = false"],
            ),
        )
        .check(
            "smtp-starttls-verified",
            "smtp",
            &with(host_port(postfix.port), &["tls = \"starttls\""]),
        )
        .check("smtp-554", "smtp", &host_port(postfix.reject_port))
        .check(
            "tls-smtp",
            "tls",
            &with(
                host_port(postfix.port),
                &["starttls = \"smtp\"", "verify_chain = false"],
            ),
        );

    info!("postfix up: 220 OK, EHLO OK, STARTTLS OK; the rejecting listener's 554 greeting is WARNING (seed)");
    let up = probe(dir.path(), &checks);
    up.expect("smtp", "OK", "none");
    up.expect("smtp-ehlo", "OK", "none");
    up.expect("smtp-starttls", "OK", "none");
    up.expect("smtp-starttls-verified", "CRITICAL", "tls");
    let rejected = up.expect("smtp-554", "WARNING", "protocol");
    assert!(
        rejected.result.message.contains("554"),
        "the message quotes the greeting: {}",
        rejected.describe()
    );
    up.expect("tls-smtp", "WARNING", "cert_expiring");

    info!("postfix killed: CRITICAL refused on both listeners and for the certificate");
    postfix.stop();
    let down = probe(dir.path(), &checks);
    for name in [
        "smtp",
        "smtp-ehlo",
        "smtp-starttls",
        "smtp-starttls-verified",
        "smtp-554",
        "tls-smtp",
    ] {
        down.expect(name, "CRITICAL", "refused");
    }
}

#[test]
fn pop3_and_imap_with_starttls_against_dovecot() {
    let dir = ServerDir::new("dovecot");
    let Some(cert) = available(TestCert::make(&dir)) else {
        return;
    };
    let Some(dovecot) = available(Dovecot::start(&dir, &cert)) else {
        return;
    };
    let slow_pop3 = DelayProxy::start(dovecot.pop3_port, SLOW_PATH_DELAY);
    let slow_imap = DelayProxy::start(dovecot.imap_port, SLOW_PATH_DELAY);
    let checks = Checks::new(TIMEOUT)
        .check("pop3", "pop3", &host_port(dovecot.pop3_port))
        .check(
            "pop3-starttls",
            "pop3",
            &with(
                host_port(dovecot.pop3_port),
                &["tls = \"starttls\"", "tls_verify = false"],
            ),
        )
        .check(
            "pop3-slow",
            "pop3",
            &with(host_port(slow_pop3.port()), &[SLOW_WARNING]),
        )
        .check("imap", "imap", &host_port(dovecot.imap_port))
        .check(
            "imap-starttls",
            "imap",
            &with(
                host_port(dovecot.imap_port),
                &["tls = \"starttls\"", "tls_verify = false"],
            ),
        )
        .check(
            "imap-slow",
            "imap",
            &with(host_port(slow_imap.port()), &[SLOW_WARNING]),
        )
        .check(
            "tls-imap",
            "tls",
            &with(
                host_port(dovecot.imap_port),
                &[
                    "starttls = \"imap\"",
                    "verify_chain = false",
                    "days_warning = 10",
                    "days_critical = 5",
                ],
            ),
        )
        .check(
            "tls-pop3",
            "tls",
            &with(
                host_port(dovecot.pop3_port),
                &["starttls = \"pop3\"", "verify_chain = false"],
            ),
        );

    info!("dovecot up: +OK / * OK greetings and STARTTLS OK; behind a 1 s path WARNING slow");
    let up = probe(dir.path(), &checks);
    up.expect("pop3", "OK", "none");
    up.expect("pop3-starttls", "OK", "none");
    up.expect("pop3-slow", "WARNING", "slow");
    up.expect("imap", "OK", "none");
    up.expect("imap-starttls", "OK", "none");
    up.expect("imap-slow", "WARNING", "slow");
    up.expect("tls-imap", "OK", "none");
    up.expect("tls-pop3", "WARNING", "cert_expiring");

    info!("dovecot killed: CRITICAL refused");
    dovecot.stop();
    let down = probe(dir.path(), &checks);
    for name in [
        "pop3",
        "pop3-starttls",
        "imap",
        "imap-starttls",
        "tls-imap",
        "tls-pop3",
    ] {
        down.expect(name, "CRITICAL", "refused");
    }
}

#[test]
fn ftp_against_vsftpd() {
    let dir = ServerDir::new("vsftpd");
    let Some(vsftpd) = available(Vsftpd::start(&dir)) else {
        return;
    };
    let Some(broken) = available(Vsftpd::start_broken(&dir)) else {
        return;
    };
    let slow = DelayProxy::start(vsftpd.port, SLOW_PATH_DELAY);
    let checks = Checks::new(TIMEOUT)
        .check("ftp", "ftp", &host_port(vsftpd.port))
        .check(
            "ftp-slow",
            "ftp",
            &with(host_port(slow.port()), &[SLOW_WARNING]),
        )
        .check("ftp-oops", "ftp", &host_port(broken.port));

    info!("vsftpd up: 220 OK; behind a 1 s path WARNING slow; the misconfigured one's 500 OOPS CRITICAL protocol");
    let up = probe(dir.path(), &checks);
    up.expect("ftp", "OK", "none");
    up.expect("ftp-slow", "WARNING", "slow");
    up.expect("ftp-oops", "CRITICAL", "protocol");

    info!("vsftpd killed: CRITICAL refused");
    vsftpd.stop();
    broken.stop();
    let down = probe(dir.path(), &checks);
    down.expect("ftp", "CRITICAL", "refused");
    down.expect("ftp-oops", "CRITICAL", "refused");
}

#[test]
fn dns_against_unbound() {
    let dir = ServerDir::new("unbound");
    let Some(unbound) = available(Unbound::start(&dir)) else {
        return;
    };
    let server = [
        s("server = \"127.0.0.1\""),
        format!("port = {}", unbound.port),
    ];
    let query = |name: &str, extra: &[&str]| {
        let mut keys = server.to_vec();
        keys.push(format!("query = \"{name}\""));
        keys.extend(extra.iter().map(|k| (*k).to_owned()));
        keys
    };
    let expect_ok = format!("expect = [\"{}\"]", unbound::WWW_ADDRESS);
    let checks = Checks::new("2s")
        .check("dns", "dns", &query(unbound::WWW_NAME, &[&expect_ok]))
        .check(
            "dns-mx",
            "dns",
            &query("consentry.test", &["record = \"MX\""]),
        )
        .check(
            "dns-unexpected",
            "dns",
            &query(unbound::WWW_NAME, &["expect = [\"192.0.2.99\"]"]),
        )
        .check("dns-nxdomain", "dns", &query(unbound::MISSING_NAME, &[]))
        .check("dns-refused", "dns", &query(unbound::REFUSED_NAME, &[]));

    info!("unbound up: the local A and MX records OK; a wrong expect, NXDOMAIN and REFUSED CRITICAL dns");
    let up = probe(dir.path(), &checks);
    up.expect("dns", "OK", "none");
    up.expect("dns-mx", "OK", "none");
    up.expect("dns-unexpected", "CRITICAL", "dns");
    up.expect("dns-nxdomain", "CRITICAL", "dns");
    up.expect("dns-refused", "CRITICAL", "dns");

    info!("unbound killed: CRITICAL (nothing answers on the port)");
    unbound.stop();
    let down = probe(
        dir.path(),
        &Checks::new("2s").check("dns", "dns", &query(unbound::WWW_NAME, &[])),
    );
    let row = down.row("dns");
    assert_eq!(row.result.status, "CRITICAL", "{}", row.describe());
    assert!(
        ["refused", "timeout", "unreachable"].contains(&row.result.reason.as_str()),
        "a stopped DNS server is refused or silent, not {}",
        row.describe()
    );
    info!("  {}", row.describe());
}

#[test]
fn mysql_against_mariadb() {
    let dir = ServerDir::new("mariadb");
    let Some(db) = available(Mariadb::start(&dir)) else {
        return;
    };
    let slow = DelayProxy::start(db.port, SLOW_PATH_DELAY);
    let creds = [
        format!("user = \"{}\"", mariadb::USER),
        format!("password = \"{}\"", mariadb::PASSWORD),
    ];
    let creds: Vec<&str> = creds.iter().map(String::as_str).collect();
    let checks = Checks::new(TIMEOUT)
        .check("mysql", "mysql", &host_port(db.port))
        .check("mysql-login", "mysql", &with(host_port(db.port), &creds))
        .check(
            "mysql-query",
            "mysql",
            &with(
                host_port(db.port),
                &[creds[0], creds[1], "query = \"SELECT 1\""],
            ),
        )
        .check(
            "mysql-bad-password",
            "mysql",
            &with(host_port(db.port), &[creds[0], "password = \"wrong\""]),
        )
        .check(
            "mysql-slow",
            "mysql",
            &with(host_port(slow.port()), &[SLOW_WARNING]),
        );

    info!("mariadb up: handshake OK, login and query OK, wrong password CRITICAL, 1 s path WARNING slow");
    let up = probe(dir.path(), &checks);
    up.expect("mysql", "OK", "none");
    up.expect("mysql-login", "OK", "none");
    up.expect("mysql-query", "OK", "none");
    let denied = up.row("mysql-bad-password");
    assert_eq!(denied.result.status, "CRITICAL", "{}", denied.describe());
    up.expect("mysql-slow", "WARNING", "slow");

    info!("mariadb killed: CRITICAL refused");
    db.stop();
    let down = probe(dir.path(), &checks);
    for name in ["mysql", "mysql-login", "mysql-query"] {
        down.expect(name, "CRITICAL", "refused");
    }
}

#[test]
fn postgres_against_postgresql() {
    let dir = ServerDir::new("postgres");
    let Some(db) = available(Postgres::start(&dir)) else {
        return;
    };
    let slow = DelayProxy::start(db.port, SLOW_PATH_DELAY);
    let creds = [
        format!("user = \"{}\"", postgres::USER),
        format!("password = \"{}\"", postgres::PASSWORD),
        format!("database = \"{}\"", postgres::DATABASE),
    ];
    let creds: Vec<&str> = creds.iter().map(String::as_str).collect();
    let checks = Checks::new(TIMEOUT)
        .check("postgres", "postgres", &host_port(db.port))
        .check(
            "postgres-login",
            "postgres",
            &with(host_port(db.port), &creds),
        )
        .check(
            "postgres-query",
            "postgres",
            &with(
                host_port(db.port),
                &[creds[0], creds[1], creds[2], "query = \"SELECT 1\""],
            ),
        )
        .check(
            "postgres-bad-password",
            "postgres",
            &with(host_port(db.port), &[creds[0], "password = \"wrong\""]),
        )
        .check(
            "postgres-slow",
            "postgres",
            &with(host_port(slow.port()), &[SLOW_WARNING]),
        );

    info!("postgresql up: handshake OK, login and query OK, wrong password CRITICAL, 1 s path WARNING slow");
    let up = probe(dir.path(), &checks);
    up.expect("postgres", "OK", "none");
    up.expect("postgres-login", "OK", "none");
    up.expect("postgres-query", "OK", "none");
    let denied = up.row("postgres-bad-password");
    assert_eq!(denied.result.status, "CRITICAL", "{}", denied.describe());
    up.expect("postgres-slow", "WARNING", "slow");

    info!("postgresql killed: CRITICAL refused");
    db.stop();
    let down = probe(dir.path(), &checks);
    for name in ["postgres", "postgres-login", "postgres-query"] {
        down.expect(name, "CRITICAL", "refused");
    }
}

#[test]
fn icmp_to_loopback() {
    let dir = ServerDir::new("icmp");
    let checks = Checks::new(TIMEOUT)
        .check("icmp", "icmp", &[s("host = \"127.0.0.1\"")])
        .check(
            "icmp-rtt-warning",
            "icmp",
            &[s("host = \"127.0.0.1\""), s("rtt_warning = \"0ms\"")],
        );

    info!("echo to 127.0.0.1: OK; with rtt_warning 0ms every reply is over it: WARNING");
    let up = probe(dir.path(), &checks);
    let row = up.row("icmp");
    if row.result.status == "UNKNOWN" && row.result.message.contains("permission") {
        crate::harness::skip_unless_required(&format!("no ICMP socket here: {}", row.describe()));
        return;
    }
    up.expect("icmp", "OK", "none");
    let warned = up.row("icmp-rtt-warning");
    assert_eq!(warned.result.status, "WARNING", "{}", warned.describe());
    info!("  {}", warned.describe());
}
