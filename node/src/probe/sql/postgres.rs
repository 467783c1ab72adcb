//! The PostgreSQL client side: a hand-written StartupMessage when the probe only wants to
//! see the server answer, `tokio-postgres` (without TLS) to log in and run the query.
//!
//! The greeting is judged on the first reply to a StartupMessage for `SQL_PROBE_USER`: an
//! authentication request, or an error that only refuses that user (SQLSTATE class 28) or
//! its database (3D000), means the server is up. Dropping the connection when asked for a
//! password is normal client behaviour that PostgreSQL does not log.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use consentry_cluster::model::{Credentials, Perf, Reason, SqlSpec};
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_postgres::config::SslMode;
use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::{outcome_of_io, SQL_PACKET_BYTES_MAX, SQL_PROBE_USER};
use crate::probe::Outcome;

/// Protocol 3.0.
const PROTOCOL_VERSION_3_0: u32 = 196_608;
/// How long the polite Terminate may take before the connection is simply dropped.
const POSTGRES_CLOSE_MS: u64 = 200;
/// The `application_name` the server shows in `pg_stat_activity` and its logs.
const APPLICATION_NAME: &str = "consentry";
/// Most bytes of a server message quoted in a result.
const POSTGRES_MESSAGE_BYTES_MAX: usize = 512;

/// Probes a PostgreSQL server over `stream`.
pub(super) async fn probe<S>(stream: S, spec: &SqlSpec, query: &str) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match &spec.credentials {
        None => greet(stream, spec.database.as_deref()).await,
        Some(credentials) => login_and_query(stream, spec, credentials, query).await,
    }
}

/// Sends a StartupMessage for `SQL_PROBE_USER` and judges the first reply.
async fn greet<S>(mut stream: S, database: Option<&str>) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let startup = startup_message(SQL_PROBE_USER, database);
    if let Err(e) = async {
        stream.write_all(&startup).await?;
        stream.flush().await
    }
    .await
    {
        return outcome_of_io(&e);
    }
    let mut header = [0u8; 5];
    if let Err(e) = stream.read_exact(&mut header).await {
        return outcome_of_io(&e);
    }
    let tag = header[0];
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let body_len = usize::try_from(len).unwrap_or(usize::MAX).saturating_sub(4);
    let well_formed = matches!(tag, b'R' | b'E') && len >= 4 && body_len <= SQL_PACKET_BYTES_MAX;
    if !well_formed {
        return Outcome::critical(
            Reason::Protocol,
            format!("not a PostgreSQL reply: starts with 0x{tag:02x}, announces {len} bytes"),
        );
    }
    if tag == b'R' {
        return Outcome::ok("PostgreSQL answered");
    }
    let mut body = vec![0; body_len];
    if let Err(e) = stream.read_exact(&mut body).await {
        return outcome_of_io(&e);
    }
    let fields = ErrorFields::parse(&body);
    let code = fields.code.as_str();
    if code.starts_with("28") || code == "3D000" {
        return Outcome::ok("PostgreSQL answered");
    }
    Outcome::critical(
        Reason::Protocol,
        format!("PostgreSQL refused: {} ({code})", fields.message),
    )
}

