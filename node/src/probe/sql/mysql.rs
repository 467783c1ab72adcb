//! The MySQL/MariaDB client side, spoken by hand: the greeting, a login with
//! `mysql_native_password` (or `caching_sha2_password`'s fast path), one text-protocol
//! `COM_QUERY`, `COM_QUIT`.
//!
//! Written by hand rather than with `mysql_async`: that crate cannot leave from a chosen
//! source address (it opens its own socket and takes none), which MySQL's host-based
//! grants make essential, and it would add about a minute of build time.
//!
//! Without credentials the probe still logs in, as `SQL_PROBE_USER` with no password, and
//! takes "access denied" as proof the server works: a client that drops the connection
//! after the greeting counts as a handshake error, and `max_connect_errors` of those block
//! the monitor's address (the same reason HAProxy's `mysql-check` logs in).

use std::io;
use std::time::Duration;

use consentry_cluster::model::{Perf, Reason, SqlSpec};
use ring::digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{outcome_of_io, SQL_PACKET_BYTES_MAX, SQL_PROBE_USER};
use crate::probe::Outcome;

/// Most authentication exchanges (plugin switches, extra data) before giving up.
const MYSQL_AUTH_ROUNDS_MAX: usize = 4;
/// Most result columns read (MySQL allows 4096 per table).
const MYSQL_COLUMNS_MAX: u64 = 4096;
/// How long a polite `COM_QUIT` may take before the connection is simply dropped.
const MYSQL_QUIT_MS: u64 = 200;
/// A packet of this length continues in the next one.
const MYSQL_PAYLOAD_BYTES_CONTINUED: usize = 0xff_ffff;
/// A packet starting with 0xfe and shorter than this is an EOF packet, not a row.
const MYSQL_EOF_PACKET_BYTES_MAX: usize = 9;

const PROTOCOL_VERSION_10: u8 = 10;
/// `utf8_general_ci`, known to every server since 4.1.
const CHARSET_UTF8: u8 = 33;

const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_TRANSACTIONS: u32 = 0x0000_2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;

const COM_QUIT: u8 = 0x01;
const COM_QUERY: u8 = 0x03;

const NATIVE_PASSWORD: &str = "mysql_native_password";
const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// ER_ACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_NO_PASSWORD_ERROR.
const ACCESS_DENIED_CODES: [u16; 3] = [1045, 1044, 1698];

/// Why talking to the server failed.
#[derive(Debug, thiserror::Error)]
enum MysqlError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The bytes are not the MySQL protocol.
    #[error("{0}")]
    Protocol(String),
    /// The server answered with an ERR packet.
    #[error("{message} (error {code})")]
    Server { code: u16, message: String },
    /// The server wants something the probe does not speak (an authentication plugin).
    #[error("{0}")]
    Unsupported(String),
}

/// What the server's initial handshake packet says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Greeting {
    server_version: String,
    capabilities: u32,
    /// The 20-byte challenge the password is scrambled with.
    nonce: Vec<u8>,
    auth_plugin: String,
}

/// One connection, tracking the packet sequence number.
struct Conn<S> {
    stream: S,
    /// The sequence number of the next packet written.
    seq: u8,
}

