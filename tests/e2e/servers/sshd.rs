//! OpenSSH's sshd in the foreground (`-D -e`) with its own config and an ed25519 host key
//! made by `ssh-keygen`.

use std::fs;
use std::process::Command;

use super::{binary, need_root, setup, Daemon, ServerDir, Unavailable};
use crate::harness::free_tcp_port;

pub struct Sshd {
    pub port: u16,
    daemon: Daemon,
}

impl Sshd {
    pub fn start(dir: &ServerDir) -> Result<Self, Unavailable> {
        let sshd = binary(&["/usr/sbin/sshd"], "openssh-server")?;
        let keygen = binary(&["/usr/bin/ssh-keygen"], "openssh-client")?;
        // sshd refuses to start as root without its privilege separation directory.
        need_root("sshd")?;
        fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let port = free_tcp_port();
        let d = dir.mkdir("sshd");
        let hostkey = d.join("hostkey");
        let mut cmd = Command::new(keygen);
        cmd.args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&hostkey);
        setup(cmd);
        let conf = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nPidFile {}\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n",
            hostkey.display(),
            d.join("sshd.pid").display()
        );
        let conf_path = dir.write("sshd/sshd_config", &conf);
        let mut cmd = Command::new(sshd);
        cmd.args(["-D", "-e", "-f"]).arg(&conf_path);
        let daemon = Daemon::spawn("sshd", cmd, &d.join("sshd.log"), &[]);
        daemon.wait_tcp(port);
        Ok(Self { port, daemon })
    }

    pub fn stop(&self) {
        self.daemon.kill();
    }

    /// Hangs the server (SIGSTOP): connections are accepted, nothing is answered.
    pub fn freeze(&self) {
        self.daemon.freeze();
    }
}
