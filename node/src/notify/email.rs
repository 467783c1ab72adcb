//! The `email` notifier: one plain-text UTF-8 message through an SMTP server (lettre),
//! in plain text, STARTTLS or implicit TLS, with optional SMTP AUTH.
//!
//! The subject is the language-neutral headline or the notifier's own template (which may
//! be in any language: lettre encodes a non-ASCII subject as RFC 2047 words); the body is
//! the [`Summary`] text, `text/plain; charset=utf-8`. The dedup key travels in the header
//! `X-Consentry-Dedup-Key`.

use std::time::Duration;

use consentry_cluster::model::{EmailNotifier, TlsMode, Transition};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::Summary;

/// Builds the message for `summary`.
///
/// # Errors
/// When an address does not parse (the checks file validation makes that rare).
pub fn message(spec: &EmailNotifier, summary: &Summary<'_>) -> Result<Message, String> {
    let from: Mailbox = spec
        .from
        .parse()
        .map_err(|e| format!("from {:?}: {e}", spec.from))?;
    let template = match summary.transition {
        Transition::Firing => spec.subject_firing.as_deref(),
        Transition::Resolved => spec.subject_resolved.as_deref(),
    };
    let subject = match template {
        Some(t) => summary.render(t),
        None => summary.subject(),
    };
    let mut builder = Message::builder().from(from).subject(subject);
    for to in &spec.to {
        let to: Mailbox = to.parse().map_err(|e| format!("to {to:?}: {e}"))?;
        builder = builder.to(to);
    }
    builder
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Consentry-Dedup-Key"),
            summary.dedup_key.to_string(),
        ))
        .header(ContentType::TEXT_PLAIN)
        .body(summary.text())
        .map_err(|e| format!("building the message: {e}"))
}