/// Probes a MySQL/MariaDB server over `stream`.
pub(super) async fn probe<S>(stream: S, spec: &SqlSpec, query: &str) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Probes measure elapsed time locally; it is never compared across machines.
    #[allow(clippy::disallowed_methods)]
    let started = tokio::time::Instant::now();
    let mut conn = Conn { stream, seq: 0 };
    let greeting = match conn.greeting().await {
        Ok(greeting) => greeting,
        Err(MysqlError::Protocol(message)) => {
            return Outcome::critical(
                Reason::Protocol,
                format!("not a MySQL server greeting: {message}"),
            )
        }
        Err(e) => return outcome_of(&e),
    };
    let server = describe_version(&greeting.server_version);
    let Some(credentials) = &spec.credentials else {
        return match conn.login(&greeting, SQL_PROBE_USER, "", None).await {
            Ok(()) => {
                conn.quit().await;
                Outcome::ok(format!("{server} handshake"))
            }
            Err(MysqlError::Server { code, .. }) if ACCESS_DENIED_CODES.contains(&code) => {
                Outcome::ok(format!("{server} handshake"))
            }
            Err(MysqlError::Unsupported(_)) => Outcome::ok(format!("{server} handshake")),
            Err(e) => outcome_of(&e),
        };
    };
    let user = &credentials.user;
    let database = spec.database.as_deref();
    match conn
        .login(&greeting, user, &credentials.password, database)
        .await
    {
        Ok(()) => {}
        Err(MysqlError::Server { code, message }) if ACCESS_DENIED_CODES.contains(&code) => {
            return Outcome::critical(
                Reason::Auth,
                format!("authentication failed for user {user}: {message}"),
            )
        }
        Err(MysqlError::Unsupported(message)) => return Outcome::unknown(message),
        Err(e) => return outcome_of(&e),
    }
    let rows = conn.query(query).await;
    let time_s = started.elapsed().as_secs_f64();
    // After an answer, good or bad, the connection is still in step: close it politely.
    if matches!(rows, Ok(_) | Err(MysqlError::Server { .. })) {
        conn.quit().await;
    }
    let rows = match rows {
        Ok(rows) => rows,
        Err(MysqlError::Server { code, message }) => {
            return Outcome::critical(
                Reason::Protocol,
                format!("query failed: {message} (error {code})"),
            )
        }
        Err(e) => return outcome_of(&e),
    };
    Outcome::ok(format!("{server}: query returned {rows} row(s)"))
        .perf([Perf::new("time", time_s, "s")])
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Reads and parses the server's first packet.
    async fn greeting(&mut self) -> Result<Greeting, MysqlError> {
        let packet = self.read_packet().await?;
        parse_greeting(&packet)
    }

    /// Logs in as `user`, following plugin switches up to `MYSQL_AUTH_ROUNDS_MAX`.
    async fn login(
        &mut self,
        greeting: &Greeting,
        user: &str,
        password: &str,
        database: Option<&str>,
    ) -> Result<(), MysqlError> {
        let server = greeting.capabilities;
        if server & CLIENT_PROTOCOL_41 == 0 || server & CLIENT_SECURE_CONNECTION == 0 {
            return Err(MysqlError::Unsupported(
                "the server speaks only the pre-4.1 protocol".to_string(),
            ));
        }
        let mut plugin = if server & CLIENT_PLUGIN_AUTH != 0
            && scramble(&greeting.auth_plugin, password, &greeting.nonce).is_some()
        {
            greeting.auth_plugin.clone()
        } else {
            NATIVE_PASSWORD.to_string()
        };
        let auth = scramble(&plugin, password, &greeting.nonce).unwrap_or_default();
        let packet = handshake_response(server, user, &auth, database, &plugin);
        self.write_packet(&packet).await?;
        for _ in 0..MYSQL_AUTH_ROUNDS_MAX {
            let reply = self.read_packet().await?;
            match reply.first() {
                Some(0x00) => return Ok(()),
                Some(0xff) => return Err(server_error(&reply)),
                Some(0xfe) => {
                    let mut r = Reader::new(&reply[1..]);
                    let name = r.cstr_or_rest()?;
                    let nonce = trim_nul(r.rest());
                    let Some(auth) = scramble(&name, password, nonce) else {
                        return Err(MysqlError::Unsupported(format!(
                            "the server asks for the {name} authentication plugin, which the \
                             probe does not speak; give the user {NATIVE_PASSWORD}"
                        )));
                    };
                    plugin = name;
                    self.write_packet(&auth).await?;
                }
                Some(0x01) if plugin == CACHING_SHA2_PASSWORD => match reply.get(1) {
                    // Fast authentication succeeded; an OK packet follows.
                    Some(0x03) => {}
                    Some(0x04) => {
                        return Err(MysqlError::Unsupported(format!(
                            "the server asks for {CACHING_SHA2_PASSWORD} full authentication \
                             (TLS or RSA), which the probe does not speak; give the user \
                             {NATIVE_PASSWORD}"
                        )))
                    }
                    _ => return Err(unexpected("authentication data", &reply)),
                },
                _ => return Err(unexpected("reply to the login", &reply)),
            }
        }
        Err(MysqlError::Protocol(format!(
            "no verdict after {MYSQL_AUTH_ROUNDS_MAX} authentication rounds"
        )))
    }

    /// Runs `query` with the text protocol and counts the rows of its result.
    async fn query(&mut self, query: &str) -> Result<u64, MysqlError> {
        self.seq = 0;
        let mut packet = Vec::with_capacity(1 + query.len());
        packet.push(COM_QUERY);
        packet.extend_from_slice(query.as_bytes());
        self.write_packet(&packet).await?;
        let first = self.read_packet().await?;
        let columns = match first.first() {
            // A statement without a result set.
            Some(0x00) => return Ok(0),
            Some(0xff) => return Err(server_error(&first)),
            Some(0xfb) => {
                return Err(MysqlError::Protocol(
                    "the server asks for a local file".to_string(),
                ))
            }
            _ => Reader::new(&first).lenenc()?,
        };
        if columns == 0 || columns > MYSQL_COLUMNS_MAX {
            return Err(MysqlError::Protocol(format!(
                "a result of {columns} columns (at most {MYSQL_COLUMNS_MAX})"
            )));
        }
        for _ in 0..columns {
            if let Some(packet) = self.read_row_packet().await? {
                if packet.first() == Some(&0xff) {
                    return Err(server_error(&packet));
                }
            }
        }
        match self.read_row_packet().await? {
            Some(packet) if is_eof(&packet) => {}
            Some(packet) if packet.first() == Some(&0xff) => return Err(server_error(&packet)),
            _ => {
                return Err(MysqlError::Protocol(
                    "no EOF packet after the column definitions".to_string(),
                ))
            }
        }
        // Ends within SQL_RESPONSE_BYTES_MAX: every packet spends at least its header.
        let mut rows = 0u64;
        loop {
            match self.read_row_packet().await? {
                Some(packet) if is_eof(&packet) => return Ok(rows),
                Some(packet) if packet.first() == Some(&0xff) => return Err(server_error(&packet)),
                _ => rows += 1,
            }
        }
    }

    /// Says goodbye so the server logs no aborted connection; failures do not matter.
    async fn quit(&mut self) {
        self.seq = 0;
        let goodbye = async {
            self.write_packet(&[COM_QUIT]).await?;
            self.stream.shutdown().await.map_err(MysqlError::from)
        };
        let _ = tokio::time::timeout(Duration::from_millis(MYSQL_QUIT_MS), goodbye).await;
    }

    /// Reads one packet of at most `SQL_PACKET_BYTES_MAX` bytes.
    async fn read_packet(&mut self) -> Result<Vec<u8>, MysqlError> {
        let len = self.read_header().await?;
        if len > SQL_PACKET_BYTES_MAX {
            return Err(MysqlError::Protocol(format!(
                "a packet of {len} bytes (at most {SQL_PACKET_BYTES_MAX})"
            )));
        }
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload).await?;
        Ok(payload)
    }

    /// Reads one result packet, discarding (and returning `None` for) one larger than
    /// `SQL_PACKET_BYTES_MAX`: a large row still counts, without being kept.
    async fn read_row_packet(&mut self) -> Result<Option<Vec<u8>>, MysqlError> {
        let mut len = self.read_header().await?;
        if len <= SQL_PACKET_BYTES_MAX {
            let mut payload = vec![0; len];
            self.stream.read_exact(&mut payload).await?;
            return Ok(Some(payload));
        }
        // Ends within SQL_RESPONSE_BYTES_MAX, which the stream enforces.
        loop {
            let want = u64::try_from(len).unwrap_or(u64::MAX);
            let skipped =
                tokio::io::copy(&mut (&mut self.stream).take(want), &mut tokio::io::sink()).await?;
            if skipped < want {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            if len < MYSQL_PAYLOAD_BYTES_CONTINUED {
                return Ok(None);
            }
            len = self.read_header().await?;
        }
    }

    /// Reads a packet header and returns the payload length.
    async fn read_header(&mut self) -> Result<usize, MysqlError> {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header).await?;
        self.seq = header[3].wrapping_add(1);
        Ok(usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16)
    }

    /// Writes one packet; payloads are shorter than `SQL_PACKET_BYTES_MAX`.
    async fn write_packet(&mut self, payload: &[u8]) -> Result<(), MysqlError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|len| *len < 0x00ff_ffff)
            .ok_or_else(|| MysqlError::Protocol("a packet too long to send".to_string()))?;
        let mut packet = Vec::with_capacity(4 + payload.len());
        packet.extend_from_slice(&len.to_le_bytes()[..3]);
        packet.push(self.seq);
        packet.extend_from_slice(payload);
        self.stream.write_all(&packet).await?;
        self.stream.flush().await?;
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }
}

