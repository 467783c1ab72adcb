//! MariaDB: a fresh data directory from `mariadb-install-db`, `mariadbd` in the
//! foreground on a test port and socket, and a `monitor` user with a password created
//! through the socket (root authenticates by socket only), so credentials are real grants.

use std::process::Command;

use super::{binary, need_root, setup, Daemon, ServerDir, Unavailable};
use crate::harness::{free_tcp_port, wait_until};

pub const USER: &str = "monitor";
pub const PASSWORD: &str = "e2e-monitor-secret";

pub struct Mariadb {
    pub port: u16,
    daemon: Daemon,
}

impl Mariadb {
    pub fn start(dir: &ServerDir) -> Result<Self, Unavailable> {
        let install = binary(&["/usr/bin/mariadb-install-db"], "mariadb-server")?;
        let mariadbd = binary(&["/usr/sbin/mariadbd"], "mariadb-server")?;
        let client = binary(&["/usr/bin/mariadb"], "mariadb-client")?;
        // --user=root below: as another user the data directory would need chowning.
        need_root("mariadb")?;
        let port = free_tcp_port();
        let d = dir.mkdir("mariadb");
        let data = d.join("data");
        let socket = d.join("mysqld.sock");
        let mut cmd = Command::new(install);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--user=root", "--auth-root-authentication-method=socket"])
            .arg("--skip-test-db");
        setup(cmd);
        let mut cmd = Command::new(mariadbd);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--pid-file={}", d.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
            ]);
        let daemon = Daemon::spawn(
            "mariadb",
            cmd,
            &d.join("stderr.log"),
            &[d.join("error.log")],
        );
        daemon.wait_tcp(port);
        let sql = format!(
            "CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'; \
             GRANT USAGE ON *.* TO '{USER}'@'%';"
        );
        wait_until(
            "mariadb to accept the monitor user",
            super::READY_TIMEOUT,
            || {
                daemon.ensure_running()?;
                let mut cmd = Command::new(&client);
                cmd.arg("--no-defaults")
                    .arg(format!("--socket={}", socket.display()))
                    .args(["-uroot", "-e", &sql]);
                let out = super::run_command(cmd, super::READY_TIMEOUT);
                if out.code == Some(0) {
                    Ok(())
                } else {
                    Err(out.stderr)
                }
            },
        );
        Ok(Self { port, daemon })
    }

    pub fn stop(&self) {
        self.daemon.kill();
    }
}
