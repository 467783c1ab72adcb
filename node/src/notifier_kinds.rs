//! `[[notifier]]` kinds: which keys each kind takes and how a table becomes a
//! [`NotifierKind`], every problem reported at its line and column.

use consentry_cluster::model::{Credentials, EmailNotifier, ExecNotifier, NotifierKind, TlsMode};
use toml::Spanned;

use crate::check_kinds::valid_http_url;
use crate::checks_file::{Checker, RawNotifier};
use crate::notify::summary::unknown_placeholders;

/// Every notifier kind, as written in `kind = "..."`.
pub const NOTIFIER_KINDS: &[&str] = &["webhook", "slack", "email", "alertmanager", "exec"];
/// Keys every `[[notifier]]` takes.
pub const NOTIFIER_COMMON_KEYS: &[&str] = &["name", "kind"];
/// Default `timeout` of an exec notifier.
pub const EXEC_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Longest `timeout` of an exec notifier.
pub const EXEC_TIMEOUT_MS_MAX: u64 = 60_000;
/// Most recipients of one email notifier.
pub const EMAIL_RECIPIENTS_MAX: usize = 100;
/// Most arguments of an exec notifier.
pub const EXEC_ARGS_MAX: usize = 64;

/// The keys `kind` takes besides the common ones; `None` for an unknown kind.
pub fn notifier_kind_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "webhook" | "slack" | "alertmanager" => &["url"],
        "email" => &[
            "server",
            "port",
            "tls",
            "tls_verify",
            "from",
            "to",
            "user",
            "password",
            "subject_firing",
            "subject_resolved",
        ],
        "exec" => &["argv", "timeout"],
        _ => return None,
    })
}

/// Resolves one `[[notifier]]` table's kind; `None` after reporting its problems.
pub(crate) fn notifier_kind(
    n: &RawNotifier,
    span: std::ops::Range<usize>,
    ck: &mut Checker<'_>,
) -> Option<NotifierKind> {
    let kind = n.kind.get_ref().as_str();
    match kind {
        "webhook" | "slack" | "alertmanager" => {
            let example = match kind {
                "slack" => "https://hooks.slack.com/services/...",
                "alertmanager" => "http://127.0.0.1:9093",
                _ => "http://...",
            };
            let url = match &n.url {
                Some(url) if valid_http_url(url.get_ref()) => url.get_ref().clone(),
                Some(url) => {
                    ck.at(
                        url.span(),
                        format!(
                            "url {:?} must start with http:// or https://",
                            url.get_ref()
                        ),
                    );
                    return None;
                }
                None => {
                    ck.at(span, format!("a {kind} notifier needs url = \"{example}\""));
                    return None;
                }
            };
            Some(match kind {
                "slack" => NotifierKind::Slack { url },
                "alertmanager" => NotifierKind::Alertmanager { url },
                _ => NotifierKind::Webhook { url },
            })
        }
        "email" => email(n, span, ck).map(NotifierKind::Email),
        "exec" => exec(n, span, ck).map(NotifierKind::Exec),
        other => {
            ck.at(
                n.kind.span(),
                format!(
                    "unknown notifier kind {other:?}; supported: {}",
                    NOTIFIER_KINDS.join(", ")
                ),
            );
            None
        }
    }
}