fn outcome_of(e: &MysqlError) -> Outcome {
    match e {
        MysqlError::Io(e) => outcome_of_io(e),
        MysqlError::Protocol(message) => Outcome::critical(Reason::Protocol, message.clone()),
        MysqlError::Server { code, message } => Outcome::critical(
            Reason::Protocol,
            format!("the server refused: {message} (error {code})"),
        ),
        MysqlError::Unsupported(message) => Outcome::unknown(message.clone()),
    }
}

/// Parses the initial handshake packet (protocol 10) or the ERR packet sent instead.
fn parse_greeting(packet: &[u8]) -> Result<Greeting, MysqlError> {
    let mut r = Reader::new(packet);
    let version = r.u8()?;
    if version == 0xff {
        return Err(server_error(packet));
    }
    if version != PROTOCOL_VERSION_10 {
        return Err(MysqlError::Protocol(format!(
            "protocol version {version}, expected {PROTOCOL_VERSION_10}"
        )));
    }
    let server_version = String::from_utf8_lossy(r.cstr()?).into_owned();
    let _connection_id = r.bytes(4)?;
    let mut nonce = r.bytes(8)?.to_vec();
    let _filler = r.u8()?;
    let mut capabilities = u32::from(r.u16()?);
    let mut auth_plugin = NATIVE_PASSWORD.to_string();
    if !r.rest().is_empty() {
        let _charset = r.u8()?;
        let _status = r.u16()?;
        capabilities |= u32::from(r.u16()?) << 16;
        let auth_data_len = usize::from(r.u8()?);
        let _reserved = r.bytes(10)?;
        if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            let part2_len = auth_data_len.saturating_sub(8).max(13).min(r.rest().len());
            nonce.extend_from_slice(trim_nul(r.bytes(part2_len)?));
        }
        if capabilities & CLIENT_PLUGIN_AUTH != 0 {
            auth_plugin = r.cstr_or_rest()?;
        }
    }
    Ok(Greeting {
        server_version,
        capabilities,
        nonce,
        auth_plugin,
    })
}

