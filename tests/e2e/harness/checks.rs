//! Builds the `checks.toml` the tests apply: the pinned `[defaults]` with a 1 s interval,
//! then checks and the `ops` webhook notifier.

use std::fmt::Write as _;

use super::ROUNDS;

/// A checks file under construction.
#[derive(Debug, Clone, Default)]
pub struct ChecksFile {
    body: String,
}

impl ChecksFile {
    /// `[defaults]`: interval 1s, timeout 500ms, two sites and two rounds to confirm, two
    /// rounds to recover, notify `ops`.
    pub fn new() -> Self {
        let mut body = String::new();
        let _ = writeln!(body, "[defaults]");
        let _ = writeln!(body, "interval = \"1s\"");
        let _ = writeln!(body, "timeout = \"500ms\"");
        let _ = writeln!(body, "confirm = {{ sites = 2, rounds = {ROUNDS} }}");
        let _ = writeln!(body, "recover = {{ rounds = {ROUNDS} }}");
        let _ = writeln!(body, "notify = [\"ops\"]");
        Self { body }
    }

    /// An HTTP check of `url` expecting 200-399.
    pub fn http(mut self, name: &str, url: &str) -> Self {
        let _ = write!(
            self.body,
            "\n[[check]]\nname = \"{name}\"\nkind = \"http\"\nurl = \"{url}\"\nexpect_status = \"200-399\"\n"
        );
        self
    }

    /// A TCP connect check of 127.0.0.1:`port`.
    pub fn tcp(mut self, name: &str, port: u16) -> Self {
        let _ = write!(
            self.body,
            "\n[[check]]\nname = \"{name}\"\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {port}\n"
        );
        self
    }

    /// A TCP connect check of `host`:`port`.
    pub fn tcp_at(mut self, name: &str, host: &str, port: u16) -> Self {
        let _ = write!(
            self.body,
            "\n[[check]]\nname = \"{name}\"\nkind = \"tcp\"\nhost = \"{host}\"\nport = {port}\n"
        );
        self
    }

    /// `[operator] notify = ["ops"]`: operator alerts go to the `ops` webhook.
    pub fn operator_alerts(mut self) -> Self {
        let _ = write!(self.body, "\n[operator]\nnotify = [\"ops\"]\n");
        self
    }

    /// Appends `key = value` (`value` already TOML, e.g. `["host"]` or `{ sites = 2, rounds = 1 }`)
    /// to the table written last; call it right after the check it belongs to.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        let _ = writeln!(self.body, "{key} = {value}");
        self
    }

    /// The `ops` webhook notifier the defaults notify.
    pub fn webhook(mut self, url: &str) -> Self {
        let _ = write!(
            self.body,
            "\n[[notifier]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{url}\"\n"
        );
        self
    }

    pub fn render(&self) -> String {
        self.body.clone()
    }
}