fn email(
    n: &RawNotifier,
    span: std::ops::Range<usize>,
    ck: &mut Checker<'_>,
) -> Option<EmailNotifier> {
    let mut ok = true;
    let server = match &n.server {
        Some(s) if !s.get_ref().is_empty() => s.get_ref().clone(),
        _ => {
            ck.at(
                span.clone(),
                "an email notifier needs server = \"smtp.example.org\"",
            );
            ok = false;
            String::new()
        }
    };
    let tls = match n.tls.as_ref().map(|t| (t.get_ref().as_str(), t.span())) {
        None | Some(("starttls", _)) => TlsMode::StartTls,
        Some(("none", _)) => TlsMode::None,
        Some(("implicit", _)) => TlsMode::Implicit,
        Some((other, s)) => {
            ck.at(
                s,
                format!("tls {other:?}: use \"none\", \"starttls\" or \"implicit\""),
            );
            ok = false;
            TlsMode::StartTls
        }
    };
    let port = match &n.port {
        None => match tls {
            TlsMode::Implicit => 465,
            TlsMode::StartTls => 587,
            TlsMode::None => 25,
        },
        Some(p) => match u16::try_from(*p.get_ref()) {
            Ok(p) if p > 0 => p,
            _ => {
                ck.at(
                    p.span(),
                    format!("port must be between 1 and 65535, got {}", p.get_ref()),
                );
                ok = false;
                0
            }
        },
    };
    let address = |ck: &mut Checker<'_>, v: &Spanned<String>, what: &str| -> bool {
        match v.get_ref().parse::<lettre::message::Mailbox>() {
            Ok(_) => true,
            Err(e) => {
                ck.at(
                    v.span(),
                    format!("{what} {:?} is not a mail address: {e}", v.get_ref()),
                );
                false
            }
        }
    };
    let from = match &n.from {
        Some(f) => {
            ok &= address(ck, f, "from");
            f.get_ref().clone()
        }
        None => {
            ck.at(
                span.clone(),
                "an email notifier needs from = \"consentry@example.org\"",
            );
            ok = false;
            String::new()
        }
    };
    let to = match &n.to {
        Some(to) if !to.get_ref().is_empty() => {
            for t in to.get_ref() {
                ok &= address(ck, t, "to");
            }
            if to.get_ref().len() > EMAIL_RECIPIENTS_MAX {
                ck.at(
                    to.span(),
                    format!("at most {EMAIL_RECIPIENTS_MAX} recipients"),
                );
                ok = false;
            }
            to.get_ref().iter().map(|t| t.get_ref().clone()).collect()
        }
        Some(to) => {
            ck.at(to.span(), "to needs at least one address");
            ok = false;
            Vec::new()
        }
        None => {
            ck.at(
                span.clone(),
                "an email notifier needs to = [\"ops@example.org\"]",
            );
            ok = false;
            Vec::new()
        }
    };
    let credentials = match (&n.user, &n.password) {
        (None, None) => None,
        (Some(user), Some(password)) => Some(Credentials {
            user: user.get_ref().clone(),
            password: password.get_ref().clone(),
        }),
        (Some(v), None) | (None, Some(v)) => {
            ck.at(v.span(), "user and password go together");
            ok = false;
            None
        }
    };
    if credentials.is_some() && tls == TlsMode::None {
        if let Some(t) = &n.tls {
            ck.at(
                t.span(),
                "refusing to send a password without TLS: use tls = \"starttls\" or \"implicit\"",
            );
            ok = false;
        }
    }
    let subject =
        |ck: &mut Checker<'_>, v: &Option<Spanned<String>>, what: &str| -> Option<String> {
            let v = v.as_ref()?;
            let unknown = unknown_placeholders(v.get_ref());
            if !unknown.is_empty() {
                ck.at(
                    v.span(),
                    format!(
                        "{what}: unknown placeholder(s) {}; known: {}",
                        unknown
                            .iter()
                            .map(|u| format!("{{{u}}}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        crate::notify::summary::PLACEHOLDERS
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            if v.get_ref().chars().any(char::is_control) {
                ck.at(
                    v.span(),
                    format!("{what} must be one line without control characters"),
                );
            }
            Some(v.get_ref().clone())
        };
    let subject_firing = subject(ck, &n.subject_firing, "subject_firing");
    let subject_resolved = subject(ck, &n.subject_resolved, "subject_resolved");
    ok.then(|| EmailNotifier {
        server,
        port,
        tls,
        tls_verify: n.tls_verify.unwrap_or(true),
        from,
        to,
        credentials,
        subject_firing,
        subject_resolved,
    })
}

fn exec(
    n: &RawNotifier,
    span: std::ops::Range<usize>,
    ck: &mut Checker<'_>,
) -> Option<ExecNotifier> {
    let argv = match &n.argv {
        Some(argv) if argv.get_ref().first().is_some_and(|p| p.starts_with('/')) => {
            if argv.get_ref().len() > EXEC_ARGS_MAX {
                ck.at(argv.span(), format!("argv: at most {EXEC_ARGS_MAX} items"));
                return None;
            }
            if argv.get_ref().iter().any(|a| a.contains('\0')) {
                ck.at(argv.span(), "argv items cannot contain NUL");
                return None;
            }
            argv.get_ref().clone()
        }
        Some(argv) => {
            ck.at(argv.span(), "argv[0] must be an absolute path (it runs without a shell, from the leader's notify_exec_dirs)");
            return None;
        }
        None => {
            ck.at(
                span,
                "an exec notifier needs argv = [\"/etc/consentry/notify.d/page\", ...]",
            );
            return None;
        }
    };
    let timeout_ms = match &n.timeout {
        None => EXEC_TIMEOUT_MS_DEFAULT,
        Some(t) => {
            let ms = ck.duration(t, "timeout")?;
            if ms == 0 || ms > EXEC_TIMEOUT_MS_MAX {
                ck.at(
                    t.span(),
                    format!("timeout must be more than 0 and at most {EXEC_TIMEOUT_MS_MAX} ms"),
                );
                return None;
            }
            ms
        }
    };
    Some(ExecNotifier { argv, timeout_ms })
}