/// Builds a HandshakeResponse41 for `user` with the scrambled password `auth`.
fn handshake_response(
    server: u32,
    user: &str,
    auth: &[u8],
    database: Option<&str>,
    plugin: &str,
) -> Vec<u8> {
    let mut client = CLIENT_LONG_PASSWORD
        | CLIENT_PROTOCOL_41
        | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION
        | (server & CLIENT_PLUGIN_AUTH);
    let database = database.filter(|_| server & CLIENT_CONNECT_WITH_DB != 0);
    if database.is_some() {
        client |= CLIENT_CONNECT_WITH_DB;
    }
    let mut packet = Vec::with_capacity(64 + user.len() + auth.len());
    packet.extend_from_slice(&client.to_le_bytes());
    let packet_bytes_max = u32::try_from(SQL_PACKET_BYTES_MAX).unwrap_or(u32::MAX);
    packet.extend_from_slice(&packet_bytes_max.to_le_bytes());
    packet.push(CHARSET_UTF8);
    packet.extend_from_slice(&[0; 23]);
    packet.extend_from_slice(user.as_bytes());
    packet.push(0);
    // Scrambles are 20 or 32 bytes, always under the one-byte length limit.
    packet.push(u8::try_from(auth.len()).unwrap_or(0));
    packet.extend_from_slice(auth);
    if let Some(database) = database {
        packet.extend_from_slice(database.as_bytes());
        packet.push(0);
    }
    if client & CLIENT_PLUGIN_AUTH != 0 {
        packet.extend_from_slice(plugin.as_bytes());
        packet.push(0);
    }
    packet
}