/// Logs in with `credentials` and runs `query`, counting the rows it returns.
async fn login_and_query<S>(
    stream: S,
    spec: &SqlSpec,
    credentials: &Credentials,
    query: &str,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Probes measure elapsed time locally; it is never compared across machines.
    #[allow(clippy::disallowed_methods)]
    let started = tokio::time::Instant::now();
    let user = &credentials.user;
    let mut config = tokio_postgres::Config::new();
    config
        .user(user)
        .password(&credentials.password)
        .application_name(APPLICATION_NAME)
        .ssl_mode(SslMode::Disable);
    if let Some(database) = &spec.database {
        config.dbname(database);
    }
    let (client, connection) = match config.connect_raw(stream, NoTls).await {
        Ok(pair) => pair,
        Err(e) => return outcome_of_login_error(&e, user),
    };
    // The connection runs beside the query in this task: nothing is spawned.
    let mut connection = std::pin::pin!(connection);
    let work = async {
        let rows = client.simple_query_raw(query).await?;
        let mut rows = std::pin::pin!(rows);
        let mut count = 0u64;
        // Ends within SQL_RESPONSE_BYTES_MAX, which the stream enforces.
        while let Some(message) = rows.try_next().await? {
            if matches!(message, SimpleQueryMessage::Row(_)) {
                count += 1;
            }
        }
        Ok::<u64, tokio_postgres::Error>(count)
    };
    let rows = tokio::select! {
        rows = work => rows,
        closed = &mut connection => {
            return match closed {
                Ok(()) => Outcome::critical(
                    Reason::Protocol,
                    "the server closed the connection before the query finished",
                ),
                Err(e) => outcome_of_query_error(&e),
            };
        }
    };
    let time_s = started.elapsed().as_secs_f64();
    // Dropping the client makes the connection send Terminate and finish.
    drop(client);
    let _ = tokio::time::timeout(Duration::from_millis(POSTGRES_CLOSE_MS), connection).await;
    match rows {
        Ok(rows) => Outcome::ok(format!("query returned {rows} row(s)"))
            .perf([Perf::new("time", time_s, "s")]),
        Err(e) => outcome_of_query_error(&e),
    }
}

fn outcome_of_login_error(e: &tokio_postgres::Error, user: &str) -> Outcome {
    match e.as_db_error() {
        Some(db) if db.code().code().starts_with("28") => Outcome::critical(
            Reason::Auth,
            format!(
                "authentication failed for user {user}: {}",
                quote(db.message())
            ),
        ),
        Some(db) => Outcome::critical(
            Reason::Protocol,
            format!(
                "PostgreSQL refused: {} ({})",
                quote(db.message()),
                db.code().code()
            ),
        ),
        None => outcome_of_other_error(e),
    }
}

fn outcome_of_query_error(e: &tokio_postgres::Error) -> Outcome {
    match e.as_db_error() {
        Some(db) => Outcome::critical(
            Reason::Protocol,
            format!(
                "query failed: {} ({})",
                quote(db.message()),
                db.code().code()
            ),
        ),
        None => outcome_of_other_error(e),
    }
}

/// An error that is not the server's: an I/O error inside, or the client's own complaint.
fn outcome_of_other_error(e: &tokio_postgres::Error) -> Outcome {
    let mut source = e.source();
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<io::Error>() {
            return outcome_of_io(io);
        }
        source = inner.source();
    }
    Outcome::critical(Reason::Protocol, format!("PostgreSQL: {e}"))
}

