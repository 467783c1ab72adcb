//! unbound in the foreground (`-d`, no chroot, no user switch) answering UDP and TCP on a
//! test port from local data only: it never recurses to the internet.
//!
//! Zones: `consentry.test` is static (`www` has A [`WWW_ADDRESS`], names it does not list
//! are NXDOMAIN); `refused.test` is refused (REFUSED rcode).

use std::process::Command;

use super::{binary, Daemon, ServerDir, Unavailable};
use crate::harness::free_tcp_port;

pub const WWW_NAME: &str = "www.consentry.test";
pub const WWW_ADDRESS: &str = "192.0.2.10";
pub const MISSING_NAME: &str = "missing.consentry.test";
pub const REFUSED_NAME: &str = "www.refused.test";

pub struct Unbound {
    pub port: u16,
    daemon: Daemon,
}

impl Unbound {
    pub fn start(dir: &ServerDir) -> Result<Self, Unavailable> {
        let unbound = binary(&["/usr/sbin/unbound"], "unbound")?;
        // One port free for TCP and UDP alike (the harness checks both).
        let port = free_tcp_port();
        let d = dir.mkdir("unbound");
        let conf = format!(
            r#"server:
  interface: 127.0.0.1@{port}
  port: {port}
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{d}"
  pidfile: "{d}/unbound.pid"
  use-syslog: no
  verbosity: 1
  do-ip6: no
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  module-config: "iterator"
  local-zone: "consentry.test." static
  local-data: "{WWW_NAME}. 300 IN A {WWW_ADDRESS}"
  local-data: "consentry.test. 300 IN MX 10 mail.consentry.test."
  local-zone: "refused.test." refuse
remote-control:
  control-enable: no
"#,
            d = d.display()
        );
        let conf_path = dir.write("unbound/unbound.conf", &conf);
        let mut cmd = Command::new(unbound);
        cmd.arg("-d").arg("-c").arg(&conf_path);
        let daemon = Daemon::spawn("unbound", cmd, &d.join("unbound.log"), &[]);
        // It answers on TCP as well: ready once that accepts.
        daemon.wait_tcp(port);
        Ok(Self { port, daemon })
    }

    pub fn stop(&self) {
        self.daemon.kill();
    }
}