/// The password scrambled for `plugin` with the server's `nonce`, or `None` for a
/// plugin the probe does not speak. An empty password is sent empty.
fn scramble(plugin: &str, password: &str, nonce: &[u8]) -> Option<Vec<u8>> {
    let hash: fn(&[u8]) -> Vec<u8> = match plugin {
        NATIVE_PASSWORD => |data| {
            digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, data)
                .as_ref()
                .to_vec()
        },
        CACHING_SHA2_PASSWORD => |data| digest::digest(&digest::SHA256, data).as_ref().to_vec(),
        _ => return None,
    };
    if password.is_empty() {
        return Some(Vec::new());
    }
    let nonce = &nonce[..nonce.len().min(20)];
    let stage1 = hash(password.as_bytes());
    let stage2 = hash(&stage1);
    let mixed = if plugin == NATIVE_PASSWORD {
        hash(&[nonce, &stage2].concat())
    } else {
        hash(&[&stage2, nonce].concat())
    };
    Some(stage1.iter().zip(mixed).map(|(a, b)| a ^ b).collect())
}

/// "MariaDB 10.11.6" or "MySQL 8.0.36" from a server version string.
fn describe_version(version: &str) -> String {
    // MariaDB prefixes its version with 5.5.5- for clients that compare versions.
    let version = version.strip_prefix("5.5.5-").unwrap_or(version);
    let number = version.split('-').next().unwrap_or(version);
    if version.contains("MariaDB") {
        format!("MariaDB {number}")
    } else {
        format!("MySQL {number}")
    }
}

/// The error an ERR packet carries.
fn server_error(packet: &[u8]) -> MysqlError {
    let mut r = Reader::new(packet.get(1..).unwrap_or_default());
    let Ok(code) = r.u16() else {
        return MysqlError::Protocol("a truncated error packet".to_string());
    };
    let mut message = r.rest();
    // Since 4.1 a '#' and a five-character SQL state precede the message.
    if message.first() == Some(&b'#') && message.len() >= 6 {
        message = &message[6..];
    }
    MysqlError::Server {
        code,
        message: String::from_utf8_lossy(message).trim().to_string(),
    }
}

fn unexpected(what: &str, packet: &[u8]) -> MysqlError {
    let first = packet
        .first()
        .map_or("nothing".to_string(), |b| format!("0x{b:02x}"));
    MysqlError::Protocol(format!("unexpected {what}: packet starting with {first}"))
}

fn is_eof(packet: &[u8]) -> bool {
    packet.first() == Some(&0xfe) && packet.len() < MYSQL_EOF_PACKET_BYTES_MAX
}

fn trim_nul(data: &[u8]) -> &[u8] {
    data.strip_suffix(&[0]).unwrap_or(data)
}

