//! vsftpd in the foreground (`background=NO`) on a test port.
//!
//! [`Vsftpd::start`] serves anonymous read-only FTP from an empty directory and greets
//! `220 consentry-e2e FTP ready`. [`Vsftpd::start_broken`] disables every login method,
//! a real misconfiguration vsftpd answers with `500 OOPS: vsftpd: both local and anonymous
//! access disabled!` instead of a greeting: the port is open but the service is not.

use std::process::Command;

use super::{binary, need_root, Daemon, ServerDir, Unavailable};
use crate::harness::free_tcp_port;

pub const BANNER: &str = "consentry-e2e FTP ready";

pub struct Vsftpd {
    pub port: u16,
    daemon: Daemon,
}

impl Vsftpd {
    pub fn start(dir: &ServerDir) -> Result<Self, Unavailable> {
        Self::start_as(dir, "vsftpd", true)
    }

    pub fn start_broken(dir: &ServerDir) -> Result<Self, Unavailable> {
        Self::start_as(dir, "vsftpd-broken", false)
    }

    fn start_as(dir: &ServerDir, name: &str, anonymous: bool) -> Result<Self, Unavailable> {
        let vsftpd = binary(&["/usr/sbin/vsftpd"], "vsftpd")?;
        // vsftpd insists on running as root (it drops to its own user per session).
        need_root("vsftpd")?;
        let port = free_tcp_port();
        let d = dir.mkdir(name);
        let empty = dir.mkdir(&format!("{name}/empty"));
        let anonymous = if anonymous { "YES" } else { "NO" };
        let conf = format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
             background=NO\nanonymous_enable={anonymous}\nlocal_enable=NO\nwrite_enable=NO\n\
             no_anon_password=YES\nanon_root={empty}\nsecure_chroot_dir={empty}\n\
             xferlog_enable=NO\nvsftpd_log_file={log}\nseccomp_sandbox=NO\n\
             ftpd_banner={BANNER}\n",
            empty = empty.display(),
            log = d.join("vsftpd.log").display(),
        );
        let conf_path = dir.write(&format!("{name}/vsftpd.conf"), &conf);
        let mut cmd = Command::new(vsftpd);
        cmd.arg(&conf_path);
        let daemon = Daemon::spawn(name, cmd, &d.join("stderr.log"), &[d.join("vsftpd.log")]);
        daemon.wait_tcp(port);
        Ok(Self { port, daemon })
    }

    pub fn stop(&self) {
        self.daemon.kill();
    }
}
