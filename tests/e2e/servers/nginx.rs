//! nginx serving HTTP and HTTPS (the test certificate) from one server block.
//!
//! Paths: `/` a small page, `/broken` answers 503, `/slow.bin` is a [`SLOW_BODY_BYTES`]
//! file sent at [`SLOW_RATE_BYTES_PER_S`] (`limit_rate`), so it takes about a second.

use std::fs;
use std::process::Command;

use super::{binary, Daemon, ServerDir, TestCert, Unavailable};
use crate::harness::free_tcp_port;

/// Size of `/slow.bin`.
pub const SLOW_BODY_BYTES: usize = 16 * 1024;
/// `limit_rate` of `/slow.bin`: the body takes SLOW_BODY_BYTES / rate = 1 s.
pub const SLOW_RATE_BYTES_PER_S: usize = 16 * 1024;
/// What `/` contains.
pub const INDEX_TEXT: &str = "consentry e2e nginx";

pub struct Nginx {
    pub http_port: u16,
    pub https_port: u16,
    daemon: Daemon,
}

impl Nginx {
    pub fn start(dir: &ServerDir, cert: &TestCert) -> Result<Self, Unavailable> {
        let nginx = binary(&["/usr/sbin/nginx"], "nginx")?;
        let http_port = free_tcp_port();
        let https_port = free_tcp_port();
        let root = dir.mkdir("nginx/www");
        dir.mkdir("nginx/tmp");
        fs::write(root.join("index.html"), format!("{INDEX_TEXT}\n")).expect("write index");
        fs::write(root.join("slow.bin"), vec![b'x'; SLOW_BODY_BYTES]).expect("write slow.bin");
        let d = dir.join("nginx");
        let d = d.display();
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  server {{
    listen 127.0.0.1:{http_port};
    listen 127.0.0.1:{https_port} ssl;
    server_name localhost;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {d}/www;
    location = /broken {{ return 503; }}
    location = /slow.bin {{ limit_rate {rate}; }}
  }}
}}
"#,
            cert = cert.cert.display(),
            key = cert.key.display(),
            rate = SLOW_RATE_BYTES_PER_S,
        );
        let conf_path = dir.write("nginx/nginx.conf", &conf);
        let mut cmd = Command::new(nginx);
        cmd.arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.join("nginx"));
        let daemon = Daemon::spawn(
            "nginx",
            cmd,
            &dir.join("nginx/stderr.log"),
            &[dir.join("nginx/error.log"), dir.join("nginx/access.log")],
        );
        daemon.wait_tcp(http_port);
        daemon.wait_tcp(https_port);
        Ok(Self {
            http_port,
            https_port,
            daemon,
        })
    }

    pub fn stop(&self) {
        self.daemon.kill();
    }

    /// Hangs the server (SIGSTOP): connections are accepted, nothing is answered.
    pub fn freeze(&self) {
        self.daemon.freeze();
    }
}