/// A StartupMessage (protocol 3.0) for `user`.
fn startup_message(user: &str, database: Option<&str>) -> Vec<u8> {
    let mut body = PROTOCOL_VERSION_3_0.to_be_bytes().to_vec();
    let mut param = |name: &str, value: &str| {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    };
    param("user", user);
    if let Some(database) = database {
        param("database", database);
    }
    param("application_name", APPLICATION_NAME);
    body.push(0);
    let len = u32::try_from(body.len() + 4).unwrap_or(u32::MAX);
    let mut message = len.to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

/// A server message cut to `POSTGRES_MESSAGE_BYTES_MAX` bytes.
fn quote(message: &str) -> String {
    let mut end = message.len().min(POSTGRES_MESSAGE_BYTES_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_string()
}

/// The fields of an ErrorResponse the probe reports.
#[derive(Debug, Default, PartialEq, Eq)]
struct ErrorFields {
    code: String,
    message: String,
}

impl ErrorFields {
    /// Parses an ErrorResponse body: (type byte, NUL-terminated text)*, then NUL.
    fn parse(body: &[u8]) -> Self {
        let mut fields = Self::default();
        let mut rest = body;
        while let Some((&kind, tail)) = rest.split_first() {
            if kind == 0 {
                break;
            }
            let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
            let value = quote(&String::from_utf8_lossy(&tail[..end]));
            match kind {
                b'C' => fields.code = value,
                b'M' => fields.message = value,
                _ => {}
            }
            rest = tail.get(end + 1..).unwrap_or_default();
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use consentry_cluster::model::{CheckSpec, SqlEngine, Status};
    use tokio::net::TcpStream;

    use super::*;
    use crate::probe::test_support::{assert_verdict, finish, serve_once as serve, sql_check};
    use crate::probe::Prober;
    use tokio::task::JoinHandle;

    fn check(port: u16, credentials: Option<(&str, &str)>) -> CheckSpec {
        sql_check(SqlEngine::Postgres, port, credentials)
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = u32::try_from(body.len() + 4).expect("short");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn error(code: &str, text: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in [(b'S', "FATAL"), (b'C', code), (b'M', text)] {
            body.push(kind);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        message(b'E', &body)
    }

    /// Reads the StartupMessage and returns its parameters.
    async fn read_startup(socket: &mut TcpStream) -> Vec<(String, String)> {
        let mut len = [0u8; 4];
        socket.read_exact(&mut len).await.expect("len");
        let mut body = vec![0; usize::try_from(u32::from_be_bytes(len)).expect("len") - 4];
        socket.read_exact(&mut body).await.expect("body");
        assert_eq!(body[..4], PROTOCOL_VERSION_3_0.to_be_bytes());
        let text = String::from_utf8(body[4..].to_vec()).expect("utf8");
        let parts: Vec<&str> = text.split('\0').filter(|s| !s.is_empty()).collect();
        parts
            .chunks(2)
            .map(|kv| (kv[0].to_string(), kv[1].to_string()))
            .collect()
    }

    async fn read_message(socket: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut header = [0u8; 5];
        socket.read_exact(&mut header).await.expect("header");
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let mut body = vec![0; usize::try_from(len).expect("len") - 4];
        socket.read_exact(&mut body).await.expect("body");
        (header[0], body)
    }

    /// Answers the StartupMessage with `reply` and waits for the probe to hang up.
    async fn greet_with(reply: Vec<u8>) -> (u16, JoinHandle<()>) {
        serve(|mut socket| async move {
            let params = read_startup(&mut socket).await;
            assert!(params.contains(&("user".into(), SQL_PROBE_USER.into())));
            let _ = socket.write_all(&reply).await;
            let _ = socket.read(&mut [0u8; 64]).await;
        })
        .await
    }

    #[tokio::test]
    async fn an_authentication_request_means_up() {
        // AuthenticationMD5Password with a salt.
        let (port, server) = greet_with(message(b'R', &[0, 0, 0, 5, 1, 2, 3, 4])).await;
        let result = Prober::for_test(None).probe(&check(port, None)).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert!(
            result.message.starts_with("PostgreSQL answered in "),
            "{}",
            result.message
        );
        finish(server).await;
    }

    #[tokio::test]
    async fn refused_user_means_up_but_starting_up_is_critical() {
        let cases = [
            ("28000", "no pg_hba.conf entry for host", Status::Ok),
            ("28P01", "password authentication failed", Status::Ok),
            ("3D000", "database \"app\" does not exist", Status::Ok),
            (
                "57P03",
                "the database system is starting up",
                Status::Critical,
            ),
            ("53300", "sorry, too many clients already", Status::Critical),
        ];
        for (code, text, want) in cases {
            let (port, server) = greet_with(error(code, text)).await;
            let result = Prober::for_test(None).probe(&check(port, None)).await;
            assert_eq!(result.status, want, "{code}: {result:?}");
            if want == Status::Critical {
                assert_eq!(result.reason, Reason::Protocol, "{code}");
                assert!(result.message.contains(text), "{}", result.message);
                assert!(result.message.contains(code), "{}", result.message);
            }
            finish(server).await;
        }
    }

    #[tokio::test]
    async fn garbage_and_huge_lengths_are_protocol_errors() {
        let cases: [(&str, Vec<u8>); 3] = [
            ("ssh banner", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec()),
            ("huge error", vec![b'E', 0x7f, 0xff, 0xff, 0xff, b'S']),
            ("short length", vec![b'R', 0, 0, 0, 2]),
        ];
        for (name, reply) in cases {
            let (port, server) = greet_with(reply).await;
            let result = Prober::for_test(None).probe(&check(port, None)).await;
            assert_eq!(
                (result.status, result.reason),
                (Status::Critical, Reason::Protocol),
                "{name}: {result:?}"
            );
            assert!(
                result.message.starts_with("not a PostgreSQL reply"),
                "{name}: {}",
                result.message
            );
            finish(server).await;
        }
    }

    #[tokio::test]
    async fn endless_bytes_end_at_the_bounds() {
        let (port, server) = serve(|mut socket| async move {
            let _ = read_startup(&mut socket).await;
            let chunk = [b'E'; 4096];
            while socket.write_all(&chunk).await.is_ok() {}
        })
        .await;
        let result = Prober::for_test(None).probe(&check(port, None)).await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
        finish(server).await;
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let (port, server) = serve(|mut socket| async move {
            let _ = read_startup(&mut socket).await;
            let _ = socket.read(&mut [0u8; 64]).await;
        })
        .await;
        let mut check = check(port, None);
        check.timeout_ms = 300;
        let result = Prober::for_test(None).probe(&check).await;
        assert_verdict(&result, Status::Critical, Reason::Timeout);
        finish(server).await;
    }

    /// A PostgreSQL that asks for a cleartext password, checks it, and answers the query
    /// with `rows` rows of one text column.
    async fn postgres(mut socket: TcpStream, password: &'static str, rows: usize) {
        let params = read_startup(&mut socket).await;
        assert!(params.contains(&("database".into(), "app".into())));
        let user = params
            .iter()
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.clone())
            .expect("user");
        socket
            .write_all(&message(b'R', &3u32.to_be_bytes()))
            .await
            .expect("ask");
        let (tag, body) = read_message(&mut socket).await;
        assert_eq!(tag, b'p');
        if body != [password.as_bytes(), &[0]].concat() {
            let text = format!("password authentication failed for user \"{user}\"");
            let _ = socket.write_all(&error("28P01", &text)).await;
            return;
        }
        let mut reply = message(b'R', &0u32.to_be_bytes());
        reply.extend(message(b'K', &[0, 0, 0, 7, 0, 0, 0, 9]));
        reply.extend(message(b'Z', b"I"));
        socket.write_all(&reply).await.expect("ready");
        let (tag, body) = read_message(&mut socket).await;
        assert_eq!((tag, body.as_slice()), (b'Q', &b"SELECT 1\0"[..]));
        let mut field = b"?column?\0".to_vec();
        field.extend_from_slice(&[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 255, 255, 255, 255, 0, 0,
        ]);
        let mut reply = message(b'T', &[&[0, 1][..], &field].concat());
        for _ in 0..rows {
            reply.extend(message(b'D', &[0, 1, 0, 0, 0, 1, b'1']));
        }
        reply.extend(message(b'C', format!("SELECT {rows}\0").as_bytes()));
        reply.extend(message(b'Z', b"I"));
        socket.write_all(&reply).await.expect("rows");
        let (tag, _) = read_message(&mut socket).await;
        assert_eq!(tag, b'X', "the probe says goodbye");
    }

    #[tokio::test]
    async fn login_and_query_count_rows() {
        let (port, server) = serve(|socket| postgres(socket, "s3cret", 3)).await;
        let result = Prober::for_test(None)
            .probe(&check(port, Some(("monitor", "s3cret"))))
            .await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert!(
            result.message.starts_with("query returned 3 row(s) in "),
            "{}",
            result.message
        );
        assert_eq!(result.perfdata[0].label, "time");
        finish(server).await;
    }

    #[tokio::test]
    async fn wrong_password_is_an_authentication_failure_without_the_password() {
        let (port, server) = serve(|socket| postgres(socket, "s3cret", 1)).await;
        let result = Prober::for_test(None)
            .probe(&check(port, Some(("monitor", "wrong-pw"))))
            .await;
        assert_verdict(&result, Status::Critical, Reason::Auth);
        assert!(
            result
                .message
                .starts_with("authentication failed for user monitor: password authentication"),
            "{}",
            result.message
        );
        assert!(!result.message.contains("wrong-pw"), "{}", result.message);
        finish(server).await;
    }

    #[test]
    fn error_fields_survive_truncation() {
        let full = error("57P03", "the database system is starting up");
        let body = &full[5..];
        let fields = ErrorFields::parse(body);
        assert_eq!(fields.code, "57P03");
        assert_eq!(fields.message, "the database system is starting up");
        for len in 0..body.len() {
            let _ = ErrorFields::parse(&body[..len]);
        }
    }
}
