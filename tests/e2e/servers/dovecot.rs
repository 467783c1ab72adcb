//! dovecot in the foreground (`-F`) with POP3 and IMAP listeners on test ports, STARTTLS
//! with the test certificate (`ssl = yes`), base and state directories in the test's
//! directory. No mailbox is ever opened: the tests stop at the greeting and STARTTLS.

use std::process::Command;

use super::{binary, need_root, Daemon, ServerDir, TestCert, Unavailable};
use crate::harness::free_tcp_port;

pub struct Dovecot {
    pub pop3_port: u16,
    pub imap_port: u16,
    daemon: Daemon,
}

impl Dovecot {
    pub fn start(dir: &ServerDir, cert: &TestCert) -> Result<Self, Unavailable> {
        let dovecot = binary(&["/usr/sbin/dovecot"], "dovecot-core")?;
        binary(&["/usr/lib/dovecot/pop3-login"], "dovecot-pop3d")?;
        binary(&["/usr/lib/dovecot/imap-login"], "dovecot-imapd")?;
        // Its login processes run as dovenull; the master needs root to switch.
        need_root("dovecot")?;
        let pop3_port = free_tcp_port();
        let imap_port = free_tcp_port();
        let d = dir.mkdir("dovecot");
        dir.mkdir("dovecot/base");
        dir.mkdir("dovecot/state");
        let conf = format!(
            r#"protocols = pop3 imap
listen = 127.0.0.1
base_dir = {d}/base
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
default_login_user = dovenull
default_internal_user = dovecot
disable_plaintext_auth = yes
passdb {{
  driver = static
  args = password=unused-by-the-tests
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"#,
            d = d.display(),
            cert = cert.cert.display(),
            key = cert.key.display(),
        );
        let conf_path = dir.write("dovecot/dovecot.conf", &conf);
        let mut cmd = Command::new(dovecot);
        cmd.arg("-F").arg("-c").arg(&conf_path);
        let daemon = Daemon::spawn(
            "dovecot",
            cmd,
            &d.join("stderr.log"),
            &[d.join("dovecot.log")],
        );
        daemon.wait_tcp(pop3_port);
        daemon.wait_tcp(imap_port);
        Ok(Self {
            pop3_port,
            imap_port,
            daemon,
        })
    }

    pub fn stop(&self) {
        self.daemon.kill();
    }
}
