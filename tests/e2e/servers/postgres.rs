//! PostgreSQL: `initdb` into the test's directory and `postgres` in the foreground on a
//! test port with its socket beside the data. Both refuse to run as root, so as root they
//! run as the `postgres` system user (`setpriv`), on directories chowned to it. Host
//! connections need a password (scram-sha-256); the `monitor` role has one.

use std::path::PathBuf;
use std::process::Command;

use super::{is_root, setup, Daemon, ServerDir, Unavailable};
use crate::harness::{free_tcp_port, wait_until};

pub const USER: &str = "monitor";
pub const PASSWORD: &str = "e2e-monitor-secret";
pub const DATABASE: &str = "postgres";

pub struct Postgres {
    pub port: u16,
    daemon: Daemon,
}

/// The newest `/usr/lib/postgresql/<major>/bin`.
fn bin_dir() -> Result<PathBuf, Unavailable> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            Unavailable(
                "/usr/lib/postgresql not found (install the Debian package postgresql)".into(),
            )
        })?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors.pop().map(|(_, bin)| bin).ok_or_else(|| {
        Unavailable("no /usr/lib/postgresql/*/bin/postgres (install postgresql)".into())
    })
}

/// `program` as the postgres user when we are root.
fn as_postgres(program: PathBuf) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

impl Postgres {
    pub fn start(dir: &ServerDir) -> Result<Self, Unavailable> {
        let bin = bin_dir()?;
        let port = free_tcp_port();
        let d = dir.mkdir("postgres");
        let data = d.join("data");
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&d);
            setup(chown);
        }
        let mut cmd = as_postgres(bin.join("initdb"));
        cmd.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-N",
        ]);
        setup(cmd);
        let mut cmd = as_postgres(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&d)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=20",
            ]);
        let daemon = Daemon::spawn("postgres", cmd, &d.join("postgres.log"), &[]);
        daemon.wait_tcp(port);
        let sql = format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'");
        wait_until(
            "postgres to accept the monitor role",
            super::READY_TIMEOUT,
            || {
                daemon.ensure_running()?;
                let mut cmd = as_postgres(bin.join("psql"));
                cmd.arg("-h").arg(&d).args([
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-c",
                    &sql,
                ]);
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