/// Sends the message for `summary` once, the whole conversation bounded by `timeout_ms`
/// per SMTP command.
///
/// # Errors
/// When the server is unreachable, TLS fails, authentication is refused or the server
/// rejects the message.
pub async fn send(
    spec: &EmailNotifier,
    summary: &Summary<'_>,
    timeout_ms: u64,
) -> Result<(), String> {
    let message = message(spec, summary)?;
    let server = format!("{}:{}", spec.server, spec.port);
    let params = || {
        TlsParameters::builder(spec.server.clone())
            .dangerous_accept_invalid_certs(!spec.tls_verify)
            .dangerous_accept_invalid_hostnames(!spec.tls_verify)
            .build_rustls()
            .map_err(|e| format!("smtp {server}: TLS settings: {e}"))
    };
    let tls = match spec.tls {
        TlsMode::None => Tls::None,
        TlsMode::StartTls => Tls::Required(params()?),
        TlsMode::Implicit => Tls::Wrapper(params()?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(spec.server.as_str())
        .port(spec.port)
        .tls(tls)
        .timeout(Some(Duration::from_millis(timeout_ms)));
    if let Some(c) = &spec.credentials {
        builder = builder.credentials(Credentials::new(c.user.clone(), c.password.clone()));
    }
    let transport: AsyncSmtpTransport<Tokio1Executor> = builder.build();
    transport
        .send(message)
        .await
        .map(drop)
        .map_err(|e| format!("smtp {server}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use consentry_cluster::model::{NotifierKind, NotifierSpec, Transition};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;
    use crate::notify::deliver;
    use crate::notify::summary::tests::fixture;

    /// Most bytes of DATA the fake server keeps.
    const DATA_BYTES_MAX: usize = 1024 * 1024;

    /// A minimal SMTP server: accepts every command and keeps each message's DATA.
    /// `reject_data` answers the end of DATA with 554.
    async fn smtp_server(reject_data: bool) -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let kept = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    let _ = write.write_all(b"220 fake ESMTP\r\n").await;
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        match read.read_until(b'\n', &mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let cmd = String::from_utf8_lossy(&line).to_ascii_uppercase();
                        let answer: &[u8] = if cmd.starts_with("EHLO") {
                            b"250-fake\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n"
                        } else if cmd.starts_with("DATA") {
                            let _ = write.write_all(b"354 go ahead\r\n").await;
                            let mut data = Vec::new();
                            loop {
                                line.clear();
                                match read.read_until(b'\n', &mut line).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(_) => {}
                                }
                                if line == b".\r\n" {
                                    break;
                                }
                                if data.len() < DATA_BYTES_MAX {
                                    data.extend_from_slice(&line);
                                }
                            }
                            if reject_data {
                                b"554 5.7.1 no thanks\r\n"
                            } else {
                                kept.lock().unwrap().push(data);
                                b"250 2.0.0 queued\r\n"
                            }
                        } else if cmd.starts_with("QUIT") {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"250 ok\r\n"
                        };
                        if write.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, mails)
    }

    fn notifier(port: u16) -> NotifierSpec {
        NotifierSpec {
            name: "mail".into(),
            kind: NotifierKind::Email(EmailNotifier {
                server: "127.0.0.1".into(),
                port,
                tls: TlsMode::None,
                tls_verify: true,
                from: "consentry <consentry@example.org>".into(),
                to: vec!["ops@example.org".into(), "oncall@example.org".into()],
                credentials: None,
                subject_firing: Some("【障害】{check} が停止しました".into()),
                subject_resolved: None,
            }),
        }
    }

    #[tokio::test]
    async fn a_japanese_subject_arrives_intact() {
        let (port, mails) = smtp_server(false).await;
        let (intent, incident, check) = fixture(Transition::Firing);
        let ctx = crate::notify::NotifyContext::for_test(1);
        deliver(&notifier(port), &intent, &incident, Some(&check), &ctx)
            .await
            .unwrap();
        let data = mails.lock().unwrap()[0].clone();
        let raw = String::from_utf8_lossy(&data);
        // On the wire the subject is RFC 2047 encoded (7-bit headers).
        let subject_line = raw
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("subject:"))
            .unwrap();
        assert!(
            subject_line.is_ascii() && subject_line.contains("=?utf-8?"),
            "{subject_line}"
        );
        let mail = mailparse::parse_mail(&data).unwrap();
        use mailparse::MailHeaderMap;
        assert_eq!(
            mail.headers.get_first_value("Subject").as_deref(),
            Some("【障害】web1 が停止しました")
        );
        assert_eq!(
            mail.headers
                .get_first_value("X-Consentry-Dedup-Key")
                .as_deref(),
            Some("incident-2/firing/ops")
        );
        let to = mail.headers.get_first_value("To").unwrap();
        assert!(
            to.contains("ops@example.org") && to.contains("oncall@example.org"),
            "{to}"
        );
        assert_eq!(mail.ctype.mimetype, "text/plain");
        assert_eq!(mail.ctype.charset.to_ascii_lowercase(), "utf-8");
        let body = mail.get_body().unwrap();
        for want in [
            "check: web1",
            "status: CRITICAL",
            "sites: site-a, site-b",
            "incident: 2",
            "dedup key: incident-2/firing/ops",
            "label 説明: ウェブサーバー1号機",
            "接続が拒否されました",
        ] {
            assert!(body.contains(want), "{want:?} in {body}");
        }

        // Resolved, without a template: the language-neutral default subject.
        let (intent, mut incident, check) = fixture(Transition::Resolved);
        incident.closed_by = incident.opened_by.clone();
        deliver(&notifier(port), &intent, &incident, Some(&check), &ctx)
            .await
            .unwrap();
        let data = mails.lock().unwrap()[1].clone();
        let mail = mailparse::parse_mail(&data).unwrap();
        assert_eq!(
            mail.headers.get_first_value("Subject").as_deref(),
            Some("[consentry] RESOLVED OK web1 (incident 2, sites site-a, site-b)")
        );
    }

    #[tokio::test]
    async fn a_rejecting_or_absent_server_is_a_failure() {
        let (port, _) = smtp_server(true).await;
        let (intent, incident, check) = fixture(Transition::Firing);
        let ctx = crate::notify::NotifyContext::for_test(1);
        let err = deliver(&notifier(port), &intent, &incident, Some(&check), &ctx)
            .await
            .unwrap_err();
        assert!(err.contains("554") || err.contains("no thanks"), "{err}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let err = deliver(&notifier(port), &intent, &incident, Some(&check), &ctx)
            .await
            .unwrap_err();
        assert!(err.starts_with("smtp 127.0.0.1:"), "{err}");
    }
}