/// Reads fields from a packet without panicking on short input.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], MysqlError> {
        if self.data.len() < n {
            return Err(MysqlError::Protocol(format!(
                "a truncated packet ({} bytes short)",
                n - self.data.len()
            )));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, MysqlError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, MysqlError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// A length-encoded integer.
    fn lenenc(&mut self) -> Result<u64, MysqlError> {
        let n = match self.u8()? {
            first @ 0..=0xfa => return Ok(u64::from(first)),
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            other => {
                return Err(MysqlError::Protocol(format!(
                    "0x{other:02x} where a length was expected"
                )))
            }
        };
        let mut value = [0u8; 8];
        value[..n].copy_from_slice(self.bytes(n)?);
        Ok(u64::from_le_bytes(value))
    }

    /// A NUL-terminated string.
    fn cstr(&mut self) -> Result<&'a [u8], MysqlError> {
        let end = self
            .data
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| MysqlError::Protocol("a string without its NUL".to_string()))?;
        let s = self.bytes(end)?;
        self.bytes(1)?;
        Ok(s)
    }

    /// A NUL-terminated string whose NUL some servers leave off at the packet's end.
    fn cstr_or_rest(&mut self) -> Result<String, MysqlError> {
        let s = match self.cstr() {
            Ok(s) => s,
            Err(_) => self.bytes(self.data.len())?,
        };
        Ok(String::from_utf8_lossy(s).into_owned())
    }

    fn rest(&self) -> &'a [u8] {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use consentry_cluster::model::{CheckSpec, SqlEngine, Status};
    use tokio::net::TcpStream;

    use super::*;
    use crate::probe::test_support::{
        assert_verdict, finish, serve_once as serve, sql_check, TEST_STEP_MS,
    };
    use crate::probe::Prober;

    fn check(port: u16, credentials: Option<(&str, &str)>) -> CheckSpec {
        sql_check(SqlEngine::Mysql, port, credentials)
    }

    const MARIADB_VERSION: &str = "5.5.5-10.11.6-MariaDB-0+deb12u1";
    const NONCE: &[u8; 20] = b"abcdefghij0123456789";

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("short");
        let mut out = len.to_le_bytes()[..3].to_vec();
        out.push(seq);
        out.extend_from_slice(payload);
        out
    }

    fn greeting_payload(version: &str, plugin: &str) -> Vec<u8> {
        let caps = CLIENT_LONG_PASSWORD
            | CLIENT_CONNECT_WITH_DB
            | CLIENT_PROTOCOL_41
            | CLIENT_TRANSACTIONS
            | CLIENT_SECURE_CONNECTION
            | CLIENT_PLUGIN_AUTH;
        let mut p = vec![PROTOCOL_VERSION_10];
        p.extend_from_slice(version.as_bytes());
        p.push(0);
        p.extend_from_slice(&42u32.to_le_bytes());
        p.extend_from_slice(&NONCE[..8]);
        p.push(0);
        p.extend_from_slice(&(caps as u16).to_le_bytes());
        p.push(CHARSET_UTF8);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(&NONCE[8..]);
        p.push(0);
        p.extend_from_slice(plugin.as_bytes());
        p.push(0);
        p
    }

    fn err_payload(code: u16, message: &str) -> Vec<u8> {
        let mut p = vec![0xff];
        p.extend_from_slice(&code.to_le_bytes());
        p.extend_from_slice(b"#28000");
        p.extend_from_slice(message.as_bytes());
        p
    }

    async fn read_packet(socket: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut header = [0u8; 4];
        socket.read_exact(&mut header).await.expect("header");
        let len = usize::from(header[0]) | usize::from(header[1]) << 8;
        let mut payload = vec![0; len];
        socket.read_exact(&mut payload).await.expect("payload");
        (header[3], payload)
    }

    /// The user and auth response of a HandshakeResponse41.
    fn login_fields(payload: &[u8]) -> (String, Vec<u8>) {
        let rest = &payload[32..];
        let end = rest.iter().position(|b| *b == 0).expect("user");
        let user = String::from_utf8(rest[..end].to_vec()).expect("utf8");
        let auth_len = usize::from(rest[end + 1]);
        (user, rest[end + 2..end + 2 + auth_len].to_vec())
    }

    /// Checks a mysql_native_password response the way the server does, from the
    /// stored SHA1(SHA1(password)) alone.
    fn server_accepts(password: &str, response: &[u8]) -> bool {
        let sha1 = |d: &[u8]| {
            digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, d)
                .as_ref()
                .to_vec()
        };
        let stored = sha1(&sha1(password.as_bytes()));
        let mask = sha1(&[&NONCE[..], &stored].concat());
        let stage1: Vec<u8> = response.iter().zip(mask).map(|(a, b)| a ^ b).collect();
        response.len() == 20 && sha1(&stage1) == stored
    }

    /// A MariaDB that checks the password and answers `SELECT 1` with one row.
    async fn mariadb(mut socket: TcpStream, password: &'static str, query_reply: Vec<Vec<u8>>) {
        let greeting = greeting_payload(MARIADB_VERSION, NATIVE_PASSWORD);
        socket
            .write_all(&packet(0, &greeting))
            .await
            .expect("greet");
        let (seq, login) = read_packet(&mut socket).await;
        assert_eq!(seq, 1);
        let (user, auth) = login_fields(&login);
        if !server_accepts(password, &auth) {
            let denied =
                format!("Access denied for user '{user}'@'localhost' (using password: YES)");
            let reply = packet(2, &err_payload(1045, &denied));
            socket.write_all(&reply).await.expect("deny");
            return;
        }
        socket
            .write_all(&packet(2, &[0, 0, 0, 2, 0, 0, 0]))
            .await
            .expect("ok");
        let (seq, query) = read_packet(&mut socket).await;
        assert_eq!((seq, query.as_slice()), (0, &b"\x03SELECT 1"[..]));
        for (i, payload) in query_reply.iter().enumerate() {
            let seq = u8::try_from(i + 1).expect("few packets");
            socket
                .write_all(&packet(seq, payload))
                .await
                .expect("reply");
        }
        let (_, quit) = read_packet(&mut socket).await;
        assert_eq!(quit, vec![COM_QUIT]);
    }

    fn one_row_result() -> Vec<Vec<u8>> {
        let mut column = Vec::new();
        for s in ["def", "", "", "", "1", ""] {
            column.push(u8::try_from(s.len()).expect("short"));
            column.extend_from_slice(s.as_bytes());
        }
        column.extend_from_slice(&[0x0c, 0x3f, 0, 1, 0, 0, 0, 8, 0x81, 0, 0, 0, 0]);
        let eof = vec![0xfe, 0, 0, 2, 0];
        vec![vec![1], column, eof.clone(), vec![1, b'1'], eof]
    }

    #[tokio::test]
    async fn greeting_reports_the_server_and_logs_in_as_nobody() {
        let (port, server) = serve(|mut socket| async move {
            let greeting = greeting_payload(MARIADB_VERSION, NATIVE_PASSWORD);
            socket
                .write_all(&packet(0, &greeting))
                .await
                .expect("greet");
            let (seq, login) = read_packet(&mut socket).await;
            assert_eq!(seq, 1);
            assert_eq!(
                login_fields(&login),
                (SQL_PROBE_USER.to_string(), Vec::new())
            );
            let denied = "Access denied for user 'consentry'@'localhost' (using password: NO)";
            let reply = packet(2, &err_payload(1045, denied));
            socket.write_all(&reply).await.expect("deny");
        })
        .await;
        let result = Prober::for_test(None).probe(&check(port, None)).await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert!(
            result.message.starts_with("MariaDB 10.11.6 handshake in "),
            "{}",
            result.message
        );
        finish(server).await;
    }

    #[tokio::test]
    async fn err_packet_instead_of_a_greeting_is_critical() {
        let message = "Host '10.1.2.3' is not allowed to connect to this MariaDB server";
        let (port, server) = serve(move |mut socket| async move {
            let mut p = vec![0xff];
            p.extend_from_slice(&1130u16.to_le_bytes());
            p.extend_from_slice(message.as_bytes());
            socket.write_all(&packet(0, &p)).await.expect("err");
        })
        .await;
        let result = Prober::for_test(None).probe(&check(port, None)).await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
        assert!(result.message.contains(message), "{}", result.message);
        finish(server).await;
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let (port, server) = serve(|mut socket| async move {
            let reply = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
            socket.write_all(reply).await.expect("write");
            let _ = socket.read(&mut [0u8; 64]).await;
        })
        .await;
        let result = Prober::for_test(None).probe(&check(port, None)).await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
        assert!(
            result.message.starts_with("not a MySQL server greeting"),
            "{}",
            result.message
        );
        finish(server).await;
    }

    #[tokio::test]
    async fn a_huge_length_header_is_refused_before_allocating() {
        let (port, server) = serve(|mut socket| async move {
            let _ = socket.write_all(&[0xff, 0xff, 0xfe, 0]).await;
            let _ = socket.write_all(&[b'x'; 4096]).await;
        })
        .await;
        let result = Prober::for_test(None).probe(&check(port, None)).await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
        assert!(
            result.message.contains("16711679 bytes"),
            "{}",
            result.message
        );
        finish(server).await;
    }

    #[tokio::test]
    async fn endless_rows_end_at_the_response_bound() {
        let (port, server) = serve(|mut socket| async move {
            let greeting = greeting_payload(MARIADB_VERSION, NATIVE_PASSWORD);
            socket
                .write_all(&packet(0, &greeting))
                .await
                .expect("greet");
            let _ = read_packet(&mut socket).await;
            socket
                .write_all(&packet(2, &[0, 0, 0, 2, 0, 0, 0]))
                .await
                .expect("ok");
            let _ = read_packet(&mut socket).await;
            let head = one_row_result();
            for (i, p) in head[..3].iter().enumerate() {
                let seq = u8::try_from(i + 1).expect("few");
                socket.write_all(&packet(seq, p)).await.expect("head");
            }
            // Rows forever, until the probe hangs up.
            let row = packet(4, &[1, b'1']);
            let rows = row.repeat(1024);
            while socket.write_all(&rows).await.is_ok() {}
        })
        .await;
        let result = Prober::for_test(None)
            .probe(&check(port, Some(("monitor", "s3cret"))))
            .await;
        assert_verdict(&result, Status::Critical, Reason::Protocol);
        assert!(
            result.message.contains("more than 1048576 bytes"),
            "{}",
            result.message
        );
        finish(server).await;
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let (port, server) = serve(|mut socket| async move {
            let _ = socket.read(&mut [0u8; 64]).await;
        })
        .await;
        let mut check = check(port, None);
        check.timeout_ms = 300;
        let result = Prober::for_test(None).probe(&check).await;
        assert_verdict(&result, Status::Critical, Reason::Timeout);
        assert!(result.latency_ms < TEST_STEP_MS, "{result:?}");
        finish(server).await;
    }

    #[tokio::test]
    async fn login_and_query_count_rows() {
        let (port, server) =
            serve(|socket| async move { mariadb(socket, "s3cret", one_row_result()).await }).await;
        let result = Prober::for_test(None)
            .probe(&check(port, Some(("monitor", "s3cret"))))
            .await;
        assert_eq!(result.status, Status::Ok, "{result:?}");
        assert!(
            result
                .message
                .starts_with("MariaDB 10.11.6: query returned 1 row(s) in "),
            "{}",
            result.message
        );
        assert_eq!(result.perfdata.len(), 1, "{result:?}");
        assert_eq!(
            (
                result.perfdata[0].label.as_str(),
                result.perfdata[0].unit.as_str()
            ),
            ("time", "s")
        );
        finish(server).await;
    }

    #[tokio::test]
    async fn wrong_password_is_an_authentication_failure_without_the_password() {
        let (port, server) =
            serve(|socket| async move { mariadb(socket, "s3cret", Vec::new()).await }).await;
        let result = Prober::for_test(None)
            .probe(&check(port, Some(("monitor", "wrong-pw"))))
            .await;
        assert_verdict(&result, Status::Critical, Reason::Auth);
        assert!(
            result
                .message
                .starts_with("authentication failed for user monitor: Access denied"),
            "{}",
            result.message
        );
        assert!(!result.message.contains("wrong-pw"), "{}", result.message);
        finish(server).await;
    }

    #[tokio::test]
    async fn query_error_carries_the_server_message() {
        let message = "Table 'app.nope' doesn't exist";
        let reply = vec![err_payload(1146, message)];
        let (port, server) =
            serve(|socket| async move { mariadb(socket, "s3cret", reply).await }).await;
        let result = Prober::for_test(None)
            .probe(&check(port, Some(("monitor", "s3cret"))))
            .await;
        assert_eq!(result.status, Status::Critical, "{result:?}");
        assert!(result.message.contains(message), "{}", result.message);
        finish(server).await;
    }

    #[test]
    fn greeting_fields_are_parsed() {
        let greeting =
            parse_greeting(&greeting_payload("8.0.36", CACHING_SHA2_PASSWORD)).expect("greeting");
        assert_eq!(greeting.server_version, "8.0.36");
        assert_eq!(greeting.nonce, NONCE.to_vec());
        assert_eq!(greeting.auth_plugin, CACHING_SHA2_PASSWORD);
        assert_eq!(describe_version(&greeting.server_version), "MySQL 8.0.36");
        // Truncated anywhere, a greeting is an error, never a panic.
        let full = greeting_payload(MARIADB_VERSION, NATIVE_PASSWORD);
        for len in 0..full.len() {
            let _ = parse_greeting(&full[..len]);
        }
    }

    #[test]
    fn caching_sha2_scramble_matches_the_server_check() {
        // The server keeps SHA256(SHA256(password)) and recovers SHA256(password) from
        // the response; hashing that again must give what it keeps.
        let sha256 = |d: &[u8]| digest::digest(&digest::SHA256, d).as_ref().to_vec();
        let response = scramble(CACHING_SHA2_PASSWORD, "s3cret", NONCE).expect("plugin");
        let stored = sha256(&sha256(b"s3cret"));
        let mask = sha256(&[&stored[..], &NONCE[..]].concat());
        let stage1: Vec<u8> = response.iter().zip(mask).map(|(a, b)| a ^ b).collect();
        assert_eq!(sha256(&stage1), stored);
        assert_eq!(scramble(NATIVE_PASSWORD, "", NONCE), Some(Vec::new()));
        assert_eq!(scramble("auth_gssapi_client", "x", NONCE), None);
    }
}
