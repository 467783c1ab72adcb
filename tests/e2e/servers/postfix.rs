//! A private postfix instance: its own `main.cf`/`master.cf`, queue and data directories in
//! the test's directory, the `master` daemon in the foreground (`-d`), never the system's
//! postfix.
//!
//! Two smtpd listeners: `port` greets with 220 and offers STARTTLS with the test
//! certificate; `reject_port` rejects every client at connect time
//! (`smtpd_client_restrictions = reject` with `smtpd_delay_reject = no`), so its greeting
//! is `554 5.7.1 ... Client host rejected: Access denied`.

use std::process::Command;

use super::{binary, need_root, setup, Daemon, ServerDir, TestCert, Unavailable};
use crate::harness::free_tcp_port;

/// The greeting text after `220 `.
pub const HOSTNAME: &str = "consentry-e2e.localdomain";

/// Queue subdirectories master and its daemons expect to exist.
const QUEUE_DIRS: &[&str] = &[
    "pid", "public", "private", "maildrop", "incoming", "active", "deferred", "bounce", "defer",
    "trace", "corrupt", "hold", "flush", "saved",
];

pub struct Postfix {
    pub port: u16,
    pub reject_port: u16,
    daemon: Daemon,
}

impl Postfix {
    pub fn start(dir: &ServerDir, cert: &TestCert) -> Result<Self, Unavailable> {
        let master = binary(&["/usr/lib/postfix/sbin/master"], "postfix")?;
        // master switches its daemons to the postfix user and chowns the queue.
        need_root("postfix")?;
        let port = free_tcp_port();
        let reject_port = free_tcp_port();
        let d = dir.mkdir("postfix");
        let etc = dir.mkdir("postfix/etc");
        let queue = dir.mkdir("postfix/queue");
        let data = dir.mkdir("postfix/data");
        for sub in QUEUE_DIRS {
            dir.mkdir(&format!("postfix/queue/{sub}"));
        }
        let mut chown = Command::new("chown");
        chown.arg("-R").arg("postfix").arg(&queue).arg(&data);
        setup(chown);
        let mut chown = Command::new("chown");
        chown.arg("root").arg(queue.join("pid")).arg(&queue);
        setup(chown);
        let mut chgrp = Command::new("chgrp");
        chgrp
            .arg("postdrop")
            .arg(queue.join("public"))
            .arg(queue.join("maildrop"));
        setup(chgrp);
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {queue}\n\
             data_directory = {data}\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = {HOSTNAME}\n\
             mydestination =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             smtpd_banner = $myhostname ESMTP consentry-e2e\n\
             smtpd_tls_cert_file = {cert}\n\
             smtpd_tls_key_file = {key}\n\
             smtpd_tls_security_level = may\n\
             maillog_file = {log}\n\
             maillog_file_prefixes = {prefix}\n",
            queue = queue.display(),
            data = data.display(),
            cert = cert.cert.display(),
            key = cert.key.display(),
            log = d.join("postfix.log").display(),
            prefix = dir.path().display(),
        );
        dir.write("postfix/etc/main.cf", &main_cf);
        // No chroot (column 5 = n): the queue lives in the test's directory.
        let master_cf = format!(
            "127.0.0.1:{port} inet n - n - - smtpd\n\
             127.0.0.1:{reject_port} inet n - n - - smtpd -o smtpd_client_restrictions=reject -o smtpd_delay_reject=no\n\
             pickup unix n - n 60 1 pickup\n\
             cleanup unix n - n - 0 cleanup\n\
             qmgr unix n - n 300 1 qmgr\n\
             tlsmgr unix - - n 1000? 1 tlsmgr\n\
             rewrite unix - - n - - trivial-rewrite\n\
             bounce unix - - n - 0 bounce\n\
             defer unix - - n - 0 bounce\n\
             trace unix - - n - 0 bounce\n\
             verify unix - - n - 1 verify\n\
             flush unix n - n 1000? 0 flush\n\
             proxymap unix - - n - - proxymap\n\
             smtp unix - - n - - smtp\n\
             relay unix - - n - - smtp\n\
             showq unix n - n - - showq\n\
             error unix - - n - - error\n\
             retry unix - - n - - error\n\
             discard unix - - n - - discard\n\
             local unix - n n - - local\n\
             anvil unix - - n - 1 anvil\n\
             scache unix - - n - 1 scache\n\
             postlog unix-dgram n - n - 1 postlogd\n"
        );
        dir.write("postfix/etc/master.cf", &master_cf);
        let mut cmd = Command::new(master);
        cmd.arg("-c").arg(&etc).arg("-d").env("MAIL_CONFIG", &etc);
        let daemon = Daemon::spawn(
            "postfix",
            cmd,
            &d.join("master.out"),
            &[d.join("postfix.log")],
        );
        daemon.wait_tcp(port);
        daemon.wait_tcp(reject_port);
        Ok(Self {
            port,
            reject_port,
            daemon,
        })
    }

    pub fn stop(&self) {
        self.daemon.kill();
    }
}
